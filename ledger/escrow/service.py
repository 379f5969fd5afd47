"""`Escrow`: the escrow use cases as the API, the CLI and other modules call them.

Each method runs one use case in its own retryable transaction. A use case that
needs the payment provider writes a payment order in that transaction; after it
commits, the method sends the orders it wrote itself (and only those) through
the dispatcher, so a fast provider still answers within the request. Whatever
goes wrong after the commit (the provider down, a refusal) is recorded on the
order and never turns into the caller's error: the answer says what was
committed, e.g. a refund `pending`. `ledger tick` and `ledger worker` send
everything else that is due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TypeVar

from ledger.errors import BelowFloor, LedgerError
from ledger.escrow import approvals
from ledger.escrow import milestones as use
from ledger.escrow.chargebacks import apply_dispute
from ledger.escrow.chart import available_account_code, pending_account_code
from ledger.escrow.dispatcher import Dispatcher, DispatchReport
from ledger.escrow.model import (
    Contract,
    Dispute,
    Milestone,
    MilestoneFrozen,
    MilestoneState,
    Payment,
    PaymentRefund,
    Payout,
    UnknownDispute,
    new_id,
    party_id,
)
from ledger.escrow.order_results import apply_result
from ledger.escrow.orders import OrderKind, OrderState, PaymentOrder
from ledger.escrow.payments import refund_payment, refund_status, settle_refund
from ledger.escrow.payouts import request_payout, reverse_payout, settle_payout
from ledger.escrow.reconciliation import ReconciliationLine, reconcile
from ledger.escrow.timers import TickReport, tick
from ledger.gateway import (
    ChargeRetrieval,
    DisputeReport,
    GatewayNotConfigured,
    GatewayResult,
    PaymentFailed,
    PaymentGateway,
    ProcessingFees,
)
from ledger.money import normalize_currency
from ledger.ports.unit_of_work import UnitOfWork
from ledger.service import Ledger

T = TypeVar("T")
log = logging.getLogger("ledger.escrow")


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
        return (record.provider_id if record else None) or party_id

    def _gateway(self) -> PaymentGateway:
        if self.gateway is None:
            raise GatewayNotConfigured(
                "no payment gateway is configured: set LEDGER_GATEWAY (e.g. simulated); money cannot be taken in"
            )
        return self.gateway

    # --- contracts and milestones ------------------------------------------------

    def open_contract(
        self, *, client_id: str, freelancer_id: str, currency: str, title: str, request_key: str | None = None
    ) -> Contract:
        def work(uow: UnitOfWork) -> Contract:
            if request_key is not None:
                request = {"client": client_id, "freelancer": freelancer_id, "currency": currency, "title": title}
                stored = uow.orders.bind_request_key(request_key, "open_contract", request)
                if stored is not None:
                    return uow.escrow.contract(str(stored["contract"]))
            contract = use.open_contract(
                uow, client_id=client_id, freelancer_id=freelancer_id, currency=currency, title=title
            )
            if request_key is not None:
                uow.orders.store_result(request_key, {"contract": contract.id})
            return contract

        return self.book.transaction(work)

    def add_milestone(
        self,
        contract_id: str,
        *,
        title: str,
        amount: int,
        due_date: date | None = None,
        currency: str | None = None,
        request_key: str | None = None,
    ) -> Milestone:
        """Add a milestone; `currency`, when given, must be the contract's."""

        def work(uow: UnitOfWork) -> Milestone:
            self._check_currency(uow, contract_id, currency)
            if request_key is not None:
                request = {"contract": contract_id, "title": title, "amount": amount, "due_date": due_date}
                stored = uow.orders.bind_request_key(request_key, "add_milestone", request)
                if stored is not None:
                    return uow.escrow.milestone(str(stored["milestone"]))
            milestone = use.add_milestone(uow, contract_id, title=title, amount=amount, due_date=due_date)
            if request_key is not None:
                uow.orders.store_result(request_key, {"milestone": milestone.id})
            return milestone

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

    @property
    def _fees(self) -> bool:
        return isinstance(self.gateway, ProcessingFees)

    # --- work and approval -----------------------------------------------------------

    def submit(self, milestone_id: str, *, request_key: str | None = None) -> Milestone:
        return self.book.transaction(
            self._once(
                request_key,
                "submit",
                {"milestone": milestone_id},
                milestone_id,
                lambda uow: use.submit(uow, milestone_id),
            )
        )

    def request_changes(self, milestone_id: str, *, request_key: str | None = None) -> Milestone:
        return self.book.transaction(
            self._once(
                request_key,
                "request_changes",
                {"milestone": milestone_id},
                milestone_id,
                lambda uow: use.request_changes(uow, milestone_id),
            )
        )

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
        self._milestone_currency(milestone_id, currency)
        if amount is not None and self.gateway is None:
            held = self.milestone(milestone_id).held
            if isinstance(amount, int) and amount > held > 0:
                self._gateway()  # a bonus needs the provider
        approval = self._write(
            lambda uow: approvals.approve(
                uow, milestone_id, amount=amount, request_key=request_key, payment_method=payment_method
            )
        )
        if approval.order is None:
            return list(approval.payments)
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
        milestone = self.milestone(milestone_id)
        if order.state is OrderState.SUCCEEDED and not payments and milestone.frozen_by is not None:
            raise MilestoneFrozen(
                f"milestone {milestone_id} was frozen by chargeback {milestone.frozen_by} during the bonus charge: "
                "the bonus is refunded and nothing was released",
                milestone_id=milestone_id,
                dispute_id=milestone.frozen_by,
            )
        return payments

    # --- ending, refunds, disputes -----------------------------------------------------

    def end_contract(self, contract_id: str, *, ended_by: str, request_key: str | None = None) -> Contract:
        def work(uow: UnitOfWork) -> Contract:
            if (
                request_key is not None
                and uow.orders.bind_request_key(
                    request_key, "end_contract", {"contract": contract_id, "ended_by": ended_by}
                )
                is not None
            ):
                return uow.escrow.contract(contract_id)
            return use.end_contract(uow, contract_id, ended_by=ended_by)

        return self._write(work)

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

    def resolve_dispute(
        self,
        milestone_id: str,
        *,
        release: int,
        refund: int,
        currency: str | None = None,
        request_key: str | None = None,
    ) -> Milestone:
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

    def dispatch(self) -> DispatchReport:
        """Send every payment order that is due (what `ledger tick` and the worker run)."""
        if self.gateway is None:
            return DispatchReport()
        dispatcher = Dispatcher(self.book, self.gateway)
        dispatcher.expire_waiting()
        return dispatcher.run()

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

    def reconcile(self, since: datetime, until: datetime) -> list[ReconciliationLine]:
        """The provider's payments, refunds and transfers in [since, until) against the ledger."""
        gateway = self._gateway()
        return self.book.transaction(
            lambda uow: reconcile(uow, gateway, gateway.psp_account, since, until), read_only=True
        )

    # --- time ------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> TickReport:
        """Fire due timers, then send every payment order that is due (the timers' refunds,
        retries, re-sends); one failing order never stops the others."""
        report = tick(self.book, now)
        orders = self.dispatch()
        return replace(report, orders=orders.summary() if orders.sent else "")
