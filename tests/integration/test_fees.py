"""Fee charges and refunds recorded against lifetime billings, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from ledger import FixedClock, Ledger
from ledger.errors import IdempotencyConflict, InvalidRequest
from ledger.escrow.chart import SERVICE_FEES
from ledger.escrow.service import Escrow
from ledger.fees.model import ACTIVATION_LEAD, RefundExceedsBillings, ScheduleNotInFuture, UnknownCharge
from ledger.fees.rule import cumulative_fee, round_minor
from ledger.fees.schedule import CLASSIC, FeeScheduleError
from ledger.gateway.simulated import SimulatedGateway
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
        idempotency_key="r1", freelancer_id="fr_1", client_id="cl_1", amount=500 * D, currency="USD", refunds="p1"
    )
    assert refund.kind == "refund"
    assert refund.fee == 25 * D
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 20_000 * D
    with pytest.raises(RefundExceedsBillings):
        book.refund_fee(
            idempotency_key="r2",
            freelancer_id="fr_1",
            client_id="cl_1",
            amount=20_001 * D,
            currency="USD",
            refunds="p2",
        )
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


def test_a_schedule_activated_after_fees_were_priced_rules_from_its_start(book: Ledger, clock: FixedClock) -> None:
    assert charge(book, "p1", 100 * D).breakdown.schedule == "classic"  # the schedules are read and kept
    with pytest.raises(ScheduleNotInFuture):
        book.activate_fee_schedule("flat-10", clock.now() + ACTIVATION_LEAD - timedelta(seconds=1))
    book.activate_fee_schedule("flat-10", clock.now() + ACTIVATION_LEAD)
    assert charge(book, "p2", 100 * D).breakdown.schedule == "classic"
    clock.advance(ACTIVATION_LEAD)
    assert charge(book, "p3", 100 * D).breakdown.schedule == "flat-10"


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


# --- refunds across schedules (docs/architecture.md, "The service fee") ---------------------------


def put_in_force(book: Ledger, clock: FixedClock, name: str) -> None:
    """Put `name` in force from a moment ahead (the only way a schedule can start), then reach it."""
    book.activate_fee_schedule(name, clock.now() + timedelta(days=1))
    clock.advance(timedelta(days=1))


def released(book: Ledger, amount: int) -> str:
    """Fund and approve a milestone of `amount` between fr_1 and cl_1; the payment's id."""
    escrow = Escrow(book, SimulatedGateway())
    contract = escrow.contracts.open_contract(
        client_id="cl_1", freelancer_id="fr_1", currency="USD", title="Logo design"
    )
    milestone = escrow.contracts.add_milestone(contract.id, title="First draft", amount=amount)
    escrow.funding.fund(milestone.id)
    [payment] = escrow.approvals.approve(milestone.id)
    return payment.id


def test_a_refund_returns_the_fee_of_the_schedule_its_payment_was_charged_under(
    book: Ledger, clock: FixedClock
) -> None:
    put_in_force(book, clock, "flat-10")
    payment_id = released(book, 500 * D)
    assert book.balance(SERVICE_FEES, "USD") == 50 * D  # 10% flat
    put_in_force(book, clock, "classic")  # classic would have charged 100.00 on a first 500.00
    refund = Escrow(book, SimulatedGateway()).refunds.refund_payment(payment_id, 500 * D)
    assert refund.fee_returned == 50 * D
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 0
    assert book.balance(SERVICE_FEES, "USD") == 0  # no revenue on no net billings
    [charged, returned] = book.transaction(lambda uow: uow.fees.events_of_pair("fr_1", "cl_1", "USD"), read_only=True)
    assert returned.schedule_id == charged.schedule_id and returned.breakdown.schedule == "flat-10"
    report = book.audit()
    assert report.ok, report.to_json()


def test_a_refund_after_a_switch_to_a_cheaper_schedule_returns_the_whole_fee_charged(
    book: Ledger, clock: FixedClock
) -> None:
    payment_id = released(book, 500 * D)  # classic: 20% of a first 500.00
    assert book.balance(SERVICE_FEES, "USD") == 100 * D
    put_in_force(book, clock, "flat-10")
    refund = Escrow(book, SimulatedGateway()).refunds.refund_payment(payment_id, 500 * D)
    assert refund.fee_returned == 100 * D
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 0
    assert book.balance(SERVICE_FEES, "USD") == 0
    report = book.audit()
    assert report.ok, report.to_json()


def test_a_fee_refund_names_the_charge_it_refunds_and_uses_its_schedule(book: Ledger, clock: FixedClock) -> None:
    charge(book, "p1", 300 * D)  # classic: 60.00
    put_in_force(book, clock, "flat-10")
    charge(book, "p2", 300 * D)  # flat-10: 30.00
    put_in_force(book, clock, "classic")
    refund = {"freelancer_id": "fr_1", "client_id": "cl_1", "currency": "USD"}
    # From lifetime 600.00, flat-10 returns 30.00 (classic would return R(F(600)) - R(F(300)) = 50.00).
    assert book.refund_fee(idempotency_key="r1", amount=300 * D, refunds="p2", **refund).fee == 30 * D
    assert book.refund_fee(idempotency_key="r2", amount=200 * D, refunds="p1", **refund).fee == 40 * D
    assert book.refund_fee(idempotency_key="r2", amount=200 * D, refunds="p1", **refund).fee == 40 * D  # a replay
    with pytest.raises(IdempotencyConflict):
        book.refund_fee(idempotency_key="r2", amount=200 * D, refunds="p2", **refund)
    events = book.transaction(lambda uow: uow.fees.events_of_pair("fr_1", "cl_1", "USD"), read_only=True)
    assert [e.breakdown.schedule for e in events] == ["classic", "flat-10", "flat-10", "classic"]
    assert sum(e.fee if e.kind == "charge" else -e.fee for e in events) == 20 * D  # R(F(100.00)), classic
    report = book.audit()
    assert report.ok, report.to_json()


@pytest.mark.parametrize("refunds", ["nothing", "r1", "other-pair"])
def test_a_fee_refund_of_no_charge_of_the_pair_is_refused(book: Ledger, refunds: str) -> None:
    charge(book, "p1", 1_000 * D)
    charge(book, "other-pair", 1_000 * D, client="cl_2")
    request = {"freelancer_id": "fr_1", "client_id": "cl_1", "currency": "USD", "amount": 100 * D}
    book.refund_fee(idempotency_key="r1", refunds="p1", **request)
    with pytest.raises(UnknownCharge):
        book.refund_fee(idempotency_key="r2", refunds=refunds, **request)
    assert book.lifetime_billings("fr_1", "cl_1", "USD") == 900 * D
