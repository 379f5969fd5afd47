"""The service fee's arithmetic: the published examples and every boundary."""

from decimal import Decimal

import pytest

from ledger.errors import InvalidAmount
from ledger.fees.rule import client_processing_fee, fee_for_payment, fee_for_refund
from ledger.fees.schedule import CLASSIC, FLAT_10, FeeSchedule, FeeScheduleError, Tier

D = 100  # minor units per dollar


def fee(lifetime: int, amount: int, currency: str = "USD") -> int:
    return fee_for_payment(CLASSIC, currency, lifetime, amount).fee


def test_a_first_1000_job_pays_20_percent_on_500_and_10_percent_on_500() -> None:
    breakdown = fee_for_payment(CLASSIC, "USD", 0, 1000 * D)
    assert breakdown.fee == 150 * D
    assert breakdown.net == 850 * D
    assert [(line.amount, line.rate, line.fee) for line in breakdown.lines] == [
        (500 * D, Decimal("0.20"), 100 * D),
        (500 * D, Decimal("0.10"), 50 * D),
    ]


def test_a_first_600_job_nets_the_freelancer_490() -> None:
    breakdown = fee_for_payment(CLASSIC, "USD", 0, 600 * D)
    assert (breakdown.fee, breakdown.net) == (110 * D, 490 * D)
    assert breakdown.blended_rate == Decimal("0.1833")


def test_the_blended_rate_of_a_split_payment() -> None:
    # 200 split 100 at 20% and 100 at 10% shows 15%.
    assert fee_for_payment(CLASSIC, "USD", 400 * D, 200 * D).blended_rate == Decimal("0.1500")


def test_tier_crossing_payment_is_split_across_both_thresholds() -> None:
    breakdown = fee_for_payment(CLASSIC, "USD", 0, 20_000 * D)
    assert [line.amount for line in breakdown.lines] == [500 * D, 9_500 * D, 10_000 * D]
    assert [line.fee for line in breakdown.lines] == [100 * D, 950 * D, 500 * D]
    assert breakdown.fee == 1_550 * D


@pytest.mark.parametrize(
    ("lifetime", "amount", "expected"),
    [
        (0, 500 * D, 100 * D),  # exactly to the first threshold: all at 20%
        (500 * D - 1, 1, 0),  # the last cent below 500.00 at 20%: 0.2 cents rounds to 0
        (500 * D, 1, 0),  # the first cent above: 0.1 cents
        (500 * D, 10 * D, 1 * D),
        (0, 10_000 * D, 1_050 * D),  # exactly to the second threshold
        (10_000 * D, 100 * D, 5 * D),  # above it: 5%
        (10_000 * D - 100 * D, 200 * D, 15 * D),  # 100 at 10% + 100 at 5%
    ],
)
def test_boundaries(lifetime: int, amount: int, expected: int) -> None:
    assert fee(lifetime, amount) == expected


def test_cents_around_each_boundary_add_up_to_the_cumulative_fee() -> None:
    for threshold in (500 * D, 10_000 * D):
        before_and_after = fee(0, threshold - 1) + fee(threshold - 1, 1) + fee(threshold, 1)
        assert before_and_after == fee(0, threshold + 1)


def test_rounding_is_half_up_on_the_cumulative_fee() -> None:
    # 0.05 cents of fee at 5%: 1 cent billed gives F = 0.05 -> R = 0; 10 cents -> 0.5 -> 1.
    above = 10_000 * D
    first = fee(0, above)
    assert fee(above, 10) == 1  # F grows by 0.5 cent: rounds half up
    assert fee(above, 9) + fee(above + 9, 1) == 1  # path independent
    assert first == 1_050 * D


def test_a_refund_returns_the_most_recently_billed_tier_first() -> None:
    # Bill 500 at 20%, then 20,000; refunding 500 returns 25.00 of fee, not 100.00.
    lifetime = 500 * D + 20_000 * D
    refund = fee_for_refund(CLASSIC, "USD", lifetime, 500 * D)
    assert refund.fee == 25 * D
    assert refund.lifetime_after == 20_000 * D
    assert [(line.amount, line.rate) for line in refund.lines] == [(500 * D, Decimal("0.05"))]


def test_a_refund_can_bring_later_payments_back_into_a_higher_tier() -> None:
    refund = fee_for_refund(CLASSIC, "USD", 1_000 * D, 800 * D)
    assert refund.fee == 50 * D + 60 * D  # 500 back at 10%, 300 back at 20%
    assert fee(refund.lifetime_after, 100 * D) == 20 * D  # billing again starts at 20%


def test_a_refund_cannot_exceed_lifetime_billings() -> None:
    with pytest.raises(InvalidAmount, match="exceeds"):
        fee_for_refund(CLASSIC, "USD", 100, 101)


def test_zero_and_three_decimal_currencies_use_their_own_minor_units() -> None:
    assert fee(0, 100_000, "JPY") == 15_000 + 2_500  # 75,000 at 20% + 25,000 at 10%
    assert fee(0, 1_000, "JPY") == 200
    assert fee(0, 190_000, "BHD") == 38_000  # 190.000 BHD at 20% = 38.000


def test_a_currency_the_schedule_does_not_cover_is_a_clear_error() -> None:
    with pytest.raises(FeeScheduleError, match="does not cover CHF"):
        fee(0, 100, "CHF")


def test_the_flat_schedule_charges_ten_percent_of_everything() -> None:
    assert fee_for_payment(FLAT_10, "USD", 0, 1000 * D).fee == 100 * D
    assert fee_for_payment(FLAT_10, "USD", 50_000 * D, 1000 * D).fee == 100 * D


def test_the_classic_schedule_charges_clients_no_processing_fee() -> None:
    assert client_processing_fee(CLASSIC, 1000 * D) == 0
    with_processing = FeeSchedule("with-processing", CLASSIC.tiers, client_processing_rate=Decimal("0.05"))
    assert client_processing_fee(with_processing, 1000 * D) == 50 * D
    assert client_processing_fee(with_processing, 1) == 0


@pytest.mark.parametrize(
    "tiers",
    [
        (Tier(100, Decimal("0.2")),),  # last tier bounded
        (Tier(100, Decimal("0.2")), Tier(50, Decimal("0.1")), Tier(None, Decimal("0.05"))),  # not ascending
        (Tier(None, 0.1),),  # a float rate
        (Tier(None, Decimal("1.5")),),
    ],
)
def test_malformed_schedules_are_refused(tiers: tuple[Tier, ...]) -> None:
    with pytest.raises(FeeScheduleError):
        FeeSchedule("bad", {"USD": tiers})


def test_schedules_round_trip_through_their_stored_form() -> None:
    assert FeeSchedule.from_data(CLASSIC.to_data()) == CLASSIC
