"""Escrow's domain: contracts, milestones, payments, payouts and the transition table.

Plain Python, no database: the use cases in `milestones.py`, `payments.py` and
`payouts.py` load these, check a transition here, and write the new state together
with its journal entry in one transaction.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from ledger.errors import Conflict, InvalidRequest, NotFound

REVIEW_PERIOD = timedelta(days=14)
REFUND_REQUEST_PERIOD = timedelta(days=7)
SECURITY_PERIOD = timedelta(days=5)
REFUND_WINDOW = timedelta(days=180)

_PARTY_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class InvalidTransition(Conflict):
    """The milestone (or contract, payout) is not in a state that allows this event."""

    code = "invalid-transition"


class UnknownContract(NotFound):
    """No contract has this id."""

    code = "unknown-contract"


class UnknownMilestone(NotFound):
    """No milestone has this id."""

    code = "unknown-milestone"


class UnknownPayment(NotFound):
    """No payment has this id."""

    code = "unknown-payment"


class UnknownPayout(NotFound):
    """No payout has this id."""

    code = "unknown-payout"


class UnknownDispute(NotFound):
    """No dispute (chargeback) has this id."""

    code = "unknown-dispute"


class UnknownSegment(NotFound):
    """The contract has no (undeleted) time segment with this id."""

    code = "unknown-segment"


class ContractEnded(Conflict):
    """The contract has ended; it takes no new milestones or fundings."""

    code = "contract-ended"


class WrongContractType(Conflict):
    """The operation belongs to the other kind of contract: time, rates, limits and pauses
    to hourly contracts, milestones to fixed-price ones."""

    code = "wrong-contract-type"


class ContractPaused(Conflict):
    """The hourly contract is paused: no time may be logged until it is resumed."""

    code = "contract-paused"


class MilestoneFrozen(Conflict):
    """An open chargeback freezes the milestone its payment funded: no money moves
    into or out of it (approval, release, refunds) until the dispute closes."""

    code = "milestone-frozen"


class RefundNotAllowed(Conflict):
    """A refund after release is outside the 180-day window or above what is left of the payment."""

    code = "refund-not-allowed"


def new_id(prefix: str) -> str:
    """A short, typed, unguessable id: `ms_` + 16 base32-ish characters."""
    return f"{prefix}_{secrets.token_hex(8)}"


def party_id(value: object, field: str) -> str:
    """Marketplace ids of clients and freelancers: they also name ledger accounts."""
    if not isinstance(value, str) or not _PARTY_ID.match(value):
        raise InvalidRequest(f"{field} must be 1-64 letters, digits, '_', '-' or '.' (got {value!r})", field=field)
    return value


class MilestoneState(StrEnum):
    DRAFT = "draft"
    FUNDING = "funding"
    FUNDED = "funded"
    SUBMITTED = "submitted"
    CHANGES_REQUESTED = "changes_requested"
    APPROVAL_PENDING = "approval_pending"
    REFUND_REQUESTED = "refund_requested"
    DISPUTED = "disputed"
    RELEASED = "released"
    REFUNDED = "refunded"
    SETTLED = "settled"

    @property
    def is_active(self) -> bool:
        """Active milestones hold the client's money and the work goes on."""
        return self in ACTIVE

    @property
    def holds_money(self) -> bool:
        return self in HOLDING


class SubjectKind(StrEnum):
    """What an escrow subject (a `Milestone`) is. Funding, release, refunds, chargebacks
    and invoices treat the three alike; what differs is who moves them on."""

    MILESTONE = "milestone"  # a fixed-price milestone: the client approves, or its review clock runs out
    WEEK = "week"  # a closed hourly week (id `<contract>:<monday>`): released at the week's review end
    BONUS = "bonus"  # a bonus on an hourly contract: released as soon as its charge succeeds


ACTIVE = frozenset({MilestoneState.FUNDED, MilestoneState.SUBMITTED, MilestoneState.CHANGES_REQUESTED})
HOLDING = ACTIVE | {MilestoneState.APPROVAL_PENDING, MilestoneState.REFUND_REQUESTED, MilestoneState.DISPUTED}
FINAL = frozenset({MilestoneState.RELEASED, MilestoneState.REFUNDED, MilestoneState.SETTLED})


class Event(StrEnum):
    REQUEST_FUNDING = "request_funding"
    PAYMENT_CONFIRMED = "payment_confirmed"
    PAYMENT_FAILED = "payment_failed"
    SUBMIT = "submit"
    REQUEST_CHANGES = "request_changes"
    APPROVE = "approve"
    BONUS_CONFIRMED = "bonus_confirmed"
    BONUS_WITHDRAWN = "bonus_withdrawn"
    REVIEW_EXPIRED = "review_expired"
    CLIENT_ENDS = "client_ends"
    FREELANCER_ENDS = "freelancer_ends"
    ACCEPT_REFUND = "accept_refund"
    REFUND_REQUEST_EXPIRED = "refund_request_expired"
    DISPUTE = "dispute"
    RESOLVE = "resolve"
    CHARGEBACK_LOST = "chargeback_lost"


S, E = MilestoneState, Event

#: The transition table (docs/architecture.md, "Milestone transitions and timers"): (state, event) -> states the event may lead to.
#: Where the outcome depends on amounts (approve part or all, resolve a split) the
#: use case picks among the listed targets.
TRANSITIONS: dict[tuple[MilestoneState, Event], frozenset[MilestoneState]] = {
    (S.DRAFT, E.REQUEST_FUNDING): frozenset({S.FUNDING}),
    (S.FUNDING, E.PAYMENT_CONFIRMED): frozenset({S.FUNDED}),
    (S.FUNDING, E.PAYMENT_FAILED): frozenset({S.DRAFT}),
    (S.FUNDED, E.SUBMIT): frozenset({S.SUBMITTED}),
    (S.CHANGES_REQUESTED, E.SUBMIT): frozenset({S.SUBMITTED}),
    (S.SUBMITTED, E.REQUEST_CHANGES): frozenset({S.CHANGES_REQUESTED}),
    # Approving more than held writes the bonus charge's order and waits for it.
    **{(state, E.APPROVE): frozenset({state, S.RELEASED, S.APPROVAL_PENDING}) for state in ACTIVE},
    (S.APPROVAL_PENDING, E.BONUS_CONFIRMED): frozenset({S.RELEASED}),
    (S.APPROVAL_PENDING, E.BONUS_WITHDRAWN): ACTIVE,
    (S.SUBMITTED, E.REVIEW_EXPIRED): frozenset({S.RELEASED}),
    **{(state, E.CLIENT_ENDS): frozenset({S.REFUND_REQUESTED}) for state in ACTIVE},
    **{(state, E.FREELANCER_ENDS): frozenset({S.REFUNDED}) for state in ACTIVE},
    (S.REFUND_REQUESTED, E.ACCEPT_REFUND): frozenset({S.REFUNDED}),
    (S.REFUND_REQUESTED, E.REFUND_REQUEST_EXPIRED): frozenset({S.REFUNDED}),
    (S.REFUND_REQUESTED, E.DISPUTE): frozenset({S.DISPUTED}),
    (S.DISPUTED, E.RESOLVE): frozenset({S.RELEASED, S.REFUNDED, S.SETTLED}),
    # A lost chargeback takes back what the milestone holds (all of it: refunded).
    **{(state, E.CHARGEBACK_LOST): frozenset({state, S.REFUNDED}) for state in HOLDING},
}

#: Events that move a milestone's money; refused while a chargeback freezes it.
MONEY_EVENTS = frozenset(
    {E.APPROVE, E.REVIEW_EXPIRED, E.FREELANCER_ENDS, E.ACCEPT_REFUND, E.REFUND_REQUEST_EXPIRED, E.RESOLVE}
)


def require_transition(milestone_id: str, state: MilestoneState, event: Event) -> frozenset[MilestoneState]:
    """The states `event` may lead to from `state`; `InvalidTransition` if none."""
    targets = TRANSITIONS.get((state, event))
    if targets is None:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s == state)
        raise InvalidTransition(
            f"milestone {milestone_id} is {state.value}: cannot {event.value.replace('_', ' ')}"
            + (f" (allowed: {', '.join(allowed)})" if allowed else " (it is final)"),
            milestone_id=milestone_id,
            state=state.value,
            event=event.value,
        )
    return targets


def require_unfrozen(milestone: Milestone, event: Event) -> None:
    """`MilestoneFrozen` if an open chargeback freezes the milestone and `event` would move its money."""
    if milestone.frozen_by is not None and event in MONEY_EVENTS:
        raise MilestoneFrozen(
            f"milestone {milestone.id} is frozen by chargeback {milestone.frozen_by}: cannot "
            f"{event.value.replace('_', ' ')} until the dispute closes",
            milestone_id=milestone.id,
            dispute_id=milestone.frozen_by,
            event=event.value,
        )


@dataclass(frozen=True)
class Contract:
    """A contract between a client and a freelancer in one currency: fixed-price (paid by
    milestones) or hourly (paid by the week for logged time).

    Attributes:
        id: `ct_...`.
        client_id, freelancer_id: the marketplace's ids.
        currency: every milestone, rate and payment is in it.
        title: shown on invoices.
        ended_by: None while open; "client" or "freelancer" once ended.
        type: `FIXED` or `HOURLY`.
        hourly_rate: an hourly contract's current rate (minor units per hour); None for fixed.
        weekly_limit_hours: an hourly contract's current weekly limit; None for fixed.
        manual_time_allowed: whether the freelancer may log time by hand.
        paused_at: when an hourly contract was paused; None while it runs.
        paused_by: who paused it: `PAUSED_ON_REQUEST` (the marketplace) or
            `PAUSED_PAST_DUE` (weekly charges failed on as many days as the policy allows;
            lifted when the client's money comes in).
    """

    id: str
    client_id: str
    freelancer_id: str
    currency: str
    title: str
    created_at: datetime
    ended_by: str | None = None
    ended_at: datetime | None = None
    type: str = "fixed"
    hourly_rate: int | None = None
    weekly_limit_hours: int | None = None
    manual_time_allowed: bool = False
    paused_at: datetime | None = None
    paused_by: str | None = None

    @property
    def is_hourly(self) -> bool:
        return self.type == HOURLY


FIXED = "fixed"
HOURLY = "hourly"
PAUSED_ON_REQUEST = "request"
PAUSED_PAST_DUE = "past_due"
PAUSED_BY_DISPUTE = "dispute"
CONTRACT_TYPES = (FIXED, HOURLY)


@dataclass(frozen=True)
class TermChange:
    """A change of an hourly contract's terms: its rate (minor units per hour) or its
    weekly limit (hours), set at `changed_at`. The terms it opened with are changes too,
    made at its creation.

    Attributes:
        term: `RATE` or `WEEKLY_LIMIT`.
        value: the new rate or limit.
        changed_at: when it was set.
    """

    term: str
    value: int
    changed_at: datetime


RATE = "rate"
WEEKLY_LIMIT = "weekly_limit"


@dataclass(frozen=True)
class WeekDispute:
    """A client's dispute of a charged hourly week.

    Attributes:
        id: the week's (`<contract>:<monday>`).
        minutes: the week's last billable minutes disputed; amount: what they cost by
            the cumulative rule (held until the dispute closes).
        state: `open`, `contested` (the freelancer contests; an operator resolves), or
            closed: `accepted` (the freelancer accepted: refunded), `expired` (no answer
            in time: refunded), `resolved` (an operator split it).
        answer_by: the freelancer accepts or contests before this; after it, refunded.
        released, refunded: what of `amount` went to the freelancer and back to the client.
        cancelled: the part of `refunded` the client was never charged: the dispute closed
            while the week's charge had not succeeded, so later attempts charge less.
    """

    id: str
    contract_id: str
    minutes: int
    amount: int
    reason: str
    state: str
    opened_at: datetime
    answer_by: datetime
    closed_at: datetime | None = None
    released: int = 0
    refunded: int = 0
    cancelled: int = 0

    @property
    def is_open(self) -> bool:
        return self.state in ("open", "contested")

    @property
    def unsettled(self) -> int:
        """What of the disputed amount is still held for it."""
        return self.amount - self.released - self.refunded


class WeekNotDisputable(Conflict):
    """The week cannot be disputed (or its dispute answered) now, or not as asked."""

    code = "week-not-disputable"


@dataclass(frozen=True)
class ClosedWeek:
    """An hourly week as it closed, fixed from then on.

    Attributes:
        id: `<contract>:<monday>`; also the id of the escrow subject (a `Milestone` of
            kind `SubjectKind.WEEK`) that holds its money, when it billed anything.
        week: the Monday.
        limit_minutes: the weekly limit in force for the week.
        logged_minutes, billable_minutes, over_limit_minutes: as billed at the close.
        amount: what the client is charged (minor units), by the cumulative rule.
        protected_amount: the part of it the platform advances at review end when the
            charge has not succeeded: tracked time within the limit, for a client whose
            payment method was verified before the close; else 0.
        closed_at: the close (Monday 12:00 after the week).
        milestone_id: the escrow subject, None when nothing was billable or the week is
            carried.
        carried_in: what earlier weeks, each below the provider's minimum charge, add to
            this week's charge (its subject holds `amount + carried_in`).
        carried_to: for a carried week (an amount below the minimum charge, no subject of
            its own), the week whose charge took it; None while it waits for one.
        reviewed_at: when its review end was applied (the release, or the advance of its
            protected part when the charge had not succeeded); None before, and while a
            charge in flight at review end has not answered.
    """

    id: str
    contract_id: str
    week: date
    limit_minutes: int
    logged_minutes: int
    billable_minutes: int
    over_limit_minutes: int
    amount: int
    closed_at: datetime
    milestone_id: str | None
    protected_amount: int = 0
    carried_in: int = 0
    carried_to: date | None = None
    reviewed_at: datetime | None = None

    @property
    def carried(self) -> bool:
        """Whether the week billed an amount too small to charge on its own."""
        return self.milestone_id is None and self.amount > 0

    @property
    def charged_amount(self) -> int:
        """What the week's escrow subject is charged: its own amount and what it carries in."""
        return 0 if self.milestone_id is None else self.amount + self.carried_in


@dataclass(frozen=True)
class Milestone:
    """A milestone and where it stands.

    Attributes:
        id: `ms_...`.
        amount: the agreed price, minor units.
        held: what its escrow account holds now (minor units).
        state: see `MilestoneState`.
        review_deadline: when a submission is released if the client stays silent.
        refund_deadline: when an unanswered refund request refunds the client.
        failure_reason: why the last funding failed, if it did.
        frozen_by: the open chargeback (dispute id) that freezes it, if any.
        funding_reference: the provider charge its money came in by (a release's
            payment is refunded against it), once funded.
        kind: a fixed-price milestone, an hourly week or an hourly bonus.
    """

    id: str
    contract_id: str
    title: str
    amount: int
    due_date: date | None
    state: MilestoneState
    held: int
    review_deadline: datetime | None
    refund_deadline: datetime | None
    failure_reason: str | None
    created_at: datetime
    frozen_by: str | None = None
    funding_reference: str | None = None
    kind: SubjectKind = SubjectKind.MILESTONE


@dataclass(frozen=True)
class Payment:
    """Money released to a freelancer from one milestone: one release, one payment.

    Attributes:
        id: `py_...`; also the idempotency key of its fee event.
        kind: "release" (approval, auto-release or a dispute's release part), "bonus", or
            "hourly" (a week's time on an hourly contract).
        gross, fee, net: minor units; gross = fee + net.
        pending_until: when its net becomes available (5 days after release; an hourly
            week's on the calendar's availability day).
        refunded: what the freelancer has refunded of it so far (gross, minor units).
        entry_id: the release's journal entry.
        charge_reference: the provider charge its money came in by (a bonus has its own).
    """

    id: str
    milestone_id: str
    contract_id: str
    kind: str
    gross: int
    fee: int
    net: int
    released_at: datetime
    pending_until: datetime
    refunded: int
    entry_id: int
    charge_reference: str | None = None


class PayoutState(StrEnum):
    IN_TRANSIT = "in_transit"
    PAID = "paid"
    FAILED = "failed"
    REVERSED = "reversed"  # paid, then the transfer was reversed: the money is available again


@dataclass(frozen=True)
class MilestoneStanding:
    """A milestone as it stands, with what an answer shows of it.

    Attributes:
        milestone: its state and what it holds.
        currency: its contract's currency.
        payments: every payment released of it, in release order.
    """

    milestone: Milestone
    currency: str
    payments: tuple[Payment, ...]


@dataclass(frozen=True)
class Payout:
    """A freelancer's withdrawal of available money.

    Attributes:
        id: `po_...`.
        state: in_transit until the gateway confirms (paid) or fails (failed, money back to
            available); a paid transfer reversed later is `reversed` (money back to available).
        gateway_reference: the provider's id of the transfer.
        amount_reversed: what of a paid transfer the provider has reversed since.
    """

    id: str
    freelancer_id: str
    currency: str
    amount: int
    state: PayoutState
    gateway_reference: str | None
    failure_reason: str | None
    created_at: datetime
    settled_at: datetime | None
    amount_reversed: int = 0


class DisputeOutcome(StrEnum):
    WON = "won"
    LOST = "lost"
    WARNING_CLOSED = "warning_closed"  # an inquiry that closed without a chargeback


@dataclass(frozen=True)
class Dispute:
    """A chargeback: the client's bank disputes one of our payments.

    Attributes:
        id: the provider's dispute id; charge_reference: the disputed payment.
        milestone_id: the milestone that payment funded; frozen while the dispute is open.
        amount: disputed, minor units; status: the provider's word for where it stands.
        withdrawn, reinstated: what the provider took from our balance and gave back
            (held meanwhile in `assets:psp:disputed`).
        outcome: None while open; won, lost or warning_closed.
        recovered_from_refunds, recovered_from_escrow, recovered_from_freelancer,
            fee_returned, unrecovered: how a lost dispute's loss was covered (README,
            "Chargebacks");
            unrecovered is the platform's loss, booked to `expenses:chargebacks`.
    """

    id: str
    milestone_id: str
    charge_reference: str
    currency: str
    amount: int
    status: str
    withdrawn: int
    reinstated: int
    outcome: DisputeOutcome | None
    recovered_from_escrow: int
    recovered_from_freelancer: int
    recovered_from_refunds: int
    fee_returned: int
    unrecovered: int
    opened_at: datetime
    closed_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.outcome is None


@dataclass(frozen=True)
class PaymentRefund:
    """A freelancer's refund of (part of) a payment to the client.

    Attributes:
        amount: gross refunded to the client; fee_returned: the fee the platform
            gives back (the fee engine's refund rule); the freelancer pays the rest.
        entry_id: the refund's journal entry.
        status: how its provider refund stands: pending, succeeded or failed.
    """

    id: str
    payment_id: str
    amount: int
    fee_returned: int
    entry_id: int
    status: str = "pending"


class RefundSource(StrEnum):
    """Which of the freelancer's balances paid their part of a refund after release."""

    PENDING = "pending"
    AVAILABLE = "available"
    BOTH = "both"


class RefundOrderState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the provider would not refund: still owed to the client (in transit)
    CHARGED_BACK = "charged_back"  # a failed refund the client got through their bank's chargeback instead


@dataclass(frozen=True)
class RefundOrder:
    """Money owed back to a client, refunded at the provider against one charge.

    Attributes:
        id: `rfo_...`; also the provider key of the payment order that makes it.
        milestone_id: the milestone the money was held for.
        payment_id: the released payment refunded, or None for money refunded from escrow.
        amount: minor units of `currency`.
        psp_account: the ledger account of the provider balance it is refunded from.
        charge_reference: the provider charge refunded.
        state: see `RefundOrderState`.
        gateway_reference, failure_reason, settled_at: what the provider answered, and when.
    """

    id: str
    milestone_id: str
    payment_id: str | None
    currency: str
    amount: int
    psp_account: str
    charge_reference: str | None
    state: RefundOrderState
    created_at: datetime
    gateway_reference: str | None = None
    failure_reason: str | None = None
    settled_at: datetime | None = None
