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
