"""Parties and fee quotes (marketplace); accounts, statements, reports, invoices (finance)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, put
from litestar.params import Parameter, QueryParameter
from msgspec import Struct

from ledger.api.context import FINANCE, MARKETPLACE, services
from ledger.api.money_out import Limit, parse_cursor
from ledger.api.schemas import Amount, FeeQuoteOut, PartyOut, PartyUpdate
from ledger.api.views import fee_quote_out
from ledger.clock import require_utc
from ledger.db.schema import accounts
from ledger.db.unit_of_work import UnitOfWork
from ledger.errors import InvalidRequest
from ledger.invoices.documents import Document
from ledger.invoices.render import render_document, render_statement
from ledger.invoices.statements import statement_csv
from ledger.money import normalize_currency, to_minor

PeriodStart = Annotated[datetime, QueryParameter(name="from", description="start of the half-open period [from, to)")]
OptionalPeriodStart = Annotated[
    datetime | None, QueryParameter(name="from", description="start of the half-open period [from, to)")
]


def _utc(value: datetime, field: str) -> datetime:
    try:
        return require_utc(value)
    except ValueError:
        raise InvalidRequest(f"{field} needs a UTC offset, e.g. 2026-01-01T00:00:00Z", field=field) from None


class PartyController(Controller):
    path = "/v1/parties"
    tags = ["parties"]
    opt = {"roles": MARKETPLACE}

    @put("/{party_id:str}", operation_id="setParty", sync_to_thread=True)
    def set(self, request: Request[Any, Any, Any], party_id: str, data: PartyUpdate) -> PartyOut:
        """Create or update a party record (fields left out keep their value)."""
        party = services(request).finance.set_party(party_id, **msgspec.structs.asdict(data))
        return PartyOut(**vars(party))

    @get("/{party_id:str}", operation_id="getParty", sync_to_thread=True)
    def read(self, request: Request[Any, Any, Any], party_id: str) -> PartyOut:
        """A party record."""
        return PartyOut(**vars(services(request).finance.party(party_id)))


class FeeController(Controller):
    path = "/v1/fees"
    tags = ["fees"]
    opt = {"roles": (*MARKETPLACE, *FINANCE)}

    @get("/quote", operation_id="quoteFee", sync_to_thread=True)
    def quote(
        self,
        request: Request[Any, Any, Any],
        freelancer_id: str,
        client_id: str,
        amount: Annotated[str, Parameter(description='decimal major units, e.g. "600.00"')],
        currency: str,
    ) -> FeeQuoteOut:
        """Preview the service fee of a payment between this freelancer and client (charges nothing)."""
        code = normalize_currency(currency)
        breakdown = services(request).book.quote_fee(
            freelancer_id=freelancer_id, client_id=client_id, amount=to_minor(amount, code), currency=code
        )
        return fee_quote_out(breakdown)


class AccountOut(Struct):
    code: str
    currency: str
    type: str
    normal_side: str
    floor: Amount | None


class AccountList(Struct):
    data: list[AccountOut]
    has_more: bool
    next_cursor: str | None


class BalanceAtOut(Struct):
    account: str
    balance: Amount
    as_of: datetime | None


class TrialBalanceRowOut(Struct):
    account: str
    type: str
    debit: Amount
    credit: Amount


class TrialBalanceOut(Struct):
    as_of: datetime
    rows: list[TrialBalanceRowOut]
    totals: list[TrialBalanceRowOut]
    balanced: bool


class FeeRevenueOut(Struct):
    client_id: str
    billings: Amount
    fees: Amount
    refunded: Amount
    fee_refunds: Amount
    net: Amount


class ReconciliationOut(Struct):
    status: str
    kind: str
    reference: str
    provider_amount: Amount | None
    ledger_amount: Amount | None
    entry_id: int | None


class DocumentList(Struct):
    data: list[dict[str, Any]]
    has_more: bool
    next_cursor: str | None


class FinanceController(Controller):
    path = "/v1"
    tags = ["finance"]
    opt = {"roles": FINANCE}

    @get("/accounts", operation_id="listAccounts", sync_to_thread=True)
    def list_accounts(
        self, request: Request[Any, Any, Any], limit: Limit = 20, starting_after: str | None = None
    ) -> AccountList:
        """Every account, newest first."""
        from sqlalchemy import select

        cursor = parse_cursor(starting_after)

        def read(uow: UnitOfWork) -> AccountList:
            query = select(accounts).order_by(accounts.c.id.desc()).limit(limit + 1)
            if cursor is not None:
                query = query.where(accounts.c.id < cursor)
            rows = list(uow.connection.execute(query))
            shown = rows[:limit]
            data = [
                AccountOut(
                    r.code,
                    r.currency,
                    r.type,
                    r.normal_side,
                    None if r.floor is None else Amount.of(int(r.floor), r.currency),
                )
                for r in shown
            ]
            more = len(rows) > limit
            return AccountList(data, more, str(shown[-1].id) if more else None)

        return services(request).book.transaction(read, read_only=True)

    @get("/accounts/{code:str}/balance", operation_id="getAccountBalance", sync_to_thread=True)
    def balance(
        self, request: Request[Any, Any, Any], code: str, currency: str, as_of: datetime | None = None
    ) -> BalanceAtOut:
        """An account's balance (normal side) now, or as of a time (entries effective before it)."""
        moment = None if as_of is None else _utc(as_of, "as_of")
        amount = services(request).book.balance(code, currency, as_of=moment)
        return BalanceAtOut(code, Amount.of(amount, normalize_currency(currency)), moment)

    @get("/accounts/{code:str}/statement", operation_id="getAccountStatement", sync_to_thread=True)
    def statement(
        self,
        request: Request[Any, Any, Any],
        code: str,
        currency: str,
        from_: PeriodStart,
        to: datetime,
        format: Literal["json", "csv", "pdf"] = "json",
    ) -> Response[Any]:
        """The account's statement over [from, to): JSON, CSV (fixed columns) or PDF."""
        svc = services(request)
        made = svc.finance.account_statement(code, currency, _utc(from_, "from"), _utc(to, "to"))
        if format == "csv":
            return Response(content=statement_csv(made), media_type="text/csv")
        if format == "pdf":
            return Response(content=render_statement(made), media_type="application/pdf")
        c = made.currency
        body = {
            "account": code,
            "currency": c,
            "from": made.period_from.isoformat(),
            "to": made.period_to.isoformat(),
            "opening_balance": Amount.of(made.opening_balance, c),
            "closing_balance": Amount.of(made.closing_balance, c),
            "lines": [
                {
                    "posted_at": line.posted_at.isoformat(),
                    "entry_id": line.entry_id,
                    "reference": line.reference,
                    "kind": line.kind,
                    "debit": Amount.of(line.debit, c),
                    "credit": Amount.of(line.credit, c),
                    "running_balance": Amount.of(line.running_balance, c),
                }
                for line in made.lines
            ],
        }
        return Response(content=msgspec.json.encode(body), media_type="application/json")

    @get("/reports/trial-balance", operation_id="getTrialBalance", sync_to_thread=True)
    def trial_balance(self, request: Request[Any, Any, Any], as_of: datetime) -> TrialBalanceOut:
        """Every account's balance as of a time in debit and credit columns; totals equal per currency."""
        made = services(request).finance.trial_balance(_utc(as_of, "as_of"))
        rows = [
            TrialBalanceRowOut(r.account, r.type, Amount.of(r.debit, r.currency), Amount.of(r.credit, r.currency))
            for r in made.rows
        ]
        totals = [
            TrialBalanceRowOut("TOTAL", "", Amount.of(d, c), Amount.of(k, c))
            for c, (d, k) in sorted(made.totals.items())
        ]
        return TrialBalanceOut(made.as_of, rows, totals, made.balanced)

    @get("/reports/fees", operation_id="getFeeRevenue", sync_to_thread=True)
    def fee_revenue(self, request: Request[Any, Any, Any], from_: PeriodStart, to: datetime) -> list[FeeRevenueOut]:
        """Fee revenue by client over [from, to): billings, fees, refunds and net."""
        rows = services(request).finance.fee_revenue(_utc(from_, "from"), _utc(to, "to"))
        return [
            FeeRevenueOut(
                r.client_id,
                *(Amount.of(v, r.currency) for v in (r.billings, r.fees, r.refunded, r.fee_refunds, r.net)),
            )
            for r in rows
        ]

    @get("/reports/reconciliation", operation_id="getReconciliation", sync_to_thread=True)
    def reconciliation(
        self, request: Request[Any, Any, Any], from_: PeriodStart, to: datetime
    ) -> list[ReconciliationOut]:
        """The payment provider's payments, refunds and transfers in [from, to) against the ledger."""
        lines = services(request).escrow.orders.reconcile(_utc(from_, "from"), _utc(to, "to"))
        return [
            ReconciliationOut(
                line.status,
                line.kind,
                line.reference,
                None if line.provider_amount is None else Amount.of(line.provider_amount, line.currency),
                None if line.ledger_amount is None else Amount.of(line.ledger_amount, line.currency),
                line.entry_id,
            )
            for line in lines
        ]

    @get("/invoices", operation_id="listInvoices", sync_to_thread=True)
    def invoices(
        self,
        request: Request[Any, Any, Any],
        party_id: str | None = None,
        limit: Limit = 20,
        starting_after: str | None = None,
    ) -> DocumentList:
        """Issued invoices and credit notes, newest first; the cursor is a document number."""
        found = services(request).finance.documents(party_id=party_id, limit=limit + 1, starting_after=starting_after)
        shown = found[:limit]
        more = len(found) > limit
        return DocumentList([_document_json(d) for d in shown], more, shown[-1].number if more else None)

    @get("/invoices/{number:str}", operation_id="getInvoice", sync_to_thread=True)
    def invoice(self, request: Request[Any, Any, Any], number: str) -> Response[Any]:
        """One document as JSON, or its PDF with `Accept: application/pdf`."""
        svc = services(request)
        if "application/pdf" in request.headers.get("accept", ""):
            return Response(content=render_document(svc.finance.document(number)), media_type="application/pdf")
        return Response(
            content=msgspec.json.encode(_document_json(svc.finance.document(number))), media_type="application/json"
        )


def _document_json(document: Document) -> dict[str, Any]:
    data = document.to_data()
    c = document.currency
    data["total"] = Amount.of(document.total, c)
    data["lines"] = [
        {
            "description": line.description,
            "amount": Amount.of(line.amount, c),
            "billed_in_tier": None if line.quantity_amount is None else Amount.of(line.quantity_amount, c),
            "rate": None if line.rate is None else str(line.rate),
        }
        for line in document.lines
    ]
    return data
