"""The laws of billing an hourly week, checked by Hypothesis over the pure timesheet
rules (no database): random segments, limits and rates, under the loaded profile's
budget (`dev` or `ci`, tests/conftest.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from fractions import Fraction

from hypothesis import given, note
from hypothesis import strategies as st

from ledger.escrow.hourly_calendar import HOURLY_CALENDAR, week_start
from ledger.escrow.timesheet import (
    LimitChange,
    LimitHistory,
    RateChange,
    RateHistory,
    Segment,
    WeekBill,
    bill_week,
    limit_for_week,
    rate_for_segment,
    round_half_up,
)

WEEK = date(2026, 11, 30)
START = week_start(WEEK)
SLOT = HOURLY_CALENDAR.segment_length
SLOT_MINUTES = SLOT // timedelta(minutes=1)
SLOTS_A_WEEK = timedelta(days=7) // SLOT

# Rates from 1 minor unit an hour to 100,000.00 in a 2-decimal currency.
rates = st.integers(min_value=1, max_value=10**7)
limits_in_hours = st.integers(min_value=0, max_value=80)


@st.composite
def week_segments(draw: st.DrawFn) -> list[Segment]:
    """Disjoint segments of the week, on the boundaries, tracked or manual, some across midnight."""
    segments = []
    slot = draw(st.integers(min_value=0, max_value=SLOTS_A_WEEK - 1))
    for _ in range(draw(st.integers(min_value=0, max_value=25))):
        length = draw(st.integers(min_value=1, max_value=72))
        if slot + length > SLOTS_A_WEEK:
            break
        manual = draw(st.booleans())
        segments.append(
            Segment(
                start=START + slot * SLOT,
                end=START + (slot + length) * SLOT,
                memo="" if manual else "work",
                manual=manual,
            )
        )
        slot += length + draw(st.integers(min_value=0, max_value=60))
    return segments


@st.composite
def rate_histories(draw: st.DrawFn) -> RateHistory:
    """An initial rate and changes at any minute, from a week before to a week after."""
    minutes = st.integers(min_value=-7 * 24 * 60, max_value=14 * 24 * 60)
    changes = draw(st.lists(st.tuples(minutes, rates), max_size=5))
    return RateHistory(
        draw(rates), tuple(RateChange(START + timedelta(minutes=minute), rate) for minute, rate in changes)
    )


def reference_cost(segments: list[Segment], limit_minutes: int, history: RateHistory) -> Fraction:
    """C(billable), slot by slot: each slot within the limit at its segment's rate."""
    counted = 0
    cost = Fraction(0)
    for segment in sorted(segments, key=lambda s: s.start):
        rate = rate_for_segment(history, segment.start)
        for _ in range(segment.minutes // SLOT_MINUTES):
            if counted + SLOT_MINUTES > limit_minutes:
                return cost
            counted += SLOT_MINUTES
            cost += Fraction(rate * SLOT_MINUTES, 60)
    return cost


def billed(segments: list[Segment], hours: int, history: RateHistory) -> WeekBill:
    note(f"{len(segments)} segments, limit {hours} h, rates {history}")
    return bill_week(WEEK, segments, hours * 60, history)


@given(week_segments(), limits_in_hours, rate_histories())
def test_minutes_are_billable_or_over_the_limit(segments: list[Segment], hours: int, history: RateHistory) -> None:
    """billable + over_limit = logged, billable = min(logged, limit), per week and per day."""
    bill = billed(segments, hours, history)
    assert bill.billable_minutes + bill.over_limit_minutes == bill.logged_minutes
    assert bill.billable_minutes == min(bill.logged_minutes, hours * 60)
    assert bill.billable_minutes <= bill.limit_minutes
    for day in bill.days:
        assert day.billable_minutes + day.over_limit_minutes == day.logged_minutes
    assert sum(day.billable_minutes for day in bill.days) == bill.billable_minutes
    assert sum(day.logged_minutes for day in bill.days) == bill.logged_minutes


@given(week_segments(), limits_in_hours, rate_histories())
def test_the_days_and_segments_add_up_to_the_week(segments: list[Segment], hours: int, history: RateHistory) -> None:
    """The days' amounts, and the segments' amounts, sum to the week's amount exactly; all are ints."""
    bill = billed(segments, hours, history)
    assert type(bill.amount) is int
    assert all(type(day.amount) is int for day in bill.days)
    assert all(type(line.amount) is int for line in bill.segments)
    assert sum(day.amount for day in bill.days) == bill.amount
    assert sum(line.amount for line in bill.segments) == bill.amount


@given(week_segments(), limits_in_hours, rate_histories())
def test_the_week_costs_the_rounded_exact_cost_of_its_billable_minutes(
    segments: list[Segment], hours: int, history: RateHistory
) -> None:
    """amount = R(C(billable)), C counted slot by slot at each segment's rate."""
    bill = billed(segments, hours, history)
    exact = reference_cost(segments, hours * 60, history)
    assert bill.exact_cost(bill.billable_minutes) == exact
    assert bill.amount == round_half_up(exact)


@given(week_segments(), limits_in_hours, rate_histories(), st.data())
def test_costs_of_adjacent_ranges_add_up(
    segments: list[Segment], hours: int, history: RateHistory, data: st.DataObject
) -> None:
    """For m1 <= m2 <= m3: cost(m1, m2) + cost(m2, m3) = cost(m1, m3), and cost(0, billable) = amount."""
    bill = billed(segments, hours, history)
    points = sorted(data.draw(st.lists(st.integers(0, bill.billable_minutes), min_size=3, max_size=3)))
    m1, m2, m3 = points
    assert bill.cost_of_range(m1, m2) + bill.cost_of_range(m2, m3) == bill.cost_of_range(m1, m3)
    assert bill.cost_of_range(m1, m2) >= 0
    assert bill.cost_of_range(0, bill.billable_minutes) == bill.amount


@given(
    limits_in_hours,
    st.lists(st.tuples(st.integers(min_value=-3 * 7 * 24 * 60, max_value=3 * 7 * 24 * 60), limits_in_hours)),
    st.integers(min_value=-3, max_value=3),
)
def test_a_week_keeps_the_limit_raises_give_it_and_lowerings_leave_it(
    initial: int, changes: list[tuple[int, int]], weeks_later: int
) -> None:
    """Replaying the changes in time order: a raise lifts the current week's limit at
    once, a lowering only sets the limit later weeks start with."""
    history = LimitHistory(initial, tuple(LimitChange(START + timedelta(minutes=m), hours) for m, hours in changes))
    monday = WEEK + timedelta(weeks=weeks_later)
    begins, ends = week_start(monday), week_start(monday) + timedelta(days=7)
    week_limit = setting = _setting_before(history, begins)
    for change in history.changes:
        if not begins <= change.changed_at < ends:
            continue
        if change.weekly_limit_hours > setting:  # a raise: at once, unless the week already has more
            week_limit = max(week_limit, change.weekly_limit_hours)
        setting = change.weekly_limit_hours  # a lowering waits for the next week
    assert limit_for_week(history, monday) == week_limit


def _setting_before(history: LimitHistory, moment: datetime) -> int:
    setting = history.initial_hours
    for change in history.changes:
        if change.changed_at < moment:
            setting = change.weekly_limit_hours
    return setting
