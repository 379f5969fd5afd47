"""Fee charges and refunds recorded against lifetime billings, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from ledger import FixedClock, Ledger
from ledger.errors import IdempotencyConflict, InvalidRequest
from ledger.fees.billing import RefundExceedsBillings, ScheduleNotInFuture
from ledger.fees.rule import cumulative_fee, round_minor
from ledger.fees.schedule import CLASSIC, FeeScheduleError
from tests.conftest import CONCURRENCY_REPORT

D = 100


def charge(book: Ledger, key: str, amount: int, *, freelancer: str = "fr_1", client: str = "cl_1", **extra: object):  # type: ignore[no-untyped-def]
    return book.charge_fee(
        idempotency_key=key, freelancer_id=freelancer, client_id=client, amount=amount, currency="USD", **extra
    )


def test_fees_follow_lifetime_billings_across_payments(book: Ledger) -> None:
    first = charge(book, "p1", 400 * D)
    second = charge(book, "p2", 200 * D)  # crosses 500.00: 100 at 20% + 100 at 10%
    assert (first.fee, second.fee) == (80 * D, 30 * D)
    assert (second.breakdown.lifetime_before, second.breakdown.lifetime_after) == (400 * D, 600 * D)
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 600 * D
    assert second.schedule_id == book.fee_schedules()[0].id


def test_lifetime_billings_are_per_freelancer_client_and_currency(book: Ledger) -> None:
    charge(book, "p1", 600 * D)
    assert charge(book, "p2", 100 * D, client="cl_2").fee == 20 * D  # a new client starts at 20%
    assert charge(book, "p3", 100 * D, freelancer="fr_2").fee == 20 * D
    eur = book.charge_fee(idempotency_key="p4", freelancer_id="fr_1", client_id="cl_1", amount=100 * D, currency="EUR")
    assert eur.fee == 20 * D
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 600 * D


def test_a_quote_previews_without_charging(book: Ledger) -> None:
    charge(book, "p1", 400 * D)
    quote = book.quote_fee(freelancer_id="fr_1", client_id="cl_1", amount=200 * D, currency="USD")
    assert quote.fee == 30 * D and quote.net == 170 * D
    assert [line.amount for line in quote.lines] == [100 * D, 100 * D]
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 400 * D
    assert charge(book, "p2", 200 * D).fee == quote.fee


def test_a_replayed_charge_returns_the_original_and_charges_nothing(book: Ledger) -> None:
    original = charge(book, "p1", 700 * D)
    assert charge(book, "p1", 700 * D) == original
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 700 * D
    with pytest.raises(IdempotencyConflict):
        charge(book, "p1", 701 * D)
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 700 * D


def test_a_refund_returns_fee_by_the_refund_rule_and_lowers_billings(book: Ledger) -> None:
    charge(book, "p1", 500 * D)
    charge(book, "p2", 20_000 * D)
    refund = book.refund_fee(
        idempotency_key="r1", freelancer_id="fr_1", client_id="cl_1", amount=500 * D, currency="USD"
    )
    assert refund.kind == "refund"
    assert refund.fee == 25 * D
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 20_000 * D
    with pytest.raises(RefundExceedsBillings):
        book.refund_fee(idempotency_key="r2", freelancer_id="fr_1", client_id="cl_1", amount=20_001 * D, currency="USD")
    assert book.audit().ok


def test_a_schedule_change_applies_from_its_effective_date_and_not_before(book: Ledger, clock: FixedClock) -> None:
    switch = clock.now() + timedelta(days=30)
    book.activate_fee_schedule("flat-10", switch)
    before = charge(book, "p1", 1_000 * D, effective_at=switch - timedelta(microseconds=1))
    at_switch = charge(book, "p2", 1_000 * D, effective_at=switch)
    assert before.fee == 150 * D  # classic
    assert at_switch.fee == 100 * D  # flat 10%
    assert at_switch.breakdown.schedule == "flat-10" and before.breakdown.schedule == "classic"
    clock.advance(timedelta(days=31))
    assert charge(book, "p3", 1_000 * D).fee == 100 * D  # now defaults to flat-10
    assert book.audit().ok


def test_schedules_cannot_be_put_in_force_in_the_past_or_by_an_unknown_name(book: Ledger, clock: FixedClock) -> None:
    with pytest.raises(ScheduleNotInFuture):
        book.activate_fee_schedule("flat-10", clock.now())
    with pytest.raises(FeeScheduleError, match="no fee schedule named"):
        book.activate_fee_schedule("flat-99", clock.now() + timedelta(days=1))
    assert [s.schedule.name for s in book.fee_schedules()] == ["classic"]


@pytest.mark.parametrize(
    ("field", "value"), [("amount", 0), ("amount", -5), ("freelancer_id", ""), ("currency", "CHF"), ("currency", "ZZZ")]
)
def test_bad_fee_requests_change_nothing(book: Ledger, field: str, value: object) -> None:
    request: dict[str, object] = {
        "idempotency_key": "k",
        "freelancer_id": "fr_1",
        "client_id": "cl_1",
        "amount": 100,
        "currency": "USD",
    }
    request[field] = value
    with pytest.raises(InvalidRequest):
        book.charge_fee(**request)
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 0


@pytest.mark.postgresql_only
def test_concurrent_payments_for_one_pair_never_read_the_same_lifetime(book: Ledger) -> None:
    threads, per_thread = 8, 10
    barrier = threading.Barrier(threads)

    def pay(thread: int) -> list[int]:
        barrier.wait()
        return [charge(book, f"t{thread}-{n}", 73 * D + n).breakdown.lifetime_before for n in range(per_thread)]

    with ThreadPoolExecutor(threads) as pool:
        befores = [b for result in pool.map(pay, range(threads)) for b in result]
    assert len(set(befores)) == threads * per_thread, "two payments read the same lifetime total"
    total = sum(73 * D + n for n in range(per_thread)) * threads
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == total
    report = book.audit()
    assert report.ok, report.to_json()
    events_fee = sum(
        e.fee for e in book.transaction(lambda uow: uow.fees.events_of_pair("fr_1", "cl_1", "USD"), read_only=True)
    )
    assert events_fee == round_minor(cumulative_fee(CLASSIC.tiers["USD"], total))
    CONCURRENCY_REPORT.append(f"fees: {threads} threads x {per_thread} payments for one pair, chain unbroken")
