"""Idempotency-Key claims that outlive their server, and the request timeout, over HTTP.

A server that dies after the money moved but before it recorded the response leaves
its key in progress. While the claim's lease runs (the request timeout plus a margin)
a retry answers 409 `request-in-progress`; after it, a retry with the same body takes
the key over and runs again, and the use case finds its first result, so money moves
once; another body is still a 409 `idempotency-conflict`. A request not answered
within the timeout gets a 503 problem, and its work, which a thread cannot be stopped
from finishing, is recorded for the retry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import text

from ledger.api.app import create_app
from ledger.api.idempotency import claim_lease
from ledger.bootstrap import Services
from ledger.config import DEFAULT_REQUEST_TIMEOUT_SECONDS
from ledger.db.api_store import ApiStore
from ledger.escrow.timers import tick
from tests.e2e.conftest import Api
from tests.e2e.test_idempotency_and_bad_input import (
    PROBLEM_JSON,
    client_error,
    funded_milestone,
    milestone,
    ok,
    post,
    released_payment,
    usd,
    written,
)

LEASE = claim_lease(DEFAULT_REQUEST_TIMEOUT_SECONDS)


class ServerKilled(Exception):
    """Stands for the process dying between the money moving and the response being recorded."""


def _die(*args: Any) -> bool:
    raise ServerKilled


@contextmanager
def server_dies_before_recording() -> Iterator[None]:
    """Requests run to their end but never record their response: their keys stay in progress."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ApiStore, "finish_request", _die)
        yield


def paid_out_after_a_crash(api: Api, key: str) -> dict[str, Any]:
    """Request a 500.00 payout whose server dies before recording the answer."""
    released_payment(api)
    api.clock.advance(timedelta(days=5))
    tick(api.book)  # 850.00 available
    with server_dies_before_recording():
        assert post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("500.00")}, key=key).status_code == 500
    state = written(api)
    assert state["payouts"] == 1
    assert state["fr_1 balance"]["available"] == usd("350.00")
    return state


# --- the lease ---------------------------------------------------------------------------------------------


def test_a_claim_left_in_progress_answers_409_in_progress_while_its_lease_runs(api: Api) -> None:
    before = paid_out_after_a_crash(api, "payout-crash")

    api.clock.advance(LEASE - timedelta(seconds=1))
    retry = post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("500.00")}, key="payout-crash")
    assert retry.status_code == 409
    assert client_error(retry)["type"] == "urn:ledger:problem:request-in-progress"
    assert written(api) == before


def test_a_payout_whose_server_died_is_taken_over_after_the_lease_and_pays_out_once(api: Api) -> None:
    before = paid_out_after_a_crash(api, "payout-crash")

    api.clock.advance(LEASE + timedelta(seconds=1))
    retry = post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("500.00")}, key="payout-crash")
    assert ok(retry, 201)["amount"] == usd("500.00")
    assert written(api) == before  # the first payout, found by its request key

    replay = post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("500.00")}, key="payout-crash")
    assert (replay.status_code, replay.content) == (201, retry.content)  # now recorded


def test_an_approval_whose_server_died_is_taken_over_after_the_lease_and_releases_once(api: Api) -> None:
    milestone_id = funded_milestone(api)
    body = {"amount": usd("300.00")}
    with server_dies_before_recording():
        assert post(api, f"/v1/milestones/{milestone_id}/approve", body, key="approve-crash").status_code == 500
    before = written(api)
    assert before["fr_1 balance"]["pending"] == usd("240.00")

    api.clock.advance(LEASE + timedelta(seconds=1))
    retry = post(api, f"/v1/milestones/{milestone_id}/approve", body, key="approve-crash")
    assert ok(retry)["held"] == usd("700.00")
    assert written(api) == before
    assert len(milestone(api, milestone_id)["payments"]) == 1


def test_an_abandoned_claim_retried_with_another_body_is_still_an_idempotency_conflict(api: Api) -> None:
    before = paid_out_after_a_crash(api, "payout-crash")

    api.clock.advance(LEASE + timedelta(days=1))
    conflict = post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("100.00")}, key="payout-crash")
    assert conflict.status_code == 409
    assert client_error(conflict)["type"] == "urn:ledger:problem:idempotency-conflict"
    assert written(api) == before


# --- the request timeout ---------------------------------------------------------------------------------


@pytest.fixture
def slow_api(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, threading.Event]]:  # type: ignore[type-arg]
    """The API with a 1 s timeout, whose contract opening takes 3 s; the event is set when it is done.

    The timeout leaves room for authentication and the key's claim on a loaded machine:
    a timeout reached before the handler starts would never set the event."""
    services = Services.over(api.book, api.gateway)
    app = create_app(services, request_timeout_seconds=1.0)
    contracts = services.escrow.contracts
    open_contract, done = contracts.open_contract, threading.Event()

    def slow_open_contract(**request: Any) -> Any:
        time.sleep(3)
        try:
            return open_contract(**request)
        finally:
            done.set()

    monkeypatch.setattr(contracts, "open_contract", slow_open_contract)
    with TestClient(app) as client:
        yield client, done


def wait_until_recorded(api: Api, key: str) -> None:
    """The thread records the response a moment after the contract is open."""
    query = text("SELECT count(*) FROM idempotent_requests WHERE key = :key AND status IS NOT NULL")
    for _ in range(600):  # up to 30 s on a loaded machine
        if api.book.transaction(lambda uow: uow.connection.execute(query, {"key": key}).scalar_one(), read_only=True):
            return
        time.sleep(0.05)
    raise AssertionError(f"{key} was never recorded")


CONTRACT = {"client_id": "cl_1", "freelancer_id": "fr_1", "currency": "USD", "title": "Logo design"}


def test_a_request_past_the_timeout_is_answered_503_problem_details(api: Api, slow_api: tuple[Any, Any]) -> None:
    client, done = slow_api
    started = time.monotonic()
    response = client.post("/v1/contracts", json=CONTRACT, headers=api.headers())
    waited = time.monotonic() - started

    assert response.status_code == 503
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem = response.json()
    assert problem["type"] == "urn:ledger:problem:request-timed-out"
    assert problem["status"] == 503 and problem["instance"] == "/v1/contracts"
    assert waited < 2.5, "answered at the timeout, not when the handler returned"
    assert done.wait(30)


def test_a_timed_out_request_finishes_and_its_retry_gets_the_recorded_answer(
    api: Api, slow_api: tuple[Any, Any]
) -> None:
    client, done = slow_api
    headers = api.headers(**{"Idempotency-Key": "slow-contract"})
    assert client.post("/v1/contracts", json=CONTRACT, headers=headers).status_code == 503
    assert done.wait(30)
    wait_until_recorded(api, "slow-contract")

    retry = client.post("/v1/contracts", json=CONTRACT, headers=headers)
    assert ok(retry, 201)["title"] == "Logo design"
    assert written(api)["contracts"] == 1
