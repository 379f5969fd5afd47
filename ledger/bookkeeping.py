"""The core's use cases: open accounts, post and reverse journal entries.

Each takes the unit of work it runs in (`ledger.ports.UnitOfWork`); `Ledger` runs them
in their own retryable transactions, and the modules' use cases call them inside
theirs. The rules they apply are the value types' (`ledger.accounts`, `ledger.journal`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ledger.accounts import Account, AccountSpec, Side, normalize_spec
from ledger.errors import CannotReverseReversal, InvalidRequest
from ledger.journal import MAX_BATCH, Entry, EntryRequest, Posting, dedupe_batch, normalize_request
from ledger.ports.unit_of_work import UnitOfWork


def open_account(uow: UnitOfWork, spec: AccountSpec) -> Account:
    """Open an account, or return it if it exists with the same attributes.

    Raises `AccountConflict` when it exists with other attributes.
    """
    return uow.accounts.open(normalize_spec(spec))


def post_entries(uow: UnitOfWork, requests: Sequence[EntryRequest]) -> list[Entry]:
    """Post many entries in the unit of work's transaction: all or nothing.

    Returns one entry per request, in request order; a replayed key returns the
    original entry. The write is a handful of statements whatever the batch size.
    """
    if len(requests) > MAX_BATCH:
        raise InvalidRequest(f"a batch holds at most {MAX_BATCH} entries", field="entries")
    normalized = [normalize_request(r) for r in requests]
    unique = dedupe_batch(normalized)
    written = {e.idempotency_key: e for e in uow.journal.write(unique, recorded_at=uow.clock.now())}
    return [written[r.idempotency_key] for r in normalized]


def post_entry(uow: UnitOfWork, request: EntryRequest) -> Entry:
    """Post one entry; see `post_entries`."""
    return post_entries(uow, [request])[0]


def reverse_entry(
    uow: UnitOfWork,
    entry_id: int,
    *,
    idempotency_key: str,
    effective_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Entry:
    """Post the entry that undoes `entry_id`: the same postings on the opposite sides.

    An entry is reversed at most once (`EntryAlreadyReversed`); a reversal cannot
    itself be reversed (`CannotReverseReversal`). Floors still apply: money that has
    moved on cannot be pulled back by a reversal.
    """
    original = uow.journal.get(entry_id)
    if original.reverses_entry_id is not None:
        raise CannotReverseReversal(
            f"entry {entry_id} is itself a reversal of entry {original.reverses_entry_id}; post a new entry instead",
            entry_id=entry_id,
        )
    opposite = {Side.DEBIT: Side.CREDIT, Side.CREDIT: Side.DEBIT}
    request = EntryRequest(
        idempotency_key=idempotency_key,
        kind=f"{original.kind}.reversal",
        postings=tuple(Posting(p.account, p.currency, opposite[p.side], p.amount) for p in original.postings),
        effective_at=effective_at,
        refs=dict(original.refs),
        metadata=dict(metadata or {}),
        reverses_entry_id=entry_id,
    )
    return post_entry(uow, request)
