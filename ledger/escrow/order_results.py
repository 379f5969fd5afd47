"""Applying the provider's answer to a payment order, in one transaction.

Every function locks the order first and does nothing to an order already final,
so an answer applied twice (a retry, two dispatchers, a webhook and a retrieval)
books once. What is booked is the order's own amount.
"""

from __future__ import annotations

from ledger.escrow import approvals
from ledger.escrow.hourly_billing import after_failed_charge, after_funding
from ledger.escrow.milestones import await_funding, confirm_funding, fail_funding, start_next_attempt
from ledger.escrow.orders import STATUS_POLL, NewOrder, OrderKind, OrderState, PaymentOrder
from ledger.escrow.payments import book_processing_fee, settle_refund
from ledger.escrow.payouts import settle_payout
from ledger.gateway import GatewayResult
from ledger.ports.unit_of_work import UnitOfWork


def apply_result(
    uow: UnitOfWork, order_id: str, result: GatewayResult, *, psp_account: str, fees: bool
) -> tuple[str, list[str]]:
    """Book the provider's answer to an order; returns the order's state and the orders this wrote."""
    order = uow.orders.get(order_id, lock=True)
    if order.state.is_final:
        return order.state.value, []
    handler = _HANDLERS[order.kind]
    handler(uow, order, result, psp_account, fees)
    return uow.orders.get(order_id).state.value, list(uow.orders.written)


def _pending_at_provider(uow: UnitOfWork, order: PaymentOrder, result: GatewayResult) -> bool:
    """The provider took the order but has not finished it: ask again later."""
    if result.status != "requires_action":
        return False
    uow.orders.acknowledged(order.id, result.reference, retry_at=uow.clock.now() + STATUS_POLL)
    return True


def _fund(uow: UnitOfWork, order: PaymentOrder, result: GatewayResult, psp_account: str, fees: bool) -> None:
    milestone_id = order.milestone_id or ""
    key = order.details.get("funding_key", order.provider_key)
    if result.succeeded:
        confirm_funding(uow, milestone_id, funding_key=key, reference=result.reference, psp_account=psp_account)
        after_funding(uow, milestone_id)
        if fees:
            _order_processing_fee(uow, order, result.reference)
        return
    if order.details.get("off_session") == "true" and (result.failed or result.status == "requires_action"):
        # No payer is present to act or to try another card (an hourly week's charge):
        # asking for the payer's action is a failure, and any failure ends the attempt.
        if result.failed:
            reason = result.failure_reason or result.status
        else:
            reason = "the provider asked for the payer's action; an off-session charge has no payer present"
        uow.orders.finish(order.id, OrderState.FAILED, reference=result.reference or None, reason=reason)
        fail_funding(uow, milestone_id, funding_key=key, reason=reason)
        after_failed_charge(uow, milestone_id)
        return
    if result.status == "requires_action" or (result.failed and not result.final):
        # The payer must act, or try another payment method: the charge is not over. A
        # non-final failure frees the milestone for a new attempt (which cancels this charge
        # first); if this charge succeeds after all, the money is booked and refunded.
        uow.orders.wait_for_payer(order.id, result.reference, client_secret=result.client_secret)
        if result.failed:
            fail_funding(uow, milestone_id, funding_key=key, reason=result.failure_reason or "payment failed")
        else:
            await_funding(uow, milestone_id, funding_key=key, reference=result.reference)
        return
    reason = result.failure_reason or result.status
    uow.orders.finish(order.id, OrderState.FAILED, reference=result.reference or None, reason=reason)
    fail_funding(uow, milestone_id, funding_key=key, reason=reason)


def _bonus(uow: UnitOfWork, order: PaymentOrder, result: GatewayResult, psp_account: str, fees: bool) -> None:
    if result.succeeded:
        approvals.complete_bonus_approval(uow, order, reference=result.reference, psp_account=psp_account)
        if fees:
            _order_processing_fee(uow, order, result.reference)
        return
    if result.status == "requires_action" or (result.failed and not result.final):
        uow.orders.wait_for_payer(order.id, result.reference, client_secret=result.client_secret)
        return
    approvals.withdraw_bonus_approval(
        uow, order, state=OrderState.FAILED, reason=result.failure_reason or result.status, reference=result.reference
    )


def _cancel(uow: UnitOfWork, order: PaymentOrder, result: GatewayResult, psp_account: str, fees: bool) -> None:
    if result.succeeded:
        # Too late to cancel: the charge went through meanwhile. Book it as the payment of
        # the attempt it belongs to (a superseded one is booked and refunded).
        uow.orders.finish(order.id, OrderState.FAILED, reason="the charge had already succeeded")
        charge = uow.orders.by_provider_reference(order.target_reference or "")
        if charge is not None and charge.kind is OrderKind.BONUS:
            approvals.complete_bonus_approval(uow, charge, reference=result.reference, psp_account=psp_account)
        elif order.milestone_id is not None:
            key = order.details.get("funding_key", "")
            confirm_funding(
                uow, order.milestone_id, funding_key=key, reference=result.reference, psp_account=psp_account
            )
        return
    uow.orders.finish(order.id, OrderState.SUCCEEDED, reference=result.reference or None)
    charge = uow.orders.by_provider_reference(order.target_reference or "")
    if charge is not None and not charge.state.is_final:
        uow.orders.finish(charge.id, OrderState.CANCELLED, reason=order.details.get("reason", "cancelled"))
    if order.details.get("next_funding_key") and order.milestone_id is not None:
        start_next_attempt(uow, order)


def _refund(uow: UnitOfWork, order: PaymentOrder, result: GatewayResult, psp_account: str, fees: bool) -> None:
    if _pending_at_provider(uow, order, result):
        return
    settle_refund(
        uow,
        order.refund_order_id or "",
        succeeded=result.succeeded,
        reference=result.reference or None,
        reason=result.failure_reason,
    )


def _payout(uow: UnitOfWork, order: PaymentOrder, result: GatewayResult, psp_account: str, fees: bool) -> None:
    if _pending_at_provider(uow, order, result):
        return
    settle_payout(
        uow,
        order.payout_id or "",
        paid=result.succeeded,
        psp_account=psp_account,
        reference=result.reference or None,
        reason=result.failure_reason,
    )


def _order_processing_fee(uow: UnitOfWork, charge: PaymentOrder, reference: str) -> None:
    if uow.orders.by_provider_key(f"fee:{reference}") is not None:
        return  # asked for already (the charge's success was reported twice)
    uow.orders.add(
        NewOrder(
            kind=OrderKind.PROCESSING_FEE,
            amount=0,
            currency=charge.currency,
            provider_key=f"fee:{reference}",
            milestone_id=charge.milestone_id,
            target_reference=reference,
        )
    )


def apply_processing_fee(uow: UnitOfWork, order_id: str, found: tuple[int, str] | None, *, psp_account: str) -> str:
    order = uow.orders.get(order_id, lock=True)
    if order.state.is_final:
        return order.state.value
    if found is not None and order.milestone_id is not None:
        fee, currency = found
        book_processing_fee(
            uow,
            order.milestone_id,
            reference=order.target_reference or "",
            fee=fee,
            currency=currency,
            psp_account=psp_account,
        )
    uow.orders.finish(order_id, OrderState.SUCCEEDED)
    return OrderState.SUCCEEDED.value


_HANDLERS = {
    OrderKind.FUND: _fund,
    OrderKind.BONUS: _bonus,
    OrderKind.CANCEL: _cancel,
    OrderKind.REFUND: _refund,
    OrderKind.PAYOUT: _payout,
}


def give_up(uow: UnitOfWork, order_id: str, *, reason: str) -> tuple[str, list[str]]:
    """The provider stayed unreachable: the order fails and stays visible to operators.

    A charge fails like a decline (its milestone is free again; if it went through
    after all, the money is booked and refunded). Refunds and payouts keep their
    money in transit: whether the provider acted is unknown, an operator resolves it."""
    order = uow.orders.get(order_id, lock=True)
    if order.state.is_final:
        return order.state.value, []
    reason = f"gave up: {reason}"
    if order.kind is OrderKind.FUND:
        uow.orders.finish(order.id, OrderState.FAILED, reason=reason)
        fail_funding(uow, order.milestone_id or "", funding_key=order.details.get("funding_key", ""), reason=reason)
    elif order.kind is OrderKind.BONUS:
        approvals.withdraw_bonus_approval(uow, order, state=OrderState.FAILED, reason=reason)
    else:
        uow.orders.finish(order.id, OrderState.FAILED, reason=reason)
    return OrderState.FAILED.value, list(uow.orders.written)


def expire_waiting_charge(uow: UnitOfWork, order_id: str, *, can_cancel: bool) -> int:
    """A charge the payer did not complete within 24 hours: cancelled; the milestone returns
    to its state, and the charge is cancelled at the provider too."""
    order = uow.orders.get(order_id, lock=True)
    if order.state.is_final or order.kind not in (OrderKind.FUND, OrderKind.BONUS):
        return 0
    reason = "not completed within 24 hours"
    if order.kind is OrderKind.BONUS:
        approvals.withdraw_bonus_approval(uow, order, state=OrderState.CANCELLED, reason=reason)
    else:
        uow.orders.finish(order.id, OrderState.CANCELLED, reason=reason)
        fail_funding(uow, order.milestone_id or "", funding_key=order.details.get("funding_key", ""), reason=reason)
    if can_cancel and order.provider_reference:
        uow.orders.add(
            NewOrder(
                kind=OrderKind.CANCEL,
                amount=order.amount,
                currency=order.currency,
                provider_key=f"cancel:{order.id}",
                milestone_id=order.milestone_id,
                target_reference=order.provider_reference,
                details={"reason": reason, "funding_key": order.details.get("funding_key", "")},
            )
        )
    return 1
