"""Audit endpoints (auditor, finance): every invariant check, and the journal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Controller, Request, get
from msgspec import Struct

from ledger.api.context import READERS, services
from ledger.api.finance import OptionalPeriodStart, _utc
from ledger.api.money_out import Limit, parse_cursor
from ledger.api.schemas import EntryList
from ledger.api.views import entry_out
from ledger.gateway.books import provider_books_of


class CheckOut(Struct):
    name: str
    ok: bool
    problems: list[dict[str, Any]]
    #: findings that do not fail the check (e.g. provider movements not booked yet)
    notes: list[dict[str, Any]] = []


class AuditOut(Struct):
    ok: bool
    checks: list[CheckOut]


class AuditController(Controller):
    path = "/v1"
    tags = ["audit"]
    opt = {"roles": READERS}

    @get("/audit", operation_id="runAudit", sync_to_thread=True)
    def audit(self, request: Request[Any, Any, Any]) -> AuditOut:
        """Run every invariant check over the whole ledger (the same report as `ledger audit --json`)."""
        found = services(request)
        report = found.book.audit(provider=provider_books_of(found.escrow.gateway)).to_dict()
        return AuditOut(report["ok"], [CheckOut(**c) for c in report["checks"]])

    @get("/journal", operation_id="listJournal", sync_to_thread=True)
    def journal(
        self,
        request: Request[Any, Any, Any],
        limit: Limit = 20,
        starting_after: str | None = None,
        kind: str | None = None,
        from_: OptionalPeriodStart = None,
        to: datetime | None = None,
    ) -> EntryList:
        """Journal entries with their postings, newest first; filter by kind and effective time [from, to)."""
        cursor = parse_cursor(starting_after)
        start = None if from_ is None else _utc(from_, "from")
        end = None if to is None else _utc(to, "to")
        page = services(request).book.transaction(
            lambda uow: uow.journal.newest_first(
                starting_after=cursor, limit=limit + 1, kind=kind, effective_from=start, effective_to=end
            ),
            read_only=True,
        )
        shown = page[:limit]
        more = len(page) > limit
        return EntryList([entry_out(e) for e in shown], more, str(shown[-1].id) if more else None)
