"""Stripe end to end: payment orders at the provider boundary, through the API.

A failed 3-D Secure is not final (the payer can still finish with another payment
method), so a new funding attempt first cancels the PaymentIntent at Stripe, and books
it if it succeeded meanwhile. An order whose answer was lost for more than 23 hours
(Stripe forgets idempotency keys after 24) is looked up at Stripe by our order id
before it is sent again, so nothing is created twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ledger.errors import InvalidRequest
from ledger.escrow.orders import OrderKind, OrderState, PaymentOrder
from ledger.escrow.timers import tick
from ledger.gateway import GatewayResult
from tests.e2e.stripe_api import StripeApi, new_milestone
from tests.stripe_standin import NEEDS_ACTION, event

#: Past the 23 hours within which an order is re-sent with its key, before the 24 after
#: which a charge left waiting for the payer is cancelled.
PAST_RESEND_WINDOW = timedelta(hours=23, minutes=30)


def orders_of(api: StripeApi, milestone_id: str, kind: OrderKind) -> list[PaymentOrder]:
    return api.book.transaction(lambda uow: uow.orders.of_milestone(milestone_id, kinds=(kind,)), read_only=True)


def posts(api: StripeApi, path: str) -> list[tuple[str, str, dict[str, Any], str | None]]:
    """The POSTs Stripe received to `path` (a request lost on the way is not among them)."""
    return [r for r in api.stripe.requests if r[0] == "POST" and r[1] == path]


def lose_the_answer(api: StripeApi) -> None:
    """The next create reaches Stripe and is done there, but its answer is lost, and so are
    both of the SDK's retries: the order stays unanswered."""
    for fault in ("drop", "lost", "lost"):
        api.stripe.fail_next(fault)


def forget_keys_after_a_day(api: StripeApi) -> None:
    api.clock.advance(PAST_RESEND_WINDOW)
    api.stripe.forget_keys()  # a re-send with the old key would now create a second object


def failed_3ds_funding(api: StripeApi) -> tuple[str, str]:
    """A funding whose 3-D Secure failed, as the next fund call learns from Stripe: (milestone, PaymentIntent)."""
    milestone_id = new_milestone(api)
    pending = api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": NEEDS_ACTION})
    assert pending.json()["status"] == "requires_action", pending.text
    [intent_id] = [o for o in api.stripe.objects if o.startswith("pi_")]
    api.stripe.complete_action(intent_id, succeed=False)
    asked = api.post(f"/v1/milestones/{milestone_id}/fund")
    assert asked.status_code == 200, asked.text
    assert asked.json()["status"] == "failed" and asked.json()["milestone"]["state"] == "draft"
    return milestone_id, intent_id


def test_a_failed_3d_secure_returns_the_milestone_to_draft_and_its_order_waits_for_the_payer(
    stripe_api: StripeApi,
) -> None:
    milestone_id, intent_id = failed_3ds_funding(stripe_api)
    assert stripe_api.stripe.objects[intent_id]["status"] == "requires_payment_method"
    milestone = stripe_api.milestone(milestone_id)
    assert milestone["state"] == "draft" and milestone["failure_reason"] == "Authentication failed."
    [order] = orders_of(stripe_api, milestone_id, OrderKind.FUND)
    assert order.state is OrderState.REQUIRES_ACTION and order.provider_reference == intent_id
    result, _ = stripe_api.gateway.retrieve_charge(intent_id)
    assert result.failed and not result.final  # the payer can still finish with another method
    # Stripe's payment_failed event says the same: nothing changes.
    late = stripe_api.webhook(event("payment_intent.payment_failed", stripe_api.stripe.objects[intent_id]))
    assert late.status_code == 200 and late.json()["outcome"] == f"milestone {milestone_id} back to draft"
    assert orders_of(stripe_api, milestone_id, OrderKind.FUND)[0].state is OrderState.REQUIRES_ACTION
    assert stripe_api.entry_count() == 0 and stripe_api.book.audit().ok


def test_funding_again_cancels_the_first_payment_intent_before_creating_the_next(stripe_api: StripeApi) -> None:
    milestone_id, first = failed_3ds_funding(stripe_api)
    again = stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "succeeded" and again.json()["milestone"]["state"] == "funded"
    paths = [(r[0], r[1]) for r in stripe_api.stripe.requests]
    cancelled_at = paths.index(("POST", f"/v1/payment_intents/{first}/cancel"))
    created_at = [i for i, p in enumerate(paths) if p == ("POST", "/v1/payment_intents")]
    assert len(created_at) == 2 and created_at[0] < cancelled_at < created_at[1]
    [cancel] = orders_of(stripe_api, milestone_id, OrderKind.CANCEL)
    assert posts(stripe_api, f"/v1/payment_intents/{first}/cancel")[0][3] == cancel.provider_key
    assert cancel.state is OrderState.SUCCEEDED
    assert stripe_api.stripe.objects[first]["status"] == "canceled"
    charges = {o.provider_reference: o.state for o in orders_of(stripe_api, milestone_id, OrderKind.FUND)}
    [second] = [reference for reference in charges if reference != first]
    assert charges == {first: OrderState.CANCELLED, second: OrderState.SUCCEEDED}
    assert stripe_api.stripe.objects[second or ""]["status"] == "succeeded"
    assert stripe_api.milestone(milestone_id)["held"] == {"amount": "1000.00", "currency": "USD"}
    assert stripe_api.book.audit().ok


def test_a_cancel_that_finds_the_payment_intent_succeeded_books_it_and_creates_no_other(
    stripe_api: StripeApi,
) -> None:
    milestone_id, intent_id = failed_3ds_funding(stripe_api)
    # The payer finishes the first PaymentIntent with another card; its webhook is late.
    stripe_api.stripe.complete_action(intent_id, succeed=True)
    again = stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "succeeded" and again.json()["milestone"]["state"] == "funded"
    # Stripe refused the cancellation (400 payment_intent_unexpected_state); it was asked, once.
    assert len(posts(stripe_api, f"/v1/payment_intents/{intent_id}/cancel")) == 1
    assert stripe_api.stripe.objects[intent_id]["status"] == "succeeded"
    assert stripe_api.stripe.created["payment_intent"] == 1
    funding = [e for e in stripe_api.book.journal(limit=100).entries if e.kind == "escrow.fund"]
    assert [e.refs["gateway_reference"] for e in funding] == [intent_id]
    late = stripe_api.webhook(event("payment_intent.succeeded", stripe_api.stripe.objects[intent_id]))
    assert late.status_code == 200
    assert stripe_api.milestone(milestone_id)["held"] == {"amount": "1000.00", "currency": "USD"}  # once
    assert stripe_api.book.audit().ok


def test_a_charge_unanswered_for_a_day_is_found_by_its_order_id_not_charged_again(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    lose_the_answer(stripe_api)
    funded = stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    assert funded.status_code == 200, funded.text
    assert funded.json()["status"] == "pending" and funded.json()["milestone"]["state"] == "funding"
    [intent] = [o for o in stripe_api.stripe.objects.values() if o["object"] == "payment_intent"]
    assert intent["status"] == "succeeded"  # Stripe took the money; we never heard
    [order] = orders_of(stripe_api, milestone_id, OrderKind.FUND)
    assert intent["metadata"]["order"] == order.id
    forget_keys_after_a_day(stripe_api)
    stripe_api.escrow.orders.tick()
    assert stripe_api.milestone(milestone_id)["state"] == "funded"
    assert len(posts(stripe_api, "/v1/payment_intents")) == 1 and stripe_api.stripe.created["payment_intent"] == 1
    searched = [r for r in stripe_api.stripe.requests if r[1] == "/v1/payment_intents/search"]
    assert searched, "the dispatcher looked the charge up before sending it again"
    found = stripe_api.gateway.find("charge", order.id)
    assert found is not None and found.succeeded and found.reference == intent["id"]
    assert stripe_api.gateway.find("charge", "ord_unknown") is None
    assert stripe_api.milestone(milestone_id)["held"] == {"amount": "1000.00", "currency": "USD"}
    assert stripe_api.book.audit().ok


def test_a_refund_unanswered_for_a_day_is_found_by_its_order_id_not_refunded_again(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    contract_id = stripe_api.milestone(milestone_id)["contract_id"]
    lose_the_answer(stripe_api)
    ended = stripe_api.post(f"/v1/contracts/{contract_id}/end", {"ended_by": "freelancer"})
    assert ended.status_code == 200, ended.text
    assert stripe_api.book.balance("liabilities:refunds:in_transit", "USD") == 1000_00
    [refund] = [o for o in stripe_api.stripe.objects.values() if o["object"] == "refund"]
    [order] = orders_of(stripe_api, milestone_id, OrderKind.REFUND)
    assert refund["metadata"] == {"order": order.id, "refund_order": order.provider_key}
    forget_keys_after_a_day(stripe_api)
    stripe_api.escrow.orders.tick()
    assert stripe_api.book.balance("liabilities:refunds:in_transit", "USD") == 0
    assert len(posts(stripe_api, "/v1/refunds")) == 1 and stripe_api.stripe.created["refund"] == 1
    assert any(r[0] == "GET" and r[1] == "/v1/refunds" for r in stripe_api.stripe.requests)
    found = stripe_api.gateway.find("refund", order.id)
    assert found is not None and found.succeeded and found.reference == refund["id"]
    # A refund sent with only its refund order's key is found by that key too.
    assert stripe_api.gateway.find("refund", order.provider_key) == found
    assert orders_of(stripe_api, milestone_id, OrderKind.REFUND)[0].state is OrderState.SUCCEEDED
    assert stripe_api.book.audit().ok


def test_a_payout_unanswered_for_a_day_is_found_by_its_order_id_not_transferred_again(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    stripe_api.post(f"/v1/milestones/{milestone_id}/approve")
    stripe_api.clock.advance(timedelta(days=5))
    tick(stripe_api.book)
    lose_the_answer(stripe_api)
    created = stripe_api.post("/v1/freelancers/fr_1/payouts", {"amount": {"amount": "800.00", "currency": "USD"}})
    assert created.status_code == 201, created.text
    payout = created.json()
    assert payout["state"] == "in_transit"
    [transfer] = [o for o in stripe_api.stripe.objects.values() if o["object"] == "transfer"]
    forget_keys_after_a_day(stripe_api)
    stripe_api.escrow.orders.tick()  # found: in transit until Stripe confirms it
    assert len(posts(stripe_api, "/v1/transfers")) == 1 and stripe_api.stripe.created["transfer"] == 1
    assert any(r[0] == "GET" and r[1] == "/v1/transfers" for r in stripe_api.stripe.requests)
    assert stripe_api.gateway.find("transfer", transfer["metadata"]["order"]) == GatewayResult(
        "requires_action", transfer["id"]
    )
    stripe_api.clock.advance(timedelta(minutes=10))  # when the dispatcher asks again
    stripe_api.escrow.orders.tick()
    state = stripe_api.client.get(f"/v1/payouts/{payout['id']}", headers=stripe_api.headers).json()["state"]
    assert state == "paid" and stripe_api.stripe.created["transfer"] == 1
    assert stripe_api.book.audit().ok


def test_find_pages_back_through_the_lookup_window_and_no_further(stripe_api: StripeApi) -> None:
    standin, gateway = stripe_api.stripe, stripe_api.gateway

    def transfer(order_id: str) -> str:
        return str(
            gateway.payout(
                amount=100,
                currency="USD",
                idempotency_key=f"key_{order_id}",
                destination="acct_ada",
                metadata={"order": order_id},
            ).reference
        )

    old = transfer("ord_old")
    stripe_api.clock.advance(timedelta(days=8))
    wanted = transfer("ord_wanted")
    for n in range(150):  # more than a page (100) of newer transfers
        transfer(f"ord_other_{n}")
    assert gateway.find("transfer", "ord_wanted") == GatewayResult("requires_action", wanted)
    pages = [r for r in standin.requests if r[0] == "GET" and r[1] == "/v1/transfers"]
    assert len(pages) == 2  # the second page was asked for after the first one's last transfer
    assert gateway.find("transfer", "ord_old") is None  # created before the window: not listed
    assert standin.objects[old]["metadata"]["order"] == "ord_old"
    with pytest.raises(InvalidRequest):
        gateway.find("dispute", "ord_wanted")
