"""`/v1/invoices` (finance): issued invoices and credit notes, as JSON or PDF."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from ledger.api.auth import FINANCE
from ledger.api.pagination import PageRequest
from ledger.api.schemas import DocumentList
from ledger.api.views import document_out
from ledger.invoices.render import render_document
from ledger.invoices.service import Finance


class InvoiceController(Controller):
    path = "/v1/invoices"
    tags = ["finance"]
    opt = {"roles": FINANCE}

    @get("/", operation_id="listInvoices", sync_to_thread=True)
    def invoices(
        self,
        finance: NamedDependency[Finance],
        page: NamedDependency[PageRequest],
        party_id: FromQuery[str | None] = None,
    ) -> DocumentList:
        """Issued invoices and credit notes, newest first; the cursor is a document number."""
        found = finance.documents(party_id=party_id, limit=page.fetch, starting_after=page.starting_after)
        return page.listing(DocumentList, found, document_out, cursor=lambda document: document.number)

    @get("/{number:str}", operation_id="getInvoice", sync_to_thread=True)
    def invoice(
        self, request: Request[Any, Any, Any], finance: NamedDependency[Finance], number: FromPath[str]
    ) -> Response[Any]:
        """One document as JSON, or its PDF with `Accept: application/pdf`."""
        document = finance.document(number)
        if "application/pdf" in request.headers.get("accept", ""):
            return Response(content=render_document(document), media_type="application/pdf")
        return Response(content=msgspec.json.encode(document_out(document)), media_type="application/json")
