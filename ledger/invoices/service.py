"""`Finance`: parties, documents, statements and reports as the API and CLI use them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TypeVar

from ledger.accounts import Account
from ledger.beancount import AccountKey, export_period
from ledger.beancount import export as beancount_export
from ledger.invoices import parties as party_records
from ledger.invoices import statements
from ledger.invoices.documents import Document, Party, Statement
from ledger.invoices.reports import FeeRevenueRow, TrialBalance, fee_revenue, trial_balance
from ledger.invoices.statements import StatementWriter
from ledger.journal import Entry
from ledger.ports.unit_of_work import UnitOfWork
from ledger.progress import Progress
from ledger.service import Ledger

R = TypeVar("R")


class Finance:
    """Read side for finance, and party records.

    Attributes:
        book: the ledger.
    """

    def __init__(self, book: Ledger) -> None:
        self.book = book

    def set_party(self, party_id: str, **fields: str | None) -> Party:
        return self.book.transaction(lambda uow: party_records.set_party(uow, party_id, **fields))

    def party(self, party_id: str) -> Party:
        return self.book.transaction(lambda uow: party_records.get_party(uow, party_id), read_only=True)

    def document(self, id_or_number: str) -> Document:
        return self.book.transaction(lambda uow: uow.documents.get(id_or_number), read_only=True)

    def documents(
        self, *, party_id: str | None = None, limit: int = 100, starting_after: str | None = None
    ) -> list[Document]:
        """Issued documents, newest first, after the document numbered `starting_after`."""
        return self.book.transaction(
            lambda uow: uow.documents.listing(party_id=party_id, limit=limit, starting_after=starting_after),
            read_only=True,
        )

    def accounts(self, *, limit: int = 100, starting_after: int | None = None) -> list[Account]:
        """The chart of accounts, newest first, after the account with id `starting_after`."""
        return self.book.transaction(
            lambda uow: uow.accounts.newest_first(starting_after=starting_after, limit=limit), read_only=True
        )

    def account_statement(self, code: str, currency: str, period_from: datetime, period_to: datetime) -> Statement:
        """The account's statement whole, for a PDF: `StatementTooLong` beyond
        `statements.MAX_PDF_LINES` lines (stream CSV or JSON instead)."""
        return self.book.transaction(
            lambda uow: statements.account_statement(uow, code, currency, period_from, period_to), read_only=True
        )

    def party_statement(
        self, party_id: str, role: str, currency: str, period_from: datetime, period_to: datetime
    ) -> Statement:
        """A party's statement whole, for a PDF (at most `statements.MAX_PDF_LINES` lines)."""
        return self.book.transaction(
            lambda uow: statements.party_statement(uow, party_id, role, currency, period_from, period_to),
            read_only=True,
        )

    def stream_account_statement(
        self, code: str, currency: str, period_from: datetime, period_to: datetime, writer: StatementWriter[R]
    ) -> Iterator[R]:
        """The account's statement as `writer` writes it, read while the iterator is consumed.

        The account and period are checked here, in a transaction of their own, so a
        mistake is raised before anything is streamed (accounts are never removed, so
        the check still holds when the stream reads). The stream reads the balances and
        every line in one read-only transaction, taken at its first `next`."""
        self.book.transaction(
            lambda uow: statements.account_source(uow, code, currency, period_from, period_to), read_only=True
        )
        return self.book.stream(
            lambda uow: statements.write(
                uow, statements.account_source(uow, code, currency, period_from, period_to), writer
            )
        )

    def stream_party_statement(
        self,
        party_id: str,
        role: str,
        currency: str,
        period_from: datetime,
        period_to: datetime,
        writer: StatementWriter[R],
    ) -> Iterator[R]:
        """A party's statement as `writer` writes it (see `stream_account_statement`)."""
        self.book.transaction(
            lambda uow: statements.party_source(uow, party_id, role, currency, period_from, period_to),
            read_only=True,
        )
        return self.book.stream(
            lambda uow: statements.write(
                uow, statements.party_source(uow, party_id, role, currency, period_from, period_to), writer
            )
        )

    def trial_balance(self, as_of: datetime | None = None) -> TrialBalance:
        """Every account's balance as of `as_of` (default: now)."""
        return self.book.transaction(lambda uow: trial_balance(uow, as_of or uow.clock.now()), read_only=True)

    def fee_revenue(self, period_from: datetime, period_to: datetime) -> list[FeeRevenueRow]:
        return self.book.transaction(lambda uow: fee_revenue(uow, period_from, period_to), read_only=True)

    def export_beancount(
        self, period_from: datetime | None, period_to: datetime | None, progress: Progress | None = None
    ) -> Iterator[str]:
        """The journal over [from, to) (None: open on that side) as a Beancount file
        (`ledger.beancount`), in pieces written while the iterator is consumed.

        The period is checked here, so a mistake is raised before anything is streamed;
        the chart, the balances and every entry are then read in one read-only
        transaction (one snapshot), taken at the first `next`, the entries through a
        server-side cursor. `progress` is told each entry written, of those in the period."""
        period = export_period(period_from, period_to, today=self.book.clock.now().date())

        def export(uow: UnitOfWork) -> Iterator[str]:
            def nets(before: datetime) -> dict[AccountKey, int]:
                return {(row.account, row.currency): row.net for row in uow.reports.account_nets(before=before)}

            opening = {} if period.start is None else nets(period.start)
            entries = uow.statements.entries(period.start, period.end)
            if progress is not None:
                entries = _counted(entries, uow.statements.entry_count(period.start, period.end), progress)
            return beancount_export(period, uow.accounts.all(), opening, entries, nets)

        return self.book.stream(export)


def _counted(entries: Iterator[Entry], total: int, progress: Progress) -> Iterator[Entry]:
    for done, entry in enumerate(entries, start=1):
        yield entry
        progress(done, total)
