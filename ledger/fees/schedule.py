"""Fee schedules: tiers of lifetime billings and their rates, as data with an effective date.

A schedule names, per currency, its tiers: each tier runs up to a threshold of
lifetime billings (in minor units; the last tier has none) at a rate, an exact
decimal fraction (`Decimal("0.20")`, never a float). A schedule may also set a
client processing rate, charged to the client on each funding and never counted
in lifetime billings (0 in the classic schedule).

Schedules shipped with the product: `classic` (20% / 10% / 5%, the model of this
marketplace, in force by default) and `flat-10` (10% of everything), which an
operator can put in force from a chosen date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ledger.errors import InvalidRequest, UnknownCurrency
from ledger.money import normalize_currency


class FeeScheduleError(InvalidRequest):
    """A fee schedule is malformed, unknown, or does not cover a currency."""

    code = "fee-schedule"


@dataclass(frozen=True)
class Tier:
    """A band of lifetime billings and its rate.

    Attributes:
        up_to: the band's upper end in minor units (None: no end).
        rate: the fee rate inside the band, an exact fraction.
    """

    up_to: int | None
    rate: Decimal


@dataclass(frozen=True)
class FeeSchedule:
    """A named fee schedule.

    Attributes:
        name: stable name, recorded on every fee event (`classic`, `flat-10`).
        tiers: per currency, the bands in ascending order; the last has no upper end.
        client_processing_rate: charged to the client on each funding (0: none).
    """

    name: str
    tiers: Mapping[str, tuple[Tier, ...]] = field(hash=False)
    client_processing_rate: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for currency, tiers in self.tiers.items():
            _validate_tiers(self.name, currency, tiers)
        rate = self.client_processing_rate
        if not isinstance(rate, Decimal) or not Decimal(0) <= rate < Decimal(1):
            raise FeeScheduleError(f"schedule {self.name}: the client processing rate is a Decimal in [0, 1)")

    def tiers_for(self, currency: str) -> tuple[Tier, ...]:
        try:
            code = normalize_currency(currency)
        except UnknownCurrency:
            raise FeeScheduleError(f"unknown currency {currency!r}", currency=currency) from None
        if code not in self.tiers:
            raise FeeScheduleError(
                f"fee schedule {self.name} does not cover {code} (it covers {', '.join(sorted(self.tiers))})",
                schedule=self.name,
                currency=code,
            )
        return self.tiers[code]

    def to_data(self) -> dict[str, Any]:
        """A JSON-able description (rates as strings), stored with each activation."""
        return {
            "name": self.name,
            "client_processing_rate": str(self.client_processing_rate),
            "tiers": {
                currency: [{"up_to": t.up_to, "rate": str(t.rate)} for t in tiers]
                for currency, tiers in sorted(self.tiers.items())
            },
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> FeeSchedule:
        return cls(
            name=str(data["name"]),
            client_processing_rate=Decimal(str(data.get("client_processing_rate", "0"))),
            tiers={
                currency: tuple(Tier(t["up_to"], Decimal(str(t["rate"]))) for t in tiers)
                for currency, tiers in data["tiers"].items()
            },
        )


def _validate_tiers(name: str, currency: str, tiers: tuple[Tier, ...]) -> None:
    if normalize_currency(currency) != currency:
        raise FeeScheduleError(f"schedule {name}: currency codes are upper-case ISO 4217 ({currency!r})")
    if not tiers or tiers[-1].up_to is not None:
        raise FeeScheduleError(f"schedule {name} ({currency}): the last tier must have no upper end")
    previous = 0
    for tier in tiers:
        if not isinstance(tier.rate, Decimal) or not Decimal(0) <= tier.rate <= Decimal(1):
            raise FeeScheduleError(f"schedule {name} ({currency}): rates are Decimals in [0, 1], not {tier.rate!r}")
        if tier.up_to is not None:
            if isinstance(tier.up_to, bool) or not isinstance(tier.up_to, int) or tier.up_to <= previous:
                raise FeeScheduleError(f"schedule {name} ({currency}): thresholds are ascending positive integers")
            previous = tier.up_to


def _classic(first: int, second: int) -> tuple[Tier, ...]:
    return (Tier(first, Decimal("0.20")), Tier(second, Decimal("0.10")), Tier(None, Decimal("0.05")))


#: The marketplace's model: 20% of the first 500.00 billed to a client, 10% up to
#: 10,000.00, 5% beyond. EUR and GBP use the same figures; zero- and three-decimal
#: currencies get thresholds of their own, in their own minor units.
CLASSIC = FeeSchedule(
    name="classic",
    tiers={
        "USD": _classic(500_00, 10_000_00),
        "EUR": _classic(500_00, 10_000_00),
        "GBP": _classic(500_00, 10_000_00),
        "JPY": _classic(75_000, 1_500_000),
        "BHD": _classic(190_000, 3_800_000),  # 190.000 and 3,800.000 dinars (3 decimals)
    },
)

#: 10% of every payment, whatever the lifetime billings.
FLAT_10 = FeeSchedule(
    name="flat-10",
    tiers={currency: (Tier(None, Decimal("0.10")),) for currency in CLASSIC.tiers},
)

#: The schedules an operator can put in force by name.
SHIPPED: dict[str, FeeSchedule] = {s.name: s for s in (CLASSIC, FLAT_10)}


def shipped_schedule(name: str) -> FeeSchedule:
    try:
        return SHIPPED[name]
    except KeyError:
        raise FeeScheduleError(
            f"no fee schedule named {name!r} (known: {', '.join(sorted(SHIPPED))})", schedule=name
        ) from None
