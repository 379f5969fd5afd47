"""Parties, numbering series and issued documents in the database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from ledger.db.schema import DIALECT_INSERT, document_sequences, documents, parties
from ledger.invoices.documents import Document, DocumentKind, IssuedDocument, Party, UnknownDocument

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork


# A release's statements, built once (see schema.DIALECT_INSERT); values come when they run.
_PARTIES = select(parties).where(parties.c.party_id.in_(bindparam("party_ids", expanding=True)))
_NEXT_SEQUENCES = {
    dialect: insert(document_sequences)
    .on_conflict_do_update(
        index_elements=["kind", "series_year"], set_={"last_sequence": document_sequences.c.last_sequence + 1}
    )
    .returning(document_sequences.c.kind, document_sequences.c.last_sequence)
    for dialect, insert in DIALECT_INSERT.items()
}
_ADD_DOCUMENTS = documents.insert().returning(documents.c.id)


def _party(row: Row[Any]) -> Party:
    return Party(
        party_id=row.party_id,
        display_name=row.display_name,
        legal_name=row.legal_name,
        address=row.address,
        country=row.country,
        tax_id=row.tax_id,
        provider_id=row.provider_id,
        updated_at=row.updated_at,
        payment_method_verified_at=row.payment_method_verified_at,
    )


class DocumentStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self._conn = uow.connection

    def _insert(self) -> Any:
        return postgresql.insert if self._uow.dialect == "postgresql" else sqlite.insert

    # --- parties -------------------------------------------------------------------

    def party(self, party_id: str) -> Party | None:
        return self.parties([party_id]).get(party_id)

    def parties(self, party_ids: Sequence[str]) -> dict[str, Party]:
        rows = self._conn.execute(_PARTIES, {"party_ids": list(party_ids)})
        return {row.party_id: _party(row) for row in rows}

    def save_party(self, party: Party) -> None:
        fields = {
            "display_name": party.display_name,
            "legal_name": party.legal_name,
            "address": party.address,
            "country": party.country,
            "tax_id": party.tax_id,
            "provider_id": party.provider_id,
            "updated_at": party.updated_at,
            "payment_method_verified_at": party.payment_method_verified_at,
        }
        statement = self._insert()(parties).values(party_id=party.party_id, **fields)
        self._conn.execute(statement.on_conflict_do_update(index_elements=["party_id"], set_=fields))

    # --- numbering -------------------------------------------------------------------

    def next_sequence(self, kind: DocumentKind, year: int) -> int:
        """The next number of a series, allocated inside the caller's transaction.

        The series row is locked until commit, so concurrent issuers take turns;
        a rolled-back transaction gives its number back, so there are no gaps."""
        return self.next_sequences([kind], year)[0]

    def next_sequences(self, kinds: Sequence[DocumentKind], year: int) -> list[int]:
        """The next numbers of several series, in one statement: each series' row is
        started at 1 or moved on by 1, and locked until commit (PostgreSQL: the
        upsert's row lock; SQLite: the write lock), so there are no gaps. The rows
        are written in the order of `kinds`: callers name them in one order (release
        invoices: client, then fee), so two issuers never wait for each other crosswise."""
        if len(set(kinds)) != len(kinds):
            raise ValueError("each series once: one statement moves a row once")
        # Many rows of parameters for one RETURNING statement: SQLAlchemy sends them as one
        # multi-row INSERT (its "insertmanyvalues"), from one cached compiled statement.
        rows = self._conn.execute(
            _NEXT_SEQUENCES[self._uow.dialect],
            [{"kind": kind.value, "series_year": year, "last_sequence": 1} for kind in kinds],
        )
        issued = {str(kind): int(sequence) for kind, sequence in rows}
        return [issued[kind.value] for kind in kinds]

    # --- documents ---------------------------------------------------------------------

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
        self.add_all([IssuedDocument(document, payment_id, corrects_id, entry_id, measured_account, measured_side)])

    def add_all(self, issued: Sequence[IssuedDocument]) -> None:
        """One INSERT of all the rows."""
        if not issued:
            return
        # RETURNING makes the rows one multi-row INSERT ("insertmanyvalues"), as above.
        self._conn.execute(
            _ADD_DOCUMENTS,
            [
                {
                    "id": i.document.id,
                    "kind": i.document.kind.value,
                    "number": i.document.number,
                    "series_year": i.document.series_year,
                    "sequence": i.document.sequence,
                    "issued_at": i.document.issued_at,
                    "issuer_id": i.document.issuer.party_id,
                    "recipient_id": i.document.recipient.party_id,
                    "currency": i.document.currency,
                    "total": i.document.total,
                    "payment_id": i.payment_id,
                    "corrects_id": i.corrects_id,
                    "entry_id": i.entry_id,
                    "measured_account": i.measured_account,
                    "measured_side": i.measured_side,
                    "data": i.document.to_data(),
                }
                for i in issued
            ],
        ).all()

    def get(self, id_or_number: str) -> Document:
        row = self._conn.execute(
            select(documents.c.data).where((documents.c.id == id_or_number) | (documents.c.number == id_or_number))
        ).first()
        if row is None:
            raise UnknownDocument(f"no document {id_or_number}", document=id_or_number)
        return Document.from_data(row.data)

    def for_payment(self, payment_id: str, kind: DocumentKind) -> Document | None:
        row = self._conn.execute(
            select(documents.c.data).where(documents.c.payment_id == payment_id, documents.c.kind == kind.value)
        ).first()
        return None if row is None else Document.from_data(row.data)

    def listing(self, *, party_id: str | None, limit: int, starting_after: str | None = None) -> list[Document]:
        """Newest first (issue time, then number); `starting_after` is the number of the
        last document of the previous page."""
        query = select(documents.c.data).order_by(documents.c.issued_at.desc(), documents.c.number.desc()).limit(limit)
        if party_id is not None:
            query = query.where((documents.c.recipient_id == party_id) | (documents.c.issuer_id == party_id))
        if starting_after is not None:
            last = self.get(starting_after)
            query = query.where(
                (documents.c.issued_at < last.issued_at)
                | ((documents.c.issued_at == last.issued_at) & (documents.c.number < last.number))
            )
        return [Document.from_data(row.data) for row in self._conn.execute(query)]
