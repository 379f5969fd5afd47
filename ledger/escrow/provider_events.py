"""Acting on the payment provider's webhook events.

Each event is stored by its id before it is acted on; a duplicate delivery of an
event already processed is acknowledged and changes nothing. Events are not
trusted for state: for a PaymentIntent the handler retrieves the object's current
state from the provider and acts on that, so events arriving out of order cannot
move a milestone backwards. An event about an object we do not know is recorded
and acknowledged.

Handled: `payment_intent.*` (funding), `transfer.*` (payouts: paid, failed or
reversed), `refund.*` (refund orders), `charge.dispute.*` (chargebacks, see
`chargebacks.py`). Every handler retrieves the object first.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import BelowFloor, LedgerError, RetriesExhausted
from ledger.escrow.milestones import fail_funding
from ledger.escrow.model import PayoutState
from ledger.escrow.service import Escrow
from ledger.gateway import GatewayUnavailable
from ledger.gateway.stripe_gateway import StripeGateway


def handle_event(escrow: Escrow, gateway: StripeGateway, event: dict[str, Any]) -> str:
    """Record and act on one verified event; returns what was done (also stored).

    If the provider cannot be asked how the object stands now (`GatewayUnavailable`), or
    the database keeps losing races (`RetriesExhausted`, a balance moved under a
    chargeback's recovery), the event stays unprocessed and the error propagates: the
    webhook answers with an error and the provider delivers the event again later. A
    refusal (the ledger will not do what the event implies) is recorded as the outcome:
    a redelivery cannot change it."""
    book = escrow.book
    obj = (event.get("data") or {}).get("object") or {}
    event_id, event_type = str(event["id"]), str(event["type"])
    fresh = book.transaction(lambda uow: uow.escrow.record_event(event_id, event_type, obj.get("id")))
    if not fresh:
        return "duplicate"
    try:
        outcome = _act(escrow, gateway, event_type, obj)
    except (GatewayUnavailable, RetriesExhausted, BelowFloor):
        raise  # passing: unprocessed, the provider delivers it again
    except LedgerError as refusal:
        outcome = f"refused: {refusal}"
    book.transaction(lambda uow: uow.escrow.finish_event(event_id, outcome))
    return outcome


def _act(escrow: Escrow, gateway: StripeGateway, event_type: str, obj: dict[str, Any]) -> str:
    if event_type.startswith("payment_intent."):
        return _payment_intent(escrow, gateway, str(obj["id"]))
    if event_type.startswith("transfer."):
        return _transfer(escrow, gateway, str(obj["id"]))
    if event_type in ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"):
        return _refund(escrow, gateway, str(obj["id"]))
    if event_type.startswith("charge.dispute."):
        return _dispute(escrow, gateway, str(obj["id"]))
    return "ignored"


def _payment_intent(escrow: Escrow, gateway: StripeGateway, intent_id: str) -> str:
    result, metadata = gateway.retrieve_charge(intent_id)
    milestone_id, key = metadata.get("milestone"), metadata.get("funding_key")
    if not milestone_id or not key:
        return "ignored: not a milestone funding"
    if result.succeeded:
        return (
            f"milestone {escrow.confirm_funding(milestone_id, funding_key=key, reference=result.reference).id} funded"
        )
    if result.failed:
        reason = result.failure_reason or "payment failed"
        milestone = escrow.book.transaction(lambda uow: fail_funding(uow, milestone_id, funding_key=key, reason=reason))
        return f"milestone {milestone.id} back to draft"
    return "pending: the customer must act"


def _transfer(escrow: Escrow, gateway: StripeGateway, transfer_id: str) -> str:
    amount_reversed, metadata = gateway.retrieve_transfer(transfer_id)
    payout_id = metadata.get("payout")
    if not payout_id:
        return "ignored: not a payout"
    current = escrow.payout(payout_id)
    if amount_reversed:
        settled = escrow.reverse_payout(payout_id, amount_reversed=amount_reversed, reference=transfer_id)
        return f"payout {payout_id} {settled.state.value} ({settled.amount_reversed} reversed)"
    if current.state is not PayoutState.IN_TRANSIT:
        return f"payout {payout_id} already {current.state.value}"
    return f"payout {payout_id} {escrow.settle_payout(payout_id, paid=True, reference=transfer_id).state.value}"


def _refund(escrow: Escrow, gateway: StripeGateway, refund_id: str) -> str:
    result, metadata = gateway.retrieve_refund(refund_id)
    order_id = metadata.get("refund_order")
    if not order_id:
        return "ignored: not a refund order"
    if result.status == "requires_action":
        return f"refund order {order_id} pending"
    state = escrow.settle_refund(
        order_id, succeeded=result.succeeded, reference=refund_id, reason=result.failure_reason
    )
    return f"refund order {order_id} {state}"


def _dispute(escrow: Escrow, gateway: StripeGateway, dispute_id: str) -> str:
    report = gateway.retrieve_dispute(dispute_id)
    if not report.charge_reference:
        return "ignored: the dispute names no PaymentIntent of ours"
    _, metadata = gateway.retrieve_charge(report.charge_reference)
    milestone_id = metadata.get("milestone")
    if not milestone_id:
        return "ignored: not a milestone payment"
    if metadata.get("funding_key"):
        # The payment's own webhook may not have arrived yet: book the funding first, so the
        # chargeback meets the money it disputes (a no-op once funded).
        _payment_intent(escrow, gateway, report.charge_reference)
    dispute = escrow.apply_dispute(report, milestone_id)
    if dispute.is_open:
        return f"dispute {dispute.id} open ({dispute.status}): milestone {milestone_id} frozen"
    return f"dispute {dispute.id} {dispute.outcome}"
