"""Request and response bodies of the HTTP API.

Amounts are objects `{"amount": "1000.00", "currency": "USD"}` with the amount as a
decimal string in major units, never a JSON number (a number is refused by the
schema). Times are ISO 8601 UTC. Create and read schemas are separate.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from litestar.openapi import ResponseSpec
from msgspec import Meta, Struct

from ledger.errors import CurrencyMismatch, LedgerError
from ledger.money import format_amount, normalize_currency, to_minor

DecimalString = Annotated[
    str, Meta(pattern=r"^-?[0-9]+(\.[0-9]+)?$", description='a decimal amount in major units, e.g. "1000.00"')
]
CurrencyCode = Annotated[str, Meta(min_length=3, max_length=3, description="ISO 4217, e.g. USD")]
PartyId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class Amount(Struct, forbid_unknown_fields=True):
    """An amount of money: a decimal string in the currency's major units."""

    amount: DecimalString
    currency: CurrencyCode

    def minor(self, expected_currency: str | None = None, *, field: str = "amount") -> int:
        """Exact minor units; refuses inexact amounts, unknown currencies, a wrong currency.
        Errors name the field (`amount.amount`, `amount.currency`)."""
        try:
            currency = normalize_currency(self.currency)
        except LedgerError as error:
            error.data["field"] = f"{field}.currency"
            raise
        if expected_currency is not None and currency != expected_currency:
            raise CurrencyMismatch(
                f"the amount is in {currency}, this is a {expected_currency} contract",
                field=f"{field}.currency",
                currency=currency,
                account_currency=expected_currency,
            )
        try:
            return to_minor(self.amount, currency)
        except LedgerError as error:
            error.data["field"] = f"{field}.amount"
            raise

    @classmethod
    def of(cls, minor: int, currency: str) -> Amount:
        return cls(amount=format_amount(minor, currency), currency=currency)


# --- requests ----------------------------------------------------------------------


WeeklyLimitHours = Annotated[int, Meta(ge=0, le=168, description="whole hours a week")]


class ContractCreate(Struct, forbid_unknown_fields=True):
    client_id: PartyId
    freelancer_id: PartyId
    currency: CurrencyCode
    title: Annotated[str, Meta(min_length=1, max_length=200)]
    #: "hourly" needs `hourly_rate` and `weekly_limit_hours`; "fixed" refuses the hourly terms.
    type: Literal["fixed", "hourly"] = "fixed"
    hourly_rate: Amount | None = None
    weekly_limit_hours: WeeklyLimitHours | None = None
    manual_time_allowed: bool | None = None


class ContractUpdate(Struct, forbid_unknown_fields=True):
    """An hourly contract's new terms, from now on (at least one of them)."""

    weekly_limit_hours: WeeklyLimitHours | None = None
    hourly_rate: Amount | None = None


class SegmentCreate(Struct, forbid_unknown_fields=True):
    """Time logged, [start, end) in UTC on 10-minute boundaries within one week."""

    start: datetime
    end: datetime
    memo: Annotated[str, Meta(max_length=2000)] = ""
    manual: bool = False


class MilestoneCreate(Struct, forbid_unknown_fields=True):
    title: Annotated[str, Meta(min_length=1, max_length=200)]
    amount: Amount
    due_date: date | None = None


class FundRequest(Struct, forbid_unknown_fields=True):
    payment_method: str | None = None


class ApproveRequest(Struct, forbid_unknown_fields=True):
    amount: Amount | None = None
    #: For a bonus (approving more than held): the client's payment method at the provider.
    payment_method: str | None = None


class EndContract(Struct, forbid_unknown_fields=True):
    ended_by: Literal["client", "freelancer"]


class ResolveDispute(Struct, forbid_unknown_fields=True):
    release: Amount
    refund: Amount


class RefundCreate(Struct, forbid_unknown_fields=True):
    amount: Amount


class PayoutCreate(Struct, forbid_unknown_fields=True):
    amount: Amount


class PartyUpdate(Struct, forbid_unknown_fields=True):
    display_name: str | None = None
    legal_name: str | None = None
    address: str | None = None
    country: str | None = None
    tax_id: str | None = None
    provider_id: str | None = None
    #: ISO 8601 with offset: when the client's payment method was verified (hourly protection).
    payment_method_verified_at: str | None = None


# --- responses -------------------------------------------------------------------------


class PaymentOut(Struct):
    id: str
    milestone_id: str
    contract_id: str
    kind: str
    gross: Amount
    fee: Amount
    net: Amount
    released_at: datetime
    pending_until: datetime
    refunded: Amount
    entry_id: int


class MilestoneOut(Struct):
    id: str
    contract_id: str
    title: str
    amount: Amount
    held: Amount
    state: str
    due_date: date | None
    review_deadline: datetime | None
    refund_deadline: datetime | None
    failure_reason: str | None
    created_at: datetime
    payments: list[PaymentOut]
    frozen_by: str | None = None  # an open chargeback (dispute id): no money moves until it closes


class ContractOut(Struct):
    id: str
    client_id: str
    freelancer_id: str
    currency: str
    title: str
    created_at: datetime
    ended_by: str | None
    ended_at: datetime | None
    milestones: list[MilestoneOut]
    type: str = "fixed"
    hourly_rate: Amount | None = None
    weekly_limit_hours: int | None = None
    manual_time_allowed: bool = False
    paused_at: datetime | None = None
    paused_by: str | None = None


class SegmentOut(Struct):
    id: str
    contract_id: str
    week: date
    start: datetime
    end: datetime
    minutes: int
    memo: str
    manual: bool


class SegmentList(Struct):
    data: list[SegmentOut]
    has_more: bool
    next_cursor: str | None


class DayOut(Struct):
    day: date
    logged_minutes: int
    billable_minutes: int
    over_limit_minutes: int
    amount: Amount


class WeekDisputeOut(Struct):
    """A dispute of a week's last `minutes` billable minutes, costing `amount`. `state`:
    "open" (the freelancer accepts or contests before `answer_by`, else it is refunded),
    "contested" (an operator resolves it), "accepted", "expired", "resolved".
    `cancelled` is the part of `refunded` the client was never charged (the dispute
    closed while the week's charge had not succeeded)."""

    minutes: int
    amount: Amount
    reason: str
    state: str
    opened_at: datetime
    answer_by: datetime
    closed_at: datetime | None
    released: Amount
    refunded: Amount
    cancelled: Amount | None = None


class WeekDisputeCreate(Struct, forbid_unknown_fields=True):
    minutes: int
    reason: str


class WeekOut(Struct):
    """A week of an hourly contract: as it would be billed while open, as it closed
    after. `state` is one of: "open" (time may be logged and edited until `closes_at`),
    "closing" (past `closes_at`, waiting for the next tick), "closed" (nothing
    billable, no money moves), "carried" (it billed less than the provider's minimum
    charge, 0.50 USD: not charged on its own but with the next week that bills, named
    by `carried_to` once it does; that week's `carried_in` counts it), "charging" (the
    client's charge is with the provider), "past_due" (the charge failed,
    `failure_reason` says why; it is tried again a day after each attempt,
    `charge_attempts` counts them, and the contract is paused after 5; a success lifts
    that pause), "disputed" (the client disputes some of its minutes: `dispute`),
    "in_review" (charged; released at `review_ends_at`), "released" (paid to the
    freelancer, `payment_id`, pending until `available_at`), "available", "refunded",
    "cancelled" (disputed whole before any charge succeeded: nothing is owed)."""

    week: date
    state: str
    limit_hours: int
    logged_minutes: int
    billable_minutes: int
    over_limit_minutes: int
    amount: Amount
    closes_at: datetime
    review_ends_at: datetime
    available_at: datetime
    days: list[DayOut]
    payment_id: str | None = None
    charge_order_id: str | None = None
    failure_reason: str | None = None
    charge_attempts: int = 0
    dispute: WeekDisputeOut | None = None
    carried_in: Amount | None = None
    carried_to: date | None = None


class HourlyBonusCreate(Struct, forbid_unknown_fields=True):
    """A bonus on an hourly contract: charged to the client at once, released to the
    freelancer when the charge succeeds (the service fee applies)."""

    amount: Amount
    memo: str = ""


class HourlyBonusOut(Struct):
    """`state`: "charging", "released" (with `payment_id`) or "failed" (`failure_reason`)."""

    bonus: str
    contract_id: str
    amount: Amount
    state: str
    order_id: str | None
    payment_id: str | None = None
    failure_reason: str | None = None


class WeekList(Struct):
    data: list[WeekOut]
    has_more: bool
    next_cursor: str | None


class FundingOut(Struct):
    status: str
    client_secret: str | None
    failure_reason: str | None
    milestone: MilestoneOut


class RefundOut(Struct):
    id: str
    payment_id: str
    amount: Amount
    fee_returned: Amount
    entry_id: int
    status: str = "pending"  # the provider refund: pending, succeeded or failed (as the answer was given)


class BalanceOut(Struct):
    freelancer_id: str
    currency: str
    pending: Amount
    available: Amount
    in_transit: Amount


class DisputeOut(Struct):
    """A chargeback against a payment that funded the milestone, and how a lost one was recovered."""

    id: str
    milestone_id: str
    charge_reference: str
    amount: Amount
    status: str
    withdrawn: Amount
    reinstated: Amount
    outcome: str | None
    recovered_from_refunds: Amount
    recovered_from_escrow: Amount
    recovered_from_freelancer: Amount
    fee_returned: Amount
    unrecovered: Amount
    opened_at: datetime
    closed_at: datetime | None


class PayoutOut(Struct):
    id: str
    freelancer_id: str
    amount: Amount
    state: str
    gateway_reference: str | None
    failure_reason: str | None
    created_at: datetime
    settled_at: datetime | None
    amount_reversed: Amount | None = None  # what of a paid transfer the provider has reversed


class OrderResolve(Struct, forbid_unknown_fields=True):
    """How an operator settles a payment order by hand (`ledger orders resolve`)."""

    outcome: Literal["succeeded", "failed"]
    reference: str | None = None  # the provider's id of the object: required when it succeeded
    reason: str | None = None  # why it failed: required when it failed


class StateChangeOut(Struct):
    state: str
    actor: str  # who moved it there: an API key's id, or cli, worker, provider...
    at: datetime


class StateHistoryOut(Struct):
    """The states a contract, milestone or payout entered, oldest first."""

    id: str
    history: list[StateChangeOut]


class PaymentOrderOut(Struct):
    """A call to the payment provider (docs/architecture.md, "Payment orders")."""

    id: str
    kind: str
    state: str
    amount: Amount
    provider_reference: str | None
    failure_reason: str | None
    attempts: int
    age_seconds: int
    stuck: bool  # sent, and not acknowledged by the provider for longer than it should take
    created_at: datetime
    updated_at: datetime
    actor: str  # who wrote it
    resolved_by: str | None  # the operator who settled it by hand
    milestone_id: str | None
    payout_id: str | None
    history: list[StateChangeOut] | None = None  # with a single order only


class PaymentOrderList(Struct):
    orders: list[PaymentOrderOut]
    more: bool  # newer orders of the kind asked for were left out (raise `limit` or narrow `state`)


class PostingOut(Struct):
    account: str
    side: str
    amount: Amount


class EntryOut(Struct):
    id: int
    idempotency_key: str
    kind: str
    effective_at: datetime
    recorded_at: datetime
    reverses_entry_id: int | None
    refs: dict[str, str]
    postings: list[PostingOut]
    actor: str  # who booked it: an API key's id, or cli, worker, provider...


class EntryList(Struct):
    data: list[EntryOut]
    has_more: bool
    next_cursor: str | None


class PartyOut(Struct):
    party_id: str
    display_name: str
    legal_name: str | None
    address: str | None
    country: str | None
    tax_id: str | None
    provider_id: str | None
    updated_at: datetime
    payment_method_verified_at: datetime | None = None


class FeeLineOut(Struct):
    amount: Amount
    rate: str
    fee: Amount


class FeeQuoteOut(Struct):
    schedule: str
    amount: Amount
    fee: Amount
    net: Amount
    blended_rate: str
    lifetime_before: Amount
    lifetime_after: Amount
    lines: list[FeeLineOut]


# --- finance -------------------------------------------------------------------------------


class AccountOut(Struct):
    code: str
    currency: str
    type: str
    normal_side: str
    floor: Amount | None


class AccountList(Struct):
    data: list[AccountOut]
    has_more: bool
    next_cursor: str | None


class BalanceAtOut(Struct):
    account: str
    balance: Amount
    as_of: datetime | None


class StatementLineOut(Struct):
    posted_at: str  # ISO 8601 with its +00:00 offset, as the CSV and the PDF print it
    entry_id: int
    account: str
    reference: str
    kind: str
    debit: Amount
    credit: Amount
    running_balance: Amount
    actor: str  # who booked the entry: an API key's id, or cli, worker, provider...


class StatementOut(Struct):
    """`period` is `[from, to)`: `to` is not part of it."""

    account: str
    currency: str
    period_from: str = msgspec.field(name="from")
    period_to: str = msgspec.field(name="to")
    period: str
    opening_balance: Amount
    closing_balance: Amount
    lines: list[StatementLineOut]


#: A statement's JSON is streamed (`ledger.api.views.statement_json_chunks`), so its
#: handler returns a bare Response: this tells the OpenAPI document its shape.
STATEMENT_RESPONSE = ResponseSpec(StatementOut, description="The statement", generate_examples=False)


class TrialBalanceRowOut(Struct):
    account: str
    type: str
    debit: Amount
    credit: Amount


class TrialBalanceOut(Struct):
    as_of: datetime
    rows: list[TrialBalanceRowOut]
    totals: list[TrialBalanceRowOut]
    balanced: bool


class FeeRevenueOut(Struct):
    client_id: str
    billings: Amount
    fees: Amount
    refunded: Amount
    fee_refunds: Amount
    net: Amount


class ReconciliationOut(Struct):
    status: str
    kind: str
    reference: str
    provider_amount: Amount | None
    ledger_amount: Amount | None
    entry_id: int | None


class DocumentPartyOut(Struct):
    party_id: str
    display_name: str
    legal_name: str | None
    address: str | None
    country: str | None
    tax_id: str | None


class DocumentLineOut(Struct):
    description: str
    amount: Amount
    billed_in_tier: Amount | None  # for fee lines, the part of the payment in the tier
    rate: str | None


class DocumentOut(Struct):
    """An issued invoice or credit note."""

    id: str
    kind: str
    number: str
    series_year: int
    sequence: int
    issued_at: str  # ISO 8601 with its +00:00 offset, as printed on the document
    issuer: DocumentPartyOut
    recipient: DocumentPartyOut
    currency: str
    lines: list[DocumentLineOut]
    total: Amount
    blended_rate: str | None
    references: dict[str, str]
    corrects: str | None
    entry_ids: list[int]
    notes: list[str]


class DocumentList(Struct):
    data: list[DocumentOut]
    has_more: bool
    next_cursor: str | None
