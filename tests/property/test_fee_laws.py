"""The laws of the service fee, checked by Hypothesis over the pure fee rule."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from ledger import Ledger
from ledger.fees import CLASSIC, FeeSchedule, fee_for_payment, fee_for_refund
from ledger.fees.rule import cumulative_fee, round_minor

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
