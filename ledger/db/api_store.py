"""API keys and idempotent requests in the database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Row, bindparam, delete, select

from ledger.access import ApiKey, IdempotentRequest
from ledger.db.schema import DIALECT_INSERT, api_keys, idempotent_requests
from ledger.errors import RetriesExhausted

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork


# Every request runs these: built once (see schema.DIALECT_INSERT).
_ACTIVE_KEY = select(api_keys).where(api_keys.c.key_hash == bindparam("key_hash"), api_keys.c.revoked_at.is_(None))
_CLAIM = {
    dialect: insert(idempotent_requests).on_conflict_do_nothing().returning(idempotent_requests.c.key)
    for dialect, insert in DIALECT_INSERT.items()
}
_FINISH = idempotent_requests.update().where(
    idempotent_requests.c.key == bindparam("claimed_key"),
    idempotent_requests.c.api_key_id == bindparam("claimed_api_key_id"),
    idempotent_requests.c.status.is_(None),
    idempotent_requests.c.claimed_at == bindparam("claimed_claimed_at"),
)


#: Times a claim starts over when the claim in its way was released before it was read.
CLAIM_ATTEMPTS = 5


def _key(row: Row[Any]) -> ApiKey:
    return ApiKey(row.id, row.role, row.created_at, row.revoked_at)


def _request(row: Row[Any]) -> IdempotentRequest:
    return IdempotentRequest(
        key=row.key,
        api_key_id=row.api_key_id,
        method=row.method,
        path=row.path,
        body_hash=row.body_hash,
        created_at=row.created_at,
        claimed_at=row.claimed_at,
        status=row.status,
        media_type=row.media_type,
        response=row.response,
    )


class ApiStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self._conn = uow.connection

    def add_key(self, key_id: str, role: str, key_hash: str) -> None:
        self._conn.execute(
            api_keys.insert().values(id=key_id, role=role, key_hash=key_hash, created_at=self._uow.clock.now())
        )

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        row = self._conn.execute(_ACTIVE_KEY, {"key_hash": key_hash}).first()
        return None if row is None else _key(row)

    def all_keys(self) -> list[ApiKey]:
        return [
            _key(row) for row in self._conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id))
        ]

    def revoke(self, key_id: str) -> bool:
        result = self._conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=self._uow.clock.now())
        )
        return bool(result.rowcount)

    def claim_request(
        self, key: str, api_key_id: str, method: str, path: str, body_hash: str, *, now: datetime, lease: timedelta
    ) -> IdempotentRequest | None:
        """Claim the key for a request at `now`; return the earlier record if the key is
        held (in progress and within its lease, or finished) or was used for another request.

        A claim older than `lease` that never finished is taken over by the same request
        (same path and body hash) in one conditional UPDATE, so of two retries racing
        for it only one wins; the other finds it claimed again. Each statement stands
        alone, so the claim that stopped this one may be released (its request failed)
        before it is read: then the key is free, and claiming starts over.
        """
        for _ in range(CLAIM_ATTEMPTS):
            settled, earlier = self._claim_once(key, api_key_id, method, path, body_hash, now=now, lease=lease)
            if settled:
                return earlier
        raise RetriesExhausted(
            f"Idempotency-Key {key!r} was claimed and released {CLAIM_ATTEMPTS} times while this request claimed it",
            attempts=CLAIM_ATTEMPTS,
        )

    def _claim_once(
        self, key: str, api_key_id: str, method: str, path: str, body_hash: str, *, now: datetime, lease: timedelta
    ) -> tuple[bool, IdempotentRequest | None]:
        """(settled, earlier record): not settled when the claim in the way vanished."""
        claimed = self._conn.execute(
            _CLAIM[self._uow.dialect],
            {
                "key": key,
                "api_key_id": api_key_id,
                "method": method,
                "path": path,
                "body_hash": body_hash,
                "created_at": now,
                "claimed_at": now,
            },
        ).first()
        if claimed is not None:
            return True, None
        taken_over = self._conn.execute(
            idempotent_requests.update()
            .where(
                *self._same_key(key, api_key_id),
                idempotent_requests.c.status.is_(None),
                idempotent_requests.c.claimed_at < now - lease,
                idempotent_requests.c.path == path,
                idempotent_requests.c.body_hash == body_hash,
            )
            .values(claimed_at=now)
            .returning(idempotent_requests.c.key)
        ).first()
        if taken_over is not None:
            return True, None
        row = self._conn.execute(select(idempotent_requests).where(*self._same_key(key, api_key_id))).first()
        return (False, None) if row is None else (True, _request(row))

    def finish_request(
        self, key: str, api_key_id: str, claimed_at: datetime, status: int, media_type: str, response: str
    ) -> bool:
        """Record the response of the claim made at `claimed_at`; False if that claim was
        taken over meanwhile (the newer claim records its own response)."""
        result = self._conn.execute(
            _FINISH,
            {
                "claimed_key": key,
                "claimed_api_key_id": api_key_id,
                "claimed_claimed_at": claimed_at,
                "status": status,
                "media_type": media_type,
                "response": response,
            },
        )
        return bool(result.rowcount)

    def release_request(self, key: str, api_key_id: str, claimed_at: datetime) -> bool:
        """Forget the claim made at `claimed_at` (the request failed in passing), unless it was taken over."""
        result = self._conn.execute(delete(idempotent_requests).where(*self._own_claim(key, api_key_id, claimed_at)))
        return bool(result.rowcount)

    def prune_requests(self, *, finished_before: datetime, abandoned_before: datetime) -> tuple[int, int]:
        """Delete finished records last claimed before `finished_before` and claims still
        in progress made before `abandoned_before`; return how many of each."""
        finished = self._conn.execute(
            delete(idempotent_requests).where(
                idempotent_requests.c.status.is_not(None), idempotent_requests.c.claimed_at < finished_before
            )
        )
        abandoned = self._conn.execute(
            delete(idempotent_requests).where(
                idempotent_requests.c.status.is_(None), idempotent_requests.c.claimed_at < abandoned_before
            )
        )
        return finished.rowcount, abandoned.rowcount

    @staticmethod
    def _same_key(key: str, api_key_id: str) -> tuple[ColumnElement[bool], ...]:
        return idempotent_requests.c.key == key, idempotent_requests.c.api_key_id == api_key_id

    @classmethod
    def _own_claim(cls, key: str, api_key_id: str, claimed_at: datetime) -> tuple[ColumnElement[bool], ...]:
        return (
            *cls._same_key(key, api_key_id),
            idempotent_requests.c.status.is_(None),
            idempotent_requests.c.claimed_at == claimed_at,
        )
