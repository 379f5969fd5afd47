"""The contract of the accounting stores (accounts, journal, fees), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger.accounts import AccountSpec, AccountType, Side
from ledger.clock import FixedClock
from ledger.errors import (
    AccountConflict,
    BelowFloor,
    CurrencyMismatch,
    EntryAlreadyReversed,
    IdempotencyConflict,
    UnknownAccount,
    UnknownEntry,
)
from ledger.fees.model import NoScheduleInForce
from ledger.fees.rule import fee_for_payment, fee_for_refund
from ledger.fees.schedule import CLASSIC, shipped_schedule
from ledger.journal import EntryRequest, credit, debit
from ledger.ports.unit_of_work import Transactions, UnitOfWork
from tests.contracts.rows import CASH, OTHER, OWED, open_books, request, withdrawal, write_on_open_books

# --- accounts ------------------------------------------------------------------------------


def test_opening_an_account_again_with_the_same_attributes_returns_it(db: Transactions) -> None:
    first = db.transaction(lambda uow: uow.accounts.open(OWED))
    again = db.transaction(lambda uow: uow.accounts.open(OWED))
    assert again == first
    assert (first.code, first.currency, first.floor, first.slots, first.normal_side) == (
        OWED.code,
        "USD",
        0,
        1,
        Side.CREDIT,
    )


def test_opening_an_account_with_other_attributes_is_a_conflict(db: Transactions) -> None:
    db.transaction(lambda uow: uow.accounts.open(OWED))
    other = AccountSpec(OWED.code, AccountType.LIABILITY, "USD", floor=None, normal_side=Side.CREDIT)
    with pytest.raises(AccountConflict):
        db.transaction(lambda uow: uow.accounts.open(other))


def test_one_code_in_two_currencies_is_two_accounts(db: Transactions) -> None:
    eur = AccountSpec(CASH.code, AccountType.ASSET, "EUR", normal_side=Side.DEBIT)
    usd_account, eur_account = db.transaction(lambda uow: (uow.accounts.open(CASH), uow.accounts.open(eur)))
    assert usd_account.id != eur_account.id
    found = db.transaction(lambda uow: uow.accounts.all_with_codes([CASH.code]))
    assert [(a.id, a.currency) for a in found] == [(usd_account.id, "USD"), (eur_account.id, "EUR")]


def test_a_missing_account_is_unknown_or_in_another_currency(db: Transactions) -> None:
    db.transaction(lambda uow: uow.accounts.open(CASH))
    with pytest.raises(UnknownAccount):
        db.transaction(lambda uow: uow.accounts.get("assets:nowhere", "USD"))
    with pytest.raises(CurrencyMismatch) as caught:
        db.transaction(lambda uow: uow.accounts.get(CASH.code, "EUR"))
    assert caught.value.data["account_currency"] == "USD"
    assert db.transaction(lambda uow: uow.accounts.find(CASH.code, "EUR")) is None


def test_resolve_finds_many_accounts_and_raises_for_a_missing_one(db: Transactions) -> None:
    db.transaction(open_books)
    found = db.transaction(lambda uow: uow.accounts.resolve([(CASH.code, "USD"), (OWED.code, "USD")]))
    assert {key: a.code for key, a in found.items()} == {(CASH.code, "USD"): CASH.code, (OWED.code, "USD"): OWED.code}
    with pytest.raises(UnknownAccount):
        db.transaction(lambda uow: uow.accounts.resolve([(CASH.code, "USD"), ("assets:gone", "USD")]))


def test_accounts_are_listed_in_opening_order_with_zero_balances(db: Transactions) -> None:
    db.transaction(open_books)

    def read(uow: UnitOfWork) -> tuple[list[str], dict[int, int]]:
        accounts = list(uow.accounts.all())
        return [a.code for a in accounts], uow.accounts.balances_of(accounts)

    codes, balances = db.transaction(read)
    assert codes == [CASH.code, OWED.code, OTHER.code]
    assert sorted(balances.values()) == [0, 0, 0] and len(balances) == 3


def test_accounts_page_newest_first_from_a_cursor(db: Transactions) -> None:
    db.transaction(open_books)
    newest = db.transaction(lambda uow: uow.accounts.newest_first(starting_after=None, limit=2))
    assert [a.code for a in newest] == [OTHER.code, OWED.code]
    rest = db.transaction(lambda uow: uow.accounts.newest_first(starting_after=newest[-1].id, limit=2))
    assert [a.code for a in rest] == [CASH.code]


# --- the journal -----------------------------------------------------------------------------


def test_written_entries_move_balances_on_each_accounts_normal_side(db: Transactions, clock: FixedClock) -> None:
    now = clock.now()

    def work(uow: UnitOfWork) -> list[int]:
        open_books(uow)
        return [e.id for e in uow.journal.write([request("a", 100), request("b", 50)], recorded_at=now)]

    ids = db.transaction(work)
    assert ids[0] < ids[1]
    cash, owed = db.transaction(
        lambda uow: (
            uow.accounts.balance(uow.accounts.get(CASH.code, "USD")),
            uow.accounts.balance(uow.accounts.get(OWED.code, "USD")),
        )
    )
    assert (cash, owed) == (150, 150)
    entry = db.transaction(lambda uow: uow.journal.get(ids[0]))
    assert entry.effective_at == now and entry.recorded_at == now and entry.kind == "test.move"


def test_a_replayed_key_returns_the_original_entry_and_moves_nothing(db: Transactions, clock: FixedClock) -> None:
    original = db.transaction(lambda uow: write_on_open_books(uow, [request("a")], clock.now())[0])
    clock.advance(timedelta(seconds=5))
    [replayed] = db.transaction(lambda uow: uow.journal.write([request("a")], recorded_at=clock.now()))
    assert replayed == original and replayed.recorded_at == original.recorded_at
    assert db.transaction(lambda uow: uow.accounts.balance(uow.accounts.get(OWED.code, "USD"))) == 100


def test_a_key_reused_for_another_request_is_a_conflict(db: Transactions, clock: FixedClock) -> None:
    [original] = db.transaction(lambda uow: write_on_open_books(uow, [request("a")], clock.now()))
    with pytest.raises(IdempotencyConflict) as caught:
        db.transaction(lambda uow: uow.journal.write([request("a", 999)], recorded_at=clock.now()))
    assert caught.value.data["entry_id"] == original.id


def test_going_below_a_floor_is_refused_and_writes_nothing(db: Transactions, clock: FixedClock) -> None:
    db.transaction(lambda uow: write_on_open_books(uow, [request("in", 100)], clock.now()))
    with pytest.raises(BelowFloor) as caught:
        db.transaction(lambda uow: uow.journal.write([withdrawal("out", 130)], recorded_at=clock.now()))
    assert caught.value.data == {"account": OWED.code, "currency": "USD", "floor": 0, "balance_after": -30}
    assert db.transaction(lambda uow: uow.journal.find_by_keys(["out"])) == {}
    assert db.transaction(lambda uow: uow.accounts.balance(uow.accounts.get(OWED.code, "USD"))) == 100


def test_the_floor_holds_at_every_point_of_a_batch_not_only_at_its_end(db: Transactions, clock: FixedClock) -> None:
    db.transaction(open_books)
    with pytest.raises(BelowFloor) as caught:
        db.transaction(
            lambda uow: uow.journal.write([withdrawal("out", 40), request("in", 40)], recorded_at=clock.now())
        )
    assert caught.value.data["balance_after"] == -40


def test_of_two_accounts_below_their_floors_the_first_opened_is_reported(db: Transactions, clock: FixedClock) -> None:
    db.transaction(open_books)
    batch = [withdrawal("x", 10, OTHER.code), withdrawal("y", 20, OWED.code)]
    with pytest.raises(BelowFloor) as caught:
        db.transaction(lambda uow: uow.journal.write(batch, recorded_at=clock.now()))
    assert caught.value.data["account"] == OWED.code


def test_an_unknown_account_in_an_entry_is_refused(db: Transactions, clock: FixedClock) -> None:
    db.transaction(open_books)
    stray = EntryRequest("s", "test.move", (debit(CASH.code, 5, "USD"), credit("liabilities:gone", 5, "USD")))
    with pytest.raises(UnknownAccount):
        db.transaction(lambda uow: uow.journal.write([stray], recorded_at=clock.now()))


def _reversal(key: str, of: int) -> EntryRequest:
    return EntryRequest(
        key, "test.move.reversal", (credit(CASH.code, 100, "USD"), debit(OWED.code, 100, "USD")), reverses_entry_id=of
    )


def test_a_reversal_is_linked_to_the_entry_it_reverses(db: Transactions, clock: FixedClock) -> None:
    [entry] = db.transaction(lambda uow: write_on_open_books(uow, [request("a")], clock.now()))
    assert db.transaction(lambda uow: uow.journal.reversal_of(entry.id)) is None
    [reversal] = db.transaction(lambda uow: uow.journal.write([_reversal("r", entry.id)], recorded_at=clock.now()))
    assert reversal.reverses_entry_id == entry.id
    assert db.transaction(lambda uow: uow.journal.reversal_of(entry.id)) == reversal.id
    assert db.transaction(lambda uow: uow.accounts.balance(uow.accounts.get(OWED.code, "USD"))) == 0


def test_an_entry_is_reversed_at_most_once(db: Transactions, clock: FixedClock) -> None:
    [entry] = db.transaction(lambda uow: write_on_open_books(uow, [request("a")], clock.now()))
    db.transaction(lambda uow: uow.journal.write([_reversal("r1", entry.id)], recorded_at=clock.now()))
    with pytest.raises(EntryAlreadyReversed):
        db.transaction(lambda uow: uow.journal.write([_reversal("r2", entry.id)], recorded_at=clock.now()))
    # The first reversal replayed under its own key is still its original.
    [again] = db.transaction(lambda uow: uow.journal.write([_reversal("r1", entry.id)], recorded_at=clock.now()))
    assert again.idempotency_key == "r1"


def test_reversing_an_entry_that_does_not_exist_is_unknown(db: Transactions, clock: FixedClock) -> None:
    db.transaction(open_books)
    with pytest.raises(UnknownEntry):
        db.transaction(lambda uow: uow.journal.write([_reversal("r", 999)], recorded_at=clock.now()))
    with pytest.raises(UnknownEntry):
        db.transaction(lambda uow: uow.journal.get(999))


def test_entries_are_found_by_key_with_their_request_fingerprint(db: Transactions, clock: FixedClock) -> None:
    db.transaction(lambda uow: write_on_open_books(uow, [request("a"), request("b", 7)], clock.now()))
    found = db.transaction(lambda uow: uow.journal.find_by_keys(["b", "missing"]))
    assert set(found) == {"b"}
    entry, fingerprint = found["b"]
    assert fingerprint == request("b", 7).fingerprint() and entry.postings == request("b", 7).postings


def test_newest_first_pages_back_from_a_cursor_with_filters(db: Transactions, clock: FixedClock) -> None:
    start = clock.now()

    def work(uow: UnitOfWork) -> list[int]:
        open_books(uow)
        requests = [
            request(f"k{i}", kind="even" if i % 2 == 0 else "odd", effective_at=start + timedelta(days=i))
            for i in range(6)
        ]
        return [e.id for e in uow.journal.write(requests, recorded_at=start)]

    ids = db.transaction(work)
    newest = db.transaction(lambda uow: uow.journal.newest_first(starting_after=None, limit=4))
    assert [e.id for e in newest] == ids[::-1][:4]
    after = db.transaction(lambda uow: uow.journal.newest_first(starting_after=ids[3], limit=10, kind="even"))
    assert [e.idempotency_key for e in after] == ["k2", "k0"]
    window = db.transaction(
        lambda uow: uow.journal.newest_first(
            starting_after=None,
            limit=10,
            effective_from=start + timedelta(days=1),
            effective_to=start + timedelta(days=3),
        )
    )
    assert [e.idempotency_key for e in window] == ["k2", "k1"]


def test_pages_follow_journal_order_and_may_keep_to_one_account(db: Transactions, clock: FixedClock) -> None:
    def work(uow: UnitOfWork) -> None:
        open_books(uow)
        other = EntryRequest("o", "test.move", (debit(CASH.code, 5, "USD"), credit(OTHER.code, 5, "USD")))
        uow.journal.write([request("a"), other, request("b"), request("c")], recorded_at=clock.now())

    db.transaction(work)
    everything = db.transaction(lambda uow: uow.journal.page(after_id=None, limit=10))
    assert [e.idempotency_key for e in everything] == ["a", "o", "b", "c"]
    owed = db.transaction(
        lambda uow: uow.journal.page(after_id=everything[0].id, limit=1, account=uow.accounts.get(OWED.code, "USD"))
    )
    assert [e.idempotency_key for e in owed] == ["b"]


def test_balance_as_of_counts_entries_effective_strictly_before(db: Transactions, clock: FixedClock) -> None:
    start = clock.now()
    requests = [request("a", 10, effective_at=start), request("b", 20, effective_at=start + timedelta(days=1))]
    db.transaction(lambda uow: write_on_open_books(uow, requests, start))

    def as_of(at: datetime) -> int:
        return db.transaction(lambda uow: uow.accounts.balance_as_of(uow.accounts.get(OWED.code, "USD"), at))

    assert (as_of(start), as_of(start + timedelta(seconds=1)), as_of(start + timedelta(days=2))) == (0, 10, 30)


# --- fees ----------------------------------------------------------------------------------------


def test_the_classic_schedule_is_in_force_from_1970(db: Transactions) -> None:
    in_force = db.transaction(lambda uow: uow.fees.schedule_at(datetime(2000, 1, 1, tzinfo=UTC)))
    assert in_force.schedule == CLASSIC and in_force.effective_from == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(NoScheduleInForce):
        db.transaction(lambda uow: uow.fees.schedule_at(datetime(1969, 12, 31, tzinfo=UTC)))


def test_the_latest_schedule_started_rules_and_schedules_list_oldest_first(db: Transactions, clock: FixedClock) -> None:
    flat = shipped_schedule("flat-10")
    later = clock.now() + timedelta(days=30)
    added = db.transaction(lambda uow: uow.fees.add_schedule(flat, later, recorded_at=clock.now()))
    assert db.transaction(lambda uow: uow.fees.schedule_at(later - timedelta(seconds=1))).schedule == CLASSIC
    assert db.transaction(lambda uow: uow.fees.schedule_at(later)) == added
    assert db.transaction(lambda uow: uow.fees.schedule_by_id(added.id)).schedule == flat
    assert [s.schedule.name for s in db.transaction(lambda uow: uow.fees.all_schedules())] == [CLASSIC.name, flat.name]


def test_two_schedules_cannot_start_at_the_same_time(
    db: Transactions, clock: FixedClock, duplicate: type[Exception]
) -> None:
    later = clock.now() + timedelta(days=1)
    db.transaction(lambda uow: uow.fees.add_schedule(CLASSIC, later, recorded_at=clock.now()))
    with pytest.raises(duplicate):
        db.transaction(lambda uow: uow.fees.add_schedule(CLASSIC, later, recorded_at=clock.now()))


def _charge(uow: UnitOfWork, key: str, amount: int, at: datetime, kind: str = "charge") -> int | None:
    billed = uow.fees.lock_pair("fr_1", "cl_1", "USD")
    compute = fee_for_payment if kind == "charge" else fee_for_refund
    breakdown = compute(CLASSIC, "USD", billed, amount)
    schedule = uow.fees.schedule_at(at)
    event = uow.fees.add_event(
        key=key,
        request_hash=f"hash-{key}",
        kind=kind,
        freelancer_id="fr_1",
        client_id="cl_1",
        breakdown=breakdown,
        schedule_id=schedule.id,
        effective_at=at,
        recorded_at=at,
    )
    return None if event is None else event.id


def test_fee_events_chain_the_pairs_lifetime_billings(db: Transactions, clock: FixedClock) -> None:
    at = clock.now()
    assert db.transaction(lambda uow: uow.fees.billed("fr_1", "cl_1", "USD")) == 0
    db.transaction(lambda uow: _charge(uow, "c1", 60_000, at))
    db.transaction(lambda uow: _charge(uow, "r1", 10_000, at, kind="refund"))
    assert db.transaction(lambda uow: uow.fees.billed("fr_1", "cl_1", "USD")) == 50_000
    events = db.transaction(lambda uow: uow.fees.events_of_pair("fr_1", "cl_1", "USD"))
    assert [(e.kind, e.breakdown.lifetime_before, e.breakdown.lifetime_after) for e in events] == [
        ("charge", 0, 60_000),
        ("refund", 60_000, 50_000),
    ]
    assert events[0].breakdown == fee_for_payment(CLASSIC, "USD", 0, 60_000)
    found = db.transaction(lambda uow: uow.fees.event_by_key("r1"))
    assert found is not None and found[1] == "hash-r1" and found[0] == events[1]
    assert db.transaction(lambda uow: uow.fees.event_by_key("nope")) is None


def test_a_fee_event_key_is_recorded_once(db: Transactions, clock: FixedClock) -> None:
    first = db.transaction(lambda uow: _charge(uow, "c1", 1_000, clock.now()))
    assert first is not None
    assert db.transaction(lambda uow: _charge(uow, "c1", 1_000, clock.now())) is None  # nothing written
    assert db.transaction(lambda uow: uow.fees.billed("fr_1", "cl_1", "USD")) == 1_000
    assert [e.id for e in db.transaction(lambda uow: uow.fees.events_of_pair("fr_1", "cl_1", "USD"))] == [first]


def test_locking_a_pair_starts_its_billings_at_zero(db: Transactions) -> None:
    assert db.transaction(lambda uow: uow.fees.lock_pair("fr_2", "cl_2", "EUR")) == 0
    billings = db.transaction(lambda uow: list(uow.audit.pair_billings()))
    assert [(b.pair, b.billed, b.last_event_after) for b in billings] == [(("fr_2", "cl_2", "EUR"), 0, None)]
