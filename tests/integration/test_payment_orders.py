"""Payment orders at the provider boundary: each test states a rule that keeps money
from being created, lost or doubled where the ledger meets the provider. Both databases."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from ledger import FixedClock, Ledger
from ledger.actors import CLI, acting_as
from ledger.db.schema import payment_orders, refund_orders
from ledger.errors import IdempotencyConflict, UnknownAccount
from ledger.escrow.model import InvalidTransition, MilestoneState
from ledger.escrow.operations import list_orders, resolve_order, retry_order
from ledger.escrow.orders import OrderKind, OrderNotResolvable, OrderState
from ledger.escrow.service import Escrow
from ledger.gateway import GatewayResult, GatewayUnavailable
from ledger.gateway.simulated import SimulatedGateway
from tests.integration.test_escrow import funded, new_milestone

D = 100
S = MilestoneState
PSP = "assets:psp:simulated"


def psp(book: Ledger) -> int:
    """The ledger's balance at the provider (0 before any money came in)."""
    try:
        return book.balance(PSP, "USD")
    except UnknownAccount:
        return 0


def orders(book: Ledger) -> list[Any]:
    return book.transaction(
        lambda uow: list(uow.connection.execute(select(payment_orders).order_by(payment_orders.c.created_at))),
        read_only=True,
    )


class Recording(SimulatedGateway):
    """Remembers every charge, refund and payout the provider made, with its amount."""

    def __init__(self) -> None:
        super().__init__()
        self.moved: list[tuple[str, int, str | None]] = []

    def charge(self, **request: Any) -> GatewayResult:
        fresh = request["idempotency_key"] not in self.calls
        result = super().charge(**request)
        if fresh and result.succeeded:
            self.moved.append(("charge", request["amount"], result.reference))
        return result

    def refund(self, **request: Any) -> GatewayResult:
        fresh = request["idempotency_key"] not in self.calls
        result = super().refund(**request)
        if fresh and result.succeeded:
            self.moved.append(("refund", request["amount"], request["charge_reference"]))
        return result

    def payout(self, **request: Any) -> GatewayResult:
        fresh = request["idempotency_key"] not in self.calls
        result = super().payout(**request)
        if fresh and result.succeeded:
            self.moved.append(("payout", request["amount"], None))
        return result

    def net(self) -> int:
        sign = {"charge": 1, "refund": -1, "payout": -1}
        return sum(sign[kind] * amount for kind, amount, _ in self.moved)


# --- a bonus cannot race a partial approval ---------------------------------------------


class PartialApprovalDuringBonus(Recording):
    """A second approval arrives while the bonus is being charged: the race, made deterministic."""

    escrow: Escrow
    milestone_id: str
    outcome: object = None

    def charge(self, **request: Any) -> GatewayResult:
        result = super().charge(**request)
        if request["metadata"].get("bonus"):
            try:
                self.outcome = self.escrow.approvals.approve(self.milestone_id, amount=300 * D)
            except InvalidTransition as refused:
                self.outcome = refused
        return result


def test_a_bonus_is_fixed_under_the_lock_so_a_racing_approval_cannot_create_money(book: Ledger) -> None:
    gateway = PartialApprovalDuringBonus()
    escrow = Escrow(book, gateway)
    gateway.escrow, gateway.milestone_id = escrow, funded(escrow)
    payments = escrow.approvals.approve(gateway.milestone_id, amount=1_500 * D)
    assert isinstance(gateway.outcome, InvalidTransition)  # approval_pending refuses the second approval
    assert [(p.kind, p.gross) for p in payments] == [("release", 1_000 * D), ("bonus", 500 * D)]
    assert gateway.moved == [("charge", 1_000 * D, gateway.moved[0][2]), ("charge", 500 * D, gateway.moved[1][2])]
    assert psp(book) == gateway.net() == 1_500 * D  # booked = what the provider moved
    assert escrow.reads.milestone(gateway.milestone_id).state is S.RELEASED
    assert book.audit().ok


def test_while_a_bonus_is_in_flight_the_milestone_refuses_approvals_ending_refunds_and_the_clock(
    book: Ledger, clock: FixedClock
) -> None:
    gateway = Recording()
    escrow = Escrow(book, gateway)
    milestone_id = funded(escrow)
    [earlier] = escrow.approvals.approve(milestone_id, amount=100 * D)
    escrow.contracts.submit(milestone_id)
    clock.advance(timedelta(days=13, hours=12))
    gateway.require_action_next()  # the bonus waits for the payer (3-D Secure)
    assert escrow.approvals.approve(milestone_id, amount=1_100 * D) == []
    milestone = escrow.reads.milestone(milestone_id)
    assert milestone.state is S.APPROVAL_PENDING and milestone.held == 900 * D
    with pytest.raises(InvalidTransition):
        escrow.approvals.approve(milestone_id, amount=100 * D)
    with pytest.raises(InvalidTransition):
        escrow.contracts.end_contract(milestone.contract_id, ended_by="freelancer")
    with pytest.raises(InvalidTransition):
        escrow.refunds.refund_payment(earlier.id, 10 * D)
    clock.advance(timedelta(hours=13))  # past the review deadline: the clock waits for the charge
    escrow.orders.tick()
    assert escrow.reads.milestone(milestone_id).state is S.APPROVAL_PENDING
    clock.advance(timedelta(hours=12))  # 24 hours without the payer: the order is cancelled, the milestone back
    escrow.orders.tick()
    after = escrow.reads.milestone(milestone_id)
    assert after.state is S.SUBMITTED and after.held == 900 * D and escrow.reads.payments(milestone_id) == [earlier]
    assert after.review_deadline == milestone.review_deadline + timedelta(hours=25)  # the clock waited
    [bonus] = [o for o in orders(book) if o.kind == "bonus"]
    assert bonus.state == "cancelled" and bonus.failure_reason == "not completed within 24 hours"
    assert psp(book) == gateway.net() and book.audit().ok


# --- a refund names the charge it returns --------------------------------------------------


def test_a_refund_of_a_bonus_payment_is_made_against_the_bonus_charge(book: Ledger) -> None:
    gateway = Recording()
    escrow = Escrow(book, gateway)
    milestone_id = funded(escrow)
    release, bonus = escrow.approvals.approve(milestone_id, amount=1_200 * D)
    funding_charge, bonus_charge = gateway.moved[0][2], gateway.moved[1][2]
    assert bonus.charge_reference == bonus_charge != funding_charge
    escrow.refunds.refund_payment(bonus.id, 50 * D)
    escrow.refunds.refund_payment(release.id, 10 * D)
    assert gateway.moved[2:] == [("refund", 50 * D, bonus_charge), ("refund", 10 * D, funding_charge)]
    assert psp(book) == gateway.net() and book.audit().ok


# --- a request sends only its own orders; nothing after its commit changes its answer ----


class BrokenRefunds(Recording):
    """Refunds of one charge fail in every way a provider can fail; everything else works."""

    broken: set[str]

    def __init__(self) -> None:
        super().__init__()
        self.broken = set()
        self.refund_calls: list[str] = []

    def refund(self, **request: Any) -> GatewayResult:
        self.refund_calls.append(request["idempotency_key"])
        if request["charge_reference"] in self.broken:
            raise GatewayUnavailable("the provider times out")
        return super().refund(**request)


def test_a_request_sends_only_its_own_orders_and_its_answer_is_what_it_committed(book: Ledger) -> None:
    gateway = BrokenRefunds()
    escrow = Escrow(book, gateway)
    stuck_milestone = funded(escrow, client="cl_a", freelancer="fr_a")
    gateway.broken.add(gateway.moved[0][2] or "")
    escrow.contracts.end_contract(escrow.reads.milestone(stuck_milestone).contract_id, ended_by="freelancer")
    [stuck_refund] = gateway.refund_calls
    other = funded(escrow, client="cl_b", freelancer="fr_b")
    contract = escrow.contracts.end_contract(escrow.reads.milestone(other).contract_id, ended_by="freelancer")
    assert contract.ended_by == "freelancer"  # the other refund's trouble is not this answer
    assert gateway.refund_calls.count(stuck_refund) == 1  # this request never sent another's order
    refund = escrow.refunds.refund_payment(escrow.approvals.approve(funded(escrow))[0].id, 5 * D)
    assert refund.status == "succeeded"
    by_state = {o.refund_order_id: o.state for o in orders(book) if o.kind == "refund"}
    assert sorted(by_state.values()) == ["sent", "succeeded", "succeeded"]  # the first waits for a retry


def test_tick_goes_on_past_an_order_that_fails_and_sends_the_rest(book: Ledger, clock: FixedClock) -> None:
    gateway = BrokenRefunds()
    escrow = Escrow(book, gateway)
    milestone_id = funded(escrow)
    gateway.broken.add(gateway.moved[0][2] or "")
    escrow.contracts.end_contract(escrow.reads.milestone(milestone_id).contract_id, ended_by="freelancer")
    paid = funded(escrow, client="cl_2", freelancer="fr_2")
    escrow.approvals.approve(paid)
    clock.advance(timedelta(days=6))
    escrow.orders.tick()
    gateway.payout = lambda **request: (_ for _ in ()).throw(GatewayUnavailable("down"))  # type: ignore[method-assign]
    payout = escrow.payouts.request_payout("fr_2", amount=100 * D, currency="USD")
    assert payout.state.value == "in_transit"  # committed; the provider's trouble is not the answer
    del gateway.payout
    clock.advance(timedelta(minutes=5))
    escrow.orders.tick()
    assert escrow.payouts.payout(payout.id).state.value == "paid"
    assert psp(book) == gateway.net() and book.audit().ok


class SlowFees(Recording):
    def processing_fee(self, reference: str) -> tuple[int, str] | None:
        if getattr(self, "down", True):
            raise GatewayUnavailable("the balance transaction lookup timed out")
        return 320, "USD"


def test_a_processing_fee_lookup_that_times_out_does_not_change_the_funding_answer(
    book: Ledger, clock: FixedClock
) -> None:
    gateway = SlowFees()
    escrow = Escrow(book, gateway)
    milestone_id = new_milestone(escrow)
    outcome = escrow.funding.fund(milestone_id)
    assert outcome.status == "succeeded" and outcome.milestone.state is S.FUNDED
    assert book.balance("expenses:psp_fees", "USD") == 0
    gateway.down = False  # type: ignore[attr-defined]
    clock.advance(timedelta(minutes=5))
    escrow.orders.tick()
    assert book.balance("expenses:psp_fees", "USD") == 320 and book.audit().ok


# --- request keys are bound to their request -------------------------------------------------


def test_a_request_key_used_for_another_request_is_a_conflict(book: Ledger, clock: FixedClock) -> None:
    escrow = Escrow(book, Recording())
    first, second = funded(escrow), funded(escrow, client="cl_2", freelancer="fr_2")
    [payment] = escrow.approvals.approve(first, amount=100 * D, request_key="k1")
    assert escrow.approvals.approve(first, amount=100 * D, request_key="k1") == [payment]  # a replay
    with pytest.raises(IdempotencyConflict):
        escrow.approvals.approve(second, amount=900 * D, request_key="k1")
    assert escrow.reads.milestone(second).held == 1_000 * D
    escrow.approvals.approve(second)
    escrow.book.clock.advance(timedelta(days=6))  # type: ignore[attr-defined]
    escrow.orders.tick()
    payout = escrow.payouts.request_payout("fr_2", amount=10 * D, currency="USD", request_key="k2")
    assert escrow.payouts.request_payout("fr_2", amount=10 * D, currency="USD", request_key="k2").id == payout.id
    with pytest.raises(IdempotencyConflict):
        escrow.payouts.request_payout("fr_2", amount=500 * D, currency="EUR", request_key="k2")
    assert book.audit().ok


def test_concurrent_duplicates_of_one_request_get_one_result(book: Ledger) -> None:
    escrow = Escrow(book, Recording())
    milestone_id = funded(escrow)
    results: list[object] = []

    def approve() -> None:
        try:
            results.append(
                tuple(p.id for p in escrow.approvals.approve(milestone_id, amount=100 * D, request_key="dup"))
            )
        except Exception as error:
            results.append(error)

    threads = [threading.Thread(target=approve) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and isinstance(results[0], tuple), results
    assert escrow.reads.milestone(milestone_id).held == 900 * D and book.audit().ok


# --- funding attempts -----------------------------------------------------------------------


class ThreeDSecure(Recording):
    """Charges fail authentication without being final; they can be completed or cancelled later."""

    def __init__(self) -> None:
        super().__init__()
        self.intents: dict[str, tuple[int, str]] = {}  # reference -> amount, status
        self.cancelled: list[str] = []

    def charge(self, **request: Any) -> GatewayResult:
        key = request["idempotency_key"]
        if key in self.calls:
            return self.calls[key]
        reference = f"pi_3ds_{len(self.intents) + 1}"
        self.intents[reference] = (request["amount"], "requires_payment_method")
        result = GatewayResult("failed", reference, failure_reason="authentication failed", final=False)
        self.calls[key] = result
        return result

    def complete(self, reference: str) -> None:
        amount, _ = self.intents[reference]
        self.intents[reference] = (amount, "succeeded")
        self.moved.append(("charge", amount, reference))

    def refund(self, **request: Any) -> GatewayResult:
        amount, status = self.intents[request["charge_reference"]]
        assert status == "succeeded" and request["amount"] <= amount
        self.moved.append(("refund", request["amount"], request["charge_reference"]))
        return GatewayResult("succeeded", f"re_{request['idempotency_key']}")

    def cancel_charge(self, *, reference: str, idempotency_key: str) -> GatewayResult:
        amount, status = self.intents[reference]
        if status == "succeeded":
            return GatewayResult("succeeded", reference)
        self.intents[reference] = (amount, "canceled")
        self.cancelled.append(reference)
        return GatewayResult("cancelled", reference)

    def retrieve_charge(self, reference: str) -> tuple[GatewayResult, Mapping[str, str]]:
        _, status = self.intents[reference]
        return GatewayResult("succeeded" if status == "succeeded" else "failed", reference, final=False), {}


def test_a_failed_authentication_is_not_final_and_a_new_attempt_cancels_the_old_charge(book: Ledger) -> None:
    gateway = ThreeDSecure()
    escrow = Escrow(book, gateway)
    milestone_id = new_milestone(escrow)
    first = escrow.funding.fund(milestone_id)
    assert first.status == "failed" and first.milestone.state is S.DRAFT
    [order] = orders(book)
    assert order.state == "requires_action"  # not final at the provider
    escrow.funding.fund(milestone_id, payment_method="pm_other")
    assert gateway.cancelled == ["pi_3ds_1"]  # cancelled before the new charge
    assert sorted(o.kind for o in orders(book)) == ["cancel", "fund", "fund"]
    assert psp(book) == gateway.net() == 0 and book.audit().ok


def test_a_success_reported_for_a_failed_attempt_is_booked_and_refunded(book: Ledger) -> None:
    gateway = ThreeDSecure()
    escrow = Escrow(book, gateway)
    milestone_id = new_milestone(escrow)
    escrow.funding.fund(milestone_id)
    funding_key = orders(book)[0].provider_key
    gateway.complete("pi_3ds_1")  # the payer finished 3-D Secure after all
    escrow.funding.confirm_funding(milestone_id, funding_key=funding_key, reference="pi_3ds_1")
    assert escrow.reads.milestone(milestone_id).state is S.DRAFT  # the attempt had failed: nothing is held
    refunds = book.transaction(lambda uow: list(uow.connection.execute(refund_orders.select())), read_only=True)
    assert [(r.amount, r.charge_reference, r.state) for r in refunds] == [(1_000 * D, "pi_3ds_1", "succeeded")]
    assert psp(book) == gateway.net() == 0 and book.audit().ok


def test_a_cancellation_that_finds_the_old_charge_succeeded_books_it_as_the_funding(book: Ledger) -> None:
    gateway = ThreeDSecure()
    escrow = Escrow(book, gateway)
    milestone_id = new_milestone(escrow)
    escrow.funding.fund(milestone_id)
    gateway.complete("pi_3ds_1")
    outcome = escrow.funding.fund(milestone_id, payment_method="pm_other")
    assert outcome.milestone.state is S.FUNDED and outcome.milestone.held == 1_000 * D
    assert sorted(o.kind for o in orders(book)) == ["cancel", "fund"]  # no second charge
    assert psp(book) == gateway.net() == 1_000 * D and book.audit().ok


# --- operators -----------------------------------------------------------------------------


def test_operators_list_retry_and_resolve_orders(book: Ledger, clock: FixedClock) -> None:
    gateway = BrokenRefunds()
    escrow = Escrow(book, gateway)
    milestone_id = funded(escrow)
    charge = gateway.moved[0][2] or ""
    gateway.broken.add(charge)
    escrow.contracts.end_contract(escrow.reads.milestone(milestone_id).contract_id, ended_by="freelancer")
    for _ in range(8):  # the provider stays down: the order is given up, visible
        clock.advance(timedelta(hours=2))
        escrow.orders.tick()
    [failed] = list_orders(book, state="failed").orders
    assert failed.kind is OrderKind.REFUND and failed.failure_reason.startswith("gave up")  # type: ignore[union-attr]
    assert book.balance("liabilities:refunds:in_transit", "USD") == 1_000 * D  # still owed
    with pytest.raises(OrderNotResolvable):
        resolve_order(book, gateway, failed.id, outcome="succeeded", reference="re_made_up")
    gateway.broken.clear()
    retried = retry_order(book, gateway, failed.id)
    assert retried.state is OrderState.SUCCEEDED
    assert book.balance("liabilities:refunds:in_transit", "USD") == 0
    assert psp(book) == gateway.net() == 0 and book.audit().ok


def test_creating_with_a_request_key_twice_creates_once_and_another_request_is_a_conflict(book: Ledger) -> None:
    escrow = Escrow(book, Recording())
    contract = escrow.contracts.open_contract(
        client_id="cl_1", freelancer_id="fr_1", currency="USD", title="t", request_key="c"
    )
    again = escrow.contracts.open_contract(
        client_id="cl_1", freelancer_id="fr_1", currency="USD", title="t", request_key="c"
    )
    assert again.id == contract.id
    with pytest.raises(IdempotencyConflict):
        escrow.contracts.open_contract(
            client_id="cl_1", freelancer_id="fr_1", currency="USD", title="other", request_key="c"
        )
    milestone = escrow.contracts.add_milestone(contract.id, title="m", amount=100 * D, request_key="m")
    assert escrow.contracts.add_milestone(contract.id, title="m", amount=100 * D, request_key="m").id == milestone.id
    with pytest.raises(IdempotencyConflict):
        escrow.contracts.add_milestone(contract.id, title="m", amount=200 * D, request_key="m")
    assert [m.id for m in escrow.reads.milestones(contract.id)] == [milestone.id]
    funded_once = escrow.funding.fund(milestone.id, request_key="f")
    assert escrow.funding.fund(milestone.id, request_key="f").milestone.state is funded_once.milestone.state is S.FUNDED
    escrow.contracts.submit(milestone.id, request_key="s")
    assert escrow.contracts.submit(milestone.id, request_key="s").state is S.SUBMITTED  # a replay, not a refusal
    assert len([o for o in orders(book) if o.kind == "fund"]) == 1


def test_a_charge_whose_answer_was_lost_is_booked_even_days_later_never_expired(
    book: Ledger, clock: FixedClock
) -> None:
    """Only a charge waiting for the payer expires after 24 hours; one waiting for the
    provider's answer is looked up and booked (found by the property law of the boundary)."""
    from tests.faulty_gateway import AFTER, FaultyGateway

    provider = Recording()
    gateway = FaultyGateway(provider)
    escrow = Escrow(book, gateway)  # type: ignore[arg-type]
    milestone_id = new_milestone(escrow)
    gateway.script("charge", AFTER)  # the provider charges; its answer is lost
    assert escrow.funding.fund(milestone_id).status == "pending"
    clock.advance(timedelta(days=6))
    escrow.orders.tick()
    assert escrow.reads.milestone(milestone_id).state is S.FUNDED
    assert psp(book) == provider.net() == 1_000 * D and book.audit(provider=provider).ok


def test_a_refund_whose_provider_is_down_answers_pending_and_is_sent_later(book: Ledger, clock: FixedClock) -> None:
    gateway = BrokenRefunds()
    escrow = Escrow(book, gateway)
    [payment] = escrow.approvals.approve(funded(escrow))
    gateway.broken.add(payment.charge_reference or "")
    refund = escrow.refunds.refund_payment(payment.id, 50 * D)
    assert refund.status == "pending"  # committed and owed; the provider's trouble is not the answer
    gateway.broken.clear()
    clock.advance(timedelta(minutes=1))
    escrow.orders.tick()
    assert book.balance("liabilities:refunds:in_transit", "USD") == 0
    assert psp(book) == gateway.net() and book.audit().ok


def test_an_order_first_sent_beyond_the_lookup_limit_is_never_sent_again_but_resolved_by_hand(
    book: Ledger, clock: FixedClock
) -> None:
    gateway = BrokenRefunds()
    escrow = Escrow(book, gateway)
    [payment] = escrow.approvals.approve(funded(escrow))
    gateway.broken.add(payment.charge_reference or "")
    refund = escrow.refunds.refund_payment(payment.id, 50 * D)
    assert refund.status == "pending" and len(gateway.refund_calls) == 1
    gateway.broken.clear()
    clock.advance(timedelta(days=8))  # the provider could have made it; it cannot be searched that far back
    escrow.orders.tick()
    assert len(gateway.refund_calls) == 1  # not sent again on its own
    [order] = [o for o in list_orders(book).orders if o.kind is OrderKind.REFUND]
    with pytest.raises(OrderNotResolvable, match="more than 7 days"):
        retry_order(book, gateway, order.id)
    with acting_as(CLI):  # as `ledger orders resolve` does
        resolved = resolve_order(book, gateway, order.id, outcome="failed", reason="no refund at the provider")
    assert resolved.state is OrderState.FAILED and resolved.resolved_by == CLI
    assert book.balance("liabilities:refunds:in_transit", "USD") == 50 * D  # still owed to the client
    assert book.audit().ok
