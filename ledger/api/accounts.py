"""`/v1/accounts` (finance): the chart of accounts, balances and statements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from ledger.api.auth import FINANCE
from ledger.api.pagination import PageRequest
from ledger.api.params import AsOf, PeriodEnd, PeriodStart, instant_param, optional_instant
from ledger.api.schemas import STATEMENT_RESPONSE, AccountList, Amount, BalanceAtOut
from ledger.api.streaming import streamed
from ledger.api.views import account_out, statement_json_chunks
from ledger.invoices.documents import StatementHeading, StatementLine
from ledger.invoices.render import render_statement
from ledger.invoices.service import Finance
from ledger.invoices.statements import csv_chunks
from ledger.service import Ledger


def csv_bytes(heading: StatementHeading, lines: Iterator[StatementLine]) -> Iterator[bytes]:
    for text in csv_chunks(heading, lines):
        yield text.encode()


class AccountController(Controller):
    path = "/v1/accounts"
    tags = ["finance"]
    opt = {"roles": FINANCE}

    @get("/", operation_id="listAccounts", sync_to_thread=True)
    def list_accounts(self, finance: NamedDependency[Finance], page: NamedDependency[PageRequest]) -> AccountList:
        """Every account, newest first."""
        found = finance.accounts(limit=page.fetch, starting_after=page.after_id())
        return page.listing(AccountList, found, account_out, cursor=lambda account: account.id)

    @get("/{code:str}/balance", operation_id="getAccountBalance", sync_to_thread=True)
    def balance(
        self,
        book: NamedDependency[Ledger],
        code: FromPath[str],
        currency: FromQuery[str | None] = None,
        as_of: AsOf = None,
    ) -> BalanceAtOut:
        """An account's balance (normal side) now, or as of a time (entries effective before
        it). `currency` may be left out when the account is held in one currency."""
        moment = optional_instant(as_of, "as_of")
        held = book.currency_of(code, currency)
        amount = book.balance(code, held, as_of=moment)
        return BalanceAtOut(code, Amount.of(amount, held), moment)

    @get(
        "/{code:str}/statement",
        operation_id="getAccountStatement",
        sync_to_thread=True,
        responses={200: STATEMENT_RESPONSE},
    )
    def statement(
        self,
        finance: NamedDependency[Finance],
        code: FromPath[str],
        from_: PeriodStart,
        to: PeriodEnd,
        currency: FromQuery[str | None] = None,
        format: FromQuery[Literal["json", "csv", "pdf"]] = "json",
    ) -> Response[Any]:
        """The account's statement over [from, to): JSON, CSV (fixed columns) or PDF.
        `currency` may be left out when the account is held in one currency.

        JSON and CSV are streamed as the lines are read, any number of them; a PDF is
        built whole and refused with 422 `statement-too-long` beyond its line limit."""
        start, end = instant_param(from_, "from"), instant_param(to, "to")
        currency = finance.book.currency_of(code, currency)
        if format == "pdf":
            made = finance.account_statement(code, currency, start, end)
            return Response(content=render_statement(made), media_type="application/pdf")
        if format == "csv":
            chunks = finance.stream_account_statement(code, currency, start, end, csv_bytes)
            return Stream(streamed(chunks), media_type="text/csv")

        def json_chunks(heading: StatementHeading, lines: Iterator[StatementLine]) -> Iterator[bytes]:
            return statement_json_chunks(code, heading, lines)

        chunks = finance.stream_account_statement(code, currency, start, end, json_chunks)
        return Stream(streamed(chunks), media_type="application/json")
