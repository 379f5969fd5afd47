"""The fake database's tables: frozen rows in plain dictionaries.

Rows are immutable (a change replaces the row), so a transaction's working copy is
a shallow copy of each table, and committing it is swapping the whole state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from ledger.access import ApiKey, IdempotentRequest
from ledger.accounts import Account, Side
from ledger.escrow.model import (
    ClosedWeek,
    Contract,
    Dispute,
    Milestone,
    Payment,
    PaymentRefund,
    Payout,
    RefundOrder,
    RefundSource,
    TermChange,
    WeekDispute,
)
from ledger.escrow.orders import PaymentOrder
from ledger.escrow.timesheet import Segment
from ledger.fees.model import ScheduleInForce
from ledger.invoices.documents import Party
from ledger.journal import Entry


class DuplicateRow(Exception):
    """A row with this primary key or unique value exists (the database's unique violation)."""


class MissingRow(LookupError):
    """The row a store reads with no "not found" answer of its own does not exist
    (the database's `NoResultFound`)."""


class ConstraintViolation(Exception):
    """A row breaks a CHECK constraint or a foreign key of the schema."""


class ReadOnlyWrite(RuntimeError):
    """A read-only transaction changed the state (PostgreSQL refuses such writes)."""


@dataclass(frozen=True)
class EntryRow:
    entry: Entry
    request_hash: str


@dataclass(frozen=True)
class PostingRow:
    id: int
    entry_id: int
    account_id: int
    currency: str
    side: Side
    amount: int


@dataclass(frozen=True)
class FeeEventRow:
    id: int
    idempotency_key: str
    request_hash: str
    kind: str
    freelancer_id: str
    client_id: str
    currency: str
    amount: int
    fee: int
    lifetime_before: int
    lifetime_after: int
    schedule_id: int
    effective_at: datetime
    recorded_at: datetime


@dataclass(frozen=True)
class MilestoneRow:
    """A milestone as stored: `held` and `frozen_by` of `milestone` are not (they are derived)."""

    milestone: Milestone
    funding_key: str | None = None
    funding_reference: str | None = None
    psp_account: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class PaymentRow:
    payment: Payment
    pending_remaining: int
    request_key: str | None


@dataclass(frozen=True)
class RefundRow:
    refund: PaymentRefund
    source: RefundSource
    created_at: datetime
    request_key: str | None


@dataclass(frozen=True)
class PayoutRow:
    payout: Payout
    request_key: str | None


@dataclass(frozen=True)
class ProviderEventRow:
    type: str
    object_id: str | None
    received_at: datetime
    processed_at: datetime | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class TimerRow:
    id: int
    kind: str
    subject_id: str
    due_at: datetime
    done_at: datetime | None = None


@dataclass(frozen=True)
class TermChangeRow:
    id: int
    contract_id: str
    change: TermChange


@dataclass(frozen=True)
class SegmentRow:
    id: int
    contract_id: str
    segment: Segment
    created_at: datetime
    deleted_at: datetime | None = None


@dataclass(frozen=True)
class DocumentRow:
    id: str
    kind: str
    number: str
    series_year: int
    sequence: int
    issued_at: datetime
    issuer_id: str
    recipient_id: str
    currency: str
    total: int
    payment_id: str | None
    corrects_id: str | None
    entry_id: int
    measured_account: str
    measured_side: str
    data: dict[str, Any]


@dataclass(frozen=True)
class ApiKeyRow:
    key: ApiKey
    key_hash: str


@dataclass(frozen=True)
class OrderRow:
    order: PaymentOrder
    lease_owner: str | None = None


@dataclass(frozen=True)
class RequestKeyRow:
    operation: str
    fingerprint: str
    result: dict[str, object]
    created_at: datetime


@dataclass(frozen=True)
class HeartbeatRow:
    beat_at: datetime
    started_at: datetime
    summary: str


@dataclass
class MemoryState:
    """Every table of the ledger. Dictionaries keep insertion order, which is id order
    for the tables with generated ids."""

    sequences: dict[str, int] = field(default_factory=dict)
    # the books
    accounts: dict[int, Account] = field(default_factory=dict)
    account_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    balances: dict[int, int] = field(default_factory=dict)
    entries: dict[int, EntryRow] = field(default_factory=dict)
    entry_keys: dict[str, int] = field(default_factory=dict)
    reversals: dict[int, int] = field(default_factory=dict)
    postings: list[PostingRow] = field(default_factory=list)
    # fees
    schedules: dict[int, ScheduleInForce] = field(default_factory=dict)
    fee_events: dict[int, FeeEventRow] = field(default_factory=dict)
    fee_event_keys: dict[str, int] = field(default_factory=dict)
    lifetime: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # escrow
    contracts: dict[str, Contract] = field(default_factory=dict)
    milestones: dict[str, MilestoneRow] = field(default_factory=dict)
    payments: dict[str, PaymentRow] = field(default_factory=dict)
    refunds: dict[str, RefundRow] = field(default_factory=dict)
    payouts: dict[str, PayoutRow] = field(default_factory=dict)
    refund_orders: dict[str, RefundOrder] = field(default_factory=dict)
    disputes: dict[str, Dispute] = field(default_factory=dict)
    provider_events: dict[str, ProviderEventRow] = field(default_factory=dict)
    timers: dict[int, TimerRow] = field(default_factory=dict)
    term_changes: dict[int, TermChangeRow] = field(default_factory=dict)
    segments: dict[int, SegmentRow] = field(default_factory=dict)
    closed_weeks: dict[str, ClosedWeek] = field(default_factory=dict)
    week_disputes: dict[str, WeekDispute] = field(default_factory=dict)
    # records
    parties: dict[str, Party] = field(default_factory=dict)
    document_sequences: dict[tuple[str, int], int] = field(default_factory=dict)
    documents: dict[str, DocumentRow] = field(default_factory=dict)
    api_keys: dict[str, ApiKeyRow] = field(default_factory=dict)
    requests: dict[tuple[str, str], IdempotentRequest] = field(default_factory=dict)
    # payment orders
    orders: dict[str, OrderRow] = field(default_factory=dict)
    request_keys: dict[str, RequestKeyRow] = field(default_factory=dict)
    heartbeats: dict[str, HeartbeatRow] = field(default_factory=dict)

    def copy(self) -> MemoryState:
        """A working copy: every table copied, the (immutable) rows shared."""
        return MemoryState(**{f.name: type(getattr(self, f.name))(getattr(self, f.name)) for f in fields(self)})

    def next_id(self, table: str) -> int:
        """The next generated id of `table` (1, 2, ...), as an identity column gives it."""
        following = self.sequences.get(table, 0) + 1
        self.sequences[table] = following
        return following
