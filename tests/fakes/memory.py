"""The unit-of-work port in memory: `MemoryDatabase` runs use cases as `ledger.db`'s
`Database` does, over plain Python state.

    book = Ledger(MemoryDatabase(clock=FixedClock(START)))

A transaction works on a copy of the state (`MemoryState.copy`): when `work` returns
the copy becomes the state, in one assignment; if `work` raises it is thrown away.
Transactions take turns under one lock, so a claim, a lease or a locked row is
always seen by the next transaction as the database's row locks would show it;
none is ever lost to a race, so `retries` stays 0. After-commit callbacks run once
the copy is committed, outside the lock, in the order they were registered. A
read-only transaction that changes anything raises `ReadOnlyWrite` (PostgreSQL
refuses writes in a read-only transaction) and commits nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from ledger.clock import Clock, SystemClock
from ledger.fees.model import ScheduleInForce
from ledger.fees.schedule import CLASSIC
from ledger.invoices.documents import PlatformDetails
from ledger.ports import unit_of_work as port
from tests.fakes.accounting import MemoryAccountStore, MemoryFeeStore, MemoryJournalStore
from tests.fakes.escrow import MemoryEscrowStore, MemoryOrderStore
from tests.fakes.queries import (
    MemoryAuditQueries,
    MemoryMetricsQueries,
    MemoryReconciliationQueries,
    MemoryReportQueries,
    MemoryStatementQueries,
)
from tests.fakes.records import MemoryApiStore, MemoryDocumentStore
from tests.fakes.state import MemoryState, ReadOnlyWrite

T = TypeVar("T")

#: The migrations put the classic schedule in force from the beginning of time.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


class NestedTransaction(RuntimeError):
    """A transaction was begun inside another on the same thread (it would wait for itself)."""


class MemoryUnitOfWork:
    """One transaction over a working copy of the state, and the stores that work inside it."""

    def __init__(self, state: MemoryState, clock: Clock, platform: PlatformDetails) -> None:
        self.state = state
        self._clock = clock
        self._platform = platform
        self.origin: str | None = None
        self._accounts = MemoryAccountStore(state, clock)
        self._journal = MemoryJournalStore(state, self._accounts)
        self._fees = MemoryFeeStore(state)
        self._escrow = MemoryEscrowStore(state, clock, self._accounts)
        self._documents = MemoryDocumentStore(state)
        self._api = MemoryApiStore(state, clock)
        self._orders = MemoryOrderStore(state, clock, lambda: self.origin)
        self._audit = MemoryAuditQueries(state)
        self._reports = MemoryReportQueries(state)
        self._statements = MemoryStatementQueries(state)
        self._reconciliation = MemoryReconciliationQueries(state)
        self._metrics = MemoryMetricsQueries(state)
        self._after_commit: list[Callable[[], None]] = []

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def platform(self) -> PlatformDetails:
        return self._platform

    @property
    def accounts(self) -> MemoryAccountStore:
        return self._accounts

    @property
    def journal(self) -> MemoryJournalStore:
        return self._journal

    @property
    def fees(self) -> MemoryFeeStore:
        return self._fees

    @property
    def escrow(self) -> MemoryEscrowStore:
        return self._escrow

    @property
    def documents(self) -> MemoryDocumentStore:
        return self._documents

    @property
    def api(self) -> MemoryApiStore:
        return self._api

    @property
    def orders(self) -> MemoryOrderStore:
        return self._orders

    @property
    def audit(self) -> MemoryAuditQueries:
        return self._audit

    @property
    def reports(self) -> MemoryReportQueries:
        return self._reports

    @property
    def statements(self) -> MemoryStatementQueries:
        return self._statements

    @property
    def reconciliation(self) -> MemoryReconciliationQueries:
        return self._reconciliation

    @property
    def metrics(self) -> MemoryMetricsQueries:
        return self._metrics

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the transaction has committed (never if it rolls back)."""
        self._after_commit.append(callback)

    def committed(self) -> None:
        for callback in self._after_commit:
            callback()


def migrated_state() -> MemoryState:
    """An empty ledger as the migrations leave it: the classic fee schedule in force from 1970."""
    state = MemoryState()
    schedule_id = state.next_id("fee_schedules")
    state.schedules[schedule_id] = ScheduleInForce(schedule_id, CLASSIC, BEGINNING)
    return state


class MemoryDatabase:
    """Runs use cases, each in one transaction of its own, over state in memory.

    Attributes:
        clock: the clock units of work hand to use cases.
        platform: the platform's details, printed on the invoices it issues.
        transactions: transactions committed so far (read-only ones included).
    """

    def __init__(self, *, clock: Clock | None = None, platform: PlatformDetails | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self.platform = platform or PlatformDetails()
        self._state = migrated_state()
        self._lock = threading.Lock()
        self._owner: int | None = None
        self.transactions = 0

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def retries(self) -> int:
        return 0

    @property
    def state(self) -> MemoryState:
        """The committed state (read it, do not change it: write through a transaction)."""
        return self._state

    def transaction(
        self, work: Callable[[port.UnitOfWork], T], *, read_only: bool = False, single_write: bool = False
    ) -> T:
        """Run `work` on a copy of the state; commit the copy when it returns, drop it if it raises.
        (`single_write` changes nothing here: every transaction is all or nothing.)"""
        if self._owner == threading.get_ident():
            raise NestedTransaction("a transaction was begun inside another one on the same thread")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                uow = MemoryUnitOfWork(self._state.copy(), self._clock, self.platform)
                result = work(uow)
                if read_only and uow.state != self._state:
                    raise ReadOnlyWrite("a read-only transaction changed the ledger")
                self._state = uow.state
                self.transactions += 1
            finally:
                self._owner = None
        uow.committed()
        return result

    def stream(self, work: Callable[[port.UnitOfWork], Iterator[T]]) -> Iterator[T]:
        """Iterate `work` over a snapshot of the committed state taken at the first `next`;
        writers may commit meanwhile, as they may beside a database's read-only snapshot."""
        if self._owner == threading.get_ident():
            raise NestedTransaction("a transaction was begun inside another one on the same thread")
        with self._lock:
            snapshot = self._state
            uow = MemoryUnitOfWork(snapshot.copy(), self._clock, self.platform)
        yield from work(uow)
        if uow.state != snapshot:
            raise ReadOnlyWrite("a read-only transaction changed the ledger")
        with self._lock:
            self.transactions += 1

    def autocommit(self, work: Callable[[port.UnitOfWork], T], *, read_only: bool = False) -> T:
        """A transaction: the fake has no round trips to save."""
        return self.transaction(work, read_only=read_only)

    def dispose(self) -> None:
        """Nothing to release: the state lives as long as the object."""


if TYPE_CHECKING:
    # mypy proves that the fake implements the port (the unit of work and each store).
    _unit_of_work: type[port.UnitOfWork] = MemoryUnitOfWork
    _transactions: type[port.Transactions] = MemoryDatabase
