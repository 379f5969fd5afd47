"""The fee engine through the ledger's fee methods, on the in-memory ledger."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.clock import FixedClock
from ledger.errors import IdempotencyConflict
from ledger.fees.model import ACTIVATION_LEAD, FeeEvent, RefundExceedsBillings, ScheduleNotInFuture, UnknownCharge
from ledger.service import Ledger

D = 100
PAIR = {"freelancer_id": "fr_1", "client_id": "cl_1", "currency": "USD"}


def charge(book: Ledger, key: str, amount: int) -> FeeEvent:
    return book.charge_fee(idempotency_key=key, amount=amount, **PAIR)


def refund(book: Ledger, key: str, amount: int, of: str) -> FeeEvent:
    return book.refund_fee(idempotency_key=key, amount=amount, refunds=of, **PAIR)


def put_in_force(book: Ledger, clock: FixedClock, name: str) -> None:
    book.activate_fee_schedule(name, clock.now() + ACTIVATION_LEAD)
    clock.advance(ACTIVATION_LEAD + timedelta(seconds=1))


def test_a_payment_crossing_a_tier_is_split_between_the_tiers(book: Ledger) -> None:
    event = charge(book, "p1", 600 * D)  # 500.00 at 20% + 100.00 at 10%
    assert event.fee == 110 * D
    assert [(line.amount, line.fee) for line in event.breakdown.lines] == [(500 * D, 100 * D), (100 * D, 10 * D)]


def test_lifetime_billings_chain_from_one_charge_to_the_next(book: Ledger) -> None:
    first, second = charge(book, "p1", 400 * D), charge(book, "p2", 200 * D)
    assert (first.fee, second.fee) == (80 * D, 30 * D)
    assert second.breakdown.lifetime_before == first.breakdown.lifetime_after == 400 * D
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 600 * D
    assert book.lifetime_billings("fr_1", "cl_2", "USD") == 0
    assert book.audit().ok


def test_a_quote_charges_nothing(book: Ledger) -> None:
    charge(book, "p1", 500 * D)
    quote = book.quote_fee(freelancer_id="fr_1", client_id="cl_1", amount=100 * D, currency="USD")
    assert quote.fee == 10 * D and book.lifetime_billings("fr_1", "cl_1", "USD") == 500 * D


def test_a_replayed_charge_returns_the_original_and_a_changed_one_conflicts(book: Ledger) -> None:
    first = charge(book, "p1", 400 * D)
    assert charge(book, "p1", 400 * D) == first
    with pytest.raises(IdempotencyConflict):
        charge(book, "p1", 401 * D)
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 400 * D


def test_a_refund_returns_the_most_recent_tier_first(book: Ledger) -> None:
    charge(book, "p1", 600 * D)
    returned = refund(book, "r1", 200 * D, "p1")  # 100.00 at 10%, then 100.00 at 20%
    assert returned.fee == 30 * D and book.lifetime_billings("fr_1", "cl_1", "USD") == 400 * D
    with pytest.raises(RefundExceedsBillings):
        refund(book, "r2", 401 * D, "p1")


def test_a_refund_uses_the_schedule_its_charge_was_made_under(book: Ledger, clock: FixedClock) -> None:
    charge(book, "p1", 300 * D)  # classic: 60.00
    put_in_force(book, clock, "flat-10")
    charge(book, "p2", 300 * D)  # flat-10: 30.00
    put_in_force(book, clock, "classic")
    assert refund(book, "r1", 300 * D, "p2").fee == 30 * D
    assert refund(book, "r2", 200 * D, "p1").fee == 40 * D
    assert [s.schedule.name for s in book.fee_schedules()] == ["classic", "flat-10", "classic"]
    assert book.audit().ok


def test_a_refund_must_name_a_charge_of_the_pair(book: Ledger) -> None:
    charge(book, "p1", 100 * D)
    with pytest.raises(UnknownCharge):
        refund(book, "r1", 10 * D, "p-unknown")
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 100 * D


def test_a_schedule_takes_effect_only_in_the_future(book: Ledger, clock: FixedClock) -> None:
    with pytest.raises(ScheduleNotInFuture):
        book.activate_fee_schedule("flat-10", clock.now())
    put_in_force(book, clock, "flat-10")
    assert charge(book, "p1", 600 * D).fee == 60 * D
