"""Statements: what happened on an account (or a party's accounts) over a period.

A statement covers a half-open UTC period [from, to) on `effective_at`: the
opening balance (everything effective before `from`), one line per posting in
journal order with a running balance, and the closing balance. Balances are on
the account's normal side, so for every statement:

    opening + (normal-side postings) - (other-side postings) = closing

and the closing balance of one period is the opening balance of the next.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ledger.accounts import Account, Side
from ledger.clock import require_utc
from ledger.errors import InvalidRequest
from ledger.escrow.chart import available_account_code, escrow_account_code, pending_account_code
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


@dataclass(frozen=True)
class StatementLine:
    """One posting on a statement.

    Attributes:
        posted_at: the entry's effective time (UTC).
        entry_id: the journal entry.
        account: the account's code (a party statement spans several accounts).
        reference: what it concerns (milestone, payment, payout ids), human-readable.
        kind: the entry's kind (`escrow.release`, ...).
        debit, credit: minor units; one of them is 0.
        running_balance: the balance after this line, on the normal side, minor units.
    """

    posted_at: datetime
    entry_id: int
    account: str
    reference: str
    kind: str
    debit: int
    credit: int
    currency: str
    running_balance: int


@dataclass(frozen=True)
class Statement:
    """A statement of one account, or of one party's accounts in one currency.

    Attributes:
        title: what it is of ("Account liabilities:escrow:ms_1", "Freelancer fr_1").
        subject: the account code or party id.
        accounts: the account codes it covers.
        currency: ISO code; all amounts are minor units of it.
        normal_side: "debit" or "credit": the side on which balances are positive.
        period_from, period_to: the half-open UTC period [from, to).
        opening_balance, closing_balance: minor units, normal side.
        lines: in journal order.
    """

    title: str
    subject: str
    accounts: tuple[str, ...]
    currency: str
    normal_side: str
    period_from: datetime
    period_to: datetime
    opening_balance: int
    lines: tuple[StatementLine, ...]
    closing_balance: int

    @property
    def total_debits(self) -> int:
        return sum(line.debit for line in self.lines)

    @property
    def total_credits(self) -> int:
        return sum(line.credit for line in self.lines)


# --- building statements -------------------------------------------------------------


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


def _reference(refs: Mapping[str, str]) -> str:
    keys = ("milestone", "payment", "refund", "payout", "contract")
    return " ".join(refs[k] for k in keys if k in refs) or ""


def _build(
    uow: UnitOfWork,
    title: str,
    subject: str,
    accounts_: list[Account],
    currency: str,
    period_from: datetime,
    period_to: datetime,
) -> Statement:
    start, end = _period(period_from, period_to)
    normal = accounts_[0].normal_side if accounts_ else Side.CREDIT
    opening = sum(uow.accounts.balance_as_of(account, start) for account in accounts_)
    running = opening
    lines = []
    by_id = {account.id: account for account in accounts_}
    for posting in uow.statements.postings(list(by_id), start, end):
        account = by_id[posting.account_id]
        running += account.signed(posting.side, posting.amount)
        lines.append(
            StatementLine(
                posted_at=posting.effective_at,
                entry_id=posting.entry_id,
                account=account.code,
                reference=_reference(posting.refs),
                kind=posting.kind,
                debit=posting.amount if posting.side == Side.DEBIT else 0,
                credit=posting.amount if posting.side == Side.CREDIT else 0,
                currency=currency,
                running_balance=running,
            )
        )
    return Statement(
        title=title,
        subject=subject,
        accounts=tuple(a.code for a in accounts_),
        currency=currency,
        normal_side=normal.value,
        period_from=start,
        period_to=end,
        opening_balance=opening,
        lines=tuple(lines),
        closing_balance=running,
    )


def account_statement(
    uow: UnitOfWork, code: str, currency: str, period_from: datetime, period_to: datetime
) -> Statement:
    """The statement of one account over [from, to)."""
    _period(period_from, period_to)
    account = uow.accounts.get(code, normalize_currency(currency))
    return _build(uow, f"Account {code}", code, [account], account.currency, period_from, period_to)


def party_statement(
    uow: UnitOfWork, party_id: str, role: str, currency: str, period_from: datetime, period_to: datetime
) -> Statement:
    """A freelancer's pending and available money, or a client's escrow, over [from, to)."""
    _period(period_from, period_to)
    code = normalize_currency(currency)
    if role == "freelancer":
        codes = [pending_account_code(party_id), available_account_code(party_id)]
    elif role == "client":
        codes = [escrow_account_code(m) for m in uow.escrow.milestone_ids_of_client(party_id, code)]
    else:
        raise InvalidRequest("role is 'freelancer' or 'client'", field="role")
    found = [a for a in (uow.accounts.find(c, code) for c in codes) if a is not None]
    title = f"{role.capitalize()} {party_id}"
    return _build(uow, title, party_id, found, code, period_from, period_to)


def statement_csv(statement: Statement) -> str:
    """The statement's lines as CSV with the fixed `CSV_COLUMNS`; amounts as decimal strings."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    money = functools.partial(format_amount, currency=statement.currency)
    for line in statement.lines:
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
    return out.getvalue()
