"""Query parameters shared by the routes, each declared explicitly, and the rule
that a time in a query names its UTC offset (`2026-01-01T00:00:00Z`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar.params import QueryParameter

from ledger.clock import require_utc
from ledger.errors import InvalidRequest

PERIOD = "start of the half-open period [from, to)"

#: `from`, a Python keyword, so the handlers' argument is `from_`.
PeriodStart = Annotated[datetime, QueryParameter(name="from", description=PERIOD)]
OptionalPeriodStart = Annotated[datetime | None, QueryParameter(name="from", description=PERIOD)]


def utc_param(value: datetime, field: str) -> datetime:
    """`value` as UTC; a time without an offset is refused, naming the parameter."""
    try:
        return require_utc(value)
    except ValueError:
        raise InvalidRequest(f"{field} needs a UTC offset, e.g. 2026-01-01T00:00:00Z", field=field) from None
