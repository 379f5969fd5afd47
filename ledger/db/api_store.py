"""API keys and idempotent requests in the database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ledger.db.schema import api_keys, idempotent_requests

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork


class ApiStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self._conn = uow.connection

    def add_key(self, key_id: str, role: str, key_hash: str) -> None:
        self._conn.execute(
            api_keys.insert().values(id=key_id, role=role, key_hash=key_hash, created_at=self._uow.clock.now())
        )

    def key_by_hash(self, key_hash: str) -> Any:
        return self._conn.execute(
            select(api_keys).where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
        ).first()

    def all_keys(self) -> list[Any]:
        return list(self._conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)))

    def revoke(self, key_id: str) -> bool:
        result = self._conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=self._uow.clock.now())
        )
        return bool(result.rowcount)

    def claim_request(self, key: str, api_key_id: str, method: str, path: str, body_hash: str) -> Any:
        """Record a new idempotent request; return the earlier one if the key was used."""
        insert = postgresql.insert if self._uow.dialect == "postgresql" else sqlite.insert
        claimed = self._conn.execute(
            insert(idempotent_requests)
            .values(
                key=key,
                api_key_id=api_key_id,
                method=method,
                path=path,
                body_hash=body_hash,
                created_at=self._uow.clock.now(),
            )
            .on_conflict_do_nothing()
            .returning(idempotent_requests.c.key)
        ).first()
        if claimed is not None:
            return None
        return self._conn.execute(
            select(idempotent_requests).where(
                idempotent_requests.c.key == key, idempotent_requests.c.api_key_id == api_key_id
            )
        ).one()

    def finish_request(self, key: str, api_key_id: str, status: int, media_type: str, response: str) -> None:
        self._conn.execute(
            idempotent_requests.update()
            .where(idempotent_requests.c.key == key, idempotent_requests.c.api_key_id == api_key_id)
            .values(status=status, media_type=media_type, response=response)
        )

    def release_request(self, key: str, api_key_id: str) -> None:
        self._conn.execute(
            delete(idempotent_requests).where(
                idempotent_requests.c.key == key, idempotent_requests.c.api_key_id == api_key_id
            )
        )
