"""Who did what, and the operators' payment-order routes, over HTTP on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ledger.actors import WORKER, acting_as
from ledger.api.keys import list_keys
from ledger.escrow.service import Escrow
from ledger.gateway import GatewayUnavailable
from tests.e2e.conftest import Api
from tests.e2e.test_finance_api import ok, post, release, usd


def key_id(api: Api, role: str) -> str:
    [key] = [k for k in api.book.transaction(list_keys, read_only=True) if k.role == role]
    return key.id


def admin_post(api: Api, path: str, body: Any = None, key: str = "op-1") -> Any:
    return api.client.post(path, json=body, headers=api.headers("admin", **{"Idempotency-Key": key}))


@pytest.fixture
def provider_down(api: Api, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """While it holds "refunds", the provider times out on every refund."""
    down: set[str] = set()
    refund = api.gateway.refund

    def failing(**request: Any) -> Any:
        if "refunds" in down:
            raise GatewayUnavailable("the provider times out")
        return refund(**request)

    monkeypatch.setattr(api.gateway, "refund", failing)
    return down


def test_entries_name_the_key_that_booked_them_and_the_worker_names_itself(api: Api) -> None:
    marketplace = key_id(api, "marketplace")
    payment = release(api, "1000.00")
    api.clock.advance(timedelta(days=6))
    with acting_as(WORKER):
        Escrow(api.book, api.gateway).orders.tick()  # the security period ends: the worker's entry
    journal = ok(api.client.get("/v1/journal", headers=api.headers("auditor")))
    actors = {(e["kind"], e["actor"]) for e in journal["data"]}
    assert {("escrow.fund", marketplace), ("escrow.release", marketplace), ("escrow.available", WORKER)} <= actors
    statement = ok(
        api.client.get(
            "/v1/parties/fr_1/statement",
            params={"role": "freelancer", "currency": "USD", "from": "2026-01-01", "to": "2027-01-01"},
            headers=api.headers(),
        )
    )
    assert [(line["kind"], line["actor"]) for line in statement["lines"]] == [
        ("escrow.release", marketplace),
        ("escrow.available", WORKER),
        ("escrow.available", WORKER),
    ]
    assert payment
    assert api.book.audit().ok


def test_operators_list_retry_and_resolve_payment_orders_over_http(api: Api, provider_down: set[str]) -> None:
    marketplace, admin = key_id(api, "marketplace"), key_id(api, "admin")
    payment = release(api, "1000.00")
    provider_down.add("refunds")
    refund = api.client.post(f"/v1/payments/{payment}/refunds", json={"amount": usd("100.00")}, headers=api.headers())
    assert refund.status_code == 201, refund.text
    escrow = Escrow(api.book, api.gateway)
    for _ in range(8):  # the provider stays down: the worker gives the order up
        api.clock.advance(timedelta(hours=2))
        with acting_as(WORKER):
            escrow.orders.tick()

    listed = ok(api.client.get("/v1/payment-orders", params={"state": "failed"}, headers=api.headers("admin")))
    [failed] = listed["orders"]
    assert (failed["kind"], failed["actor"], failed["amount"]) == ("refund", marketplace, usd("100.00"))
    assert failed["failure_reason"].startswith("gave up") and failed["age_seconds"] >= 16 * 3600
    older = ok(api.client.get("/v1/payment-orders", params={"older_than": "17h"}, headers=api.headers("admin")))
    assert failed["id"] not in [o["id"] for o in older["orders"]]
    bad = api.client.get("/v1/payment-orders", params={"older_than": "soon"}, headers=api.headers("admin"))
    assert bad.status_code == 422 and bad.json()["field"] == "older_than"
    everything = ok(api.client.get("/v1/payment-orders", headers=api.headers("admin")))
    assert len(everything["orders"]) >= 2 and everything["more"] is False
    first = ok(api.client.get("/v1/payment-orders", params={"limit": 1}, headers=api.headers("admin")))
    assert first["orders"] == everything["orders"][:1] and first["more"] is True  # the oldest, and more
    for params, field in (({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"state": "lost"}, "state")):
        refused_listing = api.client.get("/v1/payment-orders", params=params, headers=api.headers("admin"))
        assert refused_listing.status_code == 422 and refused_listing.json()["field"] == field, params
    # Resolving as succeeded needs the provider to confirm the reference; nothing changes otherwise.
    refused = admin_post(
        api, f"/v1/payment-orders/{failed['id']}/resolve", {"outcome": "succeeded", "reference": "re_made_up"}
    )
    assert refused.status_code == 409, refused.text
    missing = admin_post(api, f"/v1/payment-orders/{failed['id']}/resolve", {"outcome": "failed"}, key="op-2")
    assert missing.status_code == 422 and missing.json()["field"] == "reason"

    provider_down.clear()
    retried = ok(admin_post(api, f"/v1/payment-orders/{failed['id']}/retry", key="op-3"))
    assert retried["state"] == "succeeded"
    again = ok(admin_post(api, f"/v1/payment-orders/{failed['id']}/retry", key="op-3"))  # a replay
    assert again == retried
    order = ok(api.client.get(f"/v1/payment-orders/{failed['id']}", headers=api.headers("admin")))
    assert [(c["state"], c["actor"]) for c in order["history"]] == [
        ("pending", marketplace),  # written by the refund request,
        ("sent", marketplace),  # which sent it itself after its commit
        ("failed", WORKER),  # given up by the worker
        ("pending", admin),  # the operator's retry: the provider is searched, then it is sent
        ("sent", admin),
        ("succeeded", admin),
    ]
    assert api.book.balance("liabilities:refunds:in_transit", "USD") == 0
    for role in ("marketplace", "finance", "auditor"):
        assert api.client.get("/v1/payment-orders", headers=api.headers(role)).status_code == 403
    assert api.book.audit().ok


def test_contracts_milestones_and_payouts_show_who_moved_them_through_their_states(api: Api) -> None:
    marketplace = key_id(api, "marketplace")
    contract = ok(
        post(api, "/v1/contracts", {"client_id": "cl_1", "freelancer_id": "fr_1", "currency": "USD", "title": "Logo"}),
        201,
    )
    milestone = ok(
        post(api, f"/v1/contracts/{contract['id']}/milestones", {"title": "Draft", "amount": usd("200.00")}), 201
    )
    ok(post(api, f"/v1/milestones/{milestone['id']}/fund"))
    ok(post(api, f"/v1/milestones/{milestone['id']}/submit"))
    api.clock.advance(timedelta(days=15))  # the client stays silent: the worker releases it
    escrow = Escrow(api.book, api.gateway)
    with acting_as(WORKER):
        escrow.orders.tick()
    api.clock.advance(timedelta(days=6))
    with acting_as(WORKER):
        escrow.orders.tick()  # the pending period ends
    payout = ok(post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("100.00")}), 201)
    ok(post(api, f"/v1/contracts/{contract['id']}/end", {"ended_by": "client"}))

    def history(path: str) -> list[tuple[str, str]]:
        read = ok(api.client.get(path, headers=api.headers("marketplace")))
        return [(change["state"], change["actor"]) for change in read["history"]]

    assert history(f"/v1/milestones/{milestone['id']}/history") == [
        ("draft", marketplace),
        ("funding", marketplace),  # the charge's order written,
        ("funded", marketplace),  # and sent by the request after its commit
        ("submitted", marketplace),
        ("released", WORKER),  # 14 days of silence
    ]
    assert history(f"/v1/contracts/{contract['id']}/history") == [
        ("open", marketplace),
        ("ended_by_client", marketplace),
    ]
    assert history(f"/v1/payouts/{payout['id']}/history")[0] == ("in_transit", marketplace)
    missing = api.client.get("/v1/milestones/ms_nope/history", headers=api.headers("marketplace"))
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
