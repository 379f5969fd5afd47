"""The laws of the service fee, checked by Hypothesis over the pure fee rule and through the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from hypothesis import given, note
from hypothesis import strategies as st

from ledger import FixedClock, Ledger
from ledger.fees.rule import cumulative_fee, fee_for_payment, fee_for_refund, round_minor
from ledger.fees.schedule import CLASSIC, FLAT_10, FeeSchedule
from tests.integration.test_fees import put_in_force

# One currency of each minor unit: 2 decimals (USD), 0 (JPY), 3 (BHD).
currencies = st.sampled_from(["USD", "JPY", "BHD"])
# Up to ten million major units: every tier, and then some.
amounts = st.integers(min_value=1, max_value=10**10)
lifetimes = st.integers(min_value=0, max_value=10**10)


def total_fee(currency: str, lifetime: int, schedule: FeeSchedule = CLASSIC) -> int:
    """R(F(L)): what the schedule charges on lifetime billings L in all."""
    return round_minor(cumulative_fee(schedule.tiers_for(currency), lifetime))


@dataclass
class Charge:
    """The model of a fee charge: its key, the schedule it was charged under, what is left to refund."""

    key: str
    schedule: str
    refundable: int


@given(currencies, lifetimes, amounts)
def test_tier_lines_add_up_to_the_fee(currency: str, lifetime: int, amount: int) -> None:
    """The per-tier lines of a payment sum to its fee and its amount."""
    breakdown = fee_for_payment(CLASSIC, currency, lifetime, amount)
    assert sum(line.fee for line in breakdown.lines) == breakdown.fee
    assert sum(line.amount for line in breakdown.lines) == amount
    assert breakdown.fee + breakdown.net == amount


@given(currencies, st.lists(amounts, min_size=1, max_size=20))
def test_fees_are_independent_of_how_billings_are_split(currency: str, payments: list[int]) -> None:
    """Path independence: the fees over any split of billings equal the fee of the sum, to the minor unit."""
    lifetime = 0
    charged = 0
    for amount in payments:
        breakdown = fee_for_payment(CLASSIC, currency, lifetime, amount)
        charged += breakdown.fee
        lifetime = breakdown.lifetime_after
    assert charged == total_fee(currency, sum(payments))
    assert charged == fee_for_payment(CLASSIC, currency, 0, sum(payments)).fee


@given(currencies, lifetimes, lifetimes)
def test_more_billing_never_lowers_the_cumulative_fee(currency: str, a: int, b: int) -> None:
    """Monotonicity: R(F(L)) never decreases as L grows, and no payment has a negative fee."""
    low, high = sorted((a, b))
    assert total_fee(currency, low) <= total_fee(currency, high)
    assert fee_for_payment(CLASSIC, currency, low, high - low + 1).fee >= 0


@given(currencies, lifetimes, amounts)
def test_a_payments_fee_is_between_5_and_20_percent(currency: str, lifetime: int, amount: int) -> None:
    """The fee of one payment lies between 5% and 20% of it, within one minor unit of rounding."""
    fee = fee_for_payment(CLASSIC, currency, lifetime, amount).fee
    assert Decimal(amount) * Decimal("0.05") - 1 <= fee <= Decimal(amount) * Decimal("0.20") + 1


@given(currencies, lifetimes, amounts)
def test_refunding_a_payment_restores_lifetime_and_returns_exactly_its_fee(
    currency: str, lifetime: int, amount: int
) -> None:
    """Refund symmetry: pay x, then refund x, and lifetime and fees are back where they were."""
    paid = fee_for_payment(CLASSIC, currency, lifetime, amount)
    refunded = fee_for_refund(CLASSIC, currency, paid.lifetime_after, amount)
    assert refunded.lifetime_after == lifetime
    assert refunded.fee == paid.fee
    assert sum(line.fee for line in refunded.lines) == refunded.fee


@given(currencies, st.lists(st.tuples(st.booleans(), amounts), min_size=1, max_size=20))
def test_fees_always_equal_the_schedule_on_net_lifetime_billings(currency: str, events: list[tuple[bool, int]]) -> None:
    """Whatever mix of payments and refunds, fees charged minus fees returned = R(F(net billings))."""
    lifetime = 0
    net_fees = 0
    for is_refund, amount in events:
        if is_refund:
            amount = min(amount, lifetime)
            if amount == 0:
                continue
            breakdown = fee_for_refund(CLASSIC, currency, lifetime, amount)
            net_fees -= breakdown.fee
        else:
            breakdown = fee_for_payment(CLASSIC, currency, lifetime, amount)
            net_fees += breakdown.fee
        lifetime = breakdown.lifetime_after
    assert net_fees == total_fee(currency, lifetime)


@given(
    currency=currencies,
    events=st.lists(st.tuples(st.booleans(), st.integers(min_value=1, max_value=10**9)), min_size=1, max_size=8),
)
def test_recorded_fees_follow_net_lifetime_billings_in_the_database(
    book: Ledger, currency: str, events: list[tuple[bool, int]]
) -> None:
    """Through the database, on SQLite and PostgreSQL: the recorded events of a pair chain
    unbroken, and fees charged minus fees returned equal R(F(net lifetime billings))."""
    freelancer = f"fr_{uuid.uuid4().hex[:12]}"  # a fresh pair per example; the database is shared
    pair = {"freelancer_id": freelancer, "client_id": "cl_1", "currency": currency}
    net_fees = 0
    charges: list[Charge] = []
    for n, (is_refund, amount) in enumerate(events):
        key = f"{freelancer}-{n}"
        if is_refund:
            refunded = next((c for c in reversed(charges) if c.refundable), None)
            if refunded is None:
                continue
            amount = min(amount, refunded.refundable)
            refunded.refundable -= amount
            net_fees -= book.refund_fee(idempotency_key=key, amount=amount, refunds=refunded.key, **pair).fee
        else:
            charges.append(Charge(key, "classic", amount))
            net_fees += book.charge_fee(idempotency_key=key, amount=amount, **pair).fee
    assert net_fees == total_fee(currency, book.lifetime_billings(freelancer, "cl_1", currency))
    report = book.audit()
    assert report.ok, report.to_json()


SCHEDULES = {s.name: s for s in (CLASSIC, FLAT_10)}
# One step: switch schedules, or charge / refund `amount` for pair 0 or 1; `pick` chooses
# which of the pair's charges with something left to refund a refund refunds.
steps = st.tuples(
    st.sampled_from(["charge", "charge", "refund", "switch"]),
    st.integers(min_value=0, max_value=1),
    st.integers(min_value=1, max_value=10**9),
    st.integers(min_value=0, max_value=20),
)


@given(currency=currencies, script=st.lists(steps, min_size=1, max_size=12))
def test_each_fee_follows_the_schedule_of_its_charge_across_schedule_changes(
    book: Ledger, clock: FixedClock, currency: str, script: list[tuple[str, int, int, int]]
) -> None:
    """Across switches between classic and flat-10, on SQLite and PostgreSQL: a charge of x
    at lifetime L pays R(F_s(L + x)) - R(F_s(L)) under the schedule s in force; a refund of r
    returns R(F_s(L)) - R(F_s(L - r)) under the schedule s of the charge it refunds, whatever
    is in force by then; every event names its s and the audit recomputes it under s; and a
    pair whose charges were all under one schedule s has fee revenue R(F_s(net lifetime billings))."""
    put_in_force(book, clock, "classic")  # the database is shared: each example starts from classic
    in_force = "classic"
    run = uuid.uuid4().hex[:12]
    pairs = [{"freelancer_id": f"fr_{run}_{i}", "client_id": "cl_1", "currency": currency} for i in (0, 1)]
    lifetime, revenue = [0, 0], [0, 0]
    charges: list[list[Charge]] = [[], []]
    for n, (action, i, amount, pick) in enumerate(script):
        key = f"{run}-{n}"
        if action == "switch":
            in_force = "flat-10" if in_force == "classic" else "classic"
            put_in_force(book, clock, in_force)
            note(f"{in_force} in force")
            continue
        before = lifetime[i]
        if action == "charge":
            charges[i].append(Charge(key, in_force, amount))
            schedule = SCHEDULES[in_force]
            event = book.charge_fee(idempotency_key=key, amount=amount, **pairs[i])
            lifetime[i] += amount
            expected = total_fee(currency, lifetime[i], schedule) - total_fee(currency, before, schedule)
            revenue[i] += event.fee
        else:
            refundable = [c for c in charges[i] if c.refundable]
            if not refundable:
                continue
            refunded = refundable[pick % len(refundable)]
            amount = min(amount, refunded.refundable)
            refunded.refundable -= amount
            schedule = SCHEDULES[refunded.schedule]
            event = book.refund_fee(idempotency_key=key, amount=amount, refunds=refunded.key, **pairs[i])
            lifetime[i] -= amount
            expected = total_fee(currency, before, schedule) - total_fee(currency, lifetime[i], schedule)
            revenue[i] -= event.fee
        note(f"pair {i}: {action} {amount} under {schedule.name}: lifetime {before} -> {lifetime[i]}, fee {event.fee}")
        assert event.breakdown.schedule == schedule.name
        assert event.fee == expected
    for i, pair in enumerate(pairs):
        assert book.lifetime_billings(pair["freelancer_id"], "cl_1", currency) == lifetime[i]
        charged_under = {c.schedule for c in charges[i]}
        if len(charged_under) == 1:
            [only] = charged_under
            assert revenue[i] == total_fee(currency, lifetime[i], SCHEDULES[only])
    report = book.audit()
    assert report.ok, report.to_json()
