"""Acting on the payment provider's webhook events.

Each event is stored by its id before it is acted on; a duplicate delivery of an
event already processed is acknowledged and changes nothing. Events are not
trusted for state: the gateway reports the event's object as the provider has it
now (`EventReports`), and escrow acts on that report, so events arriving out of
order cannot move a milestone backwards. An event about an object we do not know
is recorded and acknowledged.

Handled: payments (funding), transfers (payouts: paid, failed or reversed),
refunds (refund orders), chargebacks (see `ledger.escrow.chargebacks`).
"""

from __future__ import annotations

from ledger.errors import BelowFloor, LedgerError, RetriesExhausted
from ledger.escrow.model import PayoutState
from ledger.escrow.services.chargebacks import ChargebackService
from ledger.escrow.services.funding import FundingService
from ledger.escrow.services.payouts import PayoutService
from ledger.escrow.services.refunds import RefundService
from ledger.escrow.services.transactions import EscrowService
from ledger.gateway import (
    ChargebackReport,
    ChargeReport,
    EventReports,
    GatewayNotConfigured,
    GatewayUnavailable,
    PaymentGateway,
    ProviderEvent,
    ProviderReport,
    RefundReport,
    TransferReport,
)
from ledger.service import Ledger


class ProviderEventService(EscrowService):
    """The provider's webhook events, each acted on once."""

    def __init__(self, book: Ledger, gateway: PaymentGateway | None) -> None:
        super().__init__(book, gateway)
        self.funding = FundingService(book, gateway)
        self.payouts = PayoutService(book, gateway)
        self.refunds = RefundService(book, gateway)
        self.chargebacks = ChargebackService(book, gateway)

    def handle(self, event: ProviderEvent) -> str:
        """Record and act on one verified event; returns what was done (also stored).

        If the provider cannot be asked how the object stands now (`GatewayUnavailable`), or
        the database keeps losing races (`RetriesExhausted`, a balance moved under a
        chargeback's recovery), the event stays unprocessed and the error propagates: the
        webhook answers with an error and the provider delivers the event again later. A
        refusal (the ledger will not do what the event implies) is recorded as the outcome:
        a redelivery cannot change it."""
        reports = self.gateway
        if not isinstance(reports, EventReports):
            raise GatewayNotConfigured("the payment gateway does not report on webhook events")
        fresh = self.book.transaction(lambda uow: uow.escrow.record_event(event.id, event.type, event.object_id))
        if not fresh:
            return "duplicate"
        try:
            outcome = self._apply(reports.report(event))
        except (GatewayUnavailable, RetriesExhausted, BelowFloor):
            raise  # passing: unprocessed, the provider delivers it again
        except LedgerError as refusal:
            outcome = f"refused: {refusal}"
        self.book.transaction(lambda uow: uow.escrow.finish_event(event.id, outcome))
        return outcome

    def _apply(self, report: ProviderReport | None) -> str:
        if isinstance(report, ChargeReport):
            return self._charge(report)
        if isinstance(report, TransferReport):
            return self._transfer(report)
        if isinstance(report, RefundReport):
            return self._refund(report)
        if isinstance(report, ChargebackReport):
            return self._chargeback(report)
        return "ignored"

    def _charge(self, report: ChargeReport) -> str:
        result, milestone_id, key = report.result, report.milestone_id, report.funding_key
        if not milestone_id or not key:
            return "ignored: not a milestone funding"
        if result.succeeded:
            funded = self.funding.confirm_funding(milestone_id, funding_key=key, reference=result.reference)
            return f"milestone {funded.id} funded"
        if result.failed:
            reason = result.failure_reason or "payment failed"
            milestone = self.funding.fail_funding(milestone_id, funding_key=key, reason=reason)
            return f"milestone {milestone.id} back to draft"
        return "pending: the customer must act"

    def _transfer(self, report: TransferReport) -> str:
        payout_id = report.payout_id
        if not payout_id:
            return "ignored: not a payout"
        current = self.payouts.payout(payout_id)
        if report.amount_reversed:
            settled = self.payouts.reverse_payout(
                payout_id, amount_reversed=report.amount_reversed, reference=report.reference
            )
            return f"payout {payout_id} {settled.state.value} ({settled.amount_reversed} reversed)"
        if current.state is not PayoutState.IN_TRANSIT:
            return f"payout {payout_id} already {current.state.value}"
        paid = self.payouts.settle_payout(payout_id, paid=True, reference=report.reference)
        return f"payout {payout_id} {paid.state.value}"

    def _refund(self, report: RefundReport) -> str:
        order_id, result = report.refund_order, report.result
        if not order_id:
            return "ignored: not a refund order"
        if result.status == "requires_action":
            return f"refund order {order_id} pending"
        state = self.refunds.settle_refund(
            order_id, succeeded=result.succeeded, reference=result.reference, reason=result.failure_reason
        )
        return f"refund order {order_id} {state}"

    def _chargeback(self, report: ChargebackReport) -> str:
        if report.charge is None:
            return "ignored: the dispute names no PaymentIntent of ours"
        milestone_id = report.charge.milestone_id
        if not milestone_id:
            return "ignored: not a milestone payment"
        if report.charge.funding_key:
            # The payment's own webhook may not have arrived yet: book the funding first, so the
            # chargeback meets the money it disputes (a no-op once funded).
            self._charge(report.charge)
        dispute = self.chargebacks.apply_dispute(report.dispute, milestone_id)
        if dispute.is_open:
            return f"dispute {dispute.id} open ({dispute.status}): milestone {milestone_id} frozen"
        return f"dispute {dispute.id} {dispute.outcome}"
