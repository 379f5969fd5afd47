"""Hourly contracts and milestones of the same pairs, checked by a state machine against a
real `Escrow` on SQLite and PostgreSQL.

`HourlyMachine` drives an `Escrow` (a `SimulatedGateway`, a `FixedClock`) through random
histories: hourly contracts in USD opened between two clients and two freelancers, time
logged in 10-minute segments (tracked or manual, some of them refused: overlapping,
crossing a week's end, in a closed week, on a paused or ended contract), weekly limits
raised and lowered, rates changed, pauses and resumes, contracts ended, fixed-price
milestones of the same pairs funded and approved, and the clock moved on by hours to a
week and more with `tick()`. Beside it a plain model restates the rules of
docs/architecture.md ("Hourly contracts") on its own:

- a segment is accepted exactly when the model says (and a refused one changes nothing);
- each week closes at Monday 12:00 after it, billing its segments in time order up to
  the limit in force for it (the largest of the limit before the week and every limit
  set during it) at the rate in force at each segment's start, rounded cumulatively:
  R(exact cost of the billable minutes);
- a charged week is released at its review end (or at the tick that charged it, when
  that is later), its net pending until Wednesday 00:00 nine days after the week (or
  its release, when later); milestones pend 5 days;
- one lifetime fee chain per pair across its hourly weeks and milestones: the pair's
  fees are R(F(lifetime billings)).

After every step: `ledger audit` passes (the hourly checks included), each closed
week's amount is the model's, each pair's lifetime billings and fees are the model's,
and each freelancer's pending and available balances are the model's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from ledger.clock import FixedClock
from ledger.errors import LedgerError
from ledger.escrow.service import Escrow
from ledger.escrow.timesheet import Segment
from ledger.gateway.simulated import SimulatedGateway
from tests.conftest import START, database_names
from tests.property.test_escrow_machine import (
    fee_total,
    postgres_connector,
    sqlite_connector,
    stateful_settings,
)

#: (examples, steps per example) in the ci profile, on each database: each step audits
#: the whole ledger, so this is about 45 s on PostgreSQL on the CI machine.
HOURLY_BUDGET = {"ci": (12, 30)}

# The calendar (docs/architecture.md, "Hourly contracts"), restated: the model is the spec.
CLOSE_AFTER_WEEK_END = timedelta(hours=12)
REVIEW_END_AFTER_WEEK_END = timedelta(days=5)
AVAILABLE_AFTER_WEEK_END = timedelta(days=9)
MILESTONE_SECURITY_PERIOD = timedelta(days=5)
SLOT = timedelta(minutes=10)

CLIENTS = ("cl_1", "cl_2")
FREELANCERS = ("fr_1", "fr_2")
RATES = (3333, 5000, 12000)  # minor units per hour
LIMITS = (0, 1, 5, 40)  # hours
MAX_CONTRACTS = 4


def monday_of(moment: datetime) -> date:
    day = moment.date()
    return day - timedelta(days=day.weekday())


def week_end(monday: date) -> datetime:
    return datetime(monday.year, monday.month, monday.day, tzinfo=START.tzinfo) + timedelta(days=7)


def round_half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


@dataclass
class MSegment:
    start: datetime
    end: datetime
    manual: bool


@dataclass
class MContract:
    id: str
    freelancer: str
    client: str
    opened_at: datetime
    rates: list[tuple[datetime, int]]
    limits: list[tuple[datetime, int]]
    segments: list[MSegment] = field(default_factory=list)
    paused: bool = False
    ended: bool = False
    closed: dict[date, int] = field(default_factory=dict)  # Monday -> amount billed

    def limit_minutes(self, monday: date) -> int:
        start, end = week_end(monday) - timedelta(days=7), week_end(monday)
        before = self.limits[0][1]
        during = []
        for at, hours in self.limits[1:]:
            if at < start:
                before = hours
            elif at < end:
                during.append(hours)
        return max([before, *during]) * 60

    def rate_at(self, moment: datetime) -> int:
        rate = self.rates[0][1]
        for at, value in self.rates[1:]:
            if at < moment:  # a change applies to segments that start after it
                rate = value
        return rate

    def bill(self, monday: date) -> int:
        """R(exact cost of the week's first `limit` minutes, in time order)."""
        left = self.limit_minutes(monday)
        cost = Fraction(0)
        for segment in sorted(self.segments, key=lambda s: s.start):
            if monday_of(segment.start) != monday or left == 0:
                continue
            minutes = min(left, int((segment.end - segment.start) / timedelta(minutes=1)))
            cost += Fraction(self.rate_at(segment.start) * minutes, 60)
            left -= minutes
        return round_half_up(cost)


@dataclass
class MPayment:
    freelancer: str
    net: int
    available_at: datetime


@dataclass
class Model:
    contracts: list[MContract] = field(default_factory=list)
    lifetime: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    fees: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    payments: list[MPayment] = field(default_factory=list)
    # (contract, Monday) -> when its charge was booked; released ones leave it.
    charged: dict[tuple[str, date], datetime] = field(default_factory=dict)
    # (contract, Monday) -> the order in which each week's first segment was logged.
    first_logged: dict[tuple[str, date], int] = field(default_factory=dict)

    def release(self, freelancer: str, client: str, amount: int, available_at: datetime) -> None:
        pair = (freelancer, client)
        before = self.lifetime[pair]
        fee = fee_total("USD", before + amount) - fee_total("USD", before)
        self.lifetime[pair] = before + amount
        self.fees[pair] += fee
        self.payments.append(MPayment(freelancer, amount - fee, available_at))

    def balances(self, freelancer: str, now: datetime) -> tuple[int, int]:
        mine = [p for p in self.payments if p.freelancer == freelancer]
        pending = sum(p.net for p in mine if p.available_at > now)
        return pending, sum(p.net for p in mine) - pending


class HourlyMachine(RuleBasedStateMachine):
    def __init__(self, connect: Callable[[FixedClock], tuple[Any, Callable[[], None]]]) -> None:
        super().__init__()
        self.clock = FixedClock(START)  # a Monday, 09:00
        self.book, self._cleanup = connect(self.clock)
        self.gateway = SimulatedGateway()
        self.escrow = Escrow(self.book, self.gateway)
        self.model = Model()

    def teardown(self) -> None:
        self.book.close()
        self._cleanup()

    def segment_count(self) -> int:
        return sum(len(self.escrow.hourly.segments(c.id)) for c in self.model.contracts)

    # --- rules ---------------------------------------------------------------------------

    @precondition(lambda self: len(self.model.contracts) < MAX_CONTRACTS)
    @rule(
        freelancer=st.sampled_from(FREELANCERS),
        client=st.sampled_from(CLIENTS),
        rate=st.sampled_from(RATES),
        limit=st.sampled_from(LIMITS),
    )
    def open_hourly(self, freelancer: str, client: str, rate: int, limit: int) -> None:
        contract = self.escrow.hourly.open_contract(
            client_id=client,
            freelancer_id=freelancer,
            currency="USD",
            title="hours",
            hourly_rate=rate,
            weekly_limit_hours=limit,
            manual_time_allowed=True,
        )
        now = self.clock.now()
        self.model.contracts.append(MContract(contract.id, freelancer, client, now, [(now, rate)], [(now, limit)]))
        note(f"open {contract.id} {freelancer}/{client} at {rate}/h, limit {limit} h")

    @precondition(lambda self: self.model.contracts)
    @rule(
        pick=st.integers(0, MAX_CONTRACTS - 1),
        ago=st.integers(0, 200),
        slots=st.integers(1, 48),
        manual=st.booleans(),
    )
    def log_time(self, pick: int, ago: int, slots: int, manual: bool) -> None:
        contract = self.model.contracts[pick % len(self.model.contracts)]
        now = self.clock.now()
        latest = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)
        end = latest - ago * SLOT
        start = end - slots * SLOT
        segment = MSegment(start, end, manual)
        monday = monday_of(start)
        accepted = (
            not contract.ended
            and not contract.paused
            and start >= contract.opened_at
            and monday_of(end - timedelta(microseconds=1)) == monday  # within one week
            and now < week_end(monday) + CLOSE_AFTER_WEEK_END  # the week is still open
            and not any(s.start < end and start < s.end for s in contract.segments)
        )
        note(f"log {contract.id} [{start:%a %d %H:%M}, {end:%a %d %H:%M}) manual={manual}: accepted={accepted}")

        def call() -> Segment:
            return self.escrow.hourly.log_segment(
                contract.id, Segment(start=start, end=end, memo="work", manual=manual)
            )

        if accepted:
            call()
            contract.segments.append(segment)
            self.model.first_logged.setdefault((contract.id, monday), len(self.model.first_logged))
            return
        before = self.segment_count()
        with pytest.raises(LedgerError):
            call()
        assert self.segment_count() == before, "a refused segment changed the timesheet"

    @precondition(lambda self: any(not c.ended for c in self.model.contracts))
    @rule(pick=st.integers(0, MAX_CONTRACTS - 1), limit=st.sampled_from(LIMITS))
    def change_limit(self, pick: int, limit: int) -> None:
        running = [c for c in self.model.contracts if not c.ended]
        contract = running[pick % len(running)]
        self.escrow.hourly.change_terms(contract.id, weekly_limit_hours=limit)
        contract.limits.append((self.clock.now(), limit))
        note(f"limit {contract.id} -> {limit} h")

    @precondition(lambda self: any(not c.ended for c in self.model.contracts))
    @rule(pick=st.integers(0, MAX_CONTRACTS - 1), rate=st.sampled_from(RATES))
    def change_rate(self, pick: int, rate: int) -> None:
        running = [c for c in self.model.contracts if not c.ended]
        contract = running[pick % len(running)]
        self.escrow.hourly.change_terms(contract.id, hourly_rate=rate)
        contract.rates.append((self.clock.now(), rate))
        note(f"rate {contract.id} -> {rate}/h")

    @precondition(lambda self: any(not c.ended for c in self.model.contracts))
    @rule(pick=st.integers(0, MAX_CONTRACTS - 1))
    def pause_or_resume(self, pick: int) -> None:
        running = [c for c in self.model.contracts if not c.ended]
        contract = running[pick % len(running)]
        if contract.paused:
            self.escrow.hourly.resume(contract.id)
        else:
            self.escrow.hourly.pause(contract.id)
        contract.paused = not contract.paused
        note(f"{'pause' if contract.paused else 'resume'} {contract.id}")

    @precondition(lambda self: any(not c.ended for c in self.model.contracts))
    @rule(pick=st.integers(0, MAX_CONTRACTS - 1))
    def end(self, pick: int) -> None:
        running = [c for c in self.model.contracts if not c.ended]
        contract = running[pick % len(running)]
        self.escrow.contracts.end_contract(contract.id, ended_by="freelancer")
        contract.ended = True
        note(f"end {contract.id}")

    @rule(
        freelancer=st.sampled_from(FREELANCERS),
        client=st.sampled_from(CLIENTS),
        amount=st.integers(1, 120_000),
    )
    def milestone_paid(self, freelancer: str, client: str, amount: int) -> None:
        """A fixed-price milestone of the same pair, funded and approved now."""
        contract = self.escrow.contracts.open_contract(
            client_id=client, freelancer_id=freelancer, currency="USD", title="fixed"
        )
        milestone = self.escrow.contracts.add_milestone(contract.id, title="m", amount=amount)
        self.escrow.funding.fund(milestone.id)
        self.escrow.approvals.approve(milestone.id)
        now = self.clock.now()
        self.model.release(freelancer, client, amount, now + MILESTONE_SECURITY_PERIOD)
        note(f"milestone {freelancer}/{client} {amount} released")

    @rule(hours=st.sampled_from((1, 3, 12, 30, 50, 24 * 3, 24 * 7, 24 * 17)))
    def time_passes(self, hours: int) -> None:
        now = self.clock.now() + timedelta(hours=hours)
        self.clock.set(now)
        self.escrow.orders.tick(now)
        self.model_tick(now)
        note(f"+{hours} h -> {now:%a %Y-%m-%d %H:%M}, tick")

    def model_tick(self, now: datetime) -> None:
        for contract in self.model.contracts:
            for monday in sorted({monday_of(s.start) for s in contract.segments}):
                closes = week_end(monday) + CLOSE_AFTER_WEEK_END
                if monday in contract.closed or now < closes:
                    continue
                amount = contract.bill(monday)
                contract.closed[monday] = amount
                if amount:
                    self.model.charged[(contract.id, monday)] = now
        due = []
        for (contract_id, monday), charged_at in self.model.charged.items():
            review_end = week_end(monday) + REVIEW_END_AFTER_WEEK_END
            if now >= review_end:
                released_at = max(review_end, charged_at)
                # The ledger's order: by release time; at one instant the releases its
                # timers fire come before those its charges' answers make; then by week
                # and by the order the weeks' close timers were first scheduled.
                late = charged_at >= review_end
                due.append((released_at, late, monday, self.model.first_logged[(contract_id, monday)], contract_id))
        for released_at, _, monday, _, contract_id in sorted(due):
            contract = next(c for c in self.model.contracts if c.id == contract_id)
            available_at = max(week_end(monday) + AVAILABLE_AFTER_WEEK_END, released_at)
            self.model.release(contract.freelancer, contract.client, contract.closed[monday], available_at)
            del self.model.charged[(contract_id, monday)]

    # --- what must hold after every step -------------------------------------------------

    @invariant()
    def hourly_agrees_with_the_model(self) -> None:
        report = self.book.audit()
        assert report.ok, report.summary()
        for contract in self.model.contracts:
            for view in self.escrow.hourly.weeks(contract.id):
                if view.week in contract.closed:
                    assert view.state not in ("open", "closing"), f"{contract.id} {view.week}: {view.state}"
                    assert view.bill.amount == contract.closed[view.week], (
                        f"{contract.id} {view.week}: billed {view.bill.amount}, model {contract.closed[view.week]}"
                    )
        for pair, lifetime in self.model.lifetime.items():
            assert self.book.lifetime_billings(*pair, "USD") == lifetime, f"{pair}: lifetime billings"
            assert self.model.fees[pair] == fee_total("USD", lifetime)
        now = self.clock.now()
        for freelancer in FREELANCERS:
            balance = self.escrow.payouts.balance(freelancer, "USD")
            expected = self.model.balances(freelancer, now)
            assert (balance.pending, balance.available) == expected, (
                f"{freelancer}: (pending, available) {(balance.pending, balance.available)} != model {expected}"
            )


@pytest.mark.parametrize("database", database_names())
def test_hourly_machine(database: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Hourly weeks, milestones, fees and balances hold over random histories of both."""
    if database == "sqlite":
        connect = sqlite_connector(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        connect = postgres_connector(request.getfixturevalue("postgres_database"))
    budget = stateful_settings(HOURLY_BUDGET)
    run_state_machine_as_test(lambda: HourlyMachine(connect), settings=budget)  # type: ignore[arg-type]
