"""Approvals: the client releases all that is held, a part of it, or more.

Part (x < held): x is released, the milestone stays as it is with held - x.
All: released. More than held: the extra is a bonus the client pays on top. The
bonus is computed once, here, under the milestone's lock, and written on a
payment order; the milestone is `approval_pending` until the provider answers,
so nothing else can change what is held under the charge (other approvals,
ending and refunds are refused; the review clock waits). When the charge
succeeds, all held and the bonus are released, each as its own payment, with
the order's amount; when it fails or is not completed within 24 hours, the
milestone returns to the state it was in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from ledger.errors import InvalidRequest
from ledger.escrow.milestones import REVIEW_EXPIRY, positive_amount, post_funding
from ledger.escrow.model import (
    Contract,
    Event,
    Milestone,
    MilestoneStanding,
    MilestoneState,
    Payment,
    new_id,
    require_transition,
    require_unfrozen,
)
from ledger.escrow.orders import NewOrder, OrderKind, OrderState, PaymentOrder
from ledger.escrow.payments import refund_from_escrow, release
from ledger.kinds import EntryKind
from ledger.ports.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class Approval:
    """What an approval did.

    Attributes:
        standing: the milestone as it stands after the approval, with all its payments.
        payments: the payments released (none yet while a bonus charge is in flight).
        order: the bonus charge's payment order, when the approval asked for more than held.
    """

    standing: MilestoneStanding
    payments: tuple[Payment, ...] = ()
    order: PaymentOrder | None = None


def approve(
    uow: UnitOfWork,
    milestone_id: str,
    *,
    amount: int | None = None,
    request_key: str | None = None,
    payment_method: str | None = None,
) -> Approval:
    """Approve all held (default), part of it, or more (a bonus order for the extra)."""
    if amount is not None:
        positive_amount(amount)
    # The milestone is locked before the request key is bound: a duplicate running
    # concurrently waits here, then finds the key bound and replays. Locked, the
    # milestone says what the approval will do, so the key is stored with its result
    # in one write (the ids are chosen now); if the approval fails, both roll back.
    milestone, contract = uow.escrow.milestone_and_contract(milestone_id, lock=True)
    held = milestone.held
    wanted = held if amount is None else amount
    bonus = wanted > held and held > 0
    payment_id, order_id = new_id("py"), new_id("ord")
    if request_key is not None:
        planned: dict[str, object] = {"payments": [] if bonus else [payment_id], "order": order_id if bonus else None}
        request = {"milestone": milestone_id, "amount": amount}
        earlier = uow.orders.bind_request_key(request_key, "approve", request, result=planned)
        if earlier is not None:
            return replay_approval(uow, milestone_id, earlier)
    require_transition(milestone_id, milestone.state, Event.APPROVE)
    require_unfrozen(milestone, Event.APPROVE)
    now = uow.clock.now()
    # The milestone after the approval is what this transaction made of it, under its
    # lock: built here rather than read back.
    if bonus:
        order = _order_bonus(uow, milestone, contract, wanted - held, request_key, payment_method, now, order_id)
        after = replace(milestone, state=MilestoneState.APPROVAL_PENDING)
        uow.escrow.save_milestone(after)
        return Approval(_standing(uow, after, contract), (), order)
    if wanted > held:
        raise InvalidRequest(f"nothing is held to approve (held {held})", field="amount", held=held)
    payment = release(uow, contract, milestone, wanted, effective_at=now, payment_id=payment_id)
    after = replace(milestone, held=held - wanted)
    if wanted == held:
        after = replace(after, state=MilestoneState.RELEASED, review_deadline=None)
        uow.escrow.save_milestone(after)
    return Approval(_standing(uow, after, contract), (payment,))


def _standing(uow: UnitOfWork, milestone: Milestone, contract: Contract) -> MilestoneStanding:
    return MilestoneStanding(milestone, contract.currency, tuple(uow.escrow.payments_of(milestone.id)))


def _order_bonus(
    uow: UnitOfWork,
    milestone: Milestone,
    contract: Contract,
    extra: int,
    request_key: str | None,
    payment_method: str | None,
    now: datetime,
    order_id: str,
) -> PaymentOrder:
    details = {
        "held": str(milestone.held),
        "prior_state": milestone.state.value,
        "pending_since": now.isoformat(),
        "party": contract.client_id,
        "contract": contract.id,
        "milestone": milestone.id,
    }
    if request_key is not None:
        details["request_key"] = request_key
    if payment_method:
        details["payment_method"] = payment_method
    return uow.orders.add(
        NewOrder(
            id=order_id,
            kind=OrderKind.BONUS,
            amount=extra,
            currency=contract.currency,
            # With a request key a retried request is the same charge; without one each
            # approval is a new attempt (a declined card may be retried with another).
            provider_key=f"bonus:{milestone.id}:{request_key}" if request_key else f"bonus:{order_id}",
            milestone_id=milestone.id,
            details=details,
        )
    )


def replay_approval(uow: UnitOfWork, milestone_id: str, stored: dict[str, object]) -> Approval:
    """The same approval again: what it did the first time, as it stands now."""
    payments = stored.get("payments") or []
    order_id = stored.get("order")
    assert isinstance(payments, list)
    order = uow.orders.get(str(order_id)) if order_id else None
    found = tuple(uow.escrow.payment(str(p)) for p in payments)
    milestone, contract = uow.escrow.milestone_and_contract(milestone_id)
    return Approval(_standing(uow, milestone, contract), found, order)


def complete_bonus_approval(uow: UnitOfWork, order: PaymentOrder, *, reference: str, psp_account: str) -> None:
    """The bonus charge succeeded: release all held and the bonus, with the order's amounts.

    A charge that succeeds after its approval was withdrawn (declined, expired, or a
    chargeback froze the milestone) is booked and refunded to the client at once."""
    milestone_id = order.milestone_id or ""
    milestone, contract = uow.escrow.milestone_and_contract(milestone_id, lock=True)
    order = uow.orders.get(order.id, lock=True)
    if uow.journal.find_by_keys([f"escrow.fund_bonus:{order.provider_key}"]):
        return  # booked already
    live = (
        not order.state.is_final and milestone.state is MilestoneState.APPROVAL_PENDING and milestone.frozen_by is None
    )
    post_funding(
        uow,
        contract,
        milestone_id,
        order.amount,
        0,
        psp_account,
        order.provider_key,
        reference,
        kind=EntryKind.FUND_BONUS,
    )
    if not live:
        refund_from_escrow(
            uow, contract, milestone_id, order.amount, reason="bonus_after_withdrawal", charge_reference=reference
        )
        if not order.state.is_final:
            why = "a chargeback froze the milestone" if milestone.frozen_by else "the approval was withdrawn"
            withdraw_bonus_approval(
                uow, order, state=OrderState.SUCCEEDED, reason=f"refunded: {why}", reference=reference
            )
        return
    require_transition(milestone_id, milestone.state, Event.BONUS_CONFIRMED)
    now = uow.clock.now()
    held = int(order.details["held"])
    request_key = order.details.get("request_key")
    payments = [release(uow, contract, milestone, held, effective_at=now, request_key=request_key)]
    payments.append(
        release(
            uow,
            contract,
            milestone,
            order.amount,
            effective_at=now,
            kind="bonus",
            request_key=None if request_key is None else f"{request_key}#bonus",
            charge_reference=reference,
        )
    )
    uow.escrow.save_milestone(replace(milestone, state=MilestoneState.RELEASED, review_deadline=None))
    uow.orders.finish(order.id, OrderState.SUCCEEDED, reference=reference)
    uow.orders.note(order.id, payments=",".join(p.id for p in payments))
    if request_key is not None:
        uow.orders.store_result(request_key, {"payments": [p.id for p in payments], "order": order.id})


def withdraw_bonus_approval(
    uow: UnitOfWork, order: PaymentOrder, *, state: OrderState, reason: str, reference: str | None = None
) -> None:
    """The bonus charge failed or was not completed: the milestone returns to its state,
    its review clock moved on by the time the approval was pending."""
    milestone_id = order.milestone_id or ""
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    uow.orders.finish(order.id, state, reference=reference or None, reason=reason)
    if milestone.state is not MilestoneState.APPROVAL_PENDING:
        return
    prior = MilestoneState(order.details.get("prior_state", MilestoneState.FUNDED.value))
    require_transition(milestone_id, milestone.state, Event.BONUS_WITHDRAWN)
    deadline = milestone.review_deadline
    if deadline is not None and prior is MilestoneState.SUBMITTED and milestone.frozen_by is None:
        waited = uow.clock.now() - datetime.fromisoformat(order.details["pending_since"])
        deadline = deadline + waited
        uow.escrow.schedule(REVIEW_EXPIRY, milestone_id, deadline)
    uow.escrow.save_milestone(replace(milestone, state=prior, review_deadline=deadline))
