"""The fee rule: exact, path-independent arithmetic on lifetime billings.

With F(L) the exact (unrounded) cumulative fee a schedule charges on lifetime
billings L, and R rounding to the minor unit half up:

    fee of a payment x at lifetime L   = R(F(L + x)) - R(F(L))
    fee returned by a refund r at L    = R(F(L)) - R(F(L - r))
    fee of one tier segment [a, b]     = R(F(b)) - R(F(a))

so, under one schedule, the fees of any split of billings into payments sum to
R(F(total)), the tier lines of a payment add up to its fee, and a refund takes back
the most recently billed tier first (fees always equal the schedule applied to net
lifetime billings). Everything here is pure: integers of minor units and Decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from ledger.errors import InvalidAmount
from ledger.fees.schedule import FeeSchedule, Tier
from ledger.money import MAX_MINOR_UNITS

BLENDED_RATE_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class FeeLine:
    """One tier's part of a payment (or refund).

    Attributes:
        amount: the part of the payment billed in this tier (minor units).
        rate: the tier's rate.
        fee: R(F(b)) - R(F(a)) for the segment [a, b] (minor units).
    """

    amount: int
    rate: Decimal
    fee: int


@dataclass(frozen=True)
class FeeBreakdown:
    """The fee on a payment, or the fee returned by a refund.

    Attributes:
        schedule: the schedule's name.
        currency: ISO code.
        amount: the payment (or refund), minor units.
        fee: the fee charged (or returned), minor units.
        net: amount - fee: what the freelancer receives (or gives back).
        lifetime_before, lifetime_after: lifetime billings around the event.
        lines: per tier touched, in billing order; their fees add up to `fee`.
    """

    schedule: str
    currency: str
    amount: int
    fee: int
    net: int
    lifetime_before: int
    lifetime_after: int
    lines: tuple[FeeLine, ...]

    @property
    def blended_rate(self) -> Decimal:
        """fee / amount as a fraction, rounded half up to 4 places (0.1500 shows as 15.00%)."""
        if self.amount == 0:
            return Decimal("0.0000")
        return (Decimal(self.fee) / Decimal(self.amount)).quantize(BLENDED_RATE_PLACES, rounding=ROUND_HALF_UP)


def round_minor(exact: Decimal) -> int:
    """R: to the nearest minor unit, halves away from zero (amounts here are >= 0)."""
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def cumulative_fee(tiers: tuple[Tier, ...], lifetime: int) -> Decimal:
    """F(L): the exact fee the tiers charge on lifetime billings L (minor units, unrounded)."""
    total = Decimal(0)
    lower = 0
    for tier in tiers:
        upper = lifetime if tier.up_to is None else min(lifetime, tier.up_to)
        if upper > lower:
            total += tier.rate * (upper - lower)
        if tier.up_to is None or lifetime <= tier.up_to:
            break
        lower = tier.up_to
    return total


def _segments(tiers: tuple[Tier, ...], start: int, end: int) -> list[tuple[int, int, Decimal]]:
    """Split [start, end] at the tier thresholds: (a, b, rate) in ascending order."""
    segments = []
    lower = 0
    for tier in tiers:
        upper = tier.up_to
        a = max(start, lower)
        b = end if upper is None else min(end, upper)
        if b > a:
            segments.append((a, b, tier.rate))
        if upper is None or end <= upper:
            break
        lower = upper
    return segments


def _require_amount(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MINOR_UNITS:
        raise InvalidAmount(f"{what} must be a non-negative integer of minor units, not {value!r}", field=what)


def fee_for_payment(schedule: FeeSchedule, currency: str, lifetime: int, amount: int) -> FeeBreakdown:
    """The fee on a payment of `amount` when the pair has billed `lifetime` before it."""
    _require_amount(lifetime, "lifetime")
    _require_amount(amount, "amount")
    tiers = schedule.tiers_for(currency)
    after = lifetime + amount
    fee = round_minor(cumulative_fee(tiers, after)) - round_minor(cumulative_fee(tiers, lifetime))
    lines = tuple(
        FeeLine(b - a, rate, round_minor(cumulative_fee(tiers, b)) - round_minor(cumulative_fee(tiers, a)))
        for a, b, rate in _segments(tiers, lifetime, after)
    )
    return FeeBreakdown(schedule.name, currency, amount, fee, amount - fee, lifetime, after, lines)


def fee_for_refund(schedule: FeeSchedule, currency: str, lifetime: int, amount: int) -> FeeBreakdown:
    """The fee returned when `amount` of lifetime billings `lifetime` is refunded.

    The refund takes back the most recently billed tier first; the lines are listed
    from the highest segment down, as the refund unwinds the billings."""
    _require_amount(lifetime, "lifetime")
    _require_amount(amount, "amount")
    if amount > lifetime:
        raise InvalidAmount(
            f"a refund of {amount} exceeds the lifetime billings of {lifetime}", amount=amount, lifetime=lifetime
        )
    tiers = schedule.tiers_for(currency)
    after = lifetime - amount
    fee = round_minor(cumulative_fee(tiers, lifetime)) - round_minor(cumulative_fee(tiers, after))
    lines = tuple(
        FeeLine(b - a, rate, round_minor(cumulative_fee(tiers, b)) - round_minor(cumulative_fee(tiers, a)))
        for a, b, rate in reversed(_segments(tiers, after, lifetime))
    )
    return FeeBreakdown(schedule.name, currency, amount, fee, amount - fee, lifetime, after, lines)


def client_processing_fee(schedule: FeeSchedule, amount: int) -> int:
    """The fee charged to the client on a funding of `amount` (never lifetime billings)."""
    _require_amount(amount, "amount")
    return round_minor(schedule.client_processing_rate * amount)
