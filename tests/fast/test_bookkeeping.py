"""Posting, reversal and batch rules of the core, on the in-memory ledger."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.accounts import AccountSpec, AccountType
from ledger.clock import FixedClock
from ledger.errors import (
    BelowFloor,
    CannotReverseReversal,
    CurrencyMismatch,
    EntryAlreadyReversed,
    IdempotencyConflict,
    InvalidRequest,
    UnbalancedEntry,
)
from ledger.journal import EntryRequest, credit, debit
from ledger.service import Ledger

CASH = "assets:cash"
WALLET = "liabilities:wallet:u1"


@pytest.fixture
def opened(book: Ledger) -> Ledger:
    book.open_account(AccountSpec(CASH, AccountType.ASSET, "USD"))
    book.open_account(AccountSpec(WALLET, AccountType.LIABILITY, "USD", floor=0))
    return book


def deposit(key: str, amount: int) -> EntryRequest:
    return EntryRequest(key, "wallet.deposit", (debit(CASH, amount, "USD"), credit(WALLET, amount, "USD")))


def spend(key: str, amount: int) -> EntryRequest:
    return EntryRequest(key, "wallet.spend", (debit(WALLET, amount, "USD"), credit(CASH, amount, "USD")))


def test_a_posted_entry_moves_both_balances_and_the_audit_holds(opened: Ledger) -> None:
    opened.post(deposit("d1", 1_000))
    assert (opened.balance(CASH, "USD"), opened.balance(WALLET, "USD")) == (1_000, 1_000)
    assert opened.audit().ok


def test_an_unbalanced_entry_is_refused_before_it_reaches_the_journal(opened: Ledger) -> None:
    with pytest.raises(UnbalancedEntry):
        opened.post(EntryRequest("u", "x", (debit(CASH, 10, "USD"), credit(WALLET, 9, "USD"))))
    assert opened.journal().entries == []


def test_a_replayed_post_returns_the_original_and_a_changed_one_conflicts(opened: Ledger, clock: FixedClock) -> None:
    first = opened.post(deposit("d1", 1_000))
    clock.advance(timedelta(minutes=1))
    assert opened.post(deposit("d1", 1_000)) == first
    with pytest.raises(IdempotencyConflict):
        opened.post(deposit("d1", 2_000))
    assert opened.balance(WALLET, "USD") == 1_000


def test_a_floor_refuses_the_whole_batch(opened: Ledger) -> None:
    opened.post(deposit("d1", 100))
    with pytest.raises(BelowFloor):
        opened.post_batch([deposit("d2", 50), spend("s1", 200)])
    assert opened.balance(WALLET, "USD") == 100 and len(opened.journal().entries) == 1


def test_a_batch_repeats_a_key_only_with_the_same_request(opened: Ledger) -> None:
    entries = opened.post_batch([deposit("d1", 10), deposit("d1", 10), deposit("d2", 5)])
    assert entries[0].id == entries[1].id != entries[2].id and opened.balance(WALLET, "USD") == 15
    with pytest.raises(IdempotencyConflict):
        opened.post_batch([deposit("d3", 10), deposit("d3", 11)])


def test_a_reversal_undoes_an_entry_once_and_cannot_itself_be_reversed(opened: Ledger) -> None:
    entry = opened.post(deposit("d1", 500))
    reversal = opened.reverse(entry.id, idempotency_key="r1")
    assert reversal.kind == "wallet.deposit.reversal" and reversal.reverses_entry_id == entry.id
    assert opened.balance(WALLET, "USD") == 0
    assert opened.reverse(entry.id, idempotency_key="r1") == reversal  # a replay
    with pytest.raises(EntryAlreadyReversed):
        opened.reverse(entry.id, idempotency_key="r2")
    with pytest.raises(CannotReverseReversal):
        opened.reverse(reversal.id, idempotency_key="r3")
    assert opened.audit().ok


def test_money_that_moved_on_cannot_be_pulled_back_by_a_reversal(opened: Ledger) -> None:
    entry = opened.post(deposit("d1", 500))
    opened.post(spend("s1", 400))
    with pytest.raises(BelowFloor):
        opened.reverse(entry.id, idempotency_key="r1")


def test_a_posting_in_another_currency_than_its_account_is_refused(opened: Ledger) -> None:
    with pytest.raises(CurrencyMismatch):
        opened.post(EntryRequest("e", "x", (debit(CASH, 10, "EUR"), credit(WALLET, 10, "EUR"))))


def test_balances_as_of_a_time_count_only_entries_effective_before_it(opened: Ledger, clock: FixedClock) -> None:
    start = clock.now()
    opened.post(deposit("d1", 100))
    clock.advance(timedelta(days=1))
    opened.post(deposit("d2", 50))
    assert opened.balance(WALLET, "USD", as_of=start) == 0
    assert opened.balance(WALLET, "USD", as_of=start + timedelta(hours=1)) == 100
    assert opened.balance(WALLET, "USD") == 150


def test_journal_pages_carry_a_cursor_until_the_last(opened: Ledger) -> None:
    opened.post_batch([deposit(f"d{i}", 10) for i in range(5)])
    first = opened.journal(limit=2)
    second = opened.journal(after=first.next_cursor, limit=2)
    last = opened.journal(after=second.next_cursor, limit=2)
    keys = [e.idempotency_key for page in (first, second, last) for e in page.entries]
    assert keys == [f"d{i}" for i in range(5)] and last.next_cursor is None
    with pytest.raises(InvalidRequest):
        opened.journal(limit=0)


def test_a_read_only_transaction_may_not_write(opened: Ledger) -> None:
    with pytest.raises(RuntimeError):
        opened.transaction(
            lambda uow: uow.journal.write([deposit("d1", 1)], recorded_at=uow.clock.now()), read_only=True
        )
    assert opened.journal().entries == []
