"""Chargebacks: freezing, the provider's withdrawals and reinstatements, and the recovery
policy of a lost dispute (escrow, then the freelancer, then the platform), on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ledger import FixedClock, Ledger
from ledger.db.schema import refund_orders
from ledger.escrow.chargebacks import DisputeMismatch
from ledger.escrow.chart import (
    CHARGEBACKS,
    DISPUTED,
    PSP_FEES,
    SERVICE_FEES,
    available_account_code,
    escrow_account_code,
    pending_account_code,
)
from ledger.escrow.model import DisputeOutcome, MilestoneFrozen, MilestoneState
from ledger.escrow.service import Escrow
from ledger.gateway import BalanceMove, DisputeReport, GatewayResult, GatewayUnavailable
from ledger.gateway.simulated import SimulatedGateway
from ledger.invoices.documents import DocumentKind
from tests.integration.test_escrow import funded, journal_size, refused
from tests.integration.test_fees import put_in_force

D = 100
S = MilestoneState
PSP = "assets:psp:simulated"
DISPUTE_FEE = 15 * D
WITHDRAWAL = BalanceMove("txn_withdrawn", -1_000 * D, DISPUTE_FEE, "USD")
REINSTATEMENT = BalanceMove("txn_reinstated", 1_000 * D, -DISPUTE_FEE, "USD")


@pytest.fixture
def escrow(book: Ledger) -> Escrow:
    return Escrow(book, SimulatedGateway())


def report(status: str, *moves: BalanceMove, amount: int = 1_000 * D) -> DisputeReport:
    return DisputeReport("dp_1", "pi_sim_1", amount, "USD", status, moves)


def balance(book: Ledger, account: str) -> int:
    return book.balance(account, "USD")


def test_an_open_chargeback_freezes_the_milestone_and_moves_the_money_to_disputed(
    escrow: Escrow, book: Ledger, clock: FixedClock
) -> None:
    milestone_id = funded(escrow)
    escrow.contracts.submit(milestone_id)
    dispute = escrow.chargebacks.apply_dispute(report("needs_response", WITHDRAWAL), milestone_id)
    assert dispute.is_open and dispute.withdrawn == 1_000 * D
    milestone = escrow.reads.milestone(milestone_id)
    assert milestone.frozen_by == "dp_1" and milestone.review_deadline is None  # the review clock stopped
    assert milestone.held == 1_000 * D  # what it holds is frozen, not gone
    assert balance(book, DISPUTED) == 1_000 * D and balance(book, PSP) == -DISPUTE_FEE
    assert balance(book, PSP_FEES) == DISPUTE_FEE
    frozen = refused(book, MilestoneFrozen, escrow.approvals.approve, milestone_id)
    assert frozen.data["dispute_id"] == "dp_1"
    refused(book, MilestoneFrozen, escrow.contracts.end_contract, milestone.contract_id, ended_by="freelancer")
    clock.advance(timedelta(days=30))
    escrow.orders.tick()  # no auto-release of frozen money
    assert (
        escrow.reads.milestone(milestone_id).state is S.SUBMITTED
        and escrow.reads.milestone(milestone_id).held == 1_000 * D
    )
    assert book.audit().ok


def test_a_won_chargeback_reinstates_the_money_and_restarts_the_review_clock(
    escrow: Escrow, book: Ledger, clock: FixedClock
) -> None:
    milestone_id = funded(escrow)
    escrow.contracts.submit(milestone_id)
    escrow.chargebacks.apply_dispute(report("needs_response", WITHDRAWAL), milestone_id)
    clock.advance(timedelta(days=20))
    won = escrow.chargebacks.apply_dispute(report("won", WITHDRAWAL, REINSTATEMENT), milestone_id)
    assert won.outcome is DisputeOutcome.WON and won.reinstated == 1_000 * D
    assert balance(book, DISPUTED) == 0 and balance(book, PSP_FEES) == 0 and balance(book, PSP) == 1_000 * D
    milestone = escrow.reads.milestone(milestone_id)
    assert milestone.frozen_by is None and milestone.review_deadline == clock.now() + timedelta(days=14)
    clock.advance(timedelta(days=14))
    escrow.orders.tick()
    assert escrow.reads.milestone(milestone_id).state is S.RELEASED  # the restarted clock released it
    assert book.audit().ok


def test_a_lost_chargeback_is_taken_from_what_the_milestone_holds(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    escrow.chargebacks.apply_dispute(report("needs_response", WITHDRAWAL), milestone_id)
    lost = escrow.chargebacks.apply_dispute(report("lost", WITHDRAWAL), milestone_id)
    assert lost.outcome is DisputeOutcome.LOST
    assert (lost.recovered_from_escrow, lost.recovered_from_freelancer, lost.unrecovered) == (1_000 * D, 0, 0)
    milestone = escrow.reads.milestone(milestone_id)
    assert milestone.state is S.REFUNDED and milestone.held == 0 and milestone.frozen_by is None
    assert balance(book, DISPUTED) == 0 and balance(book, CHARGEBACKS) == 0
    assert balance(book, escrow_account_code(milestone_id)) == 0
    assert book.audit().ok


def test_a_lost_chargeback_after_release_is_recovered_from_the_freelancer_then_the_platform(
    escrow: Escrow, book: Ledger, clock: FixedClock
) -> None:
    milestone_id = funded(escrow)
    [payment] = escrow.approvals.approve(milestone_id)  # 850.00 pending, 150.00 fee
    clock.advance(timedelta(days=5))
    escrow.orders.tick()  # 850.00 available
    escrow.payouts.request_payout("fr_1", amount=800 * D, currency="USD")  # paid out: 50.00 left
    lost = escrow.chargebacks.apply_dispute(report("lost", WITHDRAWAL), milestone_id)
    # The fee comes back by the fee rule (150.00 on the pair's first 1,000.00), the
    # freelancer's 850.00 from what they still have (50.00), the rest is the platform's loss.
    assert (lost.recovered_from_escrow, lost.fee_returned, lost.recovered_from_freelancer) == (0, 150 * D, 50 * D)
    assert lost.unrecovered == 800 * D
    assert balance(book, CHARGEBACKS) == 800 * D and balance(book, DISPUTED) == 0
    assert balance(book, available_account_code("fr_1")) == 0 and balance(book, SERVICE_FEES) == 0
    assert escrow.reads.payment(payment.id).refunded == 1_000 * D
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 0
    documents = book.transaction(lambda uow: uow.documents.listing(party_id=None, limit=100), read_only=True)
    notes = [d for d in documents if d.kind is DocumentKind.CREDIT_NOTE]
    assert sorted(note.total for note in notes) == [150 * D, 1_000 * D]  # the client's, and the fee returned
    assert book.audit().ok


def test_a_chargeback_still_pending_after_release_is_taken_from_the_pending_balance(
    escrow: Escrow, book: Ledger
) -> None:
    milestone_id = funded(escrow)
    escrow.approvals.approve(milestone_id)
    lost = escrow.chargebacks.apply_dispute(report("lost", WITHDRAWAL), milestone_id)
    assert (lost.recovered_from_freelancer, lost.fee_returned, lost.unrecovered) == (850 * D, 150 * D, 0)
    assert balance(book, pending_account_code("fr_1")) == 0 and balance(book, CHARGEBACKS) == 0
    assert book.audit().ok


def test_a_lost_chargeback_returns_the_fee_of_the_schedule_the_payment_was_charged_under(
    escrow: Escrow, book: Ledger, clock: FixedClock
) -> None:
    put_in_force(book, clock, "flat-10")
    milestone_id = funded(escrow)
    escrow.approvals.approve(milestone_id)  # flat-10: 100.00 fee, 900.00 pending
    put_in_force(book, clock, "classic")  # classic would return 150.00 on the pair's first 1,000.00
    lost = escrow.chargebacks.apply_dispute(report("lost", WITHDRAWAL), milestone_id)
    assert (lost.recovered_from_freelancer, lost.fee_returned, lost.unrecovered) == (900 * D, 100 * D, 0)
    assert balance(book, SERVICE_FEES) == 0 and book.lifetime_billings("fr_1", "cl_1", "USD") == 0
    assert book.audit().ok


def test_a_partial_lost_chargeback_leaves_the_rest_held_and_unfrozen(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    partial = BalanceMove("txn_partial", -300 * D, DISPUTE_FEE, "USD")
    escrow.chargebacks.apply_dispute(report("lost", partial, amount=300 * D), milestone_id)
    milestone = escrow.reads.milestone(milestone_id)
    assert milestone.held == 700 * D and milestone.state is S.FUNDED and milestone.frozen_by is None
    escrow.approvals.approve(milestone_id)  # the rest is released as usual
    assert book.audit().ok


def test_dispute_reports_may_repeat_and_arrive_out_of_order(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    escrow.chargebacks.apply_dispute(report("lost", WITHDRAWAL), milestone_id)
    size = journal_size(book)
    escrow.chargebacks.apply_dispute(report("lost", WITHDRAWAL), milestone_id)  # a duplicate
    escrow.chargebacks.apply_dispute(report("needs_response", WITHDRAWAL), milestone_id)  # an older state, late
    assert journal_size(book) == size
    assert escrow.chargebacks.dispute("dp_1").outcome is DisputeOutcome.LOST
    assert escrow.reads.milestone(milestone_id).frozen_by is None


def test_a_refund_after_release_waits_for_an_open_chargeback(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    [payment] = escrow.approvals.approve(milestone_id)
    escrow.chargebacks.apply_dispute(report("needs_response", WITHDRAWAL), milestone_id)
    refused(book, MilestoneFrozen, escrow.refunds.refund_payment, payment.id, 100 * D)


def test_a_client_ending_the_contract_during_a_chargeback_starts_no_refund_clock(
    escrow: Escrow, book: Ledger, clock: FixedClock
) -> None:
    milestone_id = funded(escrow)
    escrow.chargebacks.apply_dispute(report("needs_response", WITHDRAWAL), milestone_id)
    escrow.contracts.end_contract(escrow.reads.milestone(milestone_id).contract_id, ended_by="client")
    milestone = escrow.reads.milestone(milestone_id)
    assert milestone.state is S.REFUND_REQUESTED and milestone.refund_deadline is None
    refused(book, MilestoneFrozen, escrow.refunds.accept_refund_request, milestone_id)
    escrow.chargebacks.apply_dispute(report("won", WITHDRAWAL, REINSTATEMENT), milestone_id)
    assert escrow.reads.milestone(milestone_id).refund_deadline == clock.now() + timedelta(days=7)
    escrow.refunds.accept_refund_request(milestone_id)
    assert escrow.reads.milestone(milestone_id).state is S.REFUNDED
    assert book.audit().ok


def test_an_inquiry_that_closes_moves_no_money(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    escrow.chargebacks.apply_dispute(report("warning_needs_response"), milestone_id)
    assert escrow.reads.milestone(milestone_id).frozen_by == "dp_1"
    closed = escrow.chargebacks.apply_dispute(report("warning_closed"), milestone_id)
    assert closed.outcome is DisputeOutcome.WARNING_CLOSED and closed.withdrawn == 0
    assert escrow.reads.milestone(milestone_id).frozen_by is None and balance(book, DISPUTED) == 0
    assert book.audit().ok


def test_pending_money_does_not_mature_while_a_chargeback_is_open(
    escrow: Escrow, book: Ledger, clock: FixedClock
) -> None:
    milestone_id = funded(escrow)
    escrow.approvals.approve(milestone_id)
    escrow.chargebacks.apply_dispute(report("needs_response", WITHDRAWAL), milestone_id)
    clock.advance(timedelta(days=6))
    escrow.orders.tick()
    assert escrow.payouts.balance("fr_1", "USD").available == 0  # still pending: a lost dispute takes it first
    escrow.chargebacks.apply_dispute(report("won", WITHDRAWAL, REINSTATEMENT), milestone_id)
    escrow.orders.tick()
    assert escrow.payouts.balance("fr_1", "USD").available == 850 * D
    assert book.audit().ok


def test_a_won_report_without_its_reinstatement_waits_for_it(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    early = escrow.chargebacks.apply_dispute(report("won", WITHDRAWAL), milestone_id)
    assert early.is_open and escrow.reads.milestone(milestone_id).held == 1_000 * D  # not taken for lost
    won = escrow.chargebacks.apply_dispute(report("won", WITHDRAWAL, REINSTATEMENT), milestone_id)
    assert won.outcome is DisputeOutcome.WON and balance(book, DISPUTED) == 0
    assert book.audit().ok


def test_a_dispute_settled_in_another_currency_is_refused_and_books_nothing(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    in_euros = BalanceMove("txn_eur", -920 * D, 1400, "EUR")
    refused(book, DisputeMismatch, escrow.chargebacks.apply_dispute, report("needs_response", in_euros), milestone_id)
    assert escrow.reads.milestone(milestone_id).frozen_by is None


class DisputedDuringApproval(SimulatedGateway):
    """A chargeback opens while the bonus is being charged: the race, made deterministic."""

    escrow: Escrow
    milestone_id: str

    def charge(self, **request: Any) -> GatewayResult:
        result = super().charge(**request)
        if request["metadata"].get("bonus"):
            self.escrow.chargebacks.apply_dispute(report("needs_response", WITHDRAWAL), self.milestone_id)
        return result


def test_a_bonus_charged_for_an_approval_that_is_then_refused_goes_back_to_the_client(book: Ledger) -> None:
    gateway = DisputedDuringApproval()
    escrow = Escrow(book, gateway)
    gateway.escrow, gateway.milestone_id = escrow, funded(escrow)
    with pytest.raises(MilestoneFrozen):
        escrow.approvals.approve(gateway.milestone_id, amount=1_200 * D)
    # The bonus the provider collected is booked and refunded against the bonus's own charge.
    bonus_charge = next(r for k, r in gateway.calls.items() if k.startswith("bonus:"))
    refunds = book.transaction(lambda uow: list(uow.connection.execute(refund_orders.select())), read_only=True)
    assert [(r.amount, r.charge_reference, r.state) for r in refunds] == [
        (200 * D, bonus_charge.reference, "succeeded")
    ]
    milestone = escrow.reads.milestone(gateway.milestone_id)
    assert milestone.state is S.FUNDED and milestone.held == 1_000 * D  # back as it was, frozen
    assert escrow.reads.payments(gateway.milestone_id) == [] and book.audit().ok  # nothing released


class UnreachablePayouts(SimulatedGateway):
    lookups = 0

    def find(self, kind: str, order_id: str) -> GatewayResult | None:
        self.lookups += 1
        return super().find(kind, order_id)

    def payout(self, **request: Any) -> GatewayResult:
        self.payout_calls = getattr(self, "payout_calls", 0) + 1
        raise GatewayUnavailable("the provider is down")


def test_a_payout_the_provider_never_acknowledged_is_looked_up_before_a_resend_after_23_hours(
    book: Ledger, clock: FixedClock
) -> None:
    gateway = UnreachablePayouts()
    escrow = Escrow(book, gateway)
    escrow.approvals.approve(funded(escrow))
    clock.advance(timedelta(days=5))
    escrow.orders.tick()
    payout = escrow.payouts.request_payout("fr_1", amount=100 * D, currency="USD")
    assert payout.gateway_reference is None and gateway.payout_calls == 1
    clock.advance(timedelta(hours=22))
    escrow.orders.tick()
    assert gateway.payout_calls == 2  # sent again, with the same key
    clock.advance(timedelta(hours=2))
    escrow.orders.tick()
    # The provider forgets keys after 24 hours: it is searched for the transfer by our order
    # id first; it has none (no call ever reached it), so sending again cannot pay twice.
    assert gateway.lookups == 1 and gateway.payout_calls == 3
    assert escrow.payouts.payout(payout.id).state.value == "in_transit" and book.audit().ok


def test_a_lost_chargeback_settles_a_refund_the_provider_refused_instead_of_owing_it_twice(book: Ledger) -> None:
    from ledger.db.schema import refund_orders
    from tests.integration.test_escrow import RefusingRefunds

    escrow = Escrow(book, RefusingRefunds())
    milestone_id = funded(escrow)
    escrow.contracts.end_contract(
        escrow.reads.milestone(milestone_id).contract_id, ended_by="freelancer"
    )  # refund refused
    assert balance(book, "liabilities:refunds:in_transit") == 1_000 * D
    lost = escrow.chargebacks.apply_dispute(report("lost", WITHDRAWAL), milestone_id)
    assert (lost.recovered_from_refunds, lost.recovered_from_escrow, lost.unrecovered) == (1_000 * D, 0, 0)
    assert balance(book, "liabilities:refunds:in_transit") == 0 and balance(book, CHARGEBACKS) == 0
    [order] = book.transaction(lambda uow: list(uow.connection.execute(refund_orders.select())), read_only=True)
    assert order.state == "charged_back"
    assert book.audit().ok
