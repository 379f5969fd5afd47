"""Timesheets of hourly contracts: segments of logged time, the rules for adding and
deleting them, the weekly limit and the rate in force, and the bill of a week
(docs/architecture.md, "Hourly contracts").

The billing rule. A week's segments count in time order; the first `limit` minutes
are billable and the rest is over the limit (shown, never billed); a segment that
straddles the limit is split at it. C(m) is the exact cost of the first m billable
minutes, each minute at its segment's rate (a `Fraction`: an hourly rate over 60 is
rarely a finite decimal). Billable minutes (m1, m2] cost R(C(m2)) - R(C(m1)), R
rounding half up to the minor unit, so days, segments and any later split of a week
(protected, manual, disputed parts) add up to the week's amount, R(C(billable)).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from ledger.clock import require_utc
from ledger.errors import InvalidRequest, ManualTimeNotAllowed, SegmentOverlap, WeekClosed
from ledger.escrow.hourly_calendar import (
    HOURLY_CALENDAR,
    HourlyCalendarPolicy,
    closes_at,
    editable,
    on_segment_boundary,
    require_monday,
    week_end,
    week_of,
    week_start,
)

MINUTES_PER_HOUR = 60
MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)


def _utc(value: object, field: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise InvalidRequest(f"{field} is a timezone-aware date and time, not {value!r}", field=field)
    try:
        return require_utc(value)
    except ValueError as error:
        raise InvalidRequest(str(error), field=field) from None


def _whole_number(value: object, field: str, *, minimum: int) -> int:
    # bool is an int to Python, never a count or an amount here.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequest(f"{field} must be an integer of at least {minimum}, not {value!r}", field=field)
    return value


def round_half_up(exact: Fraction) -> int:
    """R: to the nearest minor unit, halves away from zero, like `ledger.fees.rule.round_minor`
    (which takes a `Decimal`; the exact costs here are fractions such as thirds)."""
    if exact < 0:
        return -math.floor(-exact + Fraction(1, 2))
    return math.floor(exact + Fraction(1, 2))


# --- segments ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Segment:
    """A stretch of logged time, [start, end), in UTC.

    Attributes:
        start: its first instant, on a segment boundary.
        end: the instant after it, on a segment boundary, in the same week.
        memo: what the freelancer worked on; tracked time needs one.
        manual: entered by hand rather than recorded by the time tracker.
        id: the store's id once saved; None for a segment not saved yet.
    """

    start: dt.datetime
    end: dt.datetime
    memo: str = ""
    manual: bool = False
    id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "start"))
        object.__setattr__(self, "end", _utc(self.end, "end"))
        if not isinstance(self.memo, str):
            raise InvalidRequest(f"memo is text, not {self.memo!r}", field="memo")
        if self.end <= self.start:
            raise InvalidRequest(
                f"a segment ends after it starts; {self.end.isoformat()} is not after {self.start.isoformat()}",
                field="end",
            )

    @property
    def minutes(self) -> int:
        return (self.end - self.start) // MINUTE

    @property
    def week(self) -> dt.date:
        """The Monday of the week the segment belongs to (the week of its start)."""
        return week_of(self.start)

    def overlaps(self, other: Segment) -> bool:
        return self.start < other.end and other.start < self.end


def check_segment_shape(segment: Segment, policy: HourlyCalendarPolicy = HOURLY_CALENDAR) -> None:
    """Refuse a segment that does not start and end on segment boundaries or that crosses
    a week boundary (Monday 00:00 UTC): a week is billed on its own, so each minute
    belongs to exactly one week."""
    length = policy.segment_length // MINUTE
    for field, moment in (("start", segment.start), ("end", segment.end)):
        if not on_segment_boundary(moment, policy):
            raise InvalidRequest(
                f"segments start and end on a {length}-minute boundary; {field} {moment.isoformat()} is not on one",
                field=field,
            )
    boundary = week_end(segment.week)
    if segment.end > boundary:
        raise InvalidRequest(
            f"a segment may not cross the week boundary (Monday 00:00 UTC); split it at {boundary.isoformat()}",
            field="end",
            week_ends_at=boundary.isoformat(),
        )


def validate_new_segment(
    segment: Segment,
    existing: Iterable[Segment],
    now: dt.datetime,
    manual_allowed: bool,
    policy: HourlyCalendarPolicy = HOURLY_CALENDAR,
) -> None:
    """Refuse a segment that may not be added to the contract whose `existing` segments
    are given: off the boundaries, across a week boundary, ending in the future,
    tracked without a memo, manual on a contract that does not allow it, in a week
    that has closed, or overlapping a segment of the contract.

    Tracked time uploaded late by the tracker obeys the same window as manual time:
    nothing is added to a week after it closes, since the close bills it.
    """
    check_segment_shape(segment, policy)
    now = _utc(now, "now")
    if segment.end > now:
        raise InvalidRequest(
            f"a segment may not end in the future; it ends {segment.end.isoformat()}, now is {now.isoformat()}",
            field="end",
        )
    if not segment.manual and not segment.memo.strip():
        raise InvalidRequest("tracked time needs a memo saying what was worked on", field="memo")
    if segment.manual and not manual_allowed:
        raise ManualTimeNotAllowed("the contract does not allow manual time", start=segment.start.isoformat())
    _require_editable(segment, now, policy, "added to")
    for other in existing:
        if segment.overlaps(other):
            raise _overlap(segment, other)


def _overlap(segment: Segment, other: Segment) -> SegmentOverlap:
    return SegmentOverlap(
        f"the segment from {segment.start.isoformat()} to {segment.end.isoformat()} overlaps "
        f"the segment from {other.start.isoformat()} to {other.end.isoformat()}",
        start=segment.start.isoformat(),
        end=segment.end.isoformat(),
        conflicting_segment=other.id,
        conflicting_start=other.start.isoformat(),
        conflicting_end=other.end.isoformat(),
    )


def validate_segment_deletion(
    segment: Segment, now: dt.datetime, policy: HourlyCalendarPolicy = HOURLY_CALENDAR
) -> None:
    """Refuse deleting a segment of a week that has closed (tracked or manual alike)."""
    _require_editable(segment, _utc(now, "now"), policy, "deleted from")


def _require_editable(segment: Segment, now: dt.datetime, policy: HourlyCalendarPolicy, verb: str) -> None:
    if not editable(segment.week, now, policy):
        closed = closes_at(segment.week, policy)
        raise WeekClosed(
            f"the week of {segment.week.isoformat()} closed at {closed.isoformat()}; no time may be {verb} it",
            week=segment.week.isoformat(),
            closed_at=closed.isoformat(),
        )


# --- the weekly limit and the rate ---------------------------------------------------------


@dataclass(frozen=True)
class LimitChange:
    """The contract's weekly limit set to `weekly_limit_hours` at `changed_at`."""

    changed_at: dt.datetime
    weekly_limit_hours: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "changed_at", _utc(self.changed_at, "changed_at"))
        _whole_number(self.weekly_limit_hours, "weekly_limit_hours", minimum=0)


@dataclass(frozen=True)
class LimitHistory:
    """A contract's weekly limits: the one it opened with and its changes (kept in time order).

    Attributes:
        initial_hours: the limit before the first change.
        changes: the changes, in the order they were made.
    """

    initial_hours: int
    changes: tuple[LimitChange, ...] = ()

    def __post_init__(self) -> None:
        _whole_number(self.initial_hours, "initial_hours", minimum=0)
        object.__setattr__(self, "changes", tuple(sorted(self.changes, key=lambda change: change.changed_at)))


def limit_for_week(history: LimitHistory, monday: dt.date) -> int:
    """The weekly limit in force for the week, in hours.

    A raise applies at once to the week it is made in, a lowering only from the next
    week, so the week keeps the largest of the limit set before it started and every
    limit set during it (a lowering during the week is never above the week's limit
    so far, so it changes nothing).
    """
    start, end = week_start(monday), week_end(monday)
    before = history.initial_hours
    during: list[int] = []
    for change in history.changes:
        if change.changed_at < start:
            before = change.weekly_limit_hours
        elif change.changed_at < end:
            during.append(change.weekly_limit_hours)
    return max([before, *during])


@dataclass(frozen=True)
class RateChange:
    """The contract's hourly rate set to `rate` (minor units per hour) at `changed_at`."""

    changed_at: dt.datetime
    rate: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "changed_at", _utc(self.changed_at, "changed_at"))
        _whole_number(self.rate, "rate", minimum=1)


@dataclass(frozen=True)
class RateHistory:
    """A contract's hourly rates (integer minor units per hour): the one it opened with
    and its changes (kept in time order).

    Attributes:
        initial_rate: the rate before the first change.
        changes: the changes, in the order they were made.
    """

    initial_rate: int
    changes: tuple[RateChange, ...] = ()

    def __post_init__(self) -> None:
        _whole_number(self.initial_rate, "initial_rate", minimum=1)
        object.__setattr__(self, "changes", tuple(sorted(self.changes, key=lambda change: change.changed_at)))


def rate_for_segment(history: RateHistory, segment_start: dt.datetime) -> int:
    """The rate in force at the segment's start: a change made at or before the start
    applies to the whole segment, one made during it waits for the next segment."""
    segment_start = _utc(segment_start, "start")
    rate = history.initial_rate
    for change in history.changes:
        if change.changed_at > segment_start:
            break
        rate = change.rate
    return rate


# --- the bill of a week ----------------------------------------------------------------------


@dataclass(frozen=True)
class BillablePiece:
    """A run of billable minutes at one rate: the billable minutes (first_minute,
    first_minute + minutes] of the week, in time order.

    Attributes:
        first_minute: how many billable minutes of the week come before it.
        minutes: its length.
        rate: minor units per hour.
        cost_before: C(first_minute), exact.
    """

    first_minute: int
    minutes: int
    rate: int
    cost_before: Fraction


@dataclass(frozen=True)
class SegmentLine:
    """One segment of the week as billed.

    Attributes:
        segment: the segment.
        rate: the rate in force at its start (minor units per hour).
        first_billable_minute: how many billable minutes of the week come before it.
        billable_minutes: its minutes within the limit.
        over_limit_minutes: its minutes beyond the limit, not billed.
        amount: R(C(first + billable)) - R(C(first)).
    """

    segment: Segment
    rate: int
    first_billable_minute: int
    billable_minutes: int
    over_limit_minutes: int
    amount: int


@dataclass(frozen=True)
class DayLine:
    """One day (UTC) of the week as billed; a segment across midnight counts in both days.

    Attributes:
        day: the date.
        logged_minutes: all its minutes.
        billable_minutes: its minutes within the limit.
        over_limit_minutes: its minutes beyond the limit, not billed.
        amount: what its billable minutes cost under the cumulative rule.
    """

    day: dt.date
    logged_minutes: int
    billable_minutes: int
    over_limit_minutes: int
    amount: int


@dataclass(frozen=True)
class WeekBill:
    """A week's time as billed: the totals, seven day lines, a line per segment, and
    the exact cost function they are all cut from.

    Attributes:
        week: the Monday.
        limit_minutes: the weekly limit in force for the week.
        logged_minutes: all the week's minutes (billable + over the limit).
        billable_minutes: min(logged, limit).
        over_limit_minutes: logged - billable.
        amount: R(C(billable)), integer minor units.
        days: Monday to Sunday; their amounts add up to `amount`.
        segments: in time order; their amounts add up to `amount`.
        billable_pieces: the billable minutes at their rates, in time order.
    """

    week: dt.date
    limit_minutes: int
    logged_minutes: int
    billable_minutes: int
    over_limit_minutes: int
    amount: int
    days: tuple[DayLine, ...]
    segments: tuple[SegmentLine, ...]
    billable_pieces: tuple[BillablePiece, ...]

    def exact_cost(self, minutes: int) -> Fraction:
        """C(m): the exact cost of the week's first m billable minutes, each at its segment's rate."""
        return _exact_cost(self.billable_pieces, self._billable(minutes, "minutes"))

    def cost_of_range(self, first: int, last: int) -> int:
        """What billable minutes (first, last] cost: R(C(last)) - R(C(first)); any split
        of (0, billable] into ranges adds up to the week's amount."""
        first, last = self._billable(first, "first"), self._billable(last, "last")
        if first > last:
            raise InvalidRequest(f"a range of minutes runs forward; {first} is after {last}", field="first")
        return _cost_of_range(self.billable_pieces, first, last)

    def _billable(self, minutes: int, field: str) -> int:
        _whole_number(minutes, field, minimum=0)
        if minutes > self.billable_minutes:
            raise InvalidRequest(
                f"the week has {self.billable_minutes} billable minutes, not {minutes}",
                field=field,
            )
        return minutes


def _exact_cost(pieces: Sequence[BillablePiece], minutes: int) -> Fraction:
    if minutes == 0 or not pieces:
        return Fraction(0)
    # The piece holding minute `minutes`: the last one that starts before it.
    index = bisect.bisect_left([piece.first_minute for piece in pieces], minutes) - 1
    piece = pieces[index]
    return piece.cost_before + Fraction(piece.rate * (minutes - piece.first_minute), MINUTES_PER_HOUR)


def _cost_of_range(pieces: Sequence[BillablePiece], first: int, last: int) -> int:
    return round_half_up(_exact_cost(pieces, last)) - round_half_up(_exact_cost(pieces, first))


def _day_parts(segment: Segment) -> list[tuple[dt.date, int]]:
    """The segment's minutes per UTC day, in time order."""
    parts = []
    start = segment.start
    while start < segment.end:
        midnight = dt.datetime.combine(start.date() + DAY, dt.time(0), tzinfo=dt.UTC)
        end = min(midnight, segment.end)
        parts.append((start.date(), (end - start) // MINUTE))
        start = end
    return parts


def bill_week(
    week: dt.date,
    segments: Iterable[Segment],
    limit_minutes: int,
    rates: RateHistory,
    policy: HourlyCalendarPolicy = HOURLY_CALENDAR,
) -> WeekBill:
    """The bill of the week's segments under its limit (minutes) and the contract's rates.

    Segments count in time order up to the limit; each is billed at the rate in force
    at its start. Segments of another week, off the boundaries or overlapping each
    other are refused.
    """
    week = require_monday(week)
    _whole_number(limit_minutes, "limit_minutes", minimum=0)
    ordered = sorted(segments, key=lambda segment: segment.start)
    for index, segment in enumerate(ordered):
        check_segment_shape(segment, policy)
        if segment.week != week:
            raise InvalidRequest(
                f"the segment {segment.start.isoformat()} belongs to the week of {segment.week.isoformat()}, "
                f"not {week.isoformat()}",
                field="segments",
            )
        if index and ordered[index - 1].overlaps(segment):
            raise _overlap(segment, ordered[index - 1])

    pieces: list[BillablePiece] = []
    counted = 0  # billable minutes so far
    cost = Fraction(0)  # C(counted)
    # Per segment and per day: (first billable minute, billable, over the limit).
    segment_counts: list[tuple[Segment, int, int, int, int]] = []
    day_counts: dict[dt.date, list[int]] = {}  # day -> [first billable minute, billable, over]
    for segment in ordered:
        rate = rate_for_segment(rates, segment.start)
        segment_first = counted
        segment_over = 0
        for day, minutes in _day_parts(segment):
            billable = min(minutes, limit_minutes - counted)
            counts = day_counts.setdefault(day, [counted, 0, 0])
            counts[1] += billable
            counts[2] += minutes - billable
            segment_over += minutes - billable
            counted += billable
        billable_of_segment = counted - segment_first
        if billable_of_segment:
            pieces.append(BillablePiece(segment_first, billable_of_segment, rate, cost))
            cost += Fraction(rate * billable_of_segment, MINUTES_PER_HOUR)
        segment_counts.append((segment, rate, segment_first, billable_of_segment, segment_over))

    segment_lines = tuple(
        SegmentLine(segment, rate, first, billable, over, _cost_of_range(pieces, first, first + billable))
        for segment, rate, first, billable, over in segment_counts
    )
    days = []
    for offset in range(7):
        day = week + dt.timedelta(days=offset)
        first, billable, over = day_counts.get(day, [counted, 0, 0])
        days.append(
            DayLine(
                day=day,
                logged_minutes=billable + over,
                billable_minutes=billable,
                over_limit_minutes=over,
                amount=_cost_of_range(pieces, first, first + billable),
            )
        )
    logged = sum(segment.minutes for segment in ordered)
    return WeekBill(
        week=week,
        limit_minutes=limit_minutes,
        logged_minutes=logged,
        billable_minutes=counted,
        over_limit_minutes=logged - counted,
        amount=round_half_up(cost),
        days=tuple(days),
        segments=segment_lines,
        billable_pieces=tuple(pieces),
    )
