"""`/v1/fees` (marketplace, finance): fee quotes."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter

from ledger.api.auth import FINANCE, MARKETPLACE
from ledger.api.schemas import FeeQuoteOut
from ledger.api.views import fee_quote_out
from ledger.money import normalize_currency, to_minor
from ledger.service import Ledger


class FeeController(Controller):
    path = "/v1/fees"
    tags = ["fees"]
    opt = {"roles": (*MARKETPLACE, *FINANCE)}

    @get("/quote", operation_id="quoteFee", sync_to_thread=True)
    def quote(
        self,
        book: NamedDependency[Ledger],
        freelancer_id: FromQuery[str],
        client_id: FromQuery[str],
        amount: Annotated[str, QueryParameter(description='decimal major units, e.g. "600.00"')],
        currency: FromQuery[str],
    ) -> FeeQuoteOut:
        """Preview the service fee of a payment between this freelancer and client (charges nothing)."""
        code = normalize_currency(currency)
        breakdown = book.quote_fee(
            freelancer_id=freelancer_id, client_id=client_id, amount=to_minor(amount, code), currency=code
        )
        return fee_quote_out(breakdown)
