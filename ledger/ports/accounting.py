"""The stores of the books: accounts and balances, the journal, and fees.

Each Protocol names what the use cases need of persistence, in domain types only;
`ledger.db` implements them over SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

from ledger.accounts import Account, AccountSpec
from ledger.fees.model import FeeEvent, ScheduleInForce
from ledger.fees.rule import FeeBreakdown
from ledger.fees.schedule import FeeSchedule
from ledger.journal import Entry, EntryRequest

#: An account's identity: (code, currency).
AccountKey = tuple[str, str]


class AccountStore(Protocol):
    """Accounts (their attributes never change once opened) and their balances."""

    def open(self, spec: AccountSpec) -> Account:
        """Open the account, or return it if it is open with the same attributes
        (`AccountConflict` if with others). `spec` is normalized (its normal side set)."""
        ...

    def find(self, code: str, currency: str) -> Account | None: ...

    def newest_first(self, *, starting_after: int | None, limit: int) -> list[Account]:
        """Accounts newest first, after a cursor (an account id)."""
        ...

    def get(self, code: str, currency: str) -> Account:
        """The account; `UnknownAccount`, or `CurrencyMismatch` if the code is open in another currency."""
        ...

    def resolve(self, keys: Iterable[AccountKey]) -> dict[AccountKey, Account]:
        """Many accounts at once; raises as `get` for the first one missing."""
        ...

    def all_with_codes(self, codes: list[str]) -> list[Account]:
        """Every account with one of these codes, in any currency, in opening order."""
        ...

    def all(self) -> Iterator[Account]: ...

    def balance(self, account: Account) -> int:
        """The balance now, on the account's normal side (minor units)."""
        ...

    def balances_of(self, accounts: Iterable[Account]) -> dict[int, int]:
        """Balances now by account id (accounts with no balance rows are left out)."""
        ...

    def balance_as_of(self, account: Account, as_of: datetime) -> int:
        """The balance from the postings of entries effective strictly before `as_of`."""
        ...


class JournalStore(Protocol):
    """Entries and their postings: written in batches, never changed."""

    def write(self, requests: Sequence[EntryRequest], *, recorded_at: datetime) -> list[Entry]:
        """Write validated requests with distinct keys and move the balances; a key already
        in the journal returns its original entry (`IdempotencyConflict` if the request
        differs). `BelowFloor` if an account would go below its floor."""
        ...

    def find_by_keys(self, keys: Sequence[str]) -> dict[str, tuple[Entry, str]]:
        """The entries with these idempotency keys, each with its request fingerprint."""
        ...

    def get(self, entry_id: int) -> Entry: ...

    def reversal_of(self, entry_id: int) -> int | None:
        """The id of the entry that reverses `entry_id`, if any."""
        ...

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
        ...

    def page(self, *, after_id: int | None, limit: int, account: Account | None = None) -> list[Entry]:
        """Entries in journal order after a cursor, optionally only those touching `account`."""
        ...


class FeeStore(Protocol):
    """Fee schedules in force, the pairs' lifetime billings and the fee events."""

    def schedule_at(self, at: datetime) -> ScheduleInForce:
        """The schedule in force at `at`; `NoScheduleInForce` if none is."""
        ...

    def schedule_by_id(self, schedule_id: int) -> ScheduleInForce: ...

    def all_schedules(self) -> list[ScheduleInForce]:
        """Oldest first."""
        ...

    def add_schedule(
        self, schedule: FeeSchedule, effective_from: datetime, *, recorded_at: datetime
    ) -> ScheduleInForce: ...

    def billed(self, freelancer_id: str, client_id: str, currency: str) -> int:
        """The pair's lifetime billings (0 if never billed)."""
        ...

    def lock_pair(self, freelancer_id: str, client_id: str, currency: str) -> int:
        """Lock the pair's billings until commit (so its fee events take turns) and return them."""
        ...

    def event_by_key(self, key: str) -> tuple[FeeEvent, str] | None:
        """The fee event with this idempotency key, with its request fingerprint."""
        ...

    def events_of_pair(self, freelancer_id: str, client_id: str, currency: str) -> list[FeeEvent]:
        """In the order they were recorded."""
        ...

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
        """Record the event and set the pair's lifetime billings to `breakdown.lifetime_after`;
        None, and nothing written, if an event has the key already."""
        ...
