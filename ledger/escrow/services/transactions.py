"""What every escrow service shares: one use case per transaction, and the payment
orders a use case wrote sent once it has committed.

A use case that needs the payment provider writes a payment order in its
transaction; after it commits, the service sends the orders it wrote itself (and
only those) through the dispatcher, so a fast provider still answers within the
request. Whatever goes wrong after the commit (the provider down, a refusal) is
recorded on the order and never turns into the caller's error: the answer says
what was committed, e.g. a refund `pending`. `ledger tick` and `ledger worker`
send everything else that is due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from ledger.escrow import milestones as use
from ledger.escrow.dispatcher import Dispatcher
from ledger.escrow.model import Milestone, MilestoneStanding, new_id
from ledger.gateway import GatewayNotConfigured, PaymentGateway, ProcessingFees
from ledger.ports.unit_of_work import UnitOfWork
from ledger.service import Ledger

T = TypeVar("T")
log = logging.getLogger("ledger.escrow")


def require_gateway(gateway: PaymentGateway | None) -> PaymentGateway:
    """The payment gateway; `GatewayNotConfigured` when there is none (money cannot be taken in)."""
    if gateway is None:
        raise GatewayNotConfigured(
            "no payment gateway is configured: set LEDGER_GATEWAY (e.g. simulated); money cannot be taken in"
        )
    return gateway


class EscrowService:
    """Escrow use cases over a ledger and a payment gateway.

    Attributes:
        book: the ledger.
        gateway: the payment gateway; None refuses every operation that takes money in.
    """

    def __init__(self, book: Ledger, gateway: PaymentGateway | None) -> None:
        self.book = book
        self.gateway = gateway

    def _gateway(self) -> PaymentGateway:
        return require_gateway(self.gateway)

    @property
    def _fees(self) -> bool:
        """Whether the provider reports what it kept of a payment (booked after a success)."""
        return isinstance(self.gateway, ProcessingFees)

    def _write(self, work: Callable[[UnitOfWork], T]) -> T:
        """Run a use case; then send the payment orders it wrote (never another request's)."""
        origin = new_id("req")

        def run(uow: UnitOfWork) -> tuple[T, list[str]]:
            uow.origin = origin
            return work(uow), list(uow.orders.written)

        result, written = self.book.transaction(run)
        if written:
            self._dispatch_own(written)
        return result

    def _dispatch_own(self, order_ids: list[str]) -> None:
        if self.gateway is None:
            return
        try:
            Dispatcher(self.book, self.gateway).run(order_ids)
        except Exception:
            log.exception("sending payment orders %s after commit failed; they stay due", order_ids)

    def _milestone(self, milestone_id: str) -> Milestone:
        return self.book.transaction(lambda uow: uow.escrow.milestone(milestone_id), read_only=True)

    def _standing(self, milestone_id: str) -> MilestoneStanding:
        def read(uow: UnitOfWork) -> MilestoneStanding:
            milestone, contract = uow.escrow.milestone_and_contract(milestone_id)
            return MilestoneStanding(milestone, contract.currency, tuple(uow.escrow.payments_of(milestone_id)))

        return self.book.transaction(read, read_only=True)

    @staticmethod
    def _check_currency(uow: UnitOfWork, contract_id: str, currency: str | None) -> None:
        if currency is not None:
            use.require_currency(uow.escrow.contract(contract_id), currency)

    def _milestone_currency(self, milestone_id: str, currency: str | None) -> None:
        if currency is not None:
            self.book.transaction(
                lambda uow: self._check_currency(uow, uow.escrow.milestone(milestone_id).contract_id, currency),
                read_only=True,
            )

    @staticmethod
    def _once(
        request_key: str | None,
        operation: str,
        request: dict[str, object],
        milestone_id: str,
        work: Callable[[UnitOfWork], Milestone],
    ) -> Callable[[UnitOfWork], Milestone]:
        """`work` bound to a request key: the same request again returns the milestone as it is."""

        def run(uow: UnitOfWork) -> Milestone:
            if request_key is not None and uow.orders.bind_request_key(request_key, operation, request) is not None:
                return uow.escrow.milestone(milestone_id)
            return work(uow)

        return run
