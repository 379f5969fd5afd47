"""Hourly contracts' time (docs/architecture.md, "Hourly contracts"): open one, log
and delete time, change the rate and the weekly limit, pause and resume, and read a
week as it stands.

Every write locks the contract row first, so two requests on one contract take
turns: a segment is checked against the segments the previous request committed,
and a term change is ordered against the time logged. The rules themselves are the
domain's (`ledger.escrow.timesheet`, `ledger.escrow.hourly_calendar`); this module
only gathers what they need from the store. No money moves here: the weekly charge,
review and release are `ledger.escrow.hourly_billing`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from ledger.errors import InvalidRequest, WeekClosed
from ledger.escrow.hourly_calendar import (
    available_at,
    closes_at,
    require_monday,
    review_ends_at,
    week_end,
    week_of,
    week_start,
)
from ledger.escrow.milestones import new_contract, positive_amount, save_new_contract
from ledger.escrow.model import (
    HOURLY,
    PAUSED_ON_REQUEST,
    RATE,
    WEEKLY_LIMIT,
    ClosedWeek,
    Contract,
    ContractEnded,
    ContractPaused,
    MilestoneState,
    TermChange,
    WeekDispute,
    WrongContractType,
)
from ledger.escrow.orders import OrderKind
from ledger.escrow.timesheet import (
    MINUTES_PER_HOUR,
    LimitChange,
    LimitHistory,
    RateChange,
    RateHistory,
    Segment,
    WeekBill,
    bill_week,
    limit_for_week,
    validate_new_segment,
    validate_segment_deletion,
)
from ledger.ports.unit_of_work import UnitOfWork

#: A weekly limit above the hours of a week would limit nothing.
MAX_WEEKLY_LIMIT_HOURS = 168

#: The timers of the weekly cycle (`ledger.escrow.hourly_billing` fires them): the close,
#: scheduled when a week's first segment is logged, and the review end, at the close.
WEEK_CLOSE = "week_close"
WEEK_REVIEW_END = "week_review_end"
WEEK_CHARGE_RETRY = "week_charge_retry"
WEEK_WRITE_OFF = "week_write_off"
WEEK_DISPUTE_EXPIRY = "week_dispute_expiry"

# A week's states (docs/architecture.md, "Hourly contracts").
OPEN = "open"  # time may be logged and edited
CLOSING = "closing"  # past its close; the next tick closes it
CLOSED = "closed"  # closed with nothing billable: no money moves
CARRIED = "carried"  # billed less than the provider's minimum charge: a later week charges it
CHARGING = "charging"  # its charge is with the provider
PAST_DUE = "past_due"  # its charge failed
IN_REVIEW = "in_review"  # charged; the client reviews it until review end
DISPUTED = "disputed"  # part or all of its minutes are disputed: that amount is held
RELEASED = "released"  # paid to the freelancer, pending until its availability day
AVAILABLE = "available"  # the freelancer may withdraw it
REFUNDED = "refunded"  # its money went back to the client
CANCELLED = "cancelled"  # disputed whole before any charge succeeded: the client owes nothing
WEEK_STATES = (
    OPEN,
    CLOSING,
    CLOSED,
    CARRIED,
    CHARGING,
    PAST_DUE,
    IN_REVIEW,
    DISPUTED,
    RELEASED,
    AVAILABLE,
    REFUNDED,
    CANCELLED,
)


def week_subject(contract_id: str, monday: date) -> str:
    """The id of a week's escrow subject and of its timers: `<contract>:<monday>`."""
    return f"{contract_id}:{monday.isoformat()}"


def parse_week_subject(subject_id: str) -> tuple[str, date]:
    contract_id, _, monday = subject_id.rpartition(":")
    return contract_id, date.fromisoformat(monday)


def weekly_limit(value: object, field: str = "weekly_limit_hours") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WEEKLY_LIMIT_HOURS:
        raise InvalidRequest(
            f"{field} is a whole number of hours from 0 to {MAX_WEEKLY_LIMIT_HOURS}, not {value!r}", field=field
        )
    return value


def open_hourly_contract(
    uow: UnitOfWork,
    *,
    client_id: str,
    freelancer_id: str,
    currency: str,
    title: str,
    hourly_rate: int,
    weekly_limit_hours: int,
    manual_time_allowed: bool,
) -> Contract:
    """Open an hourly contract; its opening rate and limit are the first entries of its term history."""
    contract = replace(
        new_contract(uow, client_id=client_id, freelancer_id=freelancer_id, currency=currency, title=title),
        type=HOURLY,
        hourly_rate=positive_amount(hourly_rate, "hourly_rate"),
        weekly_limit_hours=weekly_limit(weekly_limit_hours),
        manual_time_allowed=bool(manual_time_allowed),
    )
    save_new_contract(uow, contract)
    uow.escrow.add_term_change(contract.id, TermChange(RATE, hourly_rate, contract.created_at))
    uow.escrow.add_term_change(contract.id, TermChange(WEEKLY_LIMIT, weekly_limit_hours, contract.created_at))
    return contract


def hourly_contract(uow: UnitOfWork, contract_id: str, *, lock: bool = False) -> Contract:
    """The contract, refused (`WrongContractType`) unless it is hourly."""
    contract = uow.escrow.contract(contract_id, lock=lock)
    if not contract.is_hourly:
        raise WrongContractType(
            f"contract {contract_id} is fixed-price: time, rates, limits and pauses belong to hourly contracts",
            contract_id=contract_id,
            type=contract.type,
        )
    return contract


def _running(uow: UnitOfWork, contract_id: str) -> Contract:
    contract = hourly_contract(uow, contract_id, lock=True)
    if contract.ended_by is not None:
        raise ContractEnded(f"contract {contract_id} has ended", contract_id=contract_id)
    return contract


def _week_segments(uow: UnitOfWork, contract_id: str, monday: date) -> list[Segment]:
    # Segments never cross Monday 00:00, so a week's segments are those starting in it.
    return uow.escrow.segments_of(contract_id, start=week_start(monday), end=week_end(monday))


def _require_not_closed(uow: UnitOfWork, contract_id: str, monday: date) -> None:
    """Refuse changing a week its close has billed, whatever this server's clock says:
    the close and this write take the contract's lock in turn, so the one that comes
    second sees the other."""
    closed = uow.escrow.closed_week(contract_id, monday)
    if closed is not None:
        raise WeekClosed(
            f"the week of {monday.isoformat()} closed at {closed.closed_at.isoformat()}; its time is billed",
            week=monday.isoformat(),
            closed_at=closed.closed_at.isoformat(),
        )


def log_segment(uow: UnitOfWork, contract_id: str, segment: Segment) -> Segment:
    """Add time to a running, unpaused hourly contract, under the timesheet's rules."""
    contract = _running(uow, contract_id)
    if contract.paused_at is not None:
        raise ContractPaused(
            f"contract {contract_id} is paused since {contract.paused_at.isoformat()}; resume it to log time",
            contract_id=contract_id,
            paused_at=contract.paused_at.isoformat(),
        )
    if segment.start < contract.created_at:
        raise InvalidRequest(
            f"the contract was opened at {contract.created_at.isoformat()}; no time before it may be logged",
            field="start",
        )
    monday = week_of(segment.start)
    existing = _week_segments(uow, contract_id, monday)
    validate_new_segment(segment, existing, uow.clock.now(), contract.manual_time_allowed)
    _require_not_closed(uow, contract_id, monday)
    # The week's close is a durable timer from its first segment on (scheduling it again
    # is a no-op); a week whose segments are all deleted closes with nothing to bill.
    uow.escrow.schedule(WEEK_CLOSE, week_subject(contract_id, monday), closes_at(monday))
    return uow.escrow.add_segment(contract_id, segment, uow.clock.now())


def delete_segment(uow: UnitOfWork, contract_id: str, segment_id: str) -> Segment:
    """Withdraw a segment of a week that has not closed (paused or ended contracts too:
    deleting bills less, and the week is not billed before it closes)."""
    hourly_contract(uow, contract_id, lock=True)
    segment = uow.escrow.segment(contract_id, segment_id)
    validate_segment_deletion(segment, uow.clock.now())
    _require_not_closed(uow, contract_id, segment.week)
    uow.escrow.delete_segment(segment_id, uow.clock.now())
    return segment


def change_terms(
    uow: UnitOfWork, contract_id: str, *, weekly_limit_hours: int | None = None, hourly_rate: int | None = None
) -> Contract:
    """Set a new weekly limit and/or rate from now on; which weeks and segments they apply
    to is the domain's (`limit_for_week`, `rate_for_segment`)."""
    if weekly_limit_hours is None and hourly_rate is None:
        raise InvalidRequest("name weekly_limit_hours or hourly_rate to change", field="body")
    contract = _running(uow, contract_id)
    now = uow.clock.now()
    if weekly_limit_hours is not None:
        uow.escrow.add_term_change(contract_id, TermChange(WEEKLY_LIMIT, weekly_limit(weekly_limit_hours), now))
        contract = replace(contract, weekly_limit_hours=weekly_limit_hours)
    if hourly_rate is not None:
        uow.escrow.add_term_change(contract_id, TermChange(RATE, positive_amount(hourly_rate, "hourly_rate"), now))
        contract = replace(contract, hourly_rate=hourly_rate)
    uow.escrow.save_contract_terms(contract)
    return contract


def set_paused(uow: UnitOfWork, contract_id: str, *, paused: bool) -> Contract:
    """Pause or resume; pausing a paused contract (or resuming a running one) changes nothing."""
    contract = _running(uow, contract_id)
    if (contract.paused_at is not None) == paused:
        return contract
    contract = replace(
        contract,
        paused_at=uow.clock.now() if paused else None,
        paused_by=PAUSED_ON_REQUEST if paused else None,
    )
    uow.escrow.save_contract_terms(contract)
    return contract


def limit_history(changes: list[TermChange]) -> LimitHistory:
    limits = [c for c in changes if c.term == WEEKLY_LIMIT]
    return LimitHistory(limits[0].value, tuple(LimitChange(c.changed_at, c.value) for c in limits[1:]))


def rate_history(changes: list[TermChange]) -> RateHistory:
    rates = [c for c in changes if c.term == RATE]
    return RateHistory(rates[0].value, tuple(RateChange(c.changed_at, c.value) for c in rates[1:]))


def bill_of(uow: UnitOfWork, contract_id: str, monday: date) -> WeekBill:
    """The week billed from its segments under the limit and the rates in force for it."""
    changes = uow.escrow.term_changes(contract_id)
    limit = limit_for_week(limit_history(changes), monday) * MINUTES_PER_HOUR
    return bill_week(monday, _week_segments(uow, contract_id, monday), limit, rate_history(changes))


@dataclass(frozen=True)
class WeekView:
    """A week of an hourly contract: as it would be billed while open, as it closed after.

    Attributes:
        week: the Monday.
        currency: the contract's.
        state: one of `WEEK_STATES`.
        bill: the week's segments under the limit and the rates in force for it.
        closes_at, review_ends_at, available_at: the calendar's instants for the week.
        payment_id: the payment that released it, once released.
        charge_order_id: the payment order charging the client, once closed with an amount.
        failure_reason: why the last charge attempt failed, when it did.
        charge_attempts: the charge attempts made so far (one a day while past due).
        dispute: the client's dispute of its hours, if any.
        carried_in: what earlier weeks below the minimum charge add to its charge.
        carried_to: for a carried week, the week whose charge took its amount (None while
            it waits for a week that bills).
    """

    week: date
    currency: str
    state: str
    bill: WeekBill
    closes_at: datetime
    review_ends_at: datetime
    available_at: datetime
    payment_id: str | None = None
    charge_order_id: str | None = None
    failure_reason: str | None = None
    charge_attempts: int = 0
    dispute: WeekDispute | None = None
    carried_in: int = 0
    carried_to: date | None = None


_SUBJECT_STATES = {
    MilestoneState.DRAFT: PAST_DUE,
    MilestoneState.FUNDING: CHARGING,
    MilestoneState.FUNDED: IN_REVIEW,
    MilestoneState.REFUNDED: REFUNDED,
}


def week_view(
    uow: UnitOfWork, contract_id: str, monday: date, closed: dict[date, ClosedWeek] | None = None
) -> WeekView:
    contract = hourly_contract(uow, contract_id)
    monday = require_monday(monday)
    if closed is None:
        closed = uow.escrow.closed_weeks(contract_id)
    bill = bill_of(uow, contract_id, monday)
    closes = closes_at(monday)
    view = WeekView(
        week=monday,
        currency=contract.currency,
        state=OPEN if uow.clock.now() < closes else CLOSING,
        bill=bill,
        closes_at=closes,
        review_ends_at=review_ends_at(monday),
        available_at=available_at(monday),
    )
    week = closed.get(monday)
    if week is None:
        return view
    if week.carried:
        return replace(view, state=CARRIED, carried_to=week.carried_to)
    if week.milestone_id is None:
        return replace(view, state=CLOSED)
    subject = uow.escrow.milestone(week.milestone_id)
    charges = uow.orders.of_milestone(subject.id, kinds=(OrderKind.FUND,))
    view = replace(
        view,
        charge_order_id=charges[-1].id if charges else None,
        failure_reason=subject.failure_reason,
        charge_attempts=len(charges),
        carried_in=week.carried_in,
    )
    dispute = uow.escrow.week_dispute(subject.id)
    view = replace(view, dispute=dispute)
    if dispute is not None and dispute.is_open:
        payments = uow.escrow.payments_of(subject.id)
        return replace(view, state=DISPUTED, payment_id=payments[0].id if payments else None)
    payments = uow.escrow.payments_of(subject.id)
    # A past-due week whose protected part was advanced has a payment and is still due.
    view = replace(view, payment_id=payments[0].id if payments else None)
    if subject.state is MilestoneState.SETTLED and not payments:
        cancelled = dispute is not None and dispute.cancelled == subject.amount
        return replace(view, state=CANCELLED if cancelled else REFUNDED)
    if subject.state not in (MilestoneState.RELEASED, MilestoneState.SETTLED):
        return replace(view, state=_SUBJECT_STATES.get(subject.state, CHARGING))
    matured = all(uow.escrow.pending_remaining(payment.id) == 0 for payment in payments)
    return replace(view, state=AVAILABLE if matured else RELEASED)


def weeks(uow: UnitOfWork, contract_id: str, *, before: date | None = None, limit: int | None = None) -> list[WeekView]:
    """The weeks with time, newest first, those before `before` only (a page's cursor)."""
    hourly_contract(uow, contract_id)
    closed = uow.escrow.closed_weeks(contract_id)
    logged = set(uow.escrow.segment_weeks(contract_id)) | set(closed)
    mondays = sorted((m for m in logged if before is None or m < before), reverse=True)
    return [week_view(uow, contract_id, monday, closed) for monday in mondays[:limit]]
