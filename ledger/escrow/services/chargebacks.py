"""Chargebacks: a client's bank disputing a payment, brought in line with what the
provider reports (see `ledger.escrow.chargebacks`), and read back."""

from __future__ import annotations

from ledger.errors import BelowFloor
from ledger.escrow.chargebacks import apply_dispute
from ledger.escrow.model import Dispute, UnknownDispute
from ledger.escrow.services.transactions import EscrowService
from ledger.gateway import DisputeReport
from ledger.ports.unit_of_work import UnitOfWork

#: How often a chargeback's recovery runs again when a payout commits in between.
RECOVERY_ATTEMPTS = 3


class ChargebackService(EscrowService):
    """Chargebacks of milestone payments."""

    def apply_dispute(self, report: DisputeReport, milestone_id: str) -> Dispute:
        """Bring the ledger in line with a chargeback as the provider reports it now."""
        gateway = self._gateway()
        attempts_left = RECOVERY_ATTEMPTS
        while True:
            try:
                return self.book.transaction(
                    lambda uow: apply_dispute(uow, report, milestone_id, psp_account=gateway.psp_account)
                )
            except BelowFloor:
                # Recovery reads the freelancer's balances, then posts; a payout committed
                # in between makes the posting refuse. Run again on the balances as they are now.
                attempts_left -= 1
                if not attempts_left:
                    raise

    def dispute(self, dispute_id: str) -> Dispute:
        def read(uow: UnitOfWork) -> Dispute:
            found = uow.escrow.dispute(dispute_id)
            if found is None:
                raise UnknownDispute(f"no dispute {dispute_id}", dispute_id=dispute_id)
            return found

        return self.book.transaction(read, read_only=True)

    def disputes(self, milestone_id: str) -> list[Dispute]:
        def read(uow: UnitOfWork) -> list[Dispute]:
            uow.escrow.milestone(milestone_id)
            return uow.escrow.disputes_of(milestone_id)

        return self.book.transaction(read, read_only=True)
