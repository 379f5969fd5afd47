"""Escrow over HTTP: the story of the seeds, each escrow rule, refusals and unknown ids.

Every test runs on SQLite and PostgreSQL through Litestar's test client, as the
marketplace frontend (role `marketplace`). Time moves only through `api.clock`;
timers fire only when a test calls `tick`, as the operators' timer job would.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from httpx import Response
from sqlalchemy import func, select

from ledger.db.schema import entries
from ledger.escrow.timers import tick
from tests.e2e.conftest import Api

PROBLEM_JSON = "application/problem+json"
INVALID_TRANSITION = "urn:ledger:problem:invalid-transition"


# --- helpers --------------------------------------------------------------------------


def usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


def post(api: Api, path: str, body: Any = None, role: str = "marketplace") -> Response:
    if body is None:
        return api.client.post(path, headers=api.headers(role))
    return api.client.post(path, json=body, headers=api.headers(role))


def get(api: Api, path: str, role: str = "marketplace", **params: Any) -> Response:
    return api.client.get(path, params=params, headers=api.headers(role))


def ok(response: Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def problem(response: Response, status: int, type_: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:ledger:problem:")
    assert body["title"]
    assert body["instance"] == response.request.url.path
    if type_ is not None:
        assert body["type"] == type_, body
    return body


def open_contract(api: Api, client: str = "cl_1", freelancer: str = "fr_1") -> str:
    body = {"client_id": client, "freelancer_id": freelancer, "currency": "USD", "title": "Logo design"}
    contract = ok(post(api, "/v1/contracts", body), 201)
    return str(contract["id"])


def add_milestone(api: Api, contract_id: str, amount: str = "1000.00") -> str:
    milestone = ok(
        post(api, f"/v1/contracts/{contract_id}/milestones", {"title": "First draft", "amount": usd(amount)}), 201
    )
    return str(milestone["id"])


def fund(api: Api, milestone_id: str) -> dict[str, Any]:
    funding = ok(post(api, f"/v1/milestones/{milestone_id}/fund"))
    assert funding["status"] == "succeeded"
    assert funding["milestone"]["state"] == "funded"
    return funding


def funded_milestone(api: Api, amount: str = "1000.00", client: str = "cl_1", freelancer: str = "fr_1") -> str:
    milestone_id = add_milestone(api, open_contract(api, client, freelancer), amount)
    fund(api, milestone_id)
    return milestone_id


def milestone(api: Api, milestone_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(get(api, f"/v1/milestones/{milestone_id}"))
    return found


def balance(api: Api, freelancer: str = "fr_1") -> dict[str, str]:
    body = ok(get(api, f"/v1/freelancers/{freelancer}/balance", currency="USD"))
    assert body["currency"] == "USD"
    for part in ("pending", "available", "in_transit"):
        assert body[part]["currency"] == "USD"
    return {part: body[part]["amount"] for part in ("pending", "available", "in_transit")}


def journal_size(api: Api) -> int:
    return api.book.transaction(
        lambda uow: int(uow.connection.execute(select(func.count()).select_from(entries)).scalar_one()),
        read_only=True,
    )


def advance(api: Api, **by: float) -> None:
    api.clock.advance(timedelta(**by))
    tick(api.book)


# --- the story of the seeds -------------------------------------------------------------


def test_the_story_of_the_seeds_fund_submit_approve_850_pending_5_days_later_available_then_paid_out(api: Api) -> None:
    contract = ok(
        post(
            api,
            "/v1/contracts",
            {"client_id": "cl_1", "freelancer_id": "fr_1", "currency": "USD", "title": "Logo design"},
        ),
        201,
    )
    assert contract["id"].startswith("ct_")
    assert (contract["client_id"], contract["freelancer_id"], contract["currency"]) == ("cl_1", "fr_1", "USD")
    assert contract["milestones"] == []

    added = ok(
        post(
            api,
            f"/v1/contracts/{contract['id']}/milestones",
            {"title": "First draft", "amount": usd("1000.00"), "due_date": "2026-02-01"},
        ),
        201,
    )
    milestone_id = added["id"]
    assert milestone_id.startswith("ms_")
    assert added["state"] == "draft"
    assert added["amount"] == usd("1000.00")
    assert added["held"] == usd("0.00")
    assert added["due_date"] == "2026-02-01"

    funding = ok(post(api, f"/v1/milestones/{milestone_id}/fund"))
    assert funding["status"] == "succeeded"
    assert funding["milestone"]["state"] == "funded"
    assert funding["milestone"]["held"] == usd("1000.00")

    submitted = ok(post(api, f"/v1/milestones/{milestone_id}/submit"))
    assert submitted["state"] == "submitted"
    assert submitted["review_deadline"] == "2026-01-19T09:00:00Z"  # 14 days after 2026-01-05 09:00

    approved = ok(post(api, f"/v1/milestones/{milestone_id}/approve"))
    assert approved["state"] == "released"
    assert approved["held"] == usd("0.00")
    [payment] = approved["payments"]
    assert payment["id"].startswith("py_")
    assert (payment["gross"], payment["fee"], payment["net"]) == (usd("1000.00"), usd("150.00"), usd("850.00"))
    assert payment["pending_until"] == "2026-01-10T09:00:00Z"

    assert balance(api) == {"pending": "850.00", "available": "0.00", "in_transit": "0.00"}

    advance(api, days=5)
    assert balance(api) == {"pending": "0.00", "available": "850.00", "in_transit": "0.00"}

    payout = ok(post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("850.00")}), 201)
    assert payout["id"].startswith("po_")
    read = ok(get(api, f"/v1/payouts/{payout['id']}"))
    assert read["state"] == "paid"
    assert read["amount"] == usd("850.00")
    assert read["freelancer_id"] == "fr_1"
    assert read["settled_at"] is not None
    assert balance(api) == {"pending": "0.00", "available": "0.00", "in_transit": "0.00"}

    shown = ok(get(api, f"/v1/contracts/{contract['id']}"))
    assert [m["id"] for m in shown["milestones"]] == [milestone_id]
    assert shown["milestones"][0]["state"] == "released"


def test_a_milestone_shows_its_state_held_amount_review_deadline_and_payments(api: Api) -> None:
    milestone_id = funded_milestone(api)
    shown = milestone(api, milestone_id)
    assert (shown["state"], shown["held"], shown["review_deadline"], shown["payments"]) == (
        "funded",
        usd("1000.00"),
        None,
        [],
    )
    ok(post(api, f"/v1/milestones/{milestone_id}/submit"))
    assert milestone(api, milestone_id)["review_deadline"] == "2026-01-19T09:00:00Z"

    ok(post(api, f"/v1/milestones/{milestone_id}/approve"))
    shown = milestone(api, milestone_id)
    [payment] = shown["payments"]
    assert payment["milestone_id"] == milestone_id
    assert payment["kind"] == "release"
    assert (payment["gross"], payment["fee"], payment["net"], payment["refunded"]) == (
        usd("1000.00"),
        usd("150.00"),
        usd("850.00"),
        usd("0.00"),
    )
    assert ok(get(api, f"/v1/payments/{payment['id']}")) == payment


def test_released_money_stays_pending_until_the_five_day_security_period_is_over(api: Api) -> None:
    milestone_id = funded_milestone(api)
    ok(post(api, f"/v1/milestones/{milestone_id}/approve"))

    advance(api, days=5, seconds=-1)
    assert balance(api)["pending"] == "850.00"
    assert balance(api)["available"] == "0.00"

    advance(api, seconds=1)
    assert balance(api)["pending"] == "0.00"
    assert balance(api)["available"] == "850.00"


def test_a_payout_cannot_take_more_than_is_available(api: Api) -> None:
    milestone_id = funded_milestone(api)
    ok(post(api, f"/v1/milestones/{milestone_id}/approve"))  # 850.00 pending, nothing available yet
    before = journal_size(api)

    nothing = problem(
        post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("0.01")}), 409, "urn:ledger:problem:insufficient-funds"
    )
    assert (nothing["available"], nothing["requested"], nothing["currency"]) == ("0.00", "0.01", "USD")

    advance(api, days=5)
    short = problem(
        post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("850.01")}),
        409,
        "urn:ledger:problem:insufficient-funds",
    )
    assert short["detail"] == "a payout takes 850.01 USD from the available balance of fr_1, which holds 850.00 USD"
    assert (short["available"], short["requested"], short["freelancer_id"]) == ("850.00", "850.01", "fr_1")
    assert journal_size(api) == before + 1  # only the maturity of the payment
    assert balance(api) == {"pending": "0.00", "available": "850.00", "in_transit": "0.00"}


def test_a_refund_cannot_take_back_more_than_the_freelancer_still_holds(api: Api) -> None:
    milestone_id = funded_milestone(api)
    [payment] = ok(post(api, f"/v1/milestones/{milestone_id}/approve"))["payments"]  # 850.00 to fr_1
    advance(api, days=5)
    ok(post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("800.00")}), 201)
    before = journal_size(api)
    refused = problem(
        post(api, f"/v1/payments/{payment['id']}/refunds", {"amount": usd("1000.00")}),
        409,
        "urn:ledger:problem:insufficient-funds",
    )
    assert refused["detail"] == (
        "the refund (beyond the 0.00 USD still pending of this payment) takes 850.00 USD from the available "
        "balance of fr_1, which holds 50.00 USD"
    )
    assert (refused["available"], refused["requested"]) == ("50.00", "850.00")
    assert journal_size(api) == before  # nothing booked, no credit note
    assert balance(api)["available"] == "50.00"


def test_a_payout_the_provider_fails_is_failed_and_the_money_is_available_again(api: Api) -> None:
    milestone_id = funded_milestone(api)
    ok(post(api, f"/v1/milestones/{milestone_id}/approve"))
    advance(api, days=5)
    api.gateway.decline_next("account_closed")

    payout = ok(post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("500.00")}), 201)
    read = ok(get(api, f"/v1/payouts/{payout['id']}"))
    assert read["state"] == "failed"
    assert read["failure_reason"] == "account_closed"
    assert balance(api) == {"pending": "0.00", "available": "850.00", "in_transit": "0.00"}


# --- funding -------------------------------------------------------------------------------


def test_a_declined_card_leaves_the_milestone_in_draft_with_the_reason_and_holds_nothing(api: Api) -> None:
    milestone_id = add_milestone(api, open_contract(api))
    api.gateway.decline_next("card_declined")

    funding = ok(post(api, f"/v1/milestones/{milestone_id}/fund"))
    assert funding["status"] == "failed"
    assert funding["failure_reason"] == "card_declined"
    assert funding["milestone"]["state"] == "draft"
    assert funding["milestone"]["held"] == usd("0.00")
    assert journal_size(api) == 0

    fund(api, milestone_id)  # a new attempt with another card succeeds
    assert milestone(api, milestone_id)["held"] == usd("1000.00")


def test_a_payment_that_needs_the_customer_leaves_the_milestone_funding_with_a_client_secret(api: Api) -> None:
    milestone_id = add_milestone(api, open_contract(api))
    api.gateway.require_action_next()

    funding = ok(post(api, f"/v1/milestones/{milestone_id}/fund"))
    assert funding["status"] == "requires_action"
    assert funding["client_secret"]
    assert funding["milestone"]["state"] == "funding"
    assert funding["milestone"]["held"] == usd("0.00")


# --- approval -------------------------------------------------------------------------------


def test_approving_part_of_what_is_held_releases_that_part_and_keeps_the_rest_in_escrow(api: Api) -> None:
    milestone_id = funded_milestone(api)

    shown = ok(post(api, f"/v1/milestones/{milestone_id}/approve", {"amount": usd("300.00")}))
    assert shown["state"] == "funded"
    assert shown["held"] == usd("700.00")
    [payment] = shown["payments"]
    assert (payment["gross"], payment["fee"], payment["net"]) == (usd("300.00"), usd("60.00"), usd("240.00"))
    assert balance(api)["pending"] == "240.00"

    shown = ok(post(api, f"/v1/milestones/{milestone_id}/approve"))  # the rest
    assert shown["state"] == "released"
    assert shown["held"] == usd("0.00")
    assert sorted(p["fee"]["amount"] for p in shown["payments"]) == ["60.00", "90.00"]  # 150.00 in all
    assert balance(api)["pending"] == "850.00"


def test_approving_more_than_is_held_releases_all_and_pays_the_extra_as_a_bonus(api: Api) -> None:
    milestone_id = funded_milestone(api)

    shown = ok(post(api, f"/v1/milestones/{milestone_id}/approve", {"amount": usd("1200.00")}))
    assert shown["state"] == "released"
    assert shown["held"] == usd("0.00")
    by_kind = {p["kind"]: p for p in shown["payments"]}
    assert set(by_kind) == {"release", "bonus"}
    release, bonus = by_kind["release"], by_kind["bonus"]
    assert (release["gross"], release["fee"], release["net"]) == (usd("1000.00"), usd("150.00"), usd("850.00"))
    assert (bonus["gross"], bonus["fee"], bonus["net"]) == (usd("200.00"), usd("20.00"), usd("180.00"))
    assert balance(api)["pending"] == "1030.00"


def test_a_bonus_the_provider_declines_is_refused_with_402_and_nothing_is_released(api: Api) -> None:
    milestone_id = funded_milestone(api)
    before = journal_size(api)
    api.gateway.decline_next("insufficient_funds")

    refused = problem(
        post(api, f"/v1/milestones/{milestone_id}/approve", {"amount": usd("1200.00")}),
        402,
        "urn:ledger:problem:payment-failed",
    )
    assert "insufficient_funds" in refused["detail"]
    shown = milestone(api, milestone_id)
    assert (shown["state"], shown["held"], shown["payments"]) == ("funded", usd("1000.00"), [])
    assert journal_size(api) == before
    assert balance(api)["pending"] == "0.00"


def test_requesting_changes_stops_the_review_clock_and_a_new_submission_restarts_it(api: Api) -> None:
    milestone_id = funded_milestone(api)
    ok(post(api, f"/v1/milestones/{milestone_id}/submit"))

    shown = ok(post(api, f"/v1/milestones/{milestone_id}/request-changes"))
    assert shown["state"] == "changes_requested"
    assert shown["review_deadline"] is None

    advance(api, days=20)  # the old deadline passes: nothing is released
    assert milestone(api, milestone_id)["state"] == "changes_requested"
    assert milestone(api, milestone_id)["held"] == usd("1000.00")

    shown = ok(post(api, f"/v1/milestones/{milestone_id}/submit"))
    assert shown["state"] == "submitted"
    assert shown["review_deadline"] == "2026-02-08T09:00:00Z"  # 14 days after 2026-01-25 09:00


def test_fourteen_days_of_client_silence_after_submission_release_the_milestone_dated_at_the_deadline(
    api: Api,
) -> None:
    milestone_id = funded_milestone(api)
    ok(post(api, f"/v1/milestones/{milestone_id}/submit"))

    advance(api, days=15)
    shown = milestone(api, milestone_id)
    assert shown["state"] == "released"
    [payment] = shown["payments"]
    assert payment["released_at"] == "2026-01-19T09:00:00Z"
    assert payment["net"] == usd("850.00")


# --- ending, refunds and disputes ------------------------------------------------------------


def test_a_client_ending_the_contract_asks_the_freelancer_and_an_accepted_refund_returns_all_held(api: Api) -> None:
    milestone_id = funded_milestone(api)
    contract_id = milestone(api, milestone_id)["contract_id"]

    contract = ok(post(api, f"/v1/contracts/{contract_id}/end", {"ended_by": "client"}))
    assert contract["ended_by"] == "client"
    assert contract["ended_at"] is not None
    [shown] = contract["milestones"]
    assert shown["state"] == "refund_requested"
    assert shown["held"] == usd("1000.00")
    assert shown["refund_deadline"] == "2026-01-12T09:00:00Z"  # 7 days

    shown = ok(post(api, f"/v1/milestones/{milestone_id}/refund-request/accept"))
    assert shown["state"] == "refunded"
    assert shown["held"] == usd("0.00")
    assert shown["payments"] == []
    assert balance(api) == {"pending": "0.00", "available": "0.00", "in_transit": "0.00"}


def test_a_refund_request_the_freelancer_leaves_unanswered_for_7_days_is_refunded(api: Api) -> None:
    milestone_id = funded_milestone(api)
    ok(post(api, f"/v1/contracts/{milestone(api, milestone_id)['contract_id']}/end", {"ended_by": "client"}))

    advance(api, days=7)
    assert milestone(api, milestone_id)["state"] == "refunded"
    assert milestone(api, milestone_id)["held"] == usd("0.00")


def test_a_disputed_refund_request_is_resolved_by_splitting_what_is_held(api: Api) -> None:
    milestone_id = funded_milestone(api)
    ok(post(api, f"/v1/contracts/{milestone(api, milestone_id)['contract_id']}/end", {"ended_by": "client"}))

    shown = ok(post(api, f"/v1/milestones/{milestone_id}/refund-request/dispute"))
    assert shown["state"] == "disputed"
    advance(api, days=30)  # a dispute waits for its resolution, whatever the clock says
    assert milestone(api, milestone_id)["state"] == "disputed"

    shown = ok(
        post(api, f"/v1/milestones/{milestone_id}/dispute/resolve", {"release": usd("600.00"), "refund": usd("400.00")})
    )
    assert shown["state"] == "settled"
    assert shown["held"] == usd("0.00")
    [payment] = shown["payments"]
    assert (payment["gross"], payment["fee"], payment["net"]) == (usd("600.00"), usd("110.00"), usd("490.00"))
    assert balance(api)["pending"] == "490.00"


def test_a_dispute_split_must_add_up_to_what_is_held(api: Api) -> None:
    milestone_id = funded_milestone(api, "500.00")
    ok(post(api, f"/v1/contracts/{milestone(api, milestone_id)['contract_id']}/end", {"ended_by": "client"}))
    ok(post(api, f"/v1/milestones/{milestone_id}/refund-request/dispute"))
    before = journal_size(api)

    response = post(
        api, f"/v1/milestones/{milestone_id}/dispute/resolve", {"release": usd("300.00"), "refund": usd("100.00")}
    )
    assert 400 <= response.status_code < 500
    problem(response, response.status_code)
    assert milestone(api, milestone_id)["state"] == "disputed"
    assert milestone(api, milestone_id)["held"] == usd("500.00")
    assert journal_size(api) == before


def test_a_freelancer_ending_the_contract_refunds_what_is_held_at_once(api: Api) -> None:
    milestone_id = funded_milestone(api)
    contract_id = milestone(api, milestone_id)["contract_id"]

    contract = ok(post(api, f"/v1/contracts/{contract_id}/end", {"ended_by": "freelancer"}))
    assert contract["ended_by"] == "freelancer"
    assert contract["milestones"][0]["state"] == "refunded"
    assert contract["milestones"][0]["held"] == usd("0.00")


def test_an_ended_contract_takes_no_new_milestones(api: Api) -> None:
    contract_id = open_contract(api)
    ok(post(api, f"/v1/contracts/{contract_id}/end", {"ended_by": "client"}))

    problem(
        post(api, f"/v1/contracts/{contract_id}/milestones", {"title": "More", "amount": usd("10.00")}),
        409,
        "urn:ledger:problem:contract-ended",
    )
    assert ok(get(api, f"/v1/contracts/{contract_id}"))["milestones"] == []


def test_a_refund_after_release_takes_the_net_from_the_freelancer_and_the_fee_from_revenue(api: Api) -> None:
    milestone_id = funded_milestone(api)
    [payment] = ok(post(api, f"/v1/milestones/{milestone_id}/approve"))["payments"]

    refund = ok(post(api, f"/v1/payments/{payment['id']}/refunds", {"amount": usd("100.00")}), 201)
    assert refund["payment_id"] == payment["id"]
    assert (
        refund["amount"] == usd("100.00") and refund["status"] == "succeeded"
    )  # the simulated provider answers at once
    # lifetime billings 1000.00 -> 900.00: the 10% tier gives back 10.00 of fee
    assert refund["fee_returned"] == usd("10.00")
    assert balance(api)["pending"] == "760.00"  # 850.00 - 90.00
    assert ok(get(api, f"/v1/payments/{payment['id']}"))["refunded"] == usd("100.00")


def test_a_refund_after_release_cannot_exceed_what_is_left_of_the_payment(api: Api) -> None:
    milestone_id = funded_milestone(api)
    [payment] = ok(post(api, f"/v1/milestones/{milestone_id}/approve"))["payments"]
    ok(post(api, f"/v1/payments/{payment['id']}/refunds", {"amount": usd("900.00")}), 201)
    before = journal_size(api)

    problem(
        post(api, f"/v1/payments/{payment['id']}/refunds", {"amount": usd("100.01")}),
        409,
        "urn:ledger:problem:refund-not-allowed",
    )
    assert journal_size(api) == before
    assert ok(get(api, f"/v1/payments/{payment['id']}"))["refunded"] == usd("900.00")


def test_a_refund_after_release_is_refused_after_180_days(api: Api) -> None:
    milestone_id = funded_milestone(api)
    [payment] = ok(post(api, f"/v1/milestones/{milestone_id}/approve"))["payments"]
    advance(api, days=181)

    problem(
        post(api, f"/v1/payments/{payment['id']}/refunds", {"amount": usd("10.00")}),
        409,
        "urn:ledger:problem:refund-not-allowed",
    )


# --- the freelancer's transactions ------------------------------------------------------------


def story_with_five_transactions(api: Api) -> None:
    """Two releases, their maturities and a payout: five entries on fr_1's balances."""
    first = funded_milestone(api, "1000.00")
    ok(post(api, f"/v1/milestones/{first}/approve"))
    api.clock.advance(timedelta(hours=1))
    second = funded_milestone(api, "200.00")
    ok(post(api, f"/v1/milestones/{second}/approve"))
    advance(api, days=6)
    ok(post(api, "/v1/freelancers/fr_1/payouts", {"amount": usd("1000.00")}), 201)


def test_freelancer_transactions_list_payments_fees_and_payouts_newest_first(api: Api) -> None:
    story_with_five_transactions(api)

    page = ok(get(api, "/v1/freelancers/fr_1/transactions", currency="USD"))
    assert page["has_more"] is False
    assert page["next_cursor"] is None
    kinds = [e["kind"] for e in page["data"]]
    assert kinds[0] == "payout.request"
    assert kinds.count("escrow.release") == 2
    assert len(kinds) == 5
    ids = [e["id"] for e in page["data"]]
    assert ids == sorted(ids, reverse=True)
    times = [e["effective_at"] for e in page["data"]]
    assert times == sorted(times, reverse=True)
    releases = [e for e in page["data"] if e["kind"] == "escrow.release"]
    for entry in releases:  # each shows the fee beside the freelancer's net
        accounts = {p["account"] for p in entry["postings"]}
        assert {"liabilities:freelancer:fr_1:pending", "revenue:fees:service"} <= accounts
        for posting in entry["postings"]:
            assert isinstance(posting["amount"]["amount"], str)


def test_freelancer_transactions_page_with_limit_and_starting_after_without_gaps_or_repeats(api: Api) -> None:
    story_with_five_transactions(api)
    everything = [e["id"] for e in ok(get(api, "/v1/freelancers/fr_1/transactions", currency="USD"))["data"]]

    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"currency": "USD", "limit": 2}
        if cursor is not None:
            params["starting_after"] = cursor
        page = ok(get(api, "/v1/freelancers/fr_1/transactions", **params))
        pages += 1
        assert len(page["data"]) <= 2
        seen += [e["id"] for e in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        assert page["next_cursor"]
        cursor = page["next_cursor"]
    assert pages == 3
    assert seen == everything


def test_freelancer_transactions_show_only_that_freelancers_money(api: Api) -> None:
    story_with_five_transactions(api)
    other = funded_milestone(api, "100.00", client="cl_2", freelancer="fr_2")
    ok(post(api, f"/v1/milestones/{other}/approve"))

    mine = ok(get(api, "/v1/freelancers/fr_1/transactions", currency="USD"))["data"]
    theirs = ok(get(api, "/v1/freelancers/fr_2/transactions", currency="USD"))["data"]
    assert len(mine) == 5
    assert [e["kind"] for e in theirs] == ["escrow.release"]
    assert all("fr_1" not in p["account"] for e in theirs for p in e["postings"])
    assert ok(get(api, "/v1/freelancers/fr_3/transactions", currency="USD")) == {
        "data": [],
        "has_more": False,
        "next_cursor": None,
    }


def test_freelancer_transactions_without_a_currency_cover_every_currency_and_with_one_only_that(api: Api) -> None:
    story_with_five_transactions(api)
    contract = ok(
        post(api, "/v1/contracts", {"client_id": "cl_9", "freelancer_id": "fr_1", "currency": "EUR", "title": "Copy"}),
        201,
    )
    euros = ok(
        post(
            api,
            f"/v1/contracts/{contract['id']}/milestones",
            {"title": "Text", "amount": {"amount": "50.00", "currency": "EUR"}},
        ),
        201,
    )["id"]
    fund(api, euros)
    ok(post(api, f"/v1/milestones/{euros}/approve"))

    every = ok(get(api, "/v1/freelancers/fr_1/transactions"))["data"]
    assert len(every) == 6
    assert every[0]["postings"][0]["amount"]["currency"] == "EUR"
    only_usd = ok(get(api, "/v1/freelancers/fr_1/transactions", currency="USD"))["data"]
    assert [e["id"] for e in only_usd] == [e["id"] for e in every[1:]]
    only_eur = ok(get(api, "/v1/freelancers/fr_1/transactions", currency="EUR"))["data"]
    assert [e["id"] for e in only_eur] == [every[0]["id"]]


# --- refusals ------------------------------------------------------------------------------------


def milestone_in(api: Api, state: str) -> str:
    """A 1,000.00 milestone brought to `state` through the API."""
    if state == "draft":
        return add_milestone(api, open_contract(api))
    milestone_id = funded_milestone(api)
    if state == "submitted":
        ok(post(api, f"/v1/milestones/{milestone_id}/submit"))
    elif state == "released":
        ok(post(api, f"/v1/milestones/{milestone_id}/approve"))
    elif state == "refund_requested":
        ok(post(api, f"/v1/contracts/{milestone(api, milestone_id)['contract_id']}/end", {"ended_by": "client"}))
    elif state == "refunded":
        ok(post(api, f"/v1/contracts/{milestone(api, milestone_id)['contract_id']}/end", {"ended_by": "freelancer"}))
    assert milestone(api, milestone_id)["state"] == state
    return milestone_id


RESOLVE_ALL = {"release": usd("1000.00"), "refund": usd("0.00")}

#: For each state, events the transition table does not allow in it.
REFUSED: dict[str, list[tuple[str, dict[str, Any] | None]]] = {
    "draft": [
        ("submit", None),
        ("request-changes", None),
        ("approve", None),
        ("refund-request/accept", None),
        ("refund-request/dispute", None),
        ("dispute/resolve", RESOLVE_ALL),
    ],
    "funded": [
        ("fund", None),
        ("request-changes", None),
        ("refund-request/accept", None),
        ("refund-request/dispute", None),
        ("dispute/resolve", RESOLVE_ALL),
    ],
    "submitted": [("fund", None), ("submit", None), ("refund-request/accept", None), ("dispute/resolve", RESOLVE_ALL)],
    "refund_requested": [
        ("submit", None),
        ("approve", None),
        ("request-changes", None),
        ("dispute/resolve", RESOLVE_ALL),
    ],
    "released": [
        ("fund", None),
        ("submit", None),
        ("approve", None),
        ("request-changes", None),
        ("refund-request/accept", None),
        ("refund-request/dispute", None),
    ],
    "refunded": [("fund", None), ("submit", None), ("approve", None), ("refund-request/accept", None)],
}


@pytest.mark.parametrize("state", list(REFUSED))
def test_events_the_state_does_not_allow_are_refused_with_409_invalid_transition_and_change_nothing(
    api: Api, state: str
) -> None:
    milestone_id = milestone_in(api, state)
    before = (milestone(api, milestone_id), balance(api), journal_size(api))

    for action, body in REFUSED[state]:
        refused = problem(post(api, f"/v1/milestones/{milestone_id}/{action}", body), 409, INVALID_TRANSITION)
        assert refused["detail"], action
        assert (milestone(api, milestone_id), balance(api), journal_size(api)) == before, action


def test_ending_a_contract_twice_is_refused_with_409_invalid_transition(api: Api) -> None:
    contract_id = open_contract(api)
    ok(post(api, f"/v1/contracts/{contract_id}/end", {"ended_by": "client"}))

    problem(post(api, f"/v1/contracts/{contract_id}/end", {"ended_by": "freelancer"}), 409, INVALID_TRANSITION)
    assert ok(get(api, f"/v1/contracts/{contract_id}"))["ended_by"] == "client"


# --- unknown ids -----------------------------------------------------------------------------------

UNKNOWN: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/v1/contracts/ct_0000000000000000", None, "unknown-contract"),
    ("POST", "/v1/contracts/ct_0000000000000000/milestones", {"title": "M", "amount": usd("1.00")}, "unknown-contract"),
    ("POST", "/v1/contracts/ct_0000000000000000/end", {"ended_by": "client"}, "unknown-contract"),
    ("GET", "/v1/milestones/ms_0000000000000000", None, "unknown-milestone"),
    ("POST", "/v1/milestones/ms_0000000000000000/fund", None, "unknown-milestone"),
    ("POST", "/v1/milestones/ms_0000000000000000/submit", None, "unknown-milestone"),
    ("POST", "/v1/milestones/ms_0000000000000000/request-changes", None, "unknown-milestone"),
    ("POST", "/v1/milestones/ms_0000000000000000/approve", None, "unknown-milestone"),
    ("POST", "/v1/milestones/ms_0000000000000000/approve", {"amount": usd("1.00")}, "unknown-milestone"),
    ("POST", "/v1/milestones/ms_0000000000000000/refund-request/accept", None, "unknown-milestone"),
    ("POST", "/v1/milestones/ms_0000000000000000/refund-request/dispute", None, "unknown-milestone"),
    ("POST", "/v1/milestones/ms_0000000000000000/dispute/resolve", RESOLVE_ALL, "unknown-milestone"),
    ("GET", "/v1/payments/py_0000000000000000", None, "unknown-payment"),
    ("POST", "/v1/payments/py_0000000000000000/refunds", {"amount": usd("1.00")}, "unknown-payment"),
    ("GET", "/v1/payouts/po_0000000000000000", None, "unknown-payout"),
]


def unknown_case_id(method: str, path: str, body: dict[str, Any] | None) -> str:
    shown = path.replace("_0000000000000000", "_{unknown}")
    return f"{method} {shown}" + (" with an amount" if path.endswith("/approve") and body else "")


@pytest.mark.parametrize(("method", "path", "body", "code"), UNKNOWN, ids=[unknown_case_id(*c[:3]) for c in UNKNOWN])
def test_an_unknown_id_is_a_404_problem_naming_what_is_missing(
    api: Api, method: str, path: str, body: dict[str, Any] | None, code: str
) -> None:
    funded_milestone(api)  # the ledger is not empty
    before = journal_size(api)

    response = get(api, path) if method == "GET" else post(api, path, body)
    found = problem(response, 404, f"urn:ledger:problem:{code}")
    assert "0000000000000000" in found["detail"]
    assert journal_size(api) == before
