"""`/v1/milestones` (marketplace): funding, the review transitions, approval, refund
requests, dispute resolution, and the chargebacks against a milestone."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from ledger.api.auth import MARKETPLACE
from ledger.api.idempotent import idempotent
from ledger.api.schemas import (
    ApproveRequest,
    DisputeOut,
    FundingOut,
    FundRequest,
    MilestoneOut,
    ResolveDispute,
    StateHistoryOut,
)
from ledger.api.views import dispute_out, funding_out, history_out, milestone_currency, read_milestone, standing_out
from ledger.escrow.service import Escrow
from ledger.service import Ledger


class MilestoneController(Controller):
    path = "/v1/milestones"
    tags = ["escrow"]
    opt = {"roles": MARKETPLACE}

    @get("/{milestone_id:str}", operation_id="getMilestone", sync_to_thread=True)
    def read(self, book: NamedDependency[Ledger], milestone_id: FromPath[str]) -> MilestoneOut:
        """A milestone: its state, what it holds, its review deadline and its payments."""
        return read_milestone(book, milestone_id)

    @get("/{milestone_id:str}/history", operation_id="getMilestoneHistory", sync_to_thread=True)
    def history(self, escrow: NamedDependency[Escrow], milestone_id: FromPath[str]) -> StateHistoryOut:
        """The states the milestone went through (an hourly week's escrow too), oldest
        first, with who moved it there (an API key's id, `worker`, `provider`, `cli`...)."""
        return history_out(milestone_id, escrow.reads.history("milestone", milestone_id))

    @get("/{milestone_id:str}/disputes", operation_id="listMilestoneDisputes", sync_to_thread=True)
    def disputes(self, escrow: NamedDependency[Escrow], milestone_id: FromPath[str]) -> list[DisputeOut]:
        """Chargebacks against the payments that funded the milestone, oldest first."""
        return [dispute_out(d) for d in escrow.chargebacks.disputes(milestone_id)]

    @post("/{milestone_id:str}/fund", operation_id="fundMilestone", sync_to_thread=True, status_code=200)
    @idempotent(empty_body=FundRequest())
    def fund(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        milestone_id: FromPath[str],
        data: JSONBody[FundRequest | None] = None,
    ) -> FundingOut:
        """Charge the client; the milestone is funded once the payment has succeeded."""
        body = data or FundRequest()
        outcome = escrow.funding.fund(milestone_id, payment_method=body.payment_method, request_key=request_key)
        return funding_out(outcome, read_milestone(book, milestone_id))

    @post("/{milestone_id:str}/submit", operation_id="submitMilestone", sync_to_thread=True, status_code=200)
    @idempotent
    def submit(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        milestone_id: FromPath[str],
    ) -> MilestoneOut:
        """The freelancer submits work; the 14-day review clock starts."""
        escrow.contracts.submit(milestone_id, request_key=request_key)
        return read_milestone(book, milestone_id)

    @post("/{milestone_id:str}/request-changes", operation_id="requestChanges", sync_to_thread=True, status_code=200)
    @idempotent
    def request_changes(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        milestone_id: FromPath[str],
    ) -> MilestoneOut:
        """The client asks for changes; the review clock stops."""
        escrow.contracts.request_changes(milestone_id, request_key=request_key)
        return read_milestone(book, milestone_id)

    @post("/{milestone_id:str}/approve", operation_id="approveMilestone", sync_to_thread=True, status_code=200)
    @idempotent(empty_body=ApproveRequest())
    def approve(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        milestone_id: FromPath[str],
        data: JSONBody[ApproveRequest | None] = None,
    ) -> MilestoneOut:
        """Approve all that is held, part of it (`amount` below it), or more (the extra is a bonus)."""
        body = data or ApproveRequest()
        amount = None if body.amount is None else body.amount.minor(milestone_currency(book, milestone_id))
        standing = escrow.approvals.approve_and_show(
            milestone_id, amount=amount, payment_method=body.payment_method, request_key=request_key
        )
        return standing_out(standing)

    @post(
        "/{milestone_id:str}/refund-request/accept",
        operation_id="acceptRefundRequest",
        sync_to_thread=True,
        status_code=200,
    )
    @idempotent
    def accept_refund(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        milestone_id: FromPath[str],
    ) -> MilestoneOut:
        """The freelancer accepts the client's refund request: all held goes back."""
        escrow.refunds.accept_refund_request(milestone_id, request_key=request_key)
        return read_milestone(book, milestone_id)

    @post(
        "/{milestone_id:str}/refund-request/dispute",
        operation_id="disputeRefundRequest",
        sync_to_thread=True,
        status_code=200,
    )
    @idempotent
    def dispute(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        milestone_id: FromPath[str],
    ) -> MilestoneOut:
        """The freelancer disputes the client's refund request."""
        escrow.refunds.dispute_refund_request(milestone_id, request_key=request_key)
        return read_milestone(book, milestone_id)

    @post("/{milestone_id:str}/dispute/resolve", operation_id="resolveDispute", sync_to_thread=True, status_code=200)
    @idempotent
    def resolve(
        self,
        request: Request[Any, Any, Any],
        book: NamedDependency[Ledger],
        escrow: NamedDependency[Escrow],
        request_key: NamedDependency[str | None],
        milestone_id: FromPath[str],
        data: JSONBody[ResolveDispute],
    ) -> MilestoneOut:
        """Split what is held: `release` to the freelancer (fee on it only), `refund` to the client."""
        currency = milestone_currency(book, milestone_id)
        escrow.refunds.resolve_dispute(
            milestone_id,
            release=data.release.minor(currency, field="release"),
            refund=data.refund.minor(currency, field="refund"),
            request_key=request_key,
        )
        return read_milestone(book, milestone_id)
