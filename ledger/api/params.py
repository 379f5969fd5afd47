"""Query parameters shared by the routes, each declared explicitly, and the rule for a
time in a query: ISO 8601 with its UTC offset (`2026-01-01T00:00:00Z`), or a date
(`2026-01-01`, 00:00 UTC that day); a time without an offset is refused."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar.params import QueryParameter

from ledger.clock import parse_instant
from ledger.errors import InvalidRequest

INSTANT = "a time with its UTC offset (2026-01-01T00:00:00Z) or a date (2026-01-01: 00:00 UTC that day)"
PERIOD_START = f"start of the half-open period [from, to), included: {INSTANT}"
PERIOD_END = f"end of the half-open period [from, to), excluded: {INSTANT}"

#: `from`, a Python keyword, so the handlers' argument is `from_`.
PeriodStart = Annotated[str, QueryParameter(name="from", description=PERIOD_START)]
OptionalPeriodStart = Annotated[str | None, QueryParameter(name="from", description=PERIOD_START)]
PeriodEnd = Annotated[str, QueryParameter(name="to", description=PERIOD_END)]
OptionalPeriodEnd = Annotated[str | None, QueryParameter(name="to", description=PERIOD_END)]
AsOf = Annotated[
    str | None, QueryParameter(name="as_of", description=f"entries effective before this (default: now): {INSTANT}")
]


def instant_param(value: str, field: str) -> datetime:
    """A query's time in UTC; refused (naming the parameter) unless it has an offset or is a date."""
    try:
        return parse_instant(value, field)
    except ValueError as refused:
        raise InvalidRequest(str(refused), field=field) from None


def optional_instant(value: str | None, field: str) -> datetime | None:
    return None if value is None else instant_param(value, field)
