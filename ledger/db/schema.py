"""The ledger's tables, as SQLAlchemy 2 typed declarative models.

The schema is created only by the Alembic migrations in `migrations/`; these
models describe it for queries (a test checks the two agree). Amounts are BIGINT
minor units (never Numeric: SQLite stores that as REAL). Ledger foreign keys are
`ON DELETE RESTRICT`: nothing in the journal may vanish.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the value is
    stored as naive UTC text (which sorts correctly) and comes back as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Reusable column types. SQLite only auto-increments "INTEGER PRIMARY KEY".
Id = Annotated[int, mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)]
MinorUnits = Annotated[int, mapped_column(BigInteger)]
CurrencyCode = Annotated[str, mapped_column(String(3))]
Timestamp = Annotated[datetime, mapped_column(UTCDateTime())]
JsonDocument = Annotated[dict[str, Any], mapped_column(JSON().with_variant(JSONB(), "postgresql"))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[Id]
    code: Mapped[str] = mapped_column(String(200))
    currency: Mapped[CurrencyCode]
    type: Mapped[str] = mapped_column(String(16))
    normal_side: Mapped[str] = mapped_column(String(6))
    floor: Mapped[int | None] = mapped_column(BigInteger)
    slots: Mapped[int] = mapped_column(SmallInteger)
    metadata_: Mapped[JsonDocument] = mapped_column("metadata")
    created_at: Mapped[Timestamp]

    __table_args__ = (
        UniqueConstraint("code", "currency"),
        # The target of postings' (account_id, currency) foreign key: a posting's
        # currency is its account's currency, enforced by the database.
        UniqueConstraint("id", "currency"),
        CheckConstraint("type IN ('asset', 'liability', 'equity', 'revenue', 'expense')", name="type"),
        CheckConstraint("normal_side IN ('debit', 'credit')", name="normal_side"),
        CheckConstraint("slots >= 1 AND (floor IS NULL OR slots = 1)", name="slots"),
    )


class EntryRow(Base):
    __tablename__ = "entries"

    id: Mapped[Id]
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(100))
    effective_at: Mapped[Timestamp] = mapped_column(index=True)
    recorded_at: Mapped[Timestamp]
    refs: Mapped[JsonDocument]
    metadata_: Mapped[JsonDocument] = mapped_column("metadata")
    reverses_entry_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("entries.id", ondelete="RESTRICT"), unique=True
    )
    # Who booked it (`ledger.actors`): not part of `request_hash`, so a replay by
    # another actor is the same entry.
    actor: Mapped[str] = mapped_column(String(64))


class PostingRow(Base):
    __tablename__ = "postings"

    id: Mapped[Id]
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("entries.id", ondelete="RESTRICT"), index=True)
    account_id: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[CurrencyCode]
    side: Mapped[str] = mapped_column(String(6))
    amount: Mapped[MinorUnits]

    __table_args__ = (
        ForeignKeyConstraint(["account_id", "currency"], ["accounts.id", "accounts.currency"], ondelete="RESTRICT"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("side IN ('debit', 'credit')", name="side"),
        # An account's postings in journal order: statements and cursor pagination.
        Index("ix_postings_account_id_id", "account_id", "id"),
    )


class BalanceRow(Base):
    """One slot of an account's stored balance, on the account's normal side."""

    __tablename__ = "balances"

    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="RESTRICT"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    balance: Mapped[MinorUnits]


# The tables, for Core statements (the posting hot path and the audit use Core).
accounts = cast(Table, AccountRow.__table__)
entries = cast(Table, EntryRow.__table__)
postings = cast(Table, PostingRow.__table__)
balances = cast(Table, BalanceRow.__table__)


# --- fees ------------------------------------------------------------------------


class FeeScheduleRow(Base):
    """A schedule put in force from `effective_from` (the newest one not after a time rules it)."""

    __tablename__ = "fee_schedules"

    id: Mapped[Id]
    name: Mapped[str] = mapped_column(String(100))
    effective_from: Mapped[Timestamp] = mapped_column(unique=True)
    definition: Mapped[JsonDocument]
    created_at: Mapped[Timestamp]


class LifetimeBillingsRow(Base):
    """What a freelancer has billed a client, net of refunds, in one currency."""

    __tablename__ = "lifetime_billings"

    freelancer_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    currency: Mapped[CurrencyCode] = mapped_column(primary_key=True)
    billed: Mapped[MinorUnits]

    __table_args__ = (CheckConstraint("billed >= 0", name="billed_not_negative"),)


class FeeEventRow(Base):
    """One fee charge or refund, with what an auditor needs to recompute it."""

    __tablename__ = "fee_events"

    id: Mapped[Id]
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(10))
    freelancer_id: Mapped[str] = mapped_column(String(100))
    client_id: Mapped[str] = mapped_column(String(100))
    currency: Mapped[CurrencyCode]
    amount: Mapped[MinorUnits]
    fee: Mapped[MinorUnits]
    lifetime_before: Mapped[MinorUnits]
    lifetime_after: Mapped[MinorUnits]
    schedule_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("fee_schedules.id", ondelete="RESTRICT"))
    effective_at: Mapped[Timestamp]
    recorded_at: Mapped[Timestamp]

    __table_args__ = (
        CheckConstraint("kind IN ('charge', 'refund')", name="kind"),
        CheckConstraint("amount >= 0 AND fee >= 0 AND lifetime_before >= 0 AND lifetime_after >= 0", name="amounts"),
        CheckConstraint(
            "(kind = 'charge' AND lifetime_after = lifetime_before + amount)"
            " OR (kind = 'refund' AND lifetime_after = lifetime_before - amount)",
            name="lifetime_moves_by_amount",
        ),
        # The chain of a pair's events, in order: the fee audit walks it.
        Index("ix_fee_events_pair", "freelancer_id", "client_id", "currency", "id"),
    )


fee_schedules = cast(Table, FeeScheduleRow.__table__)
lifetime_billings = cast(Table, LifetimeBillingsRow.__table__)
fee_events = cast(Table, FeeEventRow.__table__)


# --- escrow ----------------------------------------------------------------------

TypedId = Annotated[str, mapped_column(String(40), primary_key=True)]
PartyId = Annotated[str, mapped_column(String(64))]


class ContractRow(Base):
    __tablename__ = "contracts"

    id: Mapped[TypedId]
    client_id: Mapped[PartyId]
    freelancer_id: Mapped[PartyId]
    currency: Mapped[CurrencyCode]
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[Timestamp]
    ended_by: Mapped[str | None] = mapped_column(String(10))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    type: Mapped[str] = mapped_column(String(10), server_default="fixed")
    # An hourly contract's current terms; their history is `contract_term_changes`.
    hourly_rate: Mapped[int | None] = mapped_column(BigInteger)
    weekly_limit_hours: Mapped[int | None] = mapped_column(Integer)
    manual_time_allowed: Mapped[bool] = mapped_column(Boolean, server_default=false())
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Who paused it: 'request' (the marketplace) or 'past_due' (weekly charges failing).
    paused_by: Mapped[str | None] = mapped_column(String(10))

    __table_args__ = (
        CheckConstraint("type IN ('fixed', 'hourly')", name="type"),
        CheckConstraint("hourly_rate IS NULL OR hourly_rate > 0", name="hourly_rate_positive"),
        CheckConstraint(
            "weekly_limit_hours IS NULL OR (weekly_limit_hours >= 0 AND weekly_limit_hours <= 168)",
            name="weekly_limit_hours",
        ),
        CheckConstraint(
            "(type = 'hourly') = (hourly_rate IS NOT NULL AND weekly_limit_hours IS NOT NULL)",
            name="hourly_terms",
        ),
        CheckConstraint("paused_by IS NULL OR paused_by IN ('request', 'past_due', 'dispute')", name="paused_by"),
    )


class ContractTermChangeRow(Base):
    """Every rate and weekly limit an hourly contract had, from the ones it opened with:
    a week is billed at the terms in force for it, not at the current ones."""

    __tablename__ = "contract_term_changes"

    id: Mapped[Id]
    contract_id: Mapped[str] = mapped_column(String(40), ForeignKey("contracts.id", ondelete="RESTRICT"), index=True)
    term: Mapped[str] = mapped_column(String(20))
    value: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[Timestamp]

    __table_args__ = (
        CheckConstraint("term IN ('rate', 'weekly_limit')", name="term"),
        CheckConstraint("(term = 'rate' AND value > 0) OR (term = 'weekly_limit' AND value >= 0)", name="value"),
    )


class TimeSegmentRow(Base):
    """Time logged on an hourly contract, [start_at, end_at). A deleted segment keeps its
    row with `deleted_at` set, so what was logged and withdrawn stays visible."""

    __tablename__ = "time_segments"

    id: Mapped[Id]
    contract_id: Mapped[str] = mapped_column(String(40), ForeignKey("contracts.id", ondelete="RESTRICT"))
    start_at: Mapped[Timestamp]
    end_at: Mapped[Timestamp]
    memo: Mapped[str] = mapped_column(Text)
    manual: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[Timestamp]
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("end_at > start_at", name="end_after_start"),
        Index("ix_time_segments_contract_start", "contract_id", "start_at"),
    )


class MilestoneRow(Base):
    __tablename__ = "milestones"

    id: Mapped[TypedId]
    contract_id: Mapped[str] = mapped_column(String(40), ForeignKey("contracts.id", ondelete="RESTRICT"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    amount: Mapped[MinorUnits]
    due_date: Mapped[date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(20))
    review_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refund_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    funding_key: Mapped[str | None] = mapped_column(String(80))
    funding_reference: Mapped[str | None] = mapped_column(String(255))
    psp_account: Mapped[str | None] = mapped_column(String(200))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]
    # What the escrow subject is: a fixed-price milestone, a closed hourly week, or a
    # bonus on an hourly contract (`ledger.escrow.model.SubjectKind`).
    kind: Mapped[str] = mapped_column(String(10), server_default="milestone")

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("kind IN ('milestone', 'week', 'bonus')", name="kind"),
    )


class HourlyWeekRow(Base):
    """An hourly week as it closed: the limit in force for it, its minutes and its amount,
    and the escrow subject (a `milestones` row of kind 'week', same id) holding its money;
    none when nothing was billable."""

    __tablename__ = "hourly_weeks"

    id: Mapped[TypedId]
    contract_id: Mapped[str] = mapped_column(String(40), ForeignKey("contracts.id", ondelete="RESTRICT"))
    week: Mapped[date] = mapped_column(Date)
    limit_minutes: Mapped[int] = mapped_column(Integer)
    logged_minutes: Mapped[int] = mapped_column(Integer)
    billable_minutes: Mapped[int] = mapped_column(Integer)
    over_limit_minutes: Mapped[int] = mapped_column(Integer)
    amount: Mapped[MinorUnits]
    # What the platform advances at review end if the charge has not succeeded.
    protected_amount: Mapped[MinorUnits]
    closed_at: Mapped[Timestamp]
    milestone_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("milestones.id", ondelete="RESTRICT"))
    # What earlier weeks below the provider's minimum charge added to this week's charge.
    carried_in: Mapped[MinorUnits] = mapped_column(server_default="0")
    # The week whose charge took this (carried) week's amount; NULL while it waits.
    carried_to: Mapped[date | None] = mapped_column(Date)
    # When its review end was applied; NULL while a charge in flight keeps it waiting.
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(
            "billable_minutes >= 0 AND over_limit_minutes >= 0"
            " AND billable_minutes + over_limit_minutes = logged_minutes AND billable_minutes <= limit_minutes",
            name="minutes",
        ),
        # A week without an escrow subject billed nothing or is carried to a later week.
        CheckConstraint(
            "amount >= 0 AND carried_in >= 0 AND (milestone_id IS NULL OR amount + carried_in > 0)"
            " AND (milestone_id IS NOT NULL OR carried_in = 0)"
            " AND (carried_to IS NULL OR (milestone_id IS NULL AND amount > 0))",
            name="amount",
        ),
        CheckConstraint("protected_amount >= 0 AND protected_amount <= amount", name="protected_amount"),
        UniqueConstraint("contract_id", "week"),
    )


class PaymentRow(Base):
    __tablename__ = "payments"

    id: Mapped[TypedId]
    milestone_id: Mapped[str] = mapped_column(String(40), ForeignKey("milestones.id", ondelete="RESTRICT"), index=True)
    contract_id: Mapped[str] = mapped_column(String(40), ForeignKey("contracts.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(10))
    gross: Mapped[MinorUnits]
    fee: Mapped[MinorUnits]
    net: Mapped[MinorUnits]
    released_at: Mapped[Timestamp]
    pending_until: Mapped[Timestamp]
    pending_remaining: Mapped[MinorUnits]
    refunded: Mapped[MinorUnits]
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("entries.id", ondelete="RESTRICT"))
    request_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    # The provider charge this payment's money came in by (a bonus has its own): what a
    # refund of this payment names at the provider.
    charge_reference: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        CheckConstraint("gross > 0 AND fee >= 0 AND net >= 0 AND gross = fee + net", name="amounts"),
        CheckConstraint("refunded >= 0 AND refunded <= gross", name="refunded"),
        CheckConstraint("pending_remaining >= 0 AND pending_remaining <= net", name="pending_remaining"),
    )


class PaymentRefundRow(Base):
    __tablename__ = "payment_refunds"

    id: Mapped[TypedId]
    payment_id: Mapped[str] = mapped_column(String(40), ForeignKey("payments.id", ondelete="RESTRICT"), index=True)
    amount: Mapped[MinorUnits]
    fee_returned: Mapped[MinorUnits]
    from_balance: Mapped[str] = mapped_column(String(10))
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("entries.id", ondelete="RESTRICT"))
    created_at: Mapped[Timestamp]
    request_key: Mapped[str | None] = mapped_column(String(255), unique=True)


class PayoutRow(Base):
    __tablename__ = "payouts"

    id: Mapped[TypedId]
    freelancer_id: Mapped[PartyId] = mapped_column(index=True)
    currency: Mapped[CurrencyCode]
    amount: Mapped[MinorUnits]
    state: Mapped[str] = mapped_column(String(12))
    gateway_reference: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[Timestamp]
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    request_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    # What of the transfer the provider has reversed since (back to the freelancer's available).
    amount_reversed: Mapped[MinorUnits] = mapped_column(server_default="0")

    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)


class TimerRow(Base):
    """A durable timer: `ledger tick` fires those due; firing is idempotent."""

    __tablename__ = "timers"

    id: Mapped[Id]
    kind: Mapped[str] = mapped_column(String(30))
    subject_id: Mapped[str] = mapped_column(String(40))
    due_at: Mapped[Timestamp]
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("kind", "subject_id", "due_at"),
        Index("ix_timers_due", "done_at", "due_at"),
    )


contracts = cast(Table, ContractRow.__table__)
contract_term_changes = cast(Table, ContractTermChangeRow.__table__)
time_segments = cast(Table, TimeSegmentRow.__table__)
milestones = cast(Table, MilestoneRow.__table__)
hourly_weeks = cast(Table, HourlyWeekRow.__table__)


class WeekDisputeRow(Base):
    """A client's dispute of a charged week's last billable minutes (its id is the week's)."""

    __tablename__ = "week_disputes"

    id: Mapped[str] = mapped_column(String(40), ForeignKey("milestones.id", ondelete="RESTRICT"), primary_key=True)
    contract_id: Mapped[str] = mapped_column(String(40), ForeignKey("contracts.id", ondelete="RESTRICT"))
    minutes: Mapped[int] = mapped_column(Integer)
    amount: Mapped[MinorUnits]
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12))
    opened_at: Mapped[Timestamp]
    answer_by: Mapped[Timestamp]
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released: Mapped[MinorUnits]
    refunded: Mapped[MinorUnits]
    # Of `refunded`, what the client was never charged (the receivable was cancelled).
    cancelled: Mapped[MinorUnits] = mapped_column(server_default="0")

    __table_args__ = (
        CheckConstraint("cancelled >= 0 AND cancelled <= refunded", name="cancelled"),
        CheckConstraint(
            "minutes > 0 AND amount > 0 AND released >= 0 AND refunded >= 0 AND released + refunded <= amount",
            name="figures",
        ),
        CheckConstraint("state IN ('open', 'contested', 'accepted', 'expired', 'resolved')", name="state"),
        CheckConstraint(
            "(state IN ('open', 'contested')) = (closed_at IS NULL)"
            " AND (closed_at IS NULL OR released + refunded = amount)",
            name="closed",
        ),
    )


week_disputes = cast(Table, WeekDisputeRow.__table__)
payments = cast(Table, PaymentRow.__table__)
payment_refunds = cast(Table, PaymentRefundRow.__table__)
payouts = cast(Table, PayoutRow.__table__)
timers = cast(Table, TimerRow.__table__)


# --- parties and documents ----------------------------------------------------------


class PartyRow(Base):
    """Who a client or freelancer is, for invoices and the payment provider."""

    __tablename__ = "parties"

    party_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    legal_name: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(500))
    country: Mapped[str | None] = mapped_column(String(2))
    tax_id: Mapped[str | None] = mapped_column(String(64))
    provider_id: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[Timestamp]
    # Set by the marketplace: hourly time of a week closed after it is protected.
    payment_method_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DocumentSequenceRow(Base):
    """The last number issued in a series (kind, year); locked to issue the next."""

    __tablename__ = "document_sequences"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    series_year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_sequence: Mapped[int] = mapped_column(Integer)


class DocumentRow(Base):
    """An issued invoice or credit note; `data` is the whole immutable document."""

    __tablename__ = "documents"

    id: Mapped[TypedId]
    kind: Mapped[str] = mapped_column(String(20))
    number: Mapped[str] = mapped_column(String(40), unique=True)
    series_year: Mapped[int] = mapped_column(Integer)
    sequence: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[Timestamp]
    issuer_id: Mapped[str] = mapped_column(String(64))
    recipient_id: Mapped[str] = mapped_column(String(64), index=True)
    currency: Mapped[CurrencyCode]
    total: Mapped[MinorUnits]
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    corrects_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("documents.id", ondelete="RESTRICT"))
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("entries.id", ondelete="RESTRICT"))
    # The total equals the postings on this account and side in the cited entry (audit invariant 8).
    measured_account: Mapped[str] = mapped_column(String(200))
    measured_side: Mapped[str] = mapped_column(String(6))
    data: Mapped[JsonDocument]

    __table_args__ = (
        UniqueConstraint("kind", "series_year", "sequence"),
        CheckConstraint("sequence >= 1", name="sequence_positive"),
        CheckConstraint("total >= 0", name="total_not_negative"),
    )


parties = cast(Table, PartyRow.__table__)
document_sequences = cast(Table, DocumentSequenceRow.__table__)
documents = cast(Table, DocumentRow.__table__)


# --- the HTTP API ----------------------------------------------------------------------


class ApiKeyRow(Base):
    """An API key: only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[TypedId]
    role: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[Timestamp]
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (CheckConstraint("role IN ('marketplace', 'finance', 'auditor', 'admin')", name="role"),)


class IdempotentRequestRow(Base):
    """A POST made with an Idempotency-Key, and the response it got (replayed to retries).

    `status` is NULL while the request is in progress: the claim holds the key from
    `claimed_at` for a lease, after which a retry of the same request may claim it
    again (`ledger.api.idempotency`). `created_at` is when the key was first used.
    """

    __tablename__ = "idempotent_requests"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    body_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    media_type: Mapped[str | None] = mapped_column(String(100))
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Timestamp]
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


api_keys = cast(Table, ApiKeyRow.__table__)
idempotent_requests = cast(Table, IdempotentRequestRow.__table__)


class ProviderEventRow(Base):
    """A webhook event from the payment provider, stored by its id before it is acted on."""

    __tablename__ = "provider_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[Timestamp]
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(500))


provider_events = cast(Table, ProviderEventRow.__table__)


class RefundOrderRow(Base):
    """Money owed back to a client, sent through the payment provider.

    The refund's entry moves the money to refunds in transit at once; the order
    moves it on to the PSP account when the provider reports the refund succeeded.
    """

    __tablename__ = "refund_orders"

    id: Mapped[TypedId]
    milestone_id: Mapped[str] = mapped_column(String(40), ForeignKey("milestones.id", ondelete="RESTRICT"))
    payment_id: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[CurrencyCode]
    amount: Mapped[MinorUnits]
    psp_account: Mapped[str] = mapped_column(String(200))
    charge_reference: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(12), index=True)
    gateway_reference: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[Timestamp]
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        # charged_back: a failed refund the client got through their bank's chargeback instead.
        CheckConstraint("state IN ('pending', 'succeeded', 'failed', 'charged_back')", name="state"),
    )


refund_orders = cast(Table, RefundOrderRow.__table__)


class DisputeRow(Base):
    """A chargeback opened by a client's bank against one of our payments.

    While it is open (`outcome` is NULL) the milestone its payment funded is frozen.
    `withdrawn` and `reinstated` follow the provider's balance transactions;
    a lost dispute records how its loss was recovered (docs/architecture.md, "Chargebacks").
    """

    __tablename__ = "disputes"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    milestone_id: Mapped[str] = mapped_column(String(40), ForeignKey("milestones.id", ondelete="RESTRICT"), index=True)
    charge_reference: Mapped[str] = mapped_column(String(255))
    currency: Mapped[CurrencyCode]
    amount: Mapped[MinorUnits]
    status: Mapped[str] = mapped_column(String(30))
    withdrawn: Mapped[MinorUnits]
    reinstated: Mapped[MinorUnits]
    outcome: Mapped[str | None] = mapped_column(String(20))
    recovered_from_escrow: Mapped[MinorUnits]
    recovered_from_freelancer: Mapped[MinorUnits]
    recovered_from_refunds: Mapped[MinorUnits]
    fee_returned: Mapped[MinorUnits]
    unrecovered: Mapped[MinorUnits]
    opened_at: Mapped[Timestamp]
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("withdrawn >= 0 AND reinstated >= 0 AND reinstated <= withdrawn", name="funds"),
        CheckConstraint("outcome IS NULL OR outcome IN ('won', 'lost', 'warning_closed')", name="outcome"),
    )


disputes = cast(Table, DisputeRow.__table__)


class ProviderBookRow(Base):
    """An object at the simulated payment provider: its own books, kept apart from the ledger.

    Written by the simulated gateway on its own connection and committed on its own,
    as a real provider's books would be: a ledger transaction that rolls back does not
    erase what the provider did. It is also the provider's idempotency memory (the
    first answer to a key is kept in `answered`). The audit compares the money these
    objects moved with the ledger's provider account (invariant 10).
    """

    __tablename__ = "provider_books"

    id: Mapped[Id]
    provider: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(10))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    currency: Mapped[CurrencyCode]
    amount: Mapped[MinorUnits]
    fee: Mapped[MinorUnits]
    status: Mapped[str] = mapped_column(String(20))
    answered: Mapped[str] = mapped_column(String(20))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    party: Mapped[str | None] = mapped_column(String(255))
    charge_reference: Mapped[str | None] = mapped_column(String(255), index=True)
    order_id: Mapped[str | None] = mapped_column(String(255))
    metadata_: Mapped[JsonDocument] = mapped_column("metadata")
    reinstated: Mapped[MinorUnits]
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]

    __table_args__ = (
        UniqueConstraint("provider", "idempotency_key"),
        CheckConstraint("kind IN ('charge', 'refund', 'transfer', 'dispute')", name="kind"),
        CheckConstraint("amount > 0 AND fee >= 0 AND reinstated >= 0 AND reinstated <= amount", name="amounts"),
        Index("ix_provider_books_order", "provider", "kind", "order_id"),
    )


provider_books = cast(Table, ProviderBookRow.__table__)


# --- the provider boundary ----------------------------------------------------------


class PaymentOrderRow(Base):
    """A call to the payment provider, written with the state change that needs it
    (`ledger.escrow.orders`); a dispatcher sends it under a lease."""

    __tablename__ = "payment_orders"

    id: Mapped[TypedId]
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20))
    amount: Mapped[MinorUnits]
    currency: Mapped[CurrencyCode]
    provider_key: Mapped[str] = mapped_column(String(255), unique=True)
    milestone_id: Mapped[str | None] = mapped_column(String(40), index=True)
    payout_id: Mapped[str | None] = mapped_column(String(40), index=True)
    refund_order_id: Mapped[str | None] = mapped_column(String(40), index=True)
    target_reference: Mapped[str | None] = mapped_column(String(255))
    provider_reference: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    origin: Mapped[str | None] = mapped_column(String(80))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[Timestamp]
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(80))
    details: Mapped[JsonDocument]
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]
    # Who wrote the order (`ledger.actors`); its state changes are in `state_changes`.
    actor: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("kind IN ('fund', 'bonus', 'cancel', 'refund', 'payout', 'processing_fee')", name="kind"),
        CheckConstraint(
            "state IN ('pending', 'sent', 'requires_action', 'succeeded', 'failed', 'cancelled')", name="state"
        ),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_payment_orders_due", "state", "next_attempt_at"),
    )


class RequestKeyRow(Base):
    """A caller's request key bound to the request it was first used for: the same key
    with another request is a conflict; with the same one it replays the result."""

    __tablename__ = "request_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    operation: Mapped[str] = mapped_column(String(40))
    fingerprint: Mapped[str] = mapped_column(String(64))
    result: Mapped[JsonDocument]
    created_at: Mapped[Timestamp]


class WorkerHeartbeatRow(Base):
    """The last time each worker process reported in (`ledger worker`)."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    beat_at: Mapped[Timestamp]
    started_at: Mapped[Timestamp]
    summary: Mapped[str] = mapped_column(String(500))


class StateChangeRow(Base):
    """Who moved what into which state, and when: one row per state a milestone,
    contract, payout, refund order, chargeback, week dispute or payment order enters,
    appended in the transaction that changes it (`ledger.actors`)."""

    __tablename__ = "state_changes"

    id: Mapped[Id]
    subject: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[Timestamp]

    __table_args__ = (
        CheckConstraint(
            "subject IN ('milestone', 'contract', 'payout', 'refund_order', 'dispute', 'week_dispute',"
            " 'payment_order')",
            name="subject",
        ),
        Index("ix_state_changes_subject", "subject", "subject_id", "id"),
    )


class AuditRunRow(Base):
    """A run of the audit stored by the worker on its schedule, so a metrics scrape
    reports the last result without running it."""

    __tablename__ = "audit_runs"

    id: Mapped[Id]
    started_at: Mapped[Timestamp]
    finished_at: Mapped[Timestamp]
    ok: Mapped[bool]
    failed_checks: Mapped[JsonDocument]  # {"names": [...]} of the checks that failed
    problems: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(64))


payment_orders = cast(Table, PaymentOrderRow.__table__)
state_changes = cast(Table, StateChangeRow.__table__)
audit_runs = cast(Table, AuditRunRow.__table__)
request_keys = cast(Table, RequestKeyRow.__table__)
worker_heartbeats = cast(Table, WorkerHeartbeatRow.__table__)

#: Each supported dialect's INSERT construct, for statements with an ON CONFLICT clause.
#: The stores build their hot statements once, per dialect, at import: a statement
#: object built anew for every call costs more CPU than running it.
DIALECT_INSERT: dict[str, Callable[[Table], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}
