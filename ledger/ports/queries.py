"""Read ports: what the audit, the finance reports, statements, reconciliation and the
operators' metrics ask of the database, as typed rows.

The use cases judge and shape these rows in plain Python; the database package
answers them with SQL (its `*_queries.py` modules). Sums over the whole journal are computed by the
database, and where the journal is too long to read through (an entry's debits
against its credits, repeated keys) the query returns only the rows that disagree;
its docstring says so. Amounts are minor units. Iterators stream their rows (a
server-side cursor), so the audit's memory does not grow with the journal.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ledger.accounts import Side
from ledger.escrow.model import ClosedWeek, TermChange, WeekDispute
from ledger.escrow.timesheet import Segment
from ledger.fees.schedule import FeeSchedule
from ledger.journal import Entry

# --- the journal -------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryImbalance:
    """An entry whose debits and credits differ in one currency."""

    entry_id: int
    currency: str
    debits: int
    credits: int


@dataclass(frozen=True)
class EntryPostingCount:
    """How many postings an entry has."""

    entry_id: int
    postings: int


@dataclass(frozen=True)
class AccountTotals:
    """An account's stored balance beside the sum of its postings, both on its normal side.

    Attributes:
        floor: the lowest balance it may hold, or None.
        stored: the sum of its balance slots.
        from_postings: its postings' sum, signed by its normal side.
    """

    code: str
    currency: str
    floor: int | None
    stored: int
    from_postings: int


@dataclass(frozen=True)
class CurrencyTotals:
    """All debits and all credits posted in one currency."""

    currency: str
    debits: int
    credits: int


@dataclass(frozen=True)
class CurrencyNet:
    """Stored balances in one currency, debit-side ones minus credit-side ones."""

    currency: str
    debits_minus_credits: int


@dataclass(frozen=True)
class RepeatedKey:
    """An idempotency key carried by more than one entry."""

    idempotency_key: str
    entries: int
    first_entry_id: int
    last_entry_id: int


@dataclass(frozen=True)
class RepeatedReversal:
    """An entry reversed more than once."""

    entry_id: int
    reversals: int


@dataclass(frozen=True)
class ActorRows:
    """How many rows of a table name an actor (`ledger.actors`)."""

    table: str
    actor: str
    rows: int


class JournalAuditQueries(Protocol):
    """The journal and the stored balances, for the core checks (`ledger.audit`)."""

    def actor_rows(self) -> Iterator[ActorRows]:
        """Per table that records who did what (entries, payment orders, state changes)
        and actor, how many rows name it, by table and actor."""
        ...

    def api_key_ids(self) -> set[str]:
        """The ids of every API key ever created (revoked ones too)."""
        ...

    def unbalanced_entries(self) -> Iterator[EntryImbalance]:
        """Per entry and currency, only those whose debits differ from their credits, by entry."""
        ...

    def entries_with_fewer_postings(self, than: int) -> Iterator[EntryPostingCount]:
        """Only the entries with fewer than `than` postings, by id."""
        ...

    def account_totals(self) -> Iterator[AccountTotals]:
        """Every account, by id."""
        ...

    def posting_totals_by_currency(self) -> Iterator[CurrencyTotals]:
        """By currency code."""
        ...

    def stored_balances_by_currency(self) -> Iterator[CurrencyNet]:
        """By currency code."""
        ...

    def repeated_idempotency_keys(self) -> Iterator[RepeatedKey]:
        """Only the keys of more than one entry, by key."""
        ...

    def repeated_reversals(self) -> Iterator[RepeatedReversal]:
        """Only the entries reversed more than once, by id."""
        ...


# --- the fee engine ----------------------------------------------------------------------


@dataclass(frozen=True)
class FeeChainLink:
    """One fee event as the fee chain reads it.

    Attributes:
        schedule_id: the schedule it was charged under.
        lifetime_before, lifetime_after: the pair's lifetime billings around it.
    """

    id: int
    freelancer_id: str
    client_id: str
    currency: str
    schedule_id: int
    lifetime_before: int
    lifetime_after: int
    fee: int

    @property
    def pair(self) -> tuple[str, str, str]:
        return (self.freelancer_id, self.client_id, self.currency)


@dataclass(frozen=True)
class PairBillings:
    """A freelancer-client pair's stored lifetime billings and the last fee event's figure.

    Attributes:
        last_event_after: `lifetime_after` of the pair's last fee event (None: it has none).
    """

    freelancer_id: str
    client_id: str
    currency: str
    billed: int
    last_event_after: int | None

    @property
    def pair(self) -> tuple[str, str, str]:
        return (self.freelancer_id, self.client_id, self.currency)


class FeeAuditQueries(Protocol):
    """Fee events, schedules and lifetime billings, for `ledger.fees.checks`."""

    def fee_schedules(self) -> Mapping[int, FeeSchedule]:
        """Every schedule by id."""
        ...

    def fee_chain(self) -> Iterator[FeeChainLink]:
        """Every fee event, by pair (freelancer, client, currency), then id."""
        ...

    def pair_billings(self) -> Iterator[PairBillings]:
        """Every pair with lifetime billings, by pair."""
        ...


# --- escrow ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MilestoneFlows:
    """A milestone's escrow account: what the kinds of entries touching it moved.

    Attributes:
        held: its balance; funded, released, refunded: net of reversals (a lost
            chargeback taken from escrow counts as refunded).
        foreign_postings: postings of entries of other kinds.
        paid: the gross of its payments.
        advanced: what the platform advanced into it (protected hourly time), net of
            what it took back when the client's money came.
    """

    milestone_id: str
    state: str
    client_id: str
    currency: str
    held: int
    funded: int
    released: int
    refunded: int
    foreign_postings: int
    paid: int
    advanced: int = 0


@dataclass(frozen=True)
class ClientFlows:
    """A client's escrow in one currency, summed over its milestones.

    Attributes:
        collected: funded; held: still in escrow; released: paid gross; refunded;
        advanced: advanced by the platform and not taken back (receivables
            outstanding + written off).
    """

    client_id: str
    currency: str
    collected: int
    held: int
    released: int
    refunded: int
    advanced: int = 0


@dataclass(frozen=True)
class CurrencyBalances:
    """Stored balances in one currency, by normal side and by account type."""

    currency: str
    debit_side: int
    credit_side: int
    assets: int
    liabilities: int
    equity: int
    revenue: int
    expenses: int


@dataclass(frozen=True)
class DisputeLeg:
    """A posting of an entry that books part of a dispute.

    Attributes:
        dispute_id: the entry's `refs["dispute"]` (None: it names none).
        account: the account's code.
    """

    kind: str
    dispute_id: str | None
    account: str
    side: Side
    amount: int


@dataclass(frozen=True)
class DisputeFigures:
    """A dispute as recorded: what it withdrew and reinstated and how its loss was recovered.

    Attributes:
        outcome: None while it is open.
    """

    id: str
    currency: str
    outcome: str | None
    withdrawn: int
    reinstated: int
    recovered_from_refunds: int
    recovered_from_escrow: int
    recovered_from_freelancer: int
    fee_returned: int
    unrecovered: int


@dataclass(frozen=True)
class WeekAudit:
    """A closed hourly week with what it was billed from, and its escrow subject.

    Attributes:
        week: as recorded at its close.
        subject_kind, subject_amount: its escrow subject's kind and amount (None: none).
        segments: the undeleted segments that start in the week, in time order.
        term_changes: every rate and limit of its contract, in time order.
        held: what its escrow subject's account holds; dispute: its dispute, if any.
        subject_state: its escrow subject's state (None: none).
    """

    week: ClosedWeek
    subject_kind: str | None
    subject_amount: int | None
    segments: tuple[Segment, ...]
    term_changes: tuple[TermChange, ...]
    held: int = 0
    dispute: WeekDispute | None = None
    subject_state: str | None = None


@dataclass(frozen=True)
class KindLeg:
    """A posting of an entry of a given kind, with the entry's references and date."""

    kind: str
    refs: Mapping[str, str]
    effective_at: datetime
    account: str
    currency: str
    side: Side
    amount: int


class EscrowAuditQueries(Protocol):
    """Milestones' escrow accounts, balances and disputes, and hourly weeks, for
    `ledger.escrow.checks`."""

    def hourly_weeks(self) -> Iterator[WeekAudit]:
        """Every closed week, by contract, then Monday."""
        ...

    def unrecorded_week_subjects(self) -> Iterator[str]:
        """The ids of escrow subjects of kind 'week' no closed week names."""
        ...

    def kind_legs(self, kinds: Sequence[str]) -> Iterator[KindLeg]:
        """The postings of every entry of one of `kinds` (few: advances, recoveries, write-offs)."""
        ...

    def milestone_flows(self) -> Iterator[MilestoneFlows]:
        """Every milestone, by id."""
        ...

    def client_flows(self) -> Iterator[ClientFlows]:
        """Every client and currency, by client, then currency."""
        ...

    def balances_by_currency(self) -> Iterator[CurrencyBalances]:
        """By currency code."""
        ...

    def dispute_legs(self, kinds: Sequence[str]) -> Iterator[DisputeLeg]:
        """The postings of every entry of one of `kinds`."""
        ...

    def disputes(self) -> Iterator[DisputeFigures]:
        """Every dispute, by id."""
        ...

    def balances_of(self, code: str) -> Mapping[str, int]:
        """Currency -> the stored balance of the account `code` in it (accounts that exist only)."""
        ...


# --- documents ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentSeries:
    """One numbering series (kind and year) of documents.

    Attributes:
        documents: how many; distinct_numbers: how many different sequence numbers;
        lowest, highest: sequence numbers; series_last_number: the series counter (None: no counter).
    """

    kind: str
    year: int
    documents: int
    distinct_numbers: int
    lowest: int
    highest: int
    series_last_number: int | None


@dataclass(frozen=True)
class DocumentTotals:
    """A document's total beside its lines and the postings of the entry it cites.

    Attributes:
        total: the stored total; stated_total: the total in the document's data.
        line_amounts: its lines' amounts.
        entry_found: whether the entry it cites exists.
        ledger: the entry's postings to the measured account on the measured side.
    """

    number: str
    total: int
    stated_total: int
    line_amounts: tuple[int, ...]
    entry_found: bool
    ledger: int


class DocumentAuditQueries(Protocol):
    """Invoices and credit notes, for `ledger.invoices.checks`."""

    def document_series(self) -> Iterator[DocumentSeries]:
        """Every series with documents, by kind, then year."""
        ...

    def document_totals(self) -> Iterator[DocumentTotals]:
        """Every document, by id."""
        ...


# --- the provider's account --------------------------------------------------------------


@dataclass(frozen=True)
class ProviderPosting:
    """A posting to the payment provider's account.

    Attributes:
        reference: the provider's object it books (`refs["gateway_reference"]`), or None.
    """

    entry_id: int
    kind: str
    reference: str | None
    side: Side
    amount: int
    currency: str


class ProviderAuditQueries(Protocol):
    """The provider's account in the ledger, for `ledger.escrow.provider_checks`."""

    def provider_postings(self, account: str) -> Iterator[ProviderPosting]:
        """Every posting to the account `account`, by posting."""
        ...


class AuditQueries(
    JournalAuditQueries, FeeAuditQueries, EscrowAuditQueries, DocumentAuditQueries, ProviderAuditQueries, Protocol
):
    """Everything the audit's checks read (`ledger.audit.run_checks` hands it to each check)."""


# --- finance reports ---------------------------------------------------------------------


@dataclass(frozen=True)
class AccountNet:
    """An account's postings up to a time, debits minus credits."""

    account: str
    type: str
    currency: str
    net: int


@dataclass(frozen=True)
class FeeRevenueRow:
    """Fee revenue from one client in one currency over a period (minor units).

    Attributes:
        billings: payments released; fees: fees charged on them;
        refunded: billings refunded; fee_refunds: fees returned; net: fees - fee_refunds.
    """

    client_id: str
    currency: str
    billings: int
    fees: int
    refunded: int
    fee_refunds: int

    @property
    def net(self) -> int:
        return self.fees - self.fee_refunds


class ReportQueries(Protocol):
    """Sums for the finance reports (`ledger.invoices.reports`)."""

    def account_nets(self, before: datetime) -> list[AccountNet]:
        """Every account with postings of entries effective before `before`, by currency, then code."""
        ...

    def fee_revenue(self, start: datetime, end: datetime) -> list[FeeRevenueRow]:
        """Fee events effective in [start, end) summed by client and currency, by currency, then client."""
        ...

    def is_empty(self) -> bool:
        """Whether no journal entry and no contract has been recorded yet."""
        ...


# --- statements --------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementPosting:
    """A posting as a statement lists it.

    Attributes:
        refs: the entry's references (milestone, payment, payout ids...).
    """

    account_id: int
    side: Side
    amount: int
    entry_id: int
    kind: str
    effective_at: datetime
    refs: Mapping[str, str]
    actor: str


@dataclass(frozen=True)
class PostingScope:
    """Which postings a statement reads: all of `accounts`, and those of `shared` accounts
    (receivables, refunds in transit, ...) whose entry refers to `client`.

    Attributes:
        accounts: ids of accounts read whole.
        shared: ids of accounts shared by every client, read for `client` only.
        client: the client whose entries' postings of `shared` are read.
    """

    accounts: tuple[int, ...]
    shared: tuple[int, ...] = ()
    client: str | None = None


class StatementQueries(Protocol):
    """Postings for statements (`ledger.invoices.statements`) and the journal for its
    Beancount export (`ledger.beancount`)."""

    def postings(self, scope: PostingScope, start: datetime, end: datetime) -> Iterator[StatementPosting]:
        """The scope's postings of entries effective in [start, end), in journal order
        (effective time, entry, posting), streamed: a statement may have any number of lines."""
        ...

    def count(self, scope: PostingScope, start: datetime, end: datetime) -> int:
        """How many postings `postings` would give."""
        ...

    def nets(self, scope: PostingScope, before: datetime) -> dict[int, int]:
        """Per account of the scope, debits minus credits of its postings of entries
        effective before `before` (accounts without one are left out)."""
        ...

    def entries(self, start: datetime | None, end: datetime | None) -> Iterator[Entry]:
        """Every entry effective in [start, end) (None: unbounded on that side) with its
        postings, in journal order (effective time, entry, posting), streamed: the whole
        journal may be read this way."""
        ...

    def entry_count(self, start: datetime | None, end: datetime | None) -> int:
        """How many entries `entries` would give."""
        ...


# --- reconciliation ----------------------------------------------------------------------


class ReconciliationQueries(Protocol):
    """The provider account's postings, for `ledger.escrow.reconciliation`."""

    def booked_postings(
        self, account: str, kinds: Sequence[str], since: datetime, until: datetime
    ) -> list[ProviderPosting]:
        """Postings to `account` of entries of `kinds` recorded in [since, until)."""
        ...


# --- operations --------------------------------------------------------------------------


class MetricsQueries(Protocol):
    """What `/metrics` reads at each scrape (`ledger.api.metrics`): counts by state and
    kind, never a party's id or name. Each is one statement a scrape every few seconds
    can afford (over an index where there is one)."""

    def posting_count(self) -> int:
        """How many postings the journal holds (they are never deleted, so it only grows)."""
        ...

    def orders_by_state(self) -> Mapping[str, int]:
        """Payment orders per state; states without one are left out."""
        ...

    def oldest_open_order_created_at(self) -> datetime | None:
        """When the oldest order still open (pending, sent, requires_action) was written
        (None: none is open)."""
        ...

    def timers_due(self, at: datetime) -> int:
        """How many timers are due at `at` and not fired yet."""
        ...
