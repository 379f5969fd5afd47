"""Fee schedules, lifetime billings and fee events in the database.

The schedules are kept per process for `SCHEDULES_KEPT` after they were read
(`ScheduleCache`): a schedule is put in force `ACTIVATION_LEAD` ahead at least,
so one activated after the read rules no time before the read plus that lead,
and the kept list answers for every time up to the read plus `SCHEDULES_KEPT`.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, bindparam, select

from ledger.db.schema import DIALECT_INSERT, fee_events, fee_schedules, lifetime_billings
from ledger.fees.model import ACTIVATION_LEAD, FeeEvent, NoScheduleInForce, ScheduleInForce
from ledger.fees.rule import FeeBreakdown, fee_for_payment, fee_for_refund
from ledger.fees.schedule import FeeSchedule

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork

#: How long a server keeps the schedules it read. Well under `ACTIVATION_LEAD`: the
#: rest covers an activation's transaction still in flight when they were read, and
#: clock skew between servers.
SCHEDULES_KEPT = ACTIVATION_LEAD / 5


# A release's statements, built once (see schema.DIALECT_INSERT); values come when they run.
_LOCK_PAIR = {
    dialect: insert(lifetime_billings)
    .on_conflict_do_update(
        index_elements=["freelancer_id", "client_id", "currency"], set_={"billed": lifetime_billings.c.billed}
    )
    .returning(lifetime_billings.c.billed)
    for dialect, insert in DIALECT_INSERT.items()
}
_ADD_EVENT = {
    dialect: insert(fee_events).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(fee_events.c.id)
    for dialect, insert in DIALECT_INSERT.items()
}
_SET_BILLED = lifetime_billings.update().where(
    lifetime_billings.c.freelancer_id == bindparam("pair_freelancer_id"),
    lifetime_billings.c.client_id == bindparam("pair_client_id"),
    lifetime_billings.c.currency == bindparam("pair_currency"),
)


class ScheduleCache:
    """Every schedule put in force, as read at a time; safe to share between threads.

    `in_force_at(at, now)` answers from the list while `now` and `at` are both before
    the read plus `SCHEDULES_KEPT`, and None otherwise (read the database again).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: tuple[datetime, tuple[ScheduleInForce, ...]] | None = None

    def in_force_at(self, at: datetime, now: datetime) -> ScheduleInForce | None:
        with self._lock:
            read = self._read
        if read is None:
            return None
        read_at, schedules = read
        kept_until = read_at + SCHEDULES_KEPT
        if not (read_at <= now < kept_until and at < kept_until):
            return None
        ruling = [s for s in schedules if s.effective_from <= at]
        return ruling[-1] if ruling else None

    def keep(self, read_at: datetime, schedules: list[ScheduleInForce]) -> None:
        with self._lock:
            self._read = (read_at, tuple(sorted(schedules, key=lambda s: s.effective_from)))

    def clear(self) -> None:
        with self._lock:
            self._read = None


class FeeStore:
    def __init__(self, uow: UnitOfWork, schedules: ScheduleCache) -> None:
        self._uow = uow
        self._conn = uow.connection
        self._schedules = schedules

    # --- schedules -------------------------------------------------------------

    def _schedule(self, row: Row[Any]) -> ScheduleInForce:
        return ScheduleInForce(int(row.id), FeeSchedule.from_data(row.definition), row.effective_from)

    def schedule_at(self, at: datetime) -> ScheduleInForce:
        now = self._uow.clock.now()
        kept = self._schedules.in_force_at(at, now)
        if kept is not None:
            return kept
        if at < now + SCHEDULES_KEPT:
            # The schedules are few: read them all, and keep them for the next fees.
            schedules = self.all_schedules()
            self._schedules.keep(now, schedules)
            kept = self._schedules.in_force_at(at, now)
            if kept is None:
                raise NoScheduleInForce(f"no fee schedule is in force at {at.isoformat()}", at=at.isoformat())
            return kept
        row = self._conn.execute(
            select(fee_schedules)
            .where(fee_schedules.c.effective_from <= at)
            .order_by(fee_schedules.c.effective_from.desc())
            .limit(1)
        ).first()
        if row is None:
            raise NoScheduleInForce(f"no fee schedule is in force at {at.isoformat()}", at=at.isoformat())
        return self._schedule(row)

    def schedule_by_id(self, schedule_id: int) -> ScheduleInForce:
        row = self._conn.execute(select(fee_schedules).where(fee_schedules.c.id == schedule_id)).one()
        return self._schedule(row)

    def all_schedules(self) -> list[ScheduleInForce]:
        rows = self._conn.execute(select(fee_schedules).order_by(fee_schedules.c.effective_from))
        return [self._schedule(row) for row in rows]

    def add_schedule(
        self, schedule: FeeSchedule, effective_from: datetime, *, recorded_at: datetime
    ) -> ScheduleInForce:
        new_id = self._conn.execute(
            fee_schedules.insert()
            .values(
                name=schedule.name,
                effective_from=effective_from,
                definition=schedule.to_data(),
                created_at=recorded_at,
            )
            .returning(fee_schedules.c.id)
        ).scalar_one()
        self._uow.after_commit(self._schedules.clear)
        return ScheduleInForce(int(new_id), schedule, effective_from)

    # --- lifetime billings -------------------------------------------------------

    def billed(self, freelancer_id: str, client_id: str, currency: str) -> int:
        value = self._conn.execute(
            select(lifetime_billings.c.billed).where(
                lifetime_billings.c.freelancer_id == freelancer_id,
                lifetime_billings.c.client_id == client_id,
                lifetime_billings.c.currency == currency,
            )
        ).scalar()
        return 0 if value is None else int(value)

    def lock_pair(self, freelancer_id: str, client_id: str, currency: str) -> int:
        """Lock the pair's row for the rest of the transaction and return its billings.

        One statement: insert the row at 0, or update it to itself. PostgreSQL: the
        update takes the row lock (a second payment for the pair waits, then reads
        the first one's total: ON CONFLICT DO UPDATE sees the latest committed row).
        SQLite: writers already hold the database's write lock from BEGIN IMMEDIATE.
        """
        pair = {"freelancer_id": freelancer_id, "client_id": client_id, "currency": currency, "billed": 0}
        return int(self._conn.execute(_LOCK_PAIR[self._uow.dialect], pair).scalar_one())

    # --- events ------------------------------------------------------------------

    def _event(self, row: Row[Any]) -> FeeEvent:
        schedule = self.schedule_by_id(int(row.schedule_id)).schedule
        compute = fee_for_payment if row.kind == "charge" else fee_for_refund
        breakdown = compute(schedule, row.currency, int(row.lifetime_before), int(row.amount))
        return FeeEvent(
            id=int(row.id),
            idempotency_key=row.idempotency_key,
            kind=row.kind,
            freelancer_id=row.freelancer_id,
            client_id=row.client_id,
            currency=row.currency,
            breakdown=breakdown,
            schedule_id=int(row.schedule_id),
            effective_at=row.effective_at,
            recorded_at=row.recorded_at,
        )

    def event_by_key(self, key: str) -> tuple[FeeEvent, str] | None:
        row = self._conn.execute(select(fee_events).where(fee_events.c.idempotency_key == key)).first()
        return None if row is None else (self._event(row), str(row.request_hash))

    def events_of_pair(self, freelancer_id: str, client_id: str, currency: str) -> list[FeeEvent]:
        rows = self._conn.execute(
            select(fee_events)
            .where(
                fee_events.c.freelancer_id == freelancer_id,
                fee_events.c.client_id == client_id,
                fee_events.c.currency == currency,
            )
            .order_by(fee_events.c.id)
        )
        return [self._event(row) for row in rows]

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
        new_id = self._conn.execute(
            _ADD_EVENT[self._uow.dialect],
            {
                "idempotency_key": key,
                "request_hash": request_hash,
                "kind": kind,
                "freelancer_id": freelancer_id,
                "client_id": client_id,
                "currency": breakdown.currency,
                "amount": breakdown.amount,
                "fee": breakdown.fee,
                "lifetime_before": breakdown.lifetime_before,
                "lifetime_after": breakdown.lifetime_after,
                "schedule_id": schedule_id,
                "effective_at": effective_at,
                "recorded_at": recorded_at,
            },
        ).scalar()
        if new_id is None:
            return None  # the key was used already: nothing written
        self._conn.execute(
            _SET_BILLED,
            {
                "pair_freelancer_id": freelancer_id,
                "pair_client_id": client_id,
                "pair_currency": breakdown.currency,
                "billed": breakdown.lifetime_after,
            },
        )
        return FeeEvent(
            id=int(new_id),
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
