"""Timesheets of hourly contracts: which segments may be logged, the weekly limit and
rate in force, and the bill of a week under the cumulative rounding rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest

from ledger.errors import InvalidRequest, ManualTimeNotAllowed, SegmentOverlap, WeekClosed
from ledger.escrow.timesheet import (
    LimitChange,
    LimitHistory,
    RateChange,
    RateHistory,
    Segment,
    bill_week,
    limit_for_week,
    rate_for_segment,
    round_half_up,
    validate_new_segment,
    validate_segment_deletion,
)
from ledger.money import to_minor

WEEK = date(2026, 11, 30)  # Monday; closes 2026-12-07 12:00 UTC
NEXT_WEEK = date(2026, 12, 7)
DURING_THE_WEEK = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
HOUR = 60
MONDAY_TO_FRIDAY = [(11, 30), (12, 1), (12, 2), (12, 3), (12, 4)]  # (month, day)


def at(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def tracked(start: datetime, end: datetime, memo: str = "API client", id: str | None = None) -> Segment:
    return Segment(start=start, end=end, memo=memo, id=id)


def manual(start: datetime, end: datetime) -> Segment:
    return Segment(start=start, end=end, manual=True)


def usd(rate: str) -> RateHistory:
    return RateHistory(to_minor(rate, "USD"))


# --- logging time ------------------------------------------------------------------------


def test_a_tracked_segment_on_the_boundaries_in_the_past_is_accepted() -> None:
    validate_new_segment(tracked(at(1, 9, 0), at(1, 9, 10)), [], DURING_THE_WEEK, manual_allowed=False)


def test_a_segment_may_be_longer_than_ten_minutes_and_start_where_another_ends() -> None:
    earlier = tracked(at(1, 9, 0), at(1, 10, 0), id="s1")
    validate_new_segment(tracked(at(1, 10, 0), at(1, 12, 30)), [earlier], DURING_THE_WEEK, manual_allowed=False)


def test_sunday_23_50_to_24_00_belongs_to_that_week() -> None:
    last = tracked(at(6, 23, 50), at(7, 0, 0))
    assert last.week == WEEK
    validate_new_segment(last, [], at(7, 11, 50), manual_allowed=False)


def test_a_segment_crossing_monday_00_00_is_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"may not cross the week boundary.*2026-12-07T00:00:00\+00:00"):
        validate_new_segment(tracked(at(6, 23, 50), at(7, 0, 10)), [], at(7, 11, 0), manual_allowed=False)


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [(at(1, 9, 5), at(1, 9, 15), "start"), (at(1, 9, 0), at(1, 9, 15), "end")],
)
def test_a_segment_off_the_ten_minute_boundaries_is_refused(start: datetime, end: datetime, field: str) -> None:
    with pytest.raises(InvalidRequest, match="10-minute boundary") as refused:
        validate_new_segment(tracked(start, end), [], DURING_THE_WEEK, manual_allowed=False)
    assert refused.value.data["field"] == field


def test_a_segment_ending_in_the_future_is_refused() -> None:
    now = at(3, 18, 5)
    with pytest.raises(InvalidRequest, match="may not end in the future"):
        validate_new_segment(tracked(at(3, 18, 0), at(3, 18, 10)), [], now, manual_allowed=False)
    validate_new_segment(tracked(at(3, 17, 50), at(3, 18, 0)), [], now, manual_allowed=False)


def test_an_empty_or_backward_segment_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="ends after it starts"):
        tracked(at(1, 9, 0), at(1, 9, 0))
    with pytest.raises(InvalidRequest, match="ends after it starts"):
        tracked(at(1, 9, 10), at(1, 9, 0))


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="no time zone"):
        Segment(start=datetime(2026, 12, 1, 9, 0), end=at(1, 9, 10), memo="x")


def test_tracked_time_without_a_memo_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="tracked time needs a memo") as refused:
        validate_new_segment(tracked(at(1, 9, 0), at(1, 9, 10), memo="  "), [], DURING_THE_WEEK, manual_allowed=True)
    assert refused.value.data["field"] == "memo"


def test_manual_time_needs_a_contract_that_allows_it() -> None:
    segment = manual(at(1, 9, 0), at(1, 11, 0))
    with pytest.raises(ManualTimeNotAllowed, match="does not allow manual time"):
        validate_new_segment(segment, [], DURING_THE_WEEK, manual_allowed=False)
    validate_new_segment(segment, [], DURING_THE_WEEK, manual_allowed=True)


def test_an_overlapping_segment_is_a_conflict() -> None:
    existing = [tracked(at(1, 9, 0), at(1, 10, 0), id="seg-1")]
    with pytest.raises(SegmentOverlap, match="overlaps the segment from 2026-12-01T09:00:00") as refused:
        validate_new_segment(manual(at(1, 9, 50), at(1, 10, 30)), existing, DURING_THE_WEEK, manual_allowed=True)
    assert refused.value.data["conflicting_segment"] == "seg-1"
    assert refused.value.code == "segment-overlap"


def test_time_may_be_added_until_monday_12_00_after_the_week() -> None:
    segment = manual(at(4, 9, 0), at(4, 10, 0))
    validate_new_segment(segment, [], at(7, 11, 50), manual_allowed=True)
    with pytest.raises(WeekClosed, match="closed at 2026-12-07T12:00:00"):
        validate_new_segment(segment, [], at(7, 12, 0), manual_allowed=True)
    # Tracked time uploaded late obeys the same window.
    with pytest.raises(WeekClosed):
        validate_new_segment(tracked(at(4, 9, 0), at(4, 10, 0)), [], at(7, 12, 0), manual_allowed=False)


def test_segments_may_be_deleted_until_monday_12_00_after_the_week() -> None:
    segment = tracked(at(4, 9, 0), at(4, 10, 0), id="seg-1")
    validate_segment_deletion(segment, at(7, 11, 50))
    with pytest.raises(WeekClosed):
        validate_segment_deletion(segment, at(7, 12, 0))


# --- the weekly limit -----------------------------------------------------------------------


def test_raising_the_limit_applies_at_once_to_the_week_of_the_change() -> None:
    history = LimitHistory(40, (LimitChange(at(2, 15, 0), 50),))
    assert limit_for_week(history, date(2026, 11, 23)) == 40
    assert limit_for_week(history, WEEK) == 50
    assert limit_for_week(history, NEXT_WEEK) == 50


def test_lowering_the_limit_applies_from_the_next_week() -> None:
    history = LimitHistory(40, (LimitChange(at(2, 15, 0), 20),))
    assert limit_for_week(history, WEEK) == 40
    assert limit_for_week(history, NEXT_WEEK) == 20


def test_a_lowering_at_monday_00_00_is_made_in_that_week_and_waits_for_the_next() -> None:
    history = LimitHistory(40, (LimitChange(at(7, 0, 0), 20),))
    assert limit_for_week(history, NEXT_WEEK) == 40
    assert limit_for_week(history, date(2026, 12, 14)) == 20


def test_a_week_keeps_its_highest_limit_through_raises_and_lowerings() -> None:
    history = LimitHistory(
        40,
        (
            LimitChange(at(3, 9, 0), 30),  # lowered: this week keeps 40
            LimitChange(at(1, 9, 0), 60),  # raised first (given out of order): this week has 60
            LimitChange(at(4, 9, 0), 50),  # raised from 30, still below the week's 60
        ),
    )
    assert limit_for_week(history, WEEK) == 60
    assert limit_for_week(history, NEXT_WEEK) == 50


# --- the rate ---------------------------------------------------------------------------------


def test_the_rate_in_force_at_the_segment_start_applies() -> None:
    history = RateHistory(3000, (RateChange(at(2, 12, 0), 6000),))
    assert rate_for_segment(history, at(2, 11, 50)) == 3000
    assert rate_for_segment(history, at(2, 12, 0)) == 6000
    assert rate_for_segment(history, at(3, 9, 0)) == 6000


def test_a_rate_change_mid_week_bills_each_segment_at_its_rate() -> None:
    history = RateHistory(3000, (RateChange(at(2, 12, 0), 6000),))
    segments = [
        tracked(at(1, 10, 0), at(1, 11, 0)),  # 60 min at 30.00
        tracked(at(2, 11, 30), at(2, 12, 30)),  # started before the change: 60 min at 30.00
        tracked(at(2, 12, 30), at(2, 13, 0)),  # 30 min at 60.00
        tracked(at(3, 10, 0), at(3, 11, 0)),  # 60 min at 60.00
    ]
    bill = bill_week(WEEK, segments, 40 * HOUR, history)
    assert [line.rate for line in bill.segments] == [3000, 3000, 6000, 6000]
    assert [line.amount for line in bill.segments] == [3000, 3000, 3000, 6000]
    assert bill.amount == 15000
    assert [day.amount for day in bill.days[1:4]] == [3000, 6000, 6000]
    assert bill.exact_cost(90) == Fraction(4500)


def test_rates_and_limits_are_integers() -> None:
    with pytest.raises(InvalidRequest, match="rate must be an integer"):
        RateChange(at(1, 9, 0), 33.33)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="initial_hours must be an integer"):
        LimitHistory(True)


# --- the bill of a week -------------------------------------------------------------------------


def test_45_hours_on_a_40_hour_limit_bill_40_and_show_5_over() -> None:
    segments = [tracked(at(day, 9, 0, month=month), at(day, 18, 0, month=month)) for month, day in MONDAY_TO_FRIDAY]
    bill = bill_week(WEEK, segments, 40 * HOUR, usd("50.00"))
    assert (bill.logged_minutes, bill.billable_minutes, bill.over_limit_minutes) == (45 * HOUR, 40 * HOUR, 5 * HOUR)
    assert bill.amount == 40 * 5000
    # Monday to Thursday are 36 hours; Friday's 9 hours are split at the limit: 4 billed, 5 over.
    assert [(d.billable_minutes, d.over_limit_minutes) for d in bill.days[:5]] == [(540, 0)] * 4 + [(240, 300)]
    assert [d.amount for d in bill.days] == [45000, 45000, 45000, 45000, 20000, 0, 0]
    assert bill.segments[4].billable_minutes == 240
    assert bill.segments[4].over_limit_minutes == 300


def test_a_segment_straddling_the_limit_is_split_at_it() -> None:
    segments = [tracked(at(1, 9, 0), at(1, 9, 50)), tracked(at(1, 10, 0), at(1, 10, 30))]
    bill = bill_week(WEEK, segments, 60, usd("60.00"))
    assert [(s.billable_minutes, s.over_limit_minutes) for s in bill.segments] == [(50, 0), (10, 20)]
    assert bill.amount == 6000


def test_a_segment_across_midnight_counts_in_both_days() -> None:
    bill = bill_week(WEEK, [manual(at(1, 23, 0), at(2, 1, 0))], 40 * HOUR, usd("60.00"))
    assert [(d.day, d.billable_minutes, d.amount) for d in bill.days[1:3]] == [
        (date(2026, 12, 1), 60, 6000),
        (date(2026, 12, 2), 60, 6000),
    ]


def one_segment_a_day(minutes: list[int]) -> list[Segment]:
    return [
        tracked(at(1 + offset, 9, 0), at(1 + offset, 9, 0) + timedelta(minutes=length))
        for offset, length in enumerate(minutes)
    ]


@pytest.mark.parametrize(
    ("rate", "currency", "days", "week"),
    [
        # 33.33/h: 10 min cost 555.5 cents, 40 min 2222, 90 min 4999.5.
        ("33.33", "USD", [556, 1666, 2778], 5000),
        # 2999 yen/h: 10 min cost 499.83 yen, 40 min 1999.33, 90 min 4498.5.
        ("2999", "JPY", [500, 1499, 2500], 4499),
        # 33.333 BHD/h: 10 min cost 5555.5 fils, 40 min 22222, 90 min 49999.5.
        ("33.333", "BHD", [5556, 16666, 27778], 50000),
    ],
)
def test_amounts_round_cumulatively_so_the_days_add_up_to_the_week(
    rate: str, currency: str, days: list[int], week: int
) -> None:
    bill = bill_week(WEEK, one_segment_a_day([10, 30, 50]), 40 * HOUR, RateHistory(to_minor(rate, currency)))
    assert [d.amount for d in bill.days[1:4]] == days
    assert sum(d.amount for d in bill.days) == bill.amount == week
    assert sum(line.amount for line in bill.segments) == bill.amount
    assert bill.amount == round_half_up(bill.exact_cost(bill.billable_minutes))


def test_rounding_each_day_on_its_own_would_not_add_up() -> None:
    # Why the rule is cumulative: 10, 30 and 50 minutes at 33.33/h each round up alone.
    alone = sum(round_half_up(Fraction(3333 * minutes, 60)) for minutes in (10, 30, 50))
    assert alone == 5001
    assert bill_week(WEEK, one_segment_a_day([10, 30, 50]), 40 * HOUR, usd("33.33")).amount == 5000


def test_any_range_of_billable_minutes_costs_the_difference_of_the_rounded_totals() -> None:
    bill = bill_week(WEEK, one_segment_a_day([10, 30, 50]), 40 * HOUR, usd("33.33"))
    assert bill.cost_of_range(0, 10) == 556
    assert bill.cost_of_range(10, 90) == 5000 - 556
    assert bill.cost_of_range(0, 45) + bill.cost_of_range(45, 90) == bill.amount
    with pytest.raises(InvalidRequest, match="90 billable minutes"):
        bill.cost_of_range(0, 100)
    with pytest.raises(InvalidRequest, match="runs forward"):
        bill.cost_of_range(50, 40)


def test_an_empty_week_bills_nothing() -> None:
    bill = bill_week(WEEK, [], 40 * HOUR, usd("50.00"))
    assert (bill.logged_minutes, bill.amount, len(bill.days)) == (0, 0, 7)


def test_a_bill_refuses_segments_of_another_week_or_overlapping() -> None:
    with pytest.raises(InvalidRequest, match="belongs to the week of 2026-12-07"):
        bill_week(WEEK, [tracked(at(8, 9, 0), at(8, 10, 0))], 40 * HOUR, usd("50.00"))
    with pytest.raises(SegmentOverlap):
        bill_week(
            WEEK, [tracked(at(1, 9, 0), at(1, 10, 0)), tracked(at(1, 9, 30), at(1, 9, 40))], 40 * HOUR, usd("50.00")
        )
