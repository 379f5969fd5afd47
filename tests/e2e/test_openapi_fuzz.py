"""Schemathesis against the live OpenAPI schema, on SQLite and on PostgreSQL.

The schema is read from the application itself (`/schema/openapi.json`, in process
through ASGI: no server, no network). Every operation gets generated requests, valid
and invalid ones drawn together, all with an admin key, most of them aimed at a small
seeded marketplace (random ids only ever reach the 404). Every response must:

- not be a 5xx (`not_a_server_error`); the two routes that need the Stripe gateway
  may answer 503 "not configured", since the `api` fixture runs the simulated one;
- be answered with a status its operation declares (`status_code_conformance`);
- match the schema its operation declares for its status code
  (`response_schema_conformance`);
- have a content type its operation declares for its status (`content_type_conformance`):
  problem details for errors, and CSV or PDF where a statement or an invoice comes so
  (`ledger.api.openapi` completes Litestar's document with both);
- if it is an error, be RFC 9457 problem details whose `status` is the response's.

Run time with `HYPOTHESIS_PROFILE=ci`: 20-40 s per database, depending on the machine's
load (`MAX_EXAMPLES` is per operation; the `ci` profile's 100 would take minutes).
Generation is derandomized. How many requests ran, per database, is printed in the
"schemathesis" section of pytest's summary (shown without `-s`); too few fail the test.

Schemathesis's pytest integration (`schemathesis.pytest.from_fixture`) is not used: it
needs a pytest internal (`Node._nodeid`) that pytest 9.2 no longer has. The test draws
cases from `APIOperation.as_strategy` with Hypothesis instead, one subtest per operation.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ledger.escrow.timers import tick
from tests.e2e.conftest import Api

#: Generated requests per operation.
MAX_EXAMPLES = 15
#: Seeded ids per path parameter that requests are aimed at.
KNOWN_PER_PARAMETER = 6
#: Fewest requests per operation, on average, that a run may make: fewer means generation
#: went wrong. (Hypothesis stops early where there is little to generate: `/health/live`
#: gets 1.)
MIN_MEAN_EXAMPLES = 10

PROBLEM_JSON = "application/problem+json"

CONFIG: dict[str, Any] = {
    "generation": {
        # The admin key comes from the test: no generated Authorization headers and no
        # cases that drop the key (the authorization matrix test covers those).
        "with-security-parameters": False,
    },
    "operations": [
        {
            # These need the Stripe gateway. The `api` fixture runs the simulated one
            # (and no webhook secret), where they answer 503 "not configured" by design.
            "include-operation-id": ["stripeWebhook", "getReconciliation"],
            "checks": {"not_a_server_error": {"expected-statuses": ["2XX", "3XX", "4XX", "503"]}},
        }
    ],
}


def without_lifespan(app: Any) -> Any:
    """The app as Schemathesis's ASGI client should see it. The `api` fixture's
    TestClient already runs the app's lifespan; a second one makes its shutdown hang."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return  # an app without lifespan support, as far as this client can tell
        await app(scope, receive, send)

    return asgi


def media_type(response: schemathesis.Response) -> str:
    return response.headers.get("content-type", [""])[0].partition(";")[0].strip().lower()


def errors_are_problem_details(ctx: Any, response: schemathesis.Response, case: schemathesis.Case[Any]) -> None:
    """Every 4xx/5xx is an RFC 9457 problem details object whose `status` is the response's."""
    if response.status_code < 400:
        return
    assert media_type(response) == PROBLEM_JSON, f"a {response.status_code} as {media_type(response)!r}"
    try:
        body = json.loads(response.content)
    except ValueError as error:
        raise AssertionError(f"a {response.status_code} whose body is not JSON: {error}") from None
    missing = {"type", "title", "status", "detail", "instance"} - set(body)
    assert not missing, f"problem details without {sorted(missing)}: {body}"
    assert body["status"] == response.status_code, body
    assert str(body["type"]).startswith("urn:ledger:problem:"), body


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    errors_are_problem_details,
]


class ExampleCounts:
    """The requests each run made, printed after the session in a "schemathesis" section of
    pytest's summary: CI runs pytest without `-s`, which hides a test's own output."""

    name = "schemathesis-example-counts"

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, run: str, counts: Counter[str]) -> None:
        few = ", ".join(f"{label} {n}" for label, n in sorted(counts.items(), key=lambda c: c[1]) if n < MAX_EXAMPLES)
        total = f"{counts.total()} requests over {len(counts)} operations"
        self.lines.append(f"{run}: {total}; fewer than {MAX_EXAMPLES}: {few or 'none'}")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        terminalreporter.section("schemathesis")
        for line in self.lines:
            terminalreporter.write_line(line)


@pytest.fixture
def example_counts(pytestconfig: pytest.Config) -> ExampleCounts:
    """The session's `ExampleCounts`, registered as a plugin on first use."""
    found = pytestconfig.pluginmanager.get_plugin(ExampleCounts.name)
    if isinstance(found, ExampleCounts):
        return found
    counts = ExampleCounts()
    pytestconfig.pluginmanager.register(counts, ExampleCounts.name)
    return counts


@pytest.fixture
def openapi(api: Api) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi(
        "/schema/openapi.json", without_lifespan(api.client.app), config=schemathesis.Config.from_dict(CONFIG)
    )


def usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


class Seeder:
    """Makes a small marketplace through the API, as the frontend would, and keeps
    every id it sees, by the name of the parameter that takes it."""

    BY_PREFIX = {"ct_": "contract_id", "ms_": "milestone_id", "py_": "payment_id", "po_": "payout_id"}

    def __init__(self, api: Api) -> None:
        self.api = api
        self.known: dict[str, set[str]] = {
            "freelancer_id": {"fr_fuzz"},
            "client_id": {"cl_fuzz"},
            "party_id": {"cl_fuzz", "fr_fuzz"},
            "currency": {"USD"},
        }

    def call(self, method: str, path: str, body: Any = None, status: int = 200, role: str = "marketplace") -> Any:
        response = self.api.client.request(method, path, json=body, headers=self.api.headers(role))
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
        self.collect(response.json())
        return response.json()

    def collect(self, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "id" and isinstance(item, str) and item[:3] in self.BY_PREFIX:
                    self.known.setdefault(self.BY_PREFIX[item[:3]], set()).add(item)
                elif key in ("code", "number") and isinstance(item, str):
                    self.known.setdefault(key, set()).add(item)
                self.collect(item)
        elif isinstance(value, list):
            for item in value:
                self.collect(item)

    def contract(self) -> str:
        body = {"client_id": "cl_fuzz", "freelancer_id": "fr_fuzz", "currency": "USD", "title": "Fuzz"}
        return str(self.call("POST", "/v1/contracts", body, 201)["id"])

    def milestone(self, contract_id: str, *steps: str) -> str:
        body = {"title": "Milestone", "amount": usd("1000.00")}
        milestone_id = str(self.call("POST", f"/v1/contracts/{contract_id}/milestones", body, 201)["id"])
        for step in steps:
            self.call("POST", f"/v1/milestones/{milestone_id}/{step}")
        return milestone_id

    def hourly(self) -> None:
        """An hourly contract with an hour of time logged in the week it was opened."""
        body = {
            "client_id": "cl_fuzz",
            "freelancer_id": "fr_fuzz",
            "currency": "USD",
            "title": "Fuzz hours",
            "type": "hourly",
            "hourly_rate": usd("50.00"),
            "weekly_limit_hours": 40,
            "manual_time_allowed": True,
        }
        opened = self.api.clock.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        self.api.clock.set(opened)
        contract_id = str(self.call("POST", "/v1/contracts", body, 201)["id"])
        self.api.clock.advance(timedelta(hours=2))
        start, end = opened.isoformat(), (opened + timedelta(hours=1)).isoformat()
        segment = self.call(
            "POST", f"/v1/contracts/{contract_id}/time", {"start": start, "end": end, "manual": True}, 201
        )
        self.known["segment_id"] = {str(segment["id"])}
        self.known["monday"] = {str(segment["week"])}

    def read_finance(self) -> None:
        self.call("GET", "/v1/accounts?limit=100", role="finance")
        self.call("GET", "/v1/invoices", role="finance")

    def marketplace(self) -> dict[str, list[str]]:
        """One contract with a milestone in each state of its life, a released payment
        and a payout; one ended by the client, with a refund request and a dispute."""
        self.call("PUT", "/v1/parties/fr_fuzz", {"display_name": "Fuzz Freelancer", "country": "DE"})
        running = self.contract()
        self.milestone(running)
        self.milestone(running, "fund")
        self.milestone(running, "fund", "submit")
        self.milestone(running, "fund", "submit", "approve")
        self.api.clock.advance(timedelta(days=6))
        tick(self.api.book)  # the released payment becomes available
        self.call("POST", "/v1/freelancers/fr_fuzz/payouts", {"amount": usd("100.00")}, 201)
        ended = self.contract()
        self.milestone(ended, "fund")
        disputed = self.milestone(ended, "fund")
        self.call("POST", f"/v1/contracts/{ended}/end", {"ended_by": "client"})
        self.call("POST", f"/v1/milestones/{disputed}/refund-request/dispute")
        self.hourly()
        self.read_finance()
        return {name: sorted(values)[:KNOWN_PER_PARAMETER] for name, values in self.known.items()}


def cases_for(operation: Any, known: dict[str, list[str]]) -> st.SearchStrategy[schemathesis.Case[Any]]:
    """Valid and invalid requests, drawn together as Schemathesis's own runner does.
    Most are aimed at the seeded ids, with the seeded query values (currency, parties);
    everything else is generated."""
    parameters = list(operation.iter_parameters())
    paths = [p.name for p in parameters if p.location == "path" and p.name in known]
    query = {p.name: known[p.name][0] for p in parameters if p.location == "query" and p.name in known}
    aimed: list[dict[str, Any]] = [{"path_parameters": {name: value}} for name in paths for value in known[name]]
    if query:
        aimed = [{**aim, "query": query} for aim in aimed or [{}]]
    # An aimed request with nothing left to generate has nothing to break either.
    left_to_break = bool(operation.body) or len(parameters) > len(paths) + len(query)
    strategies = [operation.as_strategy(GenerationMode.POSITIVE, **aim) for aim in [{}, *aimed]]
    strategies += [
        operation.as_strategy(GenerationMode.NEGATIVE, **aim) for aim in [{}, *aimed] if left_to_break or not aim
    ]
    return st.one_of(strategies)


def test_every_operation_answers_as_documented(
    api: Api,
    openapi: schemathesis.BaseSchema,
    subtests: pytest.Subtests,
    example_counts: ExampleCounts,
    request: pytest.FixtureRequest,
) -> None:
    known = Seeder(api).marketplace()
    headers = api.headers("admin")
    results = list(openapi.get_all_operations())
    assert len(results) >= 30, "every route is in the schema"
    counts: Counter[str] = Counter()
    for result in results:
        assert isinstance(result, Ok), f"the schema does not define an operation properly: {result.err()}"
        operation = result.ok()
        label = operation.label
        counts[label] = 0

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases_for(operation, known))
        def fuzz(case: schemathesis.Case[Any]) -> None:
            counts[label] += 1  # noqa: B023 (run at once, in this iteration)
            case.call_and_validate(headers=headers, checks=CHECKS)

        with subtests.test(msg=label):
            fuzz()

    with subtests.test(msg="the ledger still audits clean"):
        audit = api.client.get("/v1/audit", headers=headers)
        assert audit.status_code == 200, audit.text
        assert audit.json()["ok"], [check for check in audit.json()["checks"] if not check["ok"]]

    example_counts.add(request.node.name, counts)
    assert counts.total() >= MIN_MEAN_EXAMPLES * len(counts), counts


# --- what the fuzzing once found ----------------------------------------------------------


def test_a_nul_in_a_parameter_is_refused_not_a_500(api: Api) -> None:
    """U+0000 in a path or query parameter names nothing or is refused: never a 500
    (PostgreSQL text cannot hold it; the driver's refusal is a 422)."""
    for path in ["/v1/contracts/%00", "/v1/journal?kind=%00", "/v1/invoices?starting_after=%00"]:
        response = api.client.get(path, headers=api.headers("admin"))
        assert response.status_code < 500, f"{path}: {response.status_code} {response.text}"
    body = {"client_id": "cl_nul", "freelancer_id": "fr_nul", "currency": "USD", "title": "a\x00b"}
    response = api.client.post("/v1/contracts", json=body, headers=api.headers("admin"))
    assert response.status_code < 500, response.text  # 422 on PostgreSQL; SQLite keeps the text


# --- what the schema once got wrong -----------------------------------------------------


def test_documented_400_is_what_the_api_sends(api: Api, openapi: schemathesis.BaseSchema) -> None:
    case = openapi["/v1/contracts"]["POST"].Case(body={"client_id": "c-1", "freelancer_id": "f-1", "currency": "USD"})
    response = case.call(headers=api.headers("admin"))
    assert response.status_code == 400, response.text  # no title
    case.validate_response(response, checks=[content_type_conformance, response_schema_conformance])


@pytest.mark.parametrize(
    ("path", "query", "accept"),
    [
        ("/v1/accounts/{code}/statement", {"format": "csv"}, None),
        ("/v1/accounts/{code}/statement", {"format": "pdf"}, None),
        ("/v1/parties/{party_id}/statement", {"format": "csv"}, None),
        ("/v1/parties/{party_id}/statement", {"format": "pdf"}, None),
        ("/v1/invoices/{number}", {}, "application/pdf"),
    ],
    ids=["statement-csv", "statement-pdf", "party-statement-csv", "party-statement-pdf", "invoice-pdf"],
)
def test_non_json_representations_are_documented(
    api: Api, openapi: schemathesis.BaseSchema, path: str, query: dict[str, str], accept: str | None
) -> None:
    seeder = Seeder(api)
    seeder.milestone(seeder.contract(), "fund", "submit", "approve")  # journal entries and an invoice
    seeder.read_finance()
    period = {"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}
    if "{code}" in path:
        parameters = {"code": "liabilities:freelancer:fr_fuzz:pending"}
        query = {**query, "currency": "USD", **period}
    elif "{party_id}" in path:
        parameters = {"party_id": "fr_fuzz"}
        query = {**query, "role": "freelancer", "currency": "USD", **period}
    else:
        parameters = {"number": sorted(seeder.known["number"])[0]}
    case = openapi[path]["GET"].Case(path_parameters=parameters, query=query)
    response = case.call(headers=api.headers("admin", **({"Accept": accept} if accept else {})))
    assert response.status_code == 200, response.text
    assert media_type(response) != "application/json"
    case.validate_response(response, checks=[content_type_conformance, response_schema_conformance])
