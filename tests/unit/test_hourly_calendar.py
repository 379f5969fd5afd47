"""The weekly calendar of hourly contracts: weeks run Monday 00:00 to Monday 00:00 UTC,
close Monday 12:00 after, their review ends Saturday 00:00 and their money is available
Wednesday 00:00, nine days after the week ended."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from ledger.errors import InvalidRequest
from ledger.escrow.hourly_calendar import (
    HOURLY_CALENDAR,
    HourlyCalendarPolicy,
    available_at,
    closes_at,
    editable,
    on_segment_boundary,
    parse_monday,
    require_monday,
    review_ends_at,
    week_end,
    week_of,
    week_start,
)

WEEK = date(2026, 11, 30)  # a Monday


def at(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_the_policy_holds_the_marketplace_figures() -> None:
    assert HOURLY_CALENDAR.segment_length == timedelta(minutes=10)
    assert HOURLY_CALENDAR.closes_after_week_end == timedelta(hours=12)
    assert HOURLY_CALENDAR.review_ends_after_week_end == timedelta(days=5)
    assert HOURLY_CALENDAR.available_after_week_end == timedelta(days=9)


def test_a_week_runs_monday_00_00_to_the_next_monday_00_00() -> None:
    assert week_start(WEEK) == at(2026, 11, 30, 0, 0)
    assert week_end(WEEK) == at(2026, 12, 7, 0, 0)


def test_sunday_23_50_belongs_to_that_week_and_monday_00_00_to_the_next() -> None:
    assert week_of(at(2026, 12, 6, 23, 50)) == WEEK
    assert week_of(at(2026, 12, 6, 23, 59, 59)) == WEEK
    assert week_of(at(2026, 12, 7, 0, 0)) == date(2026, 12, 7)
    assert week_of(at(2026, 11, 30, 0, 0)) == WEEK


def test_the_week_of_a_moment_is_taken_in_utc() -> None:
    # Monday 01:00 in UTC+02:00 is Sunday 23:00 UTC: the week before.
    assert week_of(datetime(2026, 12, 7, 1, 0, tzinfo=timezone(timedelta(hours=2)))) == WEEK


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        week_of(datetime(2026, 12, 1, 9, 0))


def test_close_review_end_and_availability_fall_on_their_exact_instants() -> None:
    assert closes_at(WEEK) == at(2026, 12, 7, 12, 0)  # Monday 12:00
    assert review_ends_at(WEEK) == at(2026, 12, 12, 0, 0)  # Saturday 00:00
    assert review_ends_at(WEEK).strftime("%A") == "Saturday"
    assert available_at(WEEK) == at(2026, 12, 16, 0, 0)  # Wednesday 00:00
    assert available_at(WEEK).strftime("%A") == "Wednesday"
    assert available_at(WEEK) - week_end(WEEK) == timedelta(days=9)


def test_edits_are_accepted_until_monday_12_00_after_the_week() -> None:
    assert editable(WEEK, at(2026, 12, 1, 9, 0))
    assert editable(WEEK, at(2026, 12, 7, 11, 50))
    assert editable(WEEK, at(2026, 12, 7, 11, 59, 59))
    assert not editable(WEEK, at(2026, 12, 7, 12, 0))
    assert not editable(WEEK, at(2026, 12, 8, 0, 0))


def test_another_policy_moves_every_instant() -> None:
    policy = HourlyCalendarPolicy(closes_after_week_end=timedelta(hours=6))
    assert closes_at(WEEK, policy) == at(2026, 12, 7, 6, 0)
    assert not editable(WEEK, at(2026, 12, 7, 6, 0), policy)


def test_a_policy_out_of_order_is_refused() -> None:
    with pytest.raises(ValueError, match="segment length"):
        HourlyCalendarPolicy(segment_length=timedelta(minutes=11))
    with pytest.raises(ValueError, match="closes"):
        HourlyCalendarPolicy(review_ends_after_week_end=timedelta(hours=6))


def test_segment_boundaries_are_every_ten_minutes() -> None:
    assert on_segment_boundary(at(2026, 12, 1, 9, 0))
    assert on_segment_boundary(at(2026, 12, 1, 9, 50))
    assert not on_segment_boundary(at(2026, 12, 1, 9, 5))
    assert not on_segment_boundary(at(2026, 12, 1, 9, 10, 1))


def test_a_monday_is_accepted_as_a_date_or_an_iso_string() -> None:
    assert require_monday(WEEK) == WEEK
    assert parse_monday("2026-11-30") == WEEK
    assert parse_monday(WEEK, field="week_of") == WEEK


def test_a_day_that_is_not_a_monday_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequest, match="2026-12-01 is a Tuesday") as refused:
        parse_monday("2026-12-01", field="week")
    assert refused.value.data["field"] == "week"
    with pytest.raises(InvalidRequest, match="week_of names a week by its Monday"):
        require_monday(date(2026, 12, 6), field="week_of")
    with pytest.raises(InvalidRequest):
        week_start(date(2026, 12, 6))


@pytest.mark.parametrize("value", ["30.11.2026", "20261130", "2026-W49-1", "2026-13-01", "", 20261130, None])
def test_a_malformed_week_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidRequest, match="week is a date") as refused:
        parse_monday(value)
    assert refused.value.data["field"] == "week"


def test_a_datetime_is_not_a_week() -> None:
    with pytest.raises(InvalidRequest, match="week is a date"):
        require_monday(at(2026, 11, 30, 0, 0))
