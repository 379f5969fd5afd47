"""Payouts: a freelancer withdraws available money.

available -> payouts in transit when the payout is requested (the floor on the
available account refuses a payout above the balance, also under concurrent
requests); in transit -> PSP when the provider confirms it paid; back to
available if the provider fails it, or reverses it after it was paid.
"""

from __future__ import annotations

from ledger.bookkeeping import post_entry
from ledger.errors import BelowFloor, InvalidRequest
from ledger.escrow.accounts import open_freelancer_accounts, open_platform_accounts, short_of_available
from ledger.escrow.chart import (
    PAYOUTS_IN_TRANSIT,
    available_account_code,
)
from ledger.escrow.model import InvalidTransition, Payout, PayoutState, new_id, party_id
from ledger.escrow.orders import NewOrder, OrderKind
from ledger.journal import EntryRequest, credit, debit
from ledger.kinds import EntryKind
from ledger.money import normalize_currency
from ledger.ports.unit_of_work import UnitOfWork


def request_payout(
    uow: UnitOfWork,
    *,
    freelancer_id: str,
    currency: str,
    amount: int,
    psp_account: str,
    request_key: str | None = None,
) -> Payout:
    """Move `amount` from available to in transit and record the payout."""
    freelancer = party_id(freelancer_id, "freelancer_id")
    code = normalize_currency(currency)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequest("amount must be a positive integer of minor units", field="amount")
    if request_key is not None:
        stored = uow.orders.bind_request_key(
            request_key, "payout", {"freelancer": freelancer, "amount": amount, "currency": code}
        )
        if stored is not None:
            return uow.escrow.payout(str(stored["payout"]))
    open_freelancer_accounts(uow, freelancer, code)
    open_platform_accounts(uow, code, psp_account)
    payout_id = new_id("po")
    try:
        post_entry(
            uow,
            EntryRequest(
                idempotency_key=f"payout.request:{payout_id}",
                kind=EntryKind.PAYOUT_REQUEST,
                postings=(
                    debit(available_account_code(freelancer), amount, code),
                    credit(PAYOUTS_IN_TRANSIT, amount, code),
                ),
                refs={"payout": payout_id, "freelancer": freelancer},
            ),
        )
    except BelowFloor as refused:
        raise short_of_available(refused, freelancer=freelancer, currency=code, taken=amount, what="a payout") from None
    uow.escrow.add_payout(
        Payout(
            id=payout_id,
            freelancer_id=freelancer,
            currency=code,
            amount=amount,
            state=PayoutState.IN_TRANSIT,
            gateway_reference=None,
            failure_reason=None,
            created_at=uow.clock.now(),
            settled_at=None,
        ),
        request_key=request_key,
    )
    uow.orders.add(
        NewOrder(
            kind=OrderKind.PAYOUT,
            amount=amount,
            currency=code,
            provider_key=payout_id,
            payout_id=payout_id,
            details={"party": freelancer},
        )
    )
    if request_key is not None:
        uow.orders.store_result(request_key, {"payout": payout_id})
    return uow.escrow.payout(payout_id)


def settle_payout(
    uow: UnitOfWork, payout_id: str, *, paid: bool, psp_account: str, reference: str | None, reason: str | None = None
) -> Payout:
    """The provider paid (in transit -> PSP) or failed (in transit -> available). Idempotent."""
    payout = uow.escrow.payout(payout_id, lock=True)
    target = PayoutState.PAID if paid else PayoutState.FAILED
    if payout.state is target:
        return payout
    if payout.state is not PayoutState.IN_TRANSIT:
        raise InvalidTransition(
            f"payout {payout_id} is {payout.state.value}; it cannot become {target.value}", payout_id=payout_id
        )
    code = payout.currency
    back_to = psp_account if paid else available_account_code(payout.freelancer_id)
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"payout.{target.value}:{payout_id}",
            kind=EntryKind.PAYOUT_PAID if paid else EntryKind.PAYOUT_FAILED,
            postings=(debit(PAYOUTS_IN_TRANSIT, payout.amount, code), credit(back_to, payout.amount, code)),
            refs={
                "payout": payout_id,
                "freelancer": payout.freelancer_id,
                **({"gateway_reference": reference} if reference else {}),
            },
        ),
    )
    uow.escrow.settle_payout(
        payout_id,
        target,
        reference=reference,
        failure_reason=None if paid else (reason or "failed")[:500],
        settled_at=uow.clock.now(),
    )
    uow.orders.settle(uow.orders.of_payout(payout_id), succeeded=paid, reference=reference, reason=reason)
    return uow.escrow.payout(payout_id)


def reverse_payout(
    uow: UnitOfWork, payout_id: str, *, amount_reversed: int, psp_account: str, reference: str | None
) -> Payout:
    """The provider has reversed `amount_reversed` (in all, so far) of the payout's transfer:
    that much is the freelancer's again. Idempotent; a partial reversal books only the part.

    In transit and wholly reversed, the payout fails (in transit -> available). Otherwise
    it is paid, and what is reversed beyond what was booked before goes PSP -> available;
    a payout wholly reversed after it was paid is `reversed`."""
    payout = uow.escrow.payout(payout_id, lock=True)
    if payout.state is PayoutState.IN_TRANSIT:
        if amount_reversed >= payout.amount:
            failed = settle_payout(
                uow, payout_id, paid=False, psp_account=psp_account, reference=reference, reason="transfer reversed"
            )
            uow.escrow.record_payout_reversal(
                payout_id, amount_reversed=payout.amount, state=failed.state, failure_reason="transfer reversed"
            )
            return uow.escrow.payout(payout_id)
        payout = settle_payout(uow, payout_id, paid=True, psp_account=psp_account, reference=reference)
    if payout.state is PayoutState.FAILED:
        return payout
    reversed_now = min(amount_reversed, payout.amount)
    more = reversed_now - payout.amount_reversed
    if more <= 0:
        return payout
    code = payout.currency
    post_entry(
        uow,
        EntryRequest(
            idempotency_key=f"payout.reversed:{payout_id}:{reversed_now}",
            kind=EntryKind.PAYOUT_REVERSED,
            postings=(
                debit(psp_account, more, code),
                credit(available_account_code(payout.freelancer_id), more, code),
            ),
            refs={
                "payout": payout_id,
                "freelancer": payout.freelancer_id,
                **({"gateway_reference": reference} if reference else {}),
            },
        ),
    )
    wholly = reversed_now == payout.amount
    uow.escrow.record_payout_reversal(
        payout_id,
        amount_reversed=reversed_now,
        state=PayoutState.REVERSED if wholly else PayoutState.PAID,
        failure_reason="transfer reversed" if wholly else "transfer partly reversed",
    )
    return uow.escrow.payout(payout_id)
