"""Payment orders: every call to the payment provider, as a row.

An order is written in the same transaction as the state change that needs it
(a funding requested, an approval with a bonus, a refund, a payout), carrying
the kind of call, the amount and currency, the exact provider object it acts on
and a deterministic provider idempotency key. A dispatcher sends it later
(`ledger.escrow.dispatcher`); what is booked when the provider answers is what
is on the order, never an amount derived again.

States: `pending` (written, not yet sent), `sent` (a dispatcher holds its lease
and has called, or is calling, the provider), `requires_action` (the provider
waits for the payer), and the final `succeeded`, `failed` (with the provider's
reason) and `cancelled` (withdrawn before it took effect).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from ledger.actors import SYSTEM
from ledger.errors import Conflict, NotFound

#: How long a dispatcher holds an order it is sending. Longer than the provider
#: call's whole retry budget (Stripe: 30 s timeout x 3 tries, plus backoff), so a
#: live sender never loses its lease; a crashed sender's order is taken over after it.
LEASE = timedelta(minutes=5)

#: The provider keeps an idempotency key 24 hours: an order is re-sent with its key
#: only within 23 hours of its first send; after that it is first looked up at the
#: provider by our order id in the object's metadata.
RESEND_WINDOW = timedelta(hours=23)

#: How far back the provider is searched for an order's object (Stripe's gateway lists
#: refunds and transfers this far back). An order first sent longer ago than this is
#: never sent again on its own or by a retry: an operator checks the provider and
#: resolves it (`ledger orders resolve`), so it can never be made twice.
LOOKUP_LIMIT = timedelta(days=7)

#: Sends that end in "provider unavailable" before the order is given up as failed
#: (it then stays visible to operators: `ledger orders list --state failed`).
MAX_ATTEMPTS = 8

#: An approval's bonus charge (or any charge waiting for the payer) not completed
#: within this time is cancelled; the milestone returns to its state.
ACTION_TIMEOUT = timedelta(hours=24)

#: How long before the provider is asked again about an order it acknowledged but has
#: not finished (a refund pending at the bank, a transfer in transit).
STATUS_POLL = timedelta(minutes=10)

#: A sent order not acknowledged for this long is "stuck" (`ledger orders list --state stuck`).
STUCK_AFTER = timedelta(minutes=15)


def backoff(attempts: int) -> timedelta:
    """The wait before the next send after `attempts` failed ones: 30 s, 1 min, 2 min ... capped at 1 hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


class OrderKind(StrEnum):
    FUND = "fund"  # charge the client for a milestone's funding
    BONUS = "bonus"  # charge the client for an approval's bonus
    CANCEL = "cancel"  # cancel a charge still waiting for the payer
    REFUND = "refund"  # refund (part of) a named charge
    PAYOUT = "payout"  # transfer to a freelancer's connected account
    PROCESSING_FEE = "processing_fee"  # retrieve what the provider kept of a payment


class OrderState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({OrderState.SUCCEEDED, OrderState.FAILED, OrderState.CANCELLED})
OPEN_STATES = frozenset({OrderState.PENDING, OrderState.SENT, OrderState.REQUIRES_ACTION})


class UnknownOrder(NotFound):
    """No payment order has this id."""

    code = "unknown-payment-order"


class OrderNotResolvable(Conflict):
    """The payment order cannot be retried or resolved in its state, or as asked."""

    code = "payment-order-not-resolvable"


@dataclass(frozen=True)
class PaymentOrder:
    """One call to the payment provider, and how it stands.

    Attributes:
        id: our id (`ord_...`); also sent to the provider in the object's metadata.
        kind: what to ask the provider for; state: where the order stands.
        amount: minor units, exactly what is asked and what is booked on success.
        currency: ISO 4217 code.
        provider_key: the provider idempotency key, deterministic per order.
        milestone_id, payout_id, refund_order_id: what the order is for.
        target_reference: the provider object the order acts on (the charge a refund
            or cancellation names); provider_reference: the object the order made.
        details: what the booking needs that the row has no column for (the approval
            a bonus completes, the customer, the payment method), fixed when written.
        origin: the request that wrote it (a request dispatches only its own orders).
        attempts: sends that ended without a final answer; next_attempt_at: when the
            next one is due; lease_until: a dispatcher holds the order until then.
        first_sent_at: the first send (the provider forgets keys 24 hours after it).
    """

    id: str
    kind: OrderKind
    state: OrderState
    amount: int
    currency: str
    provider_key: str
    created_at: datetime
    updated_at: datetime
    milestone_id: str | None = None
    payout_id: str | None = None
    refund_order_id: str | None = None
    target_reference: str | None = None
    provider_reference: str | None = None
    failure_reason: str | None = None
    origin: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    first_sent_at: datetime | None = None
    completed_at: datetime | None = None
    resolved_by: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)
    actor: str = SYSTEM

    def age(self, now: datetime) -> timedelta:
        return now - self.created_at

    def is_stuck(self, now: datetime) -> bool:
        """Sent and not acknowledged for longer than `STUCK_AFTER`."""
        since = self.first_sent_at or self.created_at
        return self.state is OrderState.SENT and now - since > STUCK_AFTER


@dataclass(frozen=True)
class NewOrder:
    """An order to write (the store gives it its id and timestamps)."""

    kind: OrderKind
    amount: int
    currency: str
    provider_key: str
    milestone_id: str | None = None
    payout_id: str | None = None
    refund_order_id: str | None = None
    target_reference: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)
    id: str | None = None
