"""Hourly contracts' money: the weekly cycle and bonuses (docs/architecture.md,
"Hourly contracts").

- **Close** (timer `WEEK_CLOSE`, Monday 12:00 after the week, `HOURLY_CALENDAR`): under
  the contract's lock the week is billed from its segments (`bill_week`) and recorded as
  it closed (`ClosedWeek`). A week with something to bill becomes an escrow subject of
  kind `week`, id `<contract>:<monday>`, and its charge is written as a payment order
  (provider key `week:<contract>:<monday>:1`), in the same transaction.
- **Charge**: the dispatcher sends the order; its success is booked as any funding
  (provider -> the week's escrow, with the order's amounts).
- **Review end** (timer `WEEK_REVIEW_END`, Saturday 00:00): a charged week is released
  to the freelancer like a milestone payment: the pair's one lifetime fee chain, the
  fee event, a client invoice listing the week's days and a fee invoice. Its net becomes
  available on the calendar's availability day (Wednesday 00:00) by the payment's
  maturity timer. A charge still in flight at review end is released when it succeeds
  (`after_funding`), dated then: provider calls are dated when they happen.
- **Bonus**: an escrow subject of its own, charged at once and released as soon as
  the charge succeeds.

Each step runs in one transaction under the locks of the rows it changes, and each
timer fires once (`ledger.escrow.timers`), so ticks racing each other or a provider's
answer move money once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

from ledger.bookkeeping import post_entry
from ledger.escrow.accounts import open_protection_accounts
from ledger.escrow.chart import CHARGEBACKS, HOURLY_PROTECTION, RECEIVABLES, escrow_account_code
from ledger.escrow.hourly import (
    WEEK_CHARGE_RETRY,
    WEEK_REVIEW_END,
    WEEK_WRITE_OFF,
    bill_of,
    hourly_contract,
    parse_week_subject,
    week_subject,
)
from ledger.escrow.hourly_calendar import HOURLY_CALENDAR, available_at, closes_at, review_ends_at
from ledger.escrow.hourly_disputes import held_for_dispute, to_charge
from ledger.escrow.milestones import add_subject, charge_subject, positive_amount
from ledger.escrow.model import (
    PAUSED_PAST_DUE,
    ClosedWeek,
    Contract,
    ContractEnded,
    Milestone,
    MilestoneState,
    Payment,
    SubjectKind,
    new_id,
)
from ledger.escrow.orders import OrderKind, OrderState, PaymentOrder
from ledger.escrow.payments import entry_refs, refund_from_escrow, release
from ledger.escrow.timesheet import DayLine, WeekBill
from ledger.journal import EntryRequest, credit, debit
from ledger.kinds import EntryKind
from ledger.ports.unit_of_work import UnitOfWork

#: The payment kind of a released week (bonuses are "bonus", as on milestones).
HOURLY_PAYMENT = "hourly"


def week_charge_key(subject_id: str, attempt: int = 1) -> str:
    """The provider idempotency key of a week's charge attempt: `week:<id>:<n>`."""
    return f"week:{subject_id}:{attempt}"


def close_week(uow: UnitOfWork, subject_id: str, due_at: datetime) -> bool:
    """Close the week: record it as billed and, when it bills anything, write its charge.
    True if it billed anything. Dated at the close (`due_at`)."""
    contract_id, monday = parse_week_subject(subject_id)
    contract = hourly_contract(uow, contract_id, lock=True)
    if uow.escrow.closed_week(contract_id, monday) is not None:
        return False
    bill = bill_of(uow, contract_id, monday)
    client = uow.documents.party(contract.client_id)
    verified = client.payment_method_verified_at if client is not None else None
    protected = protected_amount(bill) if verified is not None and verified < due_at else 0
    # Earlier weeks too small to charge on their own ride on the next week that bills.
    waiting = _carried_waiting(uow, contract_id, monday) if bill.amount > 0 else []
    carried_in = sum(week.amount for week in waiting)
    subject = None
    if bill.amount + carried_in >= HOURLY_CALENDAR.minimum_charge(contract.currency):
        subject = add_subject(
            uow,
            contract,
            subject_id=subject_id,
            kind=SubjectKind.WEEK,
            title=f"Week of {monday.isoformat()}",
            amount=bill.amount + carried_in,
        )
    uow.escrow.add_closed_week(
        ClosedWeek(
            id=subject_id,
            contract_id=contract_id,
            week=monday,
            limit_minutes=bill.limit_minutes,
            logged_minutes=bill.logged_minutes,
            billable_minutes=bill.billable_minutes,
            over_limit_minutes=bill.over_limit_minutes,
            amount=bill.amount,
            closed_at=due_at,
            milestone_id=None if subject is None else subject.id,
            protected_amount=protected,
            carried_in=0 if subject is None else carried_in,
        )
    )
    if subject is None:
        return False  # nothing billed, or carried: below the provider's minimum charge
    uow.escrow.carry_weeks([week.id for week in waiting], monday)
    charge_subject(uow, subject, contract, funding_key=week_charge_key(subject_id), off_session=True)
    uow.escrow.schedule(WEEK_REVIEW_END, subject_id, review_ends_at(monday))
    return True


def _carried_waiting(uow: UnitOfWork, contract_id: str, monday: date) -> list[ClosedWeek]:
    """The contract's earlier carried weeks no later week's charge has taken yet."""
    weeks = uow.escrow.closed_weeks(contract_id).values()
    return sorted(
        (week for week in weeks if week.week < monday and week.carried and week.carried_to is None),
        key=lambda week: week.week,
    )


def _carried_into(uow: UnitOfWork, week: ClosedWeek) -> list[ClosedWeek]:
    """The carried weeks whose amounts `week`'s charge took."""
    weeks = uow.escrow.closed_weeks(week.contract_id).values()
    return sorted((w for w in weeks if w.carried_to == week.week), key=lambda w: w.week)


def _settle_cancelled(uow: UnitOfWork, subject: Milestone, contract: Contract) -> None:
    """Nothing is left to charge (a dispute cancelled it all): the week is settled."""
    uow.escrow.save_milestone(replace(subject, state=MilestoneState.SETTLED))
    _lift_past_due_pause(uow, contract)


def after_failed_charge(uow: UnitOfWork, milestone_id: str) -> None:
    """A week's charge attempt failed: the week is past due. The next attempt is due a
    day after this one ran, while the policy retries; once as many attempts as the
    policy allows have failed, the contract is paused (`PAUSED_PAST_DUE`)."""
    subject, contract = uow.escrow.milestone_and_contract(milestone_id, lock=True)
    if subject.kind is not SubjectKind.WEEK or subject.state is not MilestoneState.DRAFT:
        return
    if to_charge(uow, subject) == 0:
        _settle_cancelled(uow, subject, contract)
        return
    monday = parse_week_subject(subject.id)[1]
    charges = uow.orders.of_milestone(subject.id, kinds=(OrderKind.FUND,))
    failed = [o for o in charges if o.state is OrderState.FAILED]
    now = uow.clock.now()
    contract = uow.escrow.contract(contract.id, lock=True)
    if len(failed) >= HOURLY_CALENDAR.pause_after_failed_charges and contract.paused_at is None:
        uow.escrow.save_contract_terms(replace(contract, paused_at=now, paused_by=PAUSED_PAST_DUE))
    retry_at = now + HOURLY_CALENDAR.charge_retry_after
    retries_end = closes_at(monday) + HOURLY_CALENDAR.retry_charges_for
    if retry_at < retries_end:
        uow.escrow.schedule(WEEK_CHARGE_RETRY, subject.id, retry_at)
    elif now >= retries_end:
        # The last attempt was in flight when retries stopped: the write-off waited for it.
        write_off(uow, subject.id, retries_end)
    week = uow.escrow.closed_week(contract.id, monday)
    if week is not None and week.reviewed_at is None and now >= review_ends_at(monday):
        # The review ended while this attempt was in flight: it is applied now that the
        # attempt failed, advancing the protected part.
        uow.escrow.mark_week_reviewed(subject.id, now)
        _advance(uow, subject, contract, now)


def retry_charge(uow: UnitOfWork, subject_id: str, due_at: datetime) -> bool:
    """A past-due week's next charge attempt, with its own provider key
    (`week:<id>:<n>`: the key of a declined attempt would replay the decline)."""
    subject, contract = uow.escrow.milestone_and_contract(subject_id, lock=True)
    if subject.state is not MilestoneState.DRAFT:
        return False
    amount = to_charge(uow, subject)
    if amount == 0:
        _settle_cancelled(uow, subject, contract)
        return False
    attempt = len(uow.orders.of_milestone(subject_id, kinds=(OrderKind.FUND,))) + 1
    charge_subject(
        uow,
        replace(subject, amount=amount),
        contract,
        funding_key=week_charge_key(subject_id, attempt),
        off_session=True,
    )
    return True


def _lift_past_due_pause(uow: UnitOfWork, contract: Contract) -> None:
    """The client's money came in: a pause for past-due weeks ends when none is left."""
    contract = uow.escrow.contract(contract.id, lock=True)
    if contract.paused_by != PAUSED_PAST_DUE:
        return
    weeks = uow.escrow.milestones_of_kind(contract.id, SubjectKind.WEEK)
    if any(week.state is MilestoneState.DRAFT for week in weeks):
        return
    uow.escrow.save_contract_terms(replace(contract, paused_at=None, paused_by=None))


def end_review(uow: UnitOfWork, subject_id: str, due_at: datetime) -> bool:
    """The client's review is over (dated at the deadline): release the week if its charge
    succeeded, advance its protected part if the charge failed. True if money moved. A
    charge still in flight leaves the review end to its answer: its success releases
    (`after_funding`), its failure advances (`after_failed_charge`)."""
    subject, contract = uow.escrow.milestone_and_contract(subject_id, lock=True)
    if subject.state is MilestoneState.FUNDING:
        return False
    uow.escrow.mark_week_reviewed(subject_id, due_at)
    if subject.state is MilestoneState.DRAFT:
        return _advance(uow, subject, contract, due_at)
    if subject.state is not MilestoneState.FUNDED or subject.frozen_by is not None:
        return False
    return _release_week(uow, subject, contract, effective_at=due_at) is not None


def protected_amount(bill: WeekBill) -> int:
    """The part of the week protected for a verified client: its tracked segments with a
    memo, within the limit (their lines are cut from the week's one cost function, so
    this part and the rest add up to the week)."""
    return sum(line.amount for line in bill.segments if not line.segment.manual and line.segment.memo.strip())


def _posted(uow: UnitOfWork, key: str, account: str) -> int:
    """What the entry with `key` moved on `account` (0 if there is no such entry)."""
    found = uow.journal.find_by_keys([key]).get(key)
    if found is None:
        return 0
    return sum(p.amount for p in found[0].postings if p.account == account)


def _advance(uow: UnitOfWork, subject: Milestone, contract: Contract, due_at: datetime) -> bool:
    """Review end of a past-due week: the platform advances its protected part (receivables
    -> the week's escrow) and releases it as usual; the rest waits for the client's money.
    A write-off is scheduled for when retries stop."""
    monday = parse_week_subject(subject.id)[1]
    week = uow.escrow.closed_week(contract.id, monday)
    key = f"{EntryKind.ADVANCE}:{subject.id}"
    if week is None or _posted(uow, key, RECEIVABLES):
        return False
    protected = week.protected_amount + sum(w.protected_amount for w in _carried_into(uow, week))
    # What a dispute holds or cancelled is not advanced: the client may not owe it.
    amount = min(protected, to_charge(uow, subject) - held_for_dispute(uow, subject.id))
    if amount <= 0:
        return False
    currency = contract.currency
    open_protection_accounts(uow, currency)
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=key,
            kind=EntryKind.ADVANCE,
            postings=(
                debit(RECEIVABLES, amount, currency),
                credit(escrow_account_code(subject.id), amount, currency),
            ),
            effective_at=due_at,
            refs=entry_refs(contract, subject.id),
        ),
    )
    release(
        uow,
        contract,
        subject,
        amount,
        effective_at=due_at,
        kind=HOURLY_PAYMENT,
        pending_until=max(available_at(monday), due_at),
        invoice_lines=(("protected tracked time", amount),),
    )
    uow.escrow.schedule(WEEK_WRITE_OFF, subject.id, week.closed_at + HOURLY_CALENDAR.retry_charges_for)
    return True


def _recover(uow: UnitOfWork, subject: Milestone, contract: Contract) -> int:
    """An advanced week's charge succeeded: what was advanced goes back from the week's
    escrow to receivables (to the protection expense for what was written off). Returns
    the amount recovered."""
    advanced = _posted(uow, f"{EntryKind.ADVANCE}:{subject.id}", RECEIVABLES)
    if not advanced:
        return 0
    written_off = _posted(uow, f"{EntryKind.WRITE_OFF}:{subject.id}", HOURLY_PROTECTION)
    currency = contract.currency
    postings = [debit(escrow_account_code(subject.id), advanced, currency)]
    if advanced - written_off:
        postings.append(credit(RECEIVABLES, advanced - written_off, currency))
    if written_off:
        postings.append(credit(HOURLY_PROTECTION, written_off, currency))
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"{EntryKind.RECOVERY}:{subject.id}",
            kind=EntryKind.RECOVERY,
            postings=tuple(postings),
            refs=entry_refs(contract, subject.id),
        ),
    )
    return advanced


def write_off(uow: UnitOfWork, subject_id: str, due_at: datetime) -> bool:
    """Retries are over and the advance was not recovered: it is the platform's loss. So
    is a receivable a lost chargeback reopened (`reopen_receivable`), once retries are over."""
    subject, contract = uow.escrow.milestone_and_contract(subject_id, lock=True)
    advanced = _posted(uow, f"{EntryKind.ADVANCE}:{subject.id}", RECEIVABLES)
    if subject.state is MilestoneState.DRAFT and advanced:
        amount, key, refs = advanced, f"{EntryKind.WRITE_OFF}:{subject.id}", entry_refs(contract, subject.id)
    else:
        reopened = _reopened(uow, subject.id)
        if reopened is None:
            return False
        dispute_id, amount = reopened
        key = f"{EntryKind.WRITE_OFF}:{subject.id}:{dispute_id}"
        refs = entry_refs(contract, subject.id, dispute=dispute_id)
    if not amount or uow.journal.find_by_keys([key]):
        return False
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=key,
            kind=EntryKind.WRITE_OFF,
            postings=(
                debit(HOURLY_PROTECTION, amount, contract.currency),
                credit(RECEIVABLES, amount, contract.currency),
            ),
            effective_at=due_at,
            refs=refs,
        ),
    )
    return True


def _reopened(uow: UnitOfWork, subject_id: str) -> tuple[str, int] | None:
    """The lost chargeback that reopened the week's receivable, and by how much."""
    for dispute in uow.escrow.disputes_of(subject_id):
        amount = _posted(uow, f"{EntryKind.RECEIVABLE_REOPENED}:{dispute.id}", RECEIVABLES)
        if amount:
            return dispute.id, amount
    return None


def reopen_receivable(uow: UnitOfWork, contract: Contract, subject_id: str, dispute_id: str, wanted: int) -> int:
    """A lost chargeback took back a week's charge, and no balance covered `wanted` of it
    (booked as the chargeback's loss). If that charge had recovered an advance, the
    protection the platform gave still stands: up to what was recovered, that loss is
    the client's debt again (chargebacks -> receivables, written off when retries are
    over) or, for what had been written off before the recovery, the protection expense
    again. Returns the amount so moved."""
    to_receivables = min(wanted, _posted(uow, f"{EntryKind.RECOVERY}:{subject_id}", RECEIVABLES))
    to_protection = min(wanted - to_receivables, _posted(uow, f"{EntryKind.RECOVERY}:{subject_id}", HOURLY_PROTECTION))
    if not to_receivables + to_protection:
        return 0
    currency = contract.currency
    postings = [credit(CHARGEBACKS, to_receivables + to_protection, currency)]
    if to_receivables:
        postings.append(debit(RECEIVABLES, to_receivables, currency))
    if to_protection:
        postings.append(debit(HOURLY_PROTECTION, to_protection, currency))
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"{EntryKind.RECEIVABLE_REOPENED}:{dispute_id}",
            kind=EntryKind.RECEIVABLE_REOPENED,
            postings=tuple(postings),
            refs=entry_refs(contract, subject_id, dispute=dispute_id),
        ),
    )
    if to_receivables:
        week = uow.escrow.closed_week(*parse_week_subject(subject_id))
        retries_end = (week.closed_at if week is not None else uow.clock.now()) + HOURLY_CALENDAR.retry_charges_for
        uow.escrow.schedule(WEEK_WRITE_OFF, subject_id, max(retries_end, uow.clock.now()))
    return to_receivables + to_protection


def after_funding(uow: UnitOfWork, milestone_id: str) -> Payment | None:
    """A charge succeeded: release at once what is due on success (an hourly bonus, or a
    week whose review ended while its charge was in flight), dated now."""
    subject, contract = uow.escrow.milestone_and_contract(milestone_id, lock=True)
    if subject.state is not MilestoneState.FUNDED or subject.frozen_by is not None:
        return None
    now = uow.clock.now()
    if subject.kind is SubjectKind.BONUS:
        payment = release(uow, contract, subject, subject.held, effective_at=now, kind="bonus")
        uow.escrow.save_milestone(replace(subject, held=0, state=MilestoneState.RELEASED))
        return payment
    if subject.kind is not SubjectKind.WEEK:
        return None
    _lift_past_due_pause(uow, contract)
    recovered = _recover(uow, subject, contract)
    if recovered:
        subject = replace(subject, held=subject.held - recovered)
    subject = _refund_cancelled(uow, subject, contract)
    if subject.held == 0:
        uow.escrow.save_milestone(replace(subject, state=MilestoneState.RELEASED))
        return None
    if now >= review_ends_at(parse_week_subject(subject.id)[1]):
        uow.escrow.mark_week_reviewed(subject.id, now)
        return _release_week(uow, subject, contract, effective_at=now)
    return None


def _refund_cancelled(uow: UnitOfWork, subject: Milestone, contract: Contract) -> Milestone:
    """A charge sent before a dispute cancelled part of the week succeeded after all: the
    cancelled part the client paid goes back to them (it is no longer cancelled but
    refunded; the dispute's `refunded` already counts it)."""
    dispute = uow.escrow.week_dispute(subject.id)
    if dispute is None or not dispute.cancelled:
        return subject
    key, _ = uow.escrow.funding(subject.id)
    order = uow.orders.by_provider_key(key) if key else None
    if order is None:
        return subject
    excess = min(int(order.details["amount"]) - to_charge(uow, subject), dispute.cancelled)
    if excess <= 0:
        return subject
    refund_from_escrow(uow, contract, subject.id, excess, reason="hourly_dispute")
    uow.escrow.save_week_dispute(replace(dispute, cancelled=dispute.cancelled - excess))
    return replace(subject, held=subject.held - excess)


def day_text(day: DayLine) -> str:
    hours, minutes = divmod(day.billable_minutes, 60)
    return f"{day.day.strftime('%a %d %b %Y')}, {hours} h {minutes:02d} min"


def invoice_lines(bill: WeekBill) -> tuple[tuple[str, int], ...]:
    """The client invoice's lines: one per day with billable time; they add up to the week."""
    return tuple((day_text(day), day.amount) for day in bill.days if day.amount)


def _release_week(uow: UnitOfWork, subject: Milestone, contract: Contract, *, effective_at: datetime) -> Payment | None:
    """Release what the week holds but an open dispute of its hours."""
    monday = parse_week_subject(subject.id)[1]
    bill = bill_of(uow, contract.id, monday)
    week = uow.escrow.closed_week(contract.id, monday)
    carried_in = week.carried_in if week is not None else 0
    disputed = held_for_dispute(uow, subject.id)
    amount = subject.held - disputed
    if amount <= 0:
        return None
    # Segments and terms of a closed week cannot change: what it holds is its amount (and
    # what it carried in), or what is left once a protected part was advanced or a
    # disputed part set aside.
    if amount == bill.amount + carried_in:
        lines = invoice_lines(bill) + (
            (("time of earlier weeks, below the minimum charge", carried_in),) if carried_in else ()
        )
    else:
        lines = (("undisputed time", amount),)
    payment = release(
        uow,
        contract,
        subject,
        amount,
        effective_at=effective_at,
        kind=HOURLY_PAYMENT,
        pending_until=max(available_at(monday), effective_at),
        invoice_lines=lines,
    )
    if not disputed:
        uow.escrow.save_milestone(replace(subject, held=0, state=MilestoneState.RELEASED))
    return payment


def pay_bonus(uow: UnitOfWork, contract_id: str, *, amount: int, memo: str) -> tuple[Milestone, PaymentOrder]:
    """A bonus on a running hourly contract: its own subject and charge; released when
    the charge succeeds."""
    contract = hourly_contract(uow, contract_id, lock=True)
    if contract.ended_by is not None:
        raise ContractEnded(f"contract {contract_id} has ended", contract_id=contract_id)
    subject = add_subject(
        uow,
        contract,
        subject_id=new_id("bn"),
        kind=SubjectKind.BONUS,
        title=(memo.strip() or "Bonus")[:200],
        amount=positive_amount(amount),
    )
    order = charge_subject(uow, subject, contract, funding_key=new_id("fund"))
    return uow.escrow.milestone(subject.id), order


__all__ = ["after_funding", "close_week", "end_review", "pay_bonus", "week_charge_key", "week_subject"]
