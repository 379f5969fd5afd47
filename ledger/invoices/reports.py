"""Finance reports: the trial balance and fee revenue."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, case, func, select

from ledger.clock import require_utc
from ledger.db.schema import accounts, entries, fee_events, postings
from ledger.errors import InvalidRequest

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class TrialBalanceRow:
    """One account's balance as of a time, in the debit or the credit column (minor units)."""

    account: str
    type: str
    currency: str
    debit: int
    credit: int


@dataclass(frozen=True)
class TrialBalance:
    """Every account with postings before `as_of`; per currency, the columns' totals are equal."""

    as_of: datetime
    rows: list[TrialBalanceRow]
    totals: dict[str, tuple[int, int]]  # currency -> (debits, credits)

    @property
    def balanced(self) -> bool:
        return all(debit == credit for debit, credit in self.totals.values())


def trial_balance(uow: UnitOfWork, as_of: datetime) -> TrialBalance:
    moment = require_utc(as_of)
    signed = case((postings.c.side == "debit", postings.c.amount), else_=-postings.c.amount)
    query = (
        select(accounts.c.code, accounts.c.type, accounts.c.currency, func.sum(signed))
        .select_from(
            postings.join(entries, entries.c.id == postings.c.entry_id).join(
                accounts, accounts.c.id == postings.c.account_id
            )
        )
        .where(entries.c.effective_at < moment)
        .group_by(accounts.c.code, accounts.c.type, accounts.c.currency)
        .order_by(accounts.c.currency, accounts.c.code)
    )
    rows = []
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for code, type_, currency, net in uow.connection.execute(query):
        net = int(net)
        debit, credit = (net, 0) if net >= 0 else (0, -net)
        rows.append(TrialBalanceRow(code, type_, currency, debit, credit))
        totals[currency][0] += debit
        totals[currency][1] += credit
    return TrialBalance(moment, rows, {c: (d, k) for c, (d, k) in totals.items()})


@dataclass(frozen=True)
class FeeRevenueRow:
    """Fee revenue from one client in one currency over a period (minor units).

    Attributes:
        billings: payments released; fees: fees charged on them;
        refunded: billings refunded; fee_refunds: fees returned; net: fees - fee_refunds.
    """

    client_id: str
    currency: str
    billings: int
    fees: int
    refunded: int
    fee_refunds: int

    @property
    def net(self) -> int:
        return self.fees - self.fee_refunds


def fee_revenue(uow: UnitOfWork, period_from: datetime, period_to: datetime) -> list[FeeRevenueRow]:
    """Fee revenue by client and currency for fee events effective in [from, to)."""
    start, end = require_utc(period_from), require_utc(period_to)
    if end <= start:
        raise InvalidRequest("the period ends before or when it starts", field="to")

    def total(kind: str, column: ColumnElement[int]) -> ColumnElement[int]:
        return func.sum(case((fee_events.c.kind == kind, column), else_=0))

    query = (
        select(
            fee_events.c.client_id,
            fee_events.c.currency,
            total("charge", fee_events.c.amount),
            total("charge", fee_events.c.fee),
            total("refund", fee_events.c.amount),
            total("refund", fee_events.c.fee),
        )
        .where(fee_events.c.effective_at >= start, fee_events.c.effective_at < end)
        .group_by(fee_events.c.client_id, fee_events.c.currency)
        .order_by(fee_events.c.currency, fee_events.c.client_id)
    )
    return [
        FeeRevenueRow(client, currency, int(b), int(f), int(r), int(fr))
        for client, currency, b, f, r, fr in uow.connection.execute(query)
    ]
