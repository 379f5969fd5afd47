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
from datetime import datetime

from ledger.accounts import Account, Side
from ledger.clock import require_utc
from ledger.errors import InvalidRequest
from ledger.escrow.chart import available_account_code, escrow_account_code, pending_account_code
from ledger.invoices.documents import Statement, StatementLine
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
