"""The contract of the order store (payment orders, request keys, heartbeats), on every backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.clock import FixedClock
from ledger.errors import IdempotencyConflict
from ledger.escrow.orders import NewOrder, OrderKind, OrderState, UnknownOrder
from ledger.ports.unit_of_work import Transactions, UnitOfWork


def new(
    key: str, kind: OrderKind = OrderKind.FUND, *, milestone_id: str | None = None, payout_id: str | None = None
) -> NewOrder:
    return NewOrder(
        kind=kind,
        amount=1_000,
        currency="USD",
        provider_key=key,
        id=f"ord_{key}",
        milestone_id=milestone_id,
        payout_id=payout_id,
    )


def add(db: Transactions, *orders: NewOrder, origin: str | None = None) -> list[str]:
    def work(uow: UnitOfWork) -> list[str]:
        uow.origin = origin
        for order in orders:
            uow.orders.add(order)
        return list(uow.orders.written)

    return db.transaction(work)


def test_a_new_order_is_pending_due_now_and_carries_its_origin(db: Transactions, clock: FixedClock) -> None:
    assert add(db, new("a", milestone_id="ms_1"), new("b"), origin="req_1") == ["ord_a", "ord_b"]
    order = db.transaction(lambda uow: uow.orders.get("ord_a", lock=True))
    assert (order.state, order.next_attempt_at, order.origin, order.attempts, order.milestone_id) == (
        OrderState.PENDING,
        clock.now(),
        "req_1",
        0,
        "ms_1",
    )
    with pytest.raises(UnknownOrder):
        db.transaction(lambda uow: uow.orders.get("ord_none"))


def test_a_provider_key_belongs_to_one_order(db: Transactions, duplicate: type[Exception]) -> None:
    add(db, new("a"))
    with pytest.raises(duplicate):
        add(db, NewOrder(kind=OrderKind.FUND, amount=1, currency="USD", provider_key="a", id="ord_other"))
    found = db.transaction(lambda uow: uow.orders.by_provider_key("a"))
    assert found is not None and found.id == "ord_a"


def test_a_due_order_is_leased_to_one_dispatcher_until_its_lease_ends(db: Transactions, clock: FixedClock) -> None:
    add(db, new("a"))
    now = clock.now()
    lease = now + timedelta(minutes=5)

    def claim(owner: str, at: timedelta = timedelta()) -> list[str]:
        return [
            o.id
            for o in db.transaction(
                lambda uow: uow.orders.claim(owner=owner, now=now + at, lease_until=lease + at, ids=None, limit=10)
            )
        ]

    assert claim("w1") == ["ord_a"]
    assert claim("w2") == []
    assert db.transaction(
        lambda uow: (uow.orders.holds_lease("ord_a", "w1"), uow.orders.holds_lease("ord_a", "w2"))
    ) == (
        True,
        False,
    )
    assert claim("w2", timedelta(minutes=6)) == ["ord_a"]  # the first sender crashed: taken over
    assert db.transaction(lambda uow: uow.orders.holds_lease("ord_a", "w2")) is True


def test_claiming_named_orders_takes_only_those_due(db: Transactions, clock: FixedClock) -> None:
    add(db, new("a"), new("b"), new("c"))
    now = clock.now()

    def claim(ids: list[str] | None, limit: int = 10) -> list[str]:
        return [
            o.id
            for o in db.transaction(
                lambda uow: uow.orders.claim(
                    owner="w", now=now, lease_until=now + timedelta(minutes=5), ids=ids, limit=limit
                )
            )
        ]

    assert claim([]) == []
    assert claim(["ord_b", "ord_x"]) == ["ord_b"]
    assert claim(None, limit=1) == ["ord_a"]


def test_an_acknowledged_order_is_due_again_at_its_retry_time(db: Transactions, clock: FixedClock) -> None:
    add(db, new("a"))
    now = clock.now()
    retry = now + timedelta(minutes=10)

    def work(uow: UnitOfWork) -> None:
        uow.orders.claim(owner="w", now=now, lease_until=now + timedelta(minutes=5), ids=None, limit=10)
        uow.orders.mark_sent("ord_a", first_sent_at=now)
        uow.orders.acknowledged("ord_a", "re_1", retry_at=retry)

    db.transaction(work)
    order = db.transaction(lambda uow: uow.orders.get("ord_a"))
    assert (order.state, order.provider_reference, order.next_attempt_at, order.lease_until, order.first_sent_at) == (
        OrderState.SENT,
        "re_1",
        retry,
        None,
        now,
    )
    assert db.transaction(lambda uow: uow.orders.holds_lease("ord_a", "w")) is False
    claim = db.transaction(lambda uow: uow.orders.claim(owner="w", now=now, lease_until=retry, ids=None, limit=10))
    assert claim == []
    assert db.transaction(lambda uow: uow.orders.by_provider_reference("re_1")) == order


def test_a_retry_later_counts_the_attempt_and_keeps_the_reason(db: Transactions, clock: FixedClock) -> None:
    add(db, new("a"))
    later = clock.now() + timedelta(seconds=30)
    db.transaction(lambda uow: uow.orders.retry_later("ord_a", attempts=1, at=later, reason="x" * 600))
    order = db.transaction(lambda uow: uow.orders.get("ord_a"))
    assert (order.attempts, order.next_attempt_at, order.failure_reason) == (1, later, "x" * 500)
    db.transaction(lambda uow: uow.orders.reopen("ord_a", at=clock.now()))
    reopened = db.transaction(lambda uow: uow.orders.get("ord_a"))
    assert (reopened.state, reopened.attempts, reopened.failure_reason) == (OrderState.PENDING, 0, None)


def test_settling_an_order_finishes_it_once(db: Transactions, clock: FixedClock) -> None:
    add(db, new("a", OrderKind.PAYOUT, payout_id="po_1"))
    order = db.transaction(lambda uow: uow.orders.of_payout("po_1"))
    assert order is not None
    db.transaction(lambda uow: uow.orders.settle(order, succeeded=False, reference=None, reason=None))
    failed = db.transaction(lambda uow: uow.orders.get("ord_a"))
    assert (failed.state, failed.failure_reason, failed.completed_at) == (OrderState.FAILED, "failed", clock.now())
    db.transaction(lambda uow: uow.orders.settle(failed, succeeded=True, reference="tr_1", reason=None))
    assert db.transaction(lambda uow: uow.orders.get("ord_a").state) is OrderState.FAILED
    assert db.transaction(lambda uow: uow.orders.of_payout("po_none")) is None


def test_notes_and_resolutions_add_to_an_orders_details(db: Transactions) -> None:
    add(db, new("a"))
    db.transaction(lambda uow: uow.orders.wait_for_payer("ord_a", "pi_1", client_secret="secret"))
    db.transaction(lambda uow: uow.orders.note("ord_a", payments="pay_1"))
    db.transaction(lambda uow: uow.orders.mark_resolved("ord_a", actor="ops", note="checked"))
    order = db.transaction(lambda uow: uow.orders.get("ord_a"))
    assert order.state is OrderState.REQUIRES_ACTION and order.resolved_by == "ops"
    assert dict(order.details) == {"client_secret": "secret", "payments": "pay_1", "resolution": "checked"}


def test_orders_are_listed_by_state_kind_and_age(db: Transactions, clock: FixedClock) -> None:
    add(db, new("a", milestone_id="ms_1"), new("b", OrderKind.BONUS, milestone_id="ms_1"), new("c", OrderKind.REFUND))
    db.transaction(lambda uow: uow.orders.finish("ord_c", OrderState.SUCCEEDED, reference="re_1"))
    db.transaction(lambda uow: uow.orders.wait_for_payer("ord_b", "pi_b"))
    assert [o.id for o in db.transaction(lambda uow: uow.orders.open_orders())] == ["ord_a", "ord_b"]
    listed = db.transaction(lambda uow: uow.orders.listing(states=[OrderState.SUCCEEDED]))
    assert [(o.id, o.provider_reference) for o in listed] == [("ord_c", "re_1")]
    assert [o.id for o in db.transaction(lambda uow: uow.orders.listing(limit=2))] == ["ord_a", "ord_b"]
    bonus = db.transaction(lambda uow: uow.orders.of_milestone("ms_1", kinds=[OrderKind.BONUS]))
    assert [o.id for o in bonus] == ["ord_b"]
    assert db.transaction(lambda uow: uow.orders.waiting_for_payer(clock.now())) == []
    waiting = db.transaction(lambda uow: uow.orders.waiting_for_payer(clock.now() + timedelta(seconds=1)))
    assert [o.id for o in waiting] == ["ord_b"]


def test_a_request_key_is_bound_to_its_first_request(db: Transactions) -> None:
    assert db.transaction(lambda uow: uow.orders.bind_request_key("rk", "approve", {"milestone": "ms_1"})) is None
    db.transaction(lambda uow: uow.orders.store_result("rk", {"payments": ["pay_1"], "n": 1}))
    again = db.transaction(lambda uow: uow.orders.bind_request_key("rk", "approve", {"milestone": "ms_1"}))
    assert again == {"payments": ["pay_1"], "n": 1}
    with pytest.raises(IdempotencyConflict):
        db.transaction(lambda uow: uow.orders.bind_request_key("rk", "approve", {"milestone": "ms_2"}))


def test_heartbeats_are_kept_per_worker_most_recent_first(db: Transactions, clock: FixedClock) -> None:
    start = clock.now()
    db.transaction(lambda uow: uow.orders.heartbeat("dispatcher", started_at=start, summary="sent 1"))
    clock.advance(timedelta(seconds=10))
    db.transaction(lambda uow: uow.orders.heartbeat("ticker", started_at=start, summary="fired 0"))
    clock.advance(timedelta(seconds=10))
    db.transaction(lambda uow: uow.orders.heartbeat("dispatcher", started_at=start, summary="sent 2"))
    assert db.transaction(lambda uow: uow.orders.heartbeats()) == [
        ("dispatcher", start + timedelta(seconds=20), "sent 2"),
        ("ticker", start + timedelta(seconds=10), "fired 0"),
    ]


def test_a_heartbeat_keeps_the_first_500_characters_of_its_summary(db: Transactions) -> None:
    now = db.clock.now()
    db.transaction(lambda uow: uow.orders.heartbeat("dispatcher", started_at=now, summary="s" * 600))
    assert db.transaction(lambda uow: uow.orders.heartbeats()) == [("dispatcher", now, "s" * 500)]
