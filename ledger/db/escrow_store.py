"""Contracts, milestones, payments, payouts and timers in the database.

Rows that hold state are locked (`FOR UPDATE` on PostgreSQL; SQLite writers hold
the database lock) before a use case checks and changes them, so two requests on
one milestone or payout take turns and the second sees the first's outcome.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, Select, Update, bindparam, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from ledger.actors import StateChange
from ledger.db import state_log
from ledger.db.schema import (
    DIALECT_INSERT,
    accounts,
    balances,
    contract_term_changes,
    contracts,
    disputes,
    hourly_weeks,
    milestones,
    payment_refunds,
    payments,
    payouts,
    provider_events,
    refund_orders,
    time_segments,
    timers,
    week_disputes,
)
from ledger.errors import NotFound
from ledger.escrow.chart import ESCROW_ACCOUNT_PREFIX
from ledger.escrow.hourly_calendar import week_of
from ledger.escrow.model import (
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
)
from ledger.escrow.timesheet import Segment

#: Ids are BIGINT: a larger number names no row (and would not fit the parameter).
MAX_ID = 2**63 - 1

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork


def _contract(row: Row[Any]) -> Contract:
    return Contract(
        id=row.id,
        client_id=row.client_id,
        freelancer_id=row.freelancer_id,
        currency=row.currency,
        title=row.title,
        created_at=row.created_at,
        ended_by=row.ended_by,
        ended_at=row.ended_at,
        type=row.type,
        hourly_rate=None if row.hourly_rate is None else int(row.hourly_rate),
        weekly_limit_hours=None if row.weekly_limit_hours is None else int(row.weekly_limit_hours),
        manual_time_allowed=bool(row.manual_time_allowed),
        paused_at=row.paused_at,
        paused_by=row.paused_by,
    )


def segment_of(row: Row[Any]) -> Segment:
    return Segment(start=row.start_at, end=row.end_at, memo=row.memo, manual=bool(row.manual), id=str(row.id))


def _payment(row: Row[Any]) -> Payment:
    return Payment(
        id=row.id,
        milestone_id=row.milestone_id,
        contract_id=row.contract_id,
        kind=row.kind,
        gross=int(row.gross),
        fee=int(row.fee),
        net=int(row.net),
        released_at=row.released_at,
        pending_until=row.pending_until,
        refunded=int(row.refunded),
        entry_id=int(row.entry_id),
        charge_reference=row.charge_reference,
    )


def _dispute(row: Row[Any]) -> Dispute:
    return Dispute(
        id=row.id,
        milestone_id=row.milestone_id,
        charge_reference=row.charge_reference,
        currency=row.currency,
        amount=int(row.amount),
        status=row.status,
        withdrawn=int(row.withdrawn),
        reinstated=int(row.reinstated),
        outcome=None if row.outcome is None else DisputeOutcome(row.outcome),
        recovered_from_escrow=int(row.recovered_from_escrow),
        recovered_from_freelancer=int(row.recovered_from_freelancer),
        recovered_from_refunds=int(row.recovered_from_refunds),
        fee_returned=int(row.fee_returned),
        unrecovered=int(row.unrecovered),
        opened_at=row.opened_at,
        closed_at=row.closed_at,
    )


def _payout(row: Row[Any]) -> Payout:
    return Payout(
        id=row.id,
        freelancer_id=row.freelancer_id,
        currency=row.currency,
        amount=int(row.amount),
        state=PayoutState(row.state),
        gateway_reference=row.gateway_reference,
        failure_reason=row.failure_reason,
        created_at=row.created_at,
        settled_at=row.settled_at,
        amount_reversed=int(row.amount_reversed),
    )


def _refund_order(row: Row[Any]) -> RefundOrder:
    return RefundOrder(
        id=row.id,
        milestone_id=row.milestone_id,
        payment_id=row.payment_id,
        currency=row.currency,
        amount=int(row.amount),
        psp_account=row.psp_account,
        charge_reference=row.charge_reference,
        state=RefundOrderState(row.state),
        created_at=row.created_at,
        gateway_reference=row.gateway_reference,
        failure_reason=row.failure_reason,
        settled_at=row.settled_at,
    )


def _milestone_view() -> Select[Any]:
    """A milestone as the domain sees it, in one statement: its row, its contract's,
    what its escrow account holds (the account is opened in the contract's
    currency) and the open chargeback that freezes it."""
    held = (
        select(func.coalesce(func.sum(balances.c.balance), 0))
        .select_from(balances.join(accounts, accounts.c.id == balances.c.account_id))
        .where(
            accounts.c.code == literal(ESCROW_ACCOUNT_PREFIX) + milestones.c.id,
            accounts.c.currency == contracts.c.currency,
        )
        .scalar_subquery()
    )
    frozen_by = (
        select(disputes.c.id)
        .where(disputes.c.milestone_id == milestones.c.id, disputes.c.outcome.is_(None))
        .order_by(disputes.c.opened_at)
        .limit(1)
        .scalar_subquery()
    )
    # The contract's id is the milestone's contract_id.
    contract = [c.label(f"contract_{c.name}") for c in contracts.c if c.name != "id"]
    return select(milestones, *contract, held.label("held"), frozen_by.label("frozen_by")).select_from(
        milestones.join(contracts, contracts.c.id == milestones.c.contract_id)
    )


# The approval's statements, built once (a statement built for every call costs more
# CPU than running it); values are passed when they run.
_MILESTONE = _milestone_view().where(milestones.c.id == bindparam("milestone_id"))
_LOCK_MILESTONE = select(milestones.c.id).where(milestones.c.id == bindparam("milestone_id")).with_for_update()
_SAVE_MILESTONE = milestones.update().where(milestones.c.id == bindparam("milestone_id"))
_ADD_PAYMENT = payments.insert()
_PAYMENTS_OF = (
    select(payments)
    .where(payments.c.milestone_id == bindparam("milestone_id"))
    .order_by(payments.c.released_at, payments.c.id)
)
_SCHEDULE = {dialect: insert(timers).on_conflict_do_nothing() for dialect, insert in DIALECT_INSERT.items()}
_ADD_CLOSED_WEEK = {
    dialect: insert(hourly_weeks).on_conflict_do_nothing(index_elements=["id"])
    for dialect, insert in DIALECT_INSERT.items()
}


def _dispute_values(dispute: WeekDispute) -> dict[str, object]:
    return {
        "id": dispute.id,
        "contract_id": dispute.contract_id,
        "minutes": dispute.minutes,
        "amount": dispute.amount,
        "reason": dispute.reason,
        "state": dispute.state,
        "opened_at": dispute.opened_at,
        "answer_by": dispute.answer_by,
        "closed_at": dispute.closed_at,
        "released": dispute.released,
        "refunded": dispute.refunded,
        "cancelled": dispute.cancelled,
    }


def _contract_state(contract: Contract) -> str:
    """What `state_changes` records of a contract: ended (which outlasts a pause lifted
    later, e.g. by a past-due week's charge succeeding), paused, or open."""
    if contract.ended_by is not None:
        return f"ended_by_{contract.ended_by}"
    return "open" if contract.paused_by is None else f"paused_{contract.paused_by}"


def week_dispute_of(row: Row[Any]) -> WeekDispute:
    return WeekDispute(
        id=row.id,
        contract_id=row.contract_id,
        minutes=int(row.minutes),
        amount=int(row.amount),
        reason=row.reason,
        state=row.state,
        opened_at=row.opened_at,
        answer_by=row.answer_by,
        closed_at=row.closed_at,
        released=int(row.released),
        refunded=int(row.refunded),
        cancelled=int(row.cancelled),
    )


def closed_week(row: Row[Any]) -> ClosedWeek:
    return ClosedWeek(
        id=row.id,
        contract_id=row.contract_id,
        week=row.week,
        limit_minutes=int(row.limit_minutes),
        logged_minutes=int(row.logged_minutes),
        billable_minutes=int(row.billable_minutes),
        over_limit_minutes=int(row.over_limit_minutes),
        amount=int(row.amount),
        closed_at=row.closed_at,
        milestone_id=row.milestone_id,
        protected_amount=int(row.protected_amount),
        carried_in=int(row.carried_in),
        carried_to=row.carried_to,
        reviewed_at=row.reviewed_at,
    )


class EscrowStore:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self._conn = uow.connection

    def _locked(self, query: Select[Any], lock: bool) -> Select[Any]:
        return query.with_for_update() if lock and self._uow.dialect == "postgresql" else query

    # --- contracts -------------------------------------------------------------

    def add_contract(self, contract: Contract) -> None:
        self._conn.execute(
            contracts.insert().values(
                id=contract.id,
                client_id=contract.client_id,
                freelancer_id=contract.freelancer_id,
                currency=contract.currency,
                title=contract.title,
                created_at=contract.created_at,
                type=contract.type,
                hourly_rate=contract.hourly_rate,
                weekly_limit_hours=contract.weekly_limit_hours,
                manual_time_allowed=contract.manual_time_allowed,
                paused_at=contract.paused_at,
                paused_by=contract.paused_by,
            )
        )
        self._changed("contract", contract.id, _contract_state(contract))

    def contract(self, contract_id: str, *, lock: bool = False) -> Contract:
        query = select(contracts).where(contracts.c.id == contract_id)
        if lock and self._uow.dialect == "postgresql":
            # FOR NO KEY UPDATE: rows inserted for the contract (a payment's foreign key takes
            # KEY SHARE on it) do not wait for this lock. Ending a contract locks it and then
            # its milestones; an approval locks its milestone and then inserts a payment: with
            # FOR UPDATE the two deadlocked.
            query = query.with_for_update(key_share=True)
        row = self._conn.execute(query).first()
        if row is None:
            raise UnknownContract(f"no contract {contract_id}", contract_id=contract_id)
        return _contract(row)

    def end_contract(self, contract_id: str, ended_by: str, at: datetime) -> None:
        self._conn.execute(
            contracts.update().where(contracts.c.id == contract_id).values(ended_by=ended_by, ended_at=at)
        )
        self._changed("contract", contract_id, f"ended_by_{ended_by}")

    def save_contract_terms(self, contract: Contract) -> None:
        self._conn.execute(
            contracts.update()
            .where(contracts.c.id == contract.id)
            .values(
                hourly_rate=contract.hourly_rate,
                weekly_limit_hours=contract.weekly_limit_hours,
                paused_at=contract.paused_at,
                paused_by=contract.paused_by,
            )
        )
        self._changed("contract", contract.id, _contract_state(contract))

    # --- hourly time -----------------------------------------------------------

    def add_term_change(self, contract_id: str, change: TermChange) -> None:
        self._conn.execute(
            contract_term_changes.insert().values(
                contract_id=contract_id, term=change.term, value=change.value, changed_at=change.changed_at
            )
        )

    def term_changes(self, contract_id: str) -> list[TermChange]:
        query = (
            select(contract_term_changes)
            .where(contract_term_changes.c.contract_id == contract_id)
            .order_by(contract_term_changes.c.changed_at, contract_term_changes.c.id)
        )
        return [TermChange(row.term, int(row.value), row.changed_at) for row in self._conn.execute(query)]

    def add_segment(self, contract_id: str, segment: Segment, at: datetime) -> Segment:
        new_id = self._conn.execute(
            time_segments.insert()
            .values(
                contract_id=contract_id,
                start_at=segment.start,
                end_at=segment.end,
                memo=segment.memo,
                manual=segment.manual,
                created_at=at,
            )
            .returning(time_segments.c.id)
        ).scalar_one()
        return replace(segment, id=str(new_id))

    def segment(self, contract_id: str, segment_id: str) -> Segment:
        # Ids are the table's integers; anything else names no segment.
        row = None
        if segment_id.isascii() and segment_id.isdigit() and int(segment_id) <= MAX_ID:
            row = self._conn.execute(
                select(time_segments).where(
                    time_segments.c.id == int(segment_id),
                    time_segments.c.contract_id == contract_id,
                    time_segments.c.deleted_at.is_(None),
                )
            ).first()
        if row is None:
            raise UnknownSegment(
                f"contract {contract_id} has no segment {segment_id}", contract_id=contract_id, segment_id=segment_id
            )
        return segment_of(row)

    def segments_of(
        self,
        contract_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[Segment]:
        query = select(time_segments).where(
            time_segments.c.contract_id == contract_id, time_segments.c.deleted_at.is_(None)
        )
        if start is not None:
            query = query.where(time_segments.c.start_at >= start)
        if end is not None:
            query = query.where(time_segments.c.start_at < end)
        if after_id is not None:
            query = query.where(time_segments.c.id > after_id)
        query = query.order_by(time_segments.c.id).limit(limit)
        return [segment_of(row) for row in self._conn.execute(query)]

    def delete_segment(self, segment_id: str, at: datetime) -> None:
        self._conn.execute(
            time_segments.update()
            .where(time_segments.c.id == int(segment_id), time_segments.c.deleted_at.is_(None))
            .values(deleted_at=at)
        )

    def add_closed_week(self, week: ClosedWeek) -> bool:
        inserted = self._conn.execute(
            _ADD_CLOSED_WEEK[self._uow.dialect],
            {
                "id": week.id,
                "contract_id": week.contract_id,
                "week": week.week,
                "limit_minutes": week.limit_minutes,
                "logged_minutes": week.logged_minutes,
                "billable_minutes": week.billable_minutes,
                "over_limit_minutes": week.over_limit_minutes,
                "amount": week.amount,
                "protected_amount": week.protected_amount,
                "carried_in": week.carried_in,
                "closed_at": week.closed_at,
                "milestone_id": week.milestone_id,
            },
        )
        return bool(inserted.rowcount)

    def closed_weeks(self, contract_id: str) -> dict[date, ClosedWeek]:
        rows = self._conn.execute(select(hourly_weeks).where(hourly_weeks.c.contract_id == contract_id))
        return {row.week: closed_week(row) for row in rows}

    def closed_week(self, contract_id: str, monday: date) -> ClosedWeek | None:
        row = self._conn.execute(
            select(hourly_weeks).where(hourly_weeks.c.contract_id == contract_id, hourly_weeks.c.week == monday)
        ).first()
        return None if row is None else closed_week(row)

    def add_week_dispute(self, dispute: WeekDispute) -> None:
        self._conn.execute(week_disputes.insert().values(**_dispute_values(dispute)))
        self._changed("week_dispute", dispute.id, dispute.state)

    def week_dispute(self, week_id: str) -> WeekDispute | None:
        row = self._conn.execute(select(week_disputes).where(week_disputes.c.id == week_id)).first()
        return None if row is None else week_dispute_of(row)

    def save_week_dispute(self, dispute: WeekDispute) -> None:
        self._conn.execute(
            week_disputes.update()
            .where(week_disputes.c.id == dispute.id)
            .values(
                state=dispute.state,
                closed_at=dispute.closed_at,
                released=dispute.released,
                refunded=dispute.refunded,
                cancelled=dispute.cancelled,
            )
        )
        self._changed("week_dispute", dispute.id, dispute.state)

    def mark_week_reviewed(self, week_id: str, at: datetime) -> None:
        self._conn.execute(
            hourly_weeks.update()
            .where(hourly_weeks.c.id == week_id, hourly_weeks.c.reviewed_at.is_(None))
            .values(reviewed_at=at)
        )

    def carry_weeks(self, week_ids: list[str], to: date) -> None:
        """Record that `to`'s charge took the amounts of the carried weeks `week_ids`."""
        if week_ids:
            self._conn.execute(
                hourly_weeks.update()
                .where(hourly_weeks.c.id.in_(week_ids), hourly_weeks.c.carried_to.is_(None))
                .values(carried_to=to)
            )

    def segment_weeks(self, contract_id: str) -> list[date]:
        starts = self._conn.execute(
            select(time_segments.c.start_at).where(
                time_segments.c.contract_id == contract_id, time_segments.c.deleted_at.is_(None)
            )
        ).scalars()
        return sorted({week_of(start) for start in starts}, reverse=True)

    # --- milestones ------------------------------------------------------------

    def add_milestone(self, milestone: Milestone) -> None:
        self._conn.execute(
            milestones.insert().values(
                id=milestone.id,
                contract_id=milestone.contract_id,
                title=milestone.title,
                amount=milestone.amount,
                due_date=milestone.due_date,
                state=milestone.state.value,
                review_deadline=milestone.review_deadline,
                refund_deadline=milestone.refund_deadline,
                failure_reason=milestone.failure_reason,
                created_at=milestone.created_at,
                updated_at=milestone.created_at,
                kind=milestone.kind.value,
            )
        )
        self._changed("milestone", milestone.id, milestone.state.value)

    @staticmethod
    def _milestone(row: Row[Any]) -> Milestone:
        return Milestone(
            id=row.id,
            contract_id=row.contract_id,
            title=row.title,
            amount=int(row.amount),
            due_date=row.due_date,
            state=MilestoneState(row.state),
            held=int(row.held),
            review_deadline=row.review_deadline,
            refund_deadline=row.refund_deadline,
            failure_reason=row.failure_reason,
            created_at=row.created_at,
            frozen_by=row.frozen_by,
            funding_reference=row.funding_reference,
            kind=SubjectKind(row.kind),
        )

    @staticmethod
    def _contract_of(row: Row[Any]) -> Contract:
        return Contract(
            id=row.contract_id,
            client_id=row.contract_client_id,
            freelancer_id=row.contract_freelancer_id,
            currency=row.contract_currency,
            title=row.contract_title,
            created_at=row.contract_created_at,
            ended_by=row.contract_ended_by,
            ended_at=row.contract_ended_at,
            type=row.contract_type,
            hourly_rate=None if row.contract_hourly_rate is None else int(row.contract_hourly_rate),
            weekly_limit_hours=None
            if row.contract_weekly_limit_hours is None
            else int(row.contract_weekly_limit_hours),
            manual_time_allowed=bool(row.contract_manual_time_allowed),
            paused_at=row.contract_paused_at,
            paused_by=row.contract_paused_by,
        )

    def currency_of(self, contract_id: str) -> str:
        return str(self._conn.execute(select(contracts.c.currency).where(contracts.c.id == contract_id)).scalar_one())

    def _milestone_row(self, milestone_id: str, lock: bool) -> Row[Any]:
        if lock and self._uow.dialect == "postgresql":
            # The lock is a statement of its own: at READ COMMITTED a statement that waited
            # for a row lock sees the row's new version but reads everything else (the
            # escrow balance, disputes) as of its start. Read after the lock is granted,
            # what is held reflects the transaction that held the lock before.
            locked = self._conn.execute(_LOCK_MILESTONE, {"milestone_id": milestone_id}).first()
            if locked is None:
                raise UnknownMilestone(f"no milestone {milestone_id}", milestone_id=milestone_id)
        row = self._conn.execute(_MILESTONE, {"milestone_id": milestone_id}).first()
        if row is None:
            raise UnknownMilestone(f"no milestone {milestone_id}", milestone_id=milestone_id)
        return row

    def milestone(self, milestone_id: str, *, lock: bool = False) -> Milestone:
        return self._milestone(self._milestone_row(milestone_id, lock))

    def milestone_and_contract(self, milestone_id: str, *, lock: bool = False) -> tuple[Milestone, Contract]:
        row = self._milestone_row(milestone_id, lock)
        return self._milestone(row), self._contract_of(row)

    def milestone_ids_of_client(self, client_id: str, currency: str) -> list[str]:
        query = (
            select(milestones.c.id)
            .join(contracts, contracts.c.id == milestones.c.contract_id)
            .where(contracts.c.client_id == client_id, contracts.c.currency == currency)
            .order_by(milestones.c.id)
        )
        return [str(i) for i in self._conn.execute(query).scalars()]

    def milestone_contract_id(self, milestone_id: str) -> str:
        return str(
            self._conn.execute(select(milestones.c.contract_id).where(milestones.c.id == milestone_id)).scalar_one()
        )

    def funding_reference(self, milestone_id: str) -> str | None:
        return self._conn.execute(
            select(milestones.c.funding_reference).where(milestones.c.id == milestone_id)
        ).scalar()

    def milestone_title(self, milestone_id: str) -> str:
        return str(self._conn.execute(select(milestones.c.title).where(milestones.c.id == milestone_id)).scalar_one())

    def funding(self, milestone_id: str) -> tuple[str | None, str | None]:
        """The milestone's current funding key and the PSP account its money sits at."""
        row = self._conn.execute(
            select(milestones.c.funding_key, milestones.c.psp_account).where(milestones.c.id == milestone_id)
        ).one()
        return row.funding_key, row.psp_account

    def milestones_of(self, contract_id: str, *, lock: bool = False) -> list[Milestone]:
        """The contract's fixed-price milestones (an hourly contract's weeks and bonuses
        are `milestones_of_kind`)."""
        return self.milestones_of_kind(contract_id, SubjectKind.MILESTONE, lock=lock)

    def milestones_of_kind(self, contract_id: str, kind: str, *, lock: bool = False) -> list[Milestone]:
        order = (milestones.c.created_at, milestones.c.id)
        mine = (milestones.c.contract_id == contract_id, milestones.c.kind == kind)
        if lock and self._uow.dialect == "postgresql":
            # Locked first, in a statement of their own (see `_milestone_row`).
            self._conn.execute(select(milestones.c.id).where(*mine).order_by(*order).with_for_update())
        query = _milestone_view().where(*mine).order_by(*order)
        return [self._milestone(row) for row in self._conn.execute(query)]

    def history(self, subject: str, subject_id: str) -> list[StateChange]:
        return state_log.history(self._conn, subject, subject_id)

    def _changed(self, subject: str, subject_id: str, state: str) -> None:
        """Append the state `subject_id` entered, with the actor (`ledger.db.state_log`)."""
        state_log.record(self._conn, subject, subject_id, state, self._uow.clock.now())

    def _milestone_update(self, milestone_id: str) -> Update:
        """The UPDATE of one milestone, stamped with the time of the change."""
        return milestones.update().where(milestones.c.id == milestone_id).values(updated_at=self._uow.clock.now())

    def save_milestone(self, milestone: Milestone) -> None:
        self._conn.execute(
            _SAVE_MILESTONE,
            {
                "milestone_id": milestone.id,
                "state": milestone.state.value,
                "review_deadline": milestone.review_deadline,
                "refund_deadline": milestone.refund_deadline,
                "failure_reason": milestone.failure_reason,
                "updated_at": self._uow.clock.now(),
            },
        )
        self._changed("milestone", milestone.id, milestone.state.value)

    def begin_funding(self, milestone_id: str, *, funding_key: str) -> None:
        self._conn.execute(
            self._milestone_update(milestone_id).values(
                state=MilestoneState.FUNDING.value, funding_key=funding_key, failure_reason=None
            )
        )
        self._changed("milestone", milestone_id, MilestoneState.FUNDING.value)

    def set_funding_key(self, milestone_id: str, funding_key: str) -> None:
        self._conn.execute(self._milestone_update(milestone_id).values(funding_key=funding_key))

    def set_funding_reference(self, milestone_id: str, reference: str) -> None:
        self._conn.execute(self._milestone_update(milestone_id).values(funding_reference=reference))

    def mark_funded(self, milestone_id: str, *, reference: str, psp_account: str) -> None:
        self._conn.execute(
            self._milestone_update(milestone_id).values(
                state=MilestoneState.FUNDED.value, funding_reference=reference, psp_account=psp_account
            )
        )
        self._changed("milestone", milestone_id, MilestoneState.FUNDED.value)

    # --- payments ----------------------------------------------------------------

    def add_payment(self, payment: Payment, *, pending_remaining: int, request_key: str | None) -> None:
        self._conn.execute(
            _ADD_PAYMENT,
            {
                "id": payment.id,
                "milestone_id": payment.milestone_id,
                "contract_id": payment.contract_id,
                "kind": payment.kind,
                "gross": payment.gross,
                "fee": payment.fee,
                "net": payment.net,
                "released_at": payment.released_at,
                "pending_until": payment.pending_until,
                "pending_remaining": pending_remaining,
                "refunded": payment.refunded,
                "entry_id": payment.entry_id,
                "request_key": request_key,
                "charge_reference": payment.charge_reference,
            },
        )

    def payment(self, payment_id: str, *, lock: bool = False) -> Payment:
        row = self._conn.execute(self._locked(select(payments).where(payments.c.id == payment_id), lock)).first()
        if row is None:
            raise UnknownPayment(f"no payment {payment_id}", payment_id=payment_id)
        return _payment(row)

    def pending_remaining(self, payment_id: str) -> int:
        return int(
            self._conn.execute(select(payments.c.pending_remaining).where(payments.c.id == payment_id)).scalar_one()
        )

    def payment_by_request_key(self, key: str) -> Payment | None:
        row = self._conn.execute(select(payments).where(payments.c.request_key == key)).first()
        return None if row is None else _payment(row)

    def payments_of(self, milestone_id: str) -> list[Payment]:
        return [_payment(row) for row in self._conn.execute(_PAYMENTS_OF, {"milestone_id": milestone_id})]

    @staticmethod
    def _payment_update(payment_id: str) -> Update:
        return payments.update().where(payments.c.id == payment_id)

    def set_pending_remaining(self, payment_id: str, amount: int) -> None:
        self._conn.execute(self._payment_update(payment_id).values(pending_remaining=amount))

    def set_refunded(self, payment_id: str, refunded: int) -> None:
        self._conn.execute(self._payment_update(payment_id).values(refunded=refunded))

    def record_payment_refund(self, payment_id: str, *, refunded: int, pending_remaining: int) -> None:
        self._conn.execute(
            self._payment_update(payment_id).values(refunded=refunded, pending_remaining=pending_remaining)
        )

    def set_pending_until(self, payment_id: str, at: datetime) -> None:
        self._conn.execute(self._payment_update(payment_id).values(pending_until=at))

    def add_refund(
        self, refund: PaymentRefund, *, source: RefundSource, created_at: datetime, request_key: str | None
    ) -> None:
        self._conn.execute(
            payment_refunds.insert().values(
                id=refund.id,
                payment_id=refund.payment_id,
                amount=refund.amount,
                fee_returned=refund.fee_returned,
                from_balance=source.value,
                entry_id=refund.entry_id,
                created_at=created_at,
                request_key=request_key,
            )
        )

    def refund_by_request_key(self, key: str) -> PaymentRefund | None:
        row = self._conn.execute(select(payment_refunds).where(payment_refunds.c.request_key == key)).first()
        if row is None:
            return None
        return PaymentRefund(row.id, row.payment_id, int(row.amount), int(row.fee_returned), int(row.entry_id))

    # --- payouts -----------------------------------------------------------------

    def add_payout(self, payout: Payout, *, request_key: str | None) -> None:
        self._conn.execute(
            payouts.insert().values(
                id=payout.id,
                freelancer_id=payout.freelancer_id,
                currency=payout.currency,
                amount=payout.amount,
                state=payout.state.value,
                gateway_reference=payout.gateway_reference,
                failure_reason=payout.failure_reason,
                created_at=payout.created_at,
                settled_at=payout.settled_at,
                request_key=request_key,
                amount_reversed=payout.amount_reversed,
            )
        )
        self._changed("payout", payout.id, payout.state.value)

    def payout(self, payout_id: str, *, lock: bool = False) -> Payout:
        row = self._conn.execute(self._locked(select(payouts).where(payouts.c.id == payout_id), lock)).first()
        if row is None:
            raise UnknownPayout(f"no payout {payout_id}", payout_id=payout_id)
        return _payout(row)

    def payout_by_request_key(self, key: str) -> Payout | None:
        row = self._conn.execute(select(payouts).where(payouts.c.request_key == key)).first()
        return None if row is None else _payout(row)

    def in_transit(self, freelancer_id: str, currency: str) -> int:
        total = self._conn.execute(
            select(func.coalesce(func.sum(payouts.c.amount), 0)).where(
                payouts.c.freelancer_id == freelancer_id,
                payouts.c.currency == currency,
                payouts.c.state == PayoutState.IN_TRANSIT.value,
            )
        ).scalar_one()
        return int(total)

    def unsent_payouts(self, since: datetime, limit: int) -> list[Payout]:
        """Payouts in transit, created since `since`, that the provider has not acknowledged."""
        query = (
            select(payouts)
            .where(
                payouts.c.state == PayoutState.IN_TRANSIT.value,
                payouts.c.gateway_reference.is_(None),
                payouts.c.created_at >= since,
            )
            .order_by(payouts.c.created_at, payouts.c.id)
            .limit(limit)
        )
        return [_payout(row) for row in self._conn.execute(query)]

    def settle_payout(
        self,
        payout_id: str,
        state: PayoutState,
        *,
        reference: str | None,
        failure_reason: str | None,
        settled_at: datetime,
    ) -> None:
        self._conn.execute(
            payouts.update()
            .where(payouts.c.id == payout_id)
            .values(
                state=state.value, gateway_reference=reference, failure_reason=failure_reason, settled_at=settled_at
            )
        )
        self._changed("payout", payout_id, state.value)

    def record_payout_reversal(
        self, payout_id: str, *, amount_reversed: int, state: PayoutState, failure_reason: str
    ) -> None:
        self._conn.execute(
            payouts.update()
            .where(payouts.c.id == payout_id)
            .values(amount_reversed=amount_reversed, state=state.value, failure_reason=failure_reason)
        )
        self._changed("payout", payout_id, state.value)

    # --- refund orders -----------------------------------------------------------------

    def add_refund_order(self, order: RefundOrder) -> None:
        self._conn.execute(
            refund_orders.insert().values(
                id=order.id,
                milestone_id=order.milestone_id,
                payment_id=order.payment_id,
                currency=order.currency,
                amount=order.amount,
                psp_account=order.psp_account,
                charge_reference=order.charge_reference,
                state=order.state.value,
                gateway_reference=order.gateway_reference,
                failure_reason=order.failure_reason,
                created_at=order.created_at,
                settled_at=order.settled_at,
            )
        )
        self._changed("refund_order", order.id, order.state.value)

    def refund_order(self, order_id: str, *, lock: bool = False) -> RefundOrder:
        row = self._conn.execute(
            self._locked(select(refund_orders).where(refund_orders.c.id == order_id), lock)
        ).first()
        if row is None:
            raise NotFound(f"no refund order {order_id}", refund_order=order_id)
        return _refund_order(row)

    def pending_refund_orders(self, limit: int) -> list[RefundOrder]:
        query = (
            select(refund_orders)
            .where(refund_orders.c.state == RefundOrderState.PENDING.value)
            .order_by(refund_orders.c.created_at, refund_orders.c.id)
            .limit(limit)
        )
        return [_refund_order(row) for row in self._conn.execute(query)]

    def failed_refund_orders(self, milestone_id: str) -> list[RefundOrder]:
        """Refunds the provider would not make: still owed to the client (in transit)."""
        query = (
            select(refund_orders)
            .where(refund_orders.c.milestone_id == milestone_id, refund_orders.c.state == RefundOrderState.FAILED.value)
            .order_by(refund_orders.c.created_at, refund_orders.c.id)
        )
        return [_refund_order(row) for row in self._conn.execute(self._locked(query, True))]

    def settle_refund_order(
        self,
        order_id: str,
        state: RefundOrderState,
        *,
        reference: str | None,
        failure_reason: str | None,
        settled_at: datetime,
    ) -> None:
        self._conn.execute(
            refund_orders.update()
            .where(refund_orders.c.id == order_id)
            .values(
                state=state.value, gateway_reference=reference, failure_reason=failure_reason, settled_at=settled_at
            )
        )
        self._changed("refund_order", order_id, state.value)

    def charge_back_refund_order(self, order_id: str, *, settled_at: datetime) -> None:
        self._conn.execute(
            refund_orders.update()
            .where(refund_orders.c.id == order_id)
            .values(state=RefundOrderState.CHARGED_BACK.value, settled_at=settled_at)
        )
        self._changed("refund_order", order_id, RefundOrderState.CHARGED_BACK.value)

    # --- disputes (chargebacks) ------------------------------------------------------

    def add_dispute(self, dispute: Dispute) -> None:
        self._conn.execute(
            disputes.insert().values(
                id=dispute.id,
                milestone_id=dispute.milestone_id,
                charge_reference=dispute.charge_reference,
                currency=dispute.currency,
                amount=dispute.amount,
                status=dispute.status,
                withdrawn=dispute.withdrawn,
                reinstated=dispute.reinstated,
                outcome=None if dispute.outcome is None else dispute.outcome.value,
                recovered_from_escrow=dispute.recovered_from_escrow,
                recovered_from_freelancer=dispute.recovered_from_freelancer,
                recovered_from_refunds=dispute.recovered_from_refunds,
                fee_returned=dispute.fee_returned,
                unrecovered=dispute.unrecovered,
                opened_at=dispute.opened_at,
                closed_at=dispute.closed_at,
            )
        )
        self._changed("dispute", dispute.id, dispute.status)

    def dispute(self, dispute_id: str, *, lock: bool = False) -> Dispute | None:
        row = self._conn.execute(self._locked(select(disputes).where(disputes.c.id == dispute_id), lock)).first()
        return None if row is None else _dispute(row)

    def disputes_of(self, milestone_id: str) -> list[Dispute]:
        query = select(disputes).where(disputes.c.milestone_id == milestone_id).order_by(disputes.c.opened_at)
        return [_dispute(row) for row in self._conn.execute(query)]

    def open_dispute_of(self, milestone_id: str) -> str | None:
        """The open chargeback that freezes the milestone, if any."""
        return self._conn.execute(
            select(disputes.c.id)
            .where(disputes.c.milestone_id == milestone_id, disputes.c.outcome.is_(None))
            .order_by(disputes.c.opened_at)
            .limit(1)
        ).scalar()

    def record_dispute_moves(self, dispute_id: str, *, status: str, withdrawn: int, reinstated: int) -> None:
        self._conn.execute(
            disputes.update()
            .where(disputes.c.id == dispute_id)
            .values(status=status, withdrawn=withdrawn, reinstated=reinstated)
        )
        self._changed("dispute", dispute_id, status)

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
        self._conn.execute(
            disputes.update()
            .where(disputes.c.id == dispute_id)
            .values(
                outcome=outcome.value,
                recovered_from_refunds=recovered_from_refunds,
                recovered_from_escrow=recovered_from_escrow,
                recovered_from_freelancer=recovered_from_freelancer,
                fee_returned=fee_returned,
                unrecovered=unrecovered,
                closed_at=closed_at,
            )
        )
        self._changed("dispute", dispute_id, outcome.value)

    # --- provider events -----------------------------------------------------------

    def record_event(self, event_id: str, event_type: str, object_id: str | None) -> bool:
        """Store an event by id; False if it was already processed (a duplicate delivery)."""
        insert = postgresql.insert if self._uow.dialect == "postgresql" else sqlite.insert
        self._conn.execute(
            insert(provider_events)
            .values(id=event_id, type=event_type, object_id=object_id, received_at=self._uow.clock.now())
            .on_conflict_do_nothing()
        )
        query = self._locked(select(provider_events.c.processed_at).where(provider_events.c.id == event_id), True)
        return self._conn.execute(query).scalar() is None

    def finish_event(self, event_id: str, outcome: str) -> None:
        self._conn.execute(
            provider_events.update()
            .where(provider_events.c.id == event_id)
            .values(processed_at=self._uow.clock.now(), outcome=outcome[:500])
        )

    # --- timers ------------------------------------------------------------------

    def schedule(self, kind: str, subject_id: str, due_at: datetime) -> None:
        self._conn.execute(_SCHEDULE[self._uow.dialect], {"kind": kind, "subject_id": subject_id, "due_at": due_at})

    def due_timers(self, now: datetime, limit: int) -> list[tuple[int, str, str, datetime]]:
        query = (
            select(timers.c.id, timers.c.kind, timers.c.subject_id, timers.c.due_at)
            .where(timers.c.done_at.is_(None), timers.c.due_at <= now)
            .order_by(timers.c.due_at, timers.c.id)
            .limit(limit)
        )
        return [(int(i), k, s, d) for i, k, s, d in self._conn.execute(query)]

    def claim_timer(self, timer_id: int) -> bool:
        """Lock a timer; False if another tick has already fired it."""
        query = self._locked(select(timers.c.done_at).where(timers.c.id == timer_id), True)
        row = self._conn.execute(query).first()
        return row is not None and row.done_at is None

    def finish_timer(self, timer_id: int, at: datetime) -> None:
        self._conn.execute(timers.update().where(timers.c.id == timer_id).values(done_at=at))
