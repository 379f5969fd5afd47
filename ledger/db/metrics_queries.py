"""The operators' metrics read at each scrape (`ledger.ports.queries.MetricsQueries`):
counts by state, nothing about a party."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Connection, func, select

from ledger.db.schema import payment_orders, postings, timers
from ledger.escrow.orders import OPEN_STATES

_OPEN = sorted(state.value for state in OPEN_STATES)


class SqlMetricsQueries:
    """`MetricsQueries` over one connection."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def posting_count(self) -> int:
        # Exact, so it reads every posting's key: an index-only scan on PostgreSQL. Should
        # the journal outgrow a scrape's budget, max(id) is one index probe and an upper
        # bound (ids of rolled-back writes are never used).
        return int(self._connection.execute(select(func.count()).select_from(postings)).scalar_one())

    def orders_by_state(self) -> Mapping[str, int]:
        # Over ix_payment_orders_due (state, next_attempt_at).
        query = select(payment_orders.c.state, func.count()).group_by(payment_orders.c.state)
        return {str(state): int(count) for state, count in self._connection.execute(query)}

    def oldest_open_order_created_at(self) -> datetime | None:
        query = select(func.min(payment_orders.c.created_at)).where(payment_orders.c.state.in_(_OPEN))
        oldest: datetime | None = self._connection.execute(query).scalar_one()
        return oldest

    def timers_due(self, at: datetime) -> int:
        # Over ix_timers_due (done_at, due_at).
        query = select(func.count()).select_from(timers).where(timers.c.done_at.is_(None), timers.c.due_at <= at)
        return int(self._connection.execute(query).scalar_one())
