"""Hourly contracts' time use cases on the in-memory fake: request keys replay, the
week's bill follows the term history, and nothing is posted to the journal."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from ledger.clock import FixedClock
from ledger.errors import IdempotencyConflict
from ledger.escrow.service import Escrow
from ledger.escrow.timesheet import Segment
from ledger.service import Ledger

MONDAY = datetime(2026, 11, 30, tzinfo=UTC)


def hourly(escrow: Escrow, clock: FixedClock) -> str:
    clock.set(MONDAY)
    contract = escrow.hourly.open_contract(
        client_id="cl_1",
        freelancer_id="fr_1",
        currency="USD",
        title="Hours",
        hourly_rate=3_333,
        weekly_limit_hours=1,
        manual_time_allowed=True,
        request_key="k:open",
    )
    return contract.id


def test_request_keys_replay_and_conflict(book: Ledger, clock: FixedClock) -> None:
    escrow = Escrow(book, None)
    contract_id = hourly(escrow, clock)
    assert hourly(escrow, clock) == contract_id
    clock.set(MONDAY + timedelta(hours=3))
    segment = Segment(start=MONDAY + timedelta(hours=1), end=MONDAY + timedelta(hours=2), manual=True)
    logged = escrow.hourly.log_segment(contract_id, segment, request_key="k:log")
    assert escrow.hourly.log_segment(contract_id, segment, request_key="k:log") == logged
    with pytest.raises(IdempotencyConflict):
        escrow.hourly.pause(contract_id, request_key="k:log")
    assert escrow.hourly.delete_segment(contract_id, str(logged.id), request_key="k:del") == logged
    assert escrow.hourly.delete_segment(contract_id, str(logged.id), request_key="k:del") == logged
    assert escrow.hourly.segments(contract_id) == []


def test_a_week_is_billed_at_the_terms_in_force_and_posts_nothing(book: Ledger, clock: FixedClock) -> None:
    escrow = Escrow(book, None)
    contract_id = hourly(escrow, clock)
    clock.set(MONDAY + timedelta(days=1))
    for hour in (1, 2):
        start = MONDAY + timedelta(hours=hour)
        escrow.hourly.log_segment(contract_id, Segment(start=start, end=start + timedelta(minutes=50), manual=True))
    # 33.33/h: 60 of the 100 minutes within the 1-hour limit cost 33.33 (not 27.78 + 5.56 rounded apart).
    view = escrow.hourly.week(contract_id, date(2026, 11, 30))
    assert (view.bill.billable_minutes, view.bill.over_limit_minutes, view.bill.amount) == (60, 40, 3_333)
    escrow.hourly.change_terms(contract_id, weekly_limit_hours=2)  # a raise counts this week
    assert escrow.hourly.week(contract_id, date(2026, 11, 30)).bill.amount == 5_555
    assert [w.week for w in escrow.hourly.weeks(contract_id)] == [date(2026, 11, 30)]
    assert book.transaction(lambda uow: uow.journal.page(after_id=None, limit=10), read_only=True) == []
