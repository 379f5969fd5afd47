"""API keys: created by operators (`ledger keys create`), stored only as SHA-256 hashes.

Roles: `marketplace` moves money and reads balances; `finance` reads and exports;
`auditor` only reads (audit, journal, reports); `admin` may use every route.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from ledger.errors import InvalidRequest, NotFound
from ledger.ports.unit_of_work import UnitOfWork

ROLES = ("marketplace", "finance", "auditor", "admin")


class UnknownApiKey(NotFound):
    """No active API key has this id."""

    code = "unknown-api-key"


@dataclass(frozen=True)
class ApiKey:
    """An API key's record (never the key itself)."""

    id: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(uow: UnitOfWork, role: str) -> tuple[ApiKey, str]:
    """Create a key for `role`; returns its record and the key, which is shown only now."""
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", field="role")
    key_id = f"key_{secrets.token_hex(6)}"
    key = f"lk_{role[:3]}_{secrets.token_urlsafe(32)}"
    uow.api.add_key(key_id, role, hash_key(key))
    return ApiKey(key_id, role, uow.clock.now(), None), key


def authenticate(uow: UnitOfWork, key: str) -> ApiKey | None:
    row = uow.api.key_by_hash(hash_key(key))
    return None if row is None else ApiKey(row.id, row.role, row.created_at, row.revoked_at)


def list_keys(uow: UnitOfWork) -> list[ApiKey]:
    return [ApiKey(r.id, r.role, r.created_at, r.revoked_at) for r in uow.api.all_keys()]


def revoke_key(uow: UnitOfWork, key_id: str) -> None:
    if not uow.api.revoke(key_id):
        raise UnknownApiKey(f"no active API key {key_id}", key_id=key_id)
