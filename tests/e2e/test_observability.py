"""What an operator watches: a log line per request, `/metrics`, readiness, on both databases."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from ledger.actors import WORKER, acting_as
from ledger.api.keys import list_keys
from ledger.audit import AuditReport, CheckResult, Problem
from ledger.bootstrap import Services
from ledger.escrow.service import Escrow
from ledger.observability import JsonFormatter, RequestIdFilter, TextFormatter
from ledger.worker import AUDIT_RETRY, AuditSchedule, run_round
from tests.e2e.conftest import Api
from tests.e2e.test_finance_api import ok, release

REQUESTS = "ledger.api.requests"


def key_id(api: Api, role: str) -> str:
    [key] = [k for k in api.book.transaction(list_keys, read_only=True) if k.role == role]
    return key.id


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == REQUESTS]


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def test_each_request_is_one_line_with_its_route_template_actor_and_key_and_no_secret(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ledger")
    created = api.client.post(
        "/v1/contracts",
        json={"client_id": "cl_1", "freelancer_id": "fr_1", "currency": "USD", "title": "Logo"},
        headers=api.headers(**{"Idempotency-Key": "contract-1", "X-Request-Id": "req-42"}),
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-request-id"] == "req-42"  # the caller's id, echoed
    contract = created.json()["id"]
    read = api.client.get(f"/v1/contracts/{contract}", headers=api.headers())
    assert read.status_code == 200
    minted = read.headers["x-request-id"]
    assert len(minted) == 32  # none given: one is made
    bad_id = api.client.get("/health/live", headers={"X-Request-Id": "not ok; spaces"})
    assert bad_id.headers["x-request-id"] != "not ok; spaces"
    assert api.client.get("/no/such/route").status_code == 404

    lines = request_lines(caplog)
    fields = [
        {
            name: getattr(record, name)
            for name in ("request_id", "method", "route", "status", "actor", "idempotency_key")
        }
        for record in lines
    ]
    marketplace = key_id(api, "marketplace")
    assert fields == [
        {
            "request_id": "req-42",
            "method": "POST",
            "route": "/v1/contracts",
            "status": 201,
            "actor": marketplace,
            "idempotency_key": "contract-1",
        },
        {
            "request_id": minted,
            "method": "GET",
            "route": "/v1/contracts/{contract_id}",
            "status": 200,
            "actor": marketplace,
            "idempotency_key": None,
        },
        {
            "request_id": bad_id.headers["x-request-id"],
            "method": "GET",
            "route": "/health/live",
            "status": 200,
            "actor": None,
            "idempotency_key": None,
        },
        {
            "request_id": lines[3].request_id,
            "method": "GET",
            "route": "unmatched",
            "status": 404,
            "actor": None,
            "idempotency_key": None,
        },
    ]
    assert all(isinstance(record.duration_ms, float) and record.duration_ms >= 0 for record in lines)
    ours = [record for record in caplog.records if record.name.startswith("ledger")]  # not the test client's
    written = [JsonFormatter().format(record) for record in ours]
    parsed = [json.loads(JsonFormatter().format(record)) for record in lines]
    assert parsed[-1]["route"] == "unmatched" and parsed[-1]["level"] == "INFO" and parsed[-1]["time"]
    everything = "\n".join(written + [TextFormatter().format(record) for record in ours])
    for secret in (api.keys["marketplace"], contract, "cl_1", "fr_1", "Logo"):
        assert secret not in everything  # no key, no id of a party or contract, no body
    caplog.clear()
    denied = api.client.get("/v1/payment-orders", headers=api.headers("auditor"))
    assert denied.status_code == 403
    [line] = request_lines(caplog)
    assert (line.status, line.actor) == (403, key_id(api, "auditor"))  # the key that tried


def test_metrics_count_requests_and_read_the_ledger_without_a_key_or_party_data(api: Api) -> None:
    payment = release(api, "1000.00")
    assert payment
    scraped = api.client.get("/metrics")  # no key: like the health routes
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    figures = samples(scraped.text)
    fund = (
        "ledger_http_requests_total",
        (("method", "POST"), ("route", "/v1/milestones/{milestone_id}/fund"), ("status", "200")),
    )
    assert figures[fund] == 1
    postings = api.book.transaction(lambda uow: uow.metrics.posting_count(), read_only=True)
    assert postings > 0 and figures[("ledger_postings_total", ())] == postings
    assert figures[("ledger_database_up", ())] == 1
    assert figures[("ledger_timers_due", ())] == 0
    by_state = {
        dict(labels)["state"]: value for (name, labels), value in figures.items() if name == "ledger_payment_orders"
    }
    assert by_state["succeeded"] >= 1 and by_state["pending"] == 0
    assert figures[("ledger_payment_order_oldest_pending_age_seconds", ())] == 0
    assert ("ledger_audit_last_ok", ()) not in figures  # the worker has not run one
    for party in ("cl_1", "fr_1", payment):
        assert party not in scraped.text
    assert "/metrics" not in json.dumps(ok(api.client.get("/schema/openapi.json"))["paths"])


def test_metrics_show_timers_due_open_orders_the_heartbeat_and_the_last_stored_audit(api: Api) -> None:
    release(api, "1000.00")
    api.clock.advance(timedelta(days=6))  # the 5-day pending period has ended: its timer is due
    assert samples(api.client.get("/metrics").text)[("ledger_timers_due", ())] >= 1
    escrow = Escrow(api.book, api.gateway)
    audits: list[AuditReport] = []

    def run_audit() -> AuditReport:
        audits.append(api.book.audit(provider=Services.over(api.book, api.gateway).provider_books))
        return audits[-1]

    schedule = AuditSchedule(api.book, timedelta(hours=1), run_audit)
    with acting_as(WORKER):
        started = api.clock.now()
        summary = run_round(escrow, name="worker:test", started_at=started, audit=schedule)
    assert "audit: all invariants hold" in summary and len(audits) == 1
    figures = samples(api.client.get("/metrics").text)
    assert figures[("ledger_timers_due", ())] == 0
    assert figures[("ledger_worker_heartbeat_timestamp_seconds", (("worker", "worker:test"),))] == started.timestamp()
    assert figures[("ledger_audit_last_ok", ())] == 1
    assert figures[("ledger_audit_last_finished_timestamp_seconds", ())] == started.timestamp()
    assert figures[("ledger_audit_last_problems", ())] == 0

    api.clock.advance(timedelta(minutes=30))
    with acting_as(WORKER):
        run_round(escrow, name="worker:test", started_at=started, audit=schedule)
    assert len(audits) == 1  # not due: a scrape or a round within the hour runs nothing

    def failing_audit() -> AuditReport:
        problem = Problem("entries_balance", "entry does not balance", {"entry_id": 7})
        return AuditReport([CheckResult("entries_balance", [problem], omitted=2), CheckResult("no_overdraft")])

    api.clock.advance(timedelta(minutes=30))
    with acting_as(WORKER):
        summary = run_round(
            escrow,
            name="worker:test",
            started_at=started,
            audit=AuditSchedule(api.book, timedelta(hours=1), failing_audit),
        )
    assert "audit: 3 problems in entries_balance" in summary
    figures = samples(api.client.get("/metrics").text)
    assert figures[("ledger_audit_last_ok", ())] == 0 and figures[("ledger_audit_last_problems", ())] == 3
    last = api.book.transaction(lambda uow: uow.orders.last_audit_run(), read_only=True)
    assert last is not None and last.failed_checks == ("entries_balance",) and last.actor == WORKER

    def unreachable() -> AuditReport:
        attempts.append(api.clock.now())
        raise OperationalError("SELECT", {}, Exception("the database went away"))

    attempts: list[datetime] = []
    broken = AuditSchedule(api.book, timedelta(minutes=30), unreachable)
    api.clock.advance(timedelta(minutes=30))  # due again
    for _ in range(3):  # a round a minute: the audit that cannot run waits AUDIT_RETRY between tries
        with acting_as(WORKER):
            assert "audit" not in run_round(escrow, name="worker:test", started_at=started, audit=broken)
        api.clock.advance(timedelta(minutes=1))
    api.clock.advance(AUDIT_RETRY - timedelta(minutes=3))
    with acting_as(WORKER):
        run_round(escrow, name="worker:test", started_at=started, audit=broken)
    assert [at - attempts[0] for at in attempts] == [timedelta(0), AUDIT_RETRY]


def test_readiness_names_the_dependency_that_is_down_without_its_error_text(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert ok(api.client.get("/health/ready"))["status"] == "ok"

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception('password authentication failed for user "ledger_secret"'))

    monkeypatch.setattr(api.book, "transaction", down)
    caplog.set_level(logging.INFO, logger="ledger")
    caplog.handler.addFilter(RequestIdFilter())  # as the server's log handler has it
    answer = api.client.get("/health/ready", headers={"X-Request-Id": "req-ready"})
    assert answer.status_code == 503
    problem = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert problem["type"].endswith("dependency-down") and problem["dependency"] == "database"
    assert "ledger_secret" not in answer.text and "password" not in answer.text
    [warned] = [record for record in caplog.records if record.name == "ledger.api.app"]
    assert warned.request_id == "req-ready"  # a line logged while serving names the request
    assert "OperationalError" in warned.getMessage() and "ledger_secret" not in warned.getMessage()
    scraped = api.client.get("/metrics")  # a scrape still answers, and says so
    assert scraped.status_code == 200
    assert samples(scraped.text)[("ledger_database_up", ())] == 0
    assert "ledger_secret" not in scraped.text
