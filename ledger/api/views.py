"""Read models: the response bodies (`ledger.api.schemas`) built from domain objects,
and the reads of the escrow records that GET routes and POST answers show."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import msgspec

from ledger.accounts import Account
from ledger.actors import StateChange
from ledger.api.schemas import (
    AccountOut,
    Amount,
    BalanceOut,
    ContractOut,
    DayOut,
    DisputeOut,
    DocumentLineOut,
    DocumentOut,
    DocumentPartyOut,
    EntryOut,
    FeeLineOut,
    FeeQuoteOut,
    FeeRevenueOut,
    FundingOut,
    HourlyBonusOut,
    MilestoneOut,
    PartyOut,
    PaymentOrderOut,
    PaymentOut,
    PayoutOut,
    PostingOut,
    ReconciliationOut,
    RefundOut,
    SegmentOut,
    StateChangeOut,
    StateHistoryOut,
    StatementLineOut,
    StatementOut,
    TrialBalanceOut,
    TrialBalanceRowOut,
    WeekDisputeOut,
    WeekOut,
)
from ledger.clock import format_period
from ledger.escrow.hourly import WeekView
from ledger.escrow.model import (
    Contract,
    Dispute,
    Milestone,
    MilestoneStanding,
    Payment,
    PaymentRefund,
    Payout,
    WeekDispute,
)
from ledger.escrow.orders import PaymentOrder
from ledger.escrow.reconciliation import ReconciliationLine
from ledger.escrow.services.funding import FundingOutcome
from ledger.escrow.services.hourly import HourlyBonus
from ledger.escrow.services.payouts import FreelancerBalance
from ledger.escrow.timesheet import MINUTES_PER_HOUR, Segment
from ledger.fees.rule import FeeBreakdown
from ledger.invoices.documents import Document, Party, PartyDetails, StatementHeading, StatementLine
from ledger.invoices.reports import FeeRevenueRow, TrialBalance
from ledger.invoices.statements import CHUNK_CHARS
from ledger.journal import Entry
from ledger.ports.unit_of_work import UnitOfWork
from ledger.service import Ledger

# --- reads -------------------------------------------------------------------------------------


def read_milestone(book: Ledger, milestone_id: str) -> MilestoneOut:
    """A milestone with its payments, in its contract's currency."""

    def read(uow: UnitOfWork) -> MilestoneOut:
        milestone, contract = uow.escrow.milestone_and_contract(milestone_id)
        return milestone_out(milestone, contract.currency, uow.escrow.payments_of(milestone_id))

    return book.transaction(read, read_only=True)


def read_contract(book: Ledger, contract_id: str) -> ContractOut:
    """A contract with its milestones and their payments."""

    def read(uow: UnitOfWork) -> ContractOut:
        contract = uow.escrow.contract(contract_id)
        milestones = [
            milestone_out(m, contract.currency, uow.escrow.payments_of(m.id))
            for m in uow.escrow.milestones_of(contract_id)
        ]
        return contract_out(contract, milestones)

    return book.transaction(read, read_only=True)


def read_payment(book: Ledger, payment_id: str) -> PaymentOut:
    """A released payment, in its contract's currency."""

    def read(uow: UnitOfWork) -> PaymentOut:
        payment = uow.escrow.payment(payment_id)
        return payment_out(payment, uow.escrow.currency_of(payment.contract_id))

    return book.transaction(read, read_only=True)


def milestone_currency(book: Ledger, milestone_id: str) -> str:
    """The currency of the milestone's contract."""
    return book.transaction(
        lambda uow: uow.escrow.currency_of(uow.escrow.milestone(milestone_id).contract_id), read_only=True
    )


def payment_currency(book: Ledger, payment_id: str) -> str:
    """The currency of the payment's contract."""
    return book.transaction(
        lambda uow: uow.escrow.currency_of(uow.escrow.payment(payment_id).contract_id), read_only=True
    )


# --- escrow ------------------------------------------------------------------------------------


def payment_out(payment: Payment, currency: str) -> PaymentOut:
    return PaymentOut(
        id=payment.id,
        milestone_id=payment.milestone_id,
        contract_id=payment.contract_id,
        kind=payment.kind,
        gross=Amount.of(payment.gross, currency),
        fee=Amount.of(payment.fee, currency),
        net=Amount.of(payment.net, currency),
        released_at=payment.released_at,
        pending_until=payment.pending_until,
        refunded=Amount.of(payment.refunded, currency),
        entry_id=payment.entry_id,
    )


def milestone_out(milestone: Milestone, currency: str, payments: list[Payment]) -> MilestoneOut:
    return MilestoneOut(
        id=milestone.id,
        contract_id=milestone.contract_id,
        title=milestone.title,
        amount=Amount.of(milestone.amount, currency),
        held=Amount.of(milestone.held, currency),
        state=milestone.state.value,
        due_date=milestone.due_date,
        review_deadline=milestone.review_deadline,
        refund_deadline=milestone.refund_deadline,
        failure_reason=milestone.failure_reason,
        created_at=milestone.created_at,
        payments=[payment_out(p, currency) for p in payments],
        frozen_by=milestone.frozen_by,
    )


def standing_out(standing: MilestoneStanding) -> MilestoneOut:
    return milestone_out(standing.milestone, standing.currency, list(standing.payments))


def dispute_out(dispute: Dispute) -> DisputeOut:
    def amount(minor: int) -> Amount:
        return Amount.of(minor, dispute.currency)

    return DisputeOut(
        id=dispute.id,
        milestone_id=dispute.milestone_id,
        charge_reference=dispute.charge_reference,
        amount=amount(dispute.amount),
        status=dispute.status,
        withdrawn=amount(dispute.withdrawn),
        reinstated=amount(dispute.reinstated),
        outcome=None if dispute.outcome is None else dispute.outcome.value,
        recovered_from_refunds=amount(dispute.recovered_from_refunds),
        recovered_from_escrow=amount(dispute.recovered_from_escrow),
        recovered_from_freelancer=amount(dispute.recovered_from_freelancer),
        fee_returned=amount(dispute.fee_returned),
        unrecovered=amount(dispute.unrecovered),
        opened_at=dispute.opened_at,
        closed_at=dispute.closed_at,
    )


def contract_out(contract: Contract, milestones: list[MilestoneOut]) -> ContractOut:
    return ContractOut(
        id=contract.id,
        client_id=contract.client_id,
        freelancer_id=contract.freelancer_id,
        currency=contract.currency,
        title=contract.title,
        created_at=contract.created_at,
        ended_by=contract.ended_by,
        ended_at=contract.ended_at,
        milestones=milestones,
        type=contract.type,
        hourly_rate=None if contract.hourly_rate is None else Amount.of(contract.hourly_rate, contract.currency),
        weekly_limit_hours=contract.weekly_limit_hours,
        manual_time_allowed=contract.manual_time_allowed,
        paused_at=contract.paused_at,
        paused_by=contract.paused_by,
    )


def segment_out(contract_id: str, segment: Segment) -> SegmentOut:
    return SegmentOut(
        id=str(segment.id),
        contract_id=contract_id,
        week=segment.week,
        start=segment.start,
        end=segment.end,
        minutes=segment.minutes,
        memo=segment.memo,
        manual=segment.manual,
    )


def week_out(view: WeekView) -> WeekOut:
    bill, currency = view.bill, view.currency
    return WeekOut(
        week=view.week,
        state=view.state,
        limit_hours=bill.limit_minutes // MINUTES_PER_HOUR,
        logged_minutes=bill.logged_minutes,
        billable_minutes=bill.billable_minutes,
        over_limit_minutes=bill.over_limit_minutes,
        amount=Amount.of(bill.amount, currency),
        closes_at=view.closes_at,
        review_ends_at=view.review_ends_at,
        available_at=view.available_at,
        days=[
            DayOut(d.day, d.logged_minutes, d.billable_minutes, d.over_limit_minutes, Amount.of(d.amount, currency))
            for d in bill.days
        ],
        payment_id=view.payment_id,
        charge_order_id=view.charge_order_id,
        failure_reason=view.failure_reason,
        charge_attempts=view.charge_attempts,
        dispute=None if view.dispute is None else week_dispute_out(view.dispute, currency),
        carried_in=Amount.of(view.carried_in, currency) if view.carried_in else None,
        carried_to=view.carried_to,
    )


def week_dispute_out(dispute: WeekDispute, currency: str) -> WeekDisputeOut:
    return WeekDisputeOut(
        minutes=dispute.minutes,
        amount=Amount.of(dispute.amount, currency),
        reason=dispute.reason,
        state=dispute.state,
        opened_at=dispute.opened_at,
        answer_by=dispute.answer_by,
        closed_at=dispute.closed_at,
        released=Amount.of(dispute.released, currency),
        refunded=Amount.of(dispute.refunded, currency),
        cancelled=Amount.of(dispute.cancelled, currency) if dispute.cancelled else None,
    )


def hourly_bonus_out(bonus: HourlyBonus) -> HourlyBonusOut:
    subject = bonus.subject
    return HourlyBonusOut(
        bonus=subject.id,
        contract_id=subject.contract_id,
        amount=Amount.of(subject.amount, bonus.currency),
        state=bonus.state,
        order_id=bonus.order_id,
        payment_id=bonus.payment_id,
        failure_reason=subject.failure_reason if bonus.state == "failed" else None,
    )


def funding_out(outcome: FundingOutcome, milestone: MilestoneOut) -> FundingOut:
    return FundingOut(outcome.status, outcome.client_secret, outcome.failure_reason, milestone)


def refund_out(refund: PaymentRefund, currency: str) -> RefundOut:
    return RefundOut(
        refund.id,
        refund.payment_id,
        Amount.of(refund.amount, currency),
        Amount.of(refund.fee_returned, currency),
        refund.entry_id,
        refund.status,
    )


def balance_out(freelancer_id: str, balance: FreelancerBalance) -> BalanceOut:
    c = balance.currency
    return BalanceOut(
        freelancer_id,
        c,
        Amount.of(balance.pending, c),
        Amount.of(balance.available, c),
        Amount.of(balance.in_transit, c),
    )


def payout_out(payout: Payout) -> PayoutOut:
    return PayoutOut(
        id=payout.id,
        freelancer_id=payout.freelancer_id,
        amount=Amount.of(payout.amount, payout.currency),
        state=payout.state.value,
        gateway_reference=payout.gateway_reference,
        failure_reason=payout.failure_reason,
        created_at=payout.created_at,
        settled_at=payout.settled_at,
        amount_reversed=Amount.of(payout.amount_reversed, payout.currency),
    )


def payment_order_out(order: PaymentOrder, now: datetime, history: list[StateChange] | None = None) -> PaymentOrderOut:
    return PaymentOrderOut(
        id=order.id,
        kind=order.kind.value,
        state=order.state.value,
        amount=Amount.of(order.amount, order.currency),
        provider_reference=order.provider_reference,
        failure_reason=order.failure_reason,
        attempts=order.attempts,
        age_seconds=int(order.age(now).total_seconds()),
        stuck=order.is_stuck(now),
        created_at=order.created_at,
        updated_at=order.updated_at,
        actor=order.actor,
        resolved_by=order.resolved_by,
        milestone_id=order.milestone_id,
        payout_id=order.payout_id,
        history=None if history is None else [StateChangeOut(c.state, c.actor, c.at) for c in history],
    )


def entry_out(entry: Entry) -> EntryOut:
    return EntryOut(
        id=entry.id,
        idempotency_key=entry.idempotency_key,
        kind=entry.kind,
        effective_at=entry.effective_at,
        recorded_at=entry.recorded_at,
        reverses_entry_id=entry.reverses_entry_id,
        refs=dict(entry.refs),
        postings=[PostingOut(p.account, p.side.value, Amount.of(p.amount, p.currency)) for p in entry.postings],
        actor=entry.actor,
    )


def fee_quote_out(breakdown: FeeBreakdown) -> FeeQuoteOut:
    c = breakdown.currency
    return FeeQuoteOut(
        schedule=breakdown.schedule,
        amount=Amount.of(breakdown.amount, c),
        fee=Amount.of(breakdown.fee, c),
        net=Amount.of(breakdown.net, c),
        blended_rate=str(breakdown.blended_rate),
        lifetime_before=Amount.of(breakdown.lifetime_before, c),
        lifetime_after=Amount.of(breakdown.lifetime_after, c),
        lines=[
            FeeLineOut(Amount.of(line.amount, c), str(line.rate), Amount.of(line.fee, c)) for line in breakdown.lines
        ],
    )


# --- parties and finance ---------------------------------------------------------------------


def party_out(party: Party) -> PartyOut:
    return PartyOut(
        party_id=party.party_id,
        display_name=party.display_name,
        legal_name=party.legal_name,
        address=party.address,
        country=party.country,
        tax_id=party.tax_id,
        provider_id=party.provider_id,
        updated_at=party.updated_at,
        payment_method_verified_at=party.payment_method_verified_at,
    )


def account_out(account: Account) -> AccountOut:
    floor = None if account.floor is None else Amount.of(account.floor, account.currency)
    return AccountOut(account.code, account.currency, account.type.value, account.normal_side.value, floor)


def statement_line_out(line: StatementLine) -> StatementLineOut:
    c = line.currency
    return StatementLineOut(
        posted_at=line.posted_at.isoformat(),
        entry_id=line.entry_id,
        account=line.account,
        reference=line.reference,
        kind=line.kind,
        debit=Amount.of(line.debit, c),
        credit=Amount.of(line.credit, c),
        running_balance=Amount.of(line.running_balance, c),
        actor=line.actor,
    )


def statement_json_chunks(code: str, heading: StatementHeading, lines: Iterator[StatementLine]) -> Iterator[bytes]:
    """`StatementOut` as JSON, byte for byte, written as the lines are read: the heading
    (both balances are known before the lines), then the lines in chunks of about
    `CHUNK_CHARS` bytes, then the closing brackets."""
    c = heading.currency
    head = msgspec.json.encode(
        StatementOut(
            account=code,
            currency=c,
            period_from=heading.period_from.isoformat(),
            period_to=heading.period_to.isoformat(),
            period=format_period(heading.period_from, heading.period_to),
            opening_balance=Amount.of(heading.opening_balance, c),
            closing_balance=Amount.of(heading.closing_balance, c),
            lines=[],
        )
    )
    # `lines` is the last field, so the document is the heading up to its "[" ...
    tail = b"]}"
    if not head.endswith(b"[" + tail):  # pragma: no cover - a field added after `lines`
        raise AssertionError("StatementOut must end with its lines")
    chunk = bytearray(head[: -len(tail)])
    separator = b""
    encoder = msgspec.json.Encoder()
    for line in lines:
        chunk += separator
        encoder.encode_into(statement_line_out(line), chunk, -1)
        separator = b","
        if len(chunk) >= CHUNK_CHARS:
            yield bytes(chunk)
            chunk.clear()
    # ... and the lines, then "]}".
    chunk += tail
    yield bytes(chunk)


def trial_balance_out(report: TrialBalance) -> TrialBalanceOut:
    rows = [
        TrialBalanceRowOut(r.account, r.type, Amount.of(r.debit, r.currency), Amount.of(r.credit, r.currency))
        for r in report.rows
    ]
    totals = [
        TrialBalanceRowOut("TOTAL", "", Amount.of(d, c), Amount.of(k, c)) for c, (d, k) in sorted(report.totals.items())
    ]
    return TrialBalanceOut(report.as_of, rows, totals, report.balanced)


def fee_revenue_out(row: FeeRevenueRow) -> FeeRevenueOut:
    c = row.currency
    return FeeRevenueOut(
        row.client_id,
        Amount.of(row.billings, c),
        Amount.of(row.fees, c),
        Amount.of(row.refunded, c),
        Amount.of(row.fee_refunds, c),
        Amount.of(row.net, c),
    )


def reconciliation_out(line: ReconciliationLine) -> ReconciliationOut:
    return ReconciliationOut(
        line.status,
        line.kind,
        line.reference,
        None if line.provider_amount is None else Amount.of(line.provider_amount, line.currency),
        None if line.ledger_amount is None else Amount.of(line.ledger_amount, line.currency),
        line.entry_id,
    )


def document_party_out(party: PartyDetails) -> DocumentPartyOut:
    return DocumentPartyOut(
        party.party_id, party.display_name, party.legal_name, party.address, party.country, party.tax_id
    )


def document_out(document: Document) -> DocumentOut:
    c = document.currency
    return DocumentOut(
        id=document.id,
        kind=document.kind.value,
        number=document.number,
        series_year=document.series_year,
        sequence=document.sequence,
        issued_at=document.issued_at.isoformat(),
        issuer=document_party_out(document.issuer),
        recipient=document_party_out(document.recipient),
        currency=c,
        lines=[
            DocumentLineOut(
                description=line.description,
                amount=Amount.of(line.amount, c),
                billed_in_tier=None if line.quantity_amount is None else Amount.of(line.quantity_amount, c),
                rate=None if line.rate is None else str(line.rate),
            )
            for line in document.lines
        ],
        total=Amount.of(document.total, c),
        blended_rate=None if document.blended_rate is None else str(document.blended_rate),
        references=dict(document.references),
        corrects=document.corrects,
        entry_ids=list(document.entry_ids),
        notes=list(document.notes),
    )


def history_out(subject_id: str, changes: list[StateChange]) -> StateHistoryOut:
    return StateHistoryOut(subject_id, [StateChangeOut(c.state, c.actor, c.at) for c in changes])
