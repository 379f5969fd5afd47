"""Milestone escrow: each row of the transition table (docs/architecture.md) and each refusal, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from ledger import FixedClock, Ledger
from ledger.db.schema import entries, milestones, refund_orders
from ledger.errors import BelowFloor, CurrencyMismatch, InvalidRequest
from ledger.escrow.chart import SERVICE_FEES, escrow_account_code
from ledger.escrow.model import ContractEnded, InvalidTransition, MilestoneState, PayoutState, RefundNotAllowed
from ledger.escrow.service import Escrow
from ledger.gateway import GatewayNotConfigured, GatewayResult, PaymentFailed
from ledger.gateway.simulated import SimulatedGateway

D = 100
S = MilestoneState


@pytest.fixture
def gateway() -> SimulatedGateway:
    return SimulatedGateway()


@pytest.fixture
def escrow(book: Ledger, gateway: SimulatedGateway) -> Escrow:
    return Escrow(book, gateway)


def new_milestone(escrow: Escrow, amount: int = 1_000 * D, client: str = "cl_1", freelancer: str = "fr_1") -> str:
    contract = escrow.contracts.open_contract(
        client_id=client, freelancer_id=freelancer, currency="USD", title="Logo design"
    )
    return escrow.contracts.add_milestone(contract.id, title="First draft", amount=amount).id


def funded(escrow: Escrow, amount: int = 1_000 * D, **parties: str) -> str:
    milestone_id = new_milestone(escrow, amount, **parties)
    assert escrow.funding.fund(milestone_id).milestone.state is S.FUNDED
    return milestone_id


def journal_size(book: Ledger) -> int:
    return book.transaction(
        lambda uow: int(uow.connection.execute(select(func.count()).select_from(entries)).scalar_one())
    )


def state_of(book: Ledger) -> list[tuple[str, str]]:
    return book.transaction(
        lambda uow: [
            tuple(r)
            for r in uow.connection.execute(select(milestones.c.id, milestones.c.state).order_by(milestones.c.id))
        ]
    )


def refused(book: Ledger, error: type[Exception], action, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Assert `action` raises `error` and changes neither the journal nor any milestone."""
    before = (journal_size(book), state_of(book))
    with pytest.raises(error) as caught:
        action(*args, **kwargs)
    assert (journal_size(book), state_of(book)) == before
    return caught.value


# --- funding ---------------------------------------------------------------------------


def test_funding_holds_the_milestone_amount_in_escrow(escrow: Escrow, book: Ledger, gateway: SimulatedGateway) -> None:
    milestone_id = new_milestone(escrow)
    outcome = escrow.funding.fund(milestone_id)
    assert outcome.status == "succeeded"
    assert outcome.milestone.state is S.FUNDED and outcome.milestone.held == 1_000 * D
    assert book.balance(gateway.psp_account, "USD") == 1_000 * D
    assert book.audit().ok


def test_funding_without_a_configured_gateway_is_refused(book: Ledger) -> None:
    escrow = Escrow(book, None)
    milestone_id = new_milestone(escrow)
    refused(book, GatewayNotConfigured, escrow.funding.fund, milestone_id)
    assert escrow.reads.milestone(milestone_id).state is S.DRAFT


def test_a_failed_payment_returns_the_milestone_to_draft_with_the_reason(
    escrow: Escrow, book: Ledger, gateway: SimulatedGateway
) -> None:
    milestone_id = new_milestone(escrow)
    gateway.decline_next("card_declined")
    outcome = escrow.funding.fund(milestone_id)
    assert outcome.status == "failed" and outcome.milestone.state is S.DRAFT
    assert outcome.milestone.failure_reason == "card_declined"
    assert journal_size(book) == 0
    assert escrow.funding.fund(milestone_id).milestone.state is S.FUNDED  # a new attempt may succeed


def test_a_payment_awaiting_customer_action_stays_funding_until_confirmed(
    escrow: Escrow, gateway: SimulatedGateway
) -> None:
    milestone_id = new_milestone(escrow)
    gateway.require_action_next()
    outcome = escrow.funding.fund(milestone_id)
    assert outcome.status == "requires_action" and outcome.client_secret
    assert outcome.milestone.state is S.FUNDING and outcome.milestone.held == 0
    key, answer = next(iter(gateway.calls.items()))
    assert gateway.complete_action(answer.reference, succeed=True).succeeded  # the payer passes 3-D Secure
    confirmed = escrow.funding.confirm_funding(milestone_id, funding_key=key, reference=answer.reference)
    assert confirmed.state is S.FUNDED and confirmed.held == 1_000 * D
    # The webhook and our own retrieval may both confirm: the second is a no-op.
    assert escrow.funding.confirm_funding(milestone_id, funding_key=key, reference=answer.reference).held == 1_000 * D


def test_a_retried_fund_request_repeats_the_same_gateway_call(escrow: Escrow, gateway: SimulatedGateway) -> None:
    milestone_id = new_milestone(escrow)
    gateway.require_action_next()
    escrow.funding.fund(milestone_id)
    escrow.funding.fund(milestone_id)
    assert len(gateway.calls) == 1


def test_funding_twice_is_refused(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    refused(book, InvalidTransition, escrow.funding.fund, milestone_id)


# --- work, review clock, approval ---------------------------------------------------------


def test_submission_starts_the_review_clock_and_changes_stop_it(escrow: Escrow, clock: FixedClock) -> None:
    milestone_id = funded(escrow)
    submitted = escrow.contracts.submit(milestone_id)
    assert submitted.state is S.SUBMITTED and submitted.review_deadline == clock.now() + timedelta(days=14)
    changes = escrow.contracts.request_changes(milestone_id)
    assert changes.state is S.CHANGES_REQUESTED and changes.review_deadline is None


def test_approving_all_releases_the_net_to_pending_and_the_fee_to_revenue(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    escrow.contracts.submit(milestone_id)
    [payment] = escrow.approvals.approve(milestone_id)
    assert (payment.gross, payment.fee, payment.net) == (1_000 * D, 150 * D, 850 * D)
    assert payment.id.startswith("py_")
    assert escrow.reads.milestone(milestone_id).state is S.RELEASED
    assert escrow.payouts.balance("fr_1", "USD").pending == 850 * D
    assert book.balance(SERVICE_FEES, "USD") == 150 * D
    assert book.balance(escrow_account_code(milestone_id), "USD") == 0
    assert book.audit().ok


def test_approving_part_releases_it_and_keeps_the_rest_held(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    [first] = escrow.approvals.approve(milestone_id, amount=400 * D)
    milestone = escrow.reads.milestone(milestone_id)
    assert milestone.state is S.FUNDED and milestone.held == 600 * D
    [second] = escrow.approvals.approve(milestone_id)
    assert escrow.reads.milestone(milestone_id).state is S.RELEASED
    assert first.fee + second.fee == 150 * D  # the same as one release of 1,000
    assert book.audit().ok


def test_approving_more_than_held_pays_the_extra_as_a_bonus(
    escrow: Escrow, book: Ledger, gateway: SimulatedGateway
) -> None:
    milestone_id = funded(escrow)
    payments = escrow.approvals.approve(milestone_id, amount=1_200 * D)
    assert [(p.kind, p.gross, p.fee) for p in payments] == [("release", 1_000 * D, 150 * D), ("bonus", 200 * D, 20 * D)]
    assert escrow.reads.milestone(milestone_id).state is S.RELEASED
    assert book.balance(gateway.psp_account, "USD") == 1_200 * D
    assert book.audit().ok


def test_a_declined_bonus_changes_nothing(escrow: Escrow, book: Ledger, gateway: SimulatedGateway) -> None:
    milestone_id = funded(escrow)
    gateway.decline_next()
    refused(book, PaymentFailed, escrow.approvals.approve, milestone_id, amount=1_200 * D)
    assert escrow.reads.milestone(milestone_id).held == 1_000 * D


@pytest.mark.parametrize("state", ["draft", "released"])
def test_approving_a_milestone_that_holds_nothing_is_refused(escrow: Escrow, book: Ledger, state: str) -> None:
    milestone_id = new_milestone(escrow) if state == "draft" else funded(escrow)
    if state == "released":
        escrow.approvals.approve(milestone_id)
    refused(book, InvalidTransition, escrow.approvals.approve, milestone_id)


def test_an_amount_in_another_currency_is_refused(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    refused(book, CurrencyMismatch, escrow.approvals.approve, milestone_id, amount=100, currency="EUR")
    contract_id = escrow.reads.milestone(milestone_id).contract_id
    refused(book, CurrencyMismatch, escrow.contracts.add_milestone, contract_id, title="x", amount=5, currency="EUR")


def test_silence_for_14_days_after_submission_releases_dated_at_the_deadline(
    escrow: Escrow, book: Ledger, clock: FixedClock
) -> None:
    milestone_id = funded(escrow)
    deadline = escrow.contracts.submit(milestone_id).review_deadline
    assert deadline is not None
    clock.advance(timedelta(days=13))
    assert not escrow.orders.tick().fired
    report = escrow.orders.tick(deadline + timedelta(hours=3))
    assert report.fired["review_expiry"] == 1
    [payment] = escrow.reads.payments(milestone_id)
    assert payment.released_at == deadline
    assert book.entry(payment.entry_id).effective_at == deadline
    assert escrow.reads.milestone(milestone_id).state is S.RELEASED
    assert not escrow.orders.tick(deadline + timedelta(days=1)).fired["review_expiry"]  # ticking again moves nothing


def test_a_request_for_changes_stops_the_clock_and_resubmission_restarts_it(escrow: Escrow, clock: FixedClock) -> None:
    milestone_id = funded(escrow)
    first_deadline = escrow.contracts.submit(milestone_id).review_deadline
    clock.advance(timedelta(days=3))
    escrow.contracts.request_changes(milestone_id)
    clock.advance(timedelta(days=7))
    second_deadline = escrow.contracts.submit(milestone_id).review_deadline
    assert second_deadline == clock.now() + timedelta(days=14)
    assert escrow.orders.tick(first_deadline).stale == 1  # the old clock is stale
    assert escrow.reads.milestone(milestone_id).state is S.SUBMITTED
    escrow.orders.tick(second_deadline)
    assert escrow.reads.milestone(milestone_id).state is S.RELEASED


def test_changes_requested_milestones_are_never_auto_released(escrow: Escrow, clock: FixedClock) -> None:
    milestone_id = funded(escrow)
    escrow.contracts.submit(milestone_id)
    escrow.contracts.request_changes(milestone_id)
    escrow.orders.tick(clock.now() + timedelta(days=60))
    assert escrow.reads.milestone(milestone_id).state is S.CHANGES_REQUESTED


# --- ending, refunds, disputes ----------------------------------------------------------------


def test_client_ending_asks_the_freelancer_and_7_silent_days_refund(
    escrow: Escrow, book: Ledger, clock: FixedClock, gateway: SimulatedGateway
) -> None:
    milestone_id = funded(escrow)
    contract_id = escrow.reads.milestone(milestone_id).contract_id
    assert escrow.contracts.end_contract(contract_id, ended_by="client").ended_by == "client"
    requested = escrow.reads.milestone(milestone_id)
    assert requested.state is S.REFUND_REQUESTED and requested.held == 1_000 * D
    deadline = requested.refund_deadline
    assert deadline == clock.now() + timedelta(days=7)
    escrow.orders.tick(deadline - timedelta(seconds=1))
    assert escrow.reads.milestone(milestone_id).state is S.REFUND_REQUESTED
    escrow.orders.tick(deadline)
    refunded = escrow.reads.milestone(milestone_id)
    assert refunded.state is S.REFUNDED and refunded.held == 0
    assert book.balance(gateway.psp_account, "USD") == 0
    assert book.audit().ok


def test_the_freelancer_may_accept_a_refund_request(escrow: Escrow) -> None:
    milestone_id = funded(escrow)
    escrow.contracts.end_contract(escrow.reads.milestone(milestone_id).contract_id, ended_by="client")
    assert escrow.refunds.accept_refund_request(milestone_id).state is S.REFUNDED


def test_the_freelancer_ending_refunds_at_once(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    escrow.contracts.end_contract(escrow.reads.milestone(milestone_id).contract_id, ended_by="freelancer")
    assert escrow.reads.milestone(milestone_id).state is S.REFUNDED
    assert book.audit().ok


def test_an_ended_contract_takes_no_new_milestones_or_funding(escrow: Escrow, book: Ledger) -> None:
    milestone_id = new_milestone(escrow)
    contract_id = escrow.reads.milestone(milestone_id).contract_id
    escrow.contracts.end_contract(contract_id, ended_by="client")
    refused(book, ContractEnded, escrow.funding.fund, milestone_id)
    refused(book, ContractEnded, escrow.contracts.add_milestone, contract_id, title="more", amount=5)
    refused(book, InvalidTransition, escrow.contracts.end_contract, contract_id, ended_by="freelancer")


def test_a_disputed_refund_request_is_resolved_by_a_split(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    escrow.contracts.end_contract(escrow.reads.milestone(milestone_id).contract_id, ended_by="client")
    assert escrow.refunds.dispute_refund_request(milestone_id).state is S.DISPUTED
    refused(book, InvalidRequest, escrow.refunds.resolve_dispute, milestone_id, release=600 * D, refund=300 * D)
    settled = escrow.refunds.resolve_dispute(milestone_id, release=600 * D, refund=400 * D)
    assert settled.state is S.SETTLED and settled.held == 0
    [payment] = escrow.reads.payments(milestone_id)
    assert payment.fee == 100 * D + 10 * D  # the fee only on the 600 the freelancer receives
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 600 * D
    assert book.audit().ok


@pytest.mark.parametrize(("release", "refund", "final"), [(1_000 * D, 0, S.RELEASED), (0, 1_000 * D, S.REFUNDED)])
def test_a_dispute_may_go_wholly_one_way(escrow: Escrow, release: int, refund: int, final: MilestoneState) -> None:
    milestone_id = funded(escrow)
    escrow.contracts.end_contract(escrow.reads.milestone(milestone_id).contract_id, ended_by="client")
    escrow.refunds.dispute_refund_request(milestone_id)
    assert escrow.refunds.resolve_dispute(milestone_id, release=release, refund=refund).state is final


def test_a_client_cannot_pull_back_escrow_from_an_active_milestone(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    refused(book, InvalidTransition, escrow.refunds.accept_refund_request, milestone_id)
    refused(book, InvalidTransition, escrow.refunds.resolve_dispute, milestone_id, release=0, refund=1_000 * D)


# --- freelancer money ---------------------------------------------------------------------------


def test_released_money_is_pending_for_5_days_then_available(escrow: Escrow, clock: FixedClock) -> None:
    milestone_id = funded(escrow)
    [payment] = escrow.approvals.approve(milestone_id)
    assert payment.pending_until == clock.now() + timedelta(days=5)
    escrow.orders.tick(clock.now() + timedelta(days=5) - timedelta(seconds=1))
    assert escrow.payouts.balance("fr_1", "USD").pending == 850 * D
    escrow.orders.tick(payment.pending_until)
    balance = escrow.payouts.balance("fr_1", "USD")
    assert (balance.pending, balance.available) == (0, 850 * D)


def test_a_refund_after_release_returns_the_fee_by_the_refund_rule(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    [payment] = escrow.approvals.approve(milestone_id)
    refund = escrow.refunds.refund_payment(payment.id, 500 * D)
    assert refund.fee_returned == 50 * D  # R(F(1000)) - R(F(500)) = 150 - 100
    assert escrow.payouts.balance("fr_1", "USD").pending == 850 * D - 450 * D
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 500 * D
    assert escrow.reads.payment(payment.id).refunded == 500 * D
    assert book.audit().ok


def test_refunds_after_release_are_limited(escrow: Escrow, book: Ledger, clock: FixedClock) -> None:
    milestone_id = funded(escrow)
    [payment] = escrow.approvals.approve(milestone_id)
    refused(book, RefundNotAllowed, escrow.refunds.refund_payment, payment.id, 1_000 * D + 1)
    escrow.orders.tick(payment.pending_until)
    escrow.payouts.request_payout("fr_1", amount=800 * D, currency="USD")
    refused(book, BelowFloor, escrow.refunds.refund_payment, payment.id, 500 * D)  # more than the freelancer has
    clock.advance(timedelta(days=181))
    refused(book, RefundNotAllowed, escrow.refunds.refund_payment, payment.id, 1 * D)


def test_a_payout_moves_available_money_out(escrow: Escrow, book: Ledger, gateway: SimulatedGateway) -> None:
    milestone_id = funded(escrow)
    [payment] = escrow.approvals.approve(milestone_id)
    escrow.orders.tick(payment.pending_until)
    payout = escrow.payouts.request_payout("fr_1", amount=800 * D, currency="USD")
    assert payout.id.startswith("po_") and payout.state is PayoutState.PAID
    balance = escrow.payouts.balance("fr_1", "USD")
    assert (balance.available, balance.in_transit) == (50 * D, 0)
    assert book.balance(gateway.psp_account, "USD") == 200 * D
    refused(book, BelowFloor, escrow.payouts.request_payout, "fr_1", amount=50 * D + 1, currency="USD")
    assert book.audit().ok


def test_a_failed_payout_returns_the_money_to_available(escrow: Escrow, gateway: SimulatedGateway) -> None:
    milestone_id = funded(escrow)
    [payment] = escrow.approvals.approve(milestone_id)
    escrow.orders.tick(payment.pending_until)
    gateway.decline_next("account_closed")
    payout = escrow.payouts.request_payout("fr_1", amount=800 * D, currency="USD")
    assert payout.state is PayoutState.FAILED and payout.failure_reason == "account_closed"
    assert escrow.payouts.balance("fr_1", "USD").available == 850 * D


def test_pending_money_cannot_be_paid_out(escrow: Escrow, book: Ledger) -> None:
    escrow.approvals.approve(funded(escrow))
    refused(book, BelowFloor, escrow.payouts.request_payout, "fr_1", amount=1, currency="USD")


def test_retried_requests_with_a_key_move_money_once(escrow: Escrow, book: Ledger) -> None:
    milestone_id = funded(escrow)
    first = escrow.approvals.approve(milestone_id, amount=100 * D, request_key="approve-1")
    assert escrow.approvals.approve(milestone_id, amount=100 * D, request_key="approve-1") == first
    assert escrow.reads.milestone(milestone_id).held == 900 * D
    escrow.orders.tick(first[0].pending_until)
    payout = escrow.payouts.request_payout("fr_1", amount=10 * D, currency="USD", request_key="payout-1")
    assert escrow.payouts.request_payout("fr_1", amount=10 * D, currency="USD", request_key="payout-1") == payout
    refund = escrow.refunds.refund_payment(first[0].id, 5 * D, request_key="refund-1")
    assert escrow.refunds.refund_payment(first[0].id, 5 * D, request_key="refund-1") == refund
    assert book.audit().ok


def test_fees_follow_the_pair_across_contracts(escrow: Escrow) -> None:
    first = funded(escrow, 400 * D)
    second = funded(escrow, 400 * D)  # a new contract, same client and freelancer
    other_client = funded(escrow, 400 * D, client="cl_2")
    assert escrow.approvals.approve(first)[0].fee == 80 * D
    assert escrow.approvals.approve(second)[0].fee == 20 * D + 30 * D  # 100 at 20%, 300 at 10%
    assert escrow.approvals.approve(other_client)[0].fee == 80 * D


def test_a_bonus_is_never_charged_for_an_approval_that_is_refused(
    escrow: Escrow, book: Ledger, gateway: SimulatedGateway
) -> None:
    milestone_id = funded(escrow)
    escrow.contracts.end_contract(escrow.reads.milestone(milestone_id).contract_id, ended_by="client")
    calls = len(gateway.calls)
    refused(book, InvalidTransition, escrow.approvals.approve, milestone_id, amount=1_200 * D)
    assert len(gateway.calls) == calls


def test_a_declined_bonus_may_be_retried(escrow: Escrow, gateway: SimulatedGateway) -> None:
    milestone_id = funded(escrow)
    gateway.decline_next()
    with pytest.raises(PaymentFailed):
        escrow.approvals.approve(milestone_id, amount=1_200 * D)
    assert [p.kind for p in escrow.approvals.approve(milestone_id, amount=1_200 * D)] == ["release", "bonus"]


def test_one_tick_fires_what_earlier_timers_made_due(escrow: Escrow, clock: FixedClock) -> None:
    milestone_id = funded(escrow)
    escrow.contracts.submit(milestone_id)
    escrow.orders.tick(clock.now() + timedelta(days=30))  # auto-release at day 14, available at day 19
    balance = escrow.payouts.balance("fr_1", "USD")
    assert (balance.pending, balance.available) == (0, 850 * D)


def test_a_release_that_is_all_fee_is_a_payment_with_a_net_of_zero(escrow: Escrow, book: Ledger) -> None:
    # Lifetime 2 cents, then 1 more: R(F(3)) - R(F(2)) = R(0.6) - R(0.4) = 1 - 0 at 20%.
    milestone_id = funded(escrow, 3)
    escrow.approvals.approve(milestone_id, amount=2)
    [payment] = escrow.approvals.approve(milestone_id)
    assert (payment.gross, payment.fee, payment.net) == (1, 1, 0)
    assert escrow.reads.milestone(milestone_id).state is S.RELEASED
    assert book.audit().ok


class RefusingRefunds(SimulatedGateway):
    """A provider that takes charges but refuses every refund as asked."""

    def refund(self, **request: object) -> GatewayResult:  # type: ignore[override]
        raise InvalidRequest("charge ch_1 has already been refunded", field="charge")


def test_a_refund_the_provider_refuses_stays_owed_and_is_marked_failed_with_the_reason(book: Ledger) -> None:
    escrow = Escrow(book, RefusingRefunds())
    milestone_id = funded(escrow)
    escrow.contracts.end_contract(escrow.reads.milestone(milestone_id).contract_id, ended_by="freelancer")
    assert escrow.reads.milestone(milestone_id).state is S.REFUNDED
    assert book.balance("liabilities:refunds:in_transit", "USD") == 1_000 * D  # still owed to the client
    [order] = book.transaction(lambda uow: list(uow.connection.execute(refund_orders.select())), read_only=True)
    assert order.state == "failed" and order.failure_reason == "charge ch_1 has already been refunded"
    assert escrow.orders.tick().summary() == "nothing due"  # the failed order does not stop the tick
    assert book.audit().ok
