"""The weekly calendar of hourly contracts: when a week starts, ends, closes, is
reviewed and becomes available (docs/architecture.md, "Hourly contracts").

Every figure of the calendar is a field of `HourlyCalendarPolicy`, and the
marketplace's figures are its one instance, `HOURLY_CALENDAR`; the functions here
take a policy so a test (or a future marketplace) can pass another, and no other
module repeats a figure. A week is named by its Monday (a `date`); all instants
are timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ledger.clock import require_utc
from ledger.errors import InvalidRequest

WEEK = dt.timedelta(days=7)


@dataclass(frozen=True)
class HourlyCalendarPolicy:
    """The figures of the weekly cycle, each counted from the week's end (the next
    Monday 00:00 UTC) except the segment length.

    Attributes:
        segment_length: time is logged in segments that start and end on multiples
            of this length, counted from the week's start.
        closes_after_week_end: the week closes (and is billed) this long after it
            ends; until then the freelancer may add and delete its time.
        review_ends_after_week_end: the client may dispute the week's hours until
            this long after it ends.
        available_after_week_end: the released money becomes available to the
            freelancer this long after the week ends.
        charge_retry_after: a failed weekly charge is tried again this long after the
            failed attempt ran (one attempt a day).
        pause_after_failed_charges: the contract is paused once a week's charge has
            failed this many times (on as many days).
        retry_charges_for: no attempt is made this long after the week closed or later;
            an advance not recovered by then is written off.
        dispute_answer_period: the freelancer accepts or contests a dispute of a week's
            hours within this time of its opening; silence refunds the client.
        minimum_charges: the provider's smallest charge per currency, in minor units
            (Stripe's): a week billing less is not charged but carried to the next week
            billed; `default_minimum_charge` for a currency not listed.
    """

    segment_length: dt.timedelta = dt.timedelta(minutes=10)
    closes_after_week_end: dt.timedelta = dt.timedelta(hours=12)
    review_ends_after_week_end: dt.timedelta = dt.timedelta(days=5)
    available_after_week_end: dt.timedelta = dt.timedelta(days=9)
    charge_retry_after: dt.timedelta = dt.timedelta(days=1)
    pause_after_failed_charges: int = 5
    retry_charges_for: dt.timedelta = dt.timedelta(days=30)
    dispute_answer_period: dt.timedelta = dt.timedelta(days=3)
    minimum_charges: tuple[tuple[str, int], ...] = (
        ("AUD", 50),
        ("CAD", 50),
        ("CHF", 50),
        ("DKK", 250),
        ("EUR", 50),
        ("GBP", 30),
        ("HKD", 400),
        ("JPY", 50),
        ("MXN", 1000),
        ("NOK", 300),
        ("NZD", 50),
        ("PLN", 200),
        ("SEK", 300),
        ("SGD", 50),
        ("USD", 50),
    )
    default_minimum_charge: int = 50

    def minimum_charge(self, currency: str) -> int:
        """The smallest amount the provider charges in `currency` (minor units)."""
        return dict(self.minimum_charges).get(currency, self.default_minimum_charge)

    def __post_init__(self) -> None:
        # Segments tile the week exactly, so no segment ever straddles Monday 00:00
        # merely because of its length, and boundaries are whole minutes.
        if self.segment_length <= dt.timedelta(0) or WEEK % self.segment_length != dt.timedelta(0):
            raise ValueError("the segment length must divide a week")
        if self.segment_length % dt.timedelta(minutes=1) != dt.timedelta(0):
            raise ValueError("the segment length must be a whole number of minutes")
        if not (
            dt.timedelta(0)
            <= self.closes_after_week_end
            <= self.review_ends_after_week_end
            <= self.available_after_week_end
        ):
            raise ValueError("a week closes, then its review ends, then its money becomes available")


#: The marketplace's calendar: 10-minute segments; a week closes Monday 12:00 after
#: it ends, its review ends Saturday 00:00 and its money is available Wednesday 00:00
#: (nine days after it ended).
HOURLY_CALENDAR = HourlyCalendarPolicy()


def require_monday(value: dt.date, field: str = "week") -> dt.date:
    """Return `value` if it is a Monday (a plain date, not a datetime); refuse it otherwise."""
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise InvalidRequest(f"{field} is a date (YYYY-MM-DD), not {value!r}", field=field)
    if value.weekday() != 0:
        raise InvalidRequest(
            f"{field} names a week by its Monday; {value.isoformat()} is a {value.strftime('%A')}",
            field=field,
            value=value.isoformat(),
        )
    return value


def parse_monday(value: object, field: str = "week") -> dt.date:
    """A week's Monday from a `date` or an ISO string "YYYY-MM-DD"; anything else, or a
    day that is not a Monday, is `InvalidRequest` naming the field."""
    if isinstance(value, str):
        text = value.strip()
        # fromisoformat also reads "20261130" and week dates ("2026-W49-1"); the API takes one form.
        if len(text) != len("YYYY-MM-DD") or text[4] != "-" or text[7] != "-":
            raise InvalidRequest(f"{field} is a date (YYYY-MM-DD), not {value!r}", field=field)
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise InvalidRequest(f"{field} is a date (YYYY-MM-DD), not {value!r}", field=field) from None
        return require_monday(day, field)
    if isinstance(value, dt.date):
        return require_monday(value, field)
    raise InvalidRequest(f"{field} is a date (YYYY-MM-DD), not {value!r}", field=field)


def week_of(moment: dt.datetime) -> dt.date:
    """The Monday of the week `moment` falls in: a week holds [Monday 00:00, next Monday 00:00)."""
    day = require_utc(moment).date()
    return day - dt.timedelta(days=day.weekday())


def week_start(monday: dt.date) -> dt.datetime:
    """Monday 00:00 UTC: the week's first instant."""
    return dt.datetime.combine(require_monday(monday), dt.time(0), tzinfo=dt.UTC)


def week_end(monday: dt.date) -> dt.datetime:
    """The next Monday 00:00 UTC: the first instant after the week."""
    return week_start(monday) + WEEK


def closes_at(monday: dt.date, policy: HourlyCalendarPolicy = HOURLY_CALENDAR) -> dt.datetime:
    """When the week closes and is billed (Monday 12:00 after it ends)."""
    return week_end(monday) + policy.closes_after_week_end


def review_ends_at(monday: dt.date, policy: HourlyCalendarPolicy = HOURLY_CALENDAR) -> dt.datetime:
    """When the client's review of the week ends (Saturday 00:00 after it ends)."""
    return week_end(monday) + policy.review_ends_after_week_end


def available_at(monday: dt.date, policy: HourlyCalendarPolicy = HOURLY_CALENDAR) -> dt.datetime:
    """When the week's released money becomes available (Wednesday 00:00, nine days after it ends)."""
    return week_end(monday) + policy.available_after_week_end


def editable(monday: dt.date, now: dt.datetime, policy: HourlyCalendarPolicy = HOURLY_CALENDAR) -> bool:
    """Whether time may still be added to or deleted from the week: until it closes."""
    return require_utc(now) < closes_at(monday, policy)


def on_segment_boundary(moment: dt.datetime, policy: HourlyCalendarPolicy = HOURLY_CALENDAR) -> bool:
    """Whether `moment` is a segment boundary (a multiple of the segment length from its week's start)."""
    moment = require_utc(moment)
    return (moment - week_start(week_of(moment))) % policy.segment_length == dt.timedelta(0)
