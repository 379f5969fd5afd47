"""The simulated provider's books in the database (`provider_books`).

The store has its own engine: each `atomically` runs on its own connection and
commits on its own, whatever transaction the caller has open, as a real provider's
books would. On SQLite that means the gateway must not be called while the caller
holds the write lock (escrow never does: provider calls happen between transactions).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from ledger.clock import Clock, SystemClock
from ledger.db.engine import make_engine
from ledger.db.schema import provider_books
from ledger.gateway.books import ProviderRecord, parse_reference

T = TypeVar("T")


def _record(row: Any) -> ProviderRecord:
    return ProviderRecord(
        id=int(row.id),
        kind=row.kind,
        idempotency_key=row.idempotency_key,
        amount=int(row.amount),
        currency=row.currency,
        status=row.status,
        answered=row.answered,
        fee=int(row.fee),
        failure_reason=row.failure_reason,
        party=row.party,
        charge_reference=row.charge_reference,
        order_id=row.order_id,
        metadata=dict(row.metadata or {}),
        reinstated=int(row.reinstated),
    )


class DatabaseBookView:
    """The provider's books inside one of its own transactions."""

    def __init__(self, connection: Connection, provider: str, now: datetime) -> None:
        self._conn = connection
        self._provider = provider
        self._now = now
        self._locking = connection.dialect.name == "postgresql"

    def _select(self) -> Any:
        return select(provider_books).where(provider_books.c.provider == self._provider)

    def by_key(self, key: str) -> ProviderRecord | None:
        row = self._conn.execute(self._select().where(provider_books.c.idempotency_key == key)).first()
        return None if row is None else _record(row)

    def get(self, reference: str, *, lock: bool = False) -> ProviderRecord | None:
        parsed = parse_reference(reference)
        if parsed is None:
            return None
        kind, number = parsed
        statement = self._select().where(provider_books.c.id == number, provider_books.c.kind == kind)
        if lock and self._locking:
            statement = statement.with_for_update()
        row = self._conn.execute(statement).first()
        return None if row is None else _record(row)

    def refunded(self, charge_reference: str) -> int:
        total = self._conn.execute(
            select(func.coalesce(func.sum(provider_books.c.amount), 0)).where(
                provider_books.c.provider == self._provider,
                provider_books.c.kind == "refund",
                provider_books.c.status == "succeeded",
                provider_books.c.charge_reference == charge_reference,
            )
        ).scalar_one()
        return int(total)

    def find(self, kind: str, order_id: str) -> ProviderRecord | None:
        row = self._conn.execute(
            self._select()
            .where(provider_books.c.kind == kind, provider_books.c.order_id == order_id)
            .order_by(provider_books.c.id)
        ).first()
        return None if row is None else _record(row)

    def records(self) -> list[ProviderRecord]:
        return [_record(row) for row in self._conn.execute(self._select().order_by(provider_books.c.id))]

    def add(self, **values: Any) -> ProviderRecord:
        values.setdefault("fee", 0)
        values.setdefault("reinstated", 0)
        values["metadata"] = dict(values.pop("metadata", None) or {})
        number = self._conn.execute(
            provider_books.insert()
            .values(provider=self._provider, created_at=self._now, updated_at=self._now, **values)
            .returning(provider_books.c.id)
        ).scalar_one()
        found = self._conn.execute(self._select().where(provider_books.c.id == number)).one()
        return _record(found)

    def update(self, record: ProviderRecord, **changes: Any) -> ProviderRecord:
        self._conn.execute(
            provider_books.update().where(provider_books.c.id == record.id).values(updated_at=self._now, **changes)
        )
        return _record(self._conn.execute(self._select().where(provider_books.c.id == record.id)).one())


class DatabaseBooks:
    """The provider's books in the `provider_books` table of the database at `url`."""

    def __init__(self, url: str, *, provider: str = "simulated", clock: Clock | None = None) -> None:
        self.engine: Engine = make_engine(url)
        self.provider = provider
        self.clock = clock or SystemClock()

    def atomically(self, work: Callable[[DatabaseBookView], T]) -> T:
        """Run `work` in one transaction of the provider's own, committed when it returns."""
        try:
            return self._once(work)
        except IntegrityError:
            # The same idempotency key, sent twice at once: the second finds the first's answer.
            return self._once(work)

    def _once(self, work: Callable[[DatabaseBookView], T]) -> T:
        with self.engine.begin() as connection:
            return work(DatabaseBookView(connection, self.provider, self.clock.now()))

    def close(self) -> None:
        self.engine.dispose()
