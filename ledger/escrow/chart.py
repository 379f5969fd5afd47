"""Escrow's accounts in the chart of accounts (DESIGN.md, "Chart of accounts").

Opening is idempotent, so use cases open what they are about to post to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.accounts import AccountSpec, AccountType
from ledger.bookkeeping import open_account

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork

SERVICE_FEES = "revenue:fees:service"
CLIENT_PROCESSING_FEES = "revenue:fees:client_processing"
PAYOUTS_IN_TRANSIT = "liabilities:payouts:in_transit"
#: Refunds booked to clients, not yet confirmed by the payment provider.
REFUNDS_IN_TRANSIT = "liabilities:refunds:in_transit"
PSP_FEES = "expenses:psp_fees"
#: Money the provider has withdrawn for an open chargeback.
DISPUTED = "assets:psp:disputed"
#: Lost chargebacks, as far as they could not be recovered.
CHARGEBACKS = "expenses:chargebacks"
#: Fee revenue is credited by every release: spread it over slots so releases do not queue.
HOT_ACCOUNT_SLOTS = 16


def escrow_account_code(milestone_id: str) -> str:
    return f"liabilities:escrow:{milestone_id}"


def pending_account_code(freelancer_id: str) -> str:
    return f"liabilities:freelancer:{freelancer_id}:pending"


def available_account_code(freelancer_id: str) -> str:
    return f"liabilities:freelancer:{freelancer_id}:available"


def open_escrow_account(uow: UnitOfWork, milestone_id: str, currency: str) -> None:
    open_account(uow, AccountSpec(escrow_account_code(milestone_id), AccountType.LIABILITY, currency, floor=0))


def open_freelancer_accounts(uow: UnitOfWork, freelancer_id: str, currency: str) -> None:
    for code in (pending_account_code(freelancer_id), available_account_code(freelancer_id)):
        open_account(uow, AccountSpec(code, AccountType.LIABILITY, currency, floor=0))


def open_platform_accounts(uow: UnitOfWork, currency: str, psp_account: str) -> None:
    open_account(uow, AccountSpec(psp_account, AccountType.ASSET, currency, slots=HOT_ACCOUNT_SLOTS))
    for code in (SERVICE_FEES, CLIENT_PROCESSING_FEES):
        open_account(uow, AccountSpec(code, AccountType.REVENUE, currency, slots=HOT_ACCOUNT_SLOTS))
    open_account(uow, AccountSpec(PSP_FEES, AccountType.EXPENSE, currency, slots=HOT_ACCOUNT_SLOTS))
    for code in (PAYOUTS_IN_TRANSIT, REFUNDS_IN_TRANSIT):
        open_account(uow, AccountSpec(code, AccountType.LIABILITY, currency, slots=HOT_ACCOUNT_SLOTS))


def open_chargeback_accounts(uow: UnitOfWork, currency: str, psp_account: str) -> None:
    open_platform_accounts(uow, currency, psp_account)
    open_account(uow, AccountSpec(DISPUTED, AccountType.ASSET, currency))
    open_account(uow, AccountSpec(CHARGEBACKS, AccountType.EXPENSE, currency))
