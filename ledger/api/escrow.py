"""Escrow endpoints for the marketplace frontend: contracts, milestones, payments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Controller, Request, Response, get, post

from ledger.api.context import MARKETPLACE, idempotent, request_key, services
from ledger.api.schemas import (
    ApproveRequest,
    ContractCreate,
    ContractOut,
    DisputeOut,
    EndContract,
    FundingOut,
    FundRequest,
    MilestoneCreate,
    MilestoneOut,
    PaymentOut,
    RefundCreate,
    RefundOut,
    ResolveDispute,
)
from ledger.api.views import contract_out, dispute_out, funding_out, milestone_out, payment_out, refund_out
from ledger.bootstrap import Services
from ledger.escrow.model import Milestone
from ledger.escrow.service import Escrow
from ledger.ports.unit_of_work import UnitOfWork

OPT = {"roles": MARKETPLACE}


def milestone_view(svc: Services, milestone_id: str) -> MilestoneOut:
    def read(uow: UnitOfWork) -> MilestoneOut:
        milestone = uow.escrow.milestone(milestone_id)
        currency = uow.escrow.currency_of(milestone.contract_id)
        return milestone_out(milestone, currency, uow.escrow.payments_of(milestone_id))

    return svc.book.transaction(read, read_only=True)


def contract_view(svc: Services, contract_id: str) -> ContractOut:
    def read(uow: UnitOfWork) -> ContractOut:
        contract = uow.escrow.contract(contract_id)
        milestones = [
            milestone_out(m, contract.currency, uow.escrow.payments_of(m.id))
            for m in uow.escrow.milestones_of(contract_id)
        ]
        return contract_out(contract, milestones)

    return svc.book.transaction(read, read_only=True)


class ContractController(Controller):
    path = "/v1/contracts"
    tags = ["escrow"]
    opt = OPT

    @post("/", operation_id="createContract", sync_to_thread=True, status_code=201)
    def create(self, request: Request[Any, Any, Any], data: ContractCreate) -> Response[ContractOut]:
        """Open a fixed-price contract between a client and a freelancer in one currency."""
        svc = services(request)

        def run() -> tuple[int, object]:
            contract = svc.escrow.contracts.open_contract(
                client_id=data.client_id,
                freelancer_id=data.freelancer_id,
                currency=data.currency,
                title=data.title,
                request_key=request_key(request),
            )
            return 201, contract_out(contract, [])

        return idempotent(request, data, run)  # type: ignore[return-value]

    @get("/{contract_id:str}", operation_id="getContract", sync_to_thread=True)
    def read(self, request: Request[Any, Any, Any], contract_id: str) -> ContractOut:
        """A contract with its milestones."""
        return contract_view(services(request), contract_id)

    @post("/{contract_id:str}/milestones", operation_id="addMilestone", sync_to_thread=True, status_code=201)
    def add_milestone(
        self, request: Request[Any, Any, Any], contract_id: str, data: MilestoneCreate
    ) -> Response[MilestoneOut]:
        """Add a milestone (title, amount in the contract's currency, optional due date)."""
        svc = services(request)

        def run() -> tuple[int, object]:
            currency = svc.escrow.reads.contract(contract_id).currency
            milestone = svc.escrow.contracts.add_milestone(
                contract_id,
                title=data.title,
                amount=data.amount.minor(currency),
                due_date=data.due_date,
                request_key=request_key(request),
            )
            return 201, milestone_out(milestone, currency, [])

        return idempotent(request, data, run)  # type: ignore[return-value]

    @post("/{contract_id:str}/end", operation_id="endContract", sync_to_thread=True, status_code=200)
    def end(self, request: Request[Any, Any, Any], contract_id: str, data: EndContract) -> Response[ContractOut]:
        """End the contract: by the freelancer refunds what is held; by the client asks the freelancer first."""
        svc = services(request)

        def run() -> tuple[int, object]:
            svc.escrow.contracts.end_contract(contract_id, ended_by=data.ended_by, request_key=request_key(request))
            return 200, contract_view(svc, contract_id)

        return idempotent(request, data, run)  # type: ignore[return-value]


class MilestoneController(Controller):
    path = "/v1/milestones"
    tags = ["escrow"]
    opt = OPT

    @get("/{milestone_id:str}", operation_id="getMilestone", sync_to_thread=True)
    def read(self, request: Request[Any, Any, Any], milestone_id: str) -> MilestoneOut:
        """A milestone: its state, what it holds, its review deadline and its payments."""
        return milestone_view(services(request), milestone_id)

    @get("/{milestone_id:str}/disputes", operation_id="listMilestoneDisputes", sync_to_thread=True)
    def disputes(self, request: Request[Any, Any, Any], milestone_id: str) -> list[DisputeOut]:
        """Chargebacks against the payments that funded the milestone, oldest first."""
        return [dispute_out(d) for d in services(request).escrow.chargebacks.disputes(milestone_id)]

    @post("/{milestone_id:str}/fund", operation_id="fundMilestone", sync_to_thread=True, status_code=200)
    def fund(
        self, request: Request[Any, Any, Any], milestone_id: str, data: FundRequest | None = None
    ) -> Response[FundingOut]:
        """Charge the client; the milestone is funded once the payment has succeeded."""
        svc = services(request)
        body = data or FundRequest()

        def run() -> tuple[int, object]:
            outcome = svc.escrow.funding.fund(
                milestone_id, payment_method=body.payment_method, request_key=request_key(request)
            )
            return 200, funding_out(outcome, milestone_view(svc, milestone_id))

        return idempotent(request, body, run)  # type: ignore[return-value]

    def _transition(
        self, request: Request[Any, Any, Any], milestone_id: str, action: Callable[[Escrow], Callable[..., Milestone]]
    ) -> Response[MilestoneOut]:
        svc = services(request)

        def run() -> tuple[int, object]:
            action(svc.escrow)(milestone_id, request_key=request_key(request))
            return 200, milestone_view(svc, milestone_id)

        return idempotent(request, None, run)  # type: ignore[return-value]

    @post("/{milestone_id:str}/submit", operation_id="submitMilestone", sync_to_thread=True, status_code=200)
    def submit(self, request: Request[Any, Any, Any], milestone_id: str) -> Response[MilestoneOut]:
        """The freelancer submits work; the 14-day review clock starts."""
        return self._transition(request, milestone_id, lambda escrow: escrow.contracts.submit)

    @post("/{milestone_id:str}/request-changes", operation_id="requestChanges", sync_to_thread=True, status_code=200)
    def request_changes(self, request: Request[Any, Any, Any], milestone_id: str) -> Response[MilestoneOut]:
        """The client asks for changes; the review clock stops."""
        return self._transition(request, milestone_id, lambda escrow: escrow.contracts.request_changes)

    @post("/{milestone_id:str}/approve", operation_id="approveMilestone", sync_to_thread=True, status_code=200)
    def approve(
        self, request: Request[Any, Any, Any], milestone_id: str, data: ApproveRequest | None = None
    ) -> Response[MilestoneOut]:
        """Approve all that is held, part of it (`amount` below it), or more (the extra is a bonus)."""
        svc = services(request)
        body = data or ApproveRequest()

        def run() -> tuple[int, object]:
            amount = None
            if body.amount is not None:
                currency = svc.book.transaction(
                    lambda uow: uow.escrow.currency_of(uow.escrow.milestone(milestone_id).contract_id), read_only=True
                )
                amount = body.amount.minor(currency)
            svc.escrow.approvals.approve(
                milestone_id, amount=amount, payment_method=body.payment_method, request_key=request_key(request)
            )
            return 200, milestone_view(svc, milestone_id)

        return idempotent(request, body, run)  # type: ignore[return-value]

    @post(
        "/{milestone_id:str}/refund-request/accept",
        operation_id="acceptRefundRequest",
        sync_to_thread=True,
        status_code=200,
    )
    def accept_refund(self, request: Request[Any, Any, Any], milestone_id: str) -> Response[MilestoneOut]:
        """The freelancer accepts the client's refund request: all held goes back."""
        return self._transition(request, milestone_id, lambda escrow: escrow.refunds.accept_refund_request)

    @post(
        "/{milestone_id:str}/refund-request/dispute",
        operation_id="disputeRefundRequest",
        sync_to_thread=True,
        status_code=200,
    )
    def dispute(self, request: Request[Any, Any, Any], milestone_id: str) -> Response[MilestoneOut]:
        """The freelancer disputes the client's refund request."""
        return self._transition(request, milestone_id, lambda escrow: escrow.refunds.dispute_refund_request)

    @post("/{milestone_id:str}/dispute/resolve", operation_id="resolveDispute", sync_to_thread=True, status_code=200)
    def resolve(
        self, request: Request[Any, Any, Any], milestone_id: str, data: ResolveDispute
    ) -> Response[MilestoneOut]:
        """Split what is held: `release` to the freelancer (fee on it only), `refund` to the client."""
        svc = services(request)

        def run() -> tuple[int, object]:
            currency = svc.book.transaction(
                lambda uow: uow.escrow.currency_of(uow.escrow.milestone(milestone_id).contract_id), read_only=True
            )
            svc.escrow.refunds.resolve_dispute(
                milestone_id,
                release=data.release.minor(currency, field="release"),
                refund=data.refund.minor(currency, field="refund"),
                request_key=request_key(request),
            )
            return 200, milestone_view(svc, milestone_id)

        return idempotent(request, data, run)  # type: ignore[return-value]


class PaymentController(Controller):
    path = "/v1/payments"
    tags = ["escrow"]
    opt = OPT

    @get("/{payment_id:str}", operation_id="getPayment", sync_to_thread=True)
    def read(self, request: Request[Any, Any, Any], payment_id: str) -> PaymentOut:
        """A payment released to a freelancer."""
        svc = services(request)

        def read(uow: UnitOfWork) -> PaymentOut:
            payment = uow.escrow.payment(payment_id)
            return payment_out(payment, uow.escrow.currency_of(payment.contract_id))

        return svc.book.transaction(read, read_only=True)

    @post("/{payment_id:str}/refunds", operation_id="refundPayment", sync_to_thread=True, status_code=201)
    def refund(self, request: Request[Any, Any, Any], payment_id: str, data: RefundCreate) -> Response[RefundOut]:
        """The freelancer refunds (part of) a released payment, within 180 days and their balance."""
        svc = services(request)

        def run() -> tuple[int, object]:
            currency = svc.book.transaction(
                lambda uow: uow.escrow.currency_of(uow.escrow.payment(payment_id).contract_id), read_only=True
            )
            refund = svc.escrow.refunds.refund_payment(
                payment_id, data.amount.minor(currency), request_key=request_key(request)
            )
            return 201, refund_out(refund, currency)

        return idempotent(request, data, run)  # type: ignore[return-value]
