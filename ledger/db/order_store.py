"""Payment orders, request keys, worker heartbeats and the worker's audit runs in the database.

Orders are taken by a dispatcher under a lease: the claim is one UPDATE of rows
that are due and not leased (on PostgreSQL the candidates are picked with
`FOR UPDATE SKIP LOCKED`, so concurrent dispatchers take different orders; on
SQLite writers hold the database lock), so two dispatchers never send one order
at the same time, and an order whose sender crashed is due again once its lease
has expired.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, Update, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from ledger.actors import StateChange, current_actor
from ledger.db import state_log
from ledger.db.schema import DIALECT_INSERT, audit_runs, payment_orders, request_keys, worker_heartbeats
from ledger.errors import IdempotencyConflict
from ledger.escrow.model import new_id
from ledger.escrow.orders import OPEN_STATES, NewOrder, OrderKind, OrderState, PaymentOrder, UnknownOrder
from ledger.ports.escrow import AuditRun

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork

#: The width of a heartbeat summary (worker_heartbeats.summary).
HEARTBEAT_SUMMARY_LENGTH = 500


# Built once: every request with a request key runs it (see schema.DIALECT_INSERT).
_BIND_REQUEST_KEY = {
    dialect: insert(request_keys).on_conflict_do_nothing().returning(request_keys.c.key)
    for dialect, insert in DIALECT_INSERT.items()
}


def _order(row: Row[Any]) -> PaymentOrder:
    return PaymentOrder(
        id=row.id,
        kind=OrderKind(row.kind),
        state=OrderState(row.state),
        amount=int(row.amount),
        currency=row.currency,
        provider_key=row.provider_key,
        created_at=row.created_at,
        updated_at=row.updated_at,
        milestone_id=row.milestone_id,
        payout_id=row.payout_id,
        refund_order_id=row.refund_order_id,
        target_reference=row.target_reference,
        provider_reference=row.provider_reference,
        failure_reason=row.failure_reason,
        origin=row.origin,
        attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at,
        lease_until=row.lease_until,
        first_sent_at=row.first_sent_at,
        completed_at=row.completed_at,
        resolved_by=row.resolved_by,
        details=dict(row.details or {}),
        actor=row.actor,
    )


class OrderStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self._conn = uow.connection
        #: ids of the orders written in this transaction (the request that commits it sends them)
        self.written: list[str] = []

    # --- writing ---------------------------------------------------------------------

    def add(self, new: NewOrder) -> PaymentOrder:
        now = self._uow.clock.now()
        order_id = new.id or new_id("ord")
        self._conn.execute(
            payment_orders.insert().values(
                id=order_id,
                kind=new.kind.value,
                state=OrderState.PENDING.value,
                amount=new.amount,
                currency=new.currency,
                provider_key=new.provider_key,
                milestone_id=new.milestone_id,
                payout_id=new.payout_id,
                refund_order_id=new.refund_order_id,
                target_reference=new.target_reference,
                origin=self._uow.origin,
                attempts=0,
                next_attempt_at=now,
                details=dict(new.details),
                created_at=now,
                updated_at=now,
                actor=current_actor(),
            )
        )
        self._changed(order_id, OrderState.PENDING)
        self.written.append(order_id)
        return self.get(order_id)

    def get(self, order_id: str, *, lock: bool = False) -> PaymentOrder:
        query = select(payment_orders).where(payment_orders.c.id == order_id)
        if lock and self._uow.dialect == "postgresql":
            query = query.with_for_update()
        row = self._conn.execute(query).first()
        if row is None:
            raise UnknownOrder(f"no payment order {order_id}", order_id=order_id)
        return _order(row)

    def history(self, order_id: str) -> list[StateChange]:
        return state_log.history(self._conn, "payment_order", order_id)

    def _changed(self, order_id: str, state: OrderState) -> None:
        state_log.record(self._conn, "payment_order", order_id, state.value, self._uow.clock.now())

    def _update(self, order_id: str) -> Update:
        """The UPDATE of one order, stamped with the time of the change."""
        return payment_orders.update().where(payment_orders.c.id == order_id).values(updated_at=self._uow.clock.now())

    def mark_sent(self, order_id: str, *, first_sent_at: datetime) -> None:
        self._conn.execute(self._update(order_id).values(state=OrderState.SENT.value, first_sent_at=first_sent_at))
        self._changed(order_id, OrderState.SENT)

    def wait_for_payer(self, order_id: str, reference: str, *, client_secret: str | None = None) -> None:
        statement = self._update(order_id).values(
            state=OrderState.REQUIRES_ACTION.value, provider_reference=reference, lease_owner=None, lease_until=None
        )
        if client_secret:
            statement = statement.values(details={**self.get(order_id).details, "client_secret": client_secret})
        self._conn.execute(statement)
        self._changed(order_id, OrderState.REQUIRES_ACTION)

    def note(self, order_id: str, **details: str) -> None:
        """Add to what the order records (e.g. the payments its success released)."""
        self._conn.execute(self._update(order_id).values(details={**self.get(order_id).details, **details}))

    def acknowledged(self, order_id: str, reference: str, *, retry_at: datetime) -> None:
        """The provider took the order and will tell its outcome later: ask again at `retry_at`."""
        self._conn.execute(
            self._update(order_id).values(
                state=OrderState.SENT.value,
                provider_reference=reference,
                next_attempt_at=retry_at,
                lease_owner=None,
                lease_until=None,
            )
        )
        self._changed(order_id, OrderState.SENT)

    def retry_later(self, order_id: str, *, attempts: int, at: datetime, reason: str) -> None:
        self._conn.execute(
            self._update(order_id).values(
                attempts=attempts,
                next_attempt_at=at,
                failure_reason=reason[:500],
                lease_owner=None,
                lease_until=None,
            )
        )

    def finish(
        self,
        order_id: str,
        state: OrderState,
        *,
        reference: str | None = None,
        reason: str | None = None,
        resolved_by: str | None = None,
    ) -> None:
        statement = self._update(order_id).values(
            state=state.value,
            completed_at=self._uow.clock.now(),
            lease_owner=None,
            lease_until=None,
            failure_reason=None if reason is None else reason[:500],
        )
        if reference is not None:
            statement = statement.values(provider_reference=reference)
        if resolved_by is not None:
            statement = statement.values(resolved_by=resolved_by)
        self._conn.execute(statement)
        self._changed(order_id, state)

    def settle(self, order: PaymentOrder | None, *, succeeded: bool, reference: str | None, reason: str | None) -> None:
        """Finish the order behind a settled refund or payout (a webhook may settle it first)."""
        if order is None or order.state.is_final:
            return
        state = OrderState.SUCCEEDED if succeeded else OrderState.FAILED
        self.finish(order.id, state, reference=reference, reason=None if succeeded else (reason or "failed"))

    def mark_resolved(self, order_id: str, *, actor: str, note: str) -> None:
        details = {**self.get(order_id).details, "resolution": note}
        self._conn.execute(self._update(order_id).values(resolved_by=actor[:80], details=details))

    def reopen(self, order_id: str, *, at: datetime) -> None:
        """An operator's retry: due now, with a fresh count of attempts."""
        self._conn.execute(
            self._update(order_id).values(
                state=OrderState.PENDING.value,
                attempts=0,
                next_attempt_at=at,
                lease_owner=None,
                lease_until=None,
                failure_reason=None,
            )
        )
        self._changed(order_id, OrderState.PENDING)

    # --- taking orders to send -----------------------------------------------------------

    def claim(
        self, *, owner: str, now: datetime, lease_until: datetime, ids: Iterable[str] | None, limit: int
    ) -> list[PaymentOrder]:
        """Lease the due orders (all due, or only `ids`) to `owner`; return those taken."""
        due = and_(
            payment_orders.c.state.in_([OrderState.PENDING.value, OrderState.SENT.value]),
            payment_orders.c.next_attempt_at <= now,
            or_(payment_orders.c.lease_until.is_(None), payment_orders.c.lease_until < now),
        )
        candidates = select(payment_orders.c.id).where(due)
        if ids is not None:
            wanted = list(ids)
            if not wanted:
                return []
            candidates = candidates.where(payment_orders.c.id.in_(wanted))
        candidates = candidates.order_by(payment_orders.c.next_attempt_at, payment_orders.c.id).limit(limit)
        if self._uow.dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        chosen = [str(i) for i in self._conn.execute(candidates).scalars()]
        if not chosen:
            return []
        taken = self._conn.execute(
            payment_orders.update()
            .where(payment_orders.c.id.in_(chosen), due)
            .values(lease_owner=owner, lease_until=lease_until, updated_at=now)
            .returning(payment_orders.c.id)
        ).scalars()
        taken_ids = set(taken)
        return [self.get(i) for i in chosen if i in taken_ids]

    def holds_lease(self, order_id: str, owner: str) -> bool:
        found = self._conn.execute(select(payment_orders.c.lease_owner).where(payment_orders.c.id == order_id)).scalar()
        return found == owner

    # --- reading -----------------------------------------------------------------------

    def of_milestone(self, milestone_id: str, *, kinds: Iterable[OrderKind] | None = None) -> list[PaymentOrder]:
        query = select(payment_orders).where(payment_orders.c.milestone_id == milestone_id)
        if kinds is not None:
            query = query.where(payment_orders.c.kind.in_([k.value for k in kinds]))
        query = query.order_by(payment_orders.c.created_at, payment_orders.c.id)
        return [_order(row) for row in self._conn.execute(query)]

    def of_payout(self, payout_id: str) -> PaymentOrder | None:
        row = self._conn.execute(
            select(payment_orders).where(payment_orders.c.payout_id == payout_id).order_by(payment_orders.c.created_at)
        ).first()
        return None if row is None else _order(row)

    def of_refund_order(self, refund_order_id: str) -> PaymentOrder | None:
        row = self._conn.execute(
            select(payment_orders).where(payment_orders.c.refund_order_id == refund_order_id)
        ).first()
        return None if row is None else _order(row)

    def by_provider_key(self, key: str) -> PaymentOrder | None:
        row = self._conn.execute(select(payment_orders).where(payment_orders.c.provider_key == key)).first()
        return None if row is None else _order(row)

    def by_provider_reference(self, reference: str) -> PaymentOrder | None:
        row = self._conn.execute(select(payment_orders).where(payment_orders.c.provider_reference == reference)).first()
        return None if row is None else _order(row)

    def listing(self, *, states: Iterable[OrderState] | None = None, limit: int = 1000) -> list[PaymentOrder]:
        query = select(payment_orders)
        if states is not None:
            query = query.where(payment_orders.c.state.in_([s.value for s in states]))
        query = query.order_by(payment_orders.c.created_at, payment_orders.c.id).limit(limit)
        return [_order(row) for row in self._conn.execute(query)]

    def open_orders(self, limit: int = 10_000) -> list[PaymentOrder]:
        return self.listing(states=OPEN_STATES, limit=limit)

    def waiting_for_payer(self, before: datetime, limit: int = 1000) -> list[PaymentOrder]:
        """Charges waiting for the payer (3-D Secure) since before `before`. Orders still
        waiting for the provider itself are not the payer's: they are sent until answered."""
        query = (
            select(payment_orders)
            .where(
                payment_orders.c.state == OrderState.REQUIRES_ACTION.value,
                payment_orders.c.kind.in_([OrderKind.FUND.value, OrderKind.BONUS.value]),
                payment_orders.c.created_at < before,
            )
            .order_by(payment_orders.c.created_at, payment_orders.c.id)
            .limit(limit)
        )
        return [_order(row) for row in self._conn.execute(query)]

    # --- request keys ------------------------------------------------------------------------

    def bind_request_key(
        self,
        key: str,
        operation: str,
        request: Mapping[str, object],
        *,
        result: Mapping[str, object] | None = None,
    ) -> dict[str, object] | None:
        """Bind `key` to this request. Returns None the first time (the caller does the work
        and stores its result with `store_result`, unless it gave `result` up front), the
        stored result when the same request comes again; another request with the key is
        an `IdempotencyConflict`.

        A concurrent duplicate waits on the key's row (PostgreSQL: the unique insert waits
        for the first transaction) and then finds its result, never a unique violation."""
        fingerprint = hashlib.sha256(
            json.dumps({"operation": operation, **request}, sort_keys=True, default=str).encode()
        ).hexdigest()
        claimed = self._conn.execute(
            _BIND_REQUEST_KEY[self._uow.dialect],
            {
                "key": key,
                "operation": operation,
                "fingerprint": fingerprint,
                "result": dict(result or {}),
                "created_at": self._uow.clock.now(),
            },
        ).first()
        if claimed is not None:
            return None
        row = self._conn.execute(select(request_keys).where(request_keys.c.key == key)).one()
        if row.fingerprint != fingerprint:
            raise IdempotencyConflict(
                f"request key {key!r} was used for another request ({row.operation})",
                idempotency_key=key,
                operation=row.operation,
            )
        return dict(row.result)

    def store_result(self, key: str, result: Mapping[str, object]) -> None:
        self._conn.execute(request_keys.update().where(request_keys.c.key == key).values(result=dict(result)))

    # --- workers -------------------------------------------------------------------------------

    def heartbeat(self, name: str, *, started_at: datetime, summary: str) -> None:
        now = self._uow.clock.now()
        summary = summary[:HEARTBEAT_SUMMARY_LENGTH]  # the column's width, on the first beat too
        insert = postgresql.insert if self._uow.dialect == "postgresql" else sqlite.insert
        statement = insert(worker_heartbeats).values(name=name, beat_at=now, started_at=started_at, summary=summary)
        self._conn.execute(
            statement.on_conflict_do_update(
                index_elements=[worker_heartbeats.c.name],
                set_={"beat_at": now, "started_at": started_at, "summary": summary},
            )
        )

    def heartbeats(self) -> list[tuple[str, datetime, str]]:
        rows = self._conn.execute(select(worker_heartbeats).order_by(worker_heartbeats.c.beat_at.desc()))
        return [(row.name, row.beat_at, row.summary) for row in rows]

    def record_audit_run(
        self, *, started_at: datetime, finished_at: datetime, ok: bool, failed_checks: Sequence[str], problems: int
    ) -> AuditRun:
        run = AuditRun(started_at, finished_at, ok, tuple(failed_checks), problems, current_actor())
        self._conn.execute(
            audit_runs.insert().values(
                started_at=run.started_at,
                finished_at=run.finished_at,
                ok=run.ok,
                failed_checks={"names": list(run.failed_checks)},
                problems=run.problems,
                actor=run.actor,
            )
        )
        return run

    def last_audit_run(self) -> AuditRun | None:
        # A handful of rows a day; the id breaks a tie between runs finished at one instant.
        query = select(audit_runs).order_by(audit_runs.c.finished_at.desc(), audit_runs.c.id.desc()).limit(1)
        row = self._conn.execute(query).first()
        if row is None:
            return None
        names = (row.failed_checks or {}).get("names", [])
        return AuditRun(row.started_at, row.finished_at, bool(row.ok), tuple(names), int(row.problems), row.actor)
