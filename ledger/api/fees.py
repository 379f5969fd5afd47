"""`/v1/fees` (marketplace, finance): fee quotes."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter

from ledger.api.auth import FINANCE, MARKETPLACE
from ledger.api.params import INSTANT, optional_instant
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
        amount: Annotated[str, QueryParameter(description='decimal major units, e.g. "600.00"')],
        currency: FromQuery[str],
        freelancer_id: FromQuery[str | None] = None,
        client_id: FromQuery[str | None] = None,
        lifetime: Annotated[
            str | None,
            QueryParameter(description="a hypothetical lifetime billings (decimal major units) instead of the pair's"),
        ] = None,
        at: Annotated[
            str | None, QueryParameter(description=f"price under the schedule in force then (default: now): {INSTANT}")
        ] = None,
    ) -> FeeQuoteOut:
        """Preview the service fee of a payment (charges nothing): between this freelancer
        and client, from their lifetime billings, or from a hypothetical `lifetime`."""
        code = normalize_currency(currency)
        breakdown = book.quote_fee(
            amount=to_minor(amount, code),
            currency=code,
            freelancer_id=freelancer_id,
            client_id=client_id,
            lifetime=None if lifetime is None else to_minor(lifetime, code),
            at=optional_instant(at, "at"),
        )
        return fee_quote_out(breakdown)
