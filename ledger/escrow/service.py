"""`Escrow`: the escrow services over one ledger and one payment gateway, one per
use-case family, as the API, the CLI, the worker and the demo call them
(`escrow.funding.fund(...)`, `escrow.payouts.request_payout(...)`).

Each service method runs one use case in its own retryable transaction and sends
the payment orders it wrote once it has committed (`services/transactions.py`).
"""

from __future__ import annotations

from ledger.escrow.services.approvals import ApprovalService
from ledger.escrow.services.chargebacks import ChargebackService
from ledger.escrow.services.contracts import ContractService
from ledger.escrow.services.funding import FundingService
from ledger.escrow.services.hourly import HourlyService
from ledger.escrow.services.orders import PaymentOrderService
from ledger.escrow.services.payouts import PayoutService
from ledger.escrow.services.provider_events import ProviderEventService
from ledger.escrow.services.reads import EscrowReads
from ledger.escrow.services.refunds import RefundService
from ledger.gateway import PaymentGateway
from ledger.service import Ledger


class Escrow:
    """Milestone escrow over a ledger and a payment gateway.

    Attributes:
        book: the ledger.
        gateway: the payment gateway; None refuses every operation that takes money in.
        reads: contracts, milestones and payments as they stand.
        contracts: opening and ending contracts, adding milestones, submitting work, asking for changes.
        funding: taking the client's money in.
        hourly: hourly contracts' time: segments, rates, limits, pauses and weeks.
        approvals: approving work (releases, bonuses).
        refunds: refund requests and their disputes, refunds of released payments.
        payouts: the freelancer's balance and payouts.
        chargebacks: chargebacks by the client's bank.
        orders: sending the payment orders due, timers, reconciliation with the provider.
        provider_events: the provider's webhook events.
    """

    def __init__(self, book: Ledger, gateway: PaymentGateway | None) -> None:
        self.book = book
        self.gateway = gateway
        self.reads = EscrowReads(book, gateway)
        self.contracts = ContractService(book, gateway)
        self.funding = FundingService(book, gateway)
        self.hourly = HourlyService(book, gateway)
        self.approvals = ApprovalService(book, gateway)
        self.refunds = RefundService(book, gateway)
        self.payouts = PayoutService(book, gateway)
        self.chargebacks = ChargebackService(book, gateway)
        self.orders = PaymentOrderService(book, gateway)
        self.provider_events = ProviderEventService(book, gateway)
