"""`ledger simulate`: a seeded marketplace run through the service layer, then audited.

What it simulates. `clients` clients (`cl_001`, ...) and `freelancers` freelancers
(`fr_001`, ...) trade for `months` months of simulated time, starting Monday
2026-01-05 00:00 UTC, mostly in USD with some fixed-price contracts in EUR. Each day,
between 09:00 and 17:00, a handful of actions happen, each drawn by weight: contracts
with milestones are opened; milestones are funded, submitted, sent back for changes,
approved in full, in part or beyond what they hold (a bonus charged to the client);
contracts are ended by either side (a refund request the freelancer accepts, disputes
or leaves to expire; or a refund at once); disputes are resolved by a split; released
payments are refunded; the client's bank charges a funding back and the dispute is
later won or lost; freelancers withdraw; the fee schedule switches between `classic`
and `flat-10`; hourly contracts log time every weekday evening, are billed by the week
(closed Monday 12:00, released Saturday, available Wednesday), get bonuses and have
their hours disputed. Provider faults are injected through the simulated gateway:
declined cards and payouts, 3-D Secure the payer passes or fails, and timeouts on a
funding charge, a refund or a payout (the provider down, or its answer lost after it
did the work), which the dispatcher's retries settle. Some actions
are deliberately wrong (approving a draft, paying out more than is available): the
ledger's refusal (a `Conflict` or `InvalidRequest`) is counted, never fatal; any other
error propagates. Between actions the clock moves on and `escrow.orders.tick` fires
the timers (auto-release after 14 days, the 5-day pending period, refund requests,
the hourly week's close, review end and charge retries) and sends the payment
orders. At the end the whole ledger is audited, the provider's books included.

Why it is deterministic. Every choice comes from one `random.Random(seed)`, and the
services' clock is a `FixedClock` the simulation sets itself, so the same seed and
parameters make the same calls at the same instants. The ids the services generate
are random, so no choice ever depends on them: the simulation keeps its own lists,
in creation order, of what it created, and sorts what it reads back by its contents
(a milestone's payments by release time, kind and amount). A provider fault is
injected only just before a call that is sure to reach the provider with that one
charge or payout (the request's own payment order, or the only weekly charge due
at a Monday close), so it never lands on a call chosen by database order. The
summary holds no id and no wall-clock time: only parameters, sums in integer minor
units, counts and the audit's outcome, gathered over sorted keys, so it is the same
on SQLite and PostgreSQL.

    services = Services.over(connect(url, clock=FixedClock(START), migrate=True), SimulatedGateway(...))
    summary = simulate(services, seed=7, clients=3, freelancers=3, months=1)
    print("\\n".join(summary.lines()))
"""

from __future__ import annotations

import functools
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from ledger.accounts import Side
from ledger.bootstrap import Services
from ledger.clock import FixedClock
from ledger.errors import Conflict, InvalidRequest
from ledger.escrow.model import DisputeOutcome, MilestoneState, Payment, PayoutState
from ledger.escrow.timesheet import Segment
from ledger.fees.model import FeeEvent
from ledger.gateway import PaymentFailed
from ledger.gateway.simulated import SimulatedGateway
from ledger.journal import Entry
from ledger.kinds import EntryKind
from ledger.money import format_amount

T = TypeVar("T")
S = MilestoneState

#: Where simulated time starts: a Monday, so the first hourly week is a whole one.
START = datetime(2026, 1, 5, tzinfo=UTC)
CURRENCY, SECOND_CURRENCY = "USD", "EUR"
#: Most parameters a run accepts: party ids have three digits; two years of time.
MAX_PARTIES, MAX_MONTHS = 999, 24

DAY, MINUTE, SLOT = timedelta(days=1), timedelta(minutes=1), timedelta(minutes=10)
WORKDAY_START, WORKDAY_MINUTES = timedelta(hours=9), 8 * 60
NOON, EVENING, NIGHT = timedelta(hours=12), timedelta(hours=18), timedelta(minutes=5)
#: A released payment may be refunded within this time (the domain's window, restated
#: so the simulation picks payments it still may refund).
REFUND_WINDOW = timedelta(days=180)
DISPUTE_FEE = 15_00  # the bank's fee on a chargeback, in cents
HOURLY_RATES = (2_500, 3_333, 4_500, 6_000, 8_500)  # cents per hour
WEEKLY_LIMITS = (10, 20, 30, 40)  # hours
SCHEDULES = ("classic", "flat-10")

#: Money volumes per currency, by journal entry kind; a reversal counts against its kind.
VOLUME_KINDS: dict[str, tuple[tuple[str, int], ...]] = {
    "funded": ((EntryKind.FUND, 1), (EntryKind.FUND_BONUS, 1)),
    "released": ((EntryKind.RELEASE, 1),),
    "refunded": ((EntryKind.REFUND_SETTLED, 1),),
    "refunded_before_release": ((EntryKind.REFUND, 1),),
    "refunded_after_release": ((EntryKind.PAYMENT_REFUND, 1),),
    "charged_back": ((EntryKind.DISPUTE_FUNDS_WITHDRAWN, 1), (EntryKind.DISPUTE_FUNDS_REINSTATED, -1)),
    "paid_out": ((EntryKind.PAYOUT_PAID, 1), (EntryKind.PAYOUT_REVERSED, -1)),
}


class SimulationNotPossible(InvalidRequest):
    """The services cannot run a reproducible simulation: their clock is not a
    `FixedClock` the simulation can move, their gateway is not the simulated provider,
    the database is not empty, or a parameter is out of range."""

    code = "simulation-not-possible"


# --- the summary -------------------------------------------------------------------------


@dataclass(frozen=True)
class Volumes:
    """Money moved in one currency, integer minor units.

    Attributes:
        funded: collected from clients into escrow (fundings, bonuses, weekly charges).
        released: paid from escrow to freelancers, gross of the service fee.
        refunded: returned to clients by the provider; refunded_before_release and
            refunded_after_release: what was sent back out of escrow and out of released
            payments.
        charged_back: what the clients' banks withdrew, less what they reinstated.
        paid_out: withdrawn by freelancers and paid by the provider.
        service_fees: fees charged less fees returned.
    """

    currency: str
    funded: int
    released: int
    refunded: int
    refunded_before_release: int
    refunded_after_release: int
    charged_back: int
    paid_out: int
    service_fees: int

    def amounts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in (*VOLUME_KINDS, "service_fees")}


@dataclass(frozen=True)
class TierFees:
    """The fee events of one tier of one schedule, in one currency (minor units).

    Attributes:
        rate: the tier's rate (0.2 is 20%).
        billed, fee: the payments' parts billed in the tier and the fee charged on them.
        refunded, fee_returned: the refunds' parts taken back from the tier, and their fee.
    """

    currency: str
    schedule: str
    rate: Decimal
    billed: int
    fee: int
    refunded: int
    fee_returned: int


@dataclass(frozen=True)
class ActionCount:
    """How often an action was done, refused by the ledger, or declined by the provider."""

    action: str
    done: int
    refused: int
    declined: int


@dataclass(frozen=True)
class SimulationSummary:
    """What a run did; the same for one seed and parameters on every database.

    Attributes:
        seed, clients, freelancers, months: the parameters; start and end: simulated time.
        volumes: per currency, sorted by currency.
        fee_tiers: per currency, schedule and rate.
        actions: per action, sorted by name.
        refunds_before_release, refunds_after_release: how many refunds the journal has.
        chargebacks_won, chargebacks_lost, chargebacks_open: the outcomes of the disputes.
        hourly_weeks_billed: hourly weeks released to their freelancer; hourly_weeks:
            every week with time, by state.
        faults: provider faults injected, by kind.
        retries_answered_otherwise: by action, retries with the first request's key that
            did not answer the first result (the `<action>_retried` actions count the retries).
        audit_ok: every invariant holds; audit_failed: the names of the checks that failed.
    """

    seed: int
    clients: int
    freelancers: int
    months: int
    start: datetime
    end: datetime
    volumes: tuple[Volumes, ...]
    fee_tiers: tuple[TierFees, ...]
    actions: tuple[ActionCount, ...]
    refunds_before_release: int
    refunds_after_release: int
    chargebacks_won: int
    chargebacks_lost: int
    chargebacks_open: int
    hourly_weeks_billed: int
    hourly_weeks: tuple[tuple[str, int], ...]
    faults: tuple[tuple[str, int], ...]
    retries_answered_otherwise: tuple[tuple[str, int], ...]
    audit_ok: bool
    audit_failed: tuple[str, ...]

    def volume(self, currency: str) -> Volumes:
        """The volumes in `currency` (zeros when none moved)."""
        found = [v for v in self.volumes if v.currency == currency]
        return found[0] if found else Volumes(currency, 0, 0, 0, 0, 0, 0, 0, 0)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able report: amounts are decimal strings of the currency, never numbers."""
        return {
            "seed": self.seed,
            "clients": self.clients,
            "freelancers": self.freelancers,
            "months": self.months,
            "start": _instant(self.start),
            "end": _instant(self.end),
            "volumes": {
                v.currency: {name: format_amount(amount, v.currency) for name, amount in v.amounts().items()}
                for v in self.volumes
            },
            "fee_tiers": [
                {
                    "currency": t.currency,
                    "schedule": t.schedule,
                    "rate": _percent(t.rate),
                    "billed": format_amount(t.billed, t.currency),
                    "fee": format_amount(t.fee, t.currency),
                    "refunded": format_amount(t.refunded, t.currency),
                    "fee_returned": format_amount(t.fee_returned, t.currency),
                }
                for t in self.fee_tiers
            ],
            "actions": {a.action: {"done": a.done, "refused": a.refused, "declined": a.declined} for a in self.actions},
            "refunds": {"before_release": self.refunds_before_release, "after_release": self.refunds_after_release},
            "chargebacks": {"won": self.chargebacks_won, "lost": self.chargebacks_lost, "open": self.chargebacks_open},
            "hourly_weeks": {"billed": self.hourly_weeks_billed, "by_state": dict(self.hourly_weeks)},
            "faults": dict(self.faults),
            "retries_answered_otherwise": dict(self.retries_answered_otherwise),
            "audit": {"ok": self.audit_ok, "failed": list(self.audit_failed)},
        }

    def lines(self) -> list[str]:
        """The summary for a person to read."""
        lines = [
            f"simulation seed {self.seed}: {self.clients} clients, {self.freelancers} freelancers, "
            f"{self.months} month{'' if self.months == 1 else 's'} [{_instant(self.start)}, {_instant(self.end)})"
        ]
        for v in self.volumes:
            lines.append(f"{v.currency}:")
            for name, amount in v.amounts().items():
                lines.append(f"  {name.replace('_', ' '):<24} {format_amount(amount, v.currency):>16}")
        lines.append("fees by tier:")
        for t in self.fee_tiers:
            lines.append(
                f"  {t.currency} {t.schedule:<8} {_percent(t.rate):>4}  billed {format_amount(t.billed, t.currency):>14}"
                f"  fee {format_amount(t.fee, t.currency):>12}  refunded {format_amount(t.refunded, t.currency):>12}"
                f"  fee returned {format_amount(t.fee_returned, t.currency):>10}"
            )
        lines.append("actions (done / refused / declined):")
        for a in self.actions:
            lines.append(f"  {a.action:<24} {a.done:>6} {a.refused:>6} {a.declined:>6}")
        lines.append(f"refunds: {self.refunds_before_release} before release, {self.refunds_after_release} after")
        lines.append(
            f"chargebacks: {self.chargebacks_won} won, {self.chargebacks_lost} lost, {self.chargebacks_open} open"
        )
        weeks = ", ".join(f"{state} {count}" for state, count in self.hourly_weeks) or "none"
        lines.append(f"hourly weeks billed: {self.hourly_weeks_billed} (by state: {weeks})")
        faults = ", ".join(f"{kind} {count}" for kind, count in self.faults) or "none"
        lines.append(f"provider faults injected: {faults}")
        if self.retries_answered_otherwise:
            otherwise = ", ".join(f"{action} {count}" for action, count in self.retries_answered_otherwise)
            lines.append(f"retries with a request key that answered another result: {otherwise}")
        failed = ", ".join(self.audit_failed)
        lines.append("audit: all invariants hold" if self.audit_ok else f"audit: INVARIANTS VIOLATED: {failed}")
        return lines


def _instant(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).normalize():f}%"


# --- what the simulation keeps of what it made ---------------------------------------------


@dataclass(eq=False)
class _Contract:
    id: str
    client: str
    freelancer: str
    currency: str
    opened_at: datetime
    hourly: bool = False
    manual_time: bool = False
    ended: bool = False
    weeks: set[date] = field(default_factory=set)  # Mondays of the weeks it logged time in


@dataclass(eq=False)
class _Milestone:
    id: str
    contract: _Contract


@dataclass
class _Chargeback:
    id: str
    milestone: _Milestone
    closes_on: datetime
    won: bool


# --- running it ----------------------------------------------------------------------------


def simulate(
    services: Services,
    *,
    seed: int,
    clients: int,
    freelancers: int,
    months: int,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationSummary:
    """Run the marketplace for `months` months from `START` on an empty database, and
    audit it. The services' clock must be a `FixedClock` (the simulation sets it to
    `START` and moves it) and their gateway a `SimulatedGateway` (whose levers inject
    the faults and whose books the audit compares). `progress(done, total)` is told
    the simulated days as they pass."""
    for name, value, most in (("clients", clients, MAX_PARTIES), ("freelancers", freelancers, MAX_PARTIES)):
        _require_count(name, value, most)
    _require_count("months", months, MAX_MONTHS)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SimulationNotPossible(f"seed must be an integer, not {seed!r}", field="seed")
    clock = services.book.clock
    if not isinstance(clock, FixedClock):
        raise SimulationNotPossible(
            "the simulation moves time itself: build the services over a FixedClock (ledger.clock)", field="clock"
        )
    gateway = services.gateway
    if not isinstance(gateway, SimulatedGateway):
        raise SimulationNotPossible(
            "the simulation injects provider faults: build the services over the simulated gateway "
            "(LEDGER_GATEWAY=simulated)",
            field="gateway",
        )
    if not services.book.transaction(lambda uow: uow.reports.is_empty(), read_only=True):
        raise SimulationNotPossible(
            "the simulation only runs on an empty database: point LEDGER_DATABASE_URL at a new one "
            "(e.g. sqlite:///simulation.sqlite3) and run `ledger db upgrade` there",
            field="database",
        )
    clock.set(START)
    end = _add_months(START, months)
    market = _Market(
        services, clock, gateway, random.Random(seed), random.Random(f"outages:{seed}"), clients, freelancers
    )
    days = (end - START).days
    if progress is not None:
        progress(0, days)
    for day in range(days):
        market.run_day(START + day * DAY)
        if progress is not None:
            progress(day + 1, days)
    market.tick(end)
    return market.summary(seed=seed, months=months, end=end)


def _require_count(name: str, value: object, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise SimulationNotPossible(f"{name} must be a whole number from 1 to {most}, not {value!r}", field=name)


def _add_months(moment: datetime, months: int) -> datetime:
    month = moment.month - 1 + months
    return moment.replace(year=moment.year + month // 12, month=month % 12 + 1)


class _Market:
    """The simulated marketplace: its parties, what it created, and its tallies."""

    def __init__(
        self,
        services: Services,
        clock: FixedClock,
        gateway: SimulatedGateway,
        rng: random.Random,
        outage_rng: random.Random,
        clients: int,
        freelancers: int,
    ) -> None:
        self.services, self.escrow, self.book = services, services.escrow, services.book
        self.clock, self.gateway, self.rng = clock, gateway, rng
        # Outages are drawn from a stream of their own (`outage_rng`), so that drawing
        # them takes nothing from the main stream's choices.
        self.outage_rng = outage_rng
        self.clients = [f"cl_{n:03d}" for n in range(1, clients + 1)]
        self.freelancers = [f"fr_{n:03d}" for n in range(1, freelancers + 1)]
        self.contracts: list[_Contract] = []
        self.live: list[_Milestone] = []  # milestones not yet seen final
        self.paid: list[_Milestone] = []  # subjects with payments released, in the order first seen so
        self.paid_ids: set[str] = set()
        self.disputed: set[str] = set()  # milestones charged back once (a milestone is disputed at most once)
        self.chargebacks: list[_Chargeback] = []
        self.week_disputes: list[tuple[_Contract, date]] = []
        self.schedules: list[tuple[datetime, str]] = [(START, SCHEDULES[0])]
        self.done: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.declined: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.requests_keyed = 0
        self.retries_answered_otherwise: Counter[str] = Counter()
        for number, client in enumerate(self.clients):
            # Half the clients have a verified card, so their tracked hours are protected.
            verified = "2025-12-01T00:00:00Z" if number % 2 == 0 else None
            services.finance.set_party(
                client, display_name=f"Client {client[3:]}", country="US", payment_method_verified_at=verified
            )
        for freelancer in self.freelancers:
            services.finance.set_party(freelancer, display_name=f"Freelancer {freelancer[3:]}", country="GB")

    # --- time ----------------------------------------------------------------------------

    def tick(self, at: datetime) -> None:
        self.clock.set(at)
        self.escrow.orders.tick(at)

    def run_day(self, day: datetime) -> None:
        """Night: timers and the banks' decisions; the working day's actions in time order,
        with the noon tick (a Monday's weekly close) among them; the evening's time logs."""
        self.tick(day + NIGHT)
        self.close_chargebacks(day + NIGHT)
        if day.weekday() == 5:
            self.weeks_released((day - 12 * DAY).date())
        count = self.rng.randint(1, 3 + (len(self.clients) + len(self.freelancers)) // 2)
        minutes = sorted(self.rng.randrange(WORKDAY_MINUTES) for _ in range(count))
        moments = [(day + WORKDAY_START + m * MINUTE + i * timedelta(seconds=1), 1) for i, m in enumerate(minutes)]
        for moment, is_action in sorted([*moments, (day + NOON, 0)]):
            if is_action:
                self.tick(moment)
                self.act()
            else:
                self.noon(moment)
        if day.weekday() < 5:
            self.clock.set(day + EVENING)
            self.log_time(day)

    def noon(self, moment: datetime) -> None:
        """A Monday at noon closes last week: when exactly one weekly charge is due then,
        the card may be declined or ask for the payer (off-session: a failure too)."""
        if moment.weekday() == 0:
            monday = (moment - 7 * DAY).date()
            closing = [c for c in self.contracts if c.hourly and monday in c.weeks]
            if len(closing) == 1 and self.rng.random() < 0.5:
                if self.rng.random() < 0.7:
                    self.gateway.decline_next("card_declined")
                    self.faults["weekly_charge_declined"] += 1
                else:
                    self.gateway.require_action_next()
                    self.faults["weekly_charge_requires_action"] += 1
        self.tick(moment)

    # --- choosing --------------------------------------------------------------------------

    def act(self) -> None:
        running = [c for c in self.contracts if not c.ended and not c.hourly]
        hourly = [c for c in self.contracts if not c.ended and c.hourly]
        weekday = self.clock.now().weekday()
        pending_schedule = self.schedules[-1][0] > self.clock.now()
        options: list[tuple[Callable[[], None], float]] = [
            (self.open_contract, 2.0 if len(self.live) < 3 * len(self.clients) else 0.3),
            (self.add_milestone, 1.0 if running else 0.0),
            (self.advance, 9.0 if self.live else 0.0),
            (self.end_contract, 0.6 if running else 0.0),
            (self.refund_payment, 1.0 if self.paid else 0.0),
            (self.charge_back, 0.6 if self.live or self.paid else 0.0),
            (self.payout, 2.0 if self.contracts else 0.0),
            (self.open_hourly, 0.8 if len(hourly) < max(1, len(self.clients) // 2) else 0.0),
            (self.hourly_bonus, 0.3 if hourly else 0.0),
            (self.dispute_week, 0.6 if 1 <= weekday <= 4 and hourly else 0.0),
            (self.answer_week_dispute, 1.5 if self.week_disputes else 0.0),
            (self.change_hourly_terms, 0.3 if hourly else 0.0),
            (self.end_hourly, 0.1 if hourly else 0.0),
            (self.change_fee_schedule, 0.0 if pending_schedule else 0.12),
            (self.provoke, 0.8),
        ]
        [action] = self.rng.choices([a for a, _ in options], weights=[w for _, w in options])
        action()

    def pick(self, items: list[T]) -> T:
        return items[self.rng.randrange(len(items))]

    def attempt(self, action: str, call: Callable[[], T]) -> T | None:
        """Run one request; a refusal by the ledger is counted (None), anything else propagates."""
        try:
            result = call()
        except PaymentFailed:
            self.declined[action] += 1
            return None
        except (Conflict, InvalidRequest):
            self.refused[action] += 1
            return None
        self.done[action] += 1
        return result

    def arm_outage(self) -> str | None:
        """Now and then, the provider times out on the request's own call (the next to
        reach it): before doing anything, or after, its answer lost."""
        draw = self.outage_rng.random()
        if draw < 0.04:
            self.gateway.unavailable_next()
            return "provider_down"
        if draw < 0.08:
            self.gateway.lose_answer_next()
            return "answer_lost"
        return None

    def outage_met(self, call: str, outage: str | None) -> None:
        """Count an outage its request's call met; withdraw one it did not (the request
        was refused, or reached the provider not at all), so no later call meets it."""
        if outage is None:
            return
        if self.gateway.outages_armed:
            self.gateway.clear_outages()
        else:
            self.faults[f"{call}_{outage}"] += 1

    def sent_maybe_twice(self, action: str, call: Callable[..., T], identity: Callable[[T], object]) -> T | None:
        """Send a request; now and then with a request key, twice, as a client whose first
        answer was lost would. The retry must answer the first result and move nothing
        more (the audit sees to the money); an answer naming another result is counted."""
        if self.rng.random() >= 0.1:
            return self.attempt(action, call)
        self.requests_keyed += 1
        key = f"sim-{self.requests_keyed:06d}"
        first = self.attempt(action, lambda: call(request_key=key))
        again = self.attempt(f"{action}_retried", lambda: call(request_key=key))
        if first is not None and (again is None or identity(again) != identity(first)):
            self.retries_answered_otherwise[action] += 1
        return first

    def amount(self) -> int:
        """A milestone price: mostly hundreds, some thousands, a few over 3,000.00."""
        draw = self.rng.random()
        dollars = (
            self.rng.randint(50, 500)
            if draw < 0.55
            else self.rng.randint(500, 3_000)
            if draw < 0.9
            else self.rng.randint(3_000, 12_000)
        )
        return dollars * 100 + self.rng.choice((0, 0, 0, 50, 99))

    # --- fixed-price contracts ----------------------------------------------------------------

    def open_contract(self) -> None:
        client, freelancer = self.pick(self.clients), self.pick(self.freelancers)
        currency = SECOND_CURRENCY if self.rng.random() < 0.15 else CURRENCY
        opened = self.attempt(
            "open_contract",
            lambda: self.escrow.contracts.open_contract(
                client_id=client, freelancer_id=freelancer, currency=currency, title="Project"
            ),
        )
        if opened is None:
            return
        contract = _Contract(opened.id, client, freelancer, currency, self.clock.now())
        self.contracts.append(contract)
        for _ in range(self.rng.randint(1, 4)):
            self.new_milestone(contract)

    def new_milestone(self, contract: _Contract) -> None:
        amount = self.amount()
        added = self.attempt(
            "add_milestone", lambda: self.escrow.contracts.add_milestone(contract.id, title="Milestone", amount=amount)
        )
        if added is not None:
            self.live.append(_Milestone(added.id, contract))

    def add_milestone(self) -> None:
        self.new_milestone(self.pick([c for c in self.contracts if not c.ended and not c.hourly]))

    def end_contract(self) -> None:
        contract = self.pick([c for c in self.contracts if not c.ended and not c.hourly])
        by = "client" if self.rng.random() < 0.6 else "freelancer"
        if self.attempt(f"end_contract_by_{by}", lambda: self.escrow.contracts.end_contract(contract.id, ended_by=by)):
            contract.ended = True

    def advance(self) -> None:
        """Move one milestone on as its parties would, from where it stands now."""
        m = self.pick(self.live)
        milestone = self.escrow.reads.milestone(m.id)
        state, held = milestone.state, milestone.held
        draw = self.rng.random()
        if state in (S.RELEASED, S.SETTLED, S.REFUNDED) or (state is S.DRAFT and m.contract.ended):
            self.live.remove(m)
            if state in (S.RELEASED, S.SETTLED):
                self.mark_paid(m)
        elif state in (S.DRAFT, S.FUNDING):
            self.fund(m)
        elif state in (S.FUNDED, S.CHANGES_REQUESTED):
            if draw < 0.7:
                self.attempt("submit", lambda: self.escrow.contracts.submit(m.id))
            else:
                self.approve(m, held)
        elif state is S.SUBMITTED:
            if draw < 0.15:
                self.attempt("request_changes", lambda: self.escrow.contracts.request_changes(m.id))
            elif draw < 0.85:
                self.approve(m, held)
            # else the client stays silent: the review clock will release it
        elif state is S.REFUND_REQUESTED:
            if draw < 0.4:
                self.attempt("accept_refund_request", lambda: self.escrow.refunds.accept_refund_request(m.id))
            elif draw < 0.8:
                self.attempt("dispute_refund_request", lambda: self.escrow.refunds.dispute_refund_request(m.id))
            # else the freelancer stays silent: the request expires into a refund
        elif state is S.DISPUTED:
            release = held * self.rng.randint(0, 100) // 100
            done = self.attempt(
                "resolve_dispute",
                lambda: self.escrow.refunds.resolve_dispute(m.id, release=release, refund=held - release),
            )
            if done is not None and release:
                self.mark_paid(m)

    def mark_paid(self, m: _Milestone) -> None:
        if m.id not in self.paid_ids:
            self.paid_ids.add(m.id)
            self.paid.append(m)

    def fund(self, m: _Milestone) -> None:
        """Fund a draft; sometimes the card is declined, or asks for 3-D Secure, which the
        payer then passes or fails (and funding again settles it from the provider), or
        the provider times out (the worker's next round sends the charge again)."""
        draw = self.rng.random()
        outage = None
        if draw < 0.1:
            self.gateway.decline_next("card_declined")
            self.faults["funding_declined"] += 1
        elif draw < 0.16:
            self.gateway.require_action_next()
            self.faults["funding_requires_action"] += 1
        else:
            outage = self.arm_outage()
        outcome = self.attempt("fund", lambda: self.escrow.funding.fund(m.id))
        self.outage_met("funding", outage)
        if outcome is not None and outcome.status == "requires_action":
            waiting = [
                r
                for r in self.gateway.records()
                if r.kind == "charge" and r.status == "requires_action" and r.metadata.get("milestone") == m.id
            ]
            passed = self.rng.random() < 0.7
            self.faults["payer_passed_3ds" if passed else "payer_failed_3ds"] += 1
            self.gateway.complete_action(waiting[-1].reference, succeed=passed)
            outcome = self.attempt("fund", lambda: self.escrow.funding.fund(m.id))
        if outcome is not None and outcome.status == "failed":
            self.declined["fund"] += 1

    def approve(self, m: _Milestone, held: int) -> None:
        """Approve all, a part (the rest stays held) or more (the extra is a bonus charge)."""
        draw = self.rng.random()
        if draw < 0.2 and held >= 2:
            part = max(1, held * self.rng.randint(10, 90) // 100)
            approve_part = functools.partial(self.escrow.approvals.approve, m.id, amount=part)
            if self.sent_maybe_twice("approve_part", approve_part, _payment_ids) is not None:
                self.mark_paid(m)
            return
        if draw < 0.32 and held > 0:
            more = held + self.rng.randint(10, 500) * 100
            if self.rng.random() < 0.25:
                self.gateway.decline_next("card_declined")
                self.faults["bonus_declined"] += 1
            approve_more = functools.partial(self.escrow.approvals.approve, m.id, amount=more)
            if self.sent_maybe_twice("approve_bonus", approve_more, _payment_ids) is not None:
                self.mark_paid(m)
            return
        approve_all = functools.partial(self.escrow.approvals.approve, m.id)
        if self.sent_maybe_twice("approve", approve_all, _payment_ids) is not None:
            self.mark_paid(m)

    # --- money back and chargebacks -------------------------------------------------------------

    def payments_of(self, m: _Milestone) -> list[Payment]:
        """Its payments, by content: two released at one instant (a bonus and the held
        money) are told apart by kind and amount, never by their random ids."""
        found = self.escrow.reads.payments(m.id)
        return sorted(found, key=lambda p: (p.released_at, p.kind, p.gross, p.fee, p.refunded))

    def refund_payment(self) -> None:
        now = self.clock.now()
        m = self.pick(self.paid)
        payments = [p for p in self.payments_of(m) if p.refunded < p.gross and now <= p.released_at + REFUND_WINDOW]
        if not payments:
            return
        payment = self.pick(payments)
        left = payment.gross - payment.refunded
        amount = left if self.rng.random() < 0.35 else max(1, left * self.rng.randint(5, 60) // 100)
        refund = functools.partial(self.escrow.refunds.refund_payment, payment.id, amount)
        outage = self.arm_outage()
        self.sent_maybe_twice("refund_payment", refund, lambda r: r.id)
        self.outage_met("refund", outage)

    def charge_back(self) -> None:
        """The client's bank disputes what is left (unrefunded) of the charge that funded a
        milestone, an hourly week or a bonus."""
        m = self.pick(self.live + self.paid)
        if m.id in self.disputed:
            return
        milestone = self.escrow.reads.milestone(m.id)
        reference = milestone.funding_reference
        if milestone.state in (S.DRAFT, S.FUNDING, S.APPROVAL_PENDING) or reference is None or milestone.frozen_by:
            return
        records = self.gateway.records()
        charged = sum(r.amount for r in records if r.kind == "charge" and r.reference == reference)
        refunded = sum(
            r.amount
            for r in records
            if r.kind == "refund" and r.status == "succeeded" and r.charge_reference == reference
        )
        if charged <= refunded:
            return
        report = self.gateway.open_dispute(reference, amount=charged - refunded, fee=DISPUTE_FEE)
        self.disputed.add(m.id)
        if self.attempt("chargeback_opened", lambda: self.escrow.chargebacks.apply_dispute(report, m.id)):
            closes = self.clock.now() + self.rng.randint(7, 30) * DAY
            self.chargebacks.append(_Chargeback(report.id, m, closes, won=self.rng.random() < 0.5))

    def close_chargebacks(self, now: datetime) -> None:
        """The banks decide the disputes due, in the order they were opened."""
        for chargeback in [c for c in self.chargebacks if c.closes_on <= now]:
            self.chargebacks.remove(chargeback)
            self.close_chargeback(chargeback)

    def close_chargeback(self, chargeback: _Chargeback) -> None:
        report = self.gateway.close_dispute(chargeback.id, won=chargeback.won)
        action = "chargeback_won" if chargeback.won else "chargeback_lost"
        self.attempt(action, lambda: self.escrow.chargebacks.apply_dispute(report, chargeback.milestone.id))

    # --- freelancers' money ------------------------------------------------------------------

    def payout(self) -> None:
        freelancer, currency = self.pick(sorted({(c.freelancer, c.currency) for c in self.contracts}))
        available = self.escrow.payouts.balance(freelancer, currency).available
        if not available:
            return
        amount = available if self.rng.random() < 0.4 else max(1, available * self.rng.randint(20, 90) // 100)
        outage = None
        if self.rng.random() < 0.08:
            self.gateway.decline_next("account_closed")
            self.faults["payout_declined"] += 1
        else:
            outage = self.arm_outage()
        request = functools.partial(self.escrow.payouts.request_payout, freelancer, amount=amount, currency=currency)
        payout = self.sent_maybe_twice("payout", request, lambda p: p.id)
        self.outage_met("payout", outage)
        if payout is not None and payout.state is PayoutState.FAILED:
            self.declined["payout"] += 1

    # --- hourly contracts ---------------------------------------------------------------------

    def open_hourly(self) -> None:
        client, freelancer = self.pick(self.clients), self.pick(self.freelancers)
        rate, limit = self.pick(list(HOURLY_RATES)), self.pick(list(WEEKLY_LIMITS))
        manual = self.rng.random() < 0.5
        opened = self.attempt(
            "open_hourly_contract",
            lambda: self.escrow.hourly.open_contract(
                client_id=client,
                freelancer_id=freelancer,
                currency=CURRENCY,
                title="Hours",
                hourly_rate=rate,
                weekly_limit_hours=limit,
                manual_time_allowed=manual,
            ),
        )
        if opened is not None:
            contract = _Contract(opened.id, client, freelancer, CURRENCY, self.clock.now(), hourly=True)
            contract.manual_time = manual
            self.contracts.append(contract)

    def log_time(self, day: datetime) -> None:
        """Each weekday evening, most running hourly contracts log one stretch of the day's
        work, between 09:00 and 18:00 (so never in the future, never overlapping)."""
        for contract in [c for c in self.contracts if c.hourly and not c.ended]:
            if self.rng.random() < 0.75:
                self.log_stretch(contract, day)

    def log_stretch(self, contract: _Contract, day: datetime) -> None:
        slots = self.rng.randint(3, 36)
        start = day + WORKDAY_START + self.rng.randint(0, 54 - slots) * SLOT
        manual = contract.manual_time and self.rng.random() < 0.25
        if start < contract.opened_at:
            return
        segment = Segment(start=start, end=start + slots * SLOT, memo="Work", manual=manual)
        if self.attempt("log_time", lambda: self.escrow.hourly.log_segment(contract.id, segment)):
            contract.weeks.add(start.date() - timedelta(days=start.weekday()))

    def weeks_released(self, monday: date) -> None:
        """Saturday: the review of the week before last has ended; its released weeks may be refunded or
        charged back like milestone payments (their escrow subject, read from the payment)."""
        for contract in [c for c in self.contracts if c.hourly and monday in c.weeks]:
            payment_id = self.escrow.hourly.week(contract.id, monday).payment_id
            if payment_id is not None:
                self.mark_paid(_Milestone(self.escrow.reads.payment(payment_id).milestone_id, contract))

    def hourly_bonus(self) -> None:
        contract = self.pick([c for c in self.contracts if c.hourly and not c.ended])
        amount = self.rng.randint(20, 200) * 100
        if self.rng.random() < 0.2:
            self.gateway.decline_next("card_declined")
            self.faults["hourly_bonus_declined"] += 1
        bonus = self.attempt(
            "hourly_bonus", lambda: self.escrow.hourly.pay_bonus(contract.id, amount=amount, memo="Thanks")
        )
        if bonus is not None and bonus.state == "failed":
            self.declined["hourly_bonus"] += 1
        elif bonus is not None and bonus.state == "released":
            self.mark_paid(_Milestone(bonus.subject.id, contract))

    def dispute_week(self) -> None:
        """Before its review ends (Saturday), the client disputes some of last week's hours."""
        monday = self.clock.now().date() - timedelta(days=self.clock.now().weekday() + 7)
        candidates = [c for c in self.contracts if c.hourly and monday in c.weeks]
        if not candidates:
            return
        contract = self.pick(candidates)
        week = self.escrow.hourly.week(contract.id, monday)
        billable = week.bill.billable_minutes
        if week.dispute is not None or not billable:
            return
        minutes = self.rng.randint(1, max(1, billable // 2))
        disputed = self.attempt(
            "dispute_week",
            lambda: self.escrow.hourly.dispute_week(contract.id, monday, minutes=minutes, reason="Too many hours"),
        )
        if disputed is not None:
            self.week_disputes.append((contract, monday))

    def answer_week_dispute(self) -> None:
        contract, monday = self.pick(self.week_disputes)
        dispute = self.escrow.hourly.week(contract.id, monday).dispute
        hourly = self.escrow.hourly
        draw = self.rng.random()
        if dispute is None or not dispute.is_open:
            self.week_disputes.remove((contract, monday))
        elif dispute.state == "open" and draw < 0.4:
            self.attempt("accept_week_dispute", lambda: hourly.accept_week_dispute(contract.id, monday))
        elif dispute.state == "open" and draw < 0.8:
            self.attempt("contest_week_dispute", lambda: hourly.contest_week_dispute(contract.id, monday))
        elif dispute.state == "contested":
            release = dispute.amount * self.rng.randint(0, 100) // 100
            refund = dispute.amount - release
            self.attempt(
                "resolve_week_dispute",
                lambda: hourly.resolve_week_dispute(contract.id, monday, release=release, refund=refund),
            )
        # else the freelancer stays silent: the dispute expires into a refund

    def change_hourly_terms(self) -> None:
        """A new weekly limit (raising applies at once, lowering from next week) or rate."""
        contract = self.pick([c for c in self.contracts if c.hourly and not c.ended])
        hourly = self.escrow.hourly
        if self.rng.random() < 0.5:
            limit = self.pick(list(WEEKLY_LIMITS))
            self.attempt("change_hourly_terms", lambda: hourly.change_terms(contract.id, weekly_limit_hours=limit))
        else:
            rate = self.pick(list(HOURLY_RATES))
            self.attempt("change_hourly_terms", lambda: hourly.change_terms(contract.id, hourly_rate=rate))

    def end_hourly(self) -> None:
        contract = self.pick([c for c in self.contracts if c.hourly and not c.ended])
        if self.attempt(
            "end_hourly_contract", lambda: self.escrow.contracts.end_contract(contract.id, ended_by="client")
        ):
            contract.ended = True

    # --- the operator and the wrong requests --------------------------------------------------

    def change_fee_schedule(self) -> None:
        """Put the other shipped schedule in force from a coming midnight."""
        name = SCHEDULES[1] if self.schedules[-1][1] == SCHEDULES[0] else SCHEDULES[0]
        today = self.clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
        start = today + self.rng.randint(1, 3) * DAY
        if self.attempt("activate_fee_schedule", lambda: self.book.activate_fee_schedule(name, start)):
            self.schedules.append((start, name))

    def provoke(self) -> None:
        """A request the ledger must refuse (a user's or an integration's mistake)."""
        draw = self.rng.random()
        if draw < 0.2 and self.paid:
            funded = self.pick(self.paid)
            self.attempt("fund", lambda: self.escrow.funding.fund(funded.id))
        elif draw < 0.4 and self.live:
            m = self.pick(self.live)
            self.attempt("approve", lambda: self.escrow.approvals.approve(m.id, amount=0))
        elif draw < 0.55 and self.paid:
            m = self.pick(self.paid)
            self.attempt("resolve_dispute", lambda: self.escrow.refunds.resolve_dispute(m.id, release=1, refund=0))
        elif draw < 0.7 and self.paid:
            payments = self.payments_of(self.pick(self.paid))
            if payments:
                payment = self.pick(payments)
                too_much = payment.gross - payment.refunded + 1
                self.attempt("refund_payment", lambda: self.escrow.refunds.refund_payment(payment.id, too_much))
        elif draw < 0.85 and self.contracts:
            freelancer, currency = self.pick(sorted({(c.freelancer, c.currency) for c in self.contracts}))
            available = self.escrow.payouts.balance(freelancer, currency).available
            too_much = available + self.rng.randint(1, 100) * 100
            self.attempt(
                "payout", lambda: self.escrow.payouts.request_payout(freelancer, amount=too_much, currency=currency)
            )
        else:
            past = self.clock.now() - DAY
            self.attempt("activate_fee_schedule", lambda: self.book.activate_fee_schedule(SCHEDULES[1], past))

    # --- the summary ------------------------------------------------------------------------------

    def summary(self, *, seed: int, months: int, end: datetime) -> SimulationSummary:
        volumes, counts = self.journal_volumes()
        tiers, fees = self.fee_tiers()
        outcomes: Counter[str] = Counter()
        for m_id in sorted(self.disputed):
            for dispute in self.escrow.chargebacks.disputes(m_id):
                outcomes["open" if dispute.outcome is None else dispute.outcome.value] += 1
        weeks: Counter[str] = Counter()
        billed = 0
        for contract in [c for c in self.contracts if c.hourly]:
            for week in self.escrow.hourly.weeks(contract.id):
                weeks[week.state] += 1
                billed += week.payment_id is not None
        report = self.book.audit(provider=self.services.provider_books)
        currencies = sorted(set(volumes) | set(fees))
        actions = sorted(set(self.done) | set(self.refused) | set(self.declined))
        return SimulationSummary(
            seed=seed,
            clients=len(self.clients),
            freelancers=len(self.freelancers),
            months=months,
            start=START,
            end=end,
            volumes=tuple(
                Volumes(
                    currency, **{name: volumes[currency][name] for name in VOLUME_KINDS}, service_fees=fees[currency]
                )
                for currency in currencies
            ),
            fee_tiers=tiers,
            actions=tuple(ActionCount(a, self.done[a], self.refused[a], self.declined[a]) for a in actions),
            refunds_before_release=counts[EntryKind.REFUND],
            refunds_after_release=counts[EntryKind.PAYMENT_REFUND],
            chargebacks_won=outcomes[DisputeOutcome.WON.value] + outcomes[DisputeOutcome.WARNING_CLOSED.value],
            chargebacks_lost=outcomes[DisputeOutcome.LOST.value],
            chargebacks_open=outcomes["open"],
            hourly_weeks_billed=billed,
            hourly_weeks=tuple(sorted(weeks.items())),
            faults=tuple(sorted(self.faults.items())),
            retries_answered_otherwise=tuple(sorted(self.retries_answered_otherwise.items())),
            audit_ok=report.ok,
            audit_failed=tuple(check.name for check in report.checks if not check.ok),
        )

    def journal_volumes(self) -> tuple[dict[str, dict[str, int]], Counter[str]]:
        """Per currency, the size of the entries of each volume's kinds (an entry's debits,
        which equal its credits), reversals counted against their kind; and entries by kind."""
        signs: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for name, kinds in VOLUME_KINDS.items():
            for kind, sign in kinds:
                signs[kind].append((name, sign))
                signs[f"{kind}.reversal"].append((name, -sign))
        volumes: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(VOLUME_KINDS, 0))
        counts: Counter[str] = Counter()
        after: int | None = None
        while True:
            page = self.book.journal(after=after, limit=1000)
            for entry in page.entries:
                counts[entry.kind] += 1
                for name, sign in signs.get(entry.kind, ()):
                    for currency, size in _entry_sizes(entry).items():
                        volumes[currency][name] += sign * size
            if page.next_cursor is None:
                return volumes, counts
            after = page.next_cursor

    def fee_tiers(self) -> tuple[tuple[TierFees, ...], dict[str, int]]:
        """The fee events of every pair the run made, summed by currency, schedule and tier."""
        pairs = sorted({(c.freelancer, c.client, c.currency) for c in self.contracts})
        tiers: dict[tuple[str, str, Decimal], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        net: dict[str, int] = defaultdict(int)
        for freelancer, client, currency in pairs:
            for event in self.fee_events(freelancer, client, currency):
                refund = event.kind == "refund"
                net[currency] += -event.fee if refund else event.fee
                for line in event.breakdown.lines:
                    figures = tiers[(currency, event.breakdown.schedule, line.rate.normalize())]
                    figures[2 if refund else 0] += line.amount
                    figures[3 if refund else 1] += line.fee
        return tuple(TierFees(*key, *figures) for key, figures in sorted(tiers.items())), net

    def fee_events(self, freelancer: str, client: str, currency: str) -> list[FeeEvent]:
        return self.book.transaction(lambda uow: uow.fees.events_of_pair(freelancer, client, currency), read_only=True)


def _payment_ids(payments: list[Payment]) -> list[str]:
    return [p.id for p in payments]


def _entry_sizes(entry: Entry) -> dict[str, int]:
    """An entry's debits per currency (a balanced entry's credits are the same)."""
    sizes: dict[str, int] = defaultdict(int)
    for posting in entry.postings:
        if posting.side is Side.DEBIT:
            sizes[posting.currency] += posting.amount
    return sizes
