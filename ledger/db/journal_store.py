"""Entries and postings in the database: the posting hot path and journal reads.

Writing a batch of entries does, in one transaction:
1. insert the entries, skipping keys already in the journal (replays);
2. insert the postings of the new entries;
3. move the stored balances of the (account, slot) rows they touch, locking the
   rows in (account id, slot) order, so two writers never deadlock;
4. refuse the batch if any account with a floor would go below it at any point of
   the batch (the lowest running balance is checked, not only the final one);
5. for replayed keys, return the original entry if the request is the same, or
   raise `IdempotencyConflict`.

On PostgreSQL steps 1-4 are one statement (one round trip, whatever the batch
size) that fails as a whole when a floor would be broken (SQLSTATE `LF001`, raised by
`ledger_refuse_below_floor`), so it is safe to run as its own transaction
(`Database.transaction(work, single_write=True)`: no BEGIN or COMMIT round trips).
On SQLite, which has no data-modifying CTEs and runs in-process, they are a few
simple statements in one transaction.
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Row, bindparam, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger.accounts import Account, Side
from ledger.actors import current_actor
from ledger.db.schema import accounts, balances, entries, postings
from ledger.errors import BelowFloor, EntryAlreadyReversed, IdempotencyConflict, UnknownEntry
from ledger.journal import Entry, EntryRequest, Posting

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork

#: What `ledger_refuse_below_floor` raises (migration 0012).
FLOOR_REFUSED_SQLSTATE = "LF001"


@dataclass(frozen=True)
class PlannedPosting:
    """A posting resolved to its account and balance slot, ready to write."""

    account: Account
    side: Side
    amount: int
    slot: int

    @property
    def delta(self) -> int:
        return self.account.signed(self.side, self.amount)


@dataclass(frozen=True)
class PlannedEntry:
    request: EntryRequest
    effective_at: datetime
    postings: tuple[PlannedPosting, ...]


def choose_slot(idempotency_key: str, account: Account) -> int:
    """The balance slot an entry uses on an account: spread by key, stable across retries."""
    if account.slots == 1:
        return 0
    return zlib.crc32(f"{idempotency_key}|{account.id}".encode()) % account.slots


def balance_moves(planned: Iterable[PlannedEntry]) -> dict[tuple[int, int], tuple[int, int]]:
    """Per (account id, slot): the total change and the lowest running change (<= 0) over the batch."""
    running: dict[tuple[int, int], int] = defaultdict(int)
    lowest: dict[tuple[int, int], int] = defaultdict(int)
    for entry in planned:
        for posting in entry.postings:
            key = (posting.account.id, posting.slot)
            running[key] += posting.delta
            lowest[key] = min(lowest[key], running[key])
    return {key: (running[key], lowest[key]) for key in running}


# One round trip on PostgreSQL. `locked` takes the balance row locks in (account,
# slot) order: the lateral lookup runs once per move, in the sorted order of the
# moves, and each is a primary-key probe (a join over the whole table would read every
# balance row once the planner, which expects 100 rows from jsonb_to_recordset, picks a
# hash join). `updated` joins to it, so no row is updated before it has been locked in
# that order; were that order ever lost, two writers could deadlock, and the loser's
# transaction would be run again (`Database.transaction`), never booked wrong. The last branch calls
# `ledger_refuse_below_floor` (migration 0012) for any account whose lowest running
# balance over the batch would be below its floor: the function raises, and the whole
# statement, data-modifying CTEs included, is undone. Its SQLAlchemy counterpart is
# checked column by column in tests/integration/test_posting_statement.py.
POSTGRES_WRITE = """
WITH req AS (
    SELECT * FROM jsonb_to_recordset(CAST(%(entries)s AS jsonb))
        AS r(idx int, idempotency_key text, request_hash text, kind text, effective_at timestamptz,
             refs jsonb, metadata jsonb, reverses_entry_id bigint)
),
new_entries AS (
    INSERT INTO entries (idempotency_key, request_hash, kind, effective_at, recorded_at, refs, metadata,
                         reverses_entry_id, actor)
    SELECT idempotency_key, request_hash, kind, effective_at, %(recorded_at)s, refs, metadata, reverses_entry_id,
           %(actor)s
      FROM req ORDER BY idx
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, idempotency_key
),
legs AS (
    SELECT * FROM jsonb_to_recordset(CAST(%(legs)s AS jsonb))
        AS l(idx int, ord int, account_id bigint, currency text, side text, amount bigint, slot int, delta bigint)
),
new_legs AS (
    SELECT n.id AS entry_id, l.*
      FROM legs l JOIN req r ON r.idx = l.idx JOIN new_entries n ON n.idempotency_key = r.idempotency_key
),
inserted AS (
    INSERT INTO postings (entry_id, account_id, currency, side, amount)
    SELECT entry_id, account_id, currency, side, amount FROM new_legs ORDER BY ord
),
moves AS (
    SELECT account_id, slot, sum(delta)::bigint AS total, least(min(running), 0)::bigint AS lowest
      FROM (SELECT account_id, slot, delta,
                   sum(delta) OVER (PARTITION BY account_id, slot ORDER BY ord) AS running
              FROM new_legs) AS x
     GROUP BY account_id, slot
),
locked AS (
    SELECT l.account_id, l.slot
      FROM (SELECT account_id, slot FROM moves ORDER BY account_id, slot) AS m
     CROSS JOIN LATERAL (SELECT b.account_id, b.slot FROM balances b
                          WHERE b.account_id = m.account_id AND b.slot = m.slot FOR UPDATE) AS l
),
updated AS (
    UPDATE balances b SET balance = b.balance + m.total
      FROM locked k JOIN moves m ON m.account_id = k.account_id AND m.slot = k.slot
     WHERE b.account_id = k.account_id AND b.slot = k.slot
    RETURNING b.account_id, b.slot, b.balance
)
SELECT n.id, n.idempotency_key FROM new_entries n
UNION ALL
SELECT ledger_refuse_below_floor(u.account_id, u.balance - m.total + m.lowest, a.floor), NULL
  FROM updated u
  JOIN moves m ON m.account_id = u.account_id AND m.slot = u.slot
  JOIN accounts a ON a.id = u.account_id
 WHERE a.floor IS NOT NULL AND u.balance - m.total + m.lowest < a.floor
"""


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class JournalStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self._conn = uow.connection

    # --- writing ---------------------------------------------------------------

    def plan(self, requests: Sequence[EntryRequest], now: datetime) -> list[PlannedEntry]:
        keys = {(p.account, p.currency) for r in requests for p in r.postings}
        resolved = self._uow.accounts.resolve(keys)
        planned = []
        for request in requests:
            legs = []
            for p in request.postings:
                account = resolved[(p.account, p.currency)]
                legs.append(PlannedPosting(account, p.side, p.amount, choose_slot(request.idempotency_key, account)))
            planned.append(PlannedEntry(request, request.effective_at or now, tuple(legs)))
        return planned

    def write(self, requests: Sequence[EntryRequest], *, recorded_at: datetime) -> list[Entry]:
        """Write validated, de-duplicated requests; return the entries (originals for replays)."""
        if not requests:
            return []
        planned = self.plan(requests, recorded_at)
        self._require_reversed_entries(requests)
        actor = current_actor()
        try:
            if self._uow.dialect == "postgresql":
                new_ids = self._write_postgresql(planned, recorded_at, actor)
            else:
                new_ids = self._write_sqlite(planned, recorded_at, actor)
        except IntegrityError as error:
            raise self._explain(error, requests) from error
        result = [
            Entry(
                id=new_ids[p.request.idempotency_key],
                idempotency_key=p.request.idempotency_key,
                kind=p.request.kind,
                effective_at=p.effective_at,
                recorded_at=recorded_at,
                postings=p.request.postings,
                refs=dict(p.request.refs),
                metadata=dict(p.request.metadata),
                reverses_entry_id=p.request.reverses_entry_id,
                actor=actor,
            )
            for p in planned
            if p.request.idempotency_key in new_ids
        ]
        replayed = [r for r in requests if r.idempotency_key not in new_ids]
        if replayed:
            result.extend(self._originals(replayed))
        return result

    def _write_postgresql(self, planned: list[PlannedEntry], recorded_at: datetime, actor: str) -> dict[str, int]:
        # The batch travels as two JSON documents: one parameter each, whatever the
        # batch size, and a statement shape PostgreSQL can keep one generic plan for.
        batch = [
            {
                "idx": i,
                "idempotency_key": p.request.idempotency_key,
                "request_hash": p.request.fingerprint(),
                "kind": p.request.kind,
                "effective_at": p.effective_at.isoformat(),
                "refs": p.request.refs,
                "metadata": p.request.metadata,
                "reverses_entry_id": p.request.reverses_entry_id,
            }
            for i, p in enumerate(planned)
        ]
        legs = [
            {
                "idx": i,
                "ord": n,
                "account_id": leg.account.id,
                "currency": leg.account.currency,
                "side": leg.side.value,
                "amount": leg.amount,
                "slot": leg.slot,
                "delta": leg.delta,
            }
            for n, (i, leg) in enumerate((i, leg) for i, p in enumerate(planned) for leg in p.postings)
        ]
        params = {"entries": _json(batch), "legs": _json(legs), "recorded_at": recorded_at, "actor": actor}
        accounts_by_id = {leg.account.id: leg.account for p in planned for leg in p.postings}
        try:
            # Driver SQL (psycopg's %(name)s parameters): a fixed text needs none of
            # SQLAlchemy's compiling, and the driver prepares it on the server.
            rows = self._conn.exec_driver_sql(POSTGRES_WRITE, params).all()
        except DBAPIError as error:
            refusal = getattr(error.orig, "diag", None)
            if getattr(error.orig, "sqlstate", None) != FLOOR_REFUSED_SQLSTATE or refusal is None:
                raise
            detail = json.loads(refusal.message_detail)
            raise self._below_floor(accounts_by_id[int(detail["account_id"])], int(detail["lowest"])) from None
        return {key: int(entry_id) for entry_id, key in rows}

    def _write_sqlite(self, planned: list[PlannedEntry], recorded_at: datetime, actor: str) -> dict[str, int]:
        new_ids: dict[str, int] = {}
        insert_entry = (
            sqlite.insert(entries).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(entries.c.id)
        )
        for p in planned:
            new_id = self._conn.execute(
                insert_entry,
                {
                    "idempotency_key": p.request.idempotency_key,
                    "request_hash": p.request.fingerprint(),
                    "kind": p.request.kind,
                    "effective_at": p.effective_at,
                    "recorded_at": recorded_at,
                    "refs": dict(p.request.refs),
                    "metadata": dict(p.request.metadata),
                    "reverses_entry_id": p.request.reverses_entry_id,
                    "actor": actor,
                },
            ).scalar()
            if new_id is not None:
                new_ids[p.request.idempotency_key] = int(new_id)
        fresh = [p for p in planned if p.request.idempotency_key in new_ids]
        if not fresh:
            return new_ids
        self._conn.execute(
            postings.insert(),
            [
                {
                    "entry_id": new_ids[p.request.idempotency_key],
                    "account_id": leg.account.id,
                    "currency": leg.account.currency,
                    "side": leg.side.value,
                    "amount": leg.amount,
                }
                for p in fresh
                for leg in p.postings
            ],
        )
        accounts_by_id = {leg.account.id: leg.account for p in fresh for leg in p.postings}
        update = (
            balances.update()
            .where(balances.c.account_id == bindparam("a"), balances.c.slot == bindparam("s"))
            .values(balance=balances.c.balance + bindparam("d"))
            .returning(balances.c.balance)
        )
        for (account_id, slot), (total, lowest) in sorted(balance_moves(fresh).items()):
            after = int(self._conn.execute(update, {"a": account_id, "s": slot, "d": total}).scalar_one())
            account = accounts_by_id[account_id]
            if account.floor is not None and after - total + lowest < account.floor:
                raise self._below_floor(account, after - total + lowest)
        return new_ids

    def _require_reversed_entries(self, requests: Sequence[EntryRequest]) -> None:
        """A reversal of an entry that does not exist is refused as such, before its
        postings can be refused for a floor (the foreign key would speak only after it)."""
        reversed_ids = {r.reverses_entry_id for r in requests if r.reverses_entry_id is not None}
        if not reversed_ids:
            return
        found = set(self._conn.execute(select(entries.c.id).where(entries.c.id.in_(reversed_ids))).scalars())
        missing = sorted(reversed_ids - found)
        if missing:
            raise UnknownEntry(f"no entry among {missing} to reverse", entry_ids=missing)

    def _below_floor(self, account: Account, lowest: int) -> BelowFloor:
        assert account.floor is not None
        return BelowFloor(
            f"account {account.code} ({account.currency}) would go to {lowest}, below its floor of "
            f"{account.floor} (minor units)",
            account=account.code,
            currency=account.currency,
            floor=account.floor,
            balance_after=lowest,
        )

    def _explain(self, error: IntegrityError, requests: Sequence[EntryRequest]) -> Exception:
        message = str(error.orig)
        if "reverses_entry_id" in message:
            reversed_ids = [r.reverses_entry_id for r in requests if r.reverses_entry_id is not None]
            if "foreign key" in message.lower() or "fk_entries" in message:
                return UnknownEntry(f"no entry among {reversed_ids} to reverse", entry_ids=reversed_ids)
            return EntryAlreadyReversed(
                f"entry {reversed_ids[0] if len(reversed_ids) == 1 else reversed_ids} is already reversed",
                entry_id=reversed_ids[0] if len(reversed_ids) == 1 else reversed_ids,
            )
        if "FOREIGN KEY" in message and any(r.reverses_entry_id is not None for r in requests):
            return UnknownEntry("the entry to reverse does not exist")
        return error

    def _originals(self, replayed: Sequence[EntryRequest]) -> list[Entry]:
        stored = self.find_by_keys([r.idempotency_key for r in replayed])
        originals = []
        for request in replayed:
            entry, request_hash = stored[request.idempotency_key]
            if request_hash != request.fingerprint():
                raise IdempotencyConflict(
                    f"idempotency key {request.idempotency_key!r} was already used for entry {entry.id} "
                    "with a different request",
                    idempotency_key=request.idempotency_key,
                    entry_id=entry.id,
                )
            originals.append(entry)
        return originals

    # --- reading ---------------------------------------------------------------

    def _load(self, condition: ColumnElement[bool]) -> list[tuple[Entry, str]]:
        rows = self._conn.execute(select(entries).where(condition).order_by(entries.c.id)).all()
        if not rows:
            return []
        ids = [row.id for row in rows]
        legs: dict[int, list[Posting]] = defaultdict(list)
        for p in self._conn.execute(
            select(postings.c.entry_id, accounts.c.code, postings.c.currency, postings.c.side, postings.c.amount)
            .join(accounts, accounts.c.id == postings.c.account_id)
            .where(postings.c.entry_id.in_(ids))
            .order_by(postings.c.id)
        ):
            legs[p.entry_id].append(Posting(p.code, p.currency, Side(p.side), int(p.amount)))
        return [(entry_from_row(row, tuple(legs[row.id])), str(row.request_hash)) for row in rows]

    def find_by_keys(self, keys: Sequence[str]) -> dict[str, tuple[Entry, str]]:
        return {entry.idempotency_key: (entry, h) for entry, h in self._load(entries.c.idempotency_key.in_(keys))}

    def get(self, entry_id: int) -> Entry:
        loaded = self._load(entries.c.id == entry_id)
        if not loaded:
            raise UnknownEntry(f"no entry {entry_id}", entry_id=entry_id)
        return loaded[0][0]

    def reversal_of(self, entry_id: int) -> int | None:
        return self._conn.execute(select(entries.c.id).where(entries.c.reverses_entry_id == entry_id)).scalar()

    def newest_first(
        self,
        *,
        starting_after: int | None,
        limit: int,
        account_ids: list[int] | None = None,
        kind: str | None = None,
        effective_from: datetime | None = None,
        effective_to: datetime | None = None,
    ) -> list[Entry]:
        """Entries newest first, after a cursor (an entry id), optionally filtered."""
        query = select(entries.c.id).order_by(entries.c.id.desc()).limit(limit)
        if starting_after is not None:
            query = query.where(entries.c.id < starting_after)
        if account_ids is not None:
            touching = select(postings.c.entry_id).where(postings.c.account_id.in_(account_ids))
            query = query.where(entries.c.id.in_(touching))
        if kind is not None:
            query = query.where(entries.c.kind == kind)
        if effective_from is not None:
            query = query.where(entries.c.effective_at >= effective_from)
        if effective_to is not None:
            query = query.where(entries.c.effective_at < effective_to)
        ids = [int(i) for i in self._conn.execute(query).scalars()]
        if not ids:
            return []
        return sorted((e for e, _ in self._load(entries.c.id.in_(ids))), key=lambda e: -e.id)

    def page(self, *, after_id: int | None, limit: int, account: Account | None = None) -> list[Entry]:
        """Entries in journal order after a cursor, optionally only those touching `account`."""
        condition: ColumnElement[bool] = entries.c.id > (after_id or 0)
        if account is not None:
            touching = (
                select(postings.c.entry_id)
                .where(postings.c.account_id == account.id, postings.c.entry_id > (after_id or 0))
                .order_by(postings.c.entry_id)
                .distinct()
                .limit(limit)
            )
            ids = [int(i) for i in self._conn.execute(touching).scalars()]
            if not ids:
                return []
            condition = entries.c.id.in_(ids)
        else:
            ids = [
                int(i)
                for i in self._conn.execute(
                    select(entries.c.id).where(condition).order_by(entries.c.id).limit(limit)
                ).scalars()
            ]
            if not ids:
                return []
            condition = entries.c.id.in_(ids)
        return [entry for entry, _ in self._load(condition)]


def entry_from_row(row: Row[Any], legs: tuple[Posting, ...]) -> Entry:
    return Entry(
        id=int(row.id),
        idempotency_key=row.idempotency_key,
        kind=row.kind,
        effective_at=row.effective_at,
        recorded_at=row.recorded_at,
        postings=legs,
        refs=dict(row.refs),
        metadata=dict(row.metadata),
        reverses_entry_id=row.reverses_entry_id,
        actor=row.actor,
    )
