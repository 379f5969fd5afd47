"""The contract of the escrow store's hourly parts (terms, their history, time segments), on every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from ledger.clock import FixedClock
from ledger.escrow.model import HOURLY, RATE, WEEKLY_LIMIT, TermChange, UnknownSegment
from ledger.escrow.timesheet import Segment
from ledger.ports.unit_of_work import Transactions, UnitOfWork
from tests.contracts.rows import contract

MONDAY = datetime(2026, 11, 30, tzinfo=UTC)


def hourly(at: datetime) -> object:
    return replace(contract(at), type=HOURLY, hourly_rate=5_000, weekly_limit_hours=40, manual_time_allowed=True)


@pytest.fixture
def with_hourly(db: Transactions, clock: FixedClock) -> Transactions:
    db.transaction(lambda uow: uow.escrow.add_contract(hourly(clock.now())))  # type: ignore[arg-type]
    return db


def test_an_hourly_contract_keeps_its_terms_and_its_pause(with_hourly: Transactions, clock: FixedClock) -> None:
    db = with_hourly
    stored = db.transaction(lambda uow: uow.escrow.contract("ct_1"))
    assert stored == hourly(clock.now())
    paused = replace(stored, hourly_rate=6_000, weekly_limit_hours=30, paused_at=clock.now())
    db.transaction(lambda uow: uow.escrow.save_contract_terms(paused))
    assert db.transaction(lambda uow: uow.escrow.contract("ct_1", lock=True)) == paused
    assert db.transaction(lambda uow: uow.escrow.contract("ct_1")).type == HOURLY


def test_term_changes_come_back_in_time_order(with_hourly: Transactions, clock: FixedClock) -> None:
    db = with_hourly
    later, now = clock.now() + timedelta(hours=1), clock.now()
    changes = [TermChange(RATE, 6_000, later), TermChange(RATE, 5_000, now), TermChange(WEEKLY_LIMIT, 40, now)]

    def add(uow: UnitOfWork) -> None:
        for change in changes:
            uow.escrow.add_term_change("ct_1", change)

    db.transaction(add)
    assert db.transaction(lambda uow: uow.escrow.term_changes("ct_1")) == [changes[1], changes[2], changes[0]]
    assert db.transaction(lambda uow: uow.escrow.term_changes("ct_other")) == []


def test_segments_are_stored_listed_by_week_and_deleted_softly(with_hourly: Transactions, clock: FixedClock) -> None:
    db = with_hourly
    first = Segment(start=MONDAY + timedelta(hours=9), end=MONDAY + timedelta(hours=11), memo="api", manual=True)
    second = Segment(start=MONDAY - timedelta(hours=2), end=MONDAY - timedelta(hours=1), memo="before")
    third = Segment(start=MONDAY + timedelta(days=1), end=MONDAY + timedelta(days=1, hours=1), memo="next day")

    def add(uow: UnitOfWork) -> list[Segment]:
        return [uow.escrow.add_segment("ct_1", s, clock.now()) for s in (first, second, third)]

    saved = db.transaction(add)
    assert [replace(s, id=None) for s in saved] == [first, second, third]
    assert len({s.id for s in saved}) == 3
    assert db.transaction(lambda uow: uow.escrow.segment("ct_1", str(saved[0].id))) == saved[0]
    week = db.transaction(lambda uow: uow.escrow.segments_of("ct_1", start=MONDAY, end=MONDAY + timedelta(days=7)))
    assert week == [saved[0], saved[2]]
    after = int(str(saved[0].id))
    assert db.transaction(lambda uow: uow.escrow.segments_of("ct_1", after_id=after, limit=1)) == [saved[1]]
    assert db.transaction(lambda uow: uow.escrow.segment_weeks("ct_1")) == [date(2026, 11, 30), date(2026, 11, 23)]

    db.transaction(lambda uow: uow.escrow.delete_segment(str(saved[1].id), clock.now()))
    assert db.transaction(lambda uow: uow.escrow.segments_of("ct_1")) == [saved[0], saved[2]]
    assert db.transaction(lambda uow: uow.escrow.segment_weeks("ct_1")) == [date(2026, 11, 30)]
    for unknown in (str(saved[1].id), "x", "99999999999999999999", str(saved[0].id) + "0"):
        with pytest.raises(UnknownSegment):
            db.transaction(lambda uow, u=unknown: uow.escrow.segment("ct_1", u))  # type: ignore[misc]
    with pytest.raises(UnknownSegment):
        db.transaction(lambda uow: uow.escrow.segment("ct_other", str(saved[0].id)))
