"""Payment orders due and the clocks that make them: sending every order that is due,
firing the durable timers (`ledger tick`, the worker), and the provider's objects
reconciled against the ledger."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from ledger.escrow.dispatcher import Dispatcher, DispatchReport
from ledger.escrow.reconciliation import ReconciliationLine, reconcile
from ledger.escrow.services.transactions import EscrowService
from ledger.escrow.timers import TickReport, tick
from ledger.progress import Progress

#: At most this many rounds of timers and orders per tick after the first.
TICK_ROUNDS = 5


class PaymentOrderService(EscrowService):
    """Sending payment orders, firing timers, reconciling with the provider."""

    def dispatch(self) -> DispatchReport:
        """Send every payment order that is due (what `ledger tick` and the worker run)."""
        if self.gateway is None:
            return DispatchReport()
        dispatcher = Dispatcher(self.book, self.gateway)
        dispatcher.expire_waiting()
        return dispatcher.run()

    def tick(self, now: datetime | None = None, progress: Progress | None = None) -> TickReport:
        """Fire due timers, then send every payment order that is due (the timers' refunds,
        retries, re-sends); one failing order never stops the others. `progress` is told
        each timer handled."""
        report = tick(self.book, now, progress)
        orders = self.dispatch()
        sent = orders
        # An order's answer can make a timer due (a week whose review ended while its
        # charge was in flight is released, and its availability may be due too): go
        # round again until a round fires nothing.
        for _ in range(TICK_ROUNDS):
            if not orders.sent:
                break
            again = tick(self.book, now, progress)
            if not again.fired and not again.stale:
                break
            report = replace(report, fired=report.fired + again.fired, stale=report.stale + again.stale)
            orders = self.dispatch()
            sent = sent.merged(orders)
        return replace(report, orders=sent.summary() if sent.sent else "")

    def reconcile(self, since: datetime, until: datetime, progress: Progress | None = None) -> list[ReconciliationLine]:
        """The provider's payments, refunds and transfers in [since, until) against the
        ledger; `progress` is told each provider object read."""
        gateway = self._gateway()
        return self.book.transaction(
            lambda uow: reconcile(uow, gateway, gateway.psp_account, since, until, progress), read_only=True
        )
