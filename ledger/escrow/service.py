"""`Escrow`: the escrow use cases as the API, the CLI and other modules call them.

Each method runs one use case in its own retryable transaction. Calls to the
payment gateway happen between transactions, never inside one (a transaction
may be retried; a charge must not be), with the funding attempt's idempotency
key, so a retried request repeats the same gateway call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ledger.db.unit_of_work import UnitOfWork
from ledger.errors import BelowFloor, InvalidRequest, LedgerError
from ledger.escrow import milestones as use
from ledger.escrow.chargebacks import apply_dispute
from ledger.escrow.chart import available_account_code, pending_account_code
from ledger.escrow.model import (
    Contract,
    Dispute,
    Milestone,
    Payment,
    Payout,
    PayoutState,
    UnknownDispute,
    new_id,
    party_id,
)
from ledger.escrow.payments import PaymentRefund, book_processing_fee, refund_payment, settle_refund
from ledger.escrow.payouts import request_payout, reverse_payout, settle_payout
from ledger.escrow.reconciliation import ReconciliationLine, reconcile
from ledger.escrow.timers import TickReport, tick
from ledger.gateway import (
    DisputeReport,
    GatewayNotConfigured,
    GatewayResult,
    GatewayUnavailable,
    PaymentFailed,
    PaymentGateway,
)
from ledger.money import normalize_currency
from ledger.service import Ledger

#: How long after its creation a refund or payout the provider did not acknowledge is sent
#: again by `ledger tick`: within the 24 hours the provider keeps idempotency keys, so a
#: resend can never create a second transfer or refund. Older ones wait for an operator.
RESEND_WINDOW = timedelta(hours=23)


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


@dataclass(frozen=True)
class FreelancerBalance:
    """A freelancer's money in one currency, minor units."""

    currency: str
    pending: int
    available: int
    in_transit: int


class Escrow:
    """Milestone escrow over a ledger and a payment gateway.

    Attributes:
        book: the ledger.
        gateway: the payment gateway; None refuses every operation that takes money in.
    """

    def __init__(self, book: Ledger, gateway: PaymentGateway | None) -> None:
        self.book = book
        self.gateway = gateway

    def _provider_id(self, party_id: str) -> str:
        """The party's id at the payment provider (customer or connected account), or our own id."""
        record = self.book.transaction(lambda uow: uow.documents.party(party_id), read_only=True)
        return (record or {}).get("provider_id") or party_id

    def _gateway(self) -> PaymentGateway:
        if self.gateway is None:
            raise GatewayNotConfigured(
                "no payment gateway is configured: set LEDGER_GATEWAY (e.g. simulated); money cannot be taken in"
            )
        return self.gateway

    # --- contracts and milestones ------------------------------------------------

    def open_contract(self, *, client_id: str, freelancer_id: str, currency: str, title: str) -> Contract:
        return self.book.transaction(
            lambda uow: use.open_contract(
                uow, client_id=client_id, freelancer_id=freelancer_id, currency=currency, title=title
            )
        )

    def add_milestone(
        self, contract_id: str, *, title: str, amount: int, due_date: date | None = None, currency: str | None = None
    ) -> Milestone:
        """Add a milestone; `currency`, when given, must be the contract's."""

        def work(uow: UnitOfWork) -> Milestone:
            self._check_currency(uow, contract_id, currency)
            return use.add_milestone(uow, contract_id, title=title, amount=amount, due_date=due_date)

        return self.book.transaction(work)

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

    def contract(self, contract_id: str) -> Contract:
        return self.book.transaction(lambda uow: uow.escrow.contract(contract_id), read_only=True)

    def milestones(self, contract_id: str) -> list[Milestone]:
        def read(uow: UnitOfWork) -> list[Milestone]:
            uow.escrow.contract(contract_id)
            return uow.escrow.milestones_of(contract_id)

        return self.book.transaction(read, read_only=True)

    def milestone(self, milestone_id: str) -> Milestone:
        return self.book.transaction(lambda uow: uow.escrow.milestone(milestone_id), read_only=True)

    def payments(self, milestone_id: str) -> list[Payment]:
        def read(uow: UnitOfWork) -> list[Payment]:
            uow.escrow.milestone(milestone_id)
            return uow.escrow.payments_of(milestone_id)

        return self.book.transaction(read, read_only=True)

    def payment(self, payment_id: str) -> Payment:
        return self.book.transaction(lambda uow: uow.escrow.payment(payment_id), read_only=True)

    # --- money in ------------------------------------------------------------------

    def fund(self, milestone_id: str, *, payment_method: str | None = None) -> FundingOutcome:
        """Charge the client through the gateway and, once it succeeds, hold the money in escrow."""
        gateway = self._gateway()
        request = self.book.transaction(lambda uow: use.start_funding(uow, milestone_id))
        retrieve = getattr(gateway, "retrieve_charge", None)
        if request.reference is not None and retrieve is not None:
            # A payment already under way (the customer had to act): ask the provider how it stands.
            current, _ = retrieve(request.reference)
            return self._settle_funding(milestone_id, request.key, current)
        result = gateway.charge(
            amount=request.total,
            currency=request.contract.currency,
            idempotency_key=request.key,
            customer=self._provider_id(request.contract.client_id),
            metadata={"contract": request.contract.id, "milestone": milestone_id, "funding_key": request.key},
            payment_method=payment_method,
        )
        return self._settle_funding(milestone_id, request.key, result)

    def _settle_funding(self, milestone_id: str, key: str, result: GatewayResult) -> FundingOutcome:
        gateway = self._gateway()
        if result.succeeded:
            milestone = self.book.transaction(
                lambda uow: use.confirm_funding(
                    uow, milestone_id, funding_key=key, reference=result.reference, psp_account=gateway.psp_account
                )
            )
            self.book_processing_fee(milestone_id, result.reference)
            self.dispatch_refunds()  # a payment that landed after its contract ended goes back
        elif result.failed:
            reason = result.failure_reason or "payment failed"
            milestone = self.book.transaction(
                lambda uow: use.fail_funding(uow, milestone_id, funding_key=key, reason=reason)
            )
        else:
            milestone = self.book.transaction(
                lambda uow: use.await_funding(uow, milestone_id, funding_key=key, reference=result.reference)
            )
        return FundingOutcome(milestone, result.status, result.client_secret, result.failure_reason)

    def confirm_funding(self, milestone_id: str, *, funding_key: str, reference: str) -> Milestone:
        """The provider told us (webhook) that a funding payment succeeded."""
        gateway = self._gateway()
        milestone = self.book.transaction(
            lambda uow: use.confirm_funding(
                uow, milestone_id, funding_key=funding_key, reference=reference, psp_account=gateway.psp_account
            )
        )
        self.book_processing_fee(milestone_id, reference)
        self.dispatch_refunds()
        return milestone

    def book_processing_fee(self, milestone_id: str, reference: str) -> None:
        """Book the provider's processing fee on a payment, when the gateway reports one."""
        gateway = self._gateway()
        fee_of = getattr(gateway, "processing_fee", None)
        found = fee_of(reference) if fee_of is not None else None
        if found is None:
            return
        fee, currency = found
        self.book.transaction(
            lambda uow: book_processing_fee(
                uow, milestone_id, reference=reference, fee=fee, currency=currency, psp_account=gateway.psp_account
            )
        )

    # --- work and approval -----------------------------------------------------------

    def submit(self, milestone_id: str) -> Milestone:
        return self.book.transaction(lambda uow: use.submit(uow, milestone_id))

    def request_changes(self, milestone_id: str) -> Milestone:
        return self.book.transaction(lambda uow: use.request_changes(uow, milestone_id))

    def approve(
        self,
        milestone_id: str,
        *,
        amount: int | None = None,
        currency: str | None = None,
        payment_method: str | None = None,
        request_key: str | None = None,
    ) -> list[Payment]:
        """Approve all held (default), part of it, or more (the extra is charged as a bonus first,
        with `payment_method` when the provider needs one)."""
        self._milestone_currency(milestone_id, currency)
        bonus: tuple[str, str, str] | None = None
        extra = 0
        if amount is not None:
            milestone = self.milestone(milestone_id)
            # Only an active milestone can be approved: never charge a bonus that would be refused.
            if (
                milestone.state.is_active
                and milestone.frozen_by is None
                and isinstance(amount, int)
                and not isinstance(amount, bool)
                and amount > milestone.held > 0
            ):
                extra = amount - milestone.held
                bonus = self._charge_bonus(milestone, extra, request_key, payment_method)
        try:
            return self.book.transaction(
                lambda uow: use.approve(uow, milestone_id, amount=amount, bonus=bonus, request_key=request_key)
            )
        except LedgerError:
            if bonus is not None:
                # Something changed between the charge and the approval (another approval, a
                # chargeback): the bonus was never booked, so it goes back to the client.
                self._void_bonus(bonus, extra, milestone_id)
            raise

    def _void_bonus(self, bonus: tuple[str, str, str], extra: int, milestone_id: str) -> None:
        key, reference, _ = bonus
        currency = self.book.transaction(
            lambda uow: uow.escrow.currency_of(uow.escrow.milestone_contract_id(milestone_id)), read_only=True
        )
        self._gateway().refund(
            amount=extra, currency=currency, idempotency_key=f"{key}:void", charge_reference=reference
        )

    def _charge_bonus(
        self, milestone: Milestone, extra: int, request_key: str | None, payment_method: str | None
    ) -> tuple[str, str, str]:
        gateway = self._gateway()
        contract = self.contract(milestone.contract_id)
        # With a request key, a retried request repeats the same charge; without one,
        # each call is a new attempt (a declined card may be retried with another).
        key = f"bonus:{milestone.id}:{request_key}" if request_key else new_id("bonus")
        result = gateway.charge(
            amount=extra,
            currency=contract.currency,
            idempotency_key=key,
            customer=self._provider_id(contract.client_id),
            metadata={"contract": contract.id, "milestone": milestone.id, "bonus": "true"},
            payment_method=payment_method,
        )
        if not result.succeeded:
            raise PaymentFailed(
                f"the bonus payment of {extra} was not completed: {result.failure_reason or result.status}",
                status=result.status,
            )
        return key, result.reference, gateway.psp_account

    # --- ending, refunds, disputes -----------------------------------------------------

    def end_contract(self, contract_id: str, *, ended_by: str) -> Contract:
        contract = self.book.transaction(lambda uow: use.end_contract(uow, contract_id, ended_by=ended_by))
        self.dispatch_refunds()
        return contract

    def accept_refund_request(self, milestone_id: str) -> Milestone:
        milestone = self.book.transaction(lambda uow: use.accept_refund_request(uow, milestone_id))
        self.dispatch_refunds()
        return milestone

    def dispute_refund_request(self, milestone_id: str) -> Milestone:
        return self.book.transaction(lambda uow: use.dispute_refund_request(uow, milestone_id))

    def resolve_dispute(
        self, milestone_id: str, *, release: int, refund: int, currency: str | None = None
    ) -> Milestone:
        self._milestone_currency(milestone_id, currency)
        milestone = self.book.transaction(
            lambda uow: use.resolve_dispute(uow, milestone_id, release_amount=release, refund_amount=refund)
        )
        self.dispatch_refunds()
        return milestone

    def refund_payment(
        self, payment_id: str, amount: int, *, currency: str | None = None, request_key: str | None = None
    ) -> PaymentRefund:
        """The freelancer refunds (part of) a released payment to the client."""

        def work(uow: UnitOfWork) -> PaymentRefund:
            self._check_currency(uow, uow.escrow.payment(payment_id).contract_id, currency)
            return refund_payment(uow, payment_id, amount, request_key=request_key)

        refund = self.book.transaction(work)
        self.dispatch_refunds()
        return refund

    def dispatch_refunds(self) -> int:
        """Send refund orders the provider has not acknowledged; settle those it answers at
        once; ask it how the acknowledged ones stand (a webhook may have been lost).

        Returns how many are still pending. An order is sent with its own id as the
        idempotency key, and only within `RESEND_WINDOW` of its creation (the provider
        forgets keys after 24 hours; an older unacknowledged order is left to an operator)."""
        if self.gateway is None:
            return len(self.book.transaction(lambda uow: uow.escrow.pending_refund_orders(1000), read_only=True))
        gateway = self.gateway
        waiting = 0
        retrieve = getattr(gateway, "retrieve_refund", None)
        since = self.book.clock.now() - RESEND_WINDOW
        for order in self.book.transaction(lambda uow: uow.escrow.pending_refund_orders(1000), read_only=True):
            try:
                if order.gateway_reference is not None:
                    if retrieve is None:
                        waiting += 1
                        continue
                    result, _ = retrieve(order.gateway_reference)
                elif order.created_at < since:
                    waiting += 1
                    continue
                else:
                    result = gateway.refund(
                        amount=int(order.amount),
                        currency=order.currency,
                        idempotency_key=order.id,
                        charge_reference=order.charge_reference,
                    )
            except GatewayUnavailable:
                # The refund is owed and booked in transit; the next dispatch (`ledger tick`)
                # tries again with the same key, so the provider refunds once.
                waiting += 1
                continue
            except InvalidRequest as refused:
                # The provider will not take this refund as asked: it stays owed (in transit),
                # marked failed with the reason, for an operator; other orders go on.
                self.settle_refund(order.id, succeeded=False, reference=None, reason=str(refused))
                continue
            if result.status == "requires_action":
                self.book.transaction(
                    lambda uow, o=order, r=result: uow.escrow.update_refund_order(  # type: ignore[misc]
                        o.id, gateway_reference=r.reference
                    )
                )
                waiting += 1
                continue
            self.book.transaction(
                lambda uow, o=order, r=result: settle_refund(  # type: ignore[misc]
                    uow, o.id, succeeded=r.succeeded, reference=r.reference, reason=r.failure_reason
                )
            )
        return waiting

    def settle_refund(self, order_id: str, *, succeeded: bool, reference: str | None, reason: str | None = None) -> str:
        """The provider reported on a refund (webhook)."""
        return self.book.transaction(
            lambda uow: settle_refund(uow, order_id, succeeded=succeeded, reference=reference, reason=reason)
        )

    # --- chargebacks ---------------------------------------------------------------------

    def apply_dispute(self, report: DisputeReport, milestone_id: str) -> Dispute:
        """Bring the ledger in line with a chargeback as the provider reports it now."""
        gateway = self._gateway()
        attempts_left = 3
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

    # --- freelancer money ------------------------------------------------------------------

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
        """Withdraw available money: in transit at once, paid when the gateway confirms."""
        gateway = self._gateway()
        payout = self.book.transaction(
            lambda uow: request_payout(
                uow,
                freelancer_id=freelancer_id,
                currency=currency,
                amount=amount,
                psp_account=gateway.psp_account,
                request_key=request_key,
            )
        )
        if payout.state is not PayoutState.IN_TRANSIT:
            return payout  # a replay of a payout already settled
        return self._send_payout(payout)

    def _send_payout(self, payout: Payout) -> Payout:
        """Ask the provider to pay a payout in transit; its id is the idempotency key, so
        sending it again (a retry, `ledger tick`) never pays twice."""
        gateway = self._gateway()
        try:
            result = gateway.payout(
                amount=payout.amount,
                currency=payout.currency,
                idempotency_key=payout.id,
                destination=self._provider_id(payout.freelancer_id),
                metadata={"payout": payout.id},
            )
        except GatewayUnavailable:
            # The money stays reserved in transit (never spendable twice); `ledger tick`
            # sends the payout again with the same key.
            return payout
        except InvalidRequest as refused:
            # Refused before anything was created (e.g. no connected account): the money
            # goes back to available and the caller hears why.
            self.settle_payout(payout.id, paid=False, reference=None, reason=str(refused))
            raise
        if result.status == "requires_action":
            self.book.transaction(lambda uow: uow.escrow.update_payout(payout.id, gateway_reference=result.reference))
            return self.payout(payout.id)
        return self.settle_payout(
            payout.id, paid=result.succeeded, reference=result.reference, reason=result.failure_reason
        )

    def dispatch_payouts(self) -> int:
        """Send payouts whose provider call failed or whose answer was lost; returns how many were sent."""
        if self.gateway is None:
            return 0
        sent = 0
        since = self.book.clock.now() - RESEND_WINDOW  # the provider forgets idempotency keys after 24 hours
        for payout in self.book.transaction(lambda uow: uow.escrow.unsent_payouts(since, 1000), read_only=True):
            try:
                sent += self._send_payout(payout).gateway_reference is not None
            except InvalidRequest:
                continue  # failed back to available with the reason
        return sent

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

    def reconcile(self, since: datetime, until: datetime) -> list[ReconciliationLine]:
        """The provider's payments, refunds and transfers in [since, until) against the ledger."""
        gateway = self._gateway()
        return self.book.transaction(
            lambda uow: reconcile(uow, gateway, gateway.psp_account, since, until), read_only=True
        )

    # --- time ------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> TickReport:
        """Fire due timers, then send the refunds they ordered and any payout not yet sent."""
        report = tick(self.book, now)
        self.dispatch_refunds()
        self.dispatch_payouts()
        return report
