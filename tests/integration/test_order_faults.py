"""Faults at the provider boundary: whatever the network or the dispatcher does to an
order (the call never arrives, the answer is lost, a timeout, a duplicate delivery,
a crash before the answer is stored, two dispatchers, a lease taken over), the
provider moves the money once, the ledger books exactly what the provider moved
(`provider_matches_ledger`, invariant 10), and the milestone, refund or payout ends
where it should. Both databases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from ledger import FixedClock, Ledger
from ledger.db.provider_books import DatabaseBooks
from ledger.db.schema import refund_orders
from ledger.escrow.dispatcher import Dispatcher
from ledger.escrow.model import MilestoneState, PayoutState
from ledger.escrow.orders import LEASE, OrderKind, OrderState, PaymentOrder
from ledger.escrow.service import Escrow
from ledger.gateway import GatewayResult
from ledger.gateway.simulated import SimulatedGateway
from tests.faulty_gateway import AFTER, BEFORE, TIMEOUT, TWICE, FaultyGateway

D = 100
S = MilestoneState
#: past the first backoff (30 s after a failed send)
PAST_BACKOFF = timedelta(seconds=31)
REFUNDS_IN_TRANSIT = "liabilities:refunds:in_transit"


@pytest.fixture
def provider(book: Ledger, fresh_database_url: str) -> Iterator[SimulatedGateway]:
    """The simulated provider keeping its books in the test's database (with a processing fee)."""
    gateway = SimulatedGateway(DatabaseBooks(fresh_database_url), fee_basis_points=290, fee_fixed=30)
    yield gateway
    gateway.close()


@pytest.fixture
def faulty(provider: SimulatedGateway) -> FaultyGateway:
    return FaultyGateway(provider)


@pytest.fixture
def escrow(book: Ledger, faulty: FaultyGateway) -> Escrow:
    return Escrow(book, faulty)  # type: ignore[arg-type]


class Crash(BaseException):
    """The dispatcher's process dies (not an error the dispatcher could handle)."""


def new_milestone(escrow: Escrow, amount: int = 1_000 * D) -> str:
    contract = escrow.contracts.open_contract(client_id="cl_1", freelancer_id="fr_1", currency="USD", title="Logo")
    return escrow.contracts.add_milestone(contract.id, title="Draft", amount=amount).id


# --- one order of each kind, and where its subject must end -----------------------------

KINDS = ["funding charge", "bonus charge", "refund from escrow", "refund after release", "payout"]
#: the gateway method each kind's order calls
METHOD = {
    "funding charge": "charge",
    "bonus charge": "charge",
    "refund from escrow": "refund",
    "refund after release": "refund",
    "payout": "payout",
}
#: the provider's records once each kind's history is over (every one succeeded)
RECORDS = {
    "funding charge": {"charge": 1},
    "bonus charge": {"charge": 2},  # the funding and the bonus
    "refund from escrow": {"charge": 1, "refund": 1},
    "refund after release": {"charge": 1, "refund": 1},
    "payout": {"charge": 1, "transfer": 1},
}


def start(kind: str, escrow: Escrow, clock: FixedClock, before_the_call: Callable[[], None]) -> str:
    """Bring a milestone to the step that writes an order of `kind`; run `before_the_call`
    (which scripts the fault) and then the request that writes and sends the order.
    Returns the subject: the milestone, the refunded payment or the payout."""
    milestone_id = new_milestone(escrow)
    if kind == "funding charge":
        before_the_call()
        escrow.funding.fund(milestone_id)
        return milestone_id
    escrow.funding.fund(milestone_id)
    if kind == "bonus charge":
        escrow.contracts.submit(milestone_id)
        before_the_call()
        escrow.approvals.approve(milestone_id, amount=1_500 * D)
        return milestone_id
    if kind == "refund from escrow":
        before_the_call()
        escrow.contracts.end_contract(escrow.reads.milestone(milestone_id).contract_id, ended_by="freelancer")
        return milestone_id
    [payment] = escrow.approvals.approve(milestone_id)
    if kind == "refund after release":
        before_the_call()
        escrow.refunds.refund_payment(payment.id, 100 * D)
        return payment.id
    clock.advance(timedelta(days=6))  # past the security period: the money is available
    escrow.orders.tick()
    before_the_call()
    return escrow.payouts.request_payout("fr_1", amount=500 * D, currency="USD").id


def assert_ended_where_it_should(kind: str, escrow: Escrow, subject: str) -> None:
    book = escrow.book
    if kind == "funding charge":
        milestone = escrow.reads.milestone(subject)
        assert (milestone.state, milestone.held) == (S.FUNDED, 1_000 * D)
    elif kind == "bonus charge":
        milestone = escrow.reads.milestone(subject)
        assert (milestone.state, milestone.held) == (S.RELEASED, 0)
        assert sorted((p.kind, p.gross) for p in escrow.reads.payments(subject)) == [
            ("bonus", 500 * D),
            ("release", 1_000 * D),
        ]
    elif kind == "payout":
        payout = escrow.payouts.payout(subject)
        assert payout.state is PayoutState.PAID and payout.gateway_reference
        assert escrow.payouts.balance("fr_1", "USD").in_transit == 0
    else:
        if kind == "refund from escrow":
            assert escrow.reads.milestone(subject).state is S.REFUNDED
        else:
            assert escrow.reads.payment(subject).refunded == 100 * D
        states = book.transaction(
            lambda uow: [r.state for r in uow.connection.execute(select(refund_orders))], read_only=True
        )
        assert states == ["succeeded"]
        assert book.balance(REFUNDS_IN_TRANSIT, "USD") == 0


def open_orders(book: Ledger) -> list[PaymentOrder]:
    return book.transaction(lambda uow: uow.orders.open_orders(), read_only=True)


def assert_moved_once_and_booked(kind: str, book: Ledger, provider: SimulatedGateway) -> None:
    """The provider moved each sum once, the ledger booked exactly that, and nothing is left open."""
    records = provider.records()
    assert Counter(r.kind for r in records) == RECORDS[kind], records
    assert all(r.status == "succeeded" for r in records), records
    assert len({r.idempotency_key for r in records}) == len(records)
    assert_books_agree(book, provider)


def assert_books_agree(book: Ledger, provider: SimulatedGateway) -> None:
    """No order left open; the provider's books match the ledger with nothing unbooked; the audit is clean."""
    assert open_orders(book) == []
    report = book.audit(provider=provider)
    [check] = [c for c in report.checks if c.name == "provider_matches_ledger"]
    assert check.ok and check.notes == [], check.to_dict()
    assert report.ok, report.to_json()


# --- 1. a fault on the provider call, at every step ---------------------------------------


@pytest.mark.parametrize("fault", [BEFORE, AFTER, TIMEOUT, TWICE])
@pytest.mark.parametrize("kind", KINDS)
def test_a_faulty_provider_call_moves_the_money_once_and_the_ledger_books_it(
    kind: str,
    fault: str,
    escrow: Escrow,
    faulty: FaultyGateway,
    provider: SimulatedGateway,
    clock: FixedClock,
) -> None:
    subject = start(kind, escrow, clock, lambda: faulty.script(METHOD[kind], fault))
    assert not faulty._faults[METHOD[kind]], "the fault was not used by the order's call"
    clock.advance(PAST_BACKOFF)
    escrow.orders.tick()  # re-sent with its key where the first answer did not arrive
    records = provider.records()
    clock.advance(PAST_BACKOFF)
    escrow.orders.tick()  # nothing is due any more: a second round changes nothing
    assert provider.records() == records
    assert_ended_where_it_should(kind, escrow, subject)
    assert_moved_once_and_booked(kind, escrow.book, provider)


@pytest.mark.parametrize("kind", KINDS)
def test_a_crash_after_the_call_before_the_answer_is_stored_is_sent_again_once_its_lease_expires(
    kind: str,
    escrow: Escrow,
    faulty: FaultyGateway,
    provider: SimulatedGateway,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ledger.escrow.dispatcher as dispatcher

    apply = dispatcher.apply_result
    crashed: list[str] = []

    def crash_once(uow: Any, order_id: str, result: GatewayResult, **options: Any) -> tuple[str, list[str]]:
        if not crashed and uow.orders.get(order_id).kind is KIND_OF_ORDER[kind]:
            crashed.append(order_id)
            raise Crash(f"the dispatcher died after the provider answered {result.status}")
        return apply(uow, order_id, result, **options)

    def arm() -> None:
        monkeypatch.setattr(dispatcher, "apply_result", crash_once)

    with pytest.raises(Crash):
        start(kind, escrow, clock, arm)
    assert len(crashed) == 1
    moved = provider.records()
    assert Counter(r.kind for r in moved) == RECORDS[kind]  # the provider acted; nothing is booked
    calls = len(faulty.sent)
    clock.advance(PAST_BACKOFF)
    escrow.orders.tick()  # the dead sender still holds the lease: nobody sends the order
    assert len(faulty.sent) == calls
    [order] = [o for o in open_orders(escrow.book) if o.id == crashed[0]]
    assert order.state is OrderState.SENT and order.lease_until is not None
    clock.advance(LEASE)
    escrow.orders.tick()  # the lease has expired: sent again with its key, the provider's first answer is booked
    assert provider.records() == moved
    assert_ended_where_it_should(kind, escrow, subject_of(kind, escrow, crashed[0]))
    assert_moved_once_and_booked(kind, escrow.book, provider)


KIND_OF_ORDER = {
    "funding charge": OrderKind.FUND,
    "bonus charge": OrderKind.BONUS,
    "refund from escrow": OrderKind.REFUND,
    "refund after release": OrderKind.REFUND,
    "payout": OrderKind.PAYOUT,
}


def subject_of(kind: str, escrow: Escrow, order_id: str) -> str:
    """The subject of a crashed request (it never returned it): from its order."""

    def read(uow: Any) -> str:
        order = uow.orders.get(order_id)
        if kind == "payout":
            return str(order.payout_id)
        if kind == "refund after release":
            return str(uow.escrow.refund_order(order.refund_order_id).payment_id)
        return str(order.milestone_id)

    return escrow.book.transaction(read, read_only=True)


def test_an_order_whose_answer_cannot_be_booked_does_not_hold_up_the_others(
    escrow: Escrow,
    faulty: FaultyGateway,
    provider: SimulatedGateway,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ledger.escrow.dispatcher as dispatcher

    milestones = [new_milestone(escrow) for _ in range(3)]
    faulty.script("charge", BEFORE, BEFORE, BEFORE)
    for milestone_id in milestones:
        escrow.funding.fund(milestone_id)  # the provider is down: three charges due in 30 s
    apply = dispatcher.apply_result
    failed: list[str] = []

    def fail_once(uow: Any, order_id: str, result: GatewayResult, **options: Any) -> tuple[str, list[str]]:
        if not failed:
            failed.append(order_id)
            raise RuntimeError("the booking hit a bug")
        return apply(uow, order_id, result, **options)

    monkeypatch.setattr(dispatcher, "apply_result", fail_once)
    clock.advance(PAST_BACKOFF)
    escrow.orders.tick()
    states = [escrow.reads.milestone(m).state for m in milestones]
    assert sorted(states) == sorted([S.FUNDED, S.FUNDED, S.FUNDING])  # the other two went on
    clock.advance(LEASE + timedelta(seconds=1))
    escrow.orders.tick()  # its lease expired: sent again with its key, the provider's first answer is booked
    assert [escrow.reads.milestone(m).state for m in milestones] == [S.FUNDED] * 3
    assert Counter(r.kind for r in provider.records()) == {"charge": 3}
    assert_books_agree(escrow.book, provider)


# --- 2. a lease taken over ---------------------------------------------------------------


def test_an_order_leased_by_a_crashed_sender_is_sent_by_no_one_before_its_lease_expires_and_once_after(
    book: Ledger, escrow: Escrow, faulty: FaultyGateway, provider: SimulatedGateway, clock: FixedClock
) -> None:
    milestone_id = new_milestone(escrow)
    escrow.funding.fund(milestone_id)
    faulty.script("refund", BEFORE)
    escrow.contracts.end_contract(
        escrow.reads.milestone(milestone_id).contract_id, ended_by="freelancer"
    )  # the refund waits 30 s
    clock.advance(PAST_BACKOFF)
    now = clock.now()
    [order] = book.transaction(
        lambda uow: uow.orders.claim(owner="crashed", now=now, lease_until=now + LEASE, ids=None, limit=10)
    )
    assert order.kind is OrderKind.REFUND
    # The crashed sender had called the provider; it died before the answer was stored.
    book.transaction(lambda uow: uow.orders.mark_sent(order.id, first_sent_at=now))
    provider.refund(
        amount=order.amount,
        currency=order.currency,
        idempotency_key=order.provider_key,
        charge_reference=order.target_reference,
    )
    moved, calls = provider.records(), len(faulty.sent)
    survivor = Dispatcher(book, faulty, owner="survivor")  # type: ignore[arg-type]
    clock.advance(LEASE - timedelta(seconds=1))
    assert survivor.run().sent == 0
    escrow.orders.tick()
    assert len(faulty.sent) == calls and escrow.reads.milestone(milestone_id).state is S.REFUNDED
    assert book.balance(REFUNDS_IN_TRANSIT, "USD") == 1_000 * D  # still owed: nothing booked
    clock.advance(timedelta(seconds=2))  # the lease has expired
    report = survivor.run()
    assert (report.sent, report.outcomes) == (1, {"succeeded": 1})
    assert faulty.sent[calls:] == [("refund", order.provider_key)]  # sent once more, with its key
    assert provider.records() == moved  # the provider's first answer: no second refund
    assert survivor.run().sent == 0
    assert_ended_where_it_should("refund from escrow", escrow, milestone_id)
    assert_moved_once_and_booked("refund from escrow", book, provider)
