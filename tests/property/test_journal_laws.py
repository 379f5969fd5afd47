"""The journal's laws, checked by a state machine against a real `Ledger`.

`JournalMachine` drives a ledger on an empty database (SQLite and PostgreSQL) with
random account openings, entries, batches, replays and reversals, and applies each
step to a plain in-memory model beside it (in the manner of zarr-python's
`zarr.testing.stateful`). The laws:

- conservation: every balance is what the model says, and per currency the signed
  balances of all accounts sum to zero (debits equal credits);
- idempotency: a key replayed with the same request returns the same entry and
  writes nothing; with a different request it is refused and writes nothing;
- floors: no entry or batch takes a floored account below its floor, even for a
  moment within a batch; such a request is refused whole;
- reversal: an entry is reversed at most once, and a reversal is never reversed.

Each rule checks what its own call returned or raised. After every step the
invariant reads all balances and the journal's index in one transaction and checks
the laws of `LAWS` against the model; at the end of each example `Ledger.balance`
is read for every account and `Ledger.audit()` must pass (see `check_at_the_end`
for why not after every step).
"""

from __future__ import annotations

import shutil
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, select

from ledger.accounts import AccountSpec, AccountType, Side, normalize_spec
from ledger.clock import FixedClock
from ledger.db.engine import make_engine
from ledger.db.schema import entries
from ledger.db.unit_of_work import Database, UnitOfWork
from ledger.errors import (
    AccountConflict,
    BelowFloor,
    CannotReverseReversal,
    EntryAlreadyReversed,
    IdempotencyConflict,
)
from ledger.journal import Entry, EntryRequest, Posting, credit, debit
from ledger.service import Ledger
from tests.conftest import START, database_names, empty_postgres
from tests.property.strategies import (
    AMOUNTS,
    AccountKey,
    account_specs,
    currencies,
    different_request,
    entry_requests,
    same_request,
)

#: Accounts one example may open: enough for crowded entries, few enough that
#: reading every balance after every step stays cheap.
MAX_ACCOUNTS = 10

#: (examples, steps per example) per Hypothesis profile; the CI profile digs deeper.
#: CI runs 40 steps, not 50, to keep both databases under about four minutes.
STATEFUL_BUDGET = {"ci": (120, 40)}
DEFAULT_BUDGET = (25, 30)

#: Opens a ledger on an empty database; returns it and what to call when done with it.
Connect = Callable[[], tuple[Ledger, Callable[[], None]]]


# --- the model -------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """An entry as the model remembers it.

    Attributes:
        id: the id the ledger gave it.
        key: its idempotency key.
        kind: its kind.
        postings: its postings, in the order they were posted.
        request: the request that posted it; None for reversals (posted by `Ledger.reverse`).
        reverses: the id of the entry it reverses, for reversals.
    """

    id: int
    key: str
    kind: str
    postings: tuple[Posting, ...]
    request: EntryRequest | None
    reverses: int | None = None


@dataclass
class JournalModel:
    """What the ledger should hold, in plain Python.

    Attributes:
        accounts: opened accounts by (code, currency), as normalized specs.
        balances: each account's balance on its normal side, in minor units.
        entries: recorded entries by id.
        keys: recorded entries by idempotency key (reversals included).
        reversed: original entry id -> id of the entry reversing it.
    """

    accounts: dict[AccountKey, AccountSpec] = field(default_factory=dict)
    balances: dict[AccountKey, int] = field(default_factory=dict)
    entries: dict[int, ModelEntry] = field(default_factory=dict)
    keys: dict[str, ModelEntry] = field(default_factory=dict)
    reversed: dict[int, int] = field(default_factory=dict)

    def open(self, spec: AccountSpec) -> None:
        key = (spec.code, spec.currency)
        self.accounts[key] = spec
        self.balances[key] = 0

    def delta(self, posting: Posting) -> int:
        """How a posting moves its account's normal-side balance."""
        normal_side = self.accounts[(posting.account, posting.currency)].normal_side
        return posting.amount if posting.side == normal_side else -posting.amount

    def floor_breaches(self, postings: Iterable[Posting]) -> set[AccountKey]:
        """Accounts that would dip below their floor at some point while `postings`
        are applied in order (the ledger checks the lowest running balance, not
        only the final one)."""
        running = dict(self.balances)
        breaches: set[AccountKey] = set()
        for posting in postings:
            key = (posting.account, posting.currency)
            running[key] += self.delta(posting)
            floor = self.accounts[key].floor
            if floor is not None and running[key] < floor:
                breaches.add(key)
        return breaches

    def record(self, entry: ModelEntry) -> None:
        assert entry.id not in self.entries, f"the ledger handed out entry id {entry.id} twice"
        assert all(entry.id > earlier for earlier in self.entries), (
            f"entry {entry.id} is not after the entries already in the journal"
        )
        for posting in entry.postings:
            self.balances[(posting.account, posting.currency)] += self.delta(posting)
        self.entries[entry.id] = entry
        self.keys[entry.key] = entry
        if entry.reverses is not None:
            self.reversed[entry.reverses] = entry.id

    def posted_keys(self) -> tuple[str, ...]:
        """Keys of entries posted from a request (reversals are replayed differently)."""
        return tuple(sorted(k for k, e in self.keys.items() if e.request is not None))

    def signed_balance(self, key: AccountKey, balance: int) -> int:
        """Debit-normal balances count positive, credit-normal ones negative."""
        return balance if self.accounts[key].normal_side == Side.DEBIT else -balance


def opposite(postings: Sequence[Posting]) -> tuple[Posting, ...]:
    """The postings that undo `postings`: same legs, same order, other side."""
    flip = {Side.DEBIT: Side.CREDIT, Side.CREDIT: Side.DEBIT}
    return tuple(Posting(p.account, p.currency, flip[p.side], p.amount) for p in postings)


def describe(postings: Iterable[Posting]) -> str:
    return ", ".join(f"{'Dr' if p.side == Side.DEBIT else 'Cr'} {p.account} {p.amount} {p.currency}" for p in postings)


def new_entries_of(batch: Sequence[EntryRequest], known: Iterable[str]) -> list[EntryRequest]:
    """The requests of a batch that will write: first use of a key not seen before."""
    seen = set(known)
    fresh = []
    for request in batch:
        if request.idempotency_key not in seen:
            seen.add(request.idempotency_key)
            fresh.append(request)
    return fresh


# --- the machine -----------------------------------------------------------------------


class JournalMachine(RuleBasedStateMachine):
    """A real ledger and a `JournalModel`, driven together; see the module docstring."""

    def __init__(self, connect: Connect) -> None:
        super().__init__()
        # A fresh empty database per example: a state machine's model starts empty.
        self.ledger, self._cleanup = connect()
        self.model = JournalModel()
        self._keys_made = 0

    def teardown(self) -> None:
        try:
            # Hypothesis tears down in a `finally`; when a step has already failed,
            # its error is the one to report, not a consequence found by the audit.
            if sys.exc_info()[1] is None:
                self.check_at_the_end()
        finally:
            self._cleanup()

    def fresh_key(self) -> str:
        self._keys_made += 1
        return f"key-{self._keys_made}"

    def account_keys(self) -> list[AccountKey]:
        return sorted(self.model.accounts)

    # --- accounts --------------------------------------------------------------------

    @initialize(specs=st.lists(account_specs(), max_size=4), currency=currencies(), amount=AMOUNTS)
    def open_books(self, specs: list[AccountSpec], currency: str, amount: int) -> None:
        """Every example starts with money at the payment provider: a PSP account, a
        plain liability and a first entry between them, then a few random accounts.
        So every rule has something to work on from the first step and needs no
        precondition (when Hypothesis's random choice of enabled rules leaves only
        rules whose preconditions fail, it discards the example and its work)."""
        psp = AccountSpec("assets:psp:stripe", AccountType.ASSET, currency)
        in_transit = AccountSpec("liabilities:payouts:in_transit", AccountType.LIABILITY, currency)
        for spec in (psp, in_transit, *specs):
            self.open_account(spec)
        first = EntryRequest(
            self.fresh_key(),
            "psp.settled",
            (debit(psp.code, amount, currency), credit(in_transit.code, amount, currency)),
        )
        entry = self.ledger.post(first)
        note(f"post {first.idempotency_key}: {describe(first.postings)} -> entry {entry.id}")
        self.model.record(ModelEntry(entry.id, first.idempotency_key, first.kind, first.postings, first))

    @rule(spec=account_specs())
    def open_account(self, spec: AccountSpec) -> None:
        """Accounts never change once opened: reopening with the same attributes is a
        no-op, with other attributes an `AccountConflict`."""
        wanted = normalize_spec(spec)
        key = (wanted.code, wanted.currency)
        existing = self.model.accounts.get(key)
        if existing is None and len(self.model.accounts) >= MAX_ACCOUNTS:
            note(
                f"open {key}: skipped, {MAX_ACCOUNTS} accounts are open"
            )  # a no-op, not a precondition: see open_books
            return
        if existing is not None and existing != wanted:
            note(f"reopen {key} as {wanted.type} floor={wanted.floor} slots={wanted.slots}: expect AccountConflict")
            with pytest.raises(AccountConflict):
                self.ledger.open_account(spec)
            return
        account = self.ledger.open_account(spec)
        note(f"open {key}: {wanted.type}, floor={wanted.floor}, slots={wanted.slots} (id {account.id})")
        assert (account.code, account.currency, account.floor, account.slots) == (
            wanted.code,
            wanted.currency,
            wanted.floor,
            wanted.slots,
        )
        if existing is None:
            self.model.open(wanted)

    # --- posting ---------------------------------------------------------------------

    @rule(data=st.data())
    def post_entry(self, data: st.DataObject) -> None:
        """Floors: an entry that would take a floored account below its floor is
        refused with `BelowFloor` and changes nothing; any other balanced entry is
        recorded as asked."""
        request = data.draw(entry_requests(self.account_keys(), self.fresh_key()))
        breaches = self.model.floor_breaches(request.postings)
        if breaches:
            note(f"post {request.idempotency_key}: {describe(request.postings)} -> expect BelowFloor on {breaches}")
            with pytest.raises(BelowFloor) as refused:
                self.ledger.post(request)
            assert (refused.value.data["account"], refused.value.data["currency"]) in breaches
            return
        entry = self.ledger.post(request)
        note(f"post {request.idempotency_key}: {describe(request.postings)} -> entry {entry.id}")
        self.check_recorded(entry, request)
        self.model.record(ModelEntry(entry.id, request.idempotency_key, request.kind, request.postings, request))

    def check_recorded(self, entry: Entry, request: EntryRequest) -> None:
        assert (entry.idempotency_key, entry.kind, entry.reverses_entry_id) == (
            request.idempotency_key,
            request.kind,
            request.reverses_entry_id,
        )
        stored = self.ledger.entry(entry.id)
        assert stored.postings == request.postings, (
            f"entry {entry.id} reads back as {describe(stored.postings)}, posted as {describe(request.postings)}"
        )

    @rule(data=st.data())
    def post_batch(self, data: st.DataObject) -> None:
        """Batches are all or nothing: if any entry would break a floor at any point
        of the batch (running balances, in posting order), or any key conflicts,
        nothing is written. Replayed and repeated keys inside a batch return the
        entry they name and are written once."""
        batch, conflicting = self.draw_batch(data)
        fresh = new_entries_of(batch, self.model.keys)
        breaches = self.model.floor_breaches(p for r in fresh for p in r.postings)
        story = "; ".join(f"{r.idempotency_key}: {describe(r.postings)}" for r in batch)
        if breaches or conflicting:
            refusals: tuple[type[Exception], ...] = ()
            # Which refusal wins when both apply is not part of the contract.
            refusals += (BelowFloor,) if breaches else ()
            refusals += (IdempotencyConflict,) if conflicting else ()
            note(f"batch [{story}] -> expect {'/'.join(e.__name__ for e in refusals)}, nothing written")
            with pytest.raises(refusals):
                self.ledger.post_batch(batch)
            return
        written = self.ledger.post_batch(batch)
        note(f"batch [{story}] -> entries {[e.id for e in written]}")
        self.check_batch_written(batch, written)
        new_ids = {e.idempotency_key: e.id for e in written}
        for request in fresh:
            entry_id = new_ids[request.idempotency_key]
            self.model.record(ModelEntry(entry_id, request.idempotency_key, request.kind, request.postings, request))

    def draw_batch(self, data: st.DataObject) -> tuple[list[EntryRequest], bool]:
        """1..3 new entries, maybe with a replayed earlier key, a key repeated within
        the batch, and an earlier key reused for another request (then True)."""
        count = data.draw(st.integers(min_value=1, max_value=3), label="new entries")
        batch = [data.draw(entry_requests(self.account_keys(), self.fresh_key())) for _ in range(count)]
        posted = self.model.posted_keys()
        if bool(posted) and data.draw(st.booleans(), label="replay an earlier key"):
            earlier = self.model.keys[data.draw(st.sampled_from(posted))].request
            assert earlier is not None
            batch.insert(data.draw(st.integers(0, len(batch))), data.draw(same_request(earlier)))
        if data.draw(st.booleans(), label="repeat a key of this batch"):
            batch.append(data.draw(st.sampled_from(batch)))
        conflicting = bool(posted) and data.draw(st.booleans(), label="reuse a key for another request")
        if conflicting:
            earlier = self.model.keys[data.draw(st.sampled_from(posted))].request
            assert earlier is not None
            batch.insert(data.draw(st.integers(0, len(batch))), data.draw(different_request(earlier)))
        return batch, conflicting

    def check_batch_written(self, batch: Sequence[EntryRequest], written: Sequence[Entry]) -> None:
        """One entry per request, in order: the original for a known key, one new
        entry for each new key however often the batch repeats it."""
        assert [e.idempotency_key for e in written] == [r.idempotency_key for r in batch]
        ids = {k: e.id for k, e in self.model.keys.items()}
        for request, entry in zip(batch, written, strict=True):
            expected = ids.setdefault(request.idempotency_key, entry.id)
            assert entry.id == expected, f"{request.idempotency_key} returned entry {entry.id}, not {expected}"

    # --- idempotency -----------------------------------------------------------------

    @rule(data=st.data())
    def replay_same_request(self, data: st.DataObject) -> None:
        """Idempotency: the same key with the same request (postings in any order)
        returns the original entry and writes nothing."""
        original = self.model.keys[data.draw(st.sampled_from(tuple(sorted(self.model.keys))))]
        if original.request is None:
            assert original.reverses is not None
            note(f"replay reversal {original.key} of entry {original.reverses}: expect entry {original.id} again")
            entry = self.ledger.reverse(original.reverses, idempotency_key=original.key)
        else:
            request = data.draw(same_request(original.request))
            note(f"replay {original.key}: {describe(request.postings)}: expect entry {original.id} again")
            entry = self.ledger.post(request)
        assert entry.id == original.id, f"replaying {original.key} gave entry {entry.id}, not {original.id}"

    @rule(data=st.data())
    def replay_different_request(self, data: st.DataObject) -> None:
        """Idempotency: a key reused with another request raises `IdempotencyConflict`
        and writes nothing."""
        original = self.model.keys[data.draw(st.sampled_from(tuple(sorted(self.model.keys))))]
        if data.draw(st.booleans(), label="reuse it to reverse an entry"):
            self.reverse_under_used_key(
                original, self.model.entries[data.draw(st.sampled_from(tuple(self.model.entries)))]
            )
            return
        base = original.request or EntryRequest(original.key, original.kind, original.postings)
        request = data.draw(different_request(base))
        note(f"reuse {original.key} for {request.kind}: {describe(request.postings)} -> expect IdempotencyConflict")
        with pytest.raises(IdempotencyConflict):
            self.ledger.post(request)

    def reverse_under_used_key(self, original: ModelEntry, target: ModelEntry) -> None:
        """Reversing under a used key is a replay only if the key holds that very
        reversal; otherwise an `IdempotencyConflict`, even when the entry is already
        reversed: the key names the request, and on both databases the key's row
        and the reversal link then clash in the same insert, so they must agree."""
        if target.reverses is None and original.reverses == target.id:
            note(f"reverse entry {target.id} as {original.key} again -> expect entry {original.id}")
            assert self.ledger.reverse(target.id, idempotency_key=original.key).id == original.id
            return
        refusal = CannotReverseReversal if target.reverses is not None else IdempotencyConflict
        note(f"reverse entry {target.id} under used key {original.key} -> expect {refusal.__name__}")
        with pytest.raises(refusal):
            self.ledger.reverse(target.id, idempotency_key=original.key)

    # --- reversal --------------------------------------------------------------------

    @rule(data=st.data())
    def reverse_entry(self, data: st.DataObject) -> None:
        """Reversal: an entry is undone by a new entry with the opposite postings, at
        most once (`EntryAlreadyReversed`); a reversal cannot be reversed
        (`CannotReverseReversal`); floors still apply (`BelowFloor`)."""
        original = self.model.entries[data.draw(st.sampled_from(tuple(sorted(self.model.entries))))]
        key = self.fresh_key()
        undo = opposite(original.postings)
        refusal: type[Exception] | None = None
        if original.reverses is not None:
            refusal = CannotReverseReversal
        elif original.id in self.model.reversed:
            refusal = EntryAlreadyReversed
        elif self.model.floor_breaches(undo):
            refusal = BelowFloor
        if refusal is not None:
            note(f"reverse entry {original.id} as {key} -> expect {refusal.__name__}")
            with pytest.raises(refusal):
                self.ledger.reverse(original.id, idempotency_key=key)
            return
        entry = self.ledger.reverse(original.id, idempotency_key=key)
        note(f"reverse entry {original.id} as {key}: {describe(undo)} -> entry {entry.id}")
        assert entry.reverses_entry_id == original.id
        assert entry.postings == undo
        self.model.record(ModelEntry(entry.id, key, entry.kind, undo, request=None, reverses=original.id))

    # --- invariants ------------------------------------------------------------------

    def read_ledger(self) -> Reading:
        """Every balance and the journal's index, in one read-only transaction: a
        transaction per account (`Ledger.balance`) after every step would cost more
        than the rest of the test; `check_at_the_end` reads through it instead."""

        def read(uow: UnitOfWork) -> Reading:
            accounts = {key: uow.accounts.get(*key) for key in self.model.accounts}
            stored = uow.accounts.balances_of(accounts.values())
            missing = sorted(key for key, account in accounts.items() if account.id not in stored)
            assert not missing, f"accounts without balance rows: {missing}"
            balances = {key: stored[account.id] for key, account in accounts.items()}
            rows = uow.connection.execute(JOURNAL_INDEX)
            return Reading(balances, [(int(i), str(k), None if r is None else int(r)) for i, k, r in rows])

        return self.ledger.transaction(read, read_only=True)

    @invariant()
    def ledger_agrees_with_model(self) -> None:
        """After every step, each law of `LAWS` holds between the ledger and the model."""
        reading = self.read_ledger()
        problems = [f"{law.__name__}: {problem}" for law in LAWS for problem in law(self.model, reading)]
        assert not problems, "\n".join(problems)

    def check_at_the_end(self) -> None:
        """The public reads and the auditor agree with the model once an example is over.

        `Ledger.audit()` costs tens of milliseconds (one streamed query per check), so
        it runs once per example rather than after every step: it inspects the whole
        append-only journal, so a violation made at any step is still there to find.
        """
        for key, expected in sorted(self.model.balances.items()):
            assert self.ledger.balance(*key) == expected, f"Ledger.balance{key} differs from the model"
        report = self.ledger.audit()
        assert report.ok, report.summary()


# --- the laws ----------------------------------------------------------------------------
#
# Each law is a pure function of the model and a reading of the ledger that returns
# its problems as data (an empty list when it holds), as `ledger.audit` does.

JOURNAL_INDEX = select(entries.c.id, entries.c.idempotency_key, entries.c.reverses_entry_id).order_by(entries.c.id)


@dataclass(frozen=True)
class Reading:
    """What the ledger holds after a step.

    Attributes:
        balances: each model account's stored balance on its normal side.
        journal: (id, idempotency key, id of the entry it reverses) of every entry, by id.
    """

    balances: dict[AccountKey, int]
    journal: list[tuple[int, str, int | None]]


def balances_match_model(model: JournalModel, reading: Reading) -> list[str]:
    """Conservation: every account holds exactly what the model's entries put there,
    and a refused request moved nothing."""
    return [
        f"{key} holds {reading.balances[key]}, the model says {expected}"
        for key, expected in sorted(model.balances.items())
        if reading.balances[key] != expected
    ]


def trial_balance_is_zero(model: JournalModel, reading: Reading) -> list[str]:
    """Conservation (zero-sum): per currency, debit-normal balances minus
    credit-normal balances is zero, because every entry balances per currency."""
    net: dict[str, int] = defaultdict(int)
    for key, balance in reading.balances.items():
        net[key[1]] += model.signed_balance(key, balance)
    return [f"{currency} is off by {total}" for currency, total in sorted(net.items()) if total != 0]


def floors_hold(model: JournalModel, reading: Reading) -> list[str]:
    """Floors: no account with a floor holds less than its floor."""
    problems = []
    for key, balance in sorted(reading.balances.items()):
        floor = model.accounts[key].floor
        if floor is not None and balance < floor:
            problems.append(f"{key} holds {balance}, below its floor {floor}")
    return problems


def journal_matches_model(model: JournalModel, reading: Reading) -> list[str]:
    """Idempotency and reversal: the journal holds exactly the model's entries, one
    per key (replays and refused requests wrote nothing), each reversal linked to
    the entry it undoes."""
    expected = [(e.id, e.key, e.reverses) for _, e in sorted(model.entries.items())]
    if reading.journal == expected:
        return []
    return [f"the journal holds {reading.journal}, the model {expected}"]


LAWS: tuple[Callable[[JournalModel, Reading], list[str]], ...] = (
    balances_match_model,
    trial_balance_is_zero,
    floors_hold,
    journal_matches_model,
)


# --- running it on both databases ------------------------------------------------------


def stateful_settings() -> settings:
    """The current profile (dev or ci), with the state machine's own budget."""
    profile = settings.get_current_profile_name()
    examples, steps = STATEFUL_BUDGET.get(profile, DEFAULT_BUDGET)
    return settings(
        parent=settings.get_profile(profile),
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
    )


def sqlite_connector(template: Path, directory: Path) -> Connect:
    """Each example gets its own copy of the migrated template file."""
    made = 0

    def connect() -> tuple[Ledger, Callable[[], None]]:
        nonlocal made
        made += 1
        path = directory / f"example-{made}.sqlite3"
        shutil.copyfile(template, path)
        ledger = Ledger(Database(f"sqlite:///{path}", clock=FixedClock(START)))

        def cleanup() -> None:
            ledger.close()
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)

        return ledger, cleanup

    return connect


def postgres_connector(engine: Engine) -> Connect:
    """Each example empties the session's PostgreSQL database first (ids restart at
    1) and gets a new `Database` (so an empty account cache) on the shared engine."""

    def connect() -> tuple[Ledger, Callable[[], None]]:
        empty_postgres(engine.url.render_as_string(hide_password=False))
        return Ledger(Database(engine, clock=FixedClock(START))), lambda: None

    return connect


@pytest.mark.parametrize("database", database_names())
def test_journal_laws(database: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Conservation, idempotency, floors and reversal hold over random histories."""
    # The fixtures are fetched by name so that the SQLite half runs without a
    # PostgreSQL server. Both databases are migrated by the fixtures, so the
    # machine builds `Ledger(Database(...))` directly and skips `ledger.bootstrap.connect`'s
    # migration check, which would cost more than many steps, once per example.
    if database == "sqlite":
        connect = sqlite_connector(request.getfixturevalue("sqlite_template"), tmp_path)
        run_journal_machine(connect)
        return
    engine = make_engine(request.getfixturevalue("postgres_database"))
    try:
        run_journal_machine(postgres_connector(engine))
    finally:
        engine.dispose()


def run_journal_machine(connect: Connect) -> None:
    # Hypothesis documents any factory of machines here; its annotation says a class.
    run_state_machine_as_test(lambda: JournalMachine(connect), settings=stateful_settings())  # type: ignore[arg-type]
