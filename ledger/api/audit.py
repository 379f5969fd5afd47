"""Audit endpoints (auditor, finance): every invariant check, and the journal."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from msgspec import Struct

from ledger.api.auth import READERS
from ledger.api.pagination import PageRequest
from ledger.api.params import OptionalPeriodEnd, OptionalPeriodStart, optional_instant
from ledger.api.schemas import EntryList
from ledger.api.views import entry_out
from ledger.escrow.service import Escrow
from ledger.gateway.books import provider_books_of
from ledger.service import Ledger


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
    def audit(self, book: NamedDependency[Ledger], escrow: NamedDependency[Escrow]) -> AuditOut:
        """Run every invariant check over the whole ledger (the same report as `ledger audit --json`)."""
        report = book.audit(provider=provider_books_of(escrow.gateway)).to_dict()
        return AuditOut(report["ok"], [CheckOut(**c) for c in report["checks"]])

    @get("/journal", operation_id="listJournal", sync_to_thread=True)
    def journal(
        self,
        book: NamedDependency[Ledger],
        page: NamedDependency[PageRequest],
        kind: FromQuery[str | None] = None,
        from_: OptionalPeriodStart = None,
        to: OptionalPeriodEnd = None,
    ) -> EntryList:
        """Journal entries with their postings, newest first; filter by kind and effective time [from, to)."""
        cursor = page.after_id()
        start, end = optional_instant(from_, "from"), optional_instant(to, "to")
        entries = book.transaction(
            lambda uow: uow.journal.newest_first(
                starting_after=cursor, limit=page.fetch, kind=kind, effective_from=start, effective_to=end
            ),
            read_only=True,
        )
        return page.listing(EntryList, entries, entry_out, cursor=lambda entry: entry.id)
