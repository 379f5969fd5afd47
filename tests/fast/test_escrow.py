"""Milestone escrow on the in-memory ledger with the simulated provider: funding, review,
approval with its fee, refunds after release, payouts and the timers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.audit import CORE_CHECKS, Check
from ledger.clock import FixedClock
from ledger.errors import BelowFloor
from ledger.escrow.chart import SERVICE_FEES, escrow_account_code
from ledger.escrow.checks import ESCROW_CHECKS
from ledger.escrow.model import MilestoneState, PayoutState, RefundNotAllowed
from ledger.escrow.provider_checks import provider_checks
from ledger.escrow.service import Escrow
from ledger.fees.checks import FEE_CHECKS
from ledger.gateway.books import ProviderBooks, provider_books_of
from ledger.gateway.simulated import SimulatedGateway
from ledger.invoices.checks import INVOICE_CHECKS
from ledger.service import Ledger
from tests.fakes.memory import MemoryDatabase

D = 100
S = MilestoneState


def marketplace_checks(provider: ProviderBooks | None) -> list[tuple[str, Check]]:
    """Every invariant of the marketplace, as `ledger.bootstrap` audits it."""
    return CORE_CHECKS + FEE_CHECKS + ESCROW_CHECKS + INVOICE_CHECKS + provider_checks(provider)


@pytest.fixture
def book(clock: FixedClock) -> Ledger:
    return Ledger(MemoryDatabase(clock=clock), checks=marketplace_checks)


@pytest.fixture
def gateway() -> SimulatedGateway:
    return SimulatedGateway()


@pytest.fixture
def escrow(book: Ledger, gateway: SimulatedGateway) -> Escrow:
    return Escrow(book, gateway)


def audited(escrow: Escrow) -> bool:
    """Whether every invariant holds, the provider's own books included (else the report fails the test)."""
    report = escrow.book.audit(provider=provider_books_of(escrow.gateway))
    assert report.ok, report.summary()
    return True


def new_milestone(escrow: Escrow, amount: int = 1_000 * D) -> str:
    contract = escrow.contracts.open_contract(client_id="cl_1", freelancer_id="fr_1", currency="USD", title="Logo")
    return escrow.contracts.add_milestone(contract.id, title="First draft", amount=amount).id


def funded(escrow: Escrow, amount: int = 1_000 * D) -> str:
    milestone_id = new_milestone(escrow, amount)
    assert escrow.funding.fund(milestone_id).milestone.state is S.FUNDED
    return milestone_id


def test_funding_holds_the_milestone_amount_at_the_provider(
    escrow: Escrow, book: Ledger, gateway: SimulatedGateway
) -> None:
    milestone_id = new_milestone(escrow)
    outcome = escrow.funding.fund(milestone_id)
    assert outcome.status == "succeeded" and outcome.milestone.held == 1_000 * D
    assert book.balance(gateway.psp_account, "USD") == 1_000 * D
    assert audited(escrow)


def test_a_declined_funding_returns_the_milestone_to_draft(escrow: Escrow, gateway: SimulatedGateway) -> None:
    milestone_id = new_milestone(escrow)
    gateway.decline_next("card_declined")
    outcome = escrow.funding.fund(milestone_id)
    assert (outcome.status, outcome.milestone.state, outcome.milestone.failure_reason) == (
        "failed",
        S.DRAFT,
        "card_declined",
    )


def test_approving_all_releases_the_net_to_pending_and_the_fee_to_revenue(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    submitted = escrow.contracts.submit(milestone_id)
    assert submitted.state is S.SUBMITTED
    [payment] = escrow.approvals.approve(milestone_id)
    assert (payment.gross, payment.fee, payment.net) == (1_000 * D, 150 * D, 850 * D)
    assert escrow.reads.milestone(milestone_id).state is S.RELEASED
    assert escrow.payouts.balance("fr_1", "USD").pending == 850 * D
    assert book.balance(SERVICE_FEES, "USD") == 150 * D
    assert book.balance(escrow_account_code(milestone_id), "USD") == 0
    assert audited(escrow)


def test_a_partial_approval_keeps_the_rest_held_and_costs_the_same_fee(
    escrow: Escrow, book: Ledger, clock: FixedClock
) -> None:
    milestone_id = funded(escrow)
    [first] = escrow.approvals.approve(milestone_id, amount=400 * D)
    milestone = escrow.reads.milestone(milestone_id)
    assert (milestone.state, milestone.held) == (S.FUNDED, 600 * D)
    clock.advance(timedelta(minutes=1))  # payments are listed by release time (then by their random id)
    [second] = escrow.approvals.approve(milestone_id)
    assert first.fee + second.fee == 150 * D
    assert [p.id for p in escrow.reads.payments(milestone_id)] == [first.id, second.id]
    assert audited(escrow)


def test_fourteen_silent_days_after_submission_release_at_the_deadline(
    escrow: Escrow, book: Ledger, clock: FixedClock
) -> None:
    milestone_id = funded(escrow)
    deadline = escrow.contracts.submit(milestone_id).review_deadline
    assert deadline == clock.now() + timedelta(days=14)
    assert not escrow.orders.tick(deadline - timedelta(seconds=1)).fired
    assert escrow.orders.tick(deadline + timedelta(hours=3)).fired["review_expiry"] == 1
    [payment] = escrow.reads.payments(milestone_id)
    assert payment.released_at == deadline and book.entry(payment.entry_id).effective_at == deadline
    assert not escrow.orders.tick(deadline + timedelta(days=1)).fired["review_expiry"]  # the timer fired once


def test_a_refund_after_release_returns_the_fee_by_the_refund_rule(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    [payment] = escrow.approvals.approve(milestone_id)
    refund = escrow.refunds.refund_payment(payment.id, 500 * D)
    assert refund.fee_returned == 50 * D  # R(F(1000)) - R(F(500)) = 150 - 100
    assert escrow.payouts.balance("fr_1", "USD").pending == 400 * D
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 500 * D
    assert escrow.reads.payment(payment.id).refunded == 500 * D
    with pytest.raises(RefundNotAllowed):
        escrow.refunds.refund_payment(payment.id, 500 * D + 1)
    assert audited(escrow)


def test_released_money_becomes_available_after_5_days_and_can_be_paid_out(
    escrow: Escrow, book: Ledger, gateway: SimulatedGateway
) -> None:
    [payment] = escrow.approvals.approve(funded(escrow))
    with pytest.raises(BelowFloor):
        escrow.payouts.request_payout("fr_1", amount=1, currency="USD")  # still pending
    escrow.orders.tick(payment.pending_until)
    payout = escrow.payouts.request_payout("fr_1", amount=800 * D, currency="USD")
    assert payout.state is PayoutState.PAID and escrow.payouts.payout(payout.id) == payout
    balance = escrow.payouts.balance("fr_1", "USD")
    assert (balance.pending, balance.available, balance.in_transit) == (0, 50 * D, 0)
    assert book.balance(gateway.psp_account, "USD") == 200 * D
    assert audited(escrow)


def test_a_failed_payout_returns_the_money_to_available(escrow: Escrow, gateway: SimulatedGateway) -> None:
    [payment] = escrow.approvals.approve(funded(escrow))
    escrow.orders.tick(payment.pending_until)
    gateway.decline_next("account_closed")
    payout = escrow.payouts.request_payout("fr_1", amount=800 * D, currency="USD")
    assert (payout.state, payout.failure_reason) == (PayoutState.FAILED, "account_closed")
    assert escrow.payouts.balance("fr_1", "USD").available == 850 * D
