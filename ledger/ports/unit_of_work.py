"""The unit-of-work port: what use cases need of persistence.

A use case takes a `UnitOfWork` and calls its stores; the caller runs it in one
transaction, which commits once when the use case returns and rolls back if it
raises. What must happen only after commit goes to `after_commit`. `ledger.db`
implements this over SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

from ledger.clock import Clock
from ledger.invoices.documents import PlatformDetails
from ledger.ports.accounting import AccountStore, FeeStore, JournalStore
from ledger.ports.escrow import EscrowStore, OrderStore
from ledger.ports.queries import (
    AuditQueries,
    MetricsQueries,
    ReconciliationQueries,
    ReportQueries,
    StatementQueries,
)
from ledger.ports.records import ApiStore, DocumentStore


class UnitOfWork(Protocol):
    """One transaction and the stores that work inside it.

    Attributes:
        clock: where the use cases take the time from.
        platform: the platform's details, printed on the invoices it issues.
        origin: who is writing (a request's own id): the payment orders written carry it.
        accounts: accounts and their balances.
        journal: entries and postings.
        fees: fee schedules, lifetime billings and fee events.
        escrow: contracts, milestones, payments, payouts, refunds, disputes and timers.
        documents: parties, invoices and credit notes.
        api: API keys and idempotent HTTP requests.
        orders: payment orders, request keys and worker heartbeats.
        audit, reports, statements, reconciliation: the read queries of the audit checks,
            finance's reports and statements, and reconciliation with the provider.
        metrics: the counts `/metrics` reads at each scrape.
    """

    origin: str | None

    @property
    def clock(self) -> Clock: ...

    @property
    def platform(self) -> PlatformDetails: ...

    @property
    def accounts(self) -> AccountStore: ...

    @property
    def journal(self) -> JournalStore: ...

    @property
    def fees(self) -> FeeStore: ...

    @property
    def escrow(self) -> EscrowStore: ...

    @property
    def documents(self) -> DocumentStore: ...

    @property
    def api(self) -> ApiStore: ...

    @property
    def orders(self) -> OrderStore: ...

    @property
    def audit(self) -> AuditQueries: ...

    @property
    def reports(self) -> ReportQueries: ...

    @property
    def statements(self) -> StatementQueries: ...

    @property
    def reconciliation(self) -> ReconciliationQueries: ...

    @property
    def metrics(self) -> MetricsQueries: ...

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the transaction has committed (never if it rolls back)."""
        ...


T = TypeVar("T")


class Transactions(Protocol):
    """Runs use cases, each in one transaction of its own (`ledger.db.unit_of_work.Database`).

    `transaction(work)` calls `work(uow)` in one transaction and commits once when it
    returns; a transaction that lost a race (serialization failure, deadlock, lock
    timeout) is rolled back and run again, so `work` has no side effect outside it.
    """

    @property
    def clock(self) -> Clock: ...

    @property
    def retries(self) -> int: ...

    def transaction(self, work: Callable[[UnitOfWork], T], *, read_only: bool = False, single_write: bool = False) -> T:
        """`single_write`: `work`'s only write is one statement atomic by itself (a posting),
        which the database may then run without an explicit transaction around it."""
        ...

    def stream(self, work: Callable[[UnitOfWork], Iterator[T]]) -> Iterator[T]:
        """What `work(uow)` yields, read in one read-only transaction (one snapshot) that
        begins at the first `next` and stays open until the iterator is exhausted or
        closed. Not retried: what was yielded may already have been sent."""
        ...

    def autocommit(self, work: Callable[[UnitOfWork], T], *, read_only: bool = False) -> T:
        """Run `work` whose every statement stands on its own (each is atomic by itself,
        none relies on another's being undone with it), without a transaction around
        them where the database allows: each statement commits as it runs, so no
        BEGIN or COMMIT is sent. Retried as `transaction` is; `after_commit` runs at the end."""
        ...

    def dispose(self) -> None: ...
