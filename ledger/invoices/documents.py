"""Issued documents: invoices and credit notes, as immutable data.

A document is written once, in the same transaction as the ledger entry it comes
from, with its number, its parties as they were at issue time, its lines and its
totals; it never changes afterwards. The PDF (`render.py`) is drawn from this
stored data alone, so rendering the same document twice gives the same text.

Amounts are integer minor units of `currency`; rates are exact decimals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ledger.errors import InvalidRequest, NotFound


class UnknownDocument(NotFound):
    """No invoice or credit note has this id or number."""

    code = "unknown-document"


class UnknownParty(NotFound):
    """No party record has this id."""

    code = "unknown-party"


class StatementTooLong(InvalidRequest):
    """A statement has more lines than can be built whole (a PDF); CSV and JSON stream any number."""

    code = "statement-too-long"


class DocumentKind(StrEnum):
    """What a document is, and so which numbering series it belongs to."""

    CLIENT_INVOICE = "client_invoice"  # the freelancer bills the client (issued by the platform on their behalf)
    FEE_INVOICE = "fee_invoice"  # the platform bills the freelancer its service fee
    CREDIT_NOTE = "credit_note"  # corrects an invoice after a refund


#: Number prefix per series; numbers read e.g. "INV-2026-000042".
SERIES_PREFIX = {
    DocumentKind.CLIENT_INVOICE: "INV",
    DocumentKind.FEE_INVOICE: "FEE",
    DocumentKind.CREDIT_NOTE: "CN",
}


@dataclass(frozen=True)
class PlatformDetails:
    """The marketplace operator, as printed on invoices."""

    display_name: str = "Marketplace"
    legal_name: str | None = None
    address: str | None = None
    country: str | None = None
    tax_id: str | None = None


@dataclass(frozen=True)
class PartyDetails:
    """A party as printed on a document; only `display_name` is required.

    Attributes:
        party_id: the marketplace's id (or "platform").
        display_name, legal_name, address (may hold newlines), country (ISO 3166 alpha-2), tax_id.
    """

    party_id: str
    display_name: str
    legal_name: str | None = None
    address: str | None = None
    country: str | None = None
    tax_id: str | None = None


#: A party record's fields that may be set (`Party` less its id and update time).
PARTY_FIELDS = (
    "display_name",
    "legal_name",
    "address",
    "country",
    "tax_id",
    "provider_id",
    "payment_method_verified_at",
)


@dataclass(frozen=True)
class Party:
    """A client's or freelancer's record.

    Attributes:
        party_id: the marketplace's id.
        display_name: shown everywhere; legal_name, address, country (ISO 3166
            alpha-2), tax_id: printed on invoices when known.
        provider_id: the payment provider's customer (client) or connected account (freelancer).
        updated_at: when the record last changed.
        payment_method_verified_at: when the marketplace verified the client's payment
            method (hourly time of weeks closed after it is protected).
    """

    party_id: str
    display_name: str
    legal_name: str | None
    address: str | None
    country: str | None
    tax_id: str | None
    provider_id: str | None
    updated_at: datetime
    payment_method_verified_at: datetime | None = None


def party_details(record: Party | None, party_id: str) -> PartyDetails:
    """A party as printed: what is known, the id as the name when nothing is."""
    if record is None:
        return PartyDetails(party_id=party_id, display_name=party_id)
    return PartyDetails(
        party_id=party_id,
        display_name=record.display_name,
        legal_name=record.legal_name,
        address=record.address,
        country=record.country,
        tax_id=record.tax_id,
    )


@dataclass(frozen=True)
class DocumentLine:
    """One line of a document.

    Attributes:
        description: what is billed.
        amount: the line's total, minor units (positive; a credit note's lines are
            positive amounts credited).
        quantity_amount: for fee lines, the part of the payment in the tier (minor units).
        rate: for fee lines, the tier's rate (Decimal("0.20")).
    """

    description: str
    amount: int
    quantity_amount: int | None = None
    rate: Decimal | None = None


@dataclass(frozen=True)
class Document:
    """An issued invoice or credit note.

    Attributes:
        id: `doc_...`; number: gapless within (kind, year), e.g. "INV-2026-000042".
        kind, series_year, sequence: the series and the position in it.
        issued_at: UTC; issuer and recipient: as they were at issue time.
        currency: ISO code; lines: in order; total: the sum of the lines.
        blended_rate: for fee invoices, fee / payment rounded half up to 4 places.
        references: contract, milestone, payment, refund ids it concerns.
        corrects: the number of the invoice a credit note corrects.
        entry_ids: the ledger entries it comes from.
        notes: sentences printed under the lines (e.g. the fee refund rule).
    """

    id: str
    kind: DocumentKind
    number: str
    series_year: int
    sequence: int
    issued_at: datetime
    issuer: PartyDetails
    recipient: PartyDetails
    currency: str
    lines: tuple[DocumentLine, ...]
    total: int
    blended_rate: Decimal | None = None
    references: dict[str, str] = field(default_factory=dict, hash=False)
    corrects: str | None = None
    entry_ids: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()

    def to_data(self) -> dict[str, Any]:
        """JSON-able, with amounts as integers and rates as strings (never floats)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "number": self.number,
            "series_year": self.series_year,
            "sequence": self.sequence,
            "issued_at": self.issued_at.isoformat(),
            "issuer": _party_data(self.issuer),
            "recipient": _party_data(self.recipient),
            "currency": self.currency,
            "lines": [
                {
                    "description": line.description,
                    "amount": line.amount,
                    "quantity_amount": line.quantity_amount,
                    "rate": None if line.rate is None else str(line.rate),
                }
                for line in self.lines
            ],
            "total": self.total,
            "blended_rate": None if self.blended_rate is None else str(self.blended_rate),
            "references": dict(self.references),
            "corrects": self.corrects,
            "entry_ids": list(self.entry_ids),
            "notes": list(self.notes),
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Document:
        return cls(
            id=data["id"],
            kind=DocumentKind(data["kind"]),
            number=data["number"],
            series_year=int(data["series_year"]),
            sequence=int(data["sequence"]),
            issued_at=datetime.fromisoformat(data["issued_at"]),
            issuer=PartyDetails(**data["issuer"]),
            recipient=PartyDetails(**data["recipient"]),
            currency=data["currency"],
            lines=tuple(
                DocumentLine(
                    description=line["description"],
                    amount=int(line["amount"]),
                    quantity_amount=line["quantity_amount"],
                    rate=None if line["rate"] is None else Decimal(line["rate"]),
                )
                for line in data["lines"]
            ),
            total=int(data["total"]),
            blended_rate=None if data["blended_rate"] is None else Decimal(data["blended_rate"]),
            references=dict(data["references"]),
            corrects=data["corrects"],
            entry_ids=tuple(int(i) for i in data["entry_ids"]),
            notes=tuple(data["notes"]),
        )


@dataclass(frozen=True)
class IssuedDocument:
    """A document as it is stored, with what ties it to the books.

    Attributes:
        document: the document itself.
        payment_id: the payment it bills or corrects, if any.
        corrects_id: the document (id) a credit note corrects.
        entry_id: the journal entry it documents.
        measured_account, measured_side: the posting of that entry its total equals.
    """

    document: Document
    payment_id: str | None
    corrects_id: str | None
    entry_id: int
    measured_account: str
    measured_side: str


def _party_data(party: PartyDetails) -> dict[str, Any]:
    return {
        "party_id": party.party_id,
        "display_name": party.display_name,
        "legal_name": party.legal_name,
        "address": party.address,
        "country": party.country,
        "tax_id": party.tax_id,
    }


@dataclass(frozen=True)
class StatementLine:
    """One posting on a statement.

    Attributes:
        posted_at: the entry's effective time (UTC).
        entry_id: the journal entry.
        account: the account's code (a party statement spans several accounts).
        reference: what it concerns (milestone, payment, payout ids), human-readable.
        kind: the entry's kind (`escrow.release`, ...).
        debit, credit: minor units; one of them is 0.
        running_balance: the balance after this line, on the normal side, minor units.
        actor: who booked the entry (`ledger.actors`).
    """

    posted_at: datetime
    entry_id: int
    account: str
    reference: str
    kind: str
    debit: int
    credit: int
    currency: str
    running_balance: int
    actor: str = "system"


@dataclass(frozen=True)
class StatementHeading:
    """A statement without its lines: what it covers and its balances, known before the
    lines are read, so that JSON and CSV can stream the lines after it.

    Attributes:
        as in `Statement`; `closing_balance` is the balance from everything effective
        before the period's end, which the running balance of the last line reaches.
    """

    title: str
    subject: str
    accounts: tuple[str, ...]
    currency: str
    normal_side: str
    period_from: datetime
    period_to: datetime
    opening_balance: int
    closing_balance: int


@dataclass(frozen=True)
class Statement:
    """A statement of one account, or of one party's accounts in one currency.

    Attributes:
        title: what it is of ("Account liabilities:escrow:ms_1", "Freelancer fr_1").
        subject: the account code or party id.
        accounts: the account codes it covers.
        currency: ISO code; all amounts are minor units of it.
        normal_side: "debit" or "credit": the side on which balances are positive.
        period_from, period_to: the half-open UTC period [from, to).
        opening_balance, closing_balance: minor units, normal side.
        lines: in journal order.
    """

    title: str
    subject: str
    accounts: tuple[str, ...]
    currency: str
    normal_side: str
    period_from: datetime
    period_to: datetime
    opening_balance: int
    lines: tuple[StatementLine, ...]
    closing_balance: int

    @property
    def total_debits(self) -> int:
        return sum(line.debit for line in self.lines)

    @property
    def total_credits(self) -> int:
        return sum(line.credit for line in self.lines)
