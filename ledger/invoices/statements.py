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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from ledger.accounts import Account, Side
from ledger.clock import require_utc
from ledger.errors import InvalidRequest
from ledger.escrow.chart import (
    DISPUTED,
    RECEIVABLES,
    REFUNDS_IN_TRANSIT,
    available_account_code,
    escrow_account_code,
    pending_account_code,
)
from ledger.invoices.documents import Statement, StatementHeading, StatementLine, StatementTooLong
from ledger.money import format_amount, normalize_currency
from ledger.ports.queries import PostingScope
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
    """What a statement is drawn from: its accounts (one currency) and its period [start, end).

    Attributes:
        accounts: accounts read whole.
        shared: accounts every client shares (receivables, refunds in transit, money
            withdrawn for chargebacks), read only for the postings of entries that refer
            to `client`.
        normal_side: the side the balances are kept on; a posting on the other side
            lowers them, whatever its own account's normal side.
    """

    title: str
    subject: str
    accounts: tuple[Account, ...]
    currency: str
    start: datetime
    end: datetime
    shared: tuple[Account, ...] = ()
    client: str | None = None
    normal_side: Side = Side.CREDIT

    @property
    def scope(self) -> PostingScope:
        return PostingScope(tuple(a.id for a in self.accounts), tuple(a.id for a in self.shared), self.client)

    def signed(self, side: Side, amount: int) -> int:
        return amount if side == self.normal_side else -amount

    def all_accounts(self) -> tuple[Account, ...]:
        return self.accounts + self.shared


#: The accounts every client shares, read into a client's statement for its own entries:
#: what it owes for hourly work advanced (an asset: it lowers the client's balance), refunds
#: booked to it and not yet confirmed by the provider, and money its bank has withdrawn for
#: an open chargeback (an asset until the chargeback is won or settled).
CLIENT_SHARED_ACCOUNTS = (RECEIVABLES, REFUNDS_IN_TRANSIT, DISPUTED)


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
    return StatementSource(
        f"Account {code}", code, (account,), account.currency, start, end, normal_side=account.normal_side
    )


def party_source(
    uow: UnitOfWork, party_id: str, role: str, currency: str, period_from: datetime, period_to: datetime
) -> StatementSource:
    """A party's money over [from, to), on the credit side (what the marketplace holds for it).

    A freelancer's is its pending and available accounts. A client has no account of its
    own: its statement is the escrow of its milestones and weeks, plus, of the accounts
    all clients share (`CLIENT_SHARED_ACCOUNTS`), the postings of entries that refer to it.
    Its balance is what is held in escrow for it and refunds on their way to it, less what
    it owes (advanced hourly work) and what its bank has withdrawn for an open chargeback.
    So a refund after release shows as booked and then as paid by the provider, and a
    chargeback as withdrawn and then as settled from escrow or recovered from the freelancer.
    """
    start, end = _period(period_from, period_to)
    code = normalize_currency(currency)
    shared: tuple[str, ...] = ()
    if role == "freelancer":
        codes = [pending_account_code(party_id), available_account_code(party_id)]
    elif role == "client":
        codes = [escrow_account_code(m) for m in uow.escrow.milestone_ids_of_client(party_id, code)]
        shared = CLIENT_SHARED_ACCOUNTS
    else:
        raise InvalidRequest("role is 'freelancer' or 'client'", field="role")

    def opened(names: Sequence[str]) -> tuple[Account, ...]:
        return tuple(a for a in (uow.accounts.find(c, code) for c in names) if a is not None)

    return StatementSource(
        f"{role.capitalize()} {party_id}",
        party_id,
        opened(codes),
        code,
        start,
        end,
        shared=opened(shared),
        client=party_id if shared else None,
    )


# --- reading it -----------------------------------------------------------------------------


def _reference(refs: Mapping[str, str]) -> str:
    keys = ("milestone", "payment", "refund", "dispute", "payout", "contract")
    return " ".join(refs[k] for k in keys if k in refs) or ""


def _balance(uow: UnitOfWork, source: StatementSource, before: datetime) -> int:
    debit_minus_credit = sum(uow.statements.nets(source.scope, before).values())
    return source.signed(Side.DEBIT, debit_minus_credit)


def heading(uow: UnitOfWork, source: StatementSource) -> StatementHeading:
    """The statement's balances, summed by the database: opening from everything
    effective before the start, closing from everything effective before the end (in
    the same transaction as the lines, it is where their running balance ends)."""
    return StatementHeading(
        title=source.title,
        subject=source.subject,
        accounts=tuple(a.code for a in source.all_accounts()),
        currency=source.currency,
        normal_side=source.normal_side.value,
        period_from=source.start,
        period_to=source.end,
        opening_balance=_balance(uow, source, source.start),
        closing_balance=_balance(uow, source, source.end),
    )


def lines(uow: UnitOfWork, source: StatementSource, opening: int) -> Iterator[StatementLine]:
    """The statement's lines in journal order, read as they are consumed, each with the
    running balance from `opening`."""
    running = opening
    by_id = {account.id: account for account in source.all_accounts()}
    for posting in uow.statements.postings(source.scope, source.start, source.end):
        account = by_id[posting.account_id]
        running += source.signed(posting.side, posting.amount)
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
            actor=posting.actor,
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
    count = uow.statements.count(source.scope, source.start, source.end)
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
    """A party's money over [from, to) (`party_source`), whole (at most `MAX_PDF_LINES` lines)."""
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
