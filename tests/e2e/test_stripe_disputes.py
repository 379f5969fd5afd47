"""Chargebacks and the provider's second thoughts, end to end: the real `stripe` SDK against
the stand-in, through signed webhooks and the API, with the ledger audited after each step.

Also: a reversed transfer after it was paid, a provider that cannot be reached while a
webhook is handled, and refunds and payouts whose create calls fail until `ledger tick`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ledger.db.schema import refund_orders
from ledger.gateway import GatewayUnavailable
from tests.e2e.stripe_api import StripeApi, new_milestone
from tests.stripe_standin import DISPUTE_FEE, event

USD = "USD"


def funded_milestone(api: StripeApi, amount: str = "1000.00") -> tuple[str, dict[str, Any]]:
    milestone_id = new_milestone(api, amount)
    funded = api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    assert funded.json()["milestone"]["state"] == "funded", funded.text
    intent = next(o for o in api.stripe.objects.values() if o["object"] == "payment_intent")
    return milestone_id, intent


def balance(api: StripeApi, account: str) -> int:
    return api.book.balance(account, USD)


def audited(api: StripeApi) -> None:
    report = api.book.audit()
    assert report.ok, report.to_dict()


def disputes(api: StripeApi, milestone_id: str) -> list[dict[str, Any]]:
    response = api.client.get(f"/v1/milestones/{milestone_id}/disputes", headers=api.headers)
    assert response.status_code == 200, response.text
    return list(response.json())


def deliver(api: StripeApi, event_type: str, obj: dict[str, Any], event_id: str | None = None) -> str:
    response = api.webhook(event(event_type, obj, event_id))
    assert response.status_code == 200, response.text
    return str(response.json()["outcome"])


def test_a_lost_chargeback_on_held_money_freezes_then_refunds_the_milestone(stripe_api: StripeApi) -> None:
    api = stripe_api
    milestone_id, intent = funded_milestone(api)
    fee = balance(api, "expenses:psp_fees")  # Stripe's processing fee on the payment
    dispute = api.stripe.open_dispute(intent["id"])
    assert "frozen" in deliver(api, "charge.dispute.created", dispute)
    assert api.milestone(milestone_id)["frozen_by"] == dispute["id"]
    assert balance(api, "assets:psp:disputed") == 1_000_00
    assert balance(api, "expenses:psp_fees") == fee + DISPUTE_FEE
    audited(api)

    refused = api.post(f"/v1/milestones/{milestone_id}/approve")
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:ledger:problem:milestone-frozen"
    assert refused.json()["dispute_id"] == dispute["id"]
    size = api.entry_count()
    deliver(api, "charge.dispute.funds_withdrawn", dispute)  # the same withdrawal: booked once
    assert api.entry_count() == size

    lost = api.stripe.close_dispute(dispute["id"], won=False)
    assert "lost" in deliver(api, "charge.dispute.closed", lost)
    milestone = api.milestone(milestone_id)
    assert milestone["state"] == "refunded" and milestone["held"]["amount"] == "0.00"
    assert milestone["frozen_by"] is None
    [shown] = disputes(api, milestone_id)
    assert shown["outcome"] == "lost" and shown["recovered_from_escrow"]["amount"] == "1000.00"
    assert shown["unrecovered"]["amount"] == "0.00"
    assert balance(api, "assets:psp:disputed") == 0 and balance(api, "expenses:chargebacks") == 0
    audited(api)


def test_a_won_chargeback_reinstates_the_money_and_leaves_balances_as_they_were(stripe_api: StripeApi) -> None:
    api = stripe_api
    milestone_id, intent = funded_milestone(api)
    before = {code: balance(api, code) for code in ("assets:psp:stripe", "expenses:psp_fees")}
    dispute = api.stripe.open_dispute(intent["id"])
    deliver(api, "charge.dispute.created", dispute)
    audited(api)
    won = api.stripe.close_dispute(dispute["id"], won=True)
    assert "won" in deliver(api, "charge.dispute.funds_reinstated", won)
    assert {code: balance(api, code) for code in before} == before
    assert balance(api, "assets:psp:disputed") == 0
    assert deliver(api, "charge.dispute.closed", won).endswith("won")
    approved = api.post(f"/v1/milestones/{milestone_id}/approve")  # unfrozen: work goes on
    assert approved.status_code == 200, approved.text
    audited(api)


def test_a_lost_chargeback_after_release_and_payout_is_recovered_then_borne_by_the_platform(
    stripe_api: StripeApi,
) -> None:
    api = stripe_api
    milestone_id, intent = funded_milestone(api)
    api.post(f"/v1/milestones/{milestone_id}/approve")  # 850.00 to the freelancer, 150.00 fee
    api.clock.advance(timedelta(days=5))
    api.escrow.orders.tick()
    payout = api.post("/v1/freelancers/fr_1/payouts", {"amount": {"amount": "800.00", "currency": USD}})
    assert payout.status_code == 201, payout.text
    dispute = api.stripe.open_dispute(intent["id"])
    deliver(api, "charge.dispute.created", dispute)
    audited(api)
    lost = api.stripe.close_dispute(dispute["id"], won=False)
    deliver(api, "charge.dispute.closed", lost)
    [shown] = disputes(api, milestone_id)
    assert shown["recovered_from_freelancer"]["amount"] == "50.00"  # all they had left
    assert shown["fee_returned"]["amount"] == "150.00"
    assert shown["unrecovered"]["amount"] == "800.00"
    assert balance(api, "expenses:chargebacks") == 800_00
    freelancer = api.client.get("/v1/freelancers/fr_1/balance?currency=USD", headers=api.headers).json()
    assert freelancer["available"]["amount"] == "0.00" and freelancer["pending"]["amount"] == "0.00"
    audited(api)


def test_dispute_events_out_of_order_act_on_the_dispute_as_it_stands(stripe_api: StripeApi) -> None:
    api = stripe_api
    milestone_id, intent = funded_milestone(api)
    dispute = api.stripe.open_dispute(intent["id"])
    stale_created = dict(dispute)
    lost = api.stripe.close_dispute(dispute["id"], won=False)
    # The "closed" event is delivered first, the "created" one (an old copy) after it.
    assert "lost" in deliver(api, "charge.dispute.closed", lost)
    size = api.entry_count()
    assert "lost" in deliver(api, "charge.dispute.created", stale_created)
    assert api.entry_count() == size
    assert api.milestone(milestone_id)["state"] == "refunded"
    audited(api)


def test_a_chargeback_on_a_payment_we_do_not_know_is_acknowledged(stripe_api: StripeApi) -> None:
    stray = stripe_api.stripe._create_intent({"amount": "500", "currency": "usd", "payment_method": "pm_card_visa"})
    dispute = stripe_api.stripe.open_dispute(stray[1]["id"])
    assert deliver(stripe_api, "charge.dispute.created", dispute) == "ignored: not a milestone payment"
    assert stripe_api.entry_count() == 0


def test_reconciliation_matches_a_dispute_withdrawal(stripe_api: StripeApi) -> None:
    api = stripe_api
    _, intent = funded_milestone(api)
    dispute = api.stripe.open_dispute(intent["id"])
    deliver(api, "charge.dispute.created", dispute)
    lines = api.escrow.orders.reconcile(api.clock.now() - timedelta(days=1), api.clock.now() + timedelta(days=1))
    [line] = [line for line in lines if line.reference == dispute["id"]]
    assert (line.status, line.kind, line.provider_amount, line.ledger_amount) == (
        "matched",
        "dispute",
        1_000_00,
        1_000_00,
    )


def test_a_webhook_that_cannot_reach_stripe_is_answered_503_and_acted_on_when_redelivered(
    stripe_api: StripeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = stripe_api
    milestone_id, intent = funded_milestone(api)
    dispute = api.stripe.open_dispute(intent["id"])

    def unreachable(reference: str) -> None:
        raise GatewayUnavailable("Stripe is unavailable: injected")

    with monkeypatch.context() as patch:
        patch.setattr(api.gateway, "retrieve_dispute", unreachable)
        first = api.webhook(event("charge.dispute.created", dispute))
    assert first.status_code == 503 and first.json()["type"] == "urn:ledger:problem:gateway-unavailable"
    assert api.milestone(milestone_id)["frozen_by"] is None  # nothing happened
    assert "frozen" in deliver(api, "charge.dispute.created", dispute)  # Stripe's redelivery
    audited(api)


def paid_out(api: StripeApi) -> tuple[dict[str, Any], dict[str, Any]]:
    """A released milestone's 800.00 paid out and confirmed: (payout, transfer)."""
    milestone_id, _ = funded_milestone(api)
    api.post(f"/v1/milestones/{milestone_id}/approve")
    api.clock.advance(timedelta(days=5))
    api.escrow.orders.tick()
    payout = api.post("/v1/freelancers/fr_1/payouts", {"amount": {"amount": "800.00", "currency": USD}}).json()
    transfer = next(o for o in api.stripe.objects.values() if o["object"] == "transfer")
    return payout, transfer


def test_a_transfer_reversed_after_it_was_paid_returns_the_money_to_available(stripe_api: StripeApi) -> None:
    api = stripe_api
    payout, transfer = paid_out(api)
    assert "paid" in deliver(api, "transfer.created", transfer)
    assert "reversed" in deliver(api, "transfer.reversed", api.stripe.reverse_transfer(transfer["id"]))
    shown = api.client.get(f"/v1/payouts/{payout['id']}", headers=api.headers).json()
    assert shown["state"] == "reversed"
    freelancer = api.client.get("/v1/freelancers/fr_1/balance?currency=USD", headers=api.headers).json()
    assert freelancer["available"]["amount"] == "850.00"
    audited(api)


def test_a_payout_whose_transfer_call_fails_stays_reserved_and_is_sent_once_by_tick(stripe_api: StripeApi) -> None:
    api = stripe_api
    milestone_id, _ = funded_milestone(api)
    api.post(f"/v1/milestones/{milestone_id}/approve")
    api.clock.advance(timedelta(days=5))
    api.escrow.orders.tick()
    for _ in range(3):  # the first try and both SDK retries
        api.stripe.fail_next("500")
    created = api.post("/v1/freelancers/fr_1/payouts", {"amount": {"amount": "800.00", "currency": USD}})
    assert created.status_code == 201 and created.json()["state"] == "in_transit"
    assert created.json()["gateway_reference"] is None and api.stripe.created["transfer"] == 0
    freelancer = api.client.get("/v1/freelancers/fr_1/balance?currency=USD", headers=api.headers).json()
    assert freelancer["available"]["amount"] == "50.00"  # reserved: it cannot be paid out twice
    api.clock.advance(timedelta(minutes=1))  # past the order's backoff
    api.escrow.orders.tick()
    api.escrow.orders.tick()
    assert api.stripe.created["transfer"] == 1
    transfer = next(o for o in api.stripe.objects.values() if o["object"] == "transfer")
    assert transfer["metadata"]["payout"] == created.json()["id"]
    deliver(api, "transfer.created", transfer)
    audited(api)


def test_a_refund_whose_create_call_fails_is_owed_and_sent_once_by_tick(stripe_api: StripeApi) -> None:
    api = stripe_api
    milestone_id, _ = funded_milestone(api)
    for _ in range(3):
        api.stripe.fail_next("500")
    ended = api.post(f"/v1/contracts/{api.milestone(milestone_id)['contract_id']}/end", {"ended_by": "freelancer"})
    assert ended.status_code == 200, ended.text
    assert api.milestone(milestone_id)["state"] == "refunded"
    assert balance(api, "liabilities:refunds:in_transit") == 1_000_00 and api.stripe.created["refund"] == 0
    api.clock.advance(timedelta(minutes=1))  # past the order's backoff
    api.escrow.orders.tick()
    api.escrow.orders.tick()
    assert api.stripe.created["refund"] == 1 and balance(api, "liabilities:refunds:in_transit") == 0
    states = api.book.transaction(
        lambda uow: [row.state for row in uow.connection.execute(refund_orders.select())], read_only=True
    )
    assert states == ["succeeded"]
    audited(api)


def test_an_event_about_an_object_stripe_does_not_know_is_acknowledged_and_recorded(stripe_api: StripeApi) -> None:
    outcome = deliver(stripe_api, "transfer.created", {"id": "tr_unknown", "object": "transfer"})
    assert outcome == "refused: Stripe has no tr_unknown"
    again = stripe_api.webhook(event("transfer.created", {"id": "tr_unknown", "object": "transfer"}))
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert stripe_api.entry_count() == 0


def test_a_partial_transfer_reversal_returns_only_the_part_reversed(stripe_api: StripeApi) -> None:
    api = stripe_api
    payout, transfer = paid_out(api)
    deliver(api, "transfer.created", transfer)
    partly = api.stripe.reverse_transfer(transfer["id"], amount=300_00)
    assert "paid (30000 reversed)" in deliver(api, "transfer.reversed", partly)
    deliver(api, "transfer.updated", partly, "evt_again")  # another event, same state: nothing more
    shown = api.client.get(f"/v1/payouts/{payout['id']}", headers=api.headers).json()
    assert shown["state"] == "paid" and shown["amount_reversed"]["amount"] == "300.00"
    freelancer = api.client.get("/v1/freelancers/fr_1/balance?currency=USD", headers=api.headers).json()
    assert freelancer["available"]["amount"] == "350.00"  # 50.00 left + 300.00 back
    rest = api.stripe.reverse_transfer(transfer["id"])
    assert "reversed (80000 reversed)" in deliver(api, "transfer.reversed", rest, "evt_rest")
    freelancer = api.client.get("/v1/freelancers/fr_1/balance?currency=USD", headers=api.headers).json()
    assert freelancer["available"]["amount"] == "850.00"
    audited(api)


def test_a_chargeback_that_arrives_before_the_payments_webhook_books_the_funding_first(stripe_api: StripeApi) -> None:
    from tests.stripe_standin import NEEDS_ACTION

    api = stripe_api
    milestone_id = new_milestone(api)
    api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": NEEDS_ACTION})
    intent = next(o for o in api.stripe.objects.values() if o["object"] == "payment_intent")
    api.stripe.complete_action(intent["id"])  # paid, but its webhook is late
    lost = api.stripe.close_dispute(api.stripe.open_dispute(intent["id"])["id"], won=False)
    assert "lost" in deliver(api, "charge.dispute.closed", lost)
    milestone = api.milestone(milestone_id)
    assert milestone["state"] == "refunded" and milestone["held"]["amount"] == "0.00"
    [shown] = disputes(api, milestone_id)
    assert shown["recovered_from_escrow"]["amount"] == "1000.00" and shown["unrecovered"]["amount"] == "0.00"
    deliver(api, "payment_intent.succeeded", intent)  # the late webhook changes nothing
    assert api.milestone(milestone_id)["state"] == "refunded"
    audited(api)
