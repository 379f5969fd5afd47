"""The books in memory: accounts and balances, the journal, and fees (`ledger.ports.accounting`).

They answer as `ledger.db.account_store`, `journal_store` and `fee_store` do: the same
results, the same errors, in the same order (tests/contracts checks it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from ledger.accounts import Account, AccountSpec
from ledger.actors import current_actor
from ledger.clock import Clock
from ledger.errors import (
    AccountConflict,
    BelowFloor,
    CurrencyMismatch,
    EntryAlreadyReversed,
    IdempotencyConflict,
    UnknownAccount,
    UnknownEntry,
)
from ledger.fees.model import FeeEvent, NoScheduleInForce, ScheduleInForce
from ledger.fees.rule import FeeBreakdown, fee_for_payment, fee_for_refund
from ledger.fees.schedule import FeeSchedule
from ledger.journal import Entry, EntryRequest
from ledger.ports.accounting import AccountKey
from tests.fakes.state import (
    ConstraintViolation,
    DuplicateRow,
    EntryRow,
    FeeEventRow,
    MemoryState,
    MissingRow,
    PostingRow,
)


class MemoryAccountStore:
    def __init__(self, state: MemoryState, clock: Clock) -> None:
        self._state = state
        self._clock = clock

    def open(self, spec: AccountSpec) -> Account:
        assert spec.normal_side is not None, "normalize the spec first"
        existing = self.find(spec.code, spec.currency)
        if existing is None:
            if spec.slots < 1 or (spec.floor is not None and spec.slots != 1):
                raise ConstraintViolation(f"account {spec.code}: slots {spec.slots} with floor {spec.floor}")
            account = Account(
                id=self._state.next_id("accounts"),
                code=spec.code,
                type=spec.type,
                currency=spec.currency,
                normal_side=spec.normal_side,
                floor=spec.floor,
                slots=spec.slots,
                metadata=dict(spec.metadata),
            )
            self._state.accounts[account.id] = account
            self._state.account_ids[(account.code, account.currency)] = account.id
            self._state.balances[account.id] = 0
            return account
        if not existing.same_attributes(spec):
            raise AccountConflict(
                f"account {spec.code} ({spec.currency}) exists with other attributes",
                account=spec.code,
                currency=spec.currency,
            )
        return existing

    def find(self, code: str, currency: str) -> Account | None:
        account_id = self._state.account_ids.get((code, currency))
        return None if account_id is None else self._state.accounts[account_id]

    def newest_first(self, *, starting_after: int | None, limit: int) -> list[Account]:
        ids = [i for i in sorted(self._state.accounts, reverse=True) if starting_after is None or i < starting_after]
        return [self._state.accounts[i] for i in ids[:limit]]

    def get(self, code: str, currency: str) -> Account:
        account = self.find(code, currency)
        if account is None:
            raise self._missing(code, currency)
        return account

    def resolve(self, keys: Iterable[AccountKey]) -> dict[AccountKey, Account]:
        found: dict[AccountKey, Account] = {}
        for code, currency in keys:
            found[(code, currency)] = self.get(code, currency)
        return found

    def _missing(self, code: str, currency: str) -> Exception:
        other = next((c for (k, c) in self._state.account_ids if k == code), None)
        if other is not None:
            return CurrencyMismatch(
                f"account {code} holds {other}, not {currency}",
                account=code,
                account_currency=other,
                currency=currency,
            )
        return UnknownAccount(f"no account {code} in {currency}", account=code, currency=currency)

    def all_with_codes(self, codes: list[str]) -> list[Account]:
        wanted = set(codes)
        return [a for a in self._state.accounts.values() if a.code in wanted]

    def all(self) -> Iterator[Account]:
        yield from list(self._state.accounts.values())

    def balance(self, account: Account) -> int:
        return self._state.balances.get(account.id, 0)

    def balances_of(self, accounts: Iterable[Account]) -> dict[int, int]:
        return {a.id: self._state.balances[a.id] for a in accounts if a.id in self._state.balances}

    def balance_as_of(self, account: Account, as_of: datetime) -> int:
        total = 0
        for posting in self._state.postings:
            if posting.account_id == account.id and self._state.entries[posting.entry_id].entry.effective_at < as_of:
                total += account.signed(posting.side, posting.amount)
        return total


class MemoryJournalStore:
    def __init__(self, state: MemoryState, accounts: MemoryAccountStore) -> None:
        self._state = state
        self._accounts = accounts

    def write(self, requests: Sequence[EntryRequest], *, recorded_at: datetime) -> list[Entry]:
        if not requests:
            return []
        resolved = self._accounts.resolve({(p.account, p.currency) for r in requests for p in r.postings})
        fresh: list[Entry] = []
        replayed: list[EntryRequest] = []
        for request in requests:
            if request.idempotency_key in self._state.entry_keys:
                replayed.append(request)
                continue
            fresh.append(self._insert(request, recorded_at, resolved))
        self._move_balances(fresh, resolved)
        return fresh + self._originals(replayed)

    def _insert(self, request: EntryRequest, recorded_at: datetime, resolved: dict[AccountKey, Account]) -> Entry:
        reversed_id = request.reverses_entry_id
        if reversed_id is not None:
            if reversed_id not in self._state.entries:
                raise UnknownEntry(f"no entry among {[reversed_id]} to reverse", entry_ids=[reversed_id])
            if reversed_id in self._state.reversals:
                raise EntryAlreadyReversed(f"entry {reversed_id} is already reversed", entry_id=reversed_id)
        entry = Entry(
            id=self._state.next_id("entries"),
            idempotency_key=request.idempotency_key,
            kind=request.kind,
            effective_at=request.effective_at or recorded_at,
            recorded_at=recorded_at,
            postings=request.postings,
            refs=dict(request.refs),
            metadata=dict(request.metadata),
            reverses_entry_id=reversed_id,
            actor=current_actor(),
        )
        self._state.entries[entry.id] = EntryRow(entry, request.fingerprint())
        self._state.entry_keys[entry.idempotency_key] = entry.id
        if reversed_id is not None:
            self._state.reversals[reversed_id] = entry.id
        for posting in request.postings:
            account = resolved[(posting.account, posting.currency)]
            self._state.postings.append(
                PostingRow(
                    self._state.next_id("postings"),
                    entry.id,
                    account.id,
                    account.currency,
                    posting.side,
                    posting.amount,
                )
            )
        return entry

    def _move_balances(self, fresh: list[Entry], resolved: dict[AccountKey, Account]) -> None:
        """Move the balances; refuse if an account with a floor goes below it at any
        point of the batch (checked by account id, as the database locks them)."""
        running: dict[int, int] = defaultdict(int)
        lowest: dict[int, int] = defaultdict(int)
        for entry in fresh:
            for posting in entry.postings:
                account = resolved[(posting.account, posting.currency)]
                running[account.id] += account.signed(posting.side, posting.amount)
                lowest[account.id] = min(lowest[account.id], running[account.id])
        for account_id in sorted(running):
            account = self._state.accounts[account_id]
            before = self._state.balances[account_id]
            self._state.balances[account_id] = before + running[account_id]
            if account.floor is not None and before + lowest[account_id] < account.floor:
                raise BelowFloor(
                    f"account {account.code} ({account.currency}) would go to {before + lowest[account_id]}, "
                    f"below its floor of {account.floor} (minor units)",
                    account=account.code,
                    currency=account.currency,
                    floor=account.floor,
                    balance_after=before + lowest[account_id],
                )

    def _originals(self, replayed: Sequence[EntryRequest]) -> list[Entry]:
        originals = []
        for request in replayed:
            row = self._state.entries[self._state.entry_keys[request.idempotency_key]]
            if row.request_hash != request.fingerprint():
                raise IdempotencyConflict(
                    f"idempotency key {request.idempotency_key!r} was already used for entry {row.entry.id} "
                    "with a different request",
                    idempotency_key=request.idempotency_key,
                    entry_id=row.entry.id,
                )
            originals.append(row.entry)
        return originals

    def find_by_keys(self, keys: Sequence[str]) -> dict[str, tuple[Entry, str]]:
        found = {}
        for key in keys:
            entry_id = self._state.entry_keys.get(key)
            if entry_id is not None:
                row = self._state.entries[entry_id]
                found[key] = (row.entry, row.request_hash)
        return found

    def get(self, entry_id: int) -> Entry:
        row = self._state.entries.get(entry_id)
        if row is None:
            raise UnknownEntry(f"no entry {entry_id}", entry_id=entry_id)
        return row.entry

    def reversal_of(self, entry_id: int) -> int | None:
        return self._state.reversals.get(entry_id)

    def _touching(self, account_ids: Iterable[int]) -> set[int]:
        wanted = set(account_ids)
        return {p.entry_id for p in self._state.postings if p.account_id in wanted}

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
        touching = None if account_ids is None else self._touching(account_ids)
        found: list[Entry] = []
        for entry_id in sorted(self._state.entries, reverse=True):
            entry = self._state.entries[entry_id].entry
            if (
                (starting_after is not None and entry_id >= starting_after)
                or (touching is not None and entry_id not in touching)
                or (kind is not None and entry.kind != kind)
                or (effective_from is not None and entry.effective_at < effective_from)
                or (effective_to is not None and entry.effective_at >= effective_to)
            ):
                continue
            if len(found) == limit:
                break
            found.append(entry)
        return found

    def page(self, *, after_id: int | None, limit: int, account: Account | None = None) -> list[Entry]:
        touching = None if account is None else self._touching([account.id])
        ids = [i for i in sorted(self._state.entries) if i > (after_id or 0) and (touching is None or i in touching)]
        return [self._state.entries[i].entry for i in ids[:limit]]


class MemoryFeeStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    def schedule_at(self, at: datetime) -> ScheduleInForce:
        in_force = [s for s in self._state.schedules.values() if s.effective_from <= at]
        if not in_force:
            raise NoScheduleInForce(f"no fee schedule is in force at {at.isoformat()}", at=at.isoformat())
        return max(in_force, key=lambda s: s.effective_from)

    def schedule_by_id(self, schedule_id: int) -> ScheduleInForce:
        found = self._state.schedules.get(schedule_id)
        if found is None:
            raise MissingRow(f"no fee schedule {schedule_id}")
        return found

    def all_schedules(self) -> list[ScheduleInForce]:
        return sorted(self._state.schedules.values(), key=lambda s: s.effective_from)

    def add_schedule(
        self, schedule: FeeSchedule, effective_from: datetime, *, recorded_at: datetime
    ) -> ScheduleInForce:
        if any(s.effective_from == effective_from for s in self._state.schedules.values()):
            raise DuplicateRow(f"a fee schedule takes effect at {effective_from.isoformat()} already")
        added = ScheduleInForce(self._state.next_id("fee_schedules"), schedule, effective_from)
        self._state.schedules[added.id] = added
        return added

    def billed(self, freelancer_id: str, client_id: str, currency: str) -> int:
        return self._state.lifetime.get((freelancer_id, client_id, currency), 0)

    def lock_pair(self, freelancer_id: str, client_id: str, currency: str) -> int:
        # The fake's transactions take turns as a whole: there is nothing more to lock.
        return self._state.lifetime.setdefault((freelancer_id, client_id, currency), 0)

    def _event(self, row: FeeEventRow) -> FeeEvent:
        # As the database store: the breakdown is computed again from the stored figures.
        schedule = self.schedule_by_id(row.schedule_id).schedule
        compute = fee_for_payment if row.kind == "charge" else fee_for_refund
        return FeeEvent(
            id=row.id,
            idempotency_key=row.idempotency_key,
            kind=row.kind,
            freelancer_id=row.freelancer_id,
            client_id=row.client_id,
            currency=row.currency,
            breakdown=compute(schedule, row.currency, row.lifetime_before, row.amount),
            schedule_id=row.schedule_id,
            effective_at=row.effective_at,
            recorded_at=row.recorded_at,
        )

    def event_by_key(self, key: str) -> tuple[FeeEvent, str] | None:
        event_id = self._state.fee_event_keys.get(key)
        if event_id is None:
            return None
        row = self._state.fee_events[event_id]
        return self._event(row), row.request_hash

    def events_of_pair(self, freelancer_id: str, client_id: str, currency: str) -> list[FeeEvent]:
        pair = (freelancer_id, client_id, currency)
        return [
            self._event(row)
            for row in self._state.fee_events.values()
            if (row.freelancer_id, row.client_id, row.currency) == pair
        ]

    def add_event(
        self,
        *,
        key: str,
        request_hash: str,
        kind: str,
        freelancer_id: str,
        client_id: str,
        breakdown: FeeBreakdown,
        schedule_id: int,
        effective_at: datetime,
        recorded_at: datetime,
    ) -> FeeEvent | None:
        if key in self._state.fee_event_keys:
            return None
        if schedule_id not in self._state.schedules:
            raise ConstraintViolation(f"no fee schedule {schedule_id}")
        moves = {"charge": breakdown.amount, "refund": -breakdown.amount}
        if kind not in moves or breakdown.lifetime_after != breakdown.lifetime_before + moves[kind]:
            raise ConstraintViolation(f"a {kind} fee event must move the lifetime billings by its amount")
        if min(breakdown.amount, breakdown.fee, breakdown.lifetime_before, breakdown.lifetime_after) < 0:
            raise ConstraintViolation("fee event amounts are not negative")
        row = FeeEventRow(
            id=self._state.next_id("fee_events"),
            idempotency_key=key,
            request_hash=request_hash,
            kind=kind,
            freelancer_id=freelancer_id,
            client_id=client_id,
            currency=breakdown.currency,
            amount=breakdown.amount,
            fee=breakdown.fee,
            lifetime_before=breakdown.lifetime_before,
            lifetime_after=breakdown.lifetime_after,
            schedule_id=schedule_id,
            effective_at=effective_at,
            recorded_at=recorded_at,
        )
        self._state.fee_events[row.id] = row
        self._state.fee_event_keys[key] = row.id
        pair = (freelancer_id, client_id, breakdown.currency)
        if pair in self._state.lifetime:  # an UPDATE of the pair's row: none until `lock_pair` made it
            self._state.lifetime[pair] = breakdown.lifetime_after
        return FeeEvent(
            id=row.id,
            idempotency_key=key,
            kind=kind,
            freelancer_id=freelancer_id,
            client_id=client_id,
            currency=breakdown.currency,
            breakdown=breakdown,
            schedule_id=schedule_id,
            effective_at=effective_at,
            recorded_at=recorded_at,
        )
