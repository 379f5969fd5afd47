"""Idempotency-Key replays and conflicts, and bad input, over HTTP.

Every POST takes an `Idempotency-Key`: a replay with the same body gets the first
response (status and body) again and changes nothing; the same key with another
body (or on another route) is a 409. Bad bodies and parameters get 4xx problem
details (`application/problem+json`) naming the field, write nothing, and never a 500.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from httpx import Response
from sqlalchemy import text

from ledger.escrow.timers import tick
from tests.e2e.conftest import Api

PROBLEM_JSON = "application/problem+json"
#: Every table the ledger writes business data to (API keys and recorded requests aside).
TABLES = (
    "entries",
    "postings",
    "balances",
    "accounts",
    "fee_events",
    "lifetime_billings",
    "payment_refunds",
    "payments",
    "milestones",
    "contracts",
    "payouts",
    "timers",
    "documents",
    "parties",
)


# --- helpers ------------------------------------------------------------------------------------------


def usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


def post(api: Api, path: str, body: Any = None, key: str | None = None) -> Response:
    headers = api.headers() if key is None else api.headers(**{"Idempotency-Key": key})
    if body is None:
        return api.client.post(path, headers=headers)
    return api.client.post(path, json=body, headers=headers)


def ok(response: Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def client_error(response: Response) -> dict[str, Any]:
    """A 4xx problem details response."""
    assert 400 <= response.status_code < 500, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers["content-type"]
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("urn:ledger:problem:")
    assert body["title"]
    return body


def written(api: Api) -> dict[str, Any]:
    """What the ledger holds: row counts, the balance total and the gateway's calls."""

    def read(uow: Any) -> dict[str, Any]:
        counts = {t: int(uow.connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES}
        return counts

    state = api.book.transaction(read, read_only=True)
    state["gateway calls"] = len(api.gateway.calls)
    state["fr_1 balance"] = ok(api.client.get("/v1/freelancers/fr_1/balance?currency=USD", headers=api.headers()))
    return state


def open_contract(api: Api, client: str = "cl_1", freelancer: str = "fr_1") -> str:
    body = {"client_id": client, "freelancer_id": freelancer, "currency": "USD", "title": "Logo design"}
    return str(ok(post(api, "/v1/contracts", body), 201)["id"])


def add_milestone(api: Api, contract_id: str, amount: str = "1000.00") -> str:
    return str(
        ok(post(api, f"/v1/contracts/{contract_id}/milestones", {"title": "Draft", "amount": usd(amount)}), 201)["id"]
    )


def funded_milestone(api: Api, amount: str = "1000.00") -> str:
    milestone_id = add_milestone(api, open_contract(api), amount)
    assert ok(post(api, f"/v1/milestones/{milestone_id}/fund"))["milestone"]["state"] == "funded"
    return milestone_id


def released_payment(api: Api, amount: str = "1000.00") -> str:
    milestone_id = funded_milestone(api, amount)
    [payment] = ok(post(api, f"/v1/milestones/{milestone_id}/approve"))["payments"]
    return str(payment["id"])


def milestone(api: Api, milestone_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(api.client.get(f"/v1/milestones/{milestone_id}", headers=api.headers()))
    return found


def same_answer(first: Response, replay: Response) -> None:
    assert replay.status_code == first.status_code
    assert replay.headers["content-type"] == first.headers["content-type"]
    assert replay.content == first.content


# --- replays ----------------------------------------------------------------------------------------------


def test_a_replayed_contract_creation_returns_the_same_contract_and_opens_no_other(api: Api) -> None:
    body = {"client_id": "cl_1", "freelancer_id": "fr_1", "currency": "USD", "title": "Logo design"}
    first = post(api, "/v1/contracts", body, key="open-logo-contract")
    assert first.status_code == 201
    before = written(api)

    same_answer(first, post(api, "/v1/contracts", body, key="open-logo-contract"))
    assert written(api) == before
    assert before["contracts"] == 1


def test_requests_without_a_key_are_not_deduplicated(api: Api) -> None:
    assert open_contract(api) != open_contract(api)
    assert written(api)["contracts"] == 2


def test_a_replayed_funding_returns_the_first_answer_and_charges_the_client_once(api: Api) -> None:
    milestone_id = add_milestone(api, open_contract(api))
    first = post(api, f"/v1/milestones/{milestone_id}/fund", key="fund-1")
    assert ok(first)["milestone"]["held"] == usd("1000.00")
    before = written(api)

    same_answer(first, post(api, f"/v1/milestones/{milestone_id}/fund", key="fund-1"))
    assert written(api) == before
    assert before["gateway calls"] == 1


def test_a_replayed_partial_approval_does_not_release_twice(api: Api) -> None:
    milestone_id = funded_milestone(api)
    first = post(api, f"/v1/milestones/{milestone_id}/approve", {"amount": usd("300.00")}, key="approve-300")
    assert ok(first)["held"] == usd("700.00")
    before = written(api)

    for _ in range(2):
        same_answer(
            first, post(api, f"/v1/milestones/{milestone_id}/approve", {"amount": usd("300.00")}, key="approve-300")
        )
    assert written(api) == before
    assert milestone(api, milestone_id)["held"] == usd("700.00")
    assert len(milestone(api, milestone_id)["payments"]) == 1
    assert before["fr_1 balance"]["pending"] == usd("240.00")


def test_a_replayed_full_approval_releases_once_and_answers_as_the_first_time(api: Api) -> None:
    milestone_id = funded_milestone(api)
    first = post(api, f"/v1/milestones/{milestone_id}/approve", key="approve-all")
    assert ok(first)["state"] == "released"
    before = written(api)

    same_answer(first, post(api, f"/v1/milestones/{milestone_id}/approve", key="approve-all"))
    assert written(api) == before
    assert before["fr_1 balance"]["pending"] == usd("850.00")


def test_a_replayed_bonus_approval_charges_and_pays_the_bonus_once(api: Api) -> None:
    milestone_id = funded_milestone(api)
    first = post(api, f"/v1/milestones/{milestone_id}/approve", {"amount": usd("1200.00")}, key="bonus")
    assert len(ok(first)["payments"]) == 2
    before = written(api)

    same_answer(first, post(api, f"/v1/milestones/{milestone_id}/approve", {"amount": usd("1200.00")}, key="bonus"))
    assert written(api) == before
    assert before["fr_1 balance"]["pending"] == usd("1030.00")


def test_a_replayed_payout_pays_out_once(api: Api) -> None:
    released_payment(api)
    api.clock.advance(timedelta(days=5))
    tick(api.book)
    first = post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("500.00")}, key="payout-1")
    assert first.status_code == 201
    before = written(api)

    same_answer(first, post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("500.00")}, key="payout-1"))
    assert written(api) == before
    assert before["fr_1 balance"]["available"] == usd("350.00")


def test_a_replayed_refund_after_release_refunds_once(api: Api) -> None:
    payment_id = released_payment(api)
    first = post(api, f"/v1/payments/{payment_id}/refunds", {"amount": usd("100.00")}, key="refund-1")
    assert first.status_code == 201
    before = written(api)

    same_answer(first, post(api, f"/v1/payments/{payment_id}/refunds", {"amount": usd("100.00")}, key="refund-1"))
    assert written(api) == before
    assert before["fr_1 balance"]["pending"] == usd("760.00")


def test_a_replayed_refusal_gets_the_same_refusal_even_after_the_state_changed(api: Api) -> None:
    milestone_id = add_milestone(api, open_contract(api))
    first = post(api, f"/v1/milestones/{milestone_id}/submit", key="submit-1")
    assert client_error(first)["type"] == "urn:ledger:problem:invalid-transition"
    ok(post(api, f"/v1/milestones/{milestone_id}/fund"))
    before = written(api)

    same_answer(first, post(api, f"/v1/milestones/{milestone_id}/submit", key="submit-1"))
    assert written(api) == before
    assert milestone(api, milestone_id)["state"] == "funded"


# --- conflicts -------------------------------------------------------------------------------------------


def test_the_same_key_with_another_body_is_409_and_changes_nothing(api: Api) -> None:
    milestone_id = funded_milestone(api)
    ok(post(api, f"/v1/milestones/{milestone_id}/approve", {"amount": usd("300.00")}, key="approve-k"))
    before = written(api)

    conflict = post(api, f"/v1/milestones/{milestone_id}/approve", {"amount": usd("200.00")}, key="approve-k")
    assert conflict.status_code == 409
    assert client_error(conflict)["type"] == "urn:ledger:problem:idempotency-conflict"
    assert written(api) == before
    assert milestone(api, milestone_id)["held"] == usd("700.00")


def test_the_same_key_on_another_route_is_409_and_changes_nothing(api: Api) -> None:
    contract_id = open_contract(api)
    ok(post(api, f"/v1/contracts/{contract_id}/milestones", {"title": "A", "amount": usd("10.00")}, key="k-1"), 201)
    before = written(api)

    conflict = post(api, f"/v1/contracts/{contract_id}/end", {"ended_by": "client"}, key="k-1")
    assert conflict.status_code == 409
    assert client_error(conflict)["type"] == "urn:ledger:problem:idempotency-conflict"
    assert written(api) == before


def test_the_same_key_for_another_milestone_is_409_and_leaves_it_unfunded(api: Api) -> None:
    contract_id = open_contract(api)
    first, second = add_milestone(api, contract_id), add_milestone(api, contract_id)
    ok(post(api, f"/v1/milestones/{first}/fund", key="fund-k"))
    before = written(api)

    assert client_error(post(api, f"/v1/milestones/{second}/fund", key="fund-k"))["status"] == 409
    assert written(api) == before
    assert milestone(api, second)["state"] == "draft"


@pytest.mark.parametrize("key", ["", "k" * 256], ids=["empty", "256 characters"])
def test_an_idempotency_key_is_1_to_255_characters(api: Api, key: str) -> None:
    before = written(api)
    body = {"client_id": "cl_1", "freelancer_id": "fr_1", "currency": "USD", "title": "Logo"}

    refused = client_error(post(api, "/v1/contracts", body, key=key))
    assert refused["field"] == "Idempotency-Key"
    assert written(api) == before


# --- bad bodies ------------------------------------------------------------------------------------------

#: (what is wrong, the body for POST /v1/contracts/{id}/milestones, the fields a problem may name)
BAD_MILESTONES: list[tuple[str, dict[str, Any], set[str]]] = [
    (
        "a JSON number for an amount",
        {"title": "M", "amount": {"amount": 1000, "currency": "USD"}},
        {"amount", "amount.amount"},
    ),
    (
        "a JSON float for an amount",
        {"title": "M", "amount": {"amount": 10.5, "currency": "USD"}},
        {"amount", "amount.amount"},
    ),
    ("a negative amount", {"title": "M", "amount": usd("-10.00")}, {"amount", "amount.amount"}),
    ("a zero amount", {"title": "M", "amount": usd("0.00")}, {"amount", "amount.amount"}),
    ("an inexact amount", {"title": "M", "amount": usd("10.001")}, {"amount", "amount.amount"}),
    ("an amount in exponent notation", {"title": "M", "amount": usd("1e3")}, {"amount", "amount.amount"}),
    (
        "an out of range amount",
        {"title": "M", "amount": usd("99999999999999999999999.00")},
        {"amount", "amount.amount"},
    ),
    ("an amount that is not an object", {"title": "M", "amount": "10.00"}, {"amount"}),
    (
        "an unknown currency",
        {"title": "M", "amount": {"amount": "10.00", "currency": "XYZ"}},
        {"currency", "amount.currency"},
    ),
    (
        "a wrong-currency amount",
        {"title": "M", "amount": {"amount": "10.00", "currency": "EUR"}},
        {"currency", "amount.currency"},
    ),
    ("a missing field", {"title": "M"}, {"amount"}),
    ("an unknown field", {"title": "M", "amount": usd("10.00"), "colour": "red"}, {"colour"}),
    (
        "an unknown field in an amount",
        {"title": "M", "amount": {**usd("10.00"), "cents": 1000}},
        {"amount.cents", "cents"},
    ),
    ("an empty title", {"title": "", "amount": usd("10.00")}, {"title"}),
]
#: Problems that do not name the field in `field` with the current code (see each reason).


@pytest.mark.parametrize(("what", "body", "fields"), BAD_MILESTONES, ids=[c[0] for c in BAD_MILESTONES])
def test_a_bad_milestone_body_is_a_4xx_problem_and_writes_nothing(
    api: Api, what: str, body: dict[str, Any], fields: set[str]
) -> None:
    contract_id = open_contract(api)
    before = written(api)

    client_error(post(api, f"/v1/contracts/{contract_id}/milestones", body))
    assert written(api) == before
    assert ok(api.client.get(f"/v1/contracts/{contract_id}", headers=api.headers()))["milestones"] == []


@pytest.mark.parametrize(
    ("what", "body", "fields"),
    [pytest.param(*case) for case in BAD_MILESTONES],
    ids=[c[0] for c in BAD_MILESTONES],
)
def test_a_bad_milestone_body_is_refused_naming_the_field(
    api: Api, what: str, body: dict[str, Any], fields: set[str]
) -> None:
    contract_id = open_contract(api)

    refused = client_error(post(api, f"/v1/contracts/{contract_id}/milestones", body))
    assert refused.get("field") in fields, refused


@pytest.mark.parametrize(
    "content",
    [b'{"title": "M", "amount": ', b"title=M&amount=10.00", b"[1, 2]", b"null", b""],
    ids=["truncated JSON", "a form body", "a JSON array", "JSON null", "no body"],
)
def test_a_body_that_is_not_a_json_object_is_a_4xx_problem_and_writes_nothing(api: Api, content: bytes) -> None:
    contract_id = open_contract(api)
    before = written(api)

    response = api.client.post(
        f"/v1/contracts/{contract_id}/milestones",
        content=content,
        headers=api.headers(**{"Content-Type": "application/json"}),
    )
    client_error(response)
    assert written(api) == before


def test_an_unknown_route_or_method_is_a_problem_too(api: Api) -> None:
    assert client_error(api.client.get("/v1/nothing", headers=api.headers()))["status"] == 404
    assert client_error(api.client.delete("/v1/contracts/ct_0000000000000000", headers=api.headers()))["status"] == 405


#: Amounts that every amount-taking route must refuse.
BAD_AMOUNTS: dict[str, Any] = {
    "a JSON number": {"amount": 100, "currency": "USD"},
    "a negative amount": usd("-1.00"),
    "an inexact amount": usd("1.001"),
    "an unknown currency": {"amount": "1.00", "currency": "XYZ"},
    "a wrong currency": {"amount": "1.00", "currency": "EUR"},
}


@pytest.mark.parametrize("bad", list(BAD_AMOUNTS))
def test_every_route_that_takes_an_amount_refuses_a_bad_one_and_writes_nothing(api: Api, bad: str) -> None:
    amount = BAD_AMOUNTS[bad]
    payment_id = released_payment(api)
    api.clock.advance(timedelta(days=5))
    tick(api.book)  # 850.00 available
    funded = funded_milestone(api)
    disputed = funded_milestone(api)
    contract_id = milestone(api, disputed)["contract_id"]
    ok(post(api, f"/v1/contracts/{contract_id}/end", {"ended_by": "client"}))
    ok(post(api, f"/v1/milestones/{disputed}/refund-request/dispute"))

    requests = [
        (f"/v1/contracts/{open_contract(api)}/milestones", {"title": "M", "amount": amount}),
        (f"/v1/milestones/{funded}/approve", {"amount": amount}),
        (f"/v1/milestones/{disputed}/dispute/resolve", {"release": amount, "refund": usd("1000.00")}),
        (f"/v1/milestones/{disputed}/dispute/resolve", {"release": usd("1000.00"), "refund": amount}),
        (f"/v1/payments/{payment_id}/refunds", {"amount": amount}),
        ("/v1/freelancers/fr_1/payouts", {"amount": amount}),
    ]
    before = written(api)
    for path, body in requests:
        client_error(post(api, path, body))
        assert written(api) == before, path
    assert milestone(api, funded)["state"] == "funded"
    assert milestone(api, disputed)["state"] == "disputed"


# --- bad parameters -------------------------------------------------------------------------------------------

BAD_QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("marketplace", "/v1/freelancers/fr_1/balance", {"currency": "XYZ"}),
    ("marketplace", "/v1/freelancers/fr_1/balance", {}),
    ("marketplace", "/v1/freelancers/fr 1/balance", {"currency": "USD"}),
    ("marketplace", "/v1/freelancers/fr_1/transactions", {"limit": 0}),
    ("marketplace", "/v1/freelancers/fr_1/transactions", {"limit": 101}),
    ("marketplace", "/v1/freelancers/fr_1/transactions", {"limit": "ten"}),
    ("marketplace", "/v1/freelancers/fr_1/transactions", {"starting_after": "abc"}),
    (
        "marketplace",
        "/v1/fees/quote",
        {"freelancer_id": "fr_1", "client_id": "cl_1", "amount": "1.5e2", "currency": "USD"},
    ),
    (
        "marketplace",
        "/v1/fees/quote",
        {"freelancer_id": "fr_1", "client_id": "cl_1", "amount": "-5", "currency": "USD"},
    ),
    ("marketplace", "/v1/fees/quote", {"freelancer_id": "fr_1", "client_id": "cl_1", "currency": "USD"}),
    ("finance", "/v1/accounts", {"starting_after": "-1"}),
    ("finance", "/v1/accounts/revenue:fees:service/balance", {"currency": "USD", "as_of": "yesterday"}),
    ("finance", "/v1/accounts/revenue:fees:service/statement", {"currency": "USD", "from": "2026-01-01T00:00:00Z"}),
    ("finance", "/v1/reports/trial-balance", {"as_of": "2026-01-05T09:00:00"}),
    ("finance", "/v1/reports/fees", {"from": "2026-01-01", "to": "2026-13-01"}),
    ("finance", "/v1/invoices", {"limit": 1000}),
    ("auditor", "/v1/journal", {"to": "2026-01-01T00:00:00"}),
    ("auditor", "/v1/journal", {"limit": -1}),
]


def test_bad_query_parameters_are_4xx_problems_never_500(api: Api) -> None:
    released_payment(api)
    wrong = []
    for role, path, params in BAD_QUERIES:
        response = api.client.get(path, params=params, headers=api.headers(role))
        if not (400 <= response.status_code < 500) or not response.headers["content-type"].startswith(PROBLEM_JSON):
            wrong.append(f"GET {path} {params}: {response.status_code} {response.text[:100]}")
    assert wrong == []


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("auditor", "/v1/journal"),
        ("finance", "/v1/accounts"),
        ("marketplace", "/v1/freelancers/fr_1/transactions"),
    ],
)
def test_a_cursor_out_of_range_is_a_4xx_problem_not_a_500(api: Api, role: str, path: str) -> None:
    released_payment(api)  # the freelancer has balances, the journal and the chart are not empty

    response = api.client.get(path, params={"starting_after": "9223372036854775808"}, headers=api.headers(role))
    client_error(response)


def test_a_cursor_of_non_ascii_digits_is_a_4xx_problem(api: Api) -> None:
    # "³".isdigit() is true but it is not a number: found by Schemathesis.
    client_error(api.client.get("/v1/accounts", params={"starting_after": "\u00b3"}, headers=api.headers("finance")))
