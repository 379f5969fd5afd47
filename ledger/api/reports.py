"""`/v1/reports` (finance): the trial balance, fee revenue, and reconciliation against the provider."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency

from ledger.api.auth import FINANCE
from ledger.api.params import AsOf, PeriodEnd, PeriodStart, instant_param, optional_instant
from ledger.api.schemas import FeeRevenueOut, ReconciliationOut, TrialBalanceOut
from ledger.api.views import fee_revenue_out, reconciliation_out, trial_balance_out
from ledger.escrow.service import Escrow
from ledger.invoices.service import Finance


class ReportController(Controller):
    path = "/v1/reports"
    tags = ["finance"]
    opt = {"roles": FINANCE}

    @get("/trial-balance", operation_id="getTrialBalance", sync_to_thread=True)
    def trial_balance(self, finance: NamedDependency[Finance], as_of: AsOf = None) -> TrialBalanceOut:
        """Every account's balance as of a time (default: now) in debit and credit columns;
        totals equal per currency."""
        return trial_balance_out(finance.trial_balance(optional_instant(as_of, "as_of")))

    @get("/fees", operation_id="getFeeRevenue", sync_to_thread=True)
    def fee_revenue(self, finance: NamedDependency[Finance], from_: PeriodStart, to: PeriodEnd) -> list[FeeRevenueOut]:
        """Fee revenue by client over [from, to): billings, fees, refunds and net."""
        rows = finance.fee_revenue(instant_param(from_, "from"), instant_param(to, "to"))
        return [fee_revenue_out(row) for row in rows]

    @get("/reconciliation", operation_id="getReconciliation", sync_to_thread=True)
    def reconciliation(
        self, escrow: NamedDependency[Escrow], from_: PeriodStart, to: PeriodEnd
    ) -> list[ReconciliationOut]:
        """The payment provider's payments, refunds and transfers in [from, to) against the ledger."""
        lines = escrow.orders.reconcile(instant_param(from_, "from"), instant_param(to, "to"))
        return [reconciliation_out(line) for line in lines]
