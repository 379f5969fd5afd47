"""Sample rows for the store contract: the domain values the stores are given."""

from __future__ import annotations

from datetime import datetime, timedelta

from ledger.accounts import AccountSpec, AccountType, Side
from ledger.escrow.model import (
    Contract,
    Dispute,
    Milestone,
    MilestoneState,
    Payment,
    Payout,
    PayoutState,
    RefundOrder,
    RefundOrderState,
)
from ledger.invoices.documents import Document, DocumentKind, DocumentLine, PartyDetails
from ledger.journal import Entry, EntryRequest, Posting, credit, debit
from ledger.ports.unit_of_work import UnitOfWork

CASH = AccountSpec("assets:cash", AccountType.ASSET, "USD", normal_side=Side.DEBIT)
OWED = AccountSpec("liabilities:owed", AccountType.LIABILITY, "USD", floor=0, normal_side=Side.CREDIT)
OTHER = AccountSpec("liabilities:other", AccountType.LIABILITY, "USD", floor=0, normal_side=Side.CREDIT)


def open_books(uow: UnitOfWork) -> None:
    for spec in (CASH, OWED, OTHER):
        uow.accounts.open(spec)


def request(
    key: str, amount: int = 100, *, kind: str = "test.move", effective_at: datetime | None = None
) -> EntryRequest:
    """Cash in, owed out: `amount` onto the liability."""
    postings: tuple[Posting, ...] = (debit(CASH.code, amount, "USD"), credit(OWED.code, amount, "USD"))
    return EntryRequest(key, kind, postings, effective_at=effective_at)


def withdrawal(key: str, amount: int, account: str = OWED.code) -> EntryRequest:
    """Take `amount` off a liability (toward its floor)."""
    return EntryRequest(key, "test.withdraw", (debit(account, amount, "USD"), credit(CASH.code, amount, "USD")))


def write_on_open_books(uow: UnitOfWork, requests: list[EntryRequest], at: datetime) -> list[Entry]:
    """Open the sample accounts (if need be) and write `requests` to them."""
    open_books(uow)
    return uow.journal.write(requests, recorded_at=at)


def an_entry(uow: UnitOfWork, key: str, at: datetime) -> int:
    open_books(uow)
    return uow.journal.write([request(key)], recorded_at=at)[0].id


def contract(at: datetime, contract_id: str = "ct_1", client: str = "cl_1") -> Contract:
    return Contract(contract_id, client, "fr_1", "USD", "Logo design", at)


def milestone(at: datetime, milestone_id: str = "ms_1", contract_id: str = "ct_1", amount: int = 1_000) -> Milestone:
    return Milestone(
        id=milestone_id,
        contract_id=contract_id,
        title="First draft",
        amount=amount,
        due_date=None,
        state=MilestoneState.DRAFT,
        held=0,
        review_deadline=None,
        refund_deadline=None,
        failure_reason=None,
        created_at=at,
    )


def payment(at: datetime, entry_id: int, payment_id: str = "pay_1", gross: int = 1_000) -> Payment:
    fee = gross // 5
    return Payment(
        id=payment_id,
        milestone_id="ms_1",
        contract_id="ct_1",
        kind="release",
        gross=gross,
        fee=fee,
        net=gross - fee,
        released_at=at,
        pending_until=at + timedelta(days=5),
        refunded=0,
        entry_id=entry_id,
    )


def payout(at: datetime, payout_id: str = "po_1", amount: int = 500, freelancer: str = "fr_1") -> Payout:
    return Payout(payout_id, freelancer, "USD", amount, PayoutState.IN_TRANSIT, None, None, at, None)


def refund_order(at: datetime, order_id: str, state: RefundOrderState = RefundOrderState.PENDING) -> RefundOrder:
    return RefundOrder(order_id, "ms_1", None, "USD", 300, "assets:psp:simulated", "ch_1", state, at)


def dispute(at: datetime, dispute_id: str = "dp_1") -> Dispute:
    return Dispute(
        id=dispute_id,
        milestone_id="ms_1",
        charge_reference="ch_1",
        currency="USD",
        amount=1_000,
        status="needs_response",
        withdrawn=0,
        reinstated=0,
        outcome=None,
        recovered_from_escrow=0,
        recovered_from_freelancer=0,
        recovered_from_refunds=0,
        fee_returned=0,
        unrecovered=0,
        opened_at=at,
        closed_at=None,
    )


def document(
    at: datetime, number: int, *, recipient: str = "cl_1", kind: DocumentKind = DocumentKind.CLIENT_INVOICE
) -> Document:
    prefix = "INV" if kind is DocumentKind.CLIENT_INVOICE else "FEE"
    return Document(
        id=f"doc_{prefix}_{at.year}_{number}",
        kind=kind,
        number=f"{prefix}-{at.year}-{number:06d}",
        series_year=at.year,
        sequence=number,
        issued_at=at,
        issuer=PartyDetails("fr_1", "Ada Lovelace"),
        recipient=PartyDetails(recipient, "Acme GmbH"),
        currency="USD",
        lines=(DocumentLine("First draft", 1_000),),
        total=1_000,
    )
