"""Acting on the payment provider's webhook events.

Each event is stored by its id before it is acted on; a duplicate delivery of an
event already processed is acknowledged and changes nothing. Events are not
trusted for state: for a PaymentIntent the handler retrieves the object's current
state from the provider and acts on that, so events arriving out of order cannot
move a milestone backwards. An event about an object we do not know is recorded
and acknowledged.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import LedgerError
from ledger.escrow.milestones import fail_funding
from ledger.escrow.model import PayoutState
from ledger.escrow.service import Escrow
from ledger.gateway.stripe_gateway import StripeGateway


def handle_event(escrow: Escrow, gateway: StripeGateway, event: dict[str, Any]) -> str:
    """Record and act on one verified event; returns what was done (also stored)."""
    book = escrow.book
    obj = (event.get("data") or {}).get("object") or {}
    event_id, event_type = str(event["id"]), str(event["type"])
    fresh = book.transaction(lambda uow: uow.escrow.record_event(event_id, event_type, obj.get("id")))
    if not fresh:
        return "duplicate"
    try:
        outcome = _act(escrow, gateway, event_type, obj)
    except LedgerError as refusal:
        outcome = f"refused: {refusal}"
    book.transaction(lambda uow: uow.escrow.finish_event(event_id, outcome))
    return outcome


def _act(escrow: Escrow, gateway: StripeGateway, event_type: str, obj: dict[str, Any]) -> str:
    if event_type.startswith("payment_intent."):
        result, metadata = gateway.retrieve_charge(str(obj["id"]))
        milestone_id, key = metadata.get("milestone"), metadata.get("funding_key")
        if not milestone_id or not key:
            return "ignored: not a milestone funding"
        if result.succeeded:
            return f"milestone {escrow.confirm_funding(milestone_id, funding_key=key, reference=result.reference).id} funded"
        if result.failed:
            reason = result.failure_reason or "payment failed"
            milestone = escrow.book.transaction(
                lambda uow: fail_funding(uow, milestone_id, funding_key=key, reason=reason)
            )
            return f"milestone {milestone.id} back to draft"
        return "pending: the customer must act"
    if event_type in ("transfer.created", "transfer.paid", "transfer.reversed", "transfer.failed"):
        payout_id = (obj.get("metadata") or {}).get("payout")
        if not payout_id:
            return "ignored: not a payout"
        current = escrow.payout(payout_id)
        paid = event_type in ("transfer.created", "transfer.paid") and not obj.get("reversed")
        if current.state is not PayoutState.IN_TRANSIT:
            return f"payout {payout_id} already {current.state.value}"
        settled = escrow.settle_payout(
            payout_id, paid=paid, reference=str(obj.get("id")), reason=None if paid else event_type
        )
        return f"payout {payout_id} {settled.state.value}"
    if event_type in ("refund.created", "refund.updated", "charge.refund.updated", "refund.failed"):
        order_id = (obj.get("metadata") or {}).get("refund_order")
        if not order_id:
            return "ignored: not a refund order"
        status = obj.get("status")
        if status not in ("succeeded", "failed", "canceled"):
            return f"refund order {order_id} pending"
        state = escrow.settle_refund(
            order_id, succeeded=status == "succeeded", reference=str(obj.get("id")), reason=obj.get("failure_reason")
        )
        return f"refund order {order_id} {state}"
    return "ignored"
