"""Escrow's audit reads: each milestone's escrow flows, balances by type, disputes' legs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence

from sqlalchemy import Connection, func, select, text

from ledger.accounts import Side
from ledger.db.escrow_store import closed_week, segment_of, week_dispute_of
from ledger.db.schema import (
    accounts,
    balances,
    contract_term_changes,
    disputes,
    entries,
    hourly_weeks,
    milestones,
    postings,
    time_segments,
    week_disputes,
)
from ledger.db.streaming import stream
from ledger.escrow.chart import ESCROW_ACCOUNT_PREFIX
from ledger.escrow.hourly_calendar import week_of
from ledger.escrow.model import TermChange
from ledger.escrow.timesheet import Segment
from ledger.ports.queries import (
    ClientFlows,
    CurrencyBalances,
    DisputeFigures,
    DisputeLeg,
    KindLeg,
    MilestoneFlows,
    WeekAudit,
)

#: Per milestone: its escrow account's balance and what each family of entry kinds moved on it.
FLOWS = """
WITH escrow AS (
    SELECT m.id AS milestone_id, m.state, c.client_id, c.currency, a.id AS account_id
      FROM milestones m
      JOIN contracts c ON c.id = m.contract_id
      JOIN accounts a ON a.code = 'liabilities:escrow:' || m.id AND a.currency = c.currency
),
flows AS (
    SELECT p.account_id,
           sum(CASE WHEN e.kind IN ('escrow.fund', 'escrow.fund_bonus', 'escrow.fund.reversal', 'escrow.fund_bonus.reversal')
                    THEN CASE WHEN p.side = 'credit' THEN p.amount ELSE -p.amount END ELSE 0 END) AS funded,
           sum(CASE WHEN e.kind IN ('escrow.advance', 'escrow.recovery')
                    THEN CASE WHEN p.side = 'credit' THEN p.amount ELSE -p.amount END ELSE 0 END) AS advanced,
           sum(CASE WHEN e.kind IN ('escrow.release', 'escrow.release.reversal')
                    THEN CASE WHEN p.side = 'debit' THEN p.amount ELSE -p.amount END ELSE 0 END) AS released,
           sum(CASE WHEN e.kind IN ('escrow.refund', 'escrow.refund.reversal', 'escrow.chargeback')
                    THEN CASE WHEN p.side = 'debit' THEN p.amount ELSE -p.amount END ELSE 0 END) AS refunded,
           sum(CASE WHEN e.kind NOT IN ('escrow.fund', 'escrow.fund_bonus', 'escrow.release', 'escrow.refund',
                                        'escrow.chargeback', 'escrow.advance', 'escrow.recovery',
                                        'escrow.fund.reversal', 'escrow.fund_bonus.reversal',
                                        'escrow.release.reversal', 'escrow.refund.reversal')
                    THEN 1 ELSE 0 END) AS foreign_postings
      FROM postings p JOIN entries e ON e.id = p.entry_id
     WHERE p.account_id IN (SELECT account_id FROM escrow)
     GROUP BY p.account_id
),
held AS (
    SELECT account_id, sum(balance) AS held FROM balances
     WHERE account_id IN (SELECT account_id FROM escrow) GROUP BY account_id
),
paid AS (
    SELECT milestone_id, sum(gross) AS gross FROM payments GROUP BY milestone_id
)
SELECT x.milestone_id, x.state, x.client_id, x.currency,
       coalesce(h.held, 0) AS held, coalesce(f.funded, 0) AS funded, coalesce(f.released, 0) AS released,
       coalesce(f.refunded, 0) AS refunded, coalesce(f.foreign_postings, 0) AS foreign_postings,
       coalesce(f.advanced, 0) AS advanced,
       coalesce(y.gross, 0) AS paid
  FROM escrow x
  LEFT JOIN flows f ON f.account_id = x.account_id
  LEFT JOIN held h ON h.account_id = x.account_id
  LEFT JOIN paid y ON y.milestone_id = x.milestone_id
"""

CLIENT_FLOWS = (
    "SELECT client_id, currency, sum(funded) AS collected, sum(held) AS held, sum(paid) AS released,"
    " sum(refunded) AS refunded, sum(advanced) AS advanced FROM ("
    + FLOWS
    + ") AS m GROUP BY client_id, currency ORDER BY client_id, currency"
)

BALANCES_BY_CURRENCY = """
SELECT a.currency,
       sum(CASE WHEN a.normal_side = 'debit' THEN b.balance ELSE 0 END) AS debit_side,
       sum(CASE WHEN a.normal_side = 'credit' THEN b.balance ELSE 0 END) AS credit_side,
       sum(CASE WHEN a.type = 'asset' THEN b.balance ELSE 0 END) AS assets,
       sum(CASE WHEN a.type = 'liability' THEN b.balance ELSE 0 END) AS liabilities,
       sum(CASE WHEN a.type = 'equity' THEN b.balance ELSE 0 END) AS equity,
       sum(CASE WHEN a.type = 'revenue' THEN b.balance ELSE 0 END) AS revenue,
       sum(CASE WHEN a.type = 'expense' THEN b.balance ELSE 0 END) AS expenses
  FROM balances b JOIN accounts a ON a.id = b.account_id
 GROUP BY a.currency ORDER BY a.currency
"""


class SqlEscrowAuditQueries:
    """`EscrowAuditQueries` over one connection."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def milestone_flows(self) -> Iterator[MilestoneFlows]:
        for row in stream(self._connection, text(FLOWS + " ORDER BY x.milestone_id")):
            yield MilestoneFlows(
                milestone_id=row.milestone_id,
                state=row.state,
                client_id=row.client_id,
                currency=row.currency,
                held=int(row.held),
                funded=int(row.funded),
                released=int(row.released),
                refunded=int(row.refunded),
                foreign_postings=int(row.foreign_postings),
                paid=int(row.paid),
                advanced=int(row.advanced),
            )

    def hourly_weeks(self) -> Iterator[WeekAudit]:
        # Hourly weeks are few beside the journal: read them whole, with the segments and
        # terms of their contracts, in three statements.
        weeks = list(
            self._connection.execute(
                select(
                    hourly_weeks,
                    milestones.c.kind.label("subject_kind"),
                    milestones.c.amount.label("subject_amount"),
                    milestones.c.state.label("subject_state"),
                )
                .select_from(hourly_weeks.outerjoin(milestones, milestones.c.id == hourly_weeks.c.milestone_id))
                .order_by(hourly_weeks.c.contract_id, hourly_weeks.c.week)
            )
        )
        if not weeks:
            return
        contract_ids = sorted({row.contract_id for row in weeks})
        segments: dict[tuple[str, object], list[Segment]] = defaultdict(list)
        for row in self._connection.execute(
            select(time_segments)
            .where(time_segments.c.contract_id.in_(contract_ids), time_segments.c.deleted_at.is_(None))
            .order_by(time_segments.c.start_at, time_segments.c.id)
        ):
            segments[(row.contract_id, week_of(row.start_at))].append(segment_of(row))
        terms: dict[str, list[TermChange]] = defaultdict(list)
        for row in self._connection.execute(
            select(contract_term_changes)
            .where(contract_term_changes.c.contract_id.in_(contract_ids))
            .order_by(contract_term_changes.c.changed_at, contract_term_changes.c.id)
        ):
            terms[row.contract_id].append(TermChange(row.term, int(row.value), row.changed_at))
        subject_ids = [row.milestone_id for row in weeks if row.milestone_id is not None]
        found = self._connection.execute(select(week_disputes).where(week_disputes.c.id.in_(subject_ids)))
        disputed = {row.id: week_dispute_of(row) for row in found}
        codes = {ESCROW_ACCOUNT_PREFIX + subject_id: subject_id for subject_id in subject_ids}
        held: dict[str, int] = defaultdict(int)
        balances_held = (
            select(accounts.c.code, func.sum(balances.c.balance))
            .select_from(balances.join(accounts, accounts.c.id == balances.c.account_id))
            .where(accounts.c.code.in_(list(codes)))
            .group_by(accounts.c.code)
        )
        for code, balance in self._connection.execute(balances_held):
            held[codes[code]] = int(balance)
        for row in weeks:
            subject_id = row.milestone_id
            yield WeekAudit(
                week=closed_week(row),
                subject_kind=row.subject_kind,
                subject_amount=None if row.subject_amount is None else int(row.subject_amount),
                segments=tuple(segments[(row.contract_id, row.week)]),
                term_changes=tuple(terms[row.contract_id]),
                held=0 if subject_id is None else held[subject_id],
                dispute=None if subject_id is None else disputed.get(subject_id),
                subject_state=row.subject_state,
            )

    def unrecorded_week_subjects(self) -> Iterator[str]:
        query = (
            select(milestones.c.id)
            .select_from(milestones.outerjoin(hourly_weeks, hourly_weeks.c.milestone_id == milestones.c.id))
            .where(milestones.c.kind == "week", hourly_weeks.c.id.is_(None))
            .order_by(milestones.c.id)
        )
        yield from (str(subject_id) for subject_id in self._connection.execute(query).scalars())

    def client_flows(self) -> Iterator[ClientFlows]:
        for row in stream(self._connection, text(CLIENT_FLOWS)):
            yield ClientFlows(
                row.client_id,
                row.currency,
                int(row.collected),
                int(row.held),
                int(row.released),
                int(row.refunded),
                int(row.advanced),
            )

    def balances_by_currency(self) -> Iterator[CurrencyBalances]:
        for row in stream(self._connection, text(BALANCES_BY_CURRENCY)):
            yield CurrencyBalances(
                currency=row.currency,
                debit_side=int(row.debit_side),
                credit_side=int(row.credit_side),
                assets=int(row.assets),
                liabilities=int(row.liabilities),
                equity=int(row.equity),
                revenue=int(row.revenue),
                expenses=int(row.expenses),
            )

    def kind_legs(self, kinds: Sequence[str]) -> Iterator[KindLeg]:
        legs = (
            select(
                entries.c.kind,
                entries.c.refs,
                entries.c.effective_at,
                accounts.c.code,
                accounts.c.currency,
                postings.c.side,
                postings.c.amount,
            )
            .select_from(
                postings.join(entries, entries.c.id == postings.c.entry_id).join(
                    accounts, accounts.c.id == postings.c.account_id
                )
            )
            .where(entries.c.kind.in_(list(kinds)))
            .order_by(entries.c.id, postings.c.id)
        )
        for kind, refs, effective_at, code, currency, side, amount in stream(self._connection, legs):
            yield KindLeg(kind, dict(refs), effective_at, code, currency, Side(side), int(amount))

    def dispute_legs(self, kinds: Sequence[str]) -> Iterator[DisputeLeg]:
        legs = (
            select(entries.c.kind, entries.c.refs, accounts.c.code, postings.c.side, postings.c.amount)
            .select_from(
                postings.join(entries, entries.c.id == postings.c.entry_id).join(
                    accounts, accounts.c.id == postings.c.account_id
                )
            )
            .where(entries.c.kind.in_(list(kinds)))
        )
        for kind, refs, code, side, amount in stream(self._connection, legs):
            dispute = dict(refs).get("dispute")
            yield DisputeLeg(kind, None if dispute is None else str(dispute), code, Side(side), int(amount))

    def disputes(self) -> Iterator[DisputeFigures]:
        for row in stream(self._connection, select(disputes).order_by(disputes.c.id)):
            yield DisputeFigures(
                id=row.id,
                currency=row.currency,
                outcome=row.outcome,
                withdrawn=int(row.withdrawn),
                reinstated=int(row.reinstated),
                recovered_from_refunds=int(row.recovered_from_refunds),
                recovered_from_escrow=int(row.recovered_from_escrow),
                recovered_from_freelancer=int(row.recovered_from_freelancer),
                fee_returned=int(row.fee_returned),
                unrecovered=int(row.unrecovered),
            )

    def balances_of(self, code: str) -> Mapping[str, int]:
        held = (
            select(accounts.c.currency, balances.c.balance)
            .select_from(balances.join(accounts, accounts.c.id == balances.c.account_id))
            .where(accounts.c.code == code)
        )
        found: dict[str, int] = defaultdict(int)
        for currency, amount in self._connection.execute(held):
            found[currency] += int(amount)
        return dict(found)
