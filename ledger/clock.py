"""Time, from an injectable clock.

The ledger never calls `datetime.now()` directly: use cases take their time from a
`Clock`, so tests can move it (a 14-day review, a 5-day security period) and every
timestamp is timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current time, timezone-aware, in UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved; for tests and replays."""

    def __init__(self, at: datetime) -> None:
        self._at = require_utc(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = require_utc(at)

    def advance(self, by: timedelta) -> None:
        self._at = self._at + by


def parse_instant(text: str, field: str = "time") -> datetime:
    """A time as the CLI and the API take it, in UTC: ISO 8601 with its offset
    (`2026-01-01T09:30:00Z`, `…+02:00`), or a date `YYYY-MM-DD`, which means 00:00 UTC
    of that day (so a period `[2026-01-01, 2026-02-01)` is January). A time without an
    offset is ambiguous and refused: `ValueError` with a one-line reason naming `field`."""
    value = text.strip() if isinstance(text, str) else ""
    if len(value) == len("YYYY-MM-DD") and value[4:5] == "-" and value[7:8] == "-":
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{field} {text!r} is not a date (YYYY-MM-DD)") from None
        return datetime.combine(day, time(0), tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field} {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{field} {text!r} has no UTC offset; add Z or +00:00, or give a date (YYYY-MM-DD)")
    return moment.astimezone(UTC)


def format_period(start: datetime, end: datetime) -> str:
    """A half-open period as statements, reports and exports print it, so that its end
    visibly is not part of it: `[2026-01-01T00:00:00Z, 2026-01-31T00:00:00Z)`."""

    def instant(moment: datetime) -> str:
        return require_utc(moment).isoformat().replace("+00:00", "Z")

    return f"[{instant(start)}, {instant(end)})"


def require_utc(at: datetime) -> datetime:
    """Return `at` converted to UTC; refuse naive datetimes (their zone is a guess)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"datetime {at.isoformat()} has no time zone; give an explicit offset")
    return at.astimezone(UTC)
