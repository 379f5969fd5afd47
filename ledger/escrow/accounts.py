"""Opening escrow's accounts. Opening is idempotent, so use cases open what they are
about to post to. And what a refusal of the freelancer's available balance says."""

from __future__ import annotations

from ledger.accounts import AccountSpec, AccountType
from ledger.bookkeeping import open_account
from ledger.errors import BelowFloor, InsufficientFunds, LedgerError
from ledger.escrow.chart import (
    CHARGEBACKS,
    CLIENT_PROCESSING_FEES,
    DISPUTED,
    HOT_ACCOUNT_SLOTS,
    HOURLY_PROTECTION,
    PAYOUTS_IN_TRANSIT,
    PSP_FEES,
    RECEIVABLES,
    REFUNDS_IN_TRANSIT,
    SERVICE_FEES,
    available_account_code,
    escrow_account_code,
    pending_account_code,
)
from ledger.money import format_amount
from ledger.ports.unit_of_work import UnitOfWork


def open_escrow_account(uow: UnitOfWork, milestone_id: str, currency: str) -> None:
    open_account(uow, AccountSpec(escrow_account_code(milestone_id), AccountType.LIABILITY, currency, floor=0))


def open_freelancer_accounts(uow: UnitOfWork, freelancer_id: str, currency: str) -> None:
    for code in (pending_account_code(freelancer_id), available_account_code(freelancer_id)):
        open_account(uow, AccountSpec(code, AccountType.LIABILITY, currency, floor=0))


def open_revenue_accounts(uow: UnitOfWork, currency: str) -> None:
    for code in (SERVICE_FEES, CLIENT_PROCESSING_FEES):
        open_account(uow, AccountSpec(code, AccountType.REVENUE, currency, slots=HOT_ACCOUNT_SLOTS))


def open_protection_accounts(uow: UnitOfWork, currency: str) -> None:
    """What hourly protection posts to: advances owed by clients, their write-offs, and
    the fee revenue of the advanced release (no charge may have opened it yet)."""
    open_revenue_accounts(uow, currency)
    open_account(uow, AccountSpec(RECEIVABLES, AccountType.ASSET, currency))
    open_account(uow, AccountSpec(HOURLY_PROTECTION, AccountType.EXPENSE, currency))


def open_platform_accounts(uow: UnitOfWork, currency: str, psp_account: str) -> None:
    open_account(uow, AccountSpec(psp_account, AccountType.ASSET, currency, slots=HOT_ACCOUNT_SLOTS))
    open_revenue_accounts(uow, currency)
    open_account(uow, AccountSpec(PSP_FEES, AccountType.EXPENSE, currency, slots=HOT_ACCOUNT_SLOTS))
    for code in (PAYOUTS_IN_TRANSIT, REFUNDS_IN_TRANSIT):
        open_account(uow, AccountSpec(code, AccountType.LIABILITY, currency, slots=HOT_ACCOUNT_SLOTS))


def open_chargeback_accounts(uow: UnitOfWork, currency: str, psp_account: str) -> None:
    open_platform_accounts(uow, currency, psp_account)
    open_account(uow, AccountSpec(DISPUTED, AccountType.ASSET, currency))
    open_account(uow, AccountSpec(CHARGEBACKS, AccountType.EXPENSE, currency))


def short_of_available(refused: BelowFloor, *, freelancer: str, currency: str, taken: int, what: str) -> LedgerError:
    """What to raise when the floor refused an entry taking `taken` from `freelancer`'s
    available balance: `InsufficientFunds` saying what it holds (the floor refused it
    under the balance's lock, so that is `taken` less the shortfall), or `refused`
    itself when another account's floor refused it."""
    if refused.data.get("account") != available_account_code(freelancer):
        return refused
    held = taken + int(refused.data["balance_after"])
    return InsufficientFunds(
        f"{what} takes {format_amount(taken, currency)} {currency} from the available balance of {freelancer}, "
        f"which holds {format_amount(held, currency)} {currency}",
        freelancer_id=freelancer,
        currency=currency,
        available=format_amount(held, currency),
        requested=format_amount(taken, currency),
    )
