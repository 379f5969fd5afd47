"""Hourly weeks whose money does not come, or is contested, checked by a state machine
against a real `Escrow` on SQLite and PostgreSQL.

`HourlyRiskMachine` drives one client and one freelancer with up to two hourly contracts
(a fixed rate each, tracked and manual time in the current week) through random
histories: the client's card failing and working again (every charge attempt while it
fails is declined), the client's payment method verified at some point, disputes of a
closed week's last minutes (accepted, contested and split by an operator, or left to
expire), refunds after release, and the clock moved on by hours to days with `tick()`.

The model does not predict on which tick a charge attempt runs: it takes from the
ledger the tick at which a week's charge succeeded (the provider's answer is an outside
event) and restates the rest of docs/architecture.md ("Hourly contracts") on its own:

- a week's amount is R(minutes x rate / 60); its protected part, for a client verified
  before the close, is its tracked segments' lines cut from that one cost function;
- a dispute of the last m billable minutes costs R(b x rate / 60) - R((b - m) x rate / 60);
- at review end a week whose charge has not succeeded advances min(protected, amount -
  cancelled - disputed and open); the advance is written off 30 days after the close
  unless a charge succeeds first, which recovers it;
- once charged and past review end, a week has released its amount less what is
  disputed, plus what a closed dispute released; a week never charged released its
  advance only;
- refunds after release lower the pair's lifetime billings; the freelancer keeps
  L - R(F(L)) of the pair's lifetime billings L.

After every step: the audit passes, and receivables, hourly protection written off,
lifetime billings and the freelancer's balance are the model's.
"""

from __future__ import annotations

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

from ledger.bootstrap import Services
from ledger.clock import FixedClock
from ledger.errors import LedgerError, UnknownAccount
from ledger.escrow.model import ContractPaused
from ledger.escrow.orders import OrderKind, OrderState
from ledger.escrow.service import Escrow
from ledger.escrow.timesheet import Segment
from ledger.gateway.simulated import SimulatedGateway
from tests.conftest import START, database_names
from tests.property.test_escrow_machine import fee_total, postgres_connector, sqlite_connector, stateful_settings
from tests.property.test_hourly_machine import (
    CLOSE_AFTER_WEEK_END,
    REVIEW_END_AFTER_WEEK_END,
    SLOT,
    monday_of,
    round_half_up,
    week_end,
)

#: (examples, steps per example) in the ci profile, on each database.
RISK_BUDGET = {"ci": (10, 30)}

# The policy (docs/architecture.md, "Hourly contracts"), restated; the calendar is the
# part-1 machine's.
RETRIES_FOR = timedelta(days=30)
ANSWER_PERIOD = timedelta(days=3)

CLIENT, FREELANCER = "cl_risk", "fr_risk"
RATES = (6000, 4500)  # minor units per hour: a week of one slot is above the minimum charge
RECEIVABLES = "assets:receivables:clients"
PROTECTION = "expenses:hourly_protection"


@dataclass
class MSegment:
    start: datetime
    end: datetime
    manual: bool

    @property
    def minutes(self) -> int:
        return int((self.end - self.start) / timedelta(minutes=1))


@dataclass
class MDispute:
    amount: int
    answer_by: datetime
    contested: bool = False
    closed: bool = False
    released: int = 0
    refunded: int = 0
    cancelled: int = 0
    closed_charged: bool = False  # closed when the week's charge had succeeded


@dataclass
class MWeek:
    contract: str
    monday: date
    amount: int
    protected: int
    billable: int
    charged_at: datetime | None = None
    dispute: MDispute | None = None
    advanced: int = 0
    written_off: int = 0
    review_ended: bool = False

    @property
    def closes(self) -> datetime:
        return week_end(self.monday) + CLOSE_AFTER_WEEK_END

    @property
    def review_end(self) -> datetime:
        return week_end(self.monday) + REVIEW_END_AFTER_WEEK_END

    @property
    def id(self) -> str:
        return f"{self.contract}:{self.monday.isoformat()}"

    def released(self) -> int:
        """What the week has released to the freelancer so far: its advance while its charge
        has not succeeded; once it has, the undisputed part from review end on, and what a
        closed dispute released (at its close if the week was charged by then, else with
        the rest at review end)."""
        if self.charged_at is None:
            return self.advanced
        dispute = self.dispute
        released = 0
        if self.review_ended:
            released += self.amount - (dispute.amount if dispute is not None else 0)
        if dispute is not None and dispute.closed and (self.review_ended or dispute.closed_charged):
            released += dispute.released
        return released

    def receivable(self) -> int:
        return self.advanced if self.charged_at is None and not self.written_off else 0


@dataclass
class MContract:
    id: str
    rate: int
    opened_at: datetime
    segments: list[MSegment] = field(default_factory=list)

    def bill(self, monday: date, verified_before_close: bool) -> tuple[int, int, int]:
        """(amount, protected, billable minutes) of the week, in time order at one rate."""
        minutes = protected = 0
        for segment in sorted((s for s in self.segments if monday_of(s.start) == monday), key=lambda s: s.start):
            line = self.cost(minutes + segment.minutes) - self.cost(minutes)
            minutes += segment.minutes
            if not segment.manual:
                protected += line
        return self.cost(minutes), protected if verified_before_close else 0, minutes

    def cost(self, minutes: int) -> int:
        return round_half_up(Fraction(minutes * self.rate, 60))


@dataclass
class Model:
    contracts: list[MContract] = field(default_factory=list)
    weeks: dict[str, MWeek] = field(default_factory=dict)
    verified_at: datetime | None = None
    refunded_after_release: int = 0

    def lifetime(self) -> int:
        return sum(week.released() for week in self.weeks.values()) - self.refunded_after_release

    def close_dispute(self, week: MWeek, *, release: int, refund: int) -> None:
        dispute = week.dispute
        assert dispute is not None
        dispute.closed, dispute.released, dispute.refunded = True, release, refund
        dispute.closed_charged = week.charged_at is not None
        if week.charged_at is None:
            dispute.cancelled = refund


class HourlyRiskMachine(RuleBasedStateMachine):
    def __init__(self, connect: Callable[[FixedClock], tuple[Any, Callable[[], None]]]) -> None:
        super().__init__()
        self.clock = FixedClock(START)  # a Monday, 09:00
        self.book, self._cleanup = connect(self.clock)
        self.gateway = SimulatedGateway()
        services = Services.over(self.book, self.gateway)
        self.escrow: Escrow = services.escrow
        self.finance = services.finance
        self.model = Model()

    def teardown(self) -> None:
        self.book.close()
        self._cleanup()

    def balance(self, code: str) -> int:
        try:
            return self.book.balance(code, "USD")
        except UnknownAccount:
            return 0

    # --- rules ---------------------------------------------------------------------------

    @precondition(lambda self: len(self.model.contracts) < len(RATES))
    @rule()
    def open_hourly(self) -> None:
        rate = RATES[len(self.model.contracts)]
        contract = self.escrow.hourly.open_contract(
            client_id=CLIENT,
            freelancer_id=FREELANCER,
            currency="USD",
            title="hours",
            hourly_rate=rate,
            weekly_limit_hours=40,
            manual_time_allowed=True,
        )
        self.model.contracts.append(MContract(contract.id, rate, self.clock.now()))
        note(f"open {contract.id} at {rate}/h")

    @precondition(lambda self: self.model.contracts)
    @rule(pick=st.integers(0, 1), slots=st.integers(1, 6), manual=st.booleans())
    def log_time(self, pick: int, slots: int, manual: bool) -> None:
        """Time ending now (on a slot boundary), after the contract's last segment, in one week."""
        contract = self.model.contracts[pick % len(self.model.contracts)]
        now = self.clock.now()
        end = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)
        start = end - slots * SLOT
        last = max((s.end for s in contract.segments), default=contract.opened_at)
        if start < last or monday_of(start) != monday_of(end - timedelta(microseconds=1)):
            return
        try:
            self.escrow.hourly.log_segment(contract.id, Segment(start=start, end=end, memo="work", manual=manual))
        except ContractPaused:
            note(f"log {contract.id}: refused, the contract is paused")
            return
        contract.segments.append(MSegment(start, end, manual))
        note(f"log {contract.id} [{start:%a %d %H:%M}, {end:%a %d %H:%M}) manual={manual}")

    @rule(failing=st.booleans())
    def card(self, failing: bool) -> None:
        """The client's card declines every charge from now on, or works again."""
        self.gateway._declines[:] = ["insufficient_funds"] * 10_000 if failing else []
        note(f"the client's card {'fails' if failing else 'works'}")

    @precondition(lambda self: self.model.verified_at is None)
    @rule()
    def verify(self) -> None:
        now = self.clock.now()
        self.finance.set_party(CLIENT, display_name="Client", payment_method_verified_at=now.isoformat())
        self.model.verified_at = now
        note(f"the client's payment method is verified at {now:%a %d %H:%M}")

    def _disputable(self) -> list[MWeek]:
        now = self.clock.now()
        return [w for w in self.model.weeks.values() if w.amount and w.dispute is None and now < w.review_end]

    @precondition(lambda self: self._disputable())
    @rule(pick=st.integers(0, 7), share=st.integers(1, 100))
    def dispute(self, pick: int, share: int) -> None:
        weeks = self._disputable()
        week = weeks[pick % len(weeks)]
        minutes = max(1, week.billable * share // 100)
        contract = next(c for c in self.model.contracts if c.id == week.contract)
        amount = contract.cost(week.billable) - contract.cost(week.billable - minutes)
        if amount == 0:
            return
        self.escrow.hourly.dispute_week(week.contract, week.monday, minutes=minutes, reason="not worked")
        week.dispute = MDispute(amount, self.clock.now() + ANSWER_PERIOD)
        note(f"dispute {week.id}: last {minutes} min, {amount}")

    def _open_disputes(self) -> list[MWeek]:
        return [w for w in self.model.weeks.values() if w.dispute is not None and not w.dispute.closed]

    @precondition(lambda self: self._open_disputes())
    @rule(pick=st.integers(0, 7), answer=st.sampled_from(("accept", "contest", "resolve")), share=st.integers(0, 100))
    def answer(self, pick: int, answer: str, share: int) -> None:
        weeks = self._open_disputes()
        week = weeks[pick % len(weeks)]
        dispute = week.dispute
        assert dispute is not None
        hourly = self.escrow.hourly
        if answer == "accept" and not dispute.contested:
            hourly.accept_week_dispute(week.contract, week.monday)
            self.model.close_dispute(week, release=0, refund=dispute.amount)
        elif answer == "contest" and not dispute.contested and self.clock.now() < dispute.answer_by:
            hourly.contest_week_dispute(week.contract, week.monday)
            dispute.contested = True
        elif answer == "resolve" and dispute.contested:
            release = dispute.amount * share // 100
            refund = dispute.amount - release
            hourly.resolve_week_dispute(week.contract, week.monday, release=release, refund=refund)
            self.model.close_dispute(week, release=release, refund=refund)
        else:
            return
        note(f"{answer} the dispute of {week.id}")

    @precondition(lambda self: any(w.released() for w in self.model.weeks.values()))
    @rule(pick=st.integers(0, 15), share=st.integers(1, 100))
    def refund_after_release(self, pick: int, share: int) -> None:
        payments = [
            p for week in self.model.weeks.values() for p in self.escrow.reads.payments(week.id) if p.refunded < p.gross
        ]
        if not payments:
            return
        payment = payments[pick % len(payments)]
        amount = max(1, (payment.gross - payment.refunded) * share // 100)
        lifetime = self.book.lifetime_billings(FREELANCER, CLIENT, "USD")
        try:
            self.escrow.refunds.refund_payment(payment.id, amount)
        except LedgerError as refused:  # beyond the freelancer's balance
            note(f"refund {amount} of {payment.id}: refused ({refused})")
            assert self.book.lifetime_billings(FREELANCER, CLIENT, "USD") == lifetime
            return
        self.model.refunded_after_release += amount
        note(f"refund {amount} of {payment.id}")

    @rule(hours=st.sampled_from((6, 24, 48, 24 * 4, 24 * 9)))
    def time_passes(self, hours: int) -> None:
        now = self.clock.now() + timedelta(hours=hours)
        self.clock.set(now)
        self.escrow.orders.tick(now)
        self.model_tick(now)
        note(f"+{hours} h -> {now:%a %Y-%m-%d %H:%M}, tick")

    def model_tick(self, now: datetime) -> None:
        model = self.model
        for contract in model.contracts:
            for monday in sorted({monday_of(s.start) for s in contract.segments}):
                week_id = f"{contract.id}:{monday.isoformat()}"
                closes = week_end(monday) + CLOSE_AFTER_WEEK_END
                if week_id in model.weeks or now < closes:
                    continue
                verified = model.verified_at is not None and model.verified_at < closes
                amount, protected, billable = contract.bill(monday, verified)
                model.weeks[week_id] = MWeek(contract.id, monday, amount, protected, billable)
        # The week's timers in time order (the dispute's expiry, its review end, its
        # write-off), then the charges that succeeded in this tick.
        events: list[tuple[datetime, int, MWeek]] = []
        for week in model.weeks.values():
            if week.dispute is not None and not week.dispute.closed and not week.dispute.contested:
                events.append((week.dispute.answer_by, 0, week))
            if not week.review_ended and week.amount:
                events.append((week.review_end, 1, week))
            if week.advanced and week.charged_at is None and not week.written_off:
                events.append((week.closes + RETRIES_FOR, 2, week))
        for due, kind, week in sorted(events, key=lambda e: (e[0], e[1])):
            if due > now:
                continue
            if kind == 0:
                model.close_dispute(week, release=0, refund=week.dispute.amount)  # type: ignore[union-attr]
            elif kind == 1:
                week.review_ended = True
                if week.charged_at is None:
                    dispute = week.dispute
                    cancelled = dispute.cancelled if dispute is not None else 0
                    held = dispute.amount if dispute is not None and not dispute.closed else 0
                    week.advanced = max(0, min(week.protected, week.amount - cancelled - held))
            elif week.charged_at is None:
                week.written_off = week.advanced
        for week in model.weeks.values():
            if week.amount and week.charged_at is None and self._charge_succeeded(week.id):
                week.charged_at = now
                note(f"    {week.id}: charged")

    def _charge_succeeded(self, week_id: str) -> bool:
        orders = self.book.transaction(
            lambda uow: uow.orders.of_milestone(week_id, kinds=(OrderKind.FUND,)), read_only=True
        )
        return any(order.state is OrderState.SUCCEEDED for order in orders)

    # --- what must hold after every step -------------------------------------------------

    @invariant()
    def money_agrees_with_the_model(self) -> None:
        report = self.book.audit()
        assert report.ok, report.summary()
        model = self.model
        expected_receivables = sum(week.receivable() for week in model.weeks.values())
        assert self.balance(RECEIVABLES) == expected_receivables, "receivables"
        assert self.balance(PROTECTION) == sum(week.written_off for week in model.weeks.values()), "written off"
        lifetime = model.lifetime()
        assert self.book.lifetime_billings(FREELANCER, CLIENT, "USD") == lifetime, "lifetime billings"
        balance = self.escrow.payouts.balance(FREELANCER, "USD")
        assert balance.pending + balance.available == lifetime - fee_total("USD", lifetime), "freelancer's balance"


@pytest.mark.parametrize("database", database_names())
def test_hourly_risk_machine(database: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Failed and recovered charges, protection, disputes and refunds of hourly weeks hold
    the audit, receivables and balances over random histories."""
    if database == "sqlite":
        connect = sqlite_connector(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        connect = postgres_connector(request.getfixturevalue("postgres_database"))
    budget = stateful_settings(RISK_BUDGET)
    run_state_machine_as_test(lambda: HourlyRiskMachine(connect), settings=budget)  # type: ignore[arg-type]
