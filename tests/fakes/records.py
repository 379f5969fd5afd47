"""Records beside the books in memory: parties and issued documents, API keys and idempotent
HTTP requests (`ledger.ports.records`), answering as `ledger.db.document_store` and
`api_store` do."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ledger.access import ApiKey, IdempotentRequest
from ledger.clock import Clock
from ledger.invoices.documents import Document, DocumentKind, IssuedDocument, Party, UnknownDocument
from tests.fakes.state import ApiKeyRow, ConstraintViolation, DocumentRow, DuplicateRow, MemoryState


class MemoryDocumentStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    # --- parties -------------------------------------------------------------------

    def party(self, party_id: str) -> Party | None:
        return self._state.parties.get(party_id)

    def parties(self, party_ids: Sequence[str]) -> dict[str, Party]:
        return {p: self._state.parties[p] for p in party_ids if p in self._state.parties}

    def save_party(self, party: Party) -> None:
        self._state.parties[party.party_id] = party

    # --- numbering -------------------------------------------------------------------

    def next_sequence(self, kind: DocumentKind, year: int) -> int:
        # The counter is part of the transaction's state: a rolled-back issue gives its number back.
        following = self._state.document_sequences.get((kind.value, year), 0) + 1
        self._state.document_sequences[(kind.value, year)] = following
        return following

    def next_sequences(self, kinds: Sequence[DocumentKind], year: int) -> list[int]:
        if len(set(kinds)) != len(kinds):
            raise ValueError("each series once")
        return [self.next_sequence(kind, year) for kind in kinds]

    # --- documents ---------------------------------------------------------------------

    def add_all(self, documents: Sequence[IssuedDocument]) -> None:
        for i in documents:
            self.add(
                i.document,
                payment_id=i.payment_id,
                corrects_id=i.corrects_id,
                entry_id=i.entry_id,
                measured_account=i.measured_account,
                measured_side=i.measured_side,
            )

    def add(
        self,
        document: Document,
        *,
        payment_id: str | None,
        corrects_id: str | None,
        entry_id: int,
        measured_account: str,
        measured_side: str,
    ) -> None:
        rows = self._state.documents.values()
        if document.id in self._state.documents or any(r.number == document.number for r in rows):
            raise DuplicateRow(f"document {document.id} ({document.number}) exists")
        series = (document.kind.value, document.series_year, document.sequence)
        if any((r.kind, r.series_year, r.sequence) == series for r in rows):
            raise DuplicateRow(f"{document.kind.value} {document.series_year} number {document.sequence} exists")
        if document.sequence < 1 or document.total < 0:
            raise ConstraintViolation(f"document {document.number}: sequence from 1, total not negative")
        if entry_id not in self._state.entries or (
            corrects_id is not None and corrects_id not in self._state.documents
        ):
            raise ConstraintViolation(f"document {document.number}: no entry {entry_id} or document {corrects_id}")
        data: dict[str, Any] = json.loads(json.dumps(document.to_data()))
        self._state.documents[document.id] = DocumentRow(
            id=document.id,
            kind=document.kind.value,
            number=document.number,
            series_year=document.series_year,
            sequence=document.sequence,
            issued_at=document.issued_at,
            issuer_id=document.issuer.party_id,
            recipient_id=document.recipient.party_id,
            currency=document.currency,
            total=document.total,
            payment_id=payment_id,
            corrects_id=corrects_id,
            entry_id=entry_id,
            measured_account=measured_account,
            measured_side=measured_side,
            data=data,
        )

    def _find(self, id_or_number: str) -> DocumentRow | None:
        return next((r for r in self._state.documents.values() if id_or_number in (r.id, r.number)), None)

    def get(self, id_or_number: str) -> Document:
        row = self._find(id_or_number)
        if row is None:
            raise UnknownDocument(f"no document {id_or_number}", document=id_or_number)
        return Document.from_data(row.data)

    def for_payment(self, payment_id: str, kind: DocumentKind) -> Document | None:
        row = next(
            (r for r in self._state.documents.values() if r.payment_id == payment_id and r.kind == kind.value), None
        )
        return None if row is None else Document.from_data(row.data)

    def listing(self, *, party_id: str | None, limit: int, starting_after: str | None = None) -> list[Document]:
        rows = [
            r for r in self._state.documents.values() if party_id is None or party_id in (r.recipient_id, r.issuer_id)
        ]
        if starting_after is not None:
            last = self.get(starting_after)
            rows = [r for r in rows if (r.issued_at, r.number) < (last.issued_at, last.number)]
        rows.sort(key=lambda r: (r.issued_at, r.number), reverse=True)
        return [Document.from_data(r.data) for r in rows[:limit]]


class MemoryApiStore:
    def __init__(self, state: MemoryState, clock: Clock) -> None:
        self._state = state
        self._clock = clock

    def add_key(self, key_id: str, role: str, key_hash: str) -> None:
        if key_id in self._state.api_keys or any(r.key_hash == key_hash for r in self._state.api_keys.values()):
            raise DuplicateRow(f"API key {key_id} or its hash exists")
        if role not in ("marketplace", "finance", "auditor", "admin"):
            raise ConstraintViolation(f"API key role {role!r}")
        self._state.api_keys[key_id] = ApiKeyRow(ApiKey(key_id, role, self._clock.now(), None), key_hash)

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        return next(
            (r.key for r in self._state.api_keys.values() if r.key_hash == key_hash and r.key.revoked_at is None), None
        )

    def all_keys(self) -> list[ApiKey]:
        return sorted((r.key for r in self._state.api_keys.values()), key=lambda k: (k.created_at, k.id))

    def revoke(self, key_id: str) -> bool:
        row = self._state.api_keys.get(key_id)
        if row is None or row.key.revoked_at is not None:
            return False
        self._state.api_keys[key_id] = replace(row, key=replace(row.key, revoked_at=self._clock.now()))
        return True

    def claim_request(
        self, key: str, api_key_id: str, method: str, path: str, body_hash: str, *, now: datetime, lease: timedelta
    ) -> IdempotentRequest | None:
        held = self._state.requests.get((key, api_key_id))
        if held is None:
            self._state.requests[(key, api_key_id)] = IdempotentRequest(
                key, api_key_id, method, path, body_hash, now, now, None, None, None
            )
            return None
        if held.status is None and held.claimed_at < now - lease and (held.path, held.body_hash) == (path, body_hash):
            self._state.requests[(key, api_key_id)] = replace(held, claimed_at=now)
            return None
        return held

    def _own_claim(self, key: str, api_key_id: str, claimed_at: datetime) -> IdempotentRequest | None:
        held = self._state.requests.get((key, api_key_id))
        if held is None or held.status is not None or held.claimed_at != claimed_at:
            return None
        return held

    def finish_request(
        self, key: str, api_key_id: str, claimed_at: datetime, status: int, media_type: str, response: str
    ) -> bool:
        held = self._own_claim(key, api_key_id, claimed_at)
        if held is None:
            return False
        self._state.requests[(key, api_key_id)] = replace(held, status=status, media_type=media_type, response=response)
        return True

    def release_request(self, key: str, api_key_id: str, claimed_at: datetime) -> bool:
        if self._own_claim(key, api_key_id, claimed_at) is None:
            return False
        del self._state.requests[(key, api_key_id)]
        return True

    def prune_requests(self, *, finished_before: datetime, abandoned_before: datetime) -> tuple[int, int]:
        finished = [
            k for k, r in self._state.requests.items() if r.status is not None and r.claimed_at < finished_before
        ]
        for k in finished:
            del self._state.requests[k]
        abandoned = [k for k, r in self._state.requests.items() if r.status is None and r.claimed_at < abandoned_before]
        for k in abandoned:
            del self._state.requests[k]
        return len(finished), len(abandoned)
