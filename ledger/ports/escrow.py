"""The stores of escrow: contracts, milestones, payments, payouts, refunds, chargebacks,
provider events, timers, and the payment orders sent to the provider.

Rows that hold state are locked (`lock=True`) before a use case checks and changes
them, so two requests on one milestone or payout take turns and the second sees the
first's outcome. `ledger.db` implements these Protocols over SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from ledger.actors import StateChange
from ledger.escrow.model import (
    ClosedWeek,
    Contract,
    Dispute,
    DisputeOutcome,
    Milestone,
    Payment,
    PaymentRefund,
    Payout,
    PayoutState,
    RefundOrder,
    RefundOrderState,
    RefundSource,
    TermChange,
    WeekDispute,
)
from ledger.escrow.orders import NewOrder, OrderKind, OrderState, PaymentOrder
from ledger.escrow.timesheet import Segment


class EscrowStore(Protocol):
    # --- contracts -------------------------------------------------------------

    def add_contract(self, contract: Contract) -> None: ...

    def contract(self, contract_id: str, *, lock: bool = False) -> Contract:
        """`UnknownContract` if there is none."""
        ...

    def end_contract(self, contract_id: str, ended_by: str, at: datetime) -> None: ...

    def save_contract_terms(self, contract: Contract) -> None:
        """Write an hourly contract's current terms: rate, weekly limit, `paused_at`."""
        ...

    # --- hourly time -----------------------------------------------------------

    def add_term_change(self, contract_id: str, change: TermChange) -> None:
        """Record a rate or weekly limit the contract had from `change.changed_at` on."""
        ...

    def term_changes(self, contract_id: str) -> list[TermChange]:
        """Every rate and limit the contract had, the opening ones included, in time order."""
        ...

    def add_segment(self, contract_id: str, segment: Segment, at: datetime) -> Segment:
        """Insert a segment logged at `at`; returns it with its id."""
        ...

    def segment(self, contract_id: str, segment_id: str) -> Segment:
        """An undeleted segment of the contract; `UnknownSegment` if there is none."""
        ...

    def segments_of(
        self,
        contract_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[Segment]:
        """The contract's undeleted segments starting in [start, end), ids above `after_id`,
        in the order they were logged (by id), at most `limit`."""
        ...

    def delete_segment(self, segment_id: str, at: datetime) -> None:
        """Mark the segment deleted at `at` (its row stays)."""
        ...

    def segment_weeks(self, contract_id: str) -> list[date]:
        """The Mondays of the weeks with undeleted segments, newest first."""
        ...

    def add_closed_week(self, week: ClosedWeek) -> bool:
        """Record a week's close; False (and nothing written) if it was recorded already."""
        ...

    def closed_weeks(self, contract_id: str) -> dict[date, ClosedWeek]:
        """The contract's closed weeks by Monday."""
        ...

    def closed_week(self, contract_id: str, monday: date) -> ClosedWeek | None:
        """The week as it closed; None while it has not."""
        ...

    def add_week_dispute(self, dispute: WeekDispute) -> None: ...

    def week_dispute(self, week_id: str) -> WeekDispute | None:
        """The week's dispute (its id is the week's); None if it was never disputed."""
        ...

    def save_week_dispute(self, dispute: WeekDispute) -> None:
        """Write its state, closed_at, released and refunded."""
        ...

    def mark_week_reviewed(self, week_id: str, at: datetime) -> None:
        """Record when the week's review end was applied (once)."""

    def carry_weeks(self, week_ids: list[str], to: date) -> None:
        """Record that the week `to`'s charge took the amounts of the carried weeks."""

    # --- milestones ------------------------------------------------------------

    def add_milestone(self, milestone: Milestone) -> None:
        """Insert a new milestone (its `held` and `frozen_by` are derived, not stored)."""
        ...

    def milestone(self, milestone_id: str, *, lock: bool = False) -> Milestone:
        """The milestone with what its escrow account holds; `UnknownMilestone` if there is none."""
        ...

    def milestone_and_contract(self, milestone_id: str, *, lock: bool = False) -> tuple[Milestone, Contract]:
        """`milestone` and its contract, read together; `lock` locks the milestone only."""
        ...

    def milestones_of_kind(self, contract_id: str, kind: str, *, lock: bool = False) -> list[Milestone]:
        """The contract's escrow subjects of one kind (`SubjectKind`), oldest first."""
        ...

    def milestones_of(self, contract_id: str, *, lock: bool = False) -> list[Milestone]:
        """The contract's fixed-price milestones, in the order they were added."""
        ...

    def save_milestone(self, milestone: Milestone) -> None:
        """Write what a transition changes: state, review and refund deadlines, failure reason."""
        ...

    def currency_of(self, contract_id: str) -> str: ...

    def milestone_ids_of_client(self, client_id: str, currency: str) -> list[str]: ...

    def milestone_contract_id(self, milestone_id: str) -> str: ...

    def milestone_title(self, milestone_id: str) -> str: ...

    def funding(self, milestone_id: str) -> tuple[str | None, str | None]:
        """The milestone's current funding key and the PSP account its money sits at."""
        ...

    def funding_reference(self, milestone_id: str) -> str | None:
        """The provider charge the milestone's money came in by."""
        ...

    def begin_funding(self, milestone_id: str, *, funding_key: str) -> None:
        """`funding` under the attempt `funding_key`, clearing the last failure's reason."""
        ...

    def set_funding_key(self, milestone_id: str, funding_key: str) -> None:
        """The attempt under way is now `funding_key` (a cancelled charge's successor)."""
        ...

    def set_funding_reference(self, milestone_id: str, reference: str) -> None:
        """The provider's charge of the attempt under way."""
        ...

    def mark_funded(self, milestone_id: str, *, reference: str, psp_account: str) -> None:
        """`funded` by the provider charge `reference`, its money at `psp_account`."""
        ...

    # --- payments ----------------------------------------------------------------

    def add_payment(self, payment: Payment, *, pending_remaining: int, request_key: str | None) -> None:
        """Insert a release; `pending_remaining` of its net is still in the security period."""
        ...

    def payment(self, payment_id: str, *, lock: bool = False) -> Payment:
        """`UnknownPayment` if there is none."""
        ...

    def payment_by_request_key(self, key: str) -> Payment | None: ...

    def payments_of(self, milestone_id: str) -> list[Payment]:
        """In release order."""
        ...

    def pending_remaining(self, payment_id: str) -> int:
        """What of the payment's net is still pending (not yet available)."""
        ...

    def set_pending_remaining(self, payment_id: str, amount: int) -> None: ...

    def set_refunded(self, payment_id: str, refunded: int) -> None:
        """What of the payment's gross has been taken back in all (refunds and chargebacks)."""
        ...

    def record_payment_refund(self, payment_id: str, *, refunded: int, pending_remaining: int) -> None:
        """A refund after release: the payment's refunded total and what is left pending of it."""
        ...

    def set_pending_until(self, payment_id: str, at: datetime) -> None:
        """The payment's security period now ends at `at`."""
        ...

    def add_refund(
        self, refund: PaymentRefund, *, source: RefundSource, created_at: datetime, request_key: str | None
    ) -> None: ...

    def refund_by_request_key(self, key: str) -> PaymentRefund | None:
        """The refund after release made under this request key (its status: pending)."""
        ...

    # --- payouts -----------------------------------------------------------------

    def add_payout(self, payout: Payout, *, request_key: str | None) -> None: ...

    def payout(self, payout_id: str, *, lock: bool = False) -> Payout:
        """`UnknownPayout` if there is none."""
        ...

    def payout_by_request_key(self, key: str) -> Payout | None: ...

    def in_transit(self, freelancer_id: str, currency: str) -> int:
        """What of the freelancer's payouts in `currency` is in transit."""
        ...

    def unsent_payouts(self, since: datetime, limit: int) -> list[Payout]:
        """Payouts in transit, created since `since`, that the provider has not acknowledged."""
        ...

    def settle_payout(
        self,
        payout_id: str,
        state: PayoutState,
        *,
        reference: str | None,
        failure_reason: str | None,
        settled_at: datetime,
    ) -> None:
        """The provider paid (`paid`) or failed (`failed`) the payout."""
        ...

    def record_payout_reversal(
        self, payout_id: str, *, amount_reversed: int, state: PayoutState, failure_reason: str
    ) -> None:
        """The provider has reversed `amount_reversed` of the payout's transfer in all."""
        ...

    # --- refund orders -----------------------------------------------------------------

    def add_refund_order(self, order: RefundOrder) -> None: ...

    def refund_order(self, order_id: str, *, lock: bool = False) -> RefundOrder:
        """`NotFound` if there is none."""
        ...

    def pending_refund_orders(self, limit: int) -> list[RefundOrder]:
        """Oldest first."""
        ...

    def failed_refund_orders(self, milestone_id: str) -> list[RefundOrder]:
        """Refunds the provider would not make, still owed to the client (locked, oldest first)."""
        ...

    def settle_refund_order(
        self,
        order_id: str,
        state: RefundOrderState,
        *,
        reference: str | None,
        failure_reason: str | None,
        settled_at: datetime,
    ) -> None:
        """The provider made the refund (`succeeded`) or would not (`failed`)."""
        ...

    def charge_back_refund_order(self, order_id: str, *, settled_at: datetime) -> None:
        """A failed refund the client got through their bank's chargeback instead."""
        ...

    # --- disputes (chargebacks) ------------------------------------------------------

    def add_dispute(self, dispute: Dispute) -> None: ...

    def dispute(self, dispute_id: str, *, lock: bool = False) -> Dispute | None: ...

    def disputes_of(self, milestone_id: str) -> list[Dispute]:
        """In the order they were opened."""
        ...

    def open_dispute_of(self, milestone_id: str) -> str | None:
        """The open chargeback that freezes the milestone, if any."""
        ...

    def record_dispute_moves(self, dispute_id: str, *, status: str, withdrawn: int, reinstated: int) -> None:
        """The provider's status of the dispute and what it has withdrawn and reinstated in all."""
        ...

    def close_dispute(
        self,
        dispute_id: str,
        *,
        outcome: DisputeOutcome,
        recovered_from_refunds: int,
        recovered_from_escrow: int,
        recovered_from_freelancer: int,
        fee_returned: int,
        unrecovered: int,
        closed_at: datetime,
    ) -> None:
        """The dispute's outcome and how a loss was covered."""
        ...

    # --- provider events -----------------------------------------------------------

    def record_event(self, event_id: str, event_type: str, object_id: str | None) -> bool:
        """Store an event by id (locked until commit); False if it was already processed."""
        ...

    def finish_event(self, event_id: str, outcome: str) -> None: ...

    # --- timers ------------------------------------------------------------------

    def schedule(self, kind: str, subject_id: str, due_at: datetime) -> None:
        """A durable timer; scheduling the same (kind, subject, due time) twice keeps one."""
        ...

    def due_timers(self, now: datetime, limit: int) -> list[tuple[int, str, str, datetime]]:
        """Unfired timers due at `now`: (id, kind, subject id, due time), earliest first."""
        ...

    def claim_timer(self, timer_id: int) -> bool:
        """Lock a timer; False if another tick has already fired it."""
        ...

    def finish_timer(self, timer_id: int, at: datetime) -> None: ...

    def history(self, subject: str, subject_id: str) -> list[StateChange]:
        """The states a contract, milestone or payout entered, with who moved it there,
        oldest first (`state_changes`; subject `contract`, `milestone`, `payout`)."""
        ...


@dataclass(frozen=True)
class AuditRun:
    """A run of the audit the worker stored (`ledger.worker`), so `/metrics` reports the
    last result without running it.

    Attributes:
        ok: whether every check passed.
        failed_checks: the names of the checks that failed, in the audit's order.
        problems: the problems found, those omitted from the report included.
        actor: who ran it (`ledger.actors`).
    """

    started_at: datetime
    finished_at: datetime
    ok: bool
    failed_checks: tuple[str, ...]
    problems: int
    actor: str


class OrderStore(Protocol):
    """Payment orders (what the provider is asked to do), request keys and worker heartbeats."""

    @property
    def written(self) -> list[str]:
        """Ids of the orders written in this transaction (the request that commits it sends them)."""
        ...

    def add(self, new: NewOrder) -> PaymentOrder:
        """A pending order, due now, carrying the unit of work's origin."""
        ...

    def get(self, order_id: str, *, lock: bool = False) -> PaymentOrder:
        """`UnknownOrder` if there is none."""
        ...

    def mark_sent(self, order_id: str, *, first_sent_at: datetime) -> None: ...

    def wait_for_payer(self, order_id: str, reference: str, *, client_secret: str | None = None) -> None: ...

    def note(self, order_id: str, **details: str) -> None:
        """Add to what the order records (e.g. the payments its success released)."""
        ...

    def acknowledged(self, order_id: str, reference: str, *, retry_at: datetime) -> None:
        """The provider took the order and will tell its outcome later: ask again at `retry_at`."""
        ...

    def retry_later(self, order_id: str, *, attempts: int, at: datetime, reason: str) -> None: ...

    def finish(
        self,
        order_id: str,
        state: OrderState,
        *,
        reference: str | None = None,
        reason: str | None = None,
        resolved_by: str | None = None,
    ) -> None: ...

    def settle(self, order: PaymentOrder | None, *, succeeded: bool, reference: str | None, reason: str | None) -> None:
        """Finish the order behind a settled refund or payout, unless it is final already."""
        ...

    def mark_resolved(self, order_id: str, *, actor: str, note: str) -> None: ...

    def reopen(self, order_id: str, *, at: datetime) -> None:
        """An operator's retry: due at `at`, with a fresh count of attempts."""
        ...

    def claim(
        self, *, owner: str, now: datetime, lease_until: datetime, ids: Iterable[str] | None, limit: int
    ) -> list[PaymentOrder]:
        """Lease the due orders (all due, or only `ids`) to `owner`; return those taken."""
        ...

    def holds_lease(self, order_id: str, owner: str) -> bool: ...

    def of_milestone(self, milestone_id: str, *, kinds: Iterable[OrderKind] | None = None) -> list[PaymentOrder]: ...

    def of_payout(self, payout_id: str) -> PaymentOrder | None: ...

    def of_refund_order(self, refund_order_id: str) -> PaymentOrder | None: ...

    def by_provider_key(self, key: str) -> PaymentOrder | None: ...

    def by_provider_reference(self, reference: str) -> PaymentOrder | None: ...

    def listing(self, *, states: Iterable[OrderState] | None = None, limit: int = 1000) -> list[PaymentOrder]: ...

    def open_orders(self, limit: int = 10_000) -> list[PaymentOrder]: ...

    def waiting_for_payer(self, before: datetime, limit: int = 1000) -> list[PaymentOrder]:
        """Charges waiting for the payer (3-D Secure) since before `before`."""
        ...

    def bind_request_key(
        self,
        key: str,
        operation: str,
        request: Mapping[str, object],
        *,
        result: Mapping[str, object] | None = None,
    ) -> dict[str, object] | None:
        """Bind `key` to this request: None the first time, the stored result when the same
        request comes again; another request with the key is an `IdempotencyConflict`.
        `result` is stored with a new key when the caller knows it up front (else
        `store_result` stores it once the work is done)."""
        ...

    def store_result(self, key: str, result: Mapping[str, object]) -> None: ...

    def heartbeat(self, name: str, *, started_at: datetime, summary: str) -> None: ...

    def heartbeats(self) -> list[tuple[str, datetime, str]]:
        """(name, last beat, summary), most recent first."""
        ...

    def record_audit_run(
        self, *, started_at: datetime, finished_at: datetime, ok: bool, failed_checks: Sequence[str], problems: int
    ) -> AuditRun:
        """Store a run of the audit, by the current actor."""
        ...

    def last_audit_run(self) -> AuditRun | None:
        """The run that finished last (None: the audit never ran on a schedule)."""
        ...

    def history(self, order_id: str) -> list[StateChange]:
        """The states the order entered, with who moved it there, oldest first."""
        ...
