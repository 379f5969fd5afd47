"""`/v1/parties` (marketplace): the client and freelancer records printed on invoices, and
(marketplace, finance) a party's statement."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import msgspec
from litestar import Controller, Response, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream

from ledger.api.accounts import csv_bytes
from ledger.api.auth import FINANCE, MARKETPLACE
from ledger.api.params import PeriodEnd, PeriodStart, instant_param
from ledger.api.schemas import STATEMENT_RESPONSE, PartyOut, PartyUpdate
from ledger.api.streaming import streamed
from ledger.api.views import party_out, statement_json_chunks
from ledger.invoices.documents import StatementHeading, StatementLine
from ledger.invoices.render import render_statement
from ledger.invoices.service import Finance


class PartyController(Controller):
    path = "/v1/parties"
    tags = ["parties"]
    opt = {"roles": MARKETPLACE}

    @put("/{party_id:str}", operation_id="setParty", sync_to_thread=True)
    def set(self, finance: NamedDependency[Finance], party_id: FromPath[str], data: JSONBody[PartyUpdate]) -> PartyOut:
        """Create or update a party record (fields left out keep their value)."""
        return party_out(finance.set_party(party_id, **msgspec.structs.asdict(data)))

    @get("/{party_id:str}", operation_id="getParty", sync_to_thread=True)
    def read(self, finance: NamedDependency[Finance], party_id: FromPath[str]) -> PartyOut:
        """A party record."""
        return party_out(finance.party(party_id))

    @get(
        "/{party_id:str}/statement",
        operation_id="getPartyStatement",
        sync_to_thread=True,
        responses={200: STATEMENT_RESPONSE},
        opt={"roles": (*MARKETPLACE, *FINANCE)},
    )
    def statement(
        self,
        finance: NamedDependency[Finance],
        party_id: FromPath[str],
        role: FromQuery[Literal["client", "freelancer"]],
        currency: FromQuery[str],
        from_: PeriodStart,
        to: PeriodEnd,
        format: FromQuery[Literal["json", "csv", "pdf"]] = "json",
    ) -> Response[Any]:
        """A party's statement over [from, to), the same as `ledger statement <party> --role`:
        for a freelancer, their pending and available balances (releases, refunds after
        release, chargeback recoveries, payouts); for a client, what its escrow holds for
        it (fundings, releases, refunds, chargebacks taken from escrow), hourly weeks and
        bonuses included. JSON (`account` is the party's id), CSV or PDF, as an account's
        statement."""
        start, end = instant_param(from_, "from"), instant_param(to, "to")
        if format == "pdf":
            made = finance.party_statement(party_id, role, currency, start, end)
            return Response(content=render_statement(made), media_type="application/pdf")
        if format == "csv":
            chunks = finance.stream_party_statement(party_id, role, currency, start, end, csv_bytes)
            return Stream(streamed(chunks), media_type="text/csv")

        def json_chunks(heading: StatementHeading, lines: Iterator[StatementLine]) -> Iterator[bytes]:
            return statement_json_chunks(party_id, heading, lines)

        chunks = finance.stream_party_statement(party_id, role, currency, start, end, json_chunks)
        return Stream(streamed(chunks), media_type="application/json")
