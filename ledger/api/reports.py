"""`/v1/reports` (finance): the trial balance, fee revenue, and reconciliation against the provider."""

from __future__ import annotations

from datetime import datetime

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from ledger.api.auth import FINANCE
from ledger.api.params import PeriodStart, utc_param
from ledger.api.schemas import FeeRevenueOut, ReconciliationOut, TrialBalanceOut
from ledger.api.views import fee_revenue_out, reconciliation_out, trial_balance_out
from ledger.escrow.service import Escrow
from ledger.invoices.service import Finance


class ReportController(Controller):
    path = "/v1/reports"
    tags = ["finance"]
    opt = {"roles": FINANCE}

    @get("/trial-balance", operation_id="getTrialBalance", sync_to_thread=True)
    def trial_balance(self, finance: NamedDependency[Finance], as_of: FromQuery[datetime]) -> TrialBalanceOut:
        """Every account's balance as of a time in debit and credit columns; totals equal per currency."""
        return trial_balance_out(finance.trial_balance(utc_param(as_of, "as_of")))

    @get("/fees", operation_id="getFeeRevenue", sync_to_thread=True)
    def fee_revenue(
        self, finance: NamedDependency[Finance], from_: PeriodStart, to: FromQuery[datetime]
    ) -> list[FeeRevenueOut]:
        """Fee revenue by client over [from, to): billings, fees, refunds and net."""
        rows = finance.fee_revenue(utc_param(from_, "from"), utc_param(to, "to"))
        return [fee_revenue_out(row) for row in rows]

    @get("/reconciliation", operation_id="getReconciliation", sync_to_thread=True)
    def reconciliation(
        self, escrow: NamedDependency[Escrow], from_: PeriodStart, to: FromQuery[datetime]
    ) -> list[ReconciliationOut]:
        """The payment provider's payments, refunds and transfers in [from, to) against the ledger."""
        lines = escrow.orders.reconcile(utc_param(from_, "from"), utc_param(to, "to"))
        return [reconciliation_out(line) for line in lines]
