"""Money: integer minor units plus an ISO 4217 code inside, `Money` at the edges.

Inside the ledger an amount is an `int` of the currency's minor unit (cents for USD,
yen for JPY, fils for BHD) together with its currency code. This module is the one
place that converts between that and the outside world: decimal strings such as
"1000.00", `decimal.Decimal`, and py-moneyed `Money`.

Every conversion is exact or refuses: "10.005" USD is an error, never 10.00 or
10.01, and a float is refused outright (py-moneyed 3.0 accepts floats silently, so
the check happens here before one can reach it).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

import moneyed

from ledger.errors import InvalidAmount, InvalidRequest, UnknownCurrency

#: The largest magnitude a BIGINT column holds; no amount may exceed it.
MAX_MINOR_UNITS = 2**63 - 1

__all__ = [
    "MAX_MINOR_UNITS",
    "currency_exponent",
    "format_amount",
    "minor_per_major",
    "normalize_currency",
    "to_decimal",
    "to_minor",
    "to_money",
]


def normalize_currency(code: object) -> str:
    """Return the ISO 4217 code, upper-cased; refuse anything the ledger does not know."""
    if not isinstance(code, str) or len(code) != 3 or not code.isalpha():
        raise UnknownCurrency(f"unknown currency {code!r}", currency=code)
    upper = code.upper()
    try:
        moneyed.get_currency(upper)
    except moneyed.CurrencyDoesNotExist:
        raise UnknownCurrency(f"unknown currency {code!r}", currency=code) from None
    return upper


def minor_per_major(currency: str) -> int:
    """How many minor units make one major unit (100 for USD, 1 for JPY, 1000 for BHD)."""
    sub_unit = moneyed.get_currency(normalize_currency(currency)).sub_unit
    return int(sub_unit)


def currency_exponent(currency: str) -> int:
    """The number of decimal places of the currency's minor unit (2 for USD, 0 for JPY)."""
    per_major = minor_per_major(currency)
    exponent = len(str(per_major)) - 1
    if 10**exponent != per_major:  # pragma: no cover - no such ISO currency today
        raise UnknownCurrency(f"currency {currency} has a non-decimal minor unit", currency=currency)
    return exponent


def to_minor(amount: object, currency: str) -> int:
    """Convert a decimal amount in major units to integer minor units, exactly.

    Accepts `Decimal`, `int`, a decimal string ("1000.00", "12", "0.5") or a
    `Money` in the same currency. Refuses floats, booleans, non-finite values,
    malformed strings and anything not a whole number of minor units.
    """
    currency = normalize_currency(currency)
    if isinstance(amount, moneyed.Money):
        if amount.currency.code != currency:
            raise InvalidAmount(
                f"amount is in {amount.currency.code}, expected {currency}",
                amount=str(amount.amount),
                currency=amount.currency.code,
            )
        amount = amount.amount
    if isinstance(amount, bool | float):
        raise InvalidAmount(
            f"amounts must be decimal strings or integers, not {type(amount).__name__}",
            amount=repr(amount),
            currency=currency,
        )
    if isinstance(amount, str):
        text = amount.strip()
        if not text or not all(ch.isdigit() or ch in ".-+" for ch in text):
            raise InvalidAmount(f"{amount!r} is not a decimal amount", amount=amount, currency=currency)
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise InvalidAmount(f"{amount!r} is not a decimal amount", amount=amount, currency=currency) from None
    elif isinstance(amount, int):
        value = Decimal(amount)
    elif isinstance(amount, Decimal):
        value = amount
    else:
        raise InvalidAmount(
            f"amounts must be decimal strings or integers, not {type(amount).__name__}",
            amount=repr(amount),
            currency=currency,
        )
    if not value.is_finite():
        raise InvalidAmount(f"{amount!r} is not a finite amount", amount=str(amount), currency=currency)
    scaled = value * minor_per_major(currency)
    if scaled != scaled.to_integral_value():
        raise InvalidAmount(
            f"{value} {currency} is not a whole number of minor units "
            f"({currency} has {currency_exponent(currency)} decimal places)",
            amount=str(value),
            currency=currency,
        )
    minor = int(scaled)
    if abs(minor) > MAX_MINOR_UNITS:
        raise InvalidAmount(f"{value} {currency} is out of range", amount=str(value), currency=currency)
    return minor


def to_decimal(minor: int, currency: str) -> Decimal:
    """Minor units to an exact `Decimal` of major units with the currency's places."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise InvalidAmount("minor units must be an integer", amount=repr(minor), currency=currency)
    exponent = currency_exponent(currency)
    return Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def format_amount(minor: int, currency: str) -> str:
    """Minor units as the API's decimal string: 100000 USD -> "1000.00", 5 JPY -> "5"."""
    return str(to_decimal(minor, currency))


def to_money(minor: int, currency: str) -> moneyed.Money:
    """Minor units as a py-moneyed `Money`, for the edges (invoices, statements, API)."""
    return moneyed.Money(to_decimal(minor, currency), normalize_currency(currency))


def require_json_without_floats(value: object, where: str) -> None:
    """Refuse floats (money is never a float, not even in metadata) and non-JSON values."""
    if isinstance(value, float):
        raise InvalidRequest(f"{where} may not contain floats; use strings or integers", field=where)
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRequest(f"{where} keys must be strings", field=where)
            require_json_without_floats(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for item in value:
            require_json_without_floats(item, where)
    elif not (value is None or isinstance(value, str | int | bool)):
        raise InvalidRequest(f"{where} holds a {type(value).__name__}, which is not JSON", field=where)
