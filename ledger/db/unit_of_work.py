"""Units of work and retryable transactions.

A use case runs inside `Database.transaction(work)`: `work(uow)` gets a unit of
work bound to one database transaction, which commits once when `work` returns
and rolls back if it raises. If the database reports a serialization failure or a
deadlock (PostgreSQL), or a lock timeout (SQLite), the whole transaction is rolled
back and run again, up to `max_attempts` times; every retry is counted in
`Database.retries` and logged. `work` must therefore not have side effects outside
the database; what must happen only after commit goes to `uow.after_commit`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ledger.clock import Clock, SystemClock
from ledger.db.account_store import AccountCache, AccountStore
from ledger.db.api_store import ApiStore
from ledger.db.audit_queries import SqlAuditQueries
from ledger.db.document_store import DocumentStore
from ledger.db.engine import make_engine
from ledger.db.escrow_store import EscrowStore
from ledger.db.fee_store import FeeStore, ScheduleCache
from ledger.db.journal_store import JournalStore
from ledger.db.metrics_queries import SqlMetricsQueries
from ledger.db.order_store import OrderStore
from ledger.db.reconciliation_queries import SqlReconciliationQueries
from ledger.db.report_queries import SqlReportQueries, SqlStatementQueries
from ledger.errors import InvalidRequest, RetriesExhausted
from ledger.invoices.documents import PlatformDetails
from ledger.ports import unit_of_work as port
from ledger.ports.queries import (
    AuditQueries,
    MetricsQueries,
    ReconciliationQueries,
    ReportQueries,
    StatementQueries,
)

T = TypeVar("T")
log = logging.getLogger("ledger.transactions")

#: PostgreSQL SQLSTATEs after which a transaction is safe and useful to run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


def is_retryable(error: DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return True
    message = str(error.orig).lower()
    return "database is locked" in message or "database is busy" in message


class UnitOfWork:
    """One database transaction and the stores that work inside it.

    Attributes:
        connection: the SQLAlchemy connection, inside its transaction.
        clock: where the use cases take the time from.
        accounts: accounts and their balances.
        journal: entries and postings.
        fees: fee schedules, lifetime billings and fee events.
        escrow: contracts, milestones, payments, payouts and timers.
        documents: parties, invoices and credit notes.
        api: API keys and idempotent HTTP requests.
        orders: payment orders, request keys and worker heartbeats.
        metrics: the counts `/metrics` reads at each scrape.
    """

    def __init__(self, connection: Connection, database: Database) -> None:
        self.connection = connection
        self.dialect = connection.dialect.name
        self.clock: Clock = database.clock
        self.platform: PlatformDetails = database.platform
        self.accounts: AccountStore = AccountStore(self, database.account_cache)
        self.journal: JournalStore = JournalStore(self)
        self.fees: FeeStore = FeeStore(self, database.schedule_cache)
        self.escrow: EscrowStore = EscrowStore(self)
        self.documents: DocumentStore = DocumentStore(self)
        self.api: ApiStore = ApiStore(self)
        #: who is writing (a request's own id): the payment orders written carry it
        self.origin: str | None = None
        self.orders: OrderStore = OrderStore(self)
        #: reads for the audit, the finance reports, statements and reconciliation
        self.audit: AuditQueries = SqlAuditQueries(connection)
        self.reports: ReportQueries = SqlReportQueries(connection)
        self.statements: StatementQueries = SqlStatementQueries(connection)
        self.reconciliation: ReconciliationQueries = SqlReconciliationQueries(connection)
        self.metrics: MetricsQueries = SqlMetricsQueries(connection)
        self._after_commit: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the transaction has committed (never if it rolls back)."""
        self._after_commit.append(callback)

    def _committed(self) -> None:
        for callback in self._after_commit:
            callback()


if TYPE_CHECKING:
    # mypy proves that this unit of work (and so each of its stores) implements the port.
    _implements_port: type[port.UnitOfWork] = UnitOfWork


class Database:
    """An engine, the account and schedule caches and the retry counter, shared by all units of work.

    Attributes:
        engine: the SQLAlchemy engine.
        clock: the clock units of work hand to use cases.
        retries: transactions run again after a serialization failure, deadlock or lock timeout.
        platform: the platform's details, printed on the invoices it issues.
    """

    def __init__(
        self,
        url_or_engine: str | Engine,
        *,
        clock: Clock | None = None,
        max_attempts: int = 12,
        platform: PlatformDetails | None = None,
    ) -> None:
        self.engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        self.clock: Clock = clock or SystemClock()
        self.max_attempts = max_attempts
        self.platform = platform or PlatformDetails()
        self.account_cache: AccountCache = AccountCache()
        self.schedule_cache: ScheduleCache = ScheduleCache()
        self._retries = 0
        self._lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def retries(self) -> int:
        return self._retries

    def transaction(self, work: Callable[[UnitOfWork], T], *, read_only: bool = False, single_write: bool = False) -> T:
        """Run `work` in one transaction, committing once; retry it on a lost race.

        `single_write`: `work` writes with one statement that is atomic by itself (the
        posting statement), so on PostgreSQL it runs without an explicit transaction:
        the statement is its own transaction, and BEGIN and COMMIT cost no round trips.
        Its reads (accounts not yet cached, the originals of replayed keys) then each see
        the latest committed data, which is all they need. (SQLite writes a posting with
        several statements: there it stays a transaction.)"""
        autocommit = single_write and not read_only and self.dialect == "postgresql"
        return self._run(work, read_only=read_only, autocommit=autocommit)

    def autocommit(self, work: Callable[[UnitOfWork], T], *, read_only: bool = False) -> T:
        """Run `work`, whose statements each stand alone, with each committing as it runs:
        PostgreSQL's AUTOCOMMIT, SQLite without BEGIN (engine.py). No BEGIN or COMMIT
        round trip; retried on a lost race as `transaction` is."""
        return self._run(work, read_only=read_only, autocommit=True)

    def _run(self, work: Callable[[UnitOfWork], T], *, read_only: bool, autocommit: bool) -> T:
        for attempt in range(1, self.max_attempts + 1):
            try:
                with self.engine.connect() as connection:
                    connection.info["ledger_autocommit"] = autocommit
                    if autocommit:
                        # SQLite: a reader need not take the write lock (see engine.py).
                        connection.info["ledger_read_only"] = read_only
                        if self.dialect == "postgresql":
                            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                    elif read_only:
                        connection = self._read_only(connection)
                    else:
                        connection.info["ledger_read_only"] = False
                    with connection.begin():
                        uow = UnitOfWork(connection, self)
                        result = work(uow)
                uow._committed()
                return result
            except DBAPIError as error:
                if "cannot contain NUL" in str(error.orig):
                    # PostgreSQL text holds no U+0000: a request carrying one is bad input.
                    raise InvalidRequest("text may not contain the NUL character (U+0000)") from None
                if not is_retryable(error):
                    raise
                if attempt == self.max_attempts:
                    raise RetriesExhausted(
                        f"gave up after {attempt} attempts: {error.orig}", attempts=attempt
                    ) from error
                with self._lock:
                    self._retries += 1
                log.warning("transaction retried (attempt %d): %s", attempt, str(error.orig).splitlines()[0])
                # Jittered exponential backoff keeps retrying writers from colliding again.
                time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 8)))
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_only(self, connection: Connection) -> Connection:
        # SQLite: a reader need not take the write lock (see engine.py).
        connection.info["ledger_read_only"] = True
        if self.dialect == "postgresql":
            # One snapshot for all the reads of the transaction.
            return connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        return connection

    def stream(self, work: Callable[[UnitOfWork], Iterator[T]]) -> Iterator[T]:
        """Yield what `work(uow)` yields, inside one read-only transaction.

        A generator: the connection is taken at the first `next` (so an iterator never
        started holds nothing) and given back when it is exhausted or closed. A
        response streamed from it runs after its handler returned, so the whole read
        stays one snapshot (REPEATABLE READ on PostgreSQL, a WAL read transaction on
        SQLite). Not retried: a read-only snapshot does not lose serialization races,
        and what was yielded may already be on its way to a client.
        """
        with self.engine.connect() as connection:
            connection = self._read_only(connection)
            with connection.begin():
                yield from work(UnitOfWork(connection, self))

    def dispose(self) -> None:
        self.engine.dispose()
