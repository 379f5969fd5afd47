"""Money at the edges: exact conversions or a clear refusal, never a float."""

from decimal import Decimal

import pytest
from moneyed import Money

from ledger.errors import InvalidAmount, UnknownCurrency
from ledger.money import MAX_MINOR_UNITS, format_amount, normalize_currency, to_decimal, to_minor, to_money


def test_decimal_strings_convert_exactly_to_minor_units() -> None:
    assert to_minor("1000.00", "USD") == 100000
    assert to_minor("0.01", "USD") == 1
    assert to_minor("12", "USD") == 1200
    assert to_minor("1500", "JPY") == 1500
    assert to_minor("1.234", "BHD") == 1234


def test_an_amount_finer_than_the_minor_unit_is_refused_not_rounded() -> None:
    with pytest.raises(InvalidAmount, match="whole number of minor units"):
        to_minor("10.005", "USD")
    with pytest.raises(InvalidAmount):
        to_minor("1.5", "JPY")


def test_floats_are_refused_everywhere() -> None:
    with pytest.raises(InvalidAmount, match="float"):
        to_minor(0.1, "USD")
    with pytest.raises(InvalidAmount):
        to_minor(True, "USD")


@pytest.mark.parametrize("text", ["", "abc", "1e3", "1,000.00", "NaN", "Infinity", "--1", "1.2.3"])
def test_malformed_amount_strings_are_refused(text: str) -> None:
    with pytest.raises(InvalidAmount):
        to_minor(text, "USD")


def test_amounts_beyond_a_bigint_are_refused() -> None:
    assert to_minor(str(MAX_MINOR_UNITS), "JPY") == MAX_MINOR_UNITS
    with pytest.raises(InvalidAmount, match="out of range"):
        to_minor(str(MAX_MINOR_UNITS + 1), "JPY")


def test_money_in_another_currency_is_refused() -> None:
    assert to_minor(Money("5.25", "USD"), "USD") == 525
    with pytest.raises(InvalidAmount, match="EUR"):
        to_minor(Money("5.25", "EUR"), "USD")


def test_unknown_currencies_are_refused() -> None:
    assert normalize_currency("usd") == "USD"
    for code in ["XYZ", "US", "", 840, None]:
        with pytest.raises(UnknownCurrency):
            normalize_currency(code)


def test_minor_units_format_with_the_currency_places() -> None:
    assert format_amount(100000, "USD") == "1000.00"
    assert format_amount(5, "USD") == "0.05"
    assert format_amount(-5, "USD") == "-0.05"
    assert format_amount(1500, "JPY") == "1500"
    assert to_decimal(1234, "BHD") == Decimal("1.234")
    assert to_money(150, "EUR") == Money("1.50", "EUR")


def test_round_trip_is_exact() -> None:
    for minor in [0, 1, 99, 100, 123456789, MAX_MINOR_UNITS]:
        assert to_minor(format_amount(minor, "USD"), "USD") == minor
