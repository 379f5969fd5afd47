"""Our Stripe gateway against localstripe, end to end through the HTTP API.

An independent check of the Stripe requests we make: localstripe (see
tests/localstripe_server.py) is a fake Stripe written by others, which validates
parameters, keeps state, runs the test cards and signs webhooks. What each test
checks at Stripe is read back from localstripe with the SDK directly, never from
our own records. Idempotency replay, reconciliation, transfers, fees and disputes
are not served by localstripe; tests/e2e/test_stripe.py and test_stripe_disputes.py cover
them with our stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import stripe
from litestar.testing import TestClient
from sqlalchemy import func, select

from ledger import FixedClock, Ledger
from ledger.api.app import create_app
from ledger.api.keys import create_key
from ledger.bootstrap import Services
from ledger.db.schema import entries, provider_events, refund_orders
from ledger.escrow.orders import OrderKind
from ledger.gateway.stripe_gateway import StripeGateway
from ledger.journal import Entry
from tests.e2e.stripe_api import new_milestone
from tests.localstripe_server import (
    DECLINED_AT_CHARGE,
    NEEDS_3DS,
    VISA,
    Delivery,
    LocalStripe,
    WebhookRelay,
    localstripe_with_relay,
)

SECRET = "whsec_localstripe_relay"
API_KEY = "sk_test_local"
EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed")


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStripe, WebhookRelay]]:
    """One localstripe (and webhook relay) for the whole session; each test resets its data."""
    if not LocalStripe.installed():
        # A declared test dependency (pyproject.toml): missing means a broken install, not a reason to skip.
        pytest.fail("localstripe is not installed next to this Python (pip install -e '.[test]')", pytrace=False)
    log = tmp_path_factory.mktemp("localstripe") / "localstripe.log"
    with localstripe_with_relay(log, SECRET, EVENTS) as running:
        yield running


@dataclass
class LocalApi:
    client: TestClient  # type: ignore[type-arg]
    book: Ledger
    gateway: StripeGateway
    server: LocalStripe
    relay: WebhookRelay
    sdk: stripe.StripeClient  # our own view of localstripe, independent of the gateway
    customer: str
    visa: str  # a card attached to the customer
    headers: dict[str, str]

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(path, json=body, headers=self.headers)

    def milestone(self, milestone_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/milestones/{milestone_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def card(self, number: str) -> str:
        """A card payment method at localstripe, attached to the client's customer."""
        method = self.sdk.v1.payment_methods.create(
            params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
        )
        self.sdk.v1.payment_methods.attach(method.id, params={"customer": self.customer})
        return method.id

    def intent(self, intent_id: str) -> dict[str, Any]:
        """The PaymentIntent as localstripe has it, latest charge expanded."""
        found: dict[str, Any] = self.sdk.v1.payment_intents.retrieve(intent_id).to_dict()
        return found

    def intent_ids(self) -> list[str]:
        return [intent.id for intent in self.sdk.v1.payment_intents.list().data]

    def deliver(self, delivery: Delivery, *, body: bytes | None = None) -> Any:
        """Post a webhook delivery to our API as localstripe sent it (or with another body)."""
        headers = {"Content-Type": delivery.content_type or "application/json"}
        if delivery.signature is not None:
            headers["Stripe-Signature"] = delivery.signature
        return self.client.post("/v1/webhooks/stripe", content=delivery.body if body is None else body, headers=headers)

    def count(self, table: Any) -> int:
        return self.book.transaction(
            lambda uow: int(uow.connection.execute(select(func.count()).select_from(table)).scalar_one())
        )

    def funding_entry(self) -> Entry:
        [entry] = [e for e in self.book.journal(limit=100).entries if e.kind == "escrow.fund"]
        return entry


@pytest.fixture
def ls(book: Ledger, clock: FixedClock, localstripe: tuple[LocalStripe, WebhookRelay]) -> Iterator[LocalApi]:
    server, relay = localstripe
    server.reset()
    relay.clear()
    sdk = stripe.StripeClient(API_KEY, base_addresses={"api": server.url}, max_network_retries=0)
    customer = sdk.v1.customers.create(params={"name": "Acme", "email": "billing@acme.example"}).id
    gateway = StripeGateway(API_KEY, api_base=server.url, max_network_retries=1, timeout=10.0)
    _, key = book.transaction(lambda uow: create_key(uow, "marketplace"))
    app = create_app(Services.over(book, gateway), stripe_webhook_secret=SECRET)
    with TestClient(app) as client:
        api = LocalApi(client, book, gateway, server, relay, sdk, customer, "", {"Authorization": f"Bearer {key}"})
        api.visa = api.card(VISA)
        for party, body in (
            ("cl_1", {"display_name": "Acme", "provider_id": customer}),
            ("fr_1", {"display_name": "Ada", "provider_id": "acct_ada"}),
        ):
            response = client.put(f"/v1/parties/{party}", json=body, headers=api.headers)
            assert response.status_code in (200, 201), response.text
        yield api


def start_3ds_funding(api: LocalApi, milestone_id: str) -> tuple[str, str]:
    """Fund with a 3-D Secure card; returns (PaymentIntent id, client secret)."""
    pending = api.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": api.card(NEEDS_3DS)})
    assert pending.status_code == 200, pending.text
    body = pending.json()
    assert body["status"] == "requires_action" and body["milestone"]["state"] == "funding"
    secret = str(body["client_secret"])
    intent_id = secret.split("_secret_")[0]  # Stripe's client secrets are "<pi id>_secret_<random>"
    assert api.intent_ids() == [intent_id]
    assert api.intent(intent_id)["status"] == "requires_action"
    assert api.milestone(milestone_id)["state"] == "funding"
    return intent_id, secret


def test_funding_creates_a_captured_payment_intent_that_localstripe_accepts(ls: LocalApi) -> None:
    milestone_id = new_milestone(ls)
    contract_id = ls.milestone(milestone_id)["contract_id"]
    assert ls.gateway.transfer_groups is True
    funded = ls.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": ls.visa})
    assert funded.status_code == 200, funded.text
    assert funded.json()["status"] == "succeeded"
    assert funded.json()["milestone"]["state"] == "funded"
    assert funded.json()["milestone"]["held"] == {"amount": "1000.00", "currency": "USD"}

    entry = ls.funding_entry()
    intent_id = entry.refs["gateway_reference"]
    assert ls.intent_ids() == [intent_id]  # one PaymentIntent: the refused first try created nothing
    intent = ls.intent(intent_id)
    assert intent["amount"] == 100000 and intent["currency"] == "usd"
    assert intent["customer"] == ls.customer and intent["payment_method"] == ls.visa
    assert intent["status"] == "succeeded" and intent["capture_method"] == "automatic"
    metadata = dict(intent["metadata"])
    assert metadata.pop("order").startswith("ord_")  # the payment order that made it
    assert metadata == {
        "contract": contract_id,
        "milestone": milestone_id,
        "funding_key": entry.idempotency_key.removeprefix("escrow.fund:"),
    }
    charge = intent["latest_charge"]
    assert charge["captured"] is True and charge["amount"] == 100000 and charge["status"] == "succeeded"
    # localstripe refuses transfer_group on a PaymentIntent ("Unexpected transfer_group");
    # the gateway retried without it and remembers.
    assert ls.gateway.transfer_groups is False
    assert "transfer_group" not in intent or not intent["transfer_group"]
    # localstripe's balance transaction keeps no fee: the whole payment is at the PSP.
    assert ls.book.balance("assets:psp:stripe", "USD") == 100000
    assert ls.book.balance("expenses:psp_fees", "USD") == 0
    assert ls.book.audit().ok


def test_a_declined_card_returns_the_milestone_to_draft_with_the_reason_and_books_nothing(ls: LocalApi) -> None:
    milestone_id = new_milestone(ls)
    declined = ls.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": ls.card(DECLINED_AT_CHARGE)})
    assert declined.status_code == 200, declined.text
    body = declined.json()
    assert body["status"] == "failed" and body["milestone"]["state"] == "draft"
    [intent_id] = ls.intent_ids()
    intent = ls.intent(intent_id)
    assert intent["status"] == "requires_payment_method"
    reason = intent["last_payment_error"]["message"]
    assert reason == "Your card was declined."
    assert body["failure_reason"] == reason and body["milestone"]["failure_reason"] == reason
    assert ls.count(entries) == 0
    # localstripe also sends payment_intent.payment_failed; acting on it changes nothing.
    late = ls.deliver(ls.relay.wait_for("payment_intent.payment_failed", intent_id))
    assert late.status_code == 200, late.text
    assert late.json()["outcome"] == f"milestone {milestone_id} back to draft"
    assert ls.milestone(milestone_id)["state"] == "draft"
    assert ls.milestone(milestone_id)["failure_reason"] == reason
    assert ls.count(entries) == 0


def test_3ds_funding_waits_for_localstripes_signed_webhook_and_a_redelivery_changes_nothing(ls: LocalApi) -> None:
    milestone_id = new_milestone(ls)
    intent_id, secret = start_3ds_funding(ls, milestone_id)
    assert ls.count(entries) == 0
    authenticated = ls.server.authenticate(intent_id, secret, success=True)
    assert authenticated["status"] == "succeeded"

    delivery = ls.relay.wait_for("payment_intent.succeeded", intent_id)
    assert delivery.signature is not None and delivery.signature.startswith("t=") and ",v1=" in delivery.signature
    first = ls.deliver(delivery)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "outcome": f"milestone {milestone_id} funded"}
    milestone = ls.milestone(milestone_id)
    assert milestone["state"] == "funded"
    assert milestone["held"] == {"amount": "1000.00", "currency": "USD"}
    assert ls.funding_entry().refs["gateway_reference"] == intent_id
    entries_after = ls.count(entries)
    assert entries_after >= 1

    again = ls.deliver(delivery)
    assert again.status_code == 200, again.text
    assert again.json()["outcome"] == "duplicate"
    assert ls.count(entries) == entries_after
    assert ls.count(provider_events) == 1
    assert ls.milestone(milestone_id)["held"] == {"amount": "1000.00", "currency": "USD"}
    assert ls.book.audit().ok


def test_a_failed_3ds_authentication_returns_the_milestone_to_draft_with_the_reason(ls: LocalApi) -> None:
    milestone_id = new_milestone(ls)
    intent_id, secret = start_3ds_funding(ls, milestone_id)
    failed = ls.server.authenticate(intent_id, secret, success=False)
    assert failed["status"] == "requires_payment_method"
    reason = failed["last_payment_error"]["message"]
    assert reason == "The provided PaymentMethod has failed authentication."
    # localstripe sends no payment_intent.payment_failed for a failed authentication
    # (Stripe does); the next fund call asks Stripe how the PaymentIntent stands.
    retried = ls.post(f"/v1/milestones/{milestone_id}/fund")
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert body["status"] == "failed"
    assert body["milestone"]["state"] == "draft"
    assert body["milestone"]["failure_reason"] == reason
    assert ls.intent_ids() == [intent_id]  # asked about the PaymentIntent, created no other
    assert ls.count(entries) == 0
    assert ls.book.audit().ok


def test_a_refund_from_escrow_is_a_localstripe_refund_of_the_original_payment_intent(ls: LocalApi) -> None:
    milestone_id = new_milestone(ls)
    funded = ls.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": ls.visa})
    assert funded.json()["milestone"]["state"] == "funded", funded.text
    intent_id = ls.funding_entry().refs["gateway_reference"]
    contract_id = ls.milestone(milestone_id)["contract_id"]

    ended = ls.post(f"/v1/contracts/{contract_id}/end", {"ended_by": "freelancer"})
    assert ended.status_code == 200, ended.text

    [refund] = [r.to_dict() for r in ls.sdk.v1.refunds.list(params={"payment_intent": intent_id}).data]
    assert refund["payment_intent"] == intent_id
    assert refund["amount"] == 100000 and refund["currency"] == "usd" and refund["status"] == "succeeded"
    [order] = ls.book.transaction(lambda uow: [row._asdict() for row in uow.connection.execute(select(refund_orders))])
    [payment_order] = ls.book.transaction(lambda uow: uow.orders.of_milestone(milestone_id, kinds=(OrderKind.REFUND,)))
    assert refund["metadata"] == {"refund_order": order["id"], "order": payment_order.id}
    assert order["state"] == "succeeded" and order["gateway_reference"] == refund["id"]
    assert order["charge_reference"] == intent_id and order["amount"] == 100000

    milestone = ls.milestone(milestone_id)
    assert milestone["state"] == "refunded"
    assert milestone["held"] == {"amount": "0.00", "currency": "USD"}
    assert ls.book.balance("liabilities:refunds:in_transit", "USD") == 0
    assert ls.book.balance("assets:psp:stripe", "USD") == 0  # paid in, refunded out, no fee at localstripe
    assert ls.book.audit().ok


def test_a_webhook_altered_after_localstripe_signed_it_is_refused_and_not_recorded(ls: LocalApi) -> None:
    milestone_id = new_milestone(ls)
    funded = ls.post(f"/v1/milestones/{milestone_id}/fund", {"payment_method": ls.visa})
    assert funded.json()["milestone"]["state"] == "funded", funded.text
    intent_id = ls.funding_entry().refs["gateway_reference"]
    delivery = ls.relay.wait_for("payment_intent.succeeded", intent_id)
    altered = delivery.body.replace(b'"amount": 100000', b'"amount": 1')
    assert altered != delivery.body
    entries_before = ls.count(entries)

    refused = ls.deliver(delivery, body=altered)
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "signature" in refused.json()["detail"]
    assert ls.count(provider_events) == 0
    assert ls.count(entries) == entries_before

    # The same delivery unaltered verifies: it was the alteration that was refused.
    genuine = ls.deliver(delivery)
    assert genuine.status_code == 200, genuine.text
    assert ls.count(provider_events) == 1
    assert ls.count(entries) == entries_before  # already funded: books nothing more
    assert ls.milestone(milestone_id)["held"] == {"amount": "1000.00", "currency": "USD"}
