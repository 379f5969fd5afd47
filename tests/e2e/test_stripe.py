"""Stripe end to end: the real `stripe` SDK against a local stand-in, through the API and webhooks."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from ledger.api.keys import create_key
from ledger.db.schema import provider_events
from ledger.escrow.timers import tick
from ledger.escrow.timesheet import Segment
from tests.e2e.stripe_api import SECRET, StripeApi, new_milestone
from tests.stripe_standin import DECLINED, NEEDS_ACTION, event


def test_funding_creates_a_captured_payment_intent_for_the_clients_customer(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    funded = stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    assert funded.status_code == 200, funded.text
    assert funded.json()["status"] == "succeeded" and funded.json()["milestone"]["state"] == "funded"
    [(_, _, params, key)] = [r for r in stripe_api.stripe.requests if r[1] == "/v1/payment_intents"]
    assert params["amount"] == "100000" and params["currency"] == "usd" and params["customer"] == "cus_acme"
    assert params["capture_method"] == "automatic" and params["confirm"] == "true"
    assert (
        params["metadata"]["milestone"] == milestone_id and params["transfer_group"] == params["metadata"]["contract"]
    )
    assert key == params["metadata"]["funding_key"]  # deterministic, from our own ids


def test_a_declined_card_returns_the_milestone_to_draft_with_the_reason(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    declined = stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": DECLINED})
    assert declined.json()["status"] == "failed"
    assert declined.json()["milestone"]["state"] == "draft"
    assert declined.json()["milestone"]["failure_reason"] == "Your card was declined."
    assert stripe_api.entry_count() == 0


def test_requires_action_waits_for_the_webhook_and_duplicates_change_nothing(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    pending = stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": NEEDS_ACTION})
    assert pending.json()["status"] == "requires_action" and pending.json()["client_secret"]
    assert stripe_api.milestone(milestone_id)["state"] == "funding"
    intent_id = next(o for o in stripe_api.stripe.objects if o.startswith("pi_"))
    succeeded = event("payment_intent.succeeded", stripe_api.stripe.complete_action(intent_id))
    first = stripe_api.webhook(succeeded)
    assert first.status_code == 200 and "funded" in first.json()["outcome"]
    assert stripe_api.milestone(milestone_id)["held"] == {"amount": "1000.00", "currency": "USD"}
    entries_after = stripe_api.entry_count()
    again = stripe_api.webhook(succeeded)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert stripe_api.entry_count() == entries_after


def test_retrieving_the_payment_intent_funds_it_if_the_webhook_is_late(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": NEEDS_ACTION})
    intent_id = next(o for o in stripe_api.stripe.objects if o.startswith("pi_"))
    stripe_api.stripe.complete_action(intent_id)
    assert stripe_api.post(f"/v1/milestones/{milestone_id}/fund").json()["milestone"]["state"] == "funded"
    late = stripe_api.webhook(event("payment_intent.succeeded", stripe_api.stripe.objects[intent_id]))
    assert late.status_code == 200
    assert stripe_api.milestone(milestone_id)["held"]["amount"] == "1000.00"  # funded once
    assert stripe_api.stripe.created["payment_intent"] == 1


def test_events_out_of_order_act_on_the_current_state(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": NEEDS_ACTION})
    intent_id = next(o for o in stripe_api.stripe.objects if o.startswith("pi_"))
    stale_failure = event("payment_intent.payment_failed", dict(stripe_api.stripe.objects[intent_id]), "evt_old")
    stripe_api.stripe.complete_action(intent_id)  # it has succeeded since
    stripe_api.webhook(stale_failure)
    assert stripe_api.milestone(milestone_id)["state"] == "funded"


@pytest.mark.parametrize(
    ("header", "at"),
    [("forged", None), ("stale", int(time.time()) - 600), ("missing", None)],
)
def test_unsigned_forged_or_stale_webhooks_are_refused_and_not_recorded(
    stripe_api: StripeApi, header: str, at: int | None
) -> None:
    payload = event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent"})
    if header == "missing":
        response = stripe_api.client.post("/v1/webhooks/stripe", json=payload)
    else:
        response = stripe_api.webhook(payload, secret="whsec_wrong" if header == "forged" else SECRET, at=at)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (
        stripe_api.book.transaction(
            lambda uow: uow.connection.execute(select(func.count()).select_from(provider_events)).scalar_one()
        )
        == 0
    )


def test_an_event_about_an_unknown_object_is_acknowledged_and_recorded(stripe_api: StripeApi) -> None:
    response = stripe_api.webhook(event("customer.created", {"id": "cus_new", "object": "customer"}))
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"


@pytest.mark.parametrize("fault", ["500", "drop", "timeout"])
def test_a_failed_create_is_retried_with_the_same_key_and_charges_once(stripe_api: StripeApi, fault: str) -> None:
    milestone_id = new_milestone(stripe_api)
    stripe_api.stripe.fail_next(fault)
    funded = stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    assert funded.status_code == 200, funded.text
    assert funded.json()["milestone"]["state"] == "funded"
    keys = [r[3] for r in stripe_api.stripe.requests if r[1] == "/v1/payment_intents"]
    assert len(keys) == 2 and len(set(keys)) == 1  # the retry carried the same idempotency key
    assert stripe_api.stripe.created["payment_intent"] == 1  # one charge at the PSP
    kinds = [e.kind for e in stripe_api.book.journal(limit=100).entries]
    assert kinds.count("escrow.fund") == 1  # one funding in the ledger


def test_payouts_are_transfers_that_stay_in_transit_until_stripe_confirms(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    stripe_api.post(f"/v1/milestones/{milestone_id}/approve")
    stripe_api.clock.advance(timedelta(days=5))
    tick(stripe_api.book)
    created = stripe_api.post("/v1/freelancers/fr_1/payouts", {"amount": {"amount": "800.00", "currency": "USD"}})
    assert created.status_code == 201, created.text
    payout = created.json()
    assert payout["state"] == "in_transit"
    transfer = next(o for o in stripe_api.stripe.objects.values() if o["object"] == "transfer")
    assert transfer["destination"] == "acct_ada" and transfer["amount"] == 80000
    assert transfer["metadata"]["payout"] == payout["id"]
    confirmed = stripe_api.webhook(event("transfer.created", transfer))
    assert "paid" in confirmed.json()["outcome"]
    assert stripe_api.client.get(f"/v1/payouts/{payout['id']}", headers=stripe_api.headers).json()["state"] == "paid"
    assert stripe_api.book.audit().ok


def test_a_reversed_transfer_returns_the_money_to_available(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    stripe_api.post(f"/v1/milestones/{milestone_id}/approve")
    stripe_api.clock.advance(timedelta(days=5))
    tick(stripe_api.book)
    payout = stripe_api.post("/v1/freelancers/fr_1/payouts", {"amount": {"amount": "800.00", "currency": "USD"}}).json()
    transfer = next(o for o in stripe_api.stripe.objects.values() if o["object"] == "transfer")
    stripe_api.webhook(event("transfer.reversed", stripe_api.stripe.reverse_transfer(transfer["id"])))
    balance = stripe_api.client.get("/v1/freelancers/fr_1/balance?currency=USD", headers=stripe_api.headers).json()
    assert balance["available"]["amount"] == "850.00" and balance["in_transit"]["amount"] == "0.00"
    assert stripe_api.client.get(f"/v1/payouts/{payout['id']}", headers=stripe_api.headers).json()["state"] == "failed"


def psp_balance(api: StripeApi) -> int:
    return api.book.balance("assets:psp:stripe", "USD")


def stripe_fee(amount: int) -> int:
    """What the stand-in's balance transactions keep: 2.9% + 30 cents."""
    return amount * 29 // 1000 + 30


def test_a_refund_from_escrow_is_a_stripe_refund_of_the_original_payment(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    contract_id = stripe_api.milestone(milestone_id)["contract_id"]
    stripe_api.post(f"/v1/contracts/{contract_id}/end", {"ended_by": "freelancer"})
    [refund] = [o for o in stripe_api.stripe.objects.values() if o["object"] == "refund"]
    intent = next(o for o in stripe_api.stripe.objects.values() if o["object"] == "payment_intent")
    assert refund["payment_intent"] == intent["id"] and refund["amount"] == 100000
    # Stripe reported success: booked out of the PSP account, which is short of Stripe's kept fee.
    assert psp_balance(stripe_api) == -stripe_fee(100000)
    assert stripe_api.book.balance("liabilities:refunds:in_transit", "USD") == 0
    assert stripe_api.book.audit().ok


def test_a_pending_refund_is_booked_when_stripe_reports_it_succeeded(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    [payment] = stripe_api.post(f"/v1/milestones/{milestone_id}/approve").json()["payments"]
    stripe_api.stripe.refund_status = "pending"
    refunded = stripe_api.post(
        f"/v1/payments/{payment['id']}/refunds", {"amount": {"amount": "100.00", "currency": "USD"}}
    )
    assert refunded.status_code == 201, refunded.text
    assert stripe_api.book.balance("liabilities:refunds:in_transit", "USD") == 100_00
    assert psp_balance(stripe_api) == 1_000_00 - stripe_fee(100000)
    refund = next(o for o in stripe_api.stripe.objects.values() if o["object"] == "refund")
    done = stripe_api.webhook(event("refund.updated", stripe_api.stripe.settle_refund(refund["id"])))
    assert "succeeded" in done.json()["outcome"]
    assert stripe_api.book.balance("liabilities:refunds:in_transit", "USD") == 0
    assert psp_balance(stripe_api) == 900_00 - stripe_fee(100000)
    assert stripe_api.book.audit().ok


def test_stripes_processing_fee_is_booked_from_the_balance_transaction(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    fee = stripe_fee(100000)  # what the stand-in's balance transaction says
    assert stripe_api.book.balance("expenses:psp_fees", "USD") == fee
    assert psp_balance(stripe_api) == 100000 - fee
    assert stripe_api.milestone(milestone_id)["held"]["amount"] == "1000.00"  # the client's money is whole
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund")  # a repeated confirmation books nothing more
    assert stripe_api.book.balance("expenses:psp_fees", "USD") == fee
    assert stripe_api.book.audit().ok


def test_reconciliation_matches_provider_objects_to_ledger_entries(stripe_api: StripeApi) -> None:
    finance_key = stripe_api.book.transaction(lambda uow: create_key(uow, "finance"))[1]
    milestone_id = new_milestone(stripe_api)
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    stripe_api.post(f"/v1/milestones/{milestone_id}/approve", {"amount": {"amount": "600.00", "currency": "USD"}})
    contract_id = stripe_api.milestone(milestone_id)["contract_id"]
    stripe_api.post(f"/v1/contracts/{contract_id}/end", {"ended_by": "freelancer"})  # refunds the other 400.00
    # An object the ledger never booked, and one whose amount changed at the provider:
    stray = stripe_api.stripe.complete_action(
        stripe_api.stripe._create_intent({"amount": "500", "currency": "usd"})[1]["id"]
    )
    refund = next(o for o in stripe_api.stripe.objects.values() if o["object"] == "refund")
    refund["amount"] += 1
    response = stripe_api.client.get(
        "/v1/reports/reconciliation?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
        headers={"Authorization": f"Bearer {finance_key}"},
    )
    assert response.status_code == 200, response.text
    by_reference = {line["reference"]: line for line in response.json()}
    intent = next(o for o in stripe_api.stripe.objects.values() if o["object"] == "payment_intent" and o["customer"])
    assert by_reference[intent["id"]]["status"] == "matched"
    assert by_reference[intent["id"]]["ledger_amount"] == {"amount": "1000.00", "currency": "USD"}
    assert by_reference[stray["id"]]["status"] == "missing_in_ledger"
    assert by_reference[refund["id"]]["status"] == "amount_mismatch"
    assert by_reference[refund["id"]]["provider_amount"]["amount"] == "400.01"


def test_a_charge_that_still_fails_is_committed_pending_and_sent_once_by_tick(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    for _ in range(3):  # the first try and both SDK retries
        stripe_api.stripe.fail_next("500")
    headers = {**stripe_api.headers, "Idempotency-Key": "fund-once"}
    body = {"payment_method": "pm_card_visa"}
    first = stripe_api.client.post(f"/v1/milestones/{milestone_id}/fund", json=body, headers=headers)
    # The funding was committed with its payment order: the provider's failure is not the answer.
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "pending" and first.json()["milestone"]["state"] == "funding"
    assert stripe_api.entry_count() == 0 and stripe_api.stripe.created["payment_intent"] == 0
    replayed = stripe_api.client.post(f"/v1/milestones/{milestone_id}/fund", json=body, headers=headers)
    assert replayed.json() == first.json()
    stripe_api.clock.advance(timedelta(minutes=1))  # past the order's backoff
    stripe_api.escrow.orders.tick()
    assert stripe_api.milestone(milestone_id)["state"] == "funded"
    assert stripe_api.stripe.created["payment_intent"] == 1
    stripe_api.escrow.orders.tick()
    assert stripe_api.stripe.created["payment_intent"] == 1 and stripe_api.book.audit().ok


def test_a_bonus_is_a_payment_intent_with_the_payment_method_passed(stripe_api: StripeApi) -> None:
    milestone_id = new_milestone(stripe_api)
    stripe_api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": "pm_card_visa"})
    approved = stripe_api.post(
        f"/v1/milestones/{milestone_id}/approve",
        {"amount": {"amount": "1200.00", "currency": "USD"}, "payment_method": "pm_card_visa"},
    )
    assert approved.status_code == 200, approved.text
    assert sorted(p["gross"]["amount"] for p in approved.json()["payments"]) == ["1000.00", "200.00"]
    bonus = [r[2] for r in stripe_api.stripe.requests if r[1] == "/v1/payment_intents"][-1]
    assert bonus["amount"] == "20000" and bonus["payment_method"] == "pm_card_visa"
    assert bonus["metadata"]["bonus"] == "true" and bonus["metadata"]["milestone"] == milestone_id
    assert stripe_api.book.audit().ok


def hourly_week_closed(api: StripeApi) -> str:
    """An hourly contract of cl_1 (Stripe customer cus_acme) with 2 h logged in the week of
    2026-11-30, closed (and so charged) at 2026-12-07 12:00; the contract's id."""
    api.clock.set(datetime(2026, 11, 23, tzinfo=UTC))
    contract = api.escrow.hourly.open_contract(
        client_id="cl_1",
        freelancer_id="fr_1",
        currency="USD",
        title="Support hours",
        hourly_rate=5000,
        weekly_limit_hours=40,
        manual_time_allowed=False,
    )
    start = datetime(2026, 11, 30, 9, tzinfo=UTC)
    api.clock.set(start + timedelta(hours=2))
    api.escrow.hourly.log_segment(contract.id, Segment(start=start, end=start + timedelta(hours=2), memo="support"))
    close = datetime(2026, 12, 7, 12, tzinfo=UTC)
    api.clock.set(close)
    api.escrow.orders.tick(close)
    return contract.id


def test_a_weekly_charge_is_an_off_session_payment_intent_on_the_customers_default_method(
    stripe_api: StripeApi,
) -> None:
    stripe_api.stripe.add_customer("cus_acme", "pm_card_visa")
    contract_id = hourly_week_closed(stripe_api)
    intents = [r[2] for r in stripe_api.stripe.requests if r[1] == "/v1/payment_intents"]
    assert len(intents) == 1
    sent = intents[0]
    assert (sent["amount"], sent["off_session"], sent["confirm"], sent["payment_method"]) == (
        "10000",
        "true",
        "true",
        "pm_card_visa",
    )
    assert stripe_api.escrow.hourly.week(contract_id, date(2026, 11, 30)).state == "in_review"
    assert stripe_api.book.audit().ok


def test_a_weekly_charge_of_a_customer_without_a_saved_method_fails_without_a_payment_intent(
    stripe_api: StripeApi,
) -> None:
    stripe_api.stripe.add_customer("cus_acme", None)
    contract_id = hourly_week_closed(stripe_api)
    assert not [r for r in stripe_api.stripe.requests if r[1] == "/v1/payment_intents"]
    week = stripe_api.escrow.hourly.week(contract_id, date(2026, 11, 30))
    assert week.state == "past_due"
    assert "no default payment method" in (week.failure_reason or "")
    assert stripe_api.book.audit().ok
