"""The authorization matrix: every route of the app, for every role, without a key and with bad keys.

Routes are enumerated from the application itself, so a new route is covered (or
fails `test_every_api_route_belongs_to_a_family_of_the_matrix`) without editing
this file's request list. The matrix is issue 6's:

- marketplace: escrow, balances, payouts, parties, fees
- finance: fees, finance (accounts, statements, reports, invoices), audit and journal
- auditor: audit and journal only
- admin: every route

No key, an unknown key, a revoked key or another scheme than Bearer → 401; a role
the route does not allow → 403; an allowed role gets past authorization (any
answer but 401/403, and never a 500 internal error: the placeholder ids make 404 and
422 normal, and a route whose provider is not configured may say 503).
`/health/*` and `/schema*` stay open.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from httpx import Response
from litestar.routes import HTTPRoute

from ledger.api.keys import create_key, revoke_key
from tests.e2e.conftest import Api

ROLES = ("marketplace", "finance", "auditor", "admin")
OPEN_PREFIXES = ("/health", "/schema")
#: Provider webhooks are signed instead of keyed; they are outside the API-key matrix.
SIGNED_PREFIXES = ("/v1/webhooks",)

#: Each API route belongs to one family, by path prefix.
FAMILIES = {
    "/v1/contracts": "escrow",
    "/v1/milestones": "escrow",
    "/v1/payments": "escrow",
    "/v1/freelancers": "balances and payouts",
    "/v1/payouts": "balances and payouts",
    "/v1/parties": "parties",
    "/v1/fees": "fees",
    "/v1/accounts": "finance",
    "/v1/reports": "finance",
    "/v1/invoices": "finance",
    "/v1/audit": "audit and journal",
    "/v1/journal": "audit and journal",
    "/v1/payment-orders": "operators",
}
#: Routes that belong to another family than their prefix's.
ROUTE_FAMILIES = {"/v1/parties/{party_id:str}/statement": "party statements"}
ALLOWED = {
    "marketplace": {"escrow", "balances and payouts", "parties", "fees", "party statements"},
    "finance": {"fees", "finance", "audit and journal", "party statements"},
    "auditor": {"audit and journal"},
    "admin": set(FAMILIES.values()) | set(ROUTE_FAMILIES.values()) | {"operators"},
}

#: Placeholder path parameters: well-formed, naming nothing that exists.
PLACEHOLDERS = {
    "contract_id": "ct_0000000000000000",
    "milestone_id": "ms_0000000000000000",
    "payment_id": "py_0000000000000000",
    "payout_id": "po_0000000000000000",
    "freelancer_id": "fr_nobody",
    "party_id": "pt_nobody",
    "code": "revenue:fees:service",
    "number": "INV-2026-999999",
    "segment_id": "1",
    "monday": "2026-11-30",
    "bonus_id": "bn_0000000000000000",
    "order_id": "ord_0000000000000000",
}
#: Query parameters that let the routes that need them get past validation.
QUERY = {
    "currency": "USD",
    "from": "2026-01-01T00:00:00Z",
    "to": "2026-02-01T00:00:00Z",
    "as_of": "2026-02-01T00:00:00Z",
    "freelancer_id": "fr_nobody",
    "client_id": "cl_nobody",
    "amount": "10.00",
    "role": "client",
}
PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")


#: Routes only operators may use, whatever their prefix's family.
OPERATOR_ROUTES = {"/v1/contracts/{contract_id:str}/weeks/{monday:str}/dispute/resolve"}


def family(path: str) -> str | None:
    if path in OPERATOR_ROUTES:
        return "operators"
    if path in ROUTE_FAMILIES:
        return ROUTE_FAMILIES[path]
    for prefix, name in FAMILIES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return name
    return None


def api_routes(api: Api) -> list[tuple[str, str]]:
    """(method, path template) of every keyed route of the app, OPTIONS and HEAD aside."""
    found = set()
    for route in api.client.app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(OPEN_PREFIXES + SIGNED_PREFIXES):
            continue
        for method in route.methods - {"OPTIONS", "HEAD"}:
            found.add((method, route.path))
    return sorted(found)


def concrete(path: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in PLACEHOLDERS, f"no placeholder for path parameter {name!r} in {path}"
        return PLACEHOLDERS[name]

    return PARAMETER.sub(fill, path)


def call(api: Api, method: str, path: str, headers: dict[str, str]) -> Response:
    body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
    return api.client.request(method, concrete(path), params=QUERY, json=body, headers=headers)


def is_problem(response: Response, status: int) -> bool:
    return (
        response.status_code == status
        and response.headers.get("content-type", "").startswith("application/problem+json")
        and response.json().get("status") == status
    )


def refused_everywhere(api: Api, headers: dict[str, str]) -> list[str]:
    """Routes that did not answer 401 problem+json with a Bearer challenge."""
    wrong = []
    for method, path in api_routes(api):
        response = call(api, method, path, headers)
        challenge = response.headers.get("www-authenticate", "")
        if not is_problem(response, 401) or not challenge.lower().startswith("bearer"):
            wrong.append(f"{method} {path}: {response.status_code} {response.text[:120]}")
    return wrong


# --- the route table -----------------------------------------------------------------------------


def test_every_api_route_belongs_to_a_family_of_the_matrix(api: Api) -> None:
    routes = api_routes(api)
    assert len(routes) >= 29  # every endpoint of issue 6
    assert [f"{m} {p}" for m, p in routes if family(p) is None] == []


# --- no key, bad keys ------------------------------------------------------------------------------


def test_without_a_key_every_route_is_401_problem_json(api: Api) -> None:
    assert refused_everywhere(api, {}) == []


def test_with_an_unknown_key_every_route_is_401(api: Api) -> None:
    assert refused_everywhere(api, {"Authorization": "Bearer lk_adm_this-key-was-never-issued"}) == []


def test_with_an_empty_bearer_token_every_route_is_401(api: Api) -> None:
    assert refused_everywhere(api, {"Authorization": "Bearer "}) == []


def test_with_another_scheme_than_bearer_every_route_is_401(api: Api) -> None:
    assert refused_everywhere(api, {"Authorization": f"Basic {api.keys['admin']}"}) == []


def test_a_revoked_key_is_401_on_every_route(api: Api) -> None:
    record, key = api.book.transaction(lambda uow: create_key(uow, "admin"))
    assert api.client.get("/v1/audit", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    api.book.transaction(lambda uow: revoke_key(uow, record.id))

    assert refused_everywhere(api, {"Authorization": f"Bearer {key}"}) == []


# --- roles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_use_exactly_the_routes_of_its_families(api: Api, role: str) -> None:
    wrong = []
    for method, path in api_routes(api):
        response = call(api, method, path, api.headers(role))
        allowed = family(path) in ALLOWED[role]
        if allowed and response.status_code in (401, 403, 500):
            wrong.append(f"{role} may use {method} {path}, got {response.status_code} {response.text[:120]}")
        if not allowed and not is_problem(response, 403):
            wrong.append(f"{role} may not use {method} {path}, got {response.status_code} {response.text[:120]}")
    assert wrong == []


def test_a_forbidden_role_learns_nothing_about_the_resource(api: Api) -> None:
    response = api.client.get("/v1/milestones/ms_0000000000000000", headers=api.headers("auditor"))
    refused = response.json()
    assert is_problem(response, 403)
    assert refused["type"] == "urn:ledger:problem:http-403"
    assert "ms_0000000000000000" not in refused.get("detail", "")


def test_provider_webhooks_ask_for_a_signature_not_an_api_key(api: Api) -> None:
    webhooks = [
        (method, route.path)
        for route in api.client.app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith(SIGNED_PREFIXES)
        for method in route.methods - {"OPTIONS", "HEAD"}
    ]
    answers = {path: api.client.request(method, path, content=b"{}").status_code for method, path in webhooks}
    assert [path for path, status in answers.items() if status in (401, 403)] == []


# --- open routes -------------------------------------------------------------------------------------

OPEN = ["/health/live", "/health/ready", "/schema", "/schema/openapi.json", "/schema/swagger", "/schema/scalar"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer lk_adm_this-key-was-never-issued"}, {"Authorization": "Basic abc"}],
    ids=["no key", "unknown key", "basic auth"],
)
def test_health_and_schema_routes_stay_open_whatever_the_authorization_header(
    api: Api, headers: dict[str, str]
) -> None:
    answers = {path: api.client.get(path, headers=headers).status_code for path in OPEN}
    assert answers == dict.fromkeys(OPEN, 200)
