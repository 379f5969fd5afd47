"""Escrow's accounts in the chart of accounts (docs/architecture.md, "Chart of accounts").

The codes only; `ledger.escrow.accounts` opens them.
"""

from __future__ import annotations

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
#: Hourly work advanced to freelancers before the client's charge succeeded.
RECEIVABLES = "assets:receivables:clients"
#: Advanced hourly work written off (30 days after the week's close).
HOURLY_PROTECTION = "expenses:hourly_protection"
#: Fee revenue is credited by every release: spread it over slots so releases do not queue.
HOT_ACCOUNT_SLOTS = 16


#: A milestone's escrow account is this prefix and the milestone's id.
ESCROW_ACCOUNT_PREFIX = "liabilities:escrow:"


def escrow_account_code(milestone_id: str) -> str:
    return f"{ESCROW_ACCOUNT_PREFIX}{milestone_id}"


def pending_account_code(freelancer_id: str) -> str:
    return f"liabilities:freelancer:{freelancer_id}:pending"


def available_account_code(freelancer_id: str) -> str:
    return f"liabilities:freelancer:{freelancer_id}:available"
