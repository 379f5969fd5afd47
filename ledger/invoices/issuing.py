"""Issuing invoices and credit notes, in the same transaction as the entry they document.

On every payment released to a freelancer: an invoice from the freelancer to the
client for the gross amount (issued by the platform on the freelancer's behalf)
and a service-fee invoice from the platform to the freelancer, one line per tier
touched. On a refund after release: credit notes that reference the invoices they
correct. Numbers are allocated from the series of the document's kind and year,
inside the transaction, so they are gapless.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ledger.escrow.model import Contract, new_id
from ledger.fees.rule import FeeBreakdown
from ledger.invoices.documents import (
    SERIES_PREFIX,
    Document,
    DocumentKind,
    DocumentLine,
    IssuedDocument,
    PartyDetails,
    PlatformDetails,
    party_details,
)
from ledger.money import format_amount
from ledger.ports.unit_of_work import UnitOfWork

PLATFORM_ID = "platform"
SERVICE_FEES = "revenue:fees:service"
REFUNDS_IN_TRANSIT = "liabilities:refunds:in_transit"
REFUND_RULE = (
    "Service fees follow your net lifetime billings with this client, so a refund returns "
    "the fee of the most recently billed tier first."
)


def platform_party(details: PlatformDetails) -> PartyDetails:
    return PartyDetails(
        party_id=PLATFORM_ID,
        display_name=details.display_name,
        legal_name=details.legal_name,
        address=details.address,
        country=details.country,
        tax_id=details.tax_id,
    )


def _percent(rate: Decimal) -> str:
    """Decimal("0.20") -> "20%", Decimal("0.125") -> "12.5%"."""
    return f"{(rate * 100).normalize():f}%"


def _document(
    kind: DocumentKind,
    sequence: int,
    *,
    issued_at: datetime,
    issuer: PartyDetails,
    recipient: PartyDetails,
    currency: str,
    lines: tuple[DocumentLine, ...],
    entry_id: int,
    measured_account: str,
    measured_side: str,
    references: dict[str, str],
    payment_id: str | None,
    blended_rate: Decimal | None = None,
    corrects: Document | None = None,
    notes: tuple[str, ...] = (),
) -> IssuedDocument:
    """A document numbered `sequence` of its series for `issued_at`'s year, as stored."""
    year = issued_at.year
    document = Document(
        id=new_id("doc"),
        kind=kind,
        number=f"{SERIES_PREFIX[kind]}-{year}-{sequence:06d}",
        series_year=year,
        sequence=sequence,
        issued_at=issued_at,
        issuer=issuer,
        recipient=recipient,
        currency=currency,
        lines=lines,
        total=sum(line.amount for line in lines),
        blended_rate=blended_rate,
        references=references,
        corrects=None if corrects is None else corrects.number,
        entry_ids=(entry_id,),
        notes=notes,
    )
    return IssuedDocument(
        document,
        payment_id=payment_id,
        corrects_id=None if corrects is None else corrects.id,
        entry_id=entry_id,
        measured_account=measured_account,
        measured_side=measured_side,
    )


def issue_release_documents(
    uow: UnitOfWork,
    *,
    contract: Contract,
    milestone_id: str,
    milestone_title: str,
    payment_id: str,
    payment_kind: str,
    fee: FeeBreakdown,
    entry_id: int,
    issued_at: datetime,
    lines: tuple[tuple[str, int], ...] = (),
) -> tuple[Document, Document]:
    """The client invoice (gross) and the fee invoice (per-tier lines) of one release.

    `lines` are the client invoice's lines when the caller itemises the payment (an
    hourly week, day by day); by default it has one line naming the milestone."""
    known = uow.documents.parties([contract.client_id, contract.freelancer_id])
    client = party_details(known.get(contract.client_id), contract.client_id)
    freelancer = party_details(known.get(contract.freelancer_id), contract.freelancer_id)
    # An hourly week's subject is named as the week it is (`<contract>:<monday>`).
    subject = "week" if payment_kind == "hourly" else "milestone"
    references = {"contract": contract.id, subject: milestone_id, "payment": payment_id}
    what = {"bonus": "Bonus", "hourly": "Hourly work"}.get(payment_kind, "Milestone")
    if sum(amount for _, amount in lines) not in (0, fee.amount):
        raise ValueError(f"invoice lines add up to {sum(a for _, a in lines)}, not the payment's {fee.amount}")
    title = f"{what} \u201c{milestone_title}\u201d, contract \u201c{contract.title}\u201d"
    client_lines = tuple(DocumentLine(f"{title}: {text}", amount) for text, amount in lines if amount) or (
        DocumentLine(title, fee.amount),
    )
    # Both numbers in one statement, always in this order (see `DocumentStore.next_sequences`).
    client_number, fee_number = uow.documents.next_sequences(
        [DocumentKind.CLIENT_INVOICE, DocumentKind.FEE_INVOICE], issued_at.year
    )
    client_invoice = _document(
        DocumentKind.CLIENT_INVOICE,
        client_number,
        issued_at=issued_at,
        issuer=freelancer,
        recipient=client,
        currency=contract.currency,
        lines=client_lines,
        entry_id=entry_id,
        measured_account=f"liabilities:escrow:{milestone_id}",
        measured_side="debit",
        references=references,
        payment_id=payment_id,
    )
    fee_lines = tuple(
        DocumentLine(
            f"Service fee on {format_amount(line.amount, contract.currency)} {contract.currency} at {_percent(line.rate)}",
            line.fee,
            quantity_amount=line.amount,
            rate=line.rate,
        )
        for line in fee.lines
    )
    fee_invoice = _document(
        DocumentKind.FEE_INVOICE,
        fee_number,
        issued_at=issued_at,
        issuer=platform_party(uow.platform),
        recipient=freelancer,
        currency=contract.currency,
        lines=fee_lines,
        entry_id=entry_id,
        measured_account=SERVICE_FEES,
        measured_side="credit",
        references={**references, "client_invoice": client_invoice.document.number},
        payment_id=payment_id,
        blended_rate=fee.blended_rate,
        notes=(
            f"Lifetime billings with {client.display_name}: "
            f"{format_amount(fee.lifetime_before, contract.currency)} before this payment, "
            f"{format_amount(fee.lifetime_after, contract.currency)} after ({contract.currency}).",
        ),
    )
    uow.documents.add_all([client_invoice, fee_invoice])
    return client_invoice.document, fee_invoice.document


def issue_refund_credit_notes(
    uow: UnitOfWork,
    *,
    contract: Contract,
    payment_id: str,
    refund_id: str,
    amount: int,
    fee_back: FeeBreakdown,
    entry_id: int,
    issued_at: datetime,
    measured_account: str = REFUNDS_IN_TRANSIT,
    description: str = "Refund of payment",
) -> list[Document]:
    """Credit notes for a refund after release: gross to the client, fee back to the freelancer.

    The client's note totals what `measured_account` is credited in the entry: the refund
    in transit for a refund, the disputed money for a chargeback."""
    client_invoice = uow.documents.for_payment(payment_id, DocumentKind.CLIENT_INVOICE)
    fee_invoice = uow.documents.for_payment(payment_id, DocumentKind.FEE_INVOICE)
    known = uow.documents.parties([contract.client_id, contract.freelancer_id])
    client = party_details(known.get(contract.client_id), contract.client_id)
    freelancer = party_details(known.get(contract.freelancer_id), contract.freelancer_id)
    references = {"contract": contract.id, "payment": payment_id, "refund": refund_id}
    year = issued_at.year
    notes: list[IssuedDocument] = []
    notes.append(
        _document(
            DocumentKind.CREDIT_NOTE,
            uow.documents.next_sequence(DocumentKind.CREDIT_NOTE, year),
            issued_at=issued_at,
            issuer=freelancer,
            recipient=client,
            currency=contract.currency,
            lines=(DocumentLine(f"{description} {payment_id}", amount),),
            entry_id=entry_id,
            measured_account=measured_account,
            measured_side="credit",
            references=references,
            payment_id=payment_id,
            corrects=client_invoice,
        )
    )
    if fee_back.fee:
        notes.append(
            _document(
                DocumentKind.CREDIT_NOTE,
                uow.documents.next_sequence(DocumentKind.CREDIT_NOTE, year),
                issued_at=issued_at,
                issuer=platform_party(uow.platform),
                recipient=freelancer,
                currency=contract.currency,
                lines=tuple(
                    DocumentLine(
                        f"Service fee returned on {format_amount(line.amount, contract.currency)} "
                        f"{contract.currency} at {_percent(line.rate)}",
                        line.fee,
                        quantity_amount=line.amount,
                        rate=line.rate,
                    )
                    for line in fee_back.lines
                    if line.fee
                ),
                entry_id=entry_id,
                measured_account=SERVICE_FEES,
                measured_side="debit",
                references=references,
                payment_id=payment_id,
                corrects=fee_invoice,
                notes=(REFUND_RULE,),
            )
        )
    uow.documents.add_all(notes)
    return [note.document for note in notes]
