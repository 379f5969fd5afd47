"""Money back to the client: a refund request accepted or disputed, a refund-request
dispute resolved, a released payment refunded by the freelancer, and what the provider
reports of a refund. Refund orders are sent once the use case has committed."""

from __future__ import annotations

from ledger.escrow import milestones as use
from ledger.escrow.model import Milestone, PaymentRefund
from ledger.escrow.payments import refund_payment, refund_status, settle_refund
from ledger.escrow.services.transactions import EscrowService
from ledger.ports.unit_of_work import UnitOfWork


class RefundService(EscrowService):
    """Refund requests, their disputes, and refunds of released payments."""

    def accept_refund_request(self, milestone_id: str, *, request_key: str | None = None) -> Milestone:
        return self._write(
            self._once(
                request_key,
                "accept_refund_request",
                {"milestone": milestone_id},
                milestone_id,
                lambda uow: use.accept_refund_request(uow, milestone_id),
            )
        )

    def dispute_refund_request(self, milestone_id: str, *, request_key: str | None = None) -> Milestone:
        return self._write(
            self._once(
                request_key,
                "dispute_refund_request",
                {"milestone": milestone_id},
                milestone_id,
                lambda uow: use.dispute_refund_request(uow, milestone_id),
            )
        )

    def resolve_dispute(
        self,
        milestone_id: str,
        *,
        release: int,
        refund: int,
        currency: str | None = None,
        request_key: str | None = None,
    ) -> Milestone:
        """Split what a disputed milestone holds: `release` to the freelancer, `refund` to the client."""
        self._milestone_currency(milestone_id, currency)
        return self._write(
            self._once(
                request_key,
                "resolve_dispute",
                {"milestone": milestone_id, "release": release, "refund": refund},
                milestone_id,
                lambda uow: use.resolve_dispute(uow, milestone_id, release_amount=release, refund_amount=refund),
            )
        )

    def refund_payment(
        self, payment_id: str, amount: int, *, currency: str | None = None, request_key: str | None = None
    ) -> PaymentRefund:
        """The freelancer refunds (part of) a released payment to the client. The refund's
        `status` says how its provider refund stands when the call returns."""

        def work(uow: UnitOfWork) -> PaymentRefund:
            self._check_currency(uow, uow.escrow.payment(payment_id).contract_id, currency)
            return refund_payment(uow, payment_id, amount, request_key=request_key)

        refund = self._write(work)
        return self.book.transaction(lambda uow: refund_status(uow, refund), read_only=True)

    def settle_refund(self, order_id: str, *, succeeded: bool, reference: str | None, reason: str | None = None) -> str:
        """The provider reported on a refund (webhook)."""
        return self.book.transaction(
            lambda uow: settle_refund(uow, order_id, succeeded=succeeded, reference=reference, reason=reason)
        )
