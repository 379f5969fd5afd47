"""Chargebacks: a client's bank disputes a payment that funded a milestone.

`apply_dispute` brings the ledger in line with the dispute as the provider has it
now (never with an event's copy), so it may run any number of times, in any order:

- an open dispute freezes the milestone its payment funded: approval, release and
  refunds are refused, the review and refund-request clocks stop, and its payments'
  pending money does not become available (it is what a lost dispute takes first);
- each balance transaction of the dispute is booked once: money withdrawn moves
  `assets:psp:<provider>` -> `assets:psp:disputed`, money reinstated moves it back,
  dispute fees go to `expenses:psp_fees`;
- a dispute that closes with money still withdrawn (lost) is recovered by the
  policy below; one that closes won unfreezes the milestone and its clocks start
  again in full, and payments whose security period ended meanwhile mature.

Recovery policy of a lost chargeback (README, "Chargebacks"), in this order:
0. refunds of that milestone the provider refused to make (it will not refund a
   disputed charge): the bank has paid the client instead, so they are settled
   (refunds in transit -> disputed, the order `charged_back`);
1. what the milestone still holds in escrow: the client's own money, which the bank
   has already given back (escrow -> disputed; the milestone is refunded once
   empty);
2. the payments released from that milestone, newest first, as a refund after
   release would take them: lifetime billings go down and the fee comes back by the
   fee rule (the platform gives up that fee), and the freelancer's part comes out of
   what is still pending of that payment, then out of their available balance; credit
   notes document it;
3. whatever is left, which no balance covers (floors are never broken to recover a
   chargeback), is the platform's loss: `expenses:chargebacks`; except, on an hourly
   week whose charge had recovered an advance, up to what it recovered: that advance
   is owed by the client again, so that part of the loss moves to the receivable
   (written off when retries are over; `hourly_billing.reopen_receivable`). The
   dispute's `unrecovered` counts the whole loss either way.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.bookkeeping import post_entry
from ledger.errors import Conflict
from ledger.escrow.accounts import open_chargeback_accounts
from ledger.escrow.chart import (
    CHARGEBACKS,
    DISPUTED,
    PSP_FEES,
    REFUNDS_IN_TRANSIT,
    SERVICE_FEES,
    available_account_code,
    escrow_account_code,
    pending_account_code,
)
from ledger.escrow.hourly_billing import reopen_receivable
from ledger.escrow.milestones import REFUND_REQUEST_EXPIRY, REVIEW_EXPIRY
from ledger.escrow.model import (
    REFUND_REQUEST_PERIOD,
    REVIEW_PERIOD,
    Contract,
    Dispute,
    DisputeOutcome,
    Event,
    MilestoneState,
    Payment,
    require_transition,
)
from ledger.escrow.payments import PENDING_RELEASE, entry_refs
from ledger.fees.billing import refund_fee
from ledger.gateway import BalanceMove, DisputeReport
from ledger.invoices.issuing import issue_refund_credit_notes
from ledger.journal import EntryRequest, Posting, credit, debit
from ledger.kinds import EntryKind
from ledger.ports.unit_of_work import UnitOfWork


class DisputeMismatch(Conflict):
    """The provider's dispute does not agree with what the ledger recorded of it."""

    code = "dispute-mismatch"


def apply_dispute(uow: UnitOfWork, report: DisputeReport, milestone_id: str, *, psp_account: str) -> Dispute:
    """Record, book and (when closed) settle a dispute as the provider reports it. Idempotent."""
    milestone = uow.escrow.milestone(milestone_id, lock=True)
    contract = uow.escrow.contract(milestone.contract_id)
    if report.currency != contract.currency:
        raise DisputeMismatch(
            f"dispute {report.id} is in {report.currency}; milestone {milestone_id} in {contract.currency}",
            dispute_id=report.id,
        )
    open_chargeback_accounts(uow, contract.currency, psp_account)
    dispute = uow.escrow.dispute(report.id, lock=True)
    if dispute is None:
        uow.escrow.add_dispute(
            Dispute(
                id=report.id,
                milestone_id=milestone_id,
                charge_reference=report.charge_reference,
                currency=report.currency,
                amount=report.amount,
                status=report.status,
                withdrawn=0,
                reinstated=0,
                outcome=None,
                recovered_from_escrow=0,
                recovered_from_freelancer=0,
                recovered_from_refunds=0,
                fee_returned=0,
                unrecovered=0,
                opened_at=uow.clock.now(),
                closed_at=None,
            )
        )
        # The clocks stop while the money is frozen; they start again in full if it is won.
        uow.escrow.save_milestone(replace(milestone, review_deadline=None, refund_deadline=None))
        dispute = uow.escrow.dispute(report.id, lock=True)
        assert dispute is not None
    elif dispute.milestone_id != milestone_id:
        raise DisputeMismatch(f"dispute {report.id} belongs to milestone {dispute.milestone_id}", dispute_id=report.id)
    if not dispute.is_open:
        return dispute  # closed: nothing more can happen to it
    foreign = [m.id for m in report.balance_moves if m.currency != contract.currency]
    if foreign:
        # Settled in another currency than the payment: booking it needs the provider's
        # exchange, which the ledger does not model; refused (recorded) for an operator.
        raise DisputeMismatch(
            f"dispute {report.id}: balance transactions {', '.join(foreign)} are not in {contract.currency}",
            dispute_id=report.id,
        )
    withdrawn, reinstated = dispute.withdrawn, dispute.reinstated
    # Withdrawals before reinstatements, so the disputed balance never goes negative.
    for move in sorted(report.balance_moves, key=lambda m: (m.amount >= 0, m.id)):
        if _book_move(uow, contract, milestone_id, report.id, move, psp_account):
            withdrawn += max(-move.amount, 0)
            reinstated += max(move.amount, 0)
    uow.escrow.record_dispute_moves(report.id, status=report.status, withdrawn=withdrawn, reinstated=reinstated)
    outstanding = withdrawn - reinstated
    # A won dispute closes once its money is back: a "won" report that does not list the
    # reinstatement yet waits for the one that does, rather than being taken for lost.
    if report.closed and not (report.status != "lost" and outstanding > 0):
        _close(uow, contract, milestone_id, report, outstanding=outstanding)
    return uow.escrow.dispute(report.id) or dispute


def _book_move(
    uow: UnitOfWork, contract: Contract, milestone_id: str, dispute_id: str, move: BalanceMove, psp_account: str
) -> bool:
    """Book one balance transaction of a dispute; False if it was booked before.

    The disputed money and the dispute fee are separate entries, so reconciliation
    finds the withdrawal at the dispute's own amount."""
    currency = contract.currency
    booked: list[tuple[str, EntryKind, tuple[Posting, ...]]] = []
    postings: tuple[Posting, ...]
    if move.amount < 0:
        postings = (debit(DISPUTED, -move.amount, currency), credit(psp_account, -move.amount, currency))
        booked.append((f"dispute.funds:{move.id}", EntryKind.DISPUTE_FUNDS_WITHDRAWN, postings))
    elif move.amount > 0:
        postings = (debit(psp_account, move.amount, currency), credit(DISPUTED, move.amount, currency))
        booked.append((f"dispute.funds:{move.id}", EntryKind.DISPUTE_FUNDS_REINSTATED, postings))
    if move.fee > 0:
        postings = (debit(PSP_FEES, move.fee, currency), credit(psp_account, move.fee, currency))
        booked.append((f"dispute.fee:{move.id}", EntryKind.DISPUTE_FEE, postings))
    elif move.fee < 0:
        postings = (debit(psp_account, -move.fee, currency), credit(PSP_FEES, -move.fee, currency))
        booked.append((f"dispute.fee:{move.id}", EntryKind.DISPUTE_FEE_RETURNED, postings))
    if not booked or uow.journal.find_by_keys([booked[0][0]]):
        return False
    for key, kind, postings in booked:
        post_entry(
            uow,
            EntryRequest(
                idempotency_key=key,
                kind=kind,
                postings=postings,
                refs=entry_refs(contract, milestone_id, dispute=dispute_id, gateway_reference=dispute_id),
                metadata={"balance_transaction": move.id},
            ),
        )
    return True


def _close(uow: UnitOfWork, contract: Contract, milestone_id: str, report: DisputeReport, *, outstanding: int) -> None:
    recovered_refunds = recovered_escrow = recovered_freelancer = fee_returned = unrecovered = 0
    if outstanding > 0:
        recovered_refunds = _settle_failed_refunds(uow, contract, milestone_id, report.id, outstanding)
        recovered_escrow = _recover_from_escrow(uow, contract, milestone_id, report.id, outstanding - recovered_refunds)
        left = outstanding - recovered_refunds - recovered_escrow
        # Lock every payment row (in id order) before posting to any balance: the maturity
        # timer locks a payment row, then the balances, so taking them the same way round
        # leaves no lock cycle.
        ids = sorted(p.id for p in uow.escrow.payments_of(milestone_id))
        payments = [uow.escrow.payment(payment_id, lock=True) for payment_id in ids]
        # What is still pending of each payment: the freelancer's part comes out of it first.
        pending = {p.id: uow.escrow.pending_remaining(p.id) for p in payments}
        for payment in sorted(payments, key=lambda p: p.entry_id, reverse=True):  # newest first
            if left == 0:
                break
            taken, from_freelancer, fee_back = _recover_from_payment(uow, contract, payment, report.id, left, pending)
            left -= taken
            recovered_freelancer += from_freelancer
            fee_returned += fee_back
            unrecovered += taken - from_freelancer - fee_back
        if left:
            unrecovered += left
            _post_loss(uow, contract, milestone_id, report.id, left)
        if unrecovered:
            reopen_receivable(uow, contract, milestone_id, report.id, unrecovered)
    uow.escrow.close_dispute(
        report.id,
        outcome=_outcome(report.status, outstanding),
        recovered_from_refunds=recovered_refunds,
        recovered_from_escrow=recovered_escrow,
        recovered_from_freelancer=recovered_freelancer,
        fee_returned=fee_returned,
        unrecovered=unrecovered,
        closed_at=uow.clock.now(),
    )
    if uow.escrow.open_dispute_of(milestone_id) is None:  # another chargeback may still hold it
        _resume(uow, milestone_id)


def _outcome(status: str, outstanding: int) -> DisputeOutcome:
    if status == "lost" or outstanding > 0:
        return DisputeOutcome.LOST
    return DisputeOutcome.WARNING_CLOSED if status == "warning_closed" else DisputeOutcome.WON


def _settle_failed_refunds(uow: UnitOfWork, contract: Contract, milestone_id: str, dispute_id: str, wanted: int) -> int:
    """Refunds of this milestone the provider would not make (it refuses to refund a disputed
    charge) are still owed to the client in transit: the bank has now paid the client, so
    the chargeback settles them (refunds in transit -> disputed)."""
    taken = 0
    for order in uow.escrow.failed_refund_orders(milestone_id):
        amount = order.amount
        if amount > wanted - taken:
            break  # a refund is settled whole or not at all; what remains is owed as it was
        post_entry(
            uow,
            EntryRequest(
                idempotency_key=f"dispute.refund_settled:{dispute_id}:{order.id}",
                kind=EntryKind.DISPUTE_REFUND_SETTLED,
                postings=(
                    debit(REFUNDS_IN_TRANSIT, amount, contract.currency),
                    credit(DISPUTED, amount, contract.currency),
                ),
                refs=entry_refs(contract, milestone_id, dispute=dispute_id, refund_order=order.id),
            ),
        )
        uow.escrow.charge_back_refund_order(order.id, settled_at=uow.clock.now())
        taken += amount
    return taken


def _recover_from_escrow(uow: UnitOfWork, contract: Contract, milestone_id: str, dispute_id: str, wanted: int) -> int:
    milestone = uow.escrow.milestone(milestone_id)
    taken = min(milestone.held, wanted)
    if taken == 0:
        return 0
    require_transition(milestone_id, milestone.state, Event.CHARGEBACK_LOST)
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"escrow.chargeback:{dispute_id}",
            kind=EntryKind.CHARGEBACK,
            postings=(
                debit(escrow_account_code(milestone_id), taken, contract.currency),
                credit(DISPUTED, taken, contract.currency),
            ),
            refs=entry_refs(contract, milestone_id, dispute=dispute_id),
        ),
    )
    if taken == milestone.held:
        uow.escrow.save_milestone(
            replace(milestone, state=MilestoneState.REFUNDED, review_deadline=None, refund_deadline=None)
        )
    return taken


def _recover_from_payment(
    uow: UnitOfWork, contract: Contract, payment: Payment, dispute_id: str, wanted: int, pending: dict[str, int]
) -> tuple[int, int, int]:
    """Take back up to `wanted` of a released payment (locked by the caller); returns
    (taken, from the freelancer, fee returned).

    The freelancer's part comes out of what is still pending of this payment, then of the
    milestone's other payments (`pending`, updated here: the fee rule rounds per payment,
    so one payment's part may differ by a cent from what it left pending), then out of
    their available balance."""
    locked = payment
    taken = min(locked.gross - locked.refunded, wanted)
    if taken <= 0:
        return 0, 0, 0
    currency = contract.currency
    now = uow.clock.now()
    fee_event = refund_fee(
        uow,
        idempotency_key=f"{dispute_id}:{payment.id}",
        freelancer_id=contract.freelancer_id,
        client_id=contract.client_id,
        amount=taken,
        currency=currency,
        refunds=payment.id,  # release() keys the payment's fee charge by the payment id
        effective_at=now,
    )
    fee_back = fee_event.breakdown.fee
    owed = taken - fee_back
    pending_balance = _balance(uow, pending_account_code(contract.freelancer_id), currency)
    from_pending = min(owed, sum(pending.values()), pending_balance)
    from_available = min(owed - from_pending, _balance(uow, available_account_code(contract.freelancer_id), currency))
    lost = owed - from_pending - from_available
    postings: list[Posting] = [credit(DISPUTED, taken, currency)]
    for account, amount in (
        (pending_account_code(contract.freelancer_id), from_pending),
        (available_account_code(contract.freelancer_id), from_available),
        (SERVICE_FEES, fee_back),
        (CHARGEBACKS, lost),
    ):
        if amount:
            postings.append(debit(account, amount, currency))
    entry = post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"dispute.recovery:{dispute_id}:{payment.id}",
            kind=EntryKind.DISPUTE_RECOVERY,
            postings=tuple(postings),
            effective_at=now,
            refs=entry_refs(contract, payment.milestone_id, payment=payment.id, dispute=dispute_id),
        ),
    )
    uow.escrow.set_refunded(payment.id, locked.refunded + taken)
    to_take = from_pending
    for payment_id in [payment.id, *(p for p in pending if p != payment.id)]:
        part = min(to_take, pending[payment_id])
        if part:
            pending[payment_id] -= part
            to_take -= part
            uow.escrow.set_pending_remaining(payment_id, pending[payment_id])
    issue_refund_credit_notes(
        uow,
        contract=contract,
        payment_id=payment.id,
        refund_id=dispute_id,
        amount=taken,
        fee_back=fee_event.breakdown,
        entry_id=entry.id,
        issued_at=now,
        measured_account=DISPUTED,
        description="Chargeback of payment",
    )
    return taken, from_pending + from_available, fee_back


def _post_loss(uow: UnitOfWork, contract: Contract, milestone_id: str, dispute_id: str, amount: int) -> None:
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"dispute.lost:{dispute_id}",
            kind=EntryKind.DISPUTE_LOST,
            postings=(debit(CHARGEBACKS, amount, contract.currency), credit(DISPUTED, amount, contract.currency)),
            refs=entry_refs(contract, milestone_id, dispute=dispute_id),
        ),
    )


def _resume(uow: UnitOfWork, milestone_id: str) -> None:
    """No chargeback holds the milestone any more: its clock starts again in full, and the
    security periods that ended while it was frozen end now."""
    milestone = uow.escrow.milestone(milestone_id)
    now = uow.clock.now()
    if milestone.state is MilestoneState.SUBMITTED:
        deadline = now + REVIEW_PERIOD
        uow.escrow.save_milestone(replace(milestone, review_deadline=deadline))
        uow.escrow.schedule(REVIEW_EXPIRY, milestone_id, deadline)
    elif milestone.state is MilestoneState.REFUND_REQUESTED:
        deadline = now + REFUND_REQUEST_PERIOD
        uow.escrow.save_milestone(replace(milestone, refund_deadline=deadline))
        uow.escrow.schedule(REFUND_REQUEST_EXPIRY, milestone_id, deadline)
    for payment in uow.escrow.payments_of(milestone_id):
        if payment.pending_until <= now and uow.escrow.pending_remaining(payment.id) > 0:
            uow.escrow.set_pending_until(payment.id, now)
            uow.escrow.schedule(PENDING_RELEASE, payment.id, now)


def _balance(uow: UnitOfWork, code: str, currency: str) -> int:
    account = uow.accounts.find(code, currency)
    return 0 if account is None else uow.accounts.balance(account)
