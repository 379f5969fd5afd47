"""`/v1/payments` (marketplace): payments released to freelancers, and their refunds."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ledger.api.auth import MARKETPLACE
from ledger.api.idempotent import idempotent
from ledger.api.schemas import PaymentOut, RefundCreate, RefundOut
from ledger.api.views import payment_currency, read_payment, refund_out
from ledger.escrow.service import Escrow
from ledger.service import Ledger


class PaymentController(Controller):
    path = "/v1/payments"
    tags = ["escrow"]
    opt = {"roles": MARKETPLACE}

    @get("/{payment_id:str}", operation_id="getPayment", sync_to_thread=True)
    def read(self, book: NamedDependency[Ledger], payment_id: FromPath[str]) -> PaymentOut:
        """A payment released to a freelancer."""
        return read_payment(book, payment_id)

    @post("/{payment_id:str}/refunds", operation_id="refundPayment", sync_to_thread=True, status_code=201)
    @idempotent
    def refund(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        payment_id: FromPath[str],
        data: JSONBody[RefundCreate],
    ) -> RefundOut:
        """The freelancer refunds (part of) a released payment, within 180 days and their balance."""
        currency = payment_currency(book, payment_id)
        refund = escrow.refunds.refund_payment(payment_id, data.amount.minor(currency), request_key=request_key)
        return refund_out(refund, currency)
