"""What operators do with payment orders: list them, retry one, resolve one by hand.

The CLI (`ledger orders ...`) calls these; every change is recorded on the order
(`resolved_by`, the reason) and goes through the same idempotent booking as the
dispatcher's, so the audit checks it like any other.

- retry: the order is due again, and the provider is searched for the object
  first (by our order id in its metadata), so a retry never makes a second one.
  Refused for charges (start a new funding attempt instead) and for payouts whose
  money already went back to the freelancer.
- resolve as succeeded: only with a provider reference the gateway confirms.
- resolve as failed: with a reason; what is booked follows the order's kind (a
  refund stays owed to the client, a payout's money goes back to available).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ledger.actors import current_actor
from ledger.errors import InvalidRequest, NotFound
from ledger.escrow.dispatcher import Dispatcher
from ledger.escrow.model import PayoutState
from ledger.escrow.order_results import apply_result
from ledger.escrow.orders import LOOKUP_LIMIT, OrderKind, OrderNotResolvable, OrderState, PaymentOrder
from ledger.gateway import (
    ChargeRetrieval,
    GatewayResult,
    ObjectLookup,
    PaymentGateway,
    RefundRetrieval,
    TransferRetrieval,
)
from ledger.ports.unit_of_work import UnitOfWork
from ledger.service import Ledger


@dataclass(frozen=True)
class OrderListing:
    """Orders as an operator sees them, with their age at `now`."""

    now: datetime
    orders: list[PaymentOrder]
    more: bool = False  # further (newer) orders of the kind asked for were not listed


#: The most orders one listing shows (the oldest; narrow it by state to see others).
MAX_LISTED_ORDERS = 1000


def list_orders(book: Ledger, *, state: str | None = None, limit: int = MAX_LISTED_ORDERS) -> OrderListing:
    """The oldest `limit` orders: all, those in one state, or `stuck` ones (sent,
    unacknowledged past a threshold)."""
    if not 1 <= limit <= MAX_LISTED_ORDERS:
        raise InvalidRequest(f"the limit is from 1 to {MAX_LISTED_ORDERS}, not {limit}", field="limit")
    now = book.clock.now()
    if state is None:
        states = None
    elif state == "stuck":
        states = [OrderState.SENT]
    else:
        try:
            states = [OrderState(state)]
        except ValueError:
            choices = ", ".join([*(s.value for s in OrderState), "stuck"])
            raise InvalidRequest(f"the state is one of {choices}, not {state!r}", field="state") from None
    found = book.transaction(lambda uow: uow.orders.listing(states=states, limit=limit + 1), read_only=True)
    more = len(found) > limit
    found = found[:limit]
    if state == "stuck":
        found = [o for o in found if o.is_stuck(now)]
    return OrderListing(now, found, more)


def retry_order(book: Ledger, gateway: PaymentGateway, order_id: str) -> PaymentOrder:
    """Make a refund or payout order due again and send it now, looking at the provider first."""

    def reopen(uow: UnitOfWork) -> None:
        order = uow.orders.get(order_id, lock=True)
        if order.state is OrderState.SUCCEEDED or order.state is OrderState.CANCELLED:
            raise OrderNotResolvable(f"payment order {order_id} is {order.state.value}: nothing to retry")
        if order.kind in (OrderKind.FUND, OrderKind.BONUS, OrderKind.CANCEL):
            raise OrderNotResolvable(
                f"payment order {order_id} is a {order.kind.value}: the client starts a new attempt instead"
            )
        if (
            order.kind is OrderKind.PAYOUT
            and order.payout_id is not None
            and uow.escrow.payout(order.payout_id).state is not PayoutState.IN_TRANSIT
        ):
            raise OrderNotResolvable(f"payout {order.payout_id} is no longer in transit: nothing to retry")
        if order.first_sent_at is not None and uow.clock.now() - order.first_sent_at > LOOKUP_LIMIT:
            raise OrderNotResolvable(
                f"payment order {order_id} was first sent more than {LOOKUP_LIMIT.days} days ago: the provider "
                "cannot be searched that far back; check it there and use `ledger orders resolve`"
            )
        uow.orders.reopen(order_id, at=uow.clock.now())
        uow.orders.note(order_id, lookup_first="true", retried_by=current_actor())

    book.transaction(reopen)
    Dispatcher(book, gateway).run([order_id])
    return book.transaction(lambda uow: uow.orders.get(order_id), read_only=True)


def resolve_order(
    book: Ledger,
    gateway: PaymentGateway,
    order_id: str,
    *,
    outcome: str,
    reference: str | None = None,
    reason: str | None = None,
) -> PaymentOrder:
    """Settle an order by hand: `succeeded` (a reference the gateway confirms) or `failed` (a reason)."""
    if outcome not in ("succeeded", "failed"):
        raise InvalidRequest("the outcome is succeeded or failed (--as)", field="as")
    order = book.transaction(lambda uow: uow.orders.get(order_id), read_only=True)
    if outcome == "succeeded":
        if not reference:
            raise InvalidRequest(
                "succeeded needs the provider's id of the object as its reference (--reference)", field="reference"
            )
        if not _confirmed(gateway, order, reference):
            raise OrderNotResolvable(
                f"the payment provider does not confirm {reference} as the succeeded object of payment order {order_id}"
            )
        result = GatewayResult("succeeded", reference)
    else:
        if not reason or not reason.strip():
            raise InvalidRequest("failed needs the reason it failed (--reason)", field="reason")
        result = GatewayResult("failed", reference or order.provider_reference or "", failure_reason=reason.strip())

    def settle(uow: UnitOfWork) -> PaymentOrder:
        current = uow.orders.get(order_id, lock=True)
        if current.state is OrderState.SUCCEEDED or current.state is OrderState.CANCELLED:
            raise OrderNotResolvable(f"payment order {order_id} is already {current.state.value}")
        if current.state is OrderState.FAILED:
            if outcome == "failed":
                raise OrderNotResolvable(f"payment order {order_id} is already failed")
            uow.orders.reopen(order_id, at=uow.clock.now())
        apply_result(uow, order_id, result, psp_account=gateway.psp_account, fees=False)
        uow.orders.mark_resolved(order_id, actor=current_actor(), note=reason or f"resolved as succeeded: {reference}")
        return uow.orders.get(order_id)

    return book.transaction(settle)


def _confirmed(gateway: PaymentGateway, order: PaymentOrder, reference: str) -> bool:
    """Does the provider have `reference` as this order's succeeded object?"""
    try:
        return _provider_confirms(gateway, order, reference)
    except NotFound:
        return False


def _provider_confirms(gateway: PaymentGateway, order: PaymentOrder, reference: str) -> bool:
    if isinstance(gateway, ObjectLookup):
        kind = {OrderKind.REFUND: "refund", OrderKind.PAYOUT: "transfer"}.get(order.kind, "charge")
        found = gateway.find(kind, order.id)
        if found is not None:
            return found.reference == reference and found.succeeded
    if order.kind is OrderKind.REFUND and isinstance(gateway, RefundRetrieval):
        return gateway.retrieve_refund(reference)[0].succeeded
    if order.kind in (OrderKind.FUND, OrderKind.BONUS) and isinstance(gateway, ChargeRetrieval):
        return gateway.retrieve_charge(reference)[0].succeeded
    if order.kind is OrderKind.PAYOUT and isinstance(gateway, TransferRetrieval):
        reversed_amount, metadata = gateway.retrieve_transfer(reference)
        return not reversed_amount and metadata.get("payout") == order.payout_id
    return False
