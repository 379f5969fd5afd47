"""Who may call the ledger's API, and what it answered: API key and idempotent-request records.

Plain values: `ledger.api` creates and checks keys and replays answers; the unit of
work's API store keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ApiKey:
    """An API key's record (never the key itself)."""

    id: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class IdempotentRequest:
    """A request made under an Idempotency-Key, and its answer once it has one.

    Attributes:
        key, api_key_id: the Idempotency-Key and the API key that sent it.
        method, path, body_hash: the request the key is bound to.
        claimed_at: when the request now running under the key took it.
        status, media_type, response: the answer; None while the request is in progress.
    """

    key: str
    api_key_id: str
    method: str
    path: str
    body_hash: str
    created_at: datetime
    claimed_at: datetime
    status: int | None
    media_type: str | None
    response: str | None
