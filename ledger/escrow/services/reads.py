"""Reading contracts, milestones and payments as they stand."""

from __future__ import annotations

from typing import Literal

from ledger.actors import StateChange
from ledger.escrow.model import Contract, Milestone, Payment
from ledger.escrow.services.transactions import EscrowService
from ledger.ports.unit_of_work import UnitOfWork

#: What has a history of states one may read (`state_changes`).
HistorySubject = Literal["contract", "milestone", "payout"]


class EscrowReads(EscrowService):
    """Contracts, milestones and payments, each read in one read-only transaction."""

    def contract(self, contract_id: str) -> Contract:
        return self.book.transaction(lambda uow: uow.escrow.contract(contract_id), read_only=True)

    def milestones(self, contract_id: str) -> list[Milestone]:
        def read(uow: UnitOfWork) -> list[Milestone]:
            uow.escrow.contract(contract_id)
            return uow.escrow.milestones_of(contract_id)

        return self.book.transaction(read, read_only=True)

    def milestone(self, milestone_id: str) -> Milestone:
        return self._milestone(milestone_id)

    def payments(self, milestone_id: str) -> list[Payment]:
        def read(uow: UnitOfWork) -> list[Payment]:
            uow.escrow.milestone(milestone_id)
            return uow.escrow.payments_of(milestone_id)

        return self.book.transaction(read, read_only=True)

    def payment(self, payment_id: str) -> Payment:
        return self.book.transaction(lambda uow: uow.escrow.payment(payment_id), read_only=True)

    def history(self, subject: HistorySubject, subject_id: str) -> list[StateChange]:
        """The states a contract, milestone or payout went through, with who moved it
        there, oldest first; `Unknown*` (a 404) when there is no such one."""

        def read(uow: UnitOfWork) -> list[StateChange]:
            if subject == "contract":
                uow.escrow.contract(subject_id)
            elif subject == "milestone":
                uow.escrow.milestone(subject_id)
            else:
                uow.escrow.payout(subject_id)
            return uow.escrow.history(subject, subject_id)

        return self.book.transaction(read, read_only=True)
