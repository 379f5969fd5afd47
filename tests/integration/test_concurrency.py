"""Parallel writers on real PostgreSQL: no lost updates, no deadlocks, floors hold."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from ledger import AccountSpec, AccountType, EntryRequest, Ledger, credit, debit
from ledger.errors import BelowFloor
from tests.conftest import CONCURRENCY_REPORT

pytestmark = pytest.mark.postgresql_only

T = TypeVar("T")
THREADS = 8
WALLETS = [f"liabilities:freelancer:f{i}:available" for i in range(4)]
BANK = "assets:psp:stripe"
HOT = "revenue:fees:service"


def all_at_once(count: int, work: Callable[[int], T]) -> list[T]:
    """Run `work(i)` on `count` threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def start(i: int) -> T:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(start, range(count)))


@pytest.fixture
def wallets(book: Ledger) -> Ledger:
    book.open_account(AccountSpec(BANK, AccountType.ASSET, "USD"))
    book.open_account(AccountSpec(HOT, AccountType.REVENUE, "USD", slots=16))
    for code in WALLETS:
        book.open_account(AccountSpec(code, AccountType.LIABILITY, "USD", floor=0))
    return book


def transfer(key: str, source: str, target: str, amount: int, fee: int) -> EntryRequest:
    return EntryRequest(
        key,
        "test.transfer",
        (debit(source, amount + fee, "USD"), credit(target, amount, "USD"), credit(HOT, fee, "USD")),
    )


def test_parallel_transfers_conserve_money_and_respect_floors(wallets: Ledger) -> None:
    book = wallets
    opening = 20_000
    book.post_batch(
        [
            EntryRequest(f"open-{c}", "test.open", (debit(BANK, opening, "USD"), credit(c, opening, "USD")))
            for c in WALLETS
        ]
    )
    retries_before = book.database.retries

    def worker(thread: int) -> tuple[list[str], list[tuple[str, BelowFloor]]]:
        rng = random.Random(thread)
        done, refused = [], []
        for n in range(60):
            source, target = rng.sample(WALLETS, 2)
            key = f"t{thread}-{n}"
            try:
                book.post(transfer(key, source, target, rng.randint(1, 1_500), rng.randint(1, 50)))
                done.append(key)
            except BelowFloor as refusal:
                refused.append((key, refusal))
        return done, refused

    results = all_at_once(THREADS, worker)
    done = [key for d, _ in results for key in d]
    refused = [r for _, rs in results for r in rs]
    retries = book.database.retries - retries_before

    balances = {code: book.balance(code, "USD") for code in WALLETS}
    fees = book.balance(HOT, "USD")
    assert sum(balances.values()) + fees == opening * len(WALLETS), "money was created or lost"
    assert all(balance >= 0 for balance in balances.values())
    assert len(done) + len(refused) == THREADS * 60
    # Every transfer reported done is in the journal exactly once; no refused one is.
    journal_keys = [e.idempotency_key for e in book.journal(limit=1000).entries]
    assert sorted(k for k in journal_keys if k.startswith("t")) == sorted(done)
    for _key, refusal in refused:
        assert refusal.data["floor"] == 0 and refusal.data["balance_after"] < 0
    assert book.audit().ok
    CONCURRENCY_REPORT.append(
        f"{THREADS} threads x 60 transfers: {len(done)} posted, {len(refused)} refused by a floor, "
        f"{retries} transaction retries"
    )


def test_parallel_transfers_that_can_all_succeed_all_do(wallets: Ledger) -> None:
    book = wallets
    book.post_batch(
        [EntryRequest(f"open-{c}", "test.open", (debit(BANK, 10**9, "USD"), credit(c, 10**9, "USD"))) for c in WALLETS]
    )

    def worker(thread: int) -> int:
        rng = random.Random(100 + thread)
        for n in range(50):
            source, target = rng.sample(WALLETS, 2)
            book.post(transfer(f"u{thread}-{n}", source, target, rng.randint(1, 1000), 7))
        return 50

    assert sum(all_at_once(THREADS, worker)) == THREADS * 50
    assert book.balance(HOT, "USD") == THREADS * 50 * 7
    assert book.audit().ok


def test_the_same_key_posted_in_parallel_moves_money_once(wallets: Ledger) -> None:
    request = EntryRequest("same-key", "test.fund", (debit(BANK, 500, "USD"), credit(WALLETS[0], 500, "USD")))
    entries = all_at_once(THREADS, lambda _: wallets.post(request))
    assert len({entry.id for entry in entries}) == 1
    assert wallets.balance(WALLETS[0], "USD") == 500


def test_the_last_money_of_a_floored_account_is_spent_once(wallets: Ledger) -> None:
    wallets.post(EntryRequest("fund", "test.fund", (debit(BANK, 1_000, "USD"), credit(WALLETS[0], 1_000, "USD"))))

    def spend(i: int) -> bool:
        try:
            wallets.post(transfer(f"spend-{i}", WALLETS[0], WALLETS[1], 990, 10))
            return True
        except BelowFloor:
            return False

    assert sorted(all_at_once(THREADS, spend)) == [False] * (THREADS - 1) + [True]
    assert wallets.balance(WALLETS[0], "USD") == 0


def test_the_same_account_opened_in_parallel_is_one_account(book: Ledger) -> None:
    spec = AccountSpec("liabilities:escrow:ms_race", AccountType.LIABILITY, "USD", floor=0)
    opened = all_at_once(THREADS, lambda _: book.open_account(spec))
    assert len({account.id for account in opened}) == 1
