"""Time, from an injectable clock.

The ledger never calls `datetime.now()` directly: use cases take their time from a
`Clock`, so tests can move it (a 14-day review, a 5-day security period) and every
timestamp is timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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


def require_utc(at: datetime) -> datetime:
    """Return `at` converted to UTC; refuse naive datetimes (their zone is a guess)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"datetime {at.isoformat()} has no time zone; give an explicit offset")
    return at.astimezone(UTC)
