"""The journal: entries and their postings, and the use cases that write them.

A journal entry moves money between accounts: two or more postings, each an
amount (positive integer minor units) on the debit or credit side of one account.
Invariants:
- per currency, an entry's debits equal its credits (checked here, and on
  PostgreSQL again by a deferred constraint trigger at commit);
- an entry is never updated or deleted; a mistake is corrected by a reversing
  entry that links to it, and an entry is reversed at most once;
- every entry carries an idempotency key: posting the same key with the same
  request returns the original entry and writes nothing, with a different
  request raises `IdempotencyConflict`;
- stored balances move in the same transaction as the postings, and no balance
  goes below its account's floor.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.accounts import Side
from ledger.actors import SYSTEM
from ledger.clock import require_utc
from ledger.errors import (
    IdempotencyConflict,
    InvalidAmount,
    InvalidRequest,
    UnbalancedEntry,
)
from ledger.money import MAX_MINOR_UNITS, normalize_currency, require_json_without_floats

MAX_KEY_LENGTH = 255
MAX_KIND_LENGTH = 100
#: Most entries one batch may carry; larger imports are split by the caller.
MAX_BATCH = 10_000


@dataclass(frozen=True)
class Posting:
    """One side of a movement: an amount debited or credited to one account.

    Attributes:
        account: the account's code.
        currency: ISO 4217 code; must be the account's currency.
        side: debit or credit.
        amount: positive integer minor units.
    """

    account: str
    currency: str
    side: Side
    amount: int


def debit(account: str, amount: int, currency: str) -> Posting:
    """A debit posting of `amount` minor units."""
    return Posting(account, currency, Side.DEBIT, amount)


def credit(account: str, amount: int, currency: str) -> Posting:
    """A credit posting of `amount` minor units."""
    return Posting(account, currency, Side.CREDIT, amount)


@dataclass(frozen=True)
class EntryRequest:
    """A request to post one journal entry.

    Attributes:
        idempotency_key: chosen by the caller, unique across the journal.
        kind: what the entry records; the ledger's own kinds are `ledger.kinds.EntryKind`
            (`escrow.fund`, ...), other callers may use their own.
        postings: two or more postings, balanced per currency.
        effective_at: when the movement counts for balances and statements
            (default: the clock's now at posting time).
        refs: references to the outside world (contract, milestone, Stripe object ids).
        metadata: free-form JSON-able data (no floats).
        reverses_entry_id: set only on reversing entries.
    """

    idempotency_key: str
    kind: str
    postings: tuple[Posting, ...]
    effective_at: datetime | None = None
    refs: Mapping[str, str] = field(default_factory=dict, hash=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    reverses_entry_id: int | None = None

    def fingerprint(self) -> str:
        """A digest of everything the caller asked for, to tell a replay from a conflict.

        Posting order does not matter; a defaulted `effective_at` is not part of the
        request (a retry a second later is the same request).
        """
        body = {
            "kind": self.kind,
            "postings": sorted([p.account, p.currency, p.side.value, p.amount] for p in self.postings),
            "effective_at": None if self.effective_at is None else require_utc(self.effective_at).isoformat(),
            "refs": dict(self.refs),
            "metadata": dict(self.metadata),
            "reverses_entry_id": self.reverses_entry_id,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """A journal entry as recorded.

    Attributes:
        id: position in the journal (ascending with recording order).
        idempotency_key, kind, postings, refs, metadata, reverses_entry_id: as requested.
        effective_at: when it counts; recorded_at: when it was written.
        actor: who booked it (`ledger.actors`); not part of what a replay compares.
    """

    id: int
    idempotency_key: str
    kind: str
    effective_at: datetime
    recorded_at: datetime
    postings: tuple[Posting, ...]
    refs: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    reverses_entry_id: int | None = None
    actor: str = field(default=SYSTEM, compare=False)


def normalize_request(request: EntryRequest) -> EntryRequest:
    """Validate an entry request and return it with currencies and time normalized.

    Raises `InvalidRequest` (and subclasses) naming what is wrong; checks that need
    the database (accounts exist, currencies match, floors) happen when posting.
    """
    key = request.idempotency_key
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(
            f"an idempotency key is a non-empty string of at most {MAX_KEY_LENGTH} characters",
            field="idempotency_key",
        )
    if not isinstance(request.kind, str) or not request.kind or len(request.kind) > MAX_KIND_LENGTH:
        raise InvalidRequest(
            f"an entry kind is a non-empty string of at most {MAX_KIND_LENGTH} characters", field="kind"
        )
    if len(request.postings) < 2:
        raise InvalidRequest("a journal entry needs at least two postings", field="postings")
    postings = []
    for posting in request.postings:
        amount = posting.amount
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise InvalidAmount(
                f"posting amounts are integers of minor units, not {type(amount).__name__}",
                field="amount",
                account=posting.account,
                amount=repr(amount),
            )
        if not 0 < amount <= MAX_MINOR_UNITS:
            raise InvalidAmount(
                f"posting amounts must be positive (got {amount} on {posting.account})",
                field="amount",
                account=posting.account,
                amount=amount,
            )
        postings.append(Posting(posting.account, normalize_currency(posting.currency), Side(posting.side), amount))
    check_balanced(postings)
    for name, mapping in (("refs", request.refs), ("metadata", request.metadata)):
        if not isinstance(mapping, Mapping):
            raise InvalidRequest(f"{name} must be a mapping", field=name)
        require_json_without_floats(mapping, name)
    if any(not isinstance(v, str) for v in request.refs.values()):
        raise InvalidRequest("reference values are strings", field="refs")
    effective_at = None
    if request.effective_at is not None:
        try:
            effective_at = require_utc(request.effective_at)
        except ValueError as error:
            raise InvalidRequest(str(error), field="effective_at") from None
    return EntryRequest(
        idempotency_key=key,
        kind=request.kind,
        postings=tuple(postings),
        effective_at=effective_at,
        refs=dict(request.refs),
        metadata=dict(request.metadata),
        reverses_entry_id=request.reverses_entry_id,
    )


def check_balanced(postings: Iterable[Posting]) -> None:
    """Raise `UnbalancedEntry` unless debits equal credits in every currency."""
    debits: dict[str, int] = defaultdict(int)
    credits: dict[str, int] = defaultdict(int)
    for posting in postings:
        (debits if posting.side == Side.DEBIT else credits)[posting.currency] += posting.amount
    for currency in sorted(set(debits) | set(credits)):
        if debits[currency] != credits[currency]:
            raise UnbalancedEntry(
                f"entry does not balance in {currency}: debits {debits[currency]}, "
                f"credits {credits[currency]} (minor units)",
                currency=currency,
                debits=debits[currency],
                credits=credits[currency],
            )


def dedupe_batch(requests: Sequence[EntryRequest]) -> list[EntryRequest]:
    """Drop exact repeats of a key within one batch; a key repeated with another request conflicts."""
    seen: dict[str, EntryRequest] = {}
    unique = []
    for request in requests:
        earlier = seen.get(request.idempotency_key)
        if earlier is None:
            seen[request.idempotency_key] = request
            unique.append(request)
        elif earlier.fingerprint() != request.fingerprint():
            raise IdempotencyConflict(
                f"idempotency key {request.idempotency_key!r} is used twice in one batch with different requests",
                idempotency_key=request.idempotency_key,
            )
    return unique
