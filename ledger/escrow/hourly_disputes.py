"""Disputes of an hourly week's hours (docs/architecture.md, "Hourly contracts").

Until its review ends, the client may dispute some or all of a closed week's billable
minutes with a reason, whether its charge has succeeded or not. The disputed minutes are the week's last ones; they cost
`cost_of_range(billable - minutes, billable)` by the week's one cost function, so the
disputed and undisputed parts add up to the week. Only the disputed amount is held: at
review end the rest is released as usual. The contract is paused while the dispute is
open (`PAUSED_BY_DISPUTE`).

The freelancer accepts (the disputed amount is refunded to the client through a payment
order) or contests before `answer_by` (`dispute_answer_period` after the opening); with
no answer by then it is refunded (timer `week_dispute_expiry`). A contested dispute is
resolved by an operator: release a + refund b = disputed, the service fee on a only.

A week whose charge has not succeeded when its dispute closes holds none of the client's
money: what is refunded is cancelled instead (`WeekDispute.cancelled`, part of
`refunded`), so later attempts charge less (`to_charge`), and what is released is paid
when the charge succeeds. Should a charge sent before the close succeed with the whole
amount, the cancelled part is refunded then (`hourly_billing.after_funding`).

Each step runs under the contract's lock, then the week's subject's.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

from ledger.errors import InvalidRequest
from ledger.escrow.hourly import (
    WEEK_CHARGE_RETRY,
    WEEK_DISPUTE_EXPIRY,
    bill_of,
    hourly_contract,
    parse_week_subject,
    week_subject,
)
from ledger.escrow.hourly_calendar import HOURLY_CALENDAR, available_at, review_ends_at
from ledger.escrow.model import (
    PAUSED_BY_DISPUTE,
    PAUSED_PAST_DUE,
    Contract,
    Milestone,
    MilestoneState,
    SubjectKind,
    WeekDispute,
    WeekNotDisputable,
)
from ledger.escrow.orders import OrderKind, OrderState
from ledger.escrow.payments import refund_from_escrow, release
from ledger.ports.unit_of_work import UnitOfWork

OPEN = "open"
CONTESTED = "contested"
ACCEPTED = "accepted"
EXPIRED = "expired"
RESOLVED = "resolved"
MAX_REASON = 500
#: A week may be disputed while past due, while its charge is in flight, and once charged.
DISPUTABLE = (MilestoneState.DRAFT, MilestoneState.FUNDING, MilestoneState.FUNDED)


def open_dispute(uow: UnitOfWork, contract_id: str, monday: date, *, minutes: int, reason: str) -> WeekDispute:
    contract = hourly_contract(uow, contract_id, lock=True)
    week = uow.escrow.closed_week(contract_id, monday)
    now = uow.clock.now()
    if week is not None and week.carried:
        raise WeekNotDisputable(
            f"the week of {monday.isoformat()} is below the minimum charge and carried to a later week's charge:"
            " dispute that week",
            week=monday.isoformat(),
        )
    if week is None or week.milestone_id is None:
        raise WeekNotDisputable(
            f"the week of {monday.isoformat()} has not closed with an amount: there is nothing to dispute",
            week=monday.isoformat(),
        )
    if now >= review_ends_at(monday):
        raise WeekNotDisputable(
            f"the review of the week of {monday.isoformat()} ended at {review_ends_at(monday).isoformat()}",
            week=monday.isoformat(),
        )
    subject = uow.escrow.milestone(week.milestone_id, lock=True)
    if subject.state not in DISPUTABLE:
        raise WeekNotDisputable(
            f"the week of {monday.isoformat()} is {subject.state.value}: it can no longer be disputed",
            week=monday.isoformat(),
        )
    if uow.escrow.week_dispute(subject.id) is not None:
        raise WeekNotDisputable(f"the week of {monday.isoformat()} is disputed already", week=monday.isoformat())
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 < minutes <= week.billable_minutes:
        raise InvalidRequest(
            f"minutes is a whole number from 1 to the week's {week.billable_minutes} billable minutes, not {minutes!r}",
            field="minutes",
        )
    text = reason.strip() if isinstance(reason, str) else ""
    if not text or len(text) > MAX_REASON:
        raise InvalidRequest(f"a dispute needs a reason of 1 to {MAX_REASON} characters", field="reason")
    bill = bill_of(uow, contract_id, monday)
    amount = bill.cost_of_range(bill.billable_minutes - minutes, bill.billable_minutes)
    if amount <= 0:
        raise InvalidRequest(f"the week's last {minutes} minutes cost nothing to dispute", field="minutes")
    dispute = WeekDispute(
        id=subject.id,
        contract_id=contract_id,
        minutes=minutes,
        amount=amount,
        reason=text,
        state=OPEN,
        opened_at=now,
        answer_by=now + HOURLY_CALENDAR.dispute_answer_period,
    )
    uow.escrow.add_week_dispute(dispute)
    if contract.paused_at is None:
        uow.escrow.save_contract_terms(replace(contract, paused_at=now, paused_by=PAUSED_BY_DISPUTE))
    uow.escrow.schedule(WEEK_DISPUTE_EXPIRY, subject.id, dispute.answer_by)
    return dispute


def _open_dispute_of(uow: UnitOfWork, contract_id: str, monday: date) -> tuple[Contract, Milestone, WeekDispute]:
    contract = hourly_contract(uow, contract_id, lock=True)
    subject_id = week_subject(contract_id, monday)
    dispute = uow.escrow.week_dispute(subject_id)
    if dispute is None:
        raise WeekNotDisputable(f"the week of {monday.isoformat()} is not disputed", week=monday.isoformat())
    if not dispute.is_open:
        raise WeekNotDisputable(
            f"the dispute of the week of {monday.isoformat()} is closed ({dispute.state})",
            week=monday.isoformat(),
            state=dispute.state,
        )
    return contract, uow.escrow.milestone(subject_id, lock=True), dispute


def accept(uow: UnitOfWork, contract_id: str, monday: date) -> WeekDispute:
    """The freelancer accepts: the disputed amount is refunded to the client."""
    contract, subject, dispute = _open_dispute_of(uow, contract_id, monday)
    if dispute.state != OPEN:
        raise WeekNotDisputable("a contested dispute is resolved by an operator", week=monday.isoformat())
    return _close(uow, contract, subject, dispute, ACCEPTED, release_amount=0, refund_amount=dispute.unsettled)


def contest(uow: UnitOfWork, contract_id: str, monday: date) -> WeekDispute:
    """The freelancer contests before `answer_by`: an operator resolves it."""
    _, _, dispute = _open_dispute_of(uow, contract_id, monday)
    if dispute.state != OPEN or uow.clock.now() >= dispute.answer_by:
        raise WeekNotDisputable(
            f"a dispute is contested while open and before {dispute.answer_by.isoformat()}", week=monday.isoformat()
        )
    contested = replace(dispute, state=CONTESTED)
    uow.escrow.save_week_dispute(contested)
    return contested


def resolve(uow: UnitOfWork, contract_id: str, monday: date, *, release_amount: int, refund_amount: int) -> WeekDispute:
    """An operator splits a dispute: release + refund = the disputed amount."""
    contract, subject, dispute = _open_dispute_of(uow, contract_id, monday)
    if dispute.state != CONTESTED:
        raise WeekNotDisputable(
            "an operator resolves a contested dispute; this one is open to the freelancer's answer",
            week=monday.isoformat(),
        )
    for name, value in (("release", release_amount), ("refund", refund_amount)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequest(f"{name} is an amount of 0 or more", field=name)
    if release_amount + refund_amount != dispute.unsettled:
        raise InvalidRequest(
            f"release + refund must be the disputed {dispute.unsettled}, not {release_amount + refund_amount}",
            field="release",
            disputed=dispute.unsettled,
        )
    return _close(uow, contract, subject, dispute, RESOLVED, release_amount=release_amount, refund_amount=refund_amount)


def expire(uow: UnitOfWork, subject_id: str, due_at: datetime) -> bool:
    """The answer period is over and the freelancer did not answer: refunded, dated at the
    deadline. True if it was."""
    dispute = uow.escrow.week_dispute(subject_id)
    if dispute is None or dispute.state != OPEN:
        return False
    contract = hourly_contract(uow, dispute.contract_id, lock=True)
    subject = uow.escrow.milestone(subject_id, lock=True)
    _close(uow, contract, subject, dispute, EXPIRED, release_amount=0, refund_amount=dispute.unsettled, at=due_at)
    return True


def _close(
    uow: UnitOfWork,
    contract: Contract,
    subject: Milestone,
    dispute: WeekDispute,
    state: str,
    *,
    release_amount: int,
    refund_amount: int,
    at: datetime | None = None,
) -> WeekDispute:
    """Settle the dispute. A charged week's release and refund move its money now; for a
    week whose charge has not succeeded, the refund cancels what the client owes and the
    release is paid with the rest of the week when the charge succeeds."""
    now = at or uow.clock.now()
    charged = subject.state is MilestoneState.FUNDED
    if charged:
        _settle_charged(uow, contract, subject, release_amount, refund_amount, now)
    closed = replace(
        dispute,
        state=state,
        closed_at=now,
        released=dispute.released + release_amount,
        refunded=dispute.refunded + refund_amount,
        cancelled=dispute.cancelled + (0 if charged else refund_amount),
    )
    uow.escrow.save_week_dispute(closed)
    if subject.state is MilestoneState.DRAFT and to_charge(uow, subject) == 0:
        # Nothing is left to charge: the retry timer settles the week and lifts its pause.
        uow.escrow.schedule(WEEK_CHARGE_RETRY, subject.id, now)
    _lift_dispute_pause(uow, contract)
    return closed


def _settle_charged(
    uow: UnitOfWork, contract: Contract, subject: Milestone, release_amount: int, refund_amount: int, now: datetime
) -> None:
    monday = parse_week_subject(subject.id)[1]
    held = subject.held
    if release_amount:
        release(
            uow,
            contract,
            subject,
            release_amount,
            effective_at=now,
            kind="hourly",
            pending_until=max(available_at(monday), now),
            invoice_lines=(("disputed time released", release_amount),),
        )
        held -= release_amount
    if refund_amount:
        refund_from_escrow(uow, contract, subject.id, refund_amount, reason="hourly_dispute", effective_at=now)
        held -= refund_amount
    if held == 0:
        uow.escrow.save_milestone(replace(subject, held=0, state=MilestoneState.SETTLED))


def _lift_dispute_pause(uow: UnitOfWork, contract: Contract) -> None:
    """The dispute's pause ends with it; a week that failed to charge on as many days as
    the policy allows keeps the contract paused, for that reason now."""
    if contract.paused_by != PAUSED_BY_DISPUTE:
        return
    if any(
        sum(order.state is OrderState.FAILED for order in uow.orders.of_milestone(week.id, kinds=(OrderKind.FUND,)))
        >= HOURLY_CALENDAR.pause_after_failed_charges
        for week in uow.escrow.milestones_of_kind(contract.id, SubjectKind.WEEK)
        if week.state is MilestoneState.DRAFT
    ):
        uow.escrow.save_contract_terms(replace(contract, paused_by=PAUSED_PAST_DUE))
    else:
        uow.escrow.save_contract_terms(replace(contract, paused_at=None, paused_by=None))


def to_charge(uow: UnitOfWork, subject: Milestone) -> int:
    """What a week's next charge attempt asks for: its amount less what a dispute that
    closed before any charge succeeded cancelled."""
    dispute = uow.escrow.week_dispute(subject.id)
    return subject.amount - (dispute.cancelled if dispute is not None else 0)


def held_for_dispute(uow: UnitOfWork, subject_id: str) -> int:
    """What an open dispute holds of the week (what review end must not release)."""
    dispute = uow.escrow.week_dispute(subject_id)
    return dispute.unsettled if dispute is not None and dispute.is_open else 0
