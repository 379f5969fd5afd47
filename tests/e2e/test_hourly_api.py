"""Hourly contracts' time over HTTP, on SQLite and PostgreSQL: opening one, logging and
deleting time, the weekly limit and the rate and when their changes apply, pauses, the
week as it would be billed, and the refusals. The week of Monday 2026-11-30 closes
Monday 2026-12-07 12:00; time moves only through `api.clock`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import Response
from sqlalchemy import func, select

from ledger.db.schema import contracts, time_segments
from ledger.escrow.service import Escrow
from tests.e2e.conftest import Api
from tests.e2e.test_escrow_api import get, ok, post, problem, usd

MONDAY = datetime(2026, 11, 30, tzinfo=UTC)
WEDNESDAY_NOON = MONDAY + timedelta(days=2, hours=12)
CLOSE = datetime(2026, 12, 7, 12, tzinfo=UTC)


def urn(code: str) -> str:
    return f"urn:ledger:problem:{code}"


def hourly_body(**extra: Any) -> dict[str, Any]:
    return {
        "client_id": "cl_h",
        "freelancer_id": "fr_h",
        "currency": "USD",
        "title": "Support hours",
        "type": "hourly",
        "hourly_rate": usd("50.00"),
        "weekly_limit_hours": 40,
        "manual_time_allowed": True,
        **extra,
    }


def open_hourly(api: Api, **extra: Any) -> str:
    """A contract opened the week before, and the clock at Wednesday noon of the week of 2026-11-30."""
    api.clock.set(MONDAY - timedelta(days=7))
    contract_id = str(ok(post(api, "/v1/contracts", hourly_body(**extra)), 201)["id"])
    api.clock.set(WEDNESDAY_NOON)
    return contract_id


def at(day: int, hour: int, minute: int = 0) -> str:
    return (MONDAY + timedelta(days=day, hours=hour, minutes=minute)).isoformat().replace("+00:00", "Z")


def log(api: Api, contract_id: str, start: str, end: str, memo: str = "work", manual: bool = True) -> Response:
    body = {"start": start, "end": end, "memo": memo, "manual": manual}
    return post(api, f"/v1/contracts/{contract_id}/time", body)


def patch(api: Api, contract_id: str, body: Any) -> Response:
    return api.client.patch(f"/v1/contracts/{contract_id}", json=body, headers=api.headers())


def week(api: Api, contract_id: str, monday: str = "2026-11-30") -> dict[str, Any]:
    return dict(ok(get(api, f"/v1/contracts/{contract_id}/weeks/{monday}")))


def count(api: Api, table: Any) -> int:
    return int(
        api.book.transaction(lambda uow: uow.connection.execute(select(func.count()).select_from(table)).scalar())
    )  # type: ignore[attr-defined]


def test_an_hourly_contract_opens_with_its_terms_and_a_fixed_one_refuses_them(api: Api) -> None:
    contract_id = open_hourly(api)
    shown = ok(get(api, f"/v1/contracts/{contract_id}"))
    assert shown["type"] == "hourly"
    assert shown["hourly_rate"] == usd("50.00")
    assert (shown["weekly_limit_hours"], shown["manual_time_allowed"], shown["paused_at"]) == (40, True, None)
    fixed = ok(
        post(api, "/v1/contracts", {"client_id": "c", "freelancer_id": "f", "currency": "USD", "title": "t"}), 201
    )
    assert (fixed["type"], fixed["hourly_rate"], fixed["weekly_limit_hours"]) == ("fixed", None, None)

    before = count(api, contracts)
    base = {"client_id": "c", "freelancer_id": "f", "currency": "USD", "title": "t"}
    for body, field in [
        ({**base, "type": "hourly", "weekly_limit_hours": 40}, "hourly_rate"),
        ({**base, "type": "hourly", "hourly_rate": usd("50.00")}, "weekly_limit_hours"),
        ({**base, "hourly_rate": usd("50.00")}, "hourly_rate"),
        ({**base, "weekly_limit_hours": 40}, "weekly_limit_hours"),
        ({**base, "type": "hourly", "hourly_rate": usd("0.00"), "weekly_limit_hours": 40}, "hourly_rate"),
        ({**base, "type": "hourly", "hourly_rate": usd("50.001"), "weekly_limit_hours": 40}, "hourly_rate.amount"),
        (
            {**base, "type": "hourly", "hourly_rate": {"amount": "50", "currency": "EUR"}, "weekly_limit_hours": 40},
            "hourly_rate.currency",
        ),
    ]:
        assert problem(post(api, "/v1/contracts", body), 422).get("field") == field, body
    for body in (
        {**base, "type": "hourly", "hourly_rate": usd("50.00"), "weekly_limit_hours": 169},
        {**base, "type": "weekly"},
        {**base, "type": "hourly", "hourly_rate": 50, "weekly_limit_hours": 40},
        hourly_body(timer=True),
    ):
        problem(post(api, "/v1/contracts", body), 400)
    assert count(api, contracts) == before


def test_time_is_logged_listed_in_pages_and_refused_when_it_overlaps(api: Api) -> None:
    contract_id = open_hourly(api)
    first = ok(log(api, contract_id, at(0, 9), at(0, 11), "setup"), 201)
    assert (first["minutes"], first["week"], first["memo"], first["manual"]) == (120, "2026-11-30", "setup", True)
    assert first["start"].startswith("2026-11-30T09:00:00")
    overlap = problem(log(api, contract_id, at(0, 10), at(0, 12)), 409, urn("segment-overlap"))
    assert overlap["conflicting_segment"] == first["id"]
    ok(log(api, contract_id, at(0, 11), at(0, 12)), 201)  # touching is not overlapping
    ok(log(api, contract_id, at(1, 9), at(1, 10)), 201)
    api.clock.set(MONDAY + timedelta(hours=11))  # the week before is still open until Monday 12:00
    ok(log(api, contract_id, at(-1, 9), at(-1, 10)), 201)
    api.clock.set(WEDNESDAY_NOON)

    page = ok(get(api, f"/v1/contracts/{contract_id}/time", week="2026-11-30", limit=2))
    assert [s["start"][:16] for s in page["data"]] == ["2026-11-30T09:00", "2026-11-30T11:00"]
    assert page["has_more"] is True
    rest = ok(get(api, f"/v1/contracts/{contract_id}/time", week="2026-11-30", starting_after=page["next_cursor"]))
    assert [s["start"][:16] for s in rest["data"]] == ["2026-12-01T09:00"]
    assert (rest["has_more"], rest["next_cursor"]) == (False, None)
    assert len(ok(get(api, f"/v1/contracts/{contract_id}/time"))["data"]) == 4
    problem(get(api, f"/v1/contracts/{contract_id}/time", week="2026-12-01"), 422)


def test_time_off_the_boundaries_in_the_future_or_without_a_memo_is_refused(api: Api) -> None:
    contract_id = open_hourly(api)
    before = count(api, time_segments)
    assert problem(log(api, contract_id, at(0, 9, 5), at(0, 10)), 422)["field"] == "start"
    assert problem(log(api, contract_id, at(0, 9), at(0, 9, 15)), 422)["field"] == "end"
    assert problem(log(api, contract_id, at(2, 12), at(2, 13)), 422)["field"] == "end"  # ends after now
    assert problem(log(api, contract_id, at(0, 11), at(0, 10)), 422)["field"] == "end"
    assert problem(log(api, contract_id, at(0, 9), at(0, 10), memo=" ", manual=False), 422)["field"] == "memo"
    assert problem(log(api, contract_id, "2026-11-30T09:00:00", at(0, 10)), 422)["field"] == "start"  # naive
    api.clock.set(MONDAY + timedelta(days=14))
    late = str(ok(post(api, "/v1/contracts", hourly_body()), 201)["id"])
    assert problem(log(api, late, at(7, 9), at(7, 10)), 422)["field"] == "start"  # before the contract
    problem(post(api, f"/v1/contracts/{contract_id}/time", {"start": at(0, 9), "end": at(0, 10), "x": 1}), 400)
    assert count(api, time_segments) == before


def test_manual_time_needs_a_contract_that_allows_it(api: Api) -> None:
    contract_id = open_hourly(api, manual_time_allowed=False)
    problem(log(api, contract_id, at(0, 9), at(0, 10)), 409, urn("manual-time-not-allowed"))
    ok(log(api, contract_id, at(0, 9), at(0, 10), manual=False), 201)


def test_a_paused_contract_takes_no_time_until_it_is_resumed(api: Api) -> None:
    contract_id = open_hourly(api)
    paused = ok(post(api, f"/v1/contracts/{contract_id}/pause"))
    assert paused["paused_at"].startswith("2026-12-02T12:00")
    assert ok(post(api, f"/v1/contracts/{contract_id}/pause"))["paused_at"] == paused["paused_at"]
    problem(log(api, contract_id, at(0, 9), at(0, 10)), 409, urn("contract-paused"))
    assert ok(post(api, f"/v1/contracts/{contract_id}/resume"))["paused_at"] is None
    ok(log(api, contract_id, at(0, 9), at(0, 10)), 201)
    ok(post(api, f"/v1/contracts/{contract_id}/end", {"ended_by": "client"}))
    problem(log(api, contract_id, at(0, 10), at(0, 11)), 409, urn("contract-ended"))
    problem(post(api, f"/v1/contracts/{contract_id}/pause"), 409, urn("contract-ended"))


def test_time_is_deleted_until_the_week_closes_on_monday_at_noon(api: Api) -> None:
    contract_id = open_hourly(api)
    first = ok(log(api, contract_id, at(0, 9), at(0, 10)), 201)
    second = ok(log(api, contract_id, at(0, 10), at(0, 11)), 201)
    url = f"/v1/contracts/{contract_id}/time"
    assert ok(api.client.delete(f"{url}/{first['id']}", headers=api.headers()))["id"] == first["id"]
    problem(api.client.delete(f"{url}/{first['id']}", headers=api.headers()), 404, urn("unknown-segment"))
    assert [s["id"] for s in ok(get(api, url))["data"]] == [second["id"]]
    api.clock.set(CLOSE - timedelta(minutes=1))
    ok(log(api, contract_id, at(6, 23, 50), at(7, 0)), 201)  # Sunday 23:50-24:00 belongs to the week
    api.clock.set(CLOSE)
    problem(api.client.delete(f"{url}/{second['id']}", headers=api.headers()), 409, urn("week-closed"))
    problem(log(api, contract_id, at(1, 9), at(1, 10)), 409, urn("week-closed"))
    assert week(api, contract_id)["state"] == "closing"  # closed by the next tick


def test_45_hours_on_a_40_hour_limit_bill_40_and_show_5_over(api: Api) -> None:
    contract_id = open_hourly(api)
    api.clock.set(MONDAY + timedelta(days=7, hours=6))
    for day in range(5):
        ok(log(api, contract_id, at(day, 8), at(day, 17)), 201)
    shown = week(api, contract_id)
    assert shown["week"] == "2026-11-30"
    assert shown["state"] == "open"
    assert (shown["logged_minutes"], shown["billable_minutes"], shown["over_limit_minutes"]) == (2700, 2400, 300)
    assert shown["amount"] == usd("2000.00")
    assert shown["payment_id"] is None
    assert (shown["closes_at"][:16], shown["review_ends_at"][:16], shown["available_at"][:16]) == (
        "2026-12-07T12:00",
        "2026-12-12T00:00",
        "2026-12-16T00:00",
    )
    assert [d["over_limit_minutes"] for d in shown["days"]] == [0, 0, 0, 0, 300, 0, 0]
    listed = ok(get(api, f"/v1/contracts/{contract_id}/weeks"))
    assert [w["week"] for w in listed["data"]] == ["2026-11-30"]


def test_a_limit_lowered_mid_week_applies_next_week_and_a_raise_at_once(api: Api) -> None:
    contract_id = open_hourly(api)
    lowered = ok(patch(api, contract_id, {"weekly_limit_hours": 30}))
    assert lowered["weekly_limit_hours"] == 30
    assert week(api, contract_id)["limit_hours"] == 40
    assert week(api, contract_id, "2026-12-07")["limit_hours"] == 30
    ok(patch(api, contract_id, {"weekly_limit_hours": 50}))
    assert week(api, contract_id)["limit_hours"] == 50
    problem(patch(api, contract_id, {}), 422)
    problem(patch(api, contract_id, {"weekly_limit_hours": -1}), 400)
    problem(patch(api, contract_id, {"title": "x"}), 400)


def test_a_rate_changed_mid_week_bills_each_segment_at_its_rate(api: Api) -> None:
    contract_id = open_hourly(api)
    api.clock.set(MONDAY + timedelta(hours=12))
    ok(log(api, contract_id, at(0, 9), at(0, 11)), 201)
    changed = ok(patch(api, contract_id, {"hourly_rate": usd("60.00")}))
    assert changed["hourly_rate"] == usd("60.00")
    api.clock.set(WEDNESDAY_NOON)
    ok(log(api, contract_id, at(1, 9), at(1, 11)), 201)
    assert week(api, contract_id)["amount"] == usd("220.00")
    assert problem(patch(api, contract_id, {"hourly_rate": usd("0")}), 422)["field"] == "hourly_rate"


def test_fixed_contracts_refuse_the_hourly_routes_and_hourly_ones_refuse_milestones(api: Api) -> None:
    api.clock.set(WEDNESDAY_NOON)
    fixed = ok(
        post(api, "/v1/contracts", {"client_id": "c", "freelancer_id": "f", "currency": "USD", "title": "t"}), 201
    )
    base = f"/v1/contracts/{fixed['id']}"
    wrong = urn("wrong-contract-type")
    problem(log(api, fixed["id"], at(0, 9), at(0, 10)), 409, wrong)
    problem(get(api, f"{base}/time"), 409, wrong)
    problem(api.client.delete(f"{base}/time/1", headers=api.headers()), 409, wrong)
    problem(get(api, f"{base}/weeks"), 409, wrong)
    problem(get(api, f"{base}/weeks/2026-11-30"), 409, wrong)
    problem(patch(api, fixed["id"], {"weekly_limit_hours": 30}), 409, wrong)
    problem(post(api, f"{base}/pause"), 409, wrong)
    problem(post(api, f"{base}/resume"), 409, wrong)
    hourly = open_hourly(api)
    problem(post(api, f"/v1/contracts/{hourly}/milestones", {"title": "m", "amount": usd("10.00")}), 409, wrong)
    problem(get(api, f"/v1/contracts/{hourly}/weeks/2026-12-01"), 422)
    problem(get(api, "/v1/contracts/ct_none/weeks/2026-11-30"), 404)


def test_logging_time_again_with_its_idempotency_key_replays_the_segment(api: Api) -> None:
    contract_id = open_hourly(api)
    body = {"start": at(0, 9), "end": at(0, 10), "memo": "once", "manual": True}
    headers = api.headers(**{"Idempotency-Key": "log-1"})
    first = ok(api.client.post(f"/v1/contracts/{contract_id}/time", json=body, headers=headers), 201)
    again = ok(api.client.post(f"/v1/contracts/{contract_id}/time", json=body, headers=headers), 201)
    assert again == first
    assert len(ok(get(api, f"/v1/contracts/{contract_id}/time"))["data"]) == 1


REVIEW_END = datetime(2026, 12, 12, tzinfo=UTC)
AVAILABLE = datetime(2026, 12, 16, tzinfo=UTC)


def tick(api: Api, moment: datetime) -> None:
    """What the operators' timer job runs: the timers due, then the payment orders due."""
    api.clock.set(moment)
    Escrow(api.book, api.gateway).orders.tick(moment)


def balance(api: Api) -> tuple[str, str]:
    shown = ok(get(api, "/v1/freelancers/fr_h/balance", currency="USD"))
    return shown["pending"]["amount"], shown["available"]["amount"]


def test_a_week_is_charged_released_and_made_available_over_the_api(api: Api) -> None:
    contract_id = open_hourly(api)
    ok(log(api, contract_id, at(0, 9), at(0, 11)), 201)
    ok(log(api, contract_id, at(1, 9), at(1, 10), manual=False), 201)
    tick(api, CLOSE)
    shown = week(api, contract_id)
    assert (shown["state"], shown["amount"], shown["payment_id"]) == ("in_review", usd("150.00"), None)
    assert shown["charge_order_id"].startswith("ord_")
    tick(api, REVIEW_END)
    shown = week(api, contract_id)
    assert shown["state"] == "released"
    payment = ok(get(api, f"/v1/payments/{shown['payment_id']}"))
    assert (payment["gross"], payment["fee"], payment["net"]) == (usd("150.00"), usd("30.00"), usd("120.00"))
    assert balance(api) == ("120.00", "0.00")
    listed = ok(get(api, "/v1/freelancers/fr_h/transactions", currency="USD"))
    assert any(e["kind"] == "escrow.release" for e in listed["data"])
    tick(api, AVAILABLE)
    assert week(api, contract_id)["state"] == "available"
    assert balance(api) == ("0.00", "120.00")
    assert [w["state"] for w in ok(get(api, f"/v1/contracts/{contract_id}/weeks"))["data"]] == ["available"]


def test_a_bonus_on_an_hourly_contract_is_paid_at_once_and_a_bad_one_changes_nothing(api: Api) -> None:
    contract_id = open_hourly(api)
    bonus = ok(post(api, f"/v1/contracts/{contract_id}/bonus", {"amount": usd("100.00"), "memo": "Thanks"}), 201)
    assert (bonus["state"], bonus["amount"]) == ("released", usd("100.00"))
    assert ok(get(api, f"/v1/payments/{bonus['payment_id']}"))["fee"] == usd("20.00")
    assert ok(get(api, f"/v1/contracts/{contract_id}/bonuses/{bonus['bonus']}"))["payment_id"] == bonus["payment_id"]
    assert balance(api) == ("80.00", "0.00")
    problem(post(api, f"/v1/contracts/{contract_id}/bonus", {"amount": usd("-1.00")}), 422)
    problem(post(api, f"/v1/contracts/{contract_id}/bonus", {"amount": {"amount": "1.00", "currency": "EUR"}}), 422)
    problem(post(api, f"/v1/contracts/{contract_id}/bonus", {"amount": usd("1.00"), "tip": 1}), 400)
    fixed = ok(
        post(api, "/v1/contracts", {"client_id": "c", "freelancer_id": "f", "currency": "USD", "title": "t"}), 201
    )
    problem(post(api, f"/v1/contracts/{fixed['id']}/bonus", {"amount": usd("1.00")}), 409, urn("wrong-contract-type"))
    assert balance(api) == ("80.00", "0.00")


def test_a_week_is_disputed_contested_and_resolved_by_an_operator_over_the_api(api: Api) -> None:
    contract_id = open_hourly(api)
    ok(log(api, contract_id, at(0, 9), at(0, 11)), 201)  # 100.00
    tick(api, CLOSE)
    url = f"/v1/contracts/{contract_id}/weeks/2026-11-30/dispute"
    problem(post(api, url, {"minutes": 60}), 400)  # the reason is required
    shown = ok(post(api, url, {"minutes": 60, "reason": "one hour too many"}), 201)
    assert shown["state"] == "disputed"
    assert (shown["dispute"]["amount"], shown["dispute"]["state"]) == (usd("50.00"), "open")
    assert ok(get(api, f"/v1/contracts/{contract_id}"))["paused_by"] == "dispute"
    assert ok(post(api, f"{url}/contest"))["dispute"]["state"] == "contested"
    body = {"release": usd("20.00"), "refund": usd("30.00")}
    problem(post(api, f"{url}/resolve", body), 403)  # operators only
    resolved = ok(post(api, f"{url}/resolve", body, role="admin"))
    assert (resolved["dispute"]["state"], resolved["dispute"]["released"]) == ("resolved", usd("20.00"))
    tick(api, REVIEW_END)
    assert balance(api) == ("56.00", "0.00")  # 20.00 + 50.00 released, less 20%
    problem(post(api, f"{url}/accept"), 409, urn("week-not-disputable"))
