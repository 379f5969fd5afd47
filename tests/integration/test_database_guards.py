"""The database itself refuses what no writer may do, even raw SQL that bypasses the code."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger import AccountSpec, AccountType, EntryRequest, Ledger, credit, debit


@pytest.fixture
def posted(book: Ledger) -> Ledger:
    book.open_account(AccountSpec("assets:a", AccountType.ASSET, "USD"))
    book.open_account(AccountSpec("assets:b", AccountType.ASSET, "USD"))
    book.open_account(AccountSpec("assets:e", AccountType.ASSET, "EUR"))
    book.post(EntryRequest("k1", "t", (debit("assets:a", 500, "USD"), credit("assets:b", 500, "USD"))))
    return book


def run_raw(book: Ledger, *statements: str) -> None:
    with book.database.engine.connect() as connection, connection.begin():
        for statement in statements:
            connection.execute(text(statement))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE postings SET amount = amount + 1",
        "DELETE FROM postings",
        "UPDATE entries SET kind = 'edited'",
        "DELETE FROM entries",
    ],
)
def test_entries_and_postings_cannot_be_updated_or_deleted(posted: Ledger, statement: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        run_raw(posted, statement)
    assert posted.audit().ok


@pytest.mark.parametrize("amount", [0, -500])
def test_posting_amounts_must_be_positive(posted: Ledger, amount: int) -> None:
    with pytest.raises(IntegrityError):
        run_raw(
            posted,
            "INSERT INTO entries (idempotency_key, request_hash, kind, effective_at, recorded_at, refs, metadata, actor)"
            " VALUES ('raw', 'x', 'raw', '2026-01-01 00:00:00', '2026-01-01 00:00:00', '{}', '{}', 'cli')",
            f"INSERT INTO postings (entry_id, account_id, currency, side, amount)"
            f" SELECT max(id), 1, 'USD', 'debit', {amount} FROM entries",
        )


def test_a_postings_currency_must_be_its_accounts(posted: Ledger) -> None:
    with pytest.raises(IntegrityError):
        run_raw(
            posted,
            "INSERT INTO entries (idempotency_key, request_hash, kind, effective_at, recorded_at, refs, metadata, actor)"
            " VALUES ('raw', 'x', 'raw', '2026-01-01 00:00:00', '2026-01-01 00:00:00', '{}', '{}', 'cli')",
            "INSERT INTO postings (entry_id, account_id, currency, side, amount)"
            " SELECT max(id), 1, 'EUR', 'debit', 5 FROM entries",
        )


@pytest.mark.postgresql_only
def test_postgresql_refuses_an_unbalanced_entry_at_commit(posted: Ledger) -> None:
    insert_entry = (
        "INSERT INTO entries (idempotency_key, request_hash, kind, effective_at, recorded_at, refs, metadata, actor)"
        " VALUES ('raw', 'x', 'raw', now(), now(), '{}', '{}', 'cli')"
    )
    a, b = posted.account("assets:a", "USD").id, posted.account("assets:b", "USD").id

    def leg(account: int, side: str, amount: int) -> str:
        return (
            "INSERT INTO postings (entry_id, account_id, currency, side, amount)"
            f" SELECT max(id), {account}, 'USD', '{side}', {amount} FROM entries"
        )

    with pytest.raises(IntegrityError, match="does not balance in USD: debits 100, credits 99"):
        run_raw(posted, insert_entry, leg(a, "debit", 100), leg(b, "credit", 99))
    # Balanced across several statements is fine: the check runs at commit.
    run_raw(posted, insert_entry, leg(a, "debit", 100), leg(b, "credit", 60), leg(b, "credit", 40))
    with pytest.raises(IntegrityError, match="does not balance"):
        run_raw(posted, leg(a, "debit", 1), leg(b, "credit", 2))  # appended to the committed entry


@pytest.mark.postgresql_only
def test_postgresql_refuses_truncating_the_journal(posted: Ledger) -> None:
    for table in ("entries", "postings"):
        with pytest.raises(DBAPIError, match="append-only"):
            run_raw(posted, f"TRUNCATE {table} CASCADE")
