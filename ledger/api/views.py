"""Domain objects as response bodies."""

from __future__ import annotations

from ledger.api.schemas import (
    Amount,
    BalanceOut,
    ContractOut,
    DisputeOut,
    EntryOut,
    FeeLineOut,
    FeeQuoteOut,
    FundingOut,
    MilestoneOut,
    PaymentOut,
    PayoutOut,
    PostingOut,
    RefundOut,
)
from ledger.escrow.model import Contract, Dispute, Milestone, Payment, PaymentRefund, Payout
from ledger.escrow.services.funding import FundingOutcome
from ledger.escrow.services.payouts import FreelancerBalance
from ledger.fees.rule import FeeBreakdown
from ledger.journal import Entry


def payment_out(payment: Payment, currency: str) -> PaymentOut:
    return PaymentOut(
        id=payment.id,
        milestone_id=payment.milestone_id,
        contract_id=payment.contract_id,
        kind=payment.kind,
        gross=Amount.of(payment.gross, currency),
        fee=Amount.of(payment.fee, currency),
        net=Amount.of(payment.net, currency),
        released_at=payment.released_at,
        pending_until=payment.pending_until,
        refunded=Amount.of(payment.refunded, currency),
        entry_id=payment.entry_id,
    )


def milestone_out(milestone: Milestone, currency: str, payments: list[Payment]) -> MilestoneOut:
    return MilestoneOut(
        id=milestone.id,
        contract_id=milestone.contract_id,
        title=milestone.title,
        amount=Amount.of(milestone.amount, currency),
        held=Amount.of(milestone.held, currency),
        state=milestone.state.value,
        due_date=milestone.due_date,
        review_deadline=milestone.review_deadline,
        refund_deadline=milestone.refund_deadline,
        failure_reason=milestone.failure_reason,
        created_at=milestone.created_at,
        payments=[payment_out(p, currency) for p in payments],
        frozen_by=milestone.frozen_by,
    )


def dispute_out(dispute: Dispute) -> DisputeOut:
    def amount(minor: int) -> Amount:
        return Amount.of(minor, dispute.currency)

    return DisputeOut(
        id=dispute.id,
        milestone_id=dispute.milestone_id,
        charge_reference=dispute.charge_reference,
        amount=amount(dispute.amount),
        status=dispute.status,
        withdrawn=amount(dispute.withdrawn),
        reinstated=amount(dispute.reinstated),
        outcome=None if dispute.outcome is None else dispute.outcome.value,
        recovered_from_refunds=amount(dispute.recovered_from_refunds),
        recovered_from_escrow=amount(dispute.recovered_from_escrow),
        recovered_from_freelancer=amount(dispute.recovered_from_freelancer),
        fee_returned=amount(dispute.fee_returned),
        unrecovered=amount(dispute.unrecovered),
        opened_at=dispute.opened_at,
        closed_at=dispute.closed_at,
    )


def contract_out(contract: Contract, milestones: list[MilestoneOut]) -> ContractOut:
    return ContractOut(
        id=contract.id,
        client_id=contract.client_id,
        freelancer_id=contract.freelancer_id,
        currency=contract.currency,
        title=contract.title,
        created_at=contract.created_at,
        ended_by=contract.ended_by,
        ended_at=contract.ended_at,
        milestones=milestones,
    )


def funding_out(outcome: FundingOutcome, milestone: MilestoneOut) -> FundingOut:
    return FundingOut(outcome.status, outcome.client_secret, outcome.failure_reason, milestone)


def refund_out(refund: PaymentRefund, currency: str) -> RefundOut:
    return RefundOut(
        refund.id,
        refund.payment_id,
        Amount.of(refund.amount, currency),
        Amount.of(refund.fee_returned, currency),
        refund.entry_id,
        refund.status,
    )


def balance_out(freelancer_id: str, balance: FreelancerBalance) -> BalanceOut:
    c = balance.currency
    return BalanceOut(
        freelancer_id,
        c,
        Amount.of(balance.pending, c),
        Amount.of(balance.available, c),
        Amount.of(balance.in_transit, c),
    )


def payout_out(payout: Payout) -> PayoutOut:
    return PayoutOut(
        id=payout.id,
        freelancer_id=payout.freelancer_id,
        amount=Amount.of(payout.amount, payout.currency),
        state=payout.state.value,
        gateway_reference=payout.gateway_reference,
        failure_reason=payout.failure_reason,
        created_at=payout.created_at,
        settled_at=payout.settled_at,
        amount_reversed=Amount.of(payout.amount_reversed, payout.currency),
    )


def entry_out(entry: Entry) -> EntryOut:
    return EntryOut(
        id=entry.id,
        idempotency_key=entry.idempotency_key,
        kind=entry.kind,
        effective_at=entry.effective_at,
        recorded_at=entry.recorded_at,
        reverses_entry_id=entry.reverses_entry_id,
        refs=dict(entry.refs),
        postings=[PostingOut(p.account, p.side.value, Amount.of(p.amount, p.currency)) for p in entry.postings],
    )


def fee_quote_out(breakdown: FeeBreakdown) -> FeeQuoteOut:
    c = breakdown.currency
    return FeeQuoteOut(
        schedule=breakdown.schedule,
        amount=Amount.of(breakdown.amount, c),
        fee=Amount.of(breakdown.fee, c),
        net=Amount.of(breakdown.net, c),
        blended_rate=str(breakdown.blended_rate),
        lifetime_before=Amount.of(breakdown.lifetime_before, c),
        lifetime_after=Amount.of(breakdown.lifetime_after, c),
        lines=[
            FeeLineOut(Amount.of(line.amount, c), str(line.rate), Amount.of(line.fee, c)) for line in breakdown.lines
        ],
    )
