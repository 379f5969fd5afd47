"""Finance reports: the trial balance and fee revenue.

The database sums the postings and fee events (`ReportQueries`); the trial balance
puts each account's net in its debit or credit column and totals them here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from ledger.clock import require_utc
from ledger.errors import InvalidRequest
from ledger.ports.queries import FeeRevenueRow
from ledger.ports.unit_of_work import UnitOfWork

__all__ = ["FeeRevenueRow", "TrialBalance", "TrialBalanceRow", "fee_revenue", "trial_balance"]


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
    rows = []
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for account in uow.reports.account_nets(before=moment):
        net = account.net
        debit, credit = (net, 0) if net >= 0 else (0, -net)
        rows.append(TrialBalanceRow(account.account, account.type, account.currency, debit, credit))
        totals[account.currency][0] += debit
        totals[account.currency][1] += credit
    return TrialBalance(moment, rows, {c: (d, k) for c, (d, k) in totals.items()})


def fee_revenue(uow: UnitOfWork, period_from: datetime, period_to: datetime) -> list[FeeRevenueRow]:
    """Fee revenue by client and currency for fee events effective in [from, to)."""
    start, end = require_utc(period_from), require_utc(period_to)
    if end <= start:
        raise InvalidRequest("the period ends before or when it starts", field="to")
    return uow.reports.fee_revenue(start, end)
