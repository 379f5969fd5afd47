"""The schedules a server keeps: never past `SCHEDULES_KEPT`, never for a time a later
activation could rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger.db.fee_store import SCHEDULES_KEPT, ScheduleCache
from ledger.fees.model import ACTIVATION_LEAD, ScheduleInForce
from ledger.fees.schedule import CLASSIC, FLAT_10

READ_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def kept(*schedules: ScheduleInForce) -> ScheduleCache:
    cache = ScheduleCache()
    cache.keep(READ_AT, list(schedules))
    return cache


def test_the_schedules_are_kept_for_less_than_an_activation_lead() -> None:
    assert timedelta(0) < SCHEDULES_KEPT < ACTIVATION_LEAD


def test_the_kept_schedules_answer_until_they_expire() -> None:
    classic = ScheduleInForce(1, CLASSIC, EPOCH)
    cache = kept(classic)
    assert cache.in_force_at(READ_AT, READ_AT) == classic
    assert cache.in_force_at(READ_AT - timedelta(days=400), READ_AT + SCHEDULES_KEPT / 2) == classic
    assert cache.in_force_at(READ_AT, READ_AT + SCHEDULES_KEPT) is None  # expired: read again
    assert cache.in_force_at(READ_AT, READ_AT - timedelta(seconds=1)) is None  # a clock moved back


def test_a_time_a_later_activation_could_rule_is_not_answered() -> None:
    cache = kept(ScheduleInForce(1, CLASSIC, EPOCH))
    assert cache.in_force_at(READ_AT + SCHEDULES_KEPT, READ_AT) is None


def test_a_schedule_known_to_start_later_rules_from_its_start() -> None:
    classic = ScheduleInForce(1, CLASSIC, EPOCH)
    flat = ScheduleInForce(2, FLAT_10, READ_AT + SCHEDULES_KEPT / 2)
    cache = kept(flat, classic)
    assert cache.in_force_at(flat.effective_from - timedelta(microseconds=1), READ_AT) == classic
    assert cache.in_force_at(flat.effective_from, READ_AT) == flat


def test_a_cleared_cache_answers_nothing() -> None:
    cache = kept(ScheduleInForce(1, CLASSIC, EPOCH))
    cache.clear()
    assert cache.in_force_at(READ_AT, READ_AT) is None
