"""The freelancer's money: balances, payouts through a payment order, and what the
provider reports of a payout's transfer."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.escrow.chart import available_account_code, pending_account_code
from ledger.escrow.model import Payout, party_id
from ledger.escrow.payouts import request_payout, reverse_payout, settle_payout
from ledger.escrow.services.transactions import EscrowService
from ledger.money import normalize_currency
from ledger.ports.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class FreelancerBalance:
    """A freelancer's money in one currency, minor units."""

    currency: str
    pending: int
    available: int
    in_transit: int


class PayoutService(EscrowService):
    """What a freelancer holds, and withdrawing it."""

    def balance(self, freelancer_id: str, currency: str) -> FreelancerBalance:
        freelancer = party_id(freelancer_id, "freelancer_id")
        code = normalize_currency(currency)

        def read(uow: UnitOfWork) -> FreelancerBalance:
            amounts = []
            for account_code in (pending_account_code(freelancer), available_account_code(freelancer)):
                account = uow.accounts.find(account_code, code)
                amounts.append(0 if account is None else uow.accounts.balance(account))
            return FreelancerBalance(code, amounts[0], amounts[1], uow.escrow.in_transit(freelancer, code))

        return self.book.transaction(read, read_only=True)

    def request_payout(
        self, freelancer_id: str, *, amount: int, currency: str, request_key: str | None = None
    ) -> Payout:
        """Withdraw available money: in transit at once (with its payment order), paid when
        the provider confirms. The payout returned is as it stands after its own order was sent."""
        gateway = self._gateway()
        payout = self._write(
            lambda uow: request_payout(
                uow,
                freelancer_id=freelancer_id,
                currency=currency,
                amount=amount,
                psp_account=gateway.psp_account,
                request_key=request_key,
            )
        )
        return self.payout(payout.id)

    def reverse_payout(self, payout_id: str, *, amount_reversed: int, reference: str | None) -> Payout:
        """The provider has reversed `amount_reversed` (in all) of the payout's transfer (webhook)."""
        gateway = self._gateway()
        return self.book.transaction(
            lambda uow: reverse_payout(
                uow, payout_id, amount_reversed=amount_reversed, psp_account=gateway.psp_account, reference=reference
            )
        )

    def settle_payout(self, payout_id: str, *, paid: bool, reference: str | None, reason: str | None = None) -> Payout:
        gateway = self._gateway()
        return self.book.transaction(
            lambda uow: settle_payout(
                uow, payout_id, paid=paid, psp_account=gateway.psp_account, reference=reference, reason=reason
            )
        )

    def payout(self, payout_id: str) -> Payout:
        return self.book.transaction(lambda uow: uow.escrow.payout(payout_id), read_only=True)
