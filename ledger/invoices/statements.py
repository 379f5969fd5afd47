"""Statements: what happened on an account (or a party's accounts) over a period.

A statement covers a half-open UTC period [from, to) on `effective_at`: the
opening balance (everything effective before `from`), one line per posting in
journal order with a running balance, and the closing balance. Balances are on
the account's normal side, so for every statement:

    opening + (normal-side postings) - (other-side postings) = closing

and the closing balance of one period is the opening balance of the next.

JSON and CSV stream: both balances are summed by the database first (`heading`), then
the lines are read through a server-side cursor and written out as they come
(`write` with a `StatementWriter`), so a statement of any length takes the memory of
one chunk. A PDF is laid out whole by reportlab, so a statement is built whole
(`whole`) only up to `MAX_PDF_LINES` lines; beyond that it is `StatementTooLong`, and
CSV is the format to ask for.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from ledger.accounts import Account, Side
from ledger.clock import require_utc
from ledger.errors import InvalidRequest
from ledger.escrow.chart import available_account_code, escrow_account_code, pending_account_code
from ledger.invoices.documents import Statement, StatementHeading, StatementLine, StatementTooLong
from ledger.money import format_amount, normalize_currency
from ledger.ports.unit_of_work import UnitOfWork

#: CSV columns, fixed and documented (README, "Statements").
CSV_COLUMNS = (
    "posted_at",
    "entry_id",
    "account",
    "reference",
    "kind",
    "debit",
    "credit",
    "currency",
    "running_balance",
)

#: The most lines of a statement built whole in memory, which only the PDF needs
#: (reportlab lays the document out in one piece, several KiB per line); JSON and CSV
#: stream any number of lines. Read when a statement is built, so tests may lower it.
MAX_PDF_LINES = 5_000

#: About how many characters of CSV or JSON are gathered into one chunk of a stream: a
#: chunk per line would cost the HTTP server a thread hop per line.
CHUNK_CHARS = 64 * 1024

R = TypeVar("R")

#: Writes a statement out as it is read: from its heading and its lines (an iterator
#: that reads them from the database), the pieces of the output, in order.
StatementWriter = Callable[[StatementHeading, Iterator[StatementLine]], Iterator[R]]


@dataclass(frozen=True)
class StatementSource:
    """What a statement is drawn from: its accounts (one currency) and its period [start, end)."""

    title: str
    subject: str
    accounts: tuple[Account, ...]
    currency: str
    start: datetime
    end: datetime


# --- what a statement covers -----------------------------------------------------------


def _period(period_from: datetime, period_to: datetime) -> tuple[datetime, datetime]:
    try:
        start, end = require_utc(period_from), require_utc(period_to)
    except ValueError as error:
        raise InvalidRequest(str(error), field="from") from None
    if end <= start:
        raise InvalidRequest(
            f"the period ends ({end.isoformat()}) before or when it starts ({start.isoformat()})", field="to"
        )
    return start, end


def account_source(
    uow: UnitOfWork, code: str, currency: str, period_from: datetime, period_to: datetime
) -> StatementSource:
    """One account over [from, to); `UnknownAccount` if it is not open."""
    start, end = _period(period_from, period_to)
    account = uow.accounts.get(code, normalize_currency(currency))
    return StatementSource(f"Account {code}", code, (account,), account.currency, start, end)


def party_source(
    uow: UnitOfWork, party_id: str, role: str, currency: str, period_from: datetime, period_to: datetime
) -> StatementSource:
    """A freelancer's pending and available accounts, or a client's escrow accounts, over [from, to)."""
    start, end = _period(period_from, period_to)
    code = normalize_currency(currency)
    if role == "freelancer":
        codes = [pending_account_code(party_id), available_account_code(party_id)]
    elif role == "client":
        codes = [escrow_account_code(m) for m in uow.escrow.milestone_ids_of_client(party_id, code)]
    else:
        raise InvalidRequest("role is 'freelancer' or 'client'", field="role")
    found = tuple(a for a in (uow.accounts.find(c, code) for c in codes) if a is not None)
    return StatementSource(f"{role.capitalize()} {party_id}", party_id, found, code, start, end)


# --- reading it -----------------------------------------------------------------------------


def _reference(refs: Mapping[str, str]) -> str:
    keys = ("milestone", "payment", "refund", "payout", "contract")
    return " ".join(refs[k] for k in keys if k in refs) or ""


def heading(uow: UnitOfWork, source: StatementSource) -> StatementHeading:
    """The statement's balances, summed by the database: opening from everything
    effective before the start, closing from everything effective before the end (in
    the same transaction as the lines, it is where their running balance ends)."""
    normal = source.accounts[0].normal_side if source.accounts else Side.CREDIT
    return StatementHeading(
        title=source.title,
        subject=source.subject,
        accounts=tuple(a.code for a in source.accounts),
        currency=source.currency,
        normal_side=normal.value,
        period_from=source.start,
        period_to=source.end,
        opening_balance=sum(uow.accounts.balance_as_of(a, source.start) for a in source.accounts),
        closing_balance=sum(uow.accounts.balance_as_of(a, source.end) for a in source.accounts),
    )


def lines(uow: UnitOfWork, source: StatementSource, opening: int) -> Iterator[StatementLine]:
    """The statement's lines in journal order, read as they are consumed, each with the
    running balance from `opening`."""
    running = opening
    by_id = {account.id: account for account in source.accounts}
    for posting in uow.statements.postings(list(by_id), source.start, source.end):
        account = by_id[posting.account_id]
        running += account.signed(posting.side, posting.amount)
        yield StatementLine(
            posted_at=posting.effective_at,
            entry_id=posting.entry_id,
            account=account.code,
            reference=_reference(posting.refs),
            kind=posting.kind,
            debit=posting.amount if posting.side == Side.DEBIT else 0,
            credit=posting.amount if posting.side == Side.CREDIT else 0,
            currency=source.currency,
            running_balance=running,
        )


def write(uow: UnitOfWork, source: StatementSource, writer: StatementWriter[R]) -> Iterator[R]:
    """The statement written out by `writer` while its lines are read (run it inside
    one read-only transaction for the whole iteration: `Transactions.stream`)."""
    top = heading(uow, source)
    return writer(top, lines(uow, source, top.opening_balance))


def whole(uow: UnitOfWork, source: StatementSource) -> Statement:
    """The statement with all its lines in memory, for the PDF: `StatementTooLong` when
    it has more than `MAX_PDF_LINES` (counted by the database before any is read)."""
    limit = MAX_PDF_LINES
    count = uow.statements.count([a.id for a in source.accounts], source.start, source.end)
    if count > limit:
        raise StatementTooLong(
            f"the statement has {count:,} lines, more than the PDF limit of {limit:,}; ask for format=csv",
            field="format",
            lines=count,
            limit=limit,
        )
    top = heading(uow, source)
    return Statement(
        title=top.title,
        subject=top.subject,
        accounts=top.accounts,
        currency=top.currency,
        normal_side=top.normal_side,
        period_from=top.period_from,
        period_to=top.period_to,
        opening_balance=top.opening_balance,
        lines=tuple(lines(uow, source, top.opening_balance)),
        closing_balance=top.closing_balance,
    )


def account_statement(
    uow: UnitOfWork, code: str, currency: str, period_from: datetime, period_to: datetime
) -> Statement:
    """The statement of one account over [from, to), whole (at most `MAX_PDF_LINES` lines)."""
    return whole(uow, account_source(uow, code, currency, period_from, period_to))


def party_statement(
    uow: UnitOfWork, party_id: str, role: str, currency: str, period_from: datetime, period_to: datetime
) -> Statement:
    """A freelancer's pending and available money, or a client's escrow, over [from, to),
    whole (at most `MAX_PDF_LINES` lines)."""
    return whole(uow, party_source(uow, party_id, role, currency, period_from, period_to))


# --- CSV ---------------------------------------------------------------------------------------


def heading_of(statement: Statement) -> StatementHeading:
    return StatementHeading(
        title=statement.title,
        subject=statement.subject,
        accounts=statement.accounts,
        currency=statement.currency,
        normal_side=statement.normal_side,
        period_from=statement.period_from,
        period_to=statement.period_to,
        opening_balance=statement.opening_balance,
        closing_balance=statement.closing_balance,
    )


def csv_chunks(top: StatementHeading, rows: Iterator[StatementLine]) -> Iterator[str]:
    """The statement as CSV with the fixed `CSV_COLUMNS`, amounts as decimal strings, in
    chunks of about `CHUNK_CHARS` as its lines come (a `StatementWriter`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    money = functools.partial(format_amount, currency=top.currency)
    for line in rows:
        writer.writerow(
            [
                line.posted_at.isoformat(),
                line.entry_id,
                line.account,
                line.reference,
                line.kind,
                money(line.debit),
                money(line.credit),
                line.currency,
                money(line.running_balance),
            ]
        )
        if out.tell() >= CHUNK_CHARS:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def statement_csv(statement: Statement) -> str:
    """A whole statement's lines as CSV (the same text `csv_chunks` streams)."""
    return "".join(csv_chunks(heading_of(statement), iter(statement.lines)))
