"""Money out of escrow: releases to freelancers, refunds to clients, refunds after
release, and the end of the security period. Each release issues its invoices and
each refund after release its credit notes, in the same transaction.

A release is a payment: escrow -> freelancer pending (net) + service fee revenue
(the fee from the fee engine, on the pair's lifetime billings), in one entry. Its
net becomes available 5 days later (`mature_payment`, fired by `ledger tick`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from ledger.bookkeeping import post_entry
from ledger.errors import BelowFloor, InvalidRequest
from ledger.escrow.accounts import open_freelancer_accounts, open_platform_accounts, short_of_available
from ledger.escrow.chart import (
    PSP_FEES,
    REFUNDS_IN_TRANSIT,
    SERVICE_FEES,
    available_account_code,
    escrow_account_code,
    pending_account_code,
)
from ledger.escrow.model import (
    REFUND_WINDOW,
    SECURITY_PERIOD,
    Contract,
    InvalidTransition,
    Milestone,
    MilestoneFrozen,
    MilestoneState,
    Payment,
    PaymentRefund,
    RefundNotAllowed,
    RefundOrder,
    RefundOrderState,
    RefundSource,
    SubjectKind,
    new_id,
)
from ledger.escrow.orders import NewOrder, OrderKind
from ledger.fees.billing import charge_fee, refund_fee
from ledger.invoices.issuing import issue_refund_credit_notes, issue_release_documents
from ledger.journal import EntryRequest, Posting, credit, debit
from ledger.kinds import EntryKind
from ledger.money import format_amount
from ledger.ports.unit_of_work import UnitOfWork

PENDING_RELEASE = "pending_release"


def entry_refs(contract: Contract, milestone_id: str, **more: str) -> dict[str, str]:
    """References every escrow entry carries, so statements and audits can find it."""
    return {
        "contract": contract.id,
        "milestone": milestone_id,
        "client": contract.client_id,
        "freelancer": contract.freelancer_id,
        **more,
    }


def release(
    uow: UnitOfWork,
    contract: Contract,
    milestone: Milestone,
    amount: int,
    *,
    effective_at: datetime,
    kind: str = "release",
    request_key: str | None = None,
    charge_reference: str | None = None,
    payment_id: str | None = None,
    pending_until: datetime | None = None,
    invoice_lines: tuple[tuple[str, int], ...] = (),
) -> Payment:
    """Release `amount` from the milestone's escrow to the freelancer, less the fee.

    `milestone` is as the caller read it under its lock. `charge_reference` is the
    provider charge the money came in by (default: the milestone's funding): a
    refund of this payment is made against that charge. `payment_id` is the payment's
    id when the caller chose it (to record it beforehand), else a new one.
    `pending_until` is when its net becomes available (default: the security period
    after release); `invoice_lines` bill the client the amount line by line, (text,
    minor units) adding up to `amount` (default: one line naming the milestone)."""
    milestone_id = milestone.id
    if amount <= 0:
        raise InvalidRequest("nothing to release: the amount must be positive", field="amount")
    payment_id = payment_id or new_id("py")
    currency = contract.currency
    fee_event = charge_fee(
        uow,
        idempotency_key=payment_id,
        freelancer_id=contract.freelancer_id,
        client_id=contract.client_id,
        amount=amount,
        currency=currency,
        effective_at=effective_at,
    )
    fee, net = fee_event.breakdown.fee, fee_event.breakdown.net
    open_freelancer_accounts(uow, contract.freelancer_id, currency)
    # By the fee rule a tiny release can be all fee (1 cent at 20% rounds up to 1).
    postings = [debit(escrow_account_code(milestone_id), amount, currency)]
    if net:
        postings.append(credit(pending_account_code(contract.freelancer_id), net, currency))
    if fee:
        postings.append(credit(SERVICE_FEES, fee, currency))
    entry = post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"escrow.release:{payment_id}",
            kind=EntryKind.RELEASE,
            postings=tuple(postings),
            effective_at=effective_at,
            refs=entry_refs(contract, milestone_id, payment=payment_id),
            metadata={"fee_schedule": fee_event.breakdown.schedule, "payment_kind": kind},
        ),
    )
    pending_until = pending_until or effective_at + SECURITY_PERIOD
    payment = Payment(
        id=payment_id,
        milestone_id=milestone_id,
        contract_id=contract.id,
        kind=kind,
        gross=amount,
        fee=fee,
        net=net,
        released_at=effective_at,
        pending_until=pending_until,
        refunded=0,
        entry_id=entry.id,
        charge_reference=charge_reference or milestone.funding_reference,
    )
    uow.escrow.add_payment(payment, pending_remaining=net, request_key=request_key)
    uow.escrow.schedule(PENDING_RELEASE, payment_id, pending_until)
    issue_release_documents(
        uow,
        contract=contract,
        milestone_id=milestone_id,
        milestone_title=milestone.title,
        payment_id=payment_id,
        payment_kind=kind,
        fee=fee_event.breakdown,
        entry_id=entry.id,
        issued_at=effective_at,
        lines=invoice_lines,
    )
    return payment


def refund_from_escrow(
    uow: UnitOfWork,
    contract: Contract,
    milestone_id: str,
    amount: int,
    *,
    reason: str,
    effective_at: datetime | None = None,
    charge_reference: str | None = None,
    psp_account: str | None = None,
) -> None:
    """Return `amount` held for the milestone to the client: escrow -> refunds in transit,
    and a refund order with its payment order for the provider (settled into the PSP
    account), against `charge_reference` (default: the milestone's funding charge)."""
    if amount <= 0:
        return
    order = _order_refund(
        uow,
        contract,
        milestone_id,
        amount,
        payment_id=None,
        charge_reference=charge_reference,
        psp_account=psp_account,
    )
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"escrow.refund:{order}",
            kind=EntryKind.REFUND,
            postings=(
                debit(escrow_account_code(milestone_id), amount, contract.currency),
                credit(REFUNDS_IN_TRANSIT, amount, contract.currency),
            ),
            effective_at=effective_at,
            refs=entry_refs(contract, milestone_id, refund_order=order),
            metadata={"reason": reason},
        ),
    )


def _order_refund(
    uow: UnitOfWork,
    contract: Contract,
    milestone_id: str,
    amount: int,
    *,
    payment_id: str | None,
    charge_reference: str | None = None,
    psp_account: str | None = None,
) -> str:
    """A refund order (what is owed to the client) and its payment order (the call that
    refunds the named charge at the provider)."""
    psp_account = psp_account or uow.escrow.funding(milestone_id)[1]
    assert psp_account is not None, "money to refund was funded through a PSP account"
    open_platform_accounts(uow, contract.currency, psp_account)
    order_id = new_id("rfo")
    charge = charge_reference or uow.escrow.funding_reference(milestone_id)
    uow.escrow.add_refund_order(
        RefundOrder(
            id=order_id,
            milestone_id=milestone_id,
            payment_id=payment_id,
            currency=contract.currency,
            amount=amount,
            psp_account=psp_account,
            charge_reference=charge,
            state=RefundOrderState.PENDING,
            created_at=uow.clock.now(),
        )
    )
    uow.orders.add(
        NewOrder(
            kind=OrderKind.REFUND,
            amount=amount,
            currency=contract.currency,
            provider_key=order_id,
            milestone_id=milestone_id,
            refund_order_id=order_id,
            target_reference=charge,
            details={"psp_account": psp_account},
        )
    )
    return order_id


def book_processing_fee(
    uow: UnitOfWork, milestone_id: str, *, reference: str, fee: int, currency: str, psp_account: str
) -> None:
    """The provider kept `fee` of a payment: expenses:psp_fees <- PSP account. Once per payment."""
    if fee <= 0:
        return
    contract = uow.escrow.contract(uow.escrow.milestone_contract_id(milestone_id))
    open_platform_accounts(uow, currency, psp_account)
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"psp.fee:{reference}",
            kind=EntryKind.PROCESSING_FEE,
            postings=(debit(PSP_FEES, fee, currency), credit(psp_account, fee, currency)),
            refs=entry_refs(contract, milestone_id, gateway_reference=reference),
        ),
    )


def settle_refund(
    uow: UnitOfWork, order_id: str, *, succeeded: bool, reference: str | None, reason: str | None = None
) -> str:
    """The provider reported a refund: succeeded moves it from in transit to the PSP
    account; failed leaves it in transit, owed to the client, for an operator to act on.
    Idempotent; returns the order's state."""
    order = uow.escrow.refund_order(order_id, lock=True)
    # A refund marked failed stays owed: an operator's retry or resolution may still settle it.
    if order.state is RefundOrderState.SUCCEEDED or (order.state is RefundOrderState.FAILED and not succeeded):
        return order.state.value
    if order.state not in (RefundOrderState.PENDING, RefundOrderState.FAILED):
        return order.state.value
    if succeeded:
        post_entry(
            uow,
            EntryRequest(
                idempotency_key=f"refund.settled:{order_id}",
                kind=EntryKind.REFUND_SETTLED,
                postings=(
                    debit(REFUNDS_IN_TRANSIT, order.amount, order.currency),
                    credit(order.psp_account, order.amount, order.currency),
                ),
                refs=entry_refs(
                    uow.escrow.contract(uow.escrow.milestone_contract_id(order.milestone_id)),
                    order.milestone_id,
                    refund_order=order_id,
                    **({"gateway_reference": reference} if reference else {}),
                ),
            ),
        )
    state = RefundOrderState.SUCCEEDED if succeeded else RefundOrderState.FAILED
    uow.orders.settle(uow.orders.of_refund_order(order_id), succeeded=succeeded, reference=reference, reason=reason)
    uow.escrow.settle_refund_order(
        order_id,
        state,
        reference=reference,
        failure_reason=None if succeeded else (reason or "failed")[:500],
        settled_at=uow.clock.now(),
    )
    return state.value


def mature_payment(uow: UnitOfWork, payment_id: str, due: datetime) -> int:
    """The security period is over: what is left pending becomes available. Returns the amount moved."""
    payment = uow.escrow.payment(payment_id, lock=True)
    remaining = uow.escrow.pending_remaining(payment_id)
    if remaining == 0 or payment.pending_until != due:
        return 0
    if uow.escrow.open_dispute_of(payment.milestone_id) is not None:
        return 0  # a chargeback is open: the money stays pending until it closes (then it matures)
    contract = uow.escrow.contract(payment.contract_id)
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"escrow.available:{payment_id}",
            kind=EntryKind.AVAILABLE,
            postings=(
                debit(pending_account_code(contract.freelancer_id), remaining, contract.currency),
                credit(available_account_code(contract.freelancer_id), remaining, contract.currency),
            ),
            effective_at=due,
            refs=entry_refs(contract, payment.milestone_id, payment=payment_id),
        ),
    )
    uow.escrow.set_pending_remaining(payment_id, 0)
    return remaining


def refund_status(uow: UnitOfWork, refund: PaymentRefund) -> PaymentRefund:
    """The refund with how its provider refund stands now: pending, succeeded or failed."""
    order_id = uow.journal.get(refund.entry_id).refs.get("refund_order")
    if order_id is None:
        return refund
    return replace(refund, status=uow.escrow.refund_order(order_id).state.value)


def refund_payment(uow: UnitOfWork, payment_id: str, amount: int, *, request_key: str | None = None) -> PaymentRefund:
    """The freelancer refunds (part of) a released payment, within 180 days and their balance.

    The fee comes back by the refund rule (most recently billed tier first) and the
    pair's lifetime billings go down. The freelancer's part comes out of what is
    still pending of this payment first, then out of their available balance;
    floors refuse a refund larger than those balances."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequest("amount must be a positive integer of minor units", field="amount")
    if request_key is not None:
        stored = uow.orders.bind_request_key(request_key, "refund_payment", {"payment": payment_id, "amount": amount})
        if stored is not None:
            earlier = uow.escrow.refund_by_request_key(request_key)
            assert earlier is not None, "a request key's result is stored with its refund"
            return earlier
    payment = uow.escrow.payment(payment_id)
    # The milestone's lock first (as chargebacks take it), so a refund and a chargeback take turns.
    milestone = uow.escrow.milestone(payment.milestone_id, lock=True)
    if milestone.state is MilestoneState.APPROVAL_PENDING:
        raise InvalidTransition(
            f"milestone {milestone.id} waits for its approval's bonus charge: refund payment {payment_id} after it",
            milestone_id=milestone.id,
            state=milestone.state.value,
        )
    frozen_by = milestone.frozen_by
    if frozen_by is not None:
        raise MilestoneFrozen(
            f"payment {payment_id} is under chargeback {frozen_by}: it cannot be refunded until the dispute closes",
            payment_id=payment_id,
            dispute_id=frozen_by,
        )
    if milestone.kind is SubjectKind.WEEK and milestone.state in (MilestoneState.DRAFT, MilestoneState.FUNDING):
        # Released under hourly protection before the client's money came in: there is no
        # payment of the client's to send back until the week's charge succeeds.
        raise RefundNotAllowed(
            f"payment {payment_id} was advanced by the platform: the client's charge for the week has not"
            " succeeded, so there is nothing of theirs to refund yet",
            payment_id=payment_id,
        )
    payment = uow.escrow.payment(payment_id, lock=True)
    now = uow.clock.now()
    if now > payment.released_at + REFUND_WINDOW:
        raise RefundNotAllowed(f"payment {payment_id} was released more than 180 days ago", payment_id=payment_id)
    if amount > payment.gross - payment.refunded:
        raise RefundNotAllowed(
            f"payment {payment_id} has {payment.gross - payment.refunded} left to refund, not {amount}",
            payment_id=payment_id,
            refundable=payment.gross - payment.refunded,
            requested=amount,
        )
    contract = uow.escrow.contract(payment.contract_id)
    refund_id = new_id("rf")
    fee_event = refund_fee(
        uow,
        idempotency_key=refund_id,
        freelancer_id=contract.freelancer_id,
        client_id=contract.client_id,
        amount=amount,
        currency=contract.currency,
        refunds=payment_id,  # release() keys the payment's fee charge by the payment id
        effective_at=now,
    )
    fee_back = fee_event.breakdown.fee
    freelancer_part = amount - fee_back
    remaining = uow.escrow.pending_remaining(payment_id)
    from_pending = min(remaining, freelancer_part)
    from_available = freelancer_part - from_pending
    currency = contract.currency
    order = _order_refund(
        uow, contract, payment.milestone_id, amount, payment_id=payment_id, charge_reference=payment.charge_reference
    )
    postings: list[Posting] = [credit(REFUNDS_IN_TRANSIT, amount, currency)]
    if from_pending:
        postings.append(debit(pending_account_code(contract.freelancer_id), from_pending, currency))
    if from_available:
        postings.append(debit(available_account_code(contract.freelancer_id), from_available, currency))
    if fee_back:
        postings.append(debit(SERVICE_FEES, fee_back, currency))
    try:
        entry = post_entry(
            uow,
            EntryRequest(
                idempotency_key=f"escrow.payment_refund:{refund_id}",
                kind=EntryKind.PAYMENT_REFUND,
                postings=tuple(postings),
                effective_at=now,
                refs=entry_refs(
                    contract, payment.milestone_id, payment=payment_id, refund=refund_id, refund_order=order
                ),
            ),
        )
    except BelowFloor as refused:
        beyond = f"{format_amount(from_pending, currency)} {currency}"
        raise short_of_available(
            refused,
            freelancer=contract.freelancer_id,
            currency=currency,
            taken=from_available,
            what=f"the refund (beyond the {beyond} still pending of this payment)",
        ) from None
    uow.escrow.record_payment_refund(
        payment_id, refunded=payment.refunded + amount, pending_remaining=remaining - from_pending
    )
    refund = PaymentRefund(refund_id, payment_id, amount, fee_back, entry.id)
    source = (
        RefundSource.PENDING
        if not from_available
        else (RefundSource.AVAILABLE if not from_pending else RefundSource.BOTH)
    )
    uow.escrow.add_refund(refund, source=source, created_at=now, request_key=request_key)
    issue_refund_credit_notes(
        uow,
        contract=contract,
        payment_id=payment_id,
        refund_id=refund_id,
        amount=amount,
        fee_back=fee_event.breakdown,
        entry_id=entry.id,
        issued_at=now,
    )
    return refund
