"""The stores of records kept beside the books: parties and issued documents, API keys
and idempotent HTTP requests. `ledger.db` implements them over SQLAlchemy."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from ledger.access import ApiKey, IdempotentRequest
from ledger.invoices.documents import Document, DocumentKind, IssuedDocument, Party


class DocumentStore(Protocol):
    def party(self, party_id: str) -> Party | None: ...

    def parties(self, party_ids: Sequence[str]) -> dict[str, Party]:
        """The records of those parties that have one, by id."""
        ...

    def save_party(self, party: Party) -> None:
        """Insert or replace the party's record."""
        ...

    def next_sequence(self, kind: DocumentKind, year: int) -> int:
        """The next number of a series, allocated inside the caller's transaction: concurrent
        issuers take turns, and a rolled-back transaction gives its number back (no gaps)."""
        ...

    def next_sequences(self, kinds: Sequence[DocumentKind], year: int) -> list[int]:
        """`next_sequence` of several series at once (each kind once), in the order of `kinds`."""
        ...

    def add(
        self,
        document: Document,
        *,
        payment_id: str | None,
        corrects_id: str | None,
        entry_id: int,
        measured_account: str,
        measured_side: str,
    ) -> None: ...

    def add_all(self, documents: Sequence[IssuedDocument]) -> None:
        """`add` each of them, together."""
        ...

    def get(self, id_or_number: str) -> Document:
        """`UnknownDocument` if there is none."""
        ...

    def for_payment(self, payment_id: str, kind: DocumentKind) -> Document | None: ...

    def listing(self, *, party_id: str | None, limit: int, starting_after: str | None = None) -> list[Document]:
        """Newest first (issue time, then number); `starting_after` is the number of the
        last document of the previous page."""
        ...


class ApiStore(Protocol):
    def add_key(self, key_id: str, role: str, key_hash: str) -> None: ...

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The active (not revoked) key with this hash."""
        ...

    def all_keys(self) -> list[ApiKey]:
        """Oldest first, revoked ones too."""
        ...

    def revoke(self, key_id: str) -> bool:
        """False if there is no active key with this id."""
        ...

    def claim_request(
        self, key: str, api_key_id: str, method: str, path: str, body_hash: str, *, now: datetime, lease: timedelta
    ) -> IdempotentRequest | None:
        """Claim the key for a request at `now` (None); or return the earlier record if the key
        is held (in progress within its lease, or finished) or was used for another request.
        A claim older than `lease` that never finished is taken over by the same request."""
        ...

    def finish_request(
        self, key: str, api_key_id: str, claimed_at: datetime, status: int, media_type: str, response: str
    ) -> bool:
        """Record the response of the claim made at `claimed_at`; False if it was taken over meanwhile."""
        ...

    def release_request(self, key: str, api_key_id: str, claimed_at: datetime) -> bool:
        """Forget the claim made at `claimed_at`, unless it was taken over."""
        ...

    def prune_requests(self, *, finished_before: datetime, abandoned_before: datetime) -> tuple[int, int]:
        """Delete finished records claimed before `finished_before` and claims in progress made
        before `abandoned_before`; return how many of each."""
        ...
