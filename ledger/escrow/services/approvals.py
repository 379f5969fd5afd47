"""Approving a milestone: held money released to the freelancer, and a bonus beyond it
charged to the client through a payment order."""

from __future__ import annotations

from ledger.escrow import approvals
from ledger.escrow.model import MilestoneFrozen, MilestoneStanding, Payment
from ledger.escrow.orders import OrderState, PaymentOrder
from ledger.escrow.services.transactions import EscrowService
from ledger.gateway import PaymentFailed
from ledger.ports.unit_of_work import UnitOfWork


class ApprovalService(EscrowService):
    """The client's approval of a milestone's work."""

    def approve(
        self,
        milestone_id: str,
        *,
        amount: int | None = None,
        currency: str | None = None,
        payment_method: str | None = None,
        request_key: str | None = None,
    ) -> list[Payment]:
        """Approve all held (default), part of it, or more (the extra is charged as a bonus
        through a payment order, with `payment_method` when the provider needs one).

        Returns the payments released. An approval whose bonus charge is still in flight
        returns none (the milestone is `approval_pending`); a declined bonus raises
        `PaymentFailed` (the milestone is back in its state)."""
        payments, _ = self._approve(milestone_id, amount, currency, payment_method, request_key)
        return payments

    def approve_and_show(
        self,
        milestone_id: str,
        *,
        amount: int | None = None,
        currency: str | None = None,
        payment_method: str | None = None,
        request_key: str | None = None,
    ) -> MilestoneStanding:
        """`approve`, answered with the milestone as it stands after it, with its payments.

        Without a bonus, that is what the approval's own transaction made of the
        milestone (nothing is read again); after a bonus charge, it is read once the
        charge's answer is applied."""
        _, standing = self._approve(milestone_id, amount, currency, payment_method, request_key)
        return standing

    def _approve(
        self,
        milestone_id: str,
        amount: int | None,
        currency: str | None,
        payment_method: str | None,
        request_key: str | None,
    ) -> tuple[list[Payment], MilestoneStanding]:
        self._milestone_currency(milestone_id, currency)
        if amount is not None and self.gateway is None:
            held = self._milestone(milestone_id).held
            if isinstance(amount, int) and amount > held > 0:
                self._gateway()  # a bonus needs the provider
        approval = self._write(
            lambda uow: approvals.approve(
                uow, milestone_id, amount=amount, request_key=request_key, payment_method=payment_method
            )
        )
        if approval.order is None:
            return list(approval.payments), approval.standing
        order_id = approval.order.id

        def read(uow: UnitOfWork) -> tuple[PaymentOrder, list[Payment]]:
            order = uow.orders.get(order_id)
            ids = order.details.get("payments", "")
            return order, [uow.escrow.payment(p) for p in ids.split(",") if p]

        order, payments = self.book.transaction(read, read_only=True)
        if order.state in (OrderState.FAILED, OrderState.CANCELLED):
            raise PaymentFailed(
                f"the bonus payment of {order.amount} was not completed: {order.failure_reason or order.state.value}",
                status="failed",
                order_id=order.id,
            )
        standing = self._standing(milestone_id)
        milestone = standing.milestone
        if order.state is OrderState.SUCCEEDED and not payments and milestone.frozen_by is not None:
            raise MilestoneFrozen(
                f"milestone {milestone_id} was frozen by chargeback {milestone.frozen_by} during the bonus charge: "
                "the bonus is refunded and nothing was released",
                milestone_id=milestone_id,
                dispute_id=milestone.frozen_by,
            )
        return payments, standing
