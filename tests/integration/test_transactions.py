"""Retryable transactions: lost races are run again, a bounded number of times, and counted."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from ledger import AccountSpec, AccountType, EntryRequest, Ledger, UnitOfWork, credit, debit, post_entry
from ledger.errors import RetriesExhausted


class SerializationFailure(Exception):
    sqlstate = "40001"


def lost_race() -> OperationalError:
    return OperationalError("COMMIT", {}, SerializationFailure("could not serialize access"))


def test_a_transaction_that_loses_a_race_is_retried_and_counted(book: Ledger) -> None:
    book.open_account(AccountSpec("assets:a", AccountType.ASSET, "USD"))
    book.open_account(AccountSpec("assets:b", AccountType.ASSET, "USD"))
    attempts = []

    def work(uow: UnitOfWork) -> int:
        entry = post_entry(uow, EntryRequest("k", "t", (debit("assets:a", 5, "USD"), credit("assets:b", 5, "USD"))))
        attempts.append(entry.id)
        if len(attempts) < 3:
            raise lost_race()  # rolls back the entry just written
        return entry.id

    before = book.database.retries
    book.transaction(work)
    assert len(attempts) == 3
    assert book.database.retries - before == 2
    assert book.balance("assets:a", "USD") == 5  # posted once, not three times


def test_retries_are_bounded(book: Ledger) -> None:
    def always_loses(uow: UnitOfWork) -> None:
        raise lost_race()

    book.database.max_attempts = 3
    with pytest.raises(RetriesExhausted, match="after 3 attempts"):
        book.transaction(always_loses)


def test_other_database_errors_are_not_retried(book: Ledger) -> None:
    calls = []

    def broken(uow: UnitOfWork) -> None:
        calls.append(1)
        raise OperationalError("SELECT", {}, Exception("disk I/O error"))

    with pytest.raises(OperationalError):
        book.transaction(broken)
    assert calls == [1]


def test_autocommit_work_commits_each_statement_as_it_runs(book: Ledger) -> None:
    """No transaction holds autocommit work together: a statement that ran stays, whatever follows."""

    def add_then_fail(uow: UnitOfWork) -> None:
        uow.api.add_key("key_auto", "marketplace", "hash-auto")
        raise RuntimeError("after the statement")

    with pytest.raises(RuntimeError):
        book.autocommit(add_then_fail)
    assert [k.id for k in book.transaction(lambda uow: uow.api.all_keys())] == ["key_auto"]
    assert book.autocommit(lambda uow: uow.api.key_by_hash("hash-auto"), read_only=True) is not None


def test_a_transaction_after_autocommit_work_is_one_transaction_again(book: Ledger) -> None:
    book.autocommit(lambda uow: uow.api.add_key("key_auto", "marketplace", "hash-auto"))

    def add_then_fail(uow: UnitOfWork) -> None:
        uow.api.add_key("key_rolled_back", "marketplace", "hash-rolled-back")
        raise RuntimeError("rolls back")

    with pytest.raises(RuntimeError):
        book.transaction(add_then_fail)
    assert [k.id for k in book.transaction(lambda uow: uow.api.all_keys())] == ["key_auto"]
