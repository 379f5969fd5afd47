"""The ledger core's rules, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from ledger import AccountSpec, AccountType, EntryRequest, FixedClock, Ledger, credit, debit
from ledger.db.schema import balances, entries, postings
from ledger.errors import (
    AccountConflict,
    BelowFloor,
    CannotReverseReversal,
    CurrencyMismatch,
    EntryAlreadyReversed,
    IdempotencyConflict,
    InvalidRequest,
    UnknownAccount,
    UnknownEntry,
)

PSP = "assets:psp:stripe"
ESCROW = "liabilities:escrow:ms_1"
FEES = "revenue:fees:service"


@pytest.fixture
def chart(book: Ledger) -> Ledger:
    book.open_account(AccountSpec(PSP, AccountType.ASSET, "USD"))
    book.open_account(AccountSpec(ESCROW, AccountType.LIABILITY, "USD", floor=0))
    book.open_account(AccountSpec(FEES, AccountType.REVENUE, "USD", slots=8))
    return book


def fund(key: str, amount: int, **extra: object) -> EntryRequest:
    return EntryRequest(key, "escrow.fund", (debit(PSP, amount, "USD"), credit(ESCROW, amount, "USD")), **extra)  # type: ignore[arg-type]


def release(key: str, amount: int) -> EntryRequest:
    return EntryRequest(key, "escrow.release", (debit(ESCROW, amount, "USD"), credit(FEES, amount, "USD")))


def count(book: Ledger, table: object) -> int:
    return book.transaction(
        lambda uow: int(uow.connection.execute(select(func.count()).select_from(table)).scalar_one())
    )  # type: ignore[arg-type]


def snapshot(book: Ledger) -> tuple[int, int, int, int, int]:
    return (
        count(book, entries),
        count(book, postings),
        book.balance(PSP, "USD"),
        book.balance(ESCROW, "USD"),
        book.balance(FEES, "USD"),
    )


def test_opening_an_existing_account_with_the_same_attributes_is_a_no_op(book: Ledger) -> None:
    first = book.open_account(AccountSpec(ESCROW, AccountType.LIABILITY, "USD", floor=0, metadata={"ms": "ms_1"}))
    again = book.open_account(AccountSpec(ESCROW, AccountType.LIABILITY, "USD", floor=0, metadata={"ms": "ms_1"}))
    assert again == first
    with pytest.raises(AccountConflict):
        book.open_account(AccountSpec(ESCROW, AccountType.LIABILITY, "USD"))
    # The same code in another currency is another account.
    assert book.open_account(AccountSpec(ESCROW, AccountType.LIABILITY, "EUR", floor=0)).id != first.id


def test_posting_moves_stored_balances_on_each_accounts_normal_side(chart: Ledger, clock: FixedClock) -> None:
    entry = chart.post(fund("fund-1", 100_000, refs={"milestone": "ms_1"}, metadata={"by": "test"}))
    assert entry.id > 0
    assert entry.effective_at == clock.now() == entry.recorded_at
    assert entry.refs == {"milestone": "ms_1"}
    assert chart.balance(PSP, "USD") == 100_000  # asset: debit-normal
    assert chart.balance(ESCROW, "USD") == 100_000  # liability: credit-normal
    assert chart.entry(entry.id) == entry


def test_unknown_account_is_refused_and_nothing_is_written(chart: Ledger) -> None:
    before = snapshot(chart)
    with pytest.raises(UnknownAccount, match="liabilities:escrow:ms_404"):
        chart.post(EntryRequest("k", "x", (debit(PSP, 5, "USD"), credit("liabilities:escrow:ms_404", 5, "USD"))))
    assert snapshot(chart) == before


def test_an_amount_in_another_currency_than_the_account_is_refused(chart: Ledger) -> None:
    chart.open_account(AccountSpec(PSP, AccountType.ASSET, "EUR"))
    with pytest.raises(CurrencyMismatch, match="holds USD, not EUR"):
        chart.post(EntryRequest("k", "x", (debit(PSP, 5, "EUR"), credit(ESCROW, 5, "EUR"))))


def test_same_key_and_same_request_returns_the_original_and_writes_nothing(chart: Ledger, clock: FixedClock) -> None:
    original = chart.post(fund("fund-1", 100_000))
    before = snapshot(chart)
    clock.advance(timedelta(minutes=5))
    replayed = chart.post(fund("fund-1", 100_000))
    assert replayed == original
    assert replayed.effective_at == original.effective_at
    assert snapshot(chart) == before


def test_same_key_with_a_different_request_is_a_conflict(chart: Ledger) -> None:
    original = chart.post(fund("fund-1", 100_000))
    before = snapshot(chart)
    with pytest.raises(IdempotencyConflict) as caught:
        chart.post(fund("fund-1", 99_999))
    assert caught.value.data["entry_id"] == original.id
    assert snapshot(chart) == before


def test_a_balance_never_goes_below_its_floor(chart: Ledger) -> None:
    chart.post(fund("fund-1", 1_000))
    before = snapshot(chart)
    with pytest.raises(BelowFloor) as caught:
        chart.post(release("release-1", 1_001))
    assert caught.value.data == {"account": ESCROW, "currency": "USD", "floor": 0, "balance_after": -1}
    assert snapshot(chart) == before
    chart.post(release("release-2", 1_000))
    assert chart.balance(ESCROW, "USD") == 0


def test_a_batch_is_all_or_nothing(chart: Ledger) -> None:
    before = snapshot(chart)
    with pytest.raises(BelowFloor):
        chart.post_batch([fund("a", 500), release("b", 400), release("c", 200)])
    assert snapshot(chart) == before
    posted = chart.post_batch([fund("a", 500), release("b", 400), release("c", 100)])
    assert [e.idempotency_key for e in posted] == ["a", "b", "c"]
    assert chart.balance(ESCROW, "USD") == 0
    assert chart.balance(FEES, "USD") == 500


def test_a_batch_may_not_dip_below_a_floor_even_if_it_ends_above(chart: Ledger) -> None:
    # Posted one by one, the release would be refused; in a batch it is refused too.
    with pytest.raises(BelowFloor):
        chart.post_batch([release("early", 300), fund("late", 1_000)])
    assert chart.balance(ESCROW, "USD") == 0


def test_a_batch_may_mix_replays_and_new_entries(chart: Ledger) -> None:
    first = chart.post(fund("a", 500))
    posted = chart.post_batch([fund("a", 500), fund("b", 700), fund("b", 700)])
    assert posted[0] == first
    assert posted[1] == posted[2]
    assert chart.balance(ESCROW, "USD") == 1_200
    with pytest.raises(IdempotencyConflict):
        chart.post_batch([fund("c", 1), fund("a", 501)])
    assert chart.balance(ESCROW, "USD") == 1_200


def test_reversal_undoes_an_entry_and_links_to_it(chart: Ledger) -> None:
    funded = chart.post(fund("fund-1", 1_000))
    reversal = chart.reverse(funded.id, idempotency_key="reverse-fund-1")
    assert reversal.reverses_entry_id == funded.id
    assert reversal.kind == "escrow.fund.reversal"
    assert {(p.account, p.side.value) for p in reversal.postings} == {(PSP, "credit"), (ESCROW, "debit")}
    assert chart.balance(ESCROW, "USD") == 0
    assert chart.balance(PSP, "USD") == 0
    # The original is still there, unchanged: nothing is edited.
    assert chart.entry(funded.id) == funded


def test_an_entry_is_reversed_at_most_once(chart: Ledger) -> None:
    funded = chart.post(fund("fund-1", 1_000))
    reversal = chart.reverse(funded.id, idempotency_key="r1")
    assert chart.reverse(funded.id, idempotency_key="r1") == reversal  # a retry
    with pytest.raises(EntryAlreadyReversed):
        chart.reverse(funded.id, idempotency_key="r2")
    with pytest.raises(CannotReverseReversal):
        chart.reverse(reversal.id, idempotency_key="r3")
    with pytest.raises(UnknownEntry):
        chart.reverse(987654, idempotency_key="r4")


def test_a_reversal_respects_floors(chart: Ledger) -> None:
    funded = chart.post(fund("fund-1", 1_000))
    chart.post(release("release-1", 600))
    with pytest.raises(BelowFloor):
        chart.reverse(funded.id, idempotency_key="r1")
    assert chart.balance(ESCROW, "USD") == 400


def test_balance_as_of_counts_entries_effective_strictly_before(chart: Ledger, clock: FixedClock) -> None:
    t0 = clock.now()
    chart.post(fund("a", 100, effective_at=t0))
    chart.post(fund("b", 20, effective_at=t0 + timedelta(days=1)))
    chart.post(fund("c", 3, effective_at=t0 - timedelta(days=1)))  # back-dated
    assert chart.balance(ESCROW, "USD", as_of=t0) == 3
    assert chart.balance(ESCROW, "USD", as_of=t0 + timedelta(microseconds=1)) == 103
    assert chart.balance(ESCROW, "USD", as_of=t0 + timedelta(days=2)) == 123
    assert chart.balance(ESCROW, "USD") == 123
    with pytest.raises(InvalidRequest, match="time zone"):
        chart.balance(ESCROW, "USD", as_of=t0.replace(tzinfo=None))


def test_account_entries_are_paginated_with_a_cursor(chart: Ledger) -> None:
    chart.open_account(AccountSpec("liabilities:escrow:ms_2", AccountType.LIABILITY, "USD", floor=0))
    posted = []
    for i in range(7):
        posted.append(chart.post(fund(f"f{i}", 10 + i)))
        chart.post(EntryRequest(f"o{i}", "x", (debit(PSP, 1, "USD"), credit("liabilities:escrow:ms_2", 1, "USD"))))
    seen = []
    cursor = None
    while True:
        page = chart.account_entries(ESCROW, "USD", after=cursor, limit=3)
        seen.extend(page.entries)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == posted
    whole = chart.journal(limit=1000)
    assert [e.id for e in whole.entries] == sorted(e.id for e in whole.entries)
    assert len(whole.entries) == 14 and whole.next_cursor is None


def test_a_hot_account_spreads_its_balance_over_slots(chart: Ledger) -> None:
    chart.post(fund("fund", 10_000))
    for i in range(40):
        chart.post(release(f"release-{i}", 100))
    assert chart.balance(FEES, "USD") == 4_000
    account = chart.account(FEES, "USD")
    slots_used = chart.transaction(
        lambda uow: uow.connection.execute(
            select(func.count())
            .select_from(balances)
            .where(balances.c.account_id == account.id, balances.c.balance != 0)
        ).scalar_one()
    )
    assert slots_used > 1


def test_an_entry_may_span_currencies_when_each_balances(chart: Ledger) -> None:
    chart.open_account(AccountSpec(PSP, AccountType.ASSET, "EUR"))
    chart.open_account(AccountSpec(ESCROW, AccountType.LIABILITY, "EUR", floor=0))
    chart.post(
        EntryRequest(
            "two-currencies",
            "escrow.fund",
            (debit(PSP, 100, "USD"), credit(ESCROW, 100, "USD"), debit(PSP, 7, "EUR"), credit(ESCROW, 7, "EUR")),
        )
    )
    assert chart.balance(ESCROW, "USD") == 100
    assert chart.balance(ESCROW, "EUR") == 7


def test_a_batch_may_name_thousands_of_accounts_none_of_them_cached(book: Ledger) -> None:
    codes = [f"assets:many:{i}" for i in range(1_200)]
    book.post_batch([])  # nothing to write, nothing refused
    for code in codes:
        book.open_account(AccountSpec(code, AccountType.ASSET, "USD"))
    book.database.account_cache.clear()  # a fresh process: every account is looked up
    pairs = list(zip(codes[::2], codes[1::2], strict=True))
    posted = book.post_batch(
        [EntryRequest(f"m{i}", "t", (debit(a, 1, "USD"), credit(b, 1, "USD"))) for i, (a, b) in enumerate(pairs)]
    )
    assert len(posted) == 600
    assert book.balance(codes[0], "USD") == 1 and book.balance(codes[1], "USD") == -1
