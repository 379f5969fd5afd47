"""Idempotency-Key records in the database: claims, leases, takeovers and pruning."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text

from ledger.api.idempotency import LEASE_MARGIN, claim_lease, prune_idempotency_keys
from ledger.clock import FixedClock
from ledger.db.schema import idempotent_requests
from ledger.db.unit_of_work import UnitOfWork
from ledger.service import Ledger

LEASE = claim_lease(30)
API_KEY = "key_test"


def claim(book: Ledger, key: str, at: datetime, body_hash: str = "body-1") -> Any:
    return book.transaction(
        lambda uow: uow.api.claim_request(key, API_KEY, "POST", "/v1/contracts", body_hash, now=at, lease=LEASE)
    )


def finish(book: Ledger, key: str, claimed_at: datetime) -> bool:
    return bool(
        book.transaction(lambda uow: uow.api.finish_request(key, API_KEY, claimed_at, 201, "application/json", "{}"))
    )


def keys(book: Ledger) -> set[str]:
    query = select(idempotent_requests.c.key)
    return set(book.transaction(lambda uow: uow.connection.execute(query).scalars().all(), read_only=True))


def test_the_lease_is_the_request_timeout_plus_a_margin() -> None:
    assert claim_lease(30) == timedelta(seconds=30) + LEASE_MARGIN
    assert timedelta(seconds=30) == LEASE_MARGIN


def test_a_claim_is_held_within_its_lease_and_taken_over_after_it_by_the_same_request_only(
    book: Ledger, clock: FixedClock
) -> None:
    start = clock.now()
    assert claim(book, "k", start) is None

    assert claim(book, "k", start + LEASE).status is None  # held: in progress
    assert claim(book, "k", start + LEASE + timedelta(seconds=1), body_hash="body-2").body_hash == "body-1"
    assert claim(book, "k", start + LEASE + timedelta(seconds=1)) is None  # taken over


def test_a_run_whose_claim_was_taken_over_records_nothing(book: Ledger, clock: FixedClock) -> None:
    stale, fresh = clock.now(), clock.now() + LEASE + timedelta(seconds=1)
    claim(book, "k", stale)
    claim(book, "k", fresh)

    assert not finish(book, "k", stale)
    assert claim(book, "k", fresh + timedelta(seconds=1)).status is None  # still the fresh run's
    assert finish(book, "k", fresh)
    assert claim(book, "k", fresh + timedelta(seconds=2)).status == 201


def test_a_finished_key_is_never_taken_over(book: Ledger, clock: FixedClock) -> None:
    claim(book, "k", clock.now())
    finish(book, "k", clock.now())

    assert claim(book, "k", clock.now() + timedelta(days=30)).status == 201


@pytest.mark.postgresql_only
def test_of_two_concurrent_takeovers_of_an_abandoned_claim_only_one_wins(book: Ledger, clock: FixedClock) -> None:
    claim(book, "k", clock.now())
    later = clock.now() + LEASE + timedelta(seconds=1)
    first_took_over, commit_first = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def first(uow: UnitOfWork) -> Any:
        found = uow.api.claim_request("k", API_KEY, "POST", "/v1/contracts", "body-1", now=later, lease=LEASE)
        first_took_over.set()
        assert commit_first.wait(10)
        return found

    def run(name: str, work: Any) -> None:
        results[name] = book.transaction(work)

    threads = [threading.Thread(target=run, args=("first", first))]
    threads[0].start()
    assert first_took_over.wait(10)
    threads.append(threading.Thread(target=run, args=("second", lambda uow: retried_claim(uow, later))))
    threads[1].start()
    wait_for_a_lock_wait(book)  # the second retry waits on the first one's row lock
    commit_first.set()
    for thread in threads:
        thread.join(10)

    assert results["first"] is None  # took the key over
    assert results["second"] is not None and results["second"].status is None  # answers 409 in progress
    assert claim(book, "k", later + timedelta(seconds=1)).claimed_at == later


def retried_claim(uow: UnitOfWork, at: datetime) -> Any:
    return uow.api.claim_request("k", API_KEY, "POST", "/v1/contracts", "body-1", now=at, lease=LEASE)


def wait_for_a_lock_wait(book: Ledger) -> None:
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(200):
        with book.database.engine.connect() as connection:
            if connection.execute(query).scalar_one():
                return
        time.sleep(0.025)
    raise AssertionError("the second takeover never waited for the first")


def test_pruning_removes_finished_keys_and_abandoned_claims_older_than_the_retention_only(
    book: Ledger, clock: FixedClock
) -> None:
    now = clock.now()
    for key, age, finished in [
        ("finished 8 days ago", timedelta(days=8), True),
        ("finished 6 days ago", timedelta(days=6), True),
        ("abandoned 8 days ago", timedelta(days=8), False),
        ("in progress for 10 s", timedelta(seconds=10), False),
    ]:
        claim(book, key, now - age)
        if finished:
            finish(book, key, now - age)

    pruned = prune_idempotency_keys(book, now, retention=timedelta(days=7))
    assert (pruned.finished, pruned.abandoned, pruned.before) == (1, 1, now - timedelta(days=7))
    assert keys(book) == {"finished 6 days ago", "in progress for 10 s"}

    # However short the retention, a claim within its lease is kept: its request may still run.
    pruned = prune_idempotency_keys(book, now, retention=timedelta(seconds=1))
    assert (pruned.finished, pruned.abandoned) == (1, 0)
    assert keys(book) == {"in progress for 10 s"}


def test_a_pruned_key_is_new_again(book: Ledger, clock: FixedClock) -> None:
    first_use = clock.now()
    claim(book, "k", first_use)
    finish(book, "k", first_use)
    later = first_use + timedelta(days=8)

    prune_idempotency_keys(book, later)
    assert claim(book, "k", later, body_hash="another body") is None


def test_a_claim_released_while_another_request_meets_it_leaves_the_key_to_that_request(
    book: Ledger, clock: FixedClock
) -> None:
    """The claim, its take-over and its read are statements of their own: the claim in
    the way may be released (its request failed) before it is read. The key is then free."""
    first_claimed_at = clock.now()
    assert claim(book, "k-released", first_claimed_at) is None
    engine = book.database.engine
    released: list[bool] = []

    def release_before_the_read(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not released and statement.lstrip().startswith("SELECT") and "idempotent_requests" in statement:
            released.append(True)
            with engine.connect() as other, other.begin():
                other.execute(idempotent_requests.delete().where(idempotent_requests.c.key == "k-released"))

    event.listen(engine, "before_cursor_execute", release_before_the_read)
    try:
        earlier = book.autocommit(
            lambda uow: uow.api.claim_request(
                "k-released", API_KEY, "POST", "/v1/contracts", "body-1", now=clock.now(), lease=LEASE
            )
        )
    finally:
        event.remove(engine, "before_cursor_execute", release_before_the_read)
    assert released == [True]
    assert earlier is None  # this request holds the key now
    assert keys(book) == {"k-released"}
