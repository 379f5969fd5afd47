"""`/v1/payment-orders` (admin): the calls to the payment provider, for operators.

The same rules as `ledger orders`: list them by state and age, read one with who moved
it through its states, send a refund or payout order again (the provider is searched
first, so a retry never pays twice), or settle one by hand once the provider's own
records say how it ended (`ledger.escrow.operations`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from ledger.api.auth import ADMIN
from ledger.api.idempotent import idempotent
from ledger.api.schemas import OrderResolve, PaymentOrderList, PaymentOrderOut
from ledger.api.views import payment_order_out
from ledger.config import parse_duration
from ledger.errors import InvalidRequest
from ledger.escrow.operations import MAX_LISTED_ORDERS, list_orders, resolve_order, retry_order
from ledger.escrow.service import Escrow
from ledger.escrow.services.transactions import require_gateway
from ledger.service import Ledger


def _older_than(text: str | None) -> timedelta:
    if text is None:
        return timedelta(0)
    try:
        return parse_duration(text)
    except ValueError as error:
        raise InvalidRequest(str(error), field="older_than") from None


class PaymentOrderController(Controller):
    path = "/v1/payment-orders"
    tags = ["operators"]
    opt = {"roles": ADMIN}

    @get(operation_id="listPaymentOrders", sync_to_thread=True)
    def listing(
        self,
        book: NamedDependency[Ledger],
        order_state: Annotated[str | None, QueryParameter(name="state")] = None,  # `state` is Litestar's own
        older_than: FromQuery[str | None] = None,
        limit: FromQuery[int] = MAX_LISTED_ORDERS,
    ) -> PaymentOrderList:
        """Payment orders, oldest first, at most `limit` (1 to 1000): all, those in one
        `state` (pending, sent, requires_action, succeeded, failed, cancelled, or
        `stuck`: sent and not acknowledged), and only those older than `older_than`
        (`30m`, `24h`, `7d`). `more` says newer ones were left out."""
        age = _older_than(older_than)
        found = list_orders(book, state=order_state, limit=limit)
        orders = [payment_order_out(o, found.now) for o in found.orders if o.age(found.now) >= age]
        return PaymentOrderList(orders, more=found.more)

    @get("/{order_id:str}", operation_id="getPaymentOrder", sync_to_thread=True)
    def read(self, book: NamedDependency[Ledger], order_id: FromPath[str]) -> PaymentOrderOut:
        """One payment order, with the states it went through and who moved it there."""
        order, history = book.transaction(
            lambda uow: (uow.orders.get(order_id), uow.orders.history(order_id)), read_only=True
        )
        return payment_order_out(order, book.clock.now(), history)

    @post("/{order_id:str}/retry", operation_id="retryPaymentOrder", sync_to_thread=True, status_code=200)
    @idempotent
    def retry(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        order_id: FromPath[str],
    ) -> PaymentOrderOut:
        """Send a failed or stuck refund or payout order again; the provider is asked
        first whether it already did it."""
        order = retry_order(book, require_gateway(escrow.gateway), order_id)
        return payment_order_out(order, book.clock.now())

    @post("/{order_id:str}/resolve", operation_id="resolvePaymentOrder", sync_to_thread=True, status_code=200)
    @idempotent
    def resolve(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        order_id: FromPath[str],
        data: JSONBody[OrderResolve],
    ) -> PaymentOrderOut:
        """Settle an order by hand: `succeeded` with the provider's reference (which the
        provider must confirm), or `failed` with the reason. Recorded with the operator's key."""
        order = resolve_order(
            book,
            require_gateway(escrow.gateway),
            order_id,
            outcome=data.outcome,
            reference=data.reference,
            reason=data.reason,
        )
        return payment_order_out(order, book.clock.now())
