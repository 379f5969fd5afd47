"""Escrow in memory: contracts, milestones, payments, payouts, refunds, disputes, provider
events, timers (`ledger.ports.escrow.EscrowStore`), and payment orders, request keys and
heartbeats (`OrderStore`), answering as `ledger.db.escrow_store` and `order_store` do.

Locks (`lock=True`) are no-ops: the fake's transactions take turns as a whole, so a
second request on a row always sees the first one's outcome, as behind a row lock.
Updates of a row that does not exist change nothing, as an UPDATE would.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime

from ledger.actors import StateChange, current_actor
from ledger.clock import Clock
from ledger.errors import IdempotencyConflict, NotFound
from ledger.escrow.chart import escrow_account_code
from ledger.escrow.hourly_calendar import week_of
from ledger.escrow.model import (
    RATE,
    ClosedWeek,
    Contract,
    Dispute,
    DisputeOutcome,
    Milestone,
    MilestoneState,
    Payment,
    PaymentRefund,
    Payout,
    PayoutState,
    RefundOrder,
    RefundOrderState,
    RefundSource,
    SubjectKind,
    TermChange,
    UnknownContract,
    UnknownMilestone,
    UnknownPayment,
    UnknownPayout,
    UnknownSegment,
    WeekDispute,
    new_id,
)
from ledger.escrow.orders import OPEN_STATES, NewOrder, OrderKind, OrderState, PaymentOrder, UnknownOrder
from ledger.escrow.timesheet import Segment
from ledger.ports.escrow import AuditRun
from tests.fakes.accounting import MemoryAccountStore
from tests.fakes.state import (
    ConstraintViolation,
    DuplicateRow,
    HeartbeatRow,
    MemoryState,
    MilestoneRow,
    MissingRow,
    OrderRow,
    PaymentRow,
    PayoutRow,
    ProviderEventRow,
    RefundRow,
    RequestKeyRow,
    SegmentRow,
    TermChangeRow,
    TimerRow,
)


def _json_copy(value: Mapping[str, object]) -> dict[str, object]:
    """What a JSON column gives back: the value through JSON (tuples become lists)."""
    copied: dict[str, object] = json.loads(json.dumps(dict(value)))
    return copied


class MemoryEscrowStore:
    def __init__(self, state: MemoryState, clock: Clock, accounts: MemoryAccountStore) -> None:
        self._state = state
        self._clock = clock
        self._accounts = accounts

    # --- contracts -------------------------------------------------------------

    def add_contract(self, contract: Contract) -> None:
        if contract.id in self._state.contracts:
            raise DuplicateRow(f"contract {contract.id} exists")
        if contract.is_hourly != (contract.hourly_rate is not None and contract.weekly_limit_hours is not None):
            raise ConstraintViolation(f"contract {contract.id}: an hourly contract has a rate and a limit, no other")
        if contract.hourly_rate is not None and contract.hourly_rate <= 0:
            raise ConstraintViolation(f"contract {contract.id}: the rate must be positive")
        self._state.contracts[contract.id] = replace(contract, ended_by=None, ended_at=None)

    def contract(self, contract_id: str, *, lock: bool = False) -> Contract:
        found = self._state.contracts.get(contract_id)
        if found is None:
            raise UnknownContract(f"no contract {contract_id}", contract_id=contract_id)
        return found

    def end_contract(self, contract_id: str, ended_by: str, at: datetime) -> None:
        found = self._state.contracts.get(contract_id)
        if found is not None:
            self._state.contracts[contract_id] = replace(found, ended_by=ended_by, ended_at=at)

    def save_contract_terms(self, contract: Contract) -> None:
        found = self._state.contracts.get(contract.id)
        if found is not None:
            self._state.contracts[contract.id] = replace(
                found,
                hourly_rate=contract.hourly_rate,
                weekly_limit_hours=contract.weekly_limit_hours,
                paused_at=contract.paused_at,
                paused_by=contract.paused_by,
            )

    # --- hourly time -----------------------------------------------------------

    def add_term_change(self, contract_id: str, change: TermChange) -> None:
        if contract_id not in self._state.contracts:
            raise ConstraintViolation(f"term change: no contract {contract_id}")
        if change.value < (1 if change.term == RATE else 0):
            raise ConstraintViolation(f"term change: {change.term} of {change.value}")
        row_id = self._state.next_id("contract_term_changes")
        self._state.term_changes[row_id] = TermChangeRow(row_id, contract_id, change)

    def term_changes(self, contract_id: str) -> list[TermChange]:
        rows = [row for row in self._state.term_changes.values() if row.contract_id == contract_id]
        return [row.change for row in sorted(rows, key=lambda row: (row.change.changed_at, row.id))]

    def add_segment(self, contract_id: str, segment: Segment, at: datetime) -> Segment:
        if contract_id not in self._state.contracts:
            raise ConstraintViolation(f"segment: no contract {contract_id}")
        row_id = self._state.next_id("time_segments")
        stored = replace(segment, id=str(row_id))
        self._state.segments[row_id] = SegmentRow(row_id, contract_id, stored, at)
        return stored

    def segment(self, contract_id: str, segment_id: str) -> Segment:
        row = self._state.segments.get(int(segment_id)) if segment_id.isascii() and segment_id.isdigit() else None
        if row is None or row.contract_id != contract_id or row.deleted_at is not None:
            raise UnknownSegment(
                f"contract {contract_id} has no segment {segment_id}", contract_id=contract_id, segment_id=segment_id
            )
        return row.segment

    def segments_of(
        self,
        contract_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[Segment]:
        found = [
            row.segment
            for row_id, row in sorted(self._state.segments.items())
            if row.contract_id == contract_id
            and row.deleted_at is None
            and (start is None or row.segment.start >= start)
            and (end is None or row.segment.start < end)
            and (after_id is None or row_id > after_id)
        ]
        return found if limit is None else found[:limit]

    def delete_segment(self, segment_id: str, at: datetime) -> None:
        row = self._state.segments.get(int(segment_id))
        if row is not None and row.deleted_at is None:
            self._state.segments[row.id] = replace(row, deleted_at=at)

    def add_closed_week(self, week: ClosedWeek) -> bool:
        if week.id in self._state.closed_weeks:
            return False
        if week.contract_id not in self._state.contracts:
            raise ConstraintViolation(f"closed week {week.id}: no contract {week.contract_id}")
        if week.milestone_id is not None and week.milestone_id not in self._state.milestones:
            raise ConstraintViolation(f"closed week {week.id}: no milestone {week.milestone_id}")
        if (
            week.billable_minutes + week.over_limit_minutes != week.logged_minutes
            or week.billable_minutes > week.limit_minutes
            or min(week.billable_minutes, week.over_limit_minutes, week.amount) < 0
            or week.carried_in < 0
            or (week.milestone_id is not None and week.amount + week.carried_in == 0)
            or (week.milestone_id is None and week.carried_in != 0)
            or not 0 <= week.protected_amount <= week.amount
        ):
            raise ConstraintViolation(f"closed week {week.id}: minutes or amount out of line")
        self._state.closed_weeks[week.id] = week
        return True

    def closed_weeks(self, contract_id: str) -> dict[date, ClosedWeek]:
        return {w.week: w for w in self._state.closed_weeks.values() if w.contract_id == contract_id}

    def closed_week(self, contract_id: str, monday: date) -> ClosedWeek | None:
        return self.closed_weeks(contract_id).get(monday)

    def add_week_dispute(self, dispute: WeekDispute) -> None:
        if dispute.id in self._state.week_disputes:
            raise DuplicateRow(f"week dispute {dispute.id} exists")
        if dispute.id not in self._state.milestones:
            raise ConstraintViolation(f"week dispute {dispute.id}: no escrow subject")
        self._state.week_disputes[dispute.id] = dispute

    def week_dispute(self, week_id: str) -> WeekDispute | None:
        return self._state.week_disputes.get(week_id)

    def save_week_dispute(self, dispute: WeekDispute) -> None:
        if (
            dispute.released + dispute.refunded > dispute.amount
            or (not dispute.is_open and dispute.released + dispute.refunded != dispute.amount)
            or not 0 <= dispute.cancelled <= dispute.refunded
        ):
            raise ConstraintViolation(f"week dispute {dispute.id}: figures out of line")
        found = self._state.week_disputes.get(dispute.id)
        if found is not None:
            self._state.week_disputes[dispute.id] = replace(
                found,
                state=dispute.state,
                closed_at=dispute.closed_at,
                released=dispute.released,
                refunded=dispute.refunded,
                cancelled=dispute.cancelled,
            )

    def mark_week_reviewed(self, week_id: str, at: datetime) -> None:
        found = self._state.closed_weeks[week_id]
        if found.reviewed_at is None:
            self._state.closed_weeks[week_id] = replace(found, reviewed_at=at)

    def carry_weeks(self, week_ids: list[str], to: date) -> None:
        for week_id in week_ids:
            found = self._state.closed_weeks[week_id]
            if found.carried_to is None:
                self._state.closed_weeks[week_id] = replace(found, carried_to=to)

    def segment_weeks(self, contract_id: str) -> list[date]:
        starts = {segment.start for segment in self.segments_of(contract_id)}
        return sorted({week_of(start) for start in starts}, reverse=True)

    # --- milestones ------------------------------------------------------------

    def add_milestone(self, milestone: Milestone) -> None:
        if milestone.id in self._state.milestones:
            raise DuplicateRow(f"milestone {milestone.id} exists")
        if milestone.contract_id not in self._state.contracts:
            raise ConstraintViolation(f"milestone {milestone.id}: no contract {milestone.contract_id}")
        if milestone.amount <= 0:
            raise ConstraintViolation(f"milestone {milestone.id}: amount must be positive")
        stored = replace(milestone, held=0, frozen_by=None, funding_reference=None)
        self._state.milestones[milestone.id] = MilestoneRow(stored, updated_at=milestone.created_at)

    def _milestone(self, row: MilestoneRow) -> Milestone:
        stored = row.milestone
        held = 0
        account = self._accounts.find(escrow_account_code(stored.id), self.currency_of(stored.contract_id))
        if account is not None:
            held = self._accounts.balance(account)
        return replace(
            stored, held=held, frozen_by=self.open_dispute_of(stored.id), funding_reference=row.funding_reference
        )

    def _row(self, milestone_id: str) -> MilestoneRow:
        row = self._state.milestones.get(milestone_id)
        if row is None:
            raise MissingRow(f"no milestone {milestone_id}")
        return row

    def milestone(self, milestone_id: str, *, lock: bool = False) -> Milestone:
        row = self._state.milestones.get(milestone_id)
        if row is None:
            raise UnknownMilestone(f"no milestone {milestone_id}", milestone_id=milestone_id)
        return self._milestone(row)

    def milestone_and_contract(self, milestone_id: str, *, lock: bool = False) -> tuple[Milestone, Contract]:
        milestone = self.milestone(milestone_id, lock=lock)
        return milestone, self.contract(milestone.contract_id)

    def milestones_of(self, contract_id: str, *, lock: bool = False) -> list[Milestone]:
        return self.milestones_of_kind(contract_id, SubjectKind.MILESTONE)

    def milestones_of_kind(self, contract_id: str, kind: str, *, lock: bool = False) -> list[Milestone]:
        rows = [
            r
            for r in self._state.milestones.values()
            if r.milestone.contract_id == contract_id and r.milestone.kind == kind
        ]
        rows.sort(key=lambda r: (r.milestone.created_at, r.milestone.id))
        return [self._milestone(row) for row in rows]

    def _change(self, milestone_id: str, change: Callable[[MilestoneRow], MilestoneRow]) -> None:
        row = self._state.milestones.get(milestone_id)
        if row is not None:
            self._state.milestones[milestone_id] = replace(change(row), updated_at=self._clock.now())

    def save_milestone(self, milestone: Milestone) -> None:
        self._change(
            milestone.id,
            lambda row: replace(
                row,
                milestone=replace(
                    row.milestone,
                    state=milestone.state,
                    review_deadline=milestone.review_deadline,
                    refund_deadline=milestone.refund_deadline,
                    failure_reason=milestone.failure_reason,
                ),
            ),
        )

    def currency_of(self, contract_id: str) -> str:
        found = self._state.contracts.get(contract_id)
        if found is None:
            raise MissingRow(f"no contract {contract_id}")
        return found.currency

    def milestone_ids_of_client(self, client_id: str, currency: str) -> list[str]:
        contracts = self._state.contracts
        return sorted(
            m
            for m, row in self._state.milestones.items()
            if contracts[row.milestone.contract_id].client_id == client_id
            and contracts[row.milestone.contract_id].currency == currency
        )

    def milestone_contract_id(self, milestone_id: str) -> str:
        return self._row(milestone_id).milestone.contract_id

    def milestone_title(self, milestone_id: str) -> str:
        return self._row(milestone_id).milestone.title

    def funding(self, milestone_id: str) -> tuple[str | None, str | None]:
        row = self._row(milestone_id)
        return row.funding_key, row.psp_account

    def funding_reference(self, milestone_id: str) -> str | None:
        row = self._state.milestones.get(milestone_id)
        return None if row is None else row.funding_reference

    def begin_funding(self, milestone_id: str, *, funding_key: str) -> None:
        self._change(
            milestone_id,
            lambda row: replace(
                row,
                milestone=replace(row.milestone, state=MilestoneState.FUNDING, failure_reason=None),
                funding_key=funding_key,
            ),
        )

    def set_funding_key(self, milestone_id: str, funding_key: str) -> None:
        self._change(milestone_id, lambda row: replace(row, funding_key=funding_key))

    def set_funding_reference(self, milestone_id: str, reference: str) -> None:
        self._change(milestone_id, lambda row: replace(row, funding_reference=reference))

    def mark_funded(self, milestone_id: str, *, reference: str, psp_account: str) -> None:
        self._change(
            milestone_id,
            lambda row: replace(
                row,
                milestone=replace(row.milestone, state=MilestoneState.FUNDED),
                funding_reference=reference,
                psp_account=psp_account,
            ),
        )

    # --- payments ----------------------------------------------------------------

    def _check_payment(self, payment: Payment, pending_remaining: int) -> None:
        if not (
            payment.gross > 0 and payment.fee >= 0 and payment.net >= 0 and payment.gross == payment.fee + payment.net
        ):
            raise ConstraintViolation(f"payment {payment.id}: gross must be fee + net, all positive")
        if not 0 <= payment.refunded <= payment.gross:
            raise ConstraintViolation(f"payment {payment.id}: refunded {payment.refunded} outside 0..gross")
        if not 0 <= pending_remaining <= payment.net:
            raise ConstraintViolation(f"payment {payment.id}: pending {pending_remaining} outside 0..net")

    def add_payment(self, payment: Payment, *, pending_remaining: int, request_key: str | None) -> None:
        if payment.id in self._state.payments:
            raise DuplicateRow(f"payment {payment.id} exists")
        if request_key is not None and self.payment_by_request_key(request_key) is not None:
            raise DuplicateRow(f"a payment has the request key {request_key!r}")
        if payment.milestone_id not in self._state.milestones or payment.entry_id not in self._state.entries:
            raise ConstraintViolation(f"payment {payment.id}: no milestone or entry")
        self._check_payment(payment, pending_remaining)
        self._state.payments[payment.id] = PaymentRow(payment, pending_remaining, request_key)

    def payment(self, payment_id: str, *, lock: bool = False) -> Payment:
        row = self._state.payments.get(payment_id)
        if row is None:
            raise UnknownPayment(f"no payment {payment_id}", payment_id=payment_id)
        return row.payment

    def payment_by_request_key(self, key: str) -> Payment | None:
        return next((r.payment for r in self._state.payments.values() if r.request_key == key), None)

    def payments_of(self, milestone_id: str) -> list[Payment]:
        found = [r.payment for r in self._state.payments.values() if r.payment.milestone_id == milestone_id]
        return sorted(found, key=lambda p: (p.released_at, p.id))

    def pending_remaining(self, payment_id: str) -> int:
        row = self._state.payments.get(payment_id)
        if row is None:
            raise MissingRow(f"no payment {payment_id}")
        return row.pending_remaining

    def _change_payment(self, payment_id: str, change: Callable[[PaymentRow], PaymentRow]) -> None:
        row = self._state.payments.get(payment_id)
        if row is not None:
            changed = change(row)
            self._check_payment(changed.payment, changed.pending_remaining)
            self._state.payments[payment_id] = changed

    def set_pending_remaining(self, payment_id: str, amount: int) -> None:
        self._change_payment(payment_id, lambda row: replace(row, pending_remaining=amount))

    def set_refunded(self, payment_id: str, refunded: int) -> None:
        self._change_payment(payment_id, lambda row: replace(row, payment=replace(row.payment, refunded=refunded)))

    def record_payment_refund(self, payment_id: str, *, refunded: int, pending_remaining: int) -> None:
        self._change_payment(
            payment_id,
            lambda row: replace(
                row, payment=replace(row.payment, refunded=refunded), pending_remaining=pending_remaining
            ),
        )

    def set_pending_until(self, payment_id: str, at: datetime) -> None:
        self._change_payment(payment_id, lambda row: replace(row, payment=replace(row.payment, pending_until=at)))

    def add_refund(
        self, refund: PaymentRefund, *, source: RefundSource, created_at: datetime, request_key: str | None
    ) -> None:
        if refund.id in self._state.refunds:
            raise DuplicateRow(f"refund {refund.id} exists")
        if request_key is not None and self.refund_by_request_key(request_key) is not None:
            raise DuplicateRow(f"a refund has the request key {request_key!r}")
        if refund.payment_id not in self._state.payments or refund.entry_id not in self._state.entries:
            raise ConstraintViolation(f"refund {refund.id}: no payment or entry")
        stored = PaymentRefund(refund.id, refund.payment_id, refund.amount, refund.fee_returned, refund.entry_id)
        self._state.refunds[refund.id] = RefundRow(stored, source, created_at, request_key)

    def refund_by_request_key(self, key: str) -> PaymentRefund | None:
        return next((r.refund for r in self._state.refunds.values() if r.request_key == key), None)

    # --- payouts -----------------------------------------------------------------

    def add_payout(self, payout: Payout, *, request_key: str | None) -> None:
        if payout.id in self._state.payouts:
            raise DuplicateRow(f"payout {payout.id} exists")
        if request_key is not None and self.payout_by_request_key(request_key) is not None:
            raise DuplicateRow(f"a payout has the request key {request_key!r}")
        if payout.amount <= 0:
            raise ConstraintViolation(f"payout {payout.id}: amount must be positive")
        self._state.payouts[payout.id] = PayoutRow(payout, request_key)

    def payout(self, payout_id: str, *, lock: bool = False) -> Payout:
        row = self._state.payouts.get(payout_id)
        if row is None:
            raise UnknownPayout(f"no payout {payout_id}", payout_id=payout_id)
        return row.payout

    def payout_by_request_key(self, key: str) -> Payout | None:
        return next((r.payout for r in self._state.payouts.values() if r.request_key == key), None)

    def in_transit(self, freelancer_id: str, currency: str) -> int:
        return sum(
            r.payout.amount
            for r in self._state.payouts.values()
            if r.payout.freelancer_id == freelancer_id
            and r.payout.currency == currency
            and r.payout.state is PayoutState.IN_TRANSIT
        )

    def unsent_payouts(self, since: datetime, limit: int) -> list[Payout]:
        found = [
            r.payout
            for r in self._state.payouts.values()
            if r.payout.state is PayoutState.IN_TRANSIT
            and r.payout.gateway_reference is None
            and r.payout.created_at >= since
        ]
        return sorted(found, key=lambda p: (p.created_at, p.id))[:limit]

    def _change_payout(self, payout_id: str, change: Callable[[Payout], Payout]) -> None:
        row = self._state.payouts.get(payout_id)
        if row is not None:
            self._state.payouts[payout_id] = replace(row, payout=change(row.payout))

    def settle_payout(
        self,
        payout_id: str,
        state: PayoutState,
        *,
        reference: str | None,
        failure_reason: str | None,
        settled_at: datetime,
    ) -> None:
        self._change_payout(
            payout_id,
            lambda p: replace(
                p, state=state, gateway_reference=reference, failure_reason=failure_reason, settled_at=settled_at
            ),
        )

    def record_payout_reversal(
        self, payout_id: str, *, amount_reversed: int, state: PayoutState, failure_reason: str
    ) -> None:
        self._change_payout(
            payout_id,
            lambda p: replace(p, amount_reversed=amount_reversed, state=state, failure_reason=failure_reason),
        )

    # --- refund orders -----------------------------------------------------------------

    def add_refund_order(self, order: RefundOrder) -> None:
        if order.id in self._state.refund_orders:
            raise DuplicateRow(f"refund order {order.id} exists")
        if order.amount <= 0 or order.milestone_id not in self._state.milestones:
            raise ConstraintViolation(f"refund order {order.id}: positive amount of an existing milestone")
        self._state.refund_orders[order.id] = order

    def refund_order(self, order_id: str, *, lock: bool = False) -> RefundOrder:
        found = self._state.refund_orders.get(order_id)
        if found is None:
            raise NotFound(f"no refund order {order_id}", refund_order=order_id)
        return found

    def _refund_orders(self, state: RefundOrderState, milestone_id: str | None = None) -> list[RefundOrder]:
        found = [
            o
            for o in self._state.refund_orders.values()
            if o.state is state and (milestone_id is None or o.milestone_id == milestone_id)
        ]
        return sorted(found, key=lambda o: (o.created_at, o.id))

    def pending_refund_orders(self, limit: int) -> list[RefundOrder]:
        return self._refund_orders(RefundOrderState.PENDING)[:limit]

    def failed_refund_orders(self, milestone_id: str) -> list[RefundOrder]:
        return self._refund_orders(RefundOrderState.FAILED, milestone_id)

    def settle_refund_order(
        self,
        order_id: str,
        state: RefundOrderState,
        *,
        reference: str | None,
        failure_reason: str | None,
        settled_at: datetime,
    ) -> None:
        found = self._state.refund_orders.get(order_id)
        if found is not None:
            self._state.refund_orders[order_id] = replace(
                found, state=state, gateway_reference=reference, failure_reason=failure_reason, settled_at=settled_at
            )

    def charge_back_refund_order(self, order_id: str, *, settled_at: datetime) -> None:
        found = self._state.refund_orders.get(order_id)
        if found is not None:
            self._state.refund_orders[order_id] = replace(
                found, state=RefundOrderState.CHARGED_BACK, settled_at=settled_at
            )

    # --- disputes (chargebacks) ------------------------------------------------------

    def add_dispute(self, dispute: Dispute) -> None:
        if dispute.id in self._state.disputes:
            raise DuplicateRow(f"dispute {dispute.id} exists")
        if dispute.milestone_id not in self._state.milestones:
            raise ConstraintViolation(f"dispute {dispute.id}: no milestone {dispute.milestone_id}")
        self._state.disputes[dispute.id] = dispute

    def dispute(self, dispute_id: str, *, lock: bool = False) -> Dispute | None:
        return self._state.disputes.get(dispute_id)

    def disputes_of(self, milestone_id: str) -> list[Dispute]:
        found = [d for d in self._state.disputes.values() if d.milestone_id == milestone_id]
        return sorted(found, key=lambda d: d.opened_at)

    def open_dispute_of(self, milestone_id: str) -> str | None:
        open_ = [d for d in self.disputes_of(milestone_id) if d.outcome is None]
        return open_[0].id if open_ else None

    def record_dispute_moves(self, dispute_id: str, *, status: str, withdrawn: int, reinstated: int) -> None:
        found = self._state.disputes.get(dispute_id)
        if found is not None:
            if not 0 <= reinstated <= withdrawn:
                raise ConstraintViolation(f"dispute {dispute_id}: reinstated {reinstated} exceeds withdrawn")
            self._state.disputes[dispute_id] = replace(found, status=status, withdrawn=withdrawn, reinstated=reinstated)

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
        found = self._state.disputes.get(dispute_id)
        if found is not None:
            self._state.disputes[dispute_id] = replace(
                found,
                outcome=outcome,
                recovered_from_refunds=recovered_from_refunds,
                recovered_from_escrow=recovered_from_escrow,
                recovered_from_freelancer=recovered_from_freelancer,
                fee_returned=fee_returned,
                unrecovered=unrecovered,
                closed_at=closed_at,
            )

    # --- provider events -----------------------------------------------------------

    def record_event(self, event_id: str, event_type: str, object_id: str | None) -> bool:
        row = self._state.provider_events.setdefault(
            event_id, ProviderEventRow(event_type, object_id, self._clock.now())
        )
        return row.processed_at is None

    def finish_event(self, event_id: str, outcome: str) -> None:
        row = self._state.provider_events.get(event_id)
        if row is not None:
            self._state.provider_events[event_id] = replace(row, processed_at=self._clock.now(), outcome=outcome[:500])

    # --- timers ------------------------------------------------------------------

    def schedule(self, kind: str, subject_id: str, due_at: datetime) -> None:
        timers = self._state.timers.values()
        if any((t.kind, t.subject_id, t.due_at) == (kind, subject_id, due_at) for t in timers):
            return
        timer_id = self._state.next_id("timers")
        self._state.timers[timer_id] = TimerRow(timer_id, kind, subject_id, due_at)

    def due_timers(self, now: datetime, limit: int) -> list[tuple[int, str, str, datetime]]:
        due = [t for t in self._state.timers.values() if t.done_at is None and t.due_at <= now]
        due.sort(key=lambda t: (t.due_at, t.id))
        return [(t.id, t.kind, t.subject_id, t.due_at) for t in due[:limit]]

    def claim_timer(self, timer_id: int) -> bool:
        timer = self._state.timers.get(timer_id)
        return timer is not None and timer.done_at is None

    def finish_timer(self, timer_id: int, at: datetime) -> None:
        timer = self._state.timers.get(timer_id)
        if timer is not None:
            self._state.timers[timer_id] = replace(timer, done_at=at)

    def history(self, subject: str, subject_id: str) -> list[StateChange]:
        # The fake keeps no log (the database's is tested over HTTP): the state now.
        if subject == "contract":
            contract = self.contract(subject_id)
            state = f"ended_by_{contract.ended_by}" if contract.ended_by else "open"
        elif subject == "milestone":
            state = self.milestone(subject_id).state.value
        else:
            state = self.payout(subject_id).state.value
        return [StateChange(subject, subject_id, state, current_actor(), self._clock.now())]


#: The fake's state has no table of audit runs (tests/fakes/state.py): they are kept as
#: request-key rows under keys no request can have (NUL is refused in a header and by
#: PostgreSQL), which nothing else reads, so the runs commit and roll back with the rest.
_AUDIT_RUN_KEY = "\x00audit-run:"
_AUDIT_RUN = "audit-run"


class MemoryOrderStore:
    def __init__(self, state: MemoryState, clock: Clock, origin: Callable[[], str | None]) -> None:
        self._state = state
        self._clock = clock
        self._origin = origin
        self._written: list[str] = []

    @property
    def written(self) -> list[str]:
        return self._written

    # --- writing ---------------------------------------------------------------------

    def add(self, new: NewOrder) -> PaymentOrder:
        now = self._clock.now()
        order_id = new.id or new_id("ord")
        if order_id in self._state.orders:
            raise DuplicateRow(f"payment order {order_id} exists")
        if self.by_provider_key(new.provider_key) is not None:
            raise DuplicateRow(f"a payment order has the provider key {new.provider_key!r}")
        if new.amount < 0:
            raise ConstraintViolation(f"payment order {order_id}: negative amount")
        order = PaymentOrder(
            id=order_id,
            kind=new.kind,
            state=OrderState.PENDING,
            amount=new.amount,
            currency=new.currency,
            provider_key=new.provider_key,
            created_at=now,
            updated_at=now,
            milestone_id=new.milestone_id,
            payout_id=new.payout_id,
            refund_order_id=new.refund_order_id,
            target_reference=new.target_reference,
            origin=self._origin(),
            attempts=0,
            next_attempt_at=now,
            details={str(k): str(v) for k, v in _json_copy(new.details).items()},
            actor=current_actor(),
        )
        self._state.orders[order_id] = OrderRow(order)
        self._written.append(order_id)
        return order

    def get(self, order_id: str, *, lock: bool = False) -> PaymentOrder:
        row = self._state.orders.get(order_id)
        if row is None:
            raise UnknownOrder(f"no payment order {order_id}", order_id=order_id)
        return row.order

    def _change(
        self, order_id: str, change: Callable[[PaymentOrder], PaymentOrder], *, release_lease: bool = False
    ) -> None:
        """Apply `change` to the order, stamped now; `release_lease` also ends its lease."""
        row = self._state.orders.get(order_id)
        if row is None:
            return
        order = replace(change(row.order), updated_at=self._clock.now())
        if release_lease:
            self._state.orders[order_id] = OrderRow(replace(order, lease_until=None), None)
        else:
            self._state.orders[order_id] = OrderRow(order, row.lease_owner)

    def mark_sent(self, order_id: str, *, first_sent_at: datetime) -> None:
        self._change(order_id, lambda o: replace(o, state=OrderState.SENT, first_sent_at=first_sent_at))

    def wait_for_payer(self, order_id: str, reference: str, *, client_secret: str | None = None) -> None:
        def change(o: PaymentOrder) -> PaymentOrder:
            details = {**o.details, "client_secret": client_secret} if client_secret else o.details
            return replace(o, state=OrderState.REQUIRES_ACTION, provider_reference=reference, details=details)

        self._change(order_id, change, release_lease=True)

    def note(self, order_id: str, **details: str) -> None:
        self._change(order_id, lambda o: replace(o, details={**self.get(order_id).details, **details}))

    def acknowledged(self, order_id: str, reference: str, *, retry_at: datetime) -> None:
        self._change(
            order_id,
            lambda o: replace(o, state=OrderState.SENT, provider_reference=reference, next_attempt_at=retry_at),
            release_lease=True,
        )

    def retry_later(self, order_id: str, *, attempts: int, at: datetime, reason: str) -> None:
        if attempts < 0:
            raise ConstraintViolation(f"payment order {order_id}: negative attempts")
        self._change(
            order_id,
            lambda o: replace(o, attempts=attempts, next_attempt_at=at, failure_reason=reason[:500]),
            release_lease=True,
        )

    def finish(
        self,
        order_id: str,
        state: OrderState,
        *,
        reference: str | None = None,
        reason: str | None = None,
        resolved_by: str | None = None,
    ) -> None:
        self._change(
            order_id,
            lambda o: replace(
                o,
                state=state,
                completed_at=self._clock.now(),
                failure_reason=None if reason is None else reason[:500],
                provider_reference=o.provider_reference if reference is None else reference,
                resolved_by=o.resolved_by if resolved_by is None else resolved_by,
            ),
            release_lease=True,
        )

    def settle(self, order: PaymentOrder | None, *, succeeded: bool, reference: str | None, reason: str | None) -> None:
        if order is None or order.state.is_final:
            return
        state = OrderState.SUCCEEDED if succeeded else OrderState.FAILED
        self.finish(order.id, state, reference=reference, reason=None if succeeded else (reason or "failed"))

    def mark_resolved(self, order_id: str, *, actor: str, note: str) -> None:
        details = {**self.get(order_id).details, "resolution": note}
        self._change(order_id, lambda o: replace(o, resolved_by=actor[:80], details=details))

    def reopen(self, order_id: str, *, at: datetime) -> None:
        self._change(
            order_id,
            lambda o: replace(o, state=OrderState.PENDING, attempts=0, next_attempt_at=at, failure_reason=None),
            release_lease=True,
        )

    # --- taking orders to send -----------------------------------------------------------

    def claim(
        self, *, owner: str, now: datetime, lease_until: datetime, ids: Iterable[str] | None, limit: int
    ) -> list[PaymentOrder]:
        wanted = None if ids is None else set(ids)
        if wanted is not None and not wanted:
            return []
        due = [
            row.order
            for row in self._state.orders.values()
            if row.order.state in (OrderState.PENDING, OrderState.SENT)
            and row.order.next_attempt_at is not None
            and row.order.next_attempt_at <= now
            and (row.order.lease_until is None or row.order.lease_until < now)
            and (wanted is None or row.order.id in wanted)
        ]
        due.sort(key=lambda o: (o.next_attempt_at or now, o.id))
        taken = []
        for order in due[:limit]:
            leased = replace(order, lease_until=lease_until, updated_at=now)
            self._state.orders[order.id] = OrderRow(leased, owner)
            taken.append(leased)
        return taken

    def holds_lease(self, order_id: str, owner: str) -> bool:
        row = self._state.orders.get(order_id)
        return row is not None and row.lease_owner == owner

    # --- reading -----------------------------------------------------------------------

    def _orders(self, keep: Callable[[PaymentOrder], bool]) -> list[PaymentOrder]:
        found = [row.order for row in self._state.orders.values() if keep(row.order)]
        return sorted(found, key=lambda o: (o.created_at, o.id))

    def of_milestone(self, milestone_id: str, *, kinds: Iterable[OrderKind] | None = None) -> list[PaymentOrder]:
        wanted = None if kinds is None else set(kinds)
        return self._orders(lambda o: o.milestone_id == milestone_id and (wanted is None or o.kind in wanted))

    def of_payout(self, payout_id: str) -> PaymentOrder | None:
        return next(iter(self._orders(lambda o: o.payout_id == payout_id)), None)

    def of_refund_order(self, refund_order_id: str) -> PaymentOrder | None:
        return next(iter(self._orders(lambda o: o.refund_order_id == refund_order_id)), None)

    def by_provider_key(self, key: str) -> PaymentOrder | None:
        return next((row.order for row in self._state.orders.values() if row.order.provider_key == key), None)

    def by_provider_reference(self, reference: str) -> PaymentOrder | None:
        return next(iter(self._orders(lambda o: o.provider_reference == reference)), None)

    def listing(self, *, states: Iterable[OrderState] | None = None, limit: int = 1000) -> list[PaymentOrder]:
        wanted = None if states is None else set(states)
        return self._orders(lambda o: wanted is None or o.state in wanted)[:limit]

    def open_orders(self, limit: int = 10_000) -> list[PaymentOrder]:
        return self.listing(states=OPEN_STATES, limit=limit)

    def waiting_for_payer(self, before: datetime, limit: int = 1000) -> list[PaymentOrder]:
        return self._orders(
            lambda o: (
                o.state is OrderState.REQUIRES_ACTION
                and o.kind in (OrderKind.FUND, OrderKind.BONUS)
                and o.created_at < before
            )
        )[:limit]

    # --- request keys ------------------------------------------------------------------------

    def bind_request_key(
        self,
        key: str,
        operation: str,
        request: Mapping[str, object],
        *,
        result: Mapping[str, object] | None = None,
    ) -> dict[str, object] | None:
        fingerprint = hashlib.sha256(
            json.dumps({"operation": operation, **request}, sort_keys=True, default=str).encode()
        ).hexdigest()
        row = self._state.request_keys.get(key)
        if row is None:
            stored = _json_copy(result or {})
            self._state.request_keys[key] = RequestKeyRow(operation, fingerprint, stored, self._clock.now())
            return None
        if row.fingerprint != fingerprint:
            raise IdempotencyConflict(
                f"request key {key!r} was used for another request ({row.operation})",
                idempotency_key=key,
                operation=row.operation,
            )
        return dict(row.result)

    def store_result(self, key: str, result: Mapping[str, object]) -> None:
        row = self._state.request_keys.get(key)
        if row is not None:
            self._state.request_keys[key] = replace(row, result=_json_copy(result))

    # --- workers -------------------------------------------------------------------------------

    def heartbeat(self, name: str, *, started_at: datetime, summary: str) -> None:
        self._state.heartbeats[name] = HeartbeatRow(self._clock.now(), started_at, summary[:500])

    def heartbeats(self) -> list[tuple[str, datetime, str]]:
        beats = sorted(self._state.heartbeats.items(), key=lambda item: item[1].beat_at, reverse=True)
        return [(name, row.beat_at, row.summary) for name, row in beats]

    def history(self, order_id: str) -> list[StateChange]:  # the order store's
        # The fake keeps no log: the order as written, and its state now if it moved.
        order = self.get(order_id)
        found = [StateChange("payment_order", order_id, OrderState.PENDING.value, order.actor, order.created_at)]
        if order.state is not OrderState.PENDING:
            found.append(StateChange("payment_order", order_id, order.state.value, current_actor(), order.updated_at))
        return found

    def record_audit_run(
        self, *, started_at: datetime, finished_at: datetime, ok: bool, failed_checks: Sequence[str], problems: int
    ) -> AuditRun:
        run = AuditRun(started_at, finished_at, ok, tuple(failed_checks), problems, current_actor())
        row = {
            "started_at": started_at.isoformat(),
            "finished_at": finished_at.isoformat(),
            "ok": ok,
            "failed_checks": list(run.failed_checks),
            "problems": problems,
            "actor": run.actor,
        }
        key = f"{_AUDIT_RUN_KEY}{self._state.next_id('audit_runs'):012d}"
        self._state.request_keys[key] = RequestKeyRow(_AUDIT_RUN, "", row, finished_at)
        return run

    def last_audit_run(self) -> AuditRun | None:
        runs = sorted(
            (row.created_at, key, row.result)
            for key, row in self._state.request_keys.items()
            if key.startswith(_AUDIT_RUN_KEY) and row.operation == _AUDIT_RUN
        )
        if not runs:
            return None
        *_, (_, _, row) = runs
        names = row["failed_checks"]
        assert isinstance(names, list)
        return AuditRun(
            datetime.fromisoformat(str(row["started_at"])),
            datetime.fromisoformat(str(row["finished_at"])),
            bool(row["ok"]),
            tuple(str(name) for name in names),
            int(str(row["problems"])),
            str(row["actor"]),
        )
