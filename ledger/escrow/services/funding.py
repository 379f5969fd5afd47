"""Funding a milestone: the client's money taken in through a payment order, and what
the provider later reports of that payment."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import LedgerError
from ledger.escrow import milestones as use
from ledger.escrow.model import Milestone, MilestoneState
from ledger.escrow.order_results import apply_result
from ledger.escrow.orders import OrderKind, OrderState
from ledger.escrow.services.transactions import EscrowService, log
from ledger.gateway import ChargeRetrieval, GatewayResult
from ledger.ports.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class FundingOutcome:
    """The result of asking to fund a milestone.

    Attributes:
        milestone: as it stands after the call (`funded`, still `funding` while the
            customer must act, or back to `draft` if the payment failed).
        status: the gateway's status: succeeded, requires_action or failed.
        client_secret: for the frontend to complete a customer action.
    """

    milestone: Milestone
    status: str
    client_secret: str | None = None
    failure_reason: str | None = None


class FundingService(EscrowService):
    """Taking the client's money into a milestone's escrow."""

    def fund(
        self, milestone_id: str, *, payment_method: str | None = None, request_key: str | None = None
    ) -> FundingOutcome:
        """Charge the client through a payment order; the milestone is funded once it succeeds.
        The same request key again reports the attempt it started, as it stands now."""
        gateway = self._gateway()

        def work(uow: UnitOfWork) -> use.FundingStart | None:
            if request_key is not None:
                request = {"milestone": milestone_id, "payment_method": payment_method}
                if uow.orders.bind_request_key(request_key, "fund", request) is not None:
                    return None
            return use.start_funding(uow, milestone_id, payment_method=payment_method)

        start = self._write(work)
        order = None if start is None else start.order
        if order is not None and order.state is OrderState.REQUIRES_ACTION and isinstance(gateway, ChargeRetrieval):
            # A payment already under way (the customer had to act): ask the provider how it stands.
            try:
                current, _ = gateway.retrieve_charge(order.provider_reference or "")
            except LedgerError as error:
                log.warning("funding %s: the provider could not be asked: %s", order.id, error)
            else:
                _, written = self.book.transaction(
                    lambda uow: apply_result(uow, order.id, current, psp_account=gateway.psp_account, fees=self._fees)
                )
                self._dispatch_own(written)  # the processing-fee lookup its success ordered
        return self._funding_outcome(milestone_id)

    def _funding_outcome(self, milestone_id: str) -> FundingOutcome:
        def read(uow: UnitOfWork) -> FundingOutcome:
            milestone = uow.escrow.milestone(milestone_id)
            charges = uow.orders.of_milestone(milestone_id, kinds=(OrderKind.FUND,))
            order = charges[-1] if charges else None
            if milestone.state is MilestoneState.FUNDING:
                status = "requires_action" if order is not None and order.provider_reference else "pending"
            elif milestone.state is MilestoneState.DRAFT:
                status = "failed"
            else:
                status = "succeeded"
            secret = None if order is None else order.details.get("client_secret")
            reason = milestone.failure_reason if status == "failed" else None
            return FundingOutcome(milestone, status, secret, reason)

        return self.book.transaction(read, read_only=True)

    def confirm_funding(self, milestone_id: str, *, funding_key: str, reference: str) -> Milestone:
        """The provider told us (webhook) that a funding payment succeeded."""
        gateway = self._gateway()

        def work(uow: UnitOfWork) -> Milestone:
            order = uow.orders.by_provider_key(funding_key)
            if order is not None and order.kind is OrderKind.FUND:
                result = GatewayResult("succeeded", reference)
                apply_result(uow, order.id, result, psp_account=gateway.psp_account, fees=self._fees)
                return uow.escrow.milestone(milestone_id)
            return use.confirm_funding(
                uow, milestone_id, funding_key=funding_key, reference=reference, psp_account=gateway.psp_account
            )

        return self._write(work)

    def fail_funding(self, milestone_id: str, *, funding_key: str, reason: str) -> Milestone:
        """The provider told us (webhook) that a funding payment failed: the milestone is back
        to draft, keeping the provider's reason; no money moved."""
        return self.book.transaction(
            lambda uow: use.fail_funding(uow, milestone_id, funding_key=funding_key, reason=reason)
        )
