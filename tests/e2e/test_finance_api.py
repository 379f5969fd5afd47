"""Parties, fee quotes, finance reads, audit, journal, health and the OpenAPI document over HTTP.

The ledger is filled through the marketplace endpoints (a 1,000.00 first milestone
between cl_1 and fr_1, released on 2026-01-05 09:00 UTC); finance and auditors
read it back with their own keys. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from httpx import Response
from pypdf import PdfReader

from ledger import AccountSpec, AccountType, EntryRequest, credit, debit
from ledger.api.schemas import Amount, StatementOut
from ledger.api.views import statement_line_out
from ledger.clock import format_period
from ledger.invoices import statements
from ledger.invoices.documents import StatementHeading, StatementLine
from ledger.invoices.service import Finance
from ledger.invoices.statements import statement_csv
from ledger.journal import MAX_BATCH
from ledger.money import format_amount
from tests.e2e.conftest import Api

JANUARY = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}
FEES = "revenue:fees:service"


# --- helpers --------------------------------------------------------------------------------


def usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


def ok(response: Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def get(api: Api, path: str, role: str = "finance", **params: Any) -> Response:
    return api.client.get(path, params=params, headers=api.headers(role))


def post(api: Api, path: str, body: Any = None) -> Response:
    return api.client.post(path, json=body, headers=api.headers("marketplace"))


def ok_text(response: Response) -> str:
    assert response.status_code == 200, response.text
    return response.text


def minor_to_text(minor: int) -> str:
    """Minor units of USD as the API writes them (a decimal string)."""
    return format_amount(minor, "USD")


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def release(api: Api, amount: str = "1000.00", client: str = "cl_1", freelancer: str = "fr_1") -> str:
    """Open a contract, fund a milestone of `amount` and approve it; returns the payment id."""
    contract = ok(
        post(
            api, "/v1/contracts", {"client_id": client, "freelancer_id": freelancer, "currency": "USD", "title": "Logo"}
        ),
        201,
    )
    milestone = ok(
        post(api, f"/v1/contracts/{contract['id']}/milestones", {"title": "Draft", "amount": usd(amount)}), 201
    )
    ok(post(api, f"/v1/milestones/{milestone['id']}/fund"))
    [payment] = ok(post(api, f"/v1/milestones/{milestone['id']}/approve"))["payments"]
    return str(payment["id"])


def set_parties(api: Api) -> None:
    for party, name in (("cl_1", "Acme Widgets Inc."), ("fr_1", "Ada Lovelace")):
        ok(api.client.put(f"/v1/parties/{party}", json={"display_name": name}, headers=api.headers()))


def pdf_text(content: bytes) -> str:
    assert content.startswith(b"%PDF")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


# --- parties ---------------------------------------------------------------------------------


def test_a_party_record_is_created_with_put_and_read_back_with_get(api: Api) -> None:
    record = {
        "display_name": "Ada Lovelace",
        "legal_name": "Ada Lovelace Ltd",
        "address": "12 St James's Square\nLondon",
        "country": "gb",
        "tax_id": "GB123456789",
        "provider_id": "acct_123",
    }
    put = ok(api.client.put("/v1/parties/fr_1", json=record, headers=api.headers()))
    assert put["party_id"] == "fr_1"
    assert put["country"] == "GB"
    assert {k: put[k] for k in record if k != "country"} == {k: v for k, v in record.items() if k != "country"}
    assert ok(api.client.get("/v1/parties/fr_1", headers=api.headers())) == put


def test_a_party_update_changes_only_the_fields_it_names(api: Api) -> None:
    ok(api.client.put("/v1/parties/cl_1", json={"display_name": "Acme", "country": "DE"}, headers=api.headers()))
    updated = ok(api.client.put("/v1/parties/cl_1", json={"tax_id": "DE999"}, headers=api.headers()))
    assert (updated["display_name"], updated["country"], updated["tax_id"]) == ("Acme", "DE", "DE999")


def test_a_new_party_needs_a_display_name_and_an_unknown_party_is_404(api: Api) -> None:
    refused = problem(api.client.put("/v1/parties/cl_2", json={"country": "DE"}, headers=api.headers()), 422)
    assert refused["field"] == "display_name"
    missing = problem(api.client.get("/v1/parties/cl_2", headers=api.headers()), 404)
    assert missing["type"] == "urn:ledger:problem:unknown-party"


def test_a_party_country_must_be_an_iso_alpha_2_code(api: Api) -> None:
    refused = problem(
        api.client.put("/v1/parties/cl_3", json={"display_name": "X", "country": "DEU"}, headers=api.headers()), 422
    )
    assert refused["field"] == "country"
    problem(api.client.get("/v1/parties/cl_3", headers=api.headers()), 404)


# --- fee quotes --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["marketplace", "finance"])
def test_a_first_600_job_on_the_classic_schedule_pays_110_fee_and_nets_490(api: Api, role: str) -> None:
    quote = ok(
        get(api, "/v1/fees/quote", role, freelancer_id="fr_1", client_id="cl_1", amount="600.00", currency="USD")
    )
    assert quote["schedule"] == "classic"
    assert quote["amount"] == usd("600.00")
    assert quote["fee"] == usd("110.00")
    assert quote["net"] == usd("490.00")
    assert quote["lifetime_before"] == usd("0.00")
    assert quote["lifetime_after"] == usd("600.00")
    assert [(line["amount"], line["rate"], line["fee"]) for line in quote["lines"]] == [
        (usd("500.00"), "0.20", usd("100.00")),
        (usd("100.00"), "0.10", usd("10.00")),
    ]


def test_a_fee_quote_counts_the_lifetime_billings_of_the_pair_and_charges_nothing(api: Api) -> None:
    release(api, "1000.00")
    journal = ok(get(api, "/v1/journal", "auditor", limit=100))["data"]

    quote = ok(get(api, "/v1/fees/quote", freelancer_id="fr_1", client_id="cl_1", amount="600.00", currency="USD"))
    assert quote["lifetime_before"] == usd("1000.00")
    assert quote["fee"] == usd("60.00")  # all in the 10% tier
    other_client = ok(
        get(api, "/v1/fees/quote", freelancer_id="fr_1", client_id="cl_2", amount="600.00", currency="USD")
    )
    assert other_client["fee"] == usd("110.00")
    assert ok(get(api, "/v1/journal", "auditor", limit=100))["data"] == journal


def test_a_fee_quote_prices_a_hypothetical_lifetime_at_a_date(api: Api) -> None:
    quote = ok(get(api, "/v1/fees/quote", lifetime="250.00", amount="1000.00", currency="USD", at="2026-01-01"))
    assert (quote["fee"], quote["lifetime_after"]) == (usd("125.00"), usd("1250.00"))
    assert [line["rate"] for line in quote["lines"]] == ["0.20", "0.10"]
    both = get(
        api, "/v1/fees/quote", lifetime="1.00", freelancer_id="fr_1", client_id="cl_1", amount="1.00", currency="USD"
    )
    assert "not both" in problem(both, 422)["detail"]
    assert problem(get(api, "/v1/fees/quote", amount="1.00", currency="USD"), 422)["field"] == "freelancer_id"


def test_dates_mean_midnight_utc_as_of_defaults_to_now_and_one_currency_needs_no_naming(api: Api) -> None:
    release(api)
    api.clock.set(api.clock.now() + timedelta(seconds=1))  # as_of excludes what is posted at it
    now = ok(get(api, "/v1/reports/trial-balance"))
    assert now["balanced"] is True and now["rows"]
    before = ok(get(api, "/v1/reports/trial-balance", as_of="2026-01-01"))
    assert before["as_of"] == "2026-01-01T00:00:00Z" and before["rows"] == []
    balance = ok(get(api, f"/v1/accounts/{FEES}/balance"))
    assert balance["balance"]["currency"] == "USD"
    statement = ok(get(api, f"/v1/accounts/{FEES}/statement", **{"from": "2026-01-01", "to": "2027-01-01"}))
    assert statement["period"] == "[2026-01-01T00:00:00Z, 2027-01-01T00:00:00Z)"
    assert statement["closing_balance"] == balance["balance"]
    naive = problem(get(api, "/v1/reports/trial-balance", as_of="2026-01-01T00:00:00"), 422)
    assert "no UTC offset" in naive["detail"] and naive["field"] == "as_of"


def test_a_fee_quote_refuses_an_inexact_amount(api: Api) -> None:
    problem(get(api, "/v1/fees/quote", freelancer_id="fr_1", client_id="cl_1", amount="600.001", currency="USD"), 422)


# --- accounts, balances and statements ---------------------------------------------------------


def test_the_accounts_list_shows_every_account_with_its_currency_type_and_floor(api: Api) -> None:
    release(api)
    page = ok(get(api, "/v1/accounts", limit=100))
    assert page["has_more"] is False
    assert page["next_cursor"] is None
    by_code = {a["code"]: a for a in page["data"]}
    assert {FEES, "liabilities:freelancer:fr_1:pending", "liabilities:freelancer:fr_1:available"} <= set(by_code)
    assert by_code[FEES]["type"] == "revenue"
    assert by_code[FEES]["currency"] == "USD"
    assert by_code["liabilities:freelancer:fr_1:pending"]["floor"] == usd("0.00")
    assert any(code.startswith("liabilities:escrow:ms_") for code in by_code)


def test_the_accounts_list_pages_with_limit_and_starting_after(api: Api) -> None:
    release(api)
    everything = [a["code"] for a in ok(get(api, "/v1/accounts", limit=100))["data"]]
    assert len(everything) > 3

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = ok(get(api, "/v1/accounts", **params))
        assert len(page["data"]) <= 2
        seen += [a["code"] for a in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        params["starting_after"] = page["next_cursor"]
    assert seen == everything


def test_an_account_balance_now_and_as_of_a_moment_before_the_release(api: Api) -> None:
    release(api)  # at 2026-01-05T09:00:00Z

    now = ok(get(api, f"/v1/accounts/{FEES}/balance", currency="USD"))
    assert now["account"] == FEES
    assert now["balance"] == usd("150.00")
    before = ok(get(api, f"/v1/accounts/{FEES}/balance", currency="USD", as_of="2026-01-05T09:00:00Z"))
    assert before["balance"] == usd("0.00")  # [.., as_of): the release is not before it
    after = ok(get(api, f"/v1/accounts/{FEES}/balance", currency="USD", as_of="2026-01-05T09:00:01Z"))
    assert after["balance"] == usd("150.00")
    assert after["as_of"] == "2026-01-05T09:00:01Z"


def test_an_account_balance_as_of_needs_a_time_zone_and_an_unknown_account_is_404(api: Api) -> None:
    release(api)
    naive = problem(get(api, f"/v1/accounts/{FEES}/balance", currency="USD", as_of="2026-01-05T09:00:00"), 422)
    assert naive["field"] == "as_of"
    missing = problem(get(api, "/v1/accounts/revenue:nothing/balance", currency="USD"), 404)
    assert missing["type"] == "urn:ledger:problem:unknown-account"


def test_an_account_statement_as_json_has_opening_and_closing_balances_and_running_lines(api: Api) -> None:
    release(api, "1000.00")
    api.clock.advance(timedelta(days=2))
    release(api, "200.00")  # fee 20.00 (the 10% tier)

    statement = ok(get(api, f"/v1/accounts/{FEES}/statement", currency="USD", **JANUARY))
    assert statement["account"] == FEES
    assert statement["opening_balance"] == usd("0.00")
    assert statement["closing_balance"] == usd("170.00")
    assert [(line["credit"], line["running_balance"]) for line in statement["lines"]] == [
        (usd("150.00"), usd("150.00")),
        (usd("20.00"), usd("170.00")),
    ]

    later = ok(
        get(api, f"/v1/accounts/{FEES}/statement", currency="USD", **{**JANUARY, "from": "2026-01-06T00:00:00Z"})
    )
    assert later["opening_balance"] == usd("150.00")
    assert len(later["lines"]) == 1


def test_an_account_statement_as_csv_has_a_header_and_one_row_per_line(api: Api) -> None:
    release(api)

    response = get(api, f"/v1/accounts/{FEES}/statement", currency="USD", format="csv", **JANUARY)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 1
    assert rows[0]["credit"] == "150.00"
    assert rows[0]["currency"] == "USD"
    assert rows[0]["kind"] == "escrow.release"


def test_an_account_statement_as_pdf_is_a_pdf_showing_the_account_and_amounts(api: Api) -> None:
    release(api)

    response = get(api, f"/v1/accounts/{FEES}/statement", currency="USD", format="pdf", **JANUARY)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/pdf")
    assert response.content.startswith(b"%PDF")
    text = pdf_text(response.content)
    assert FEES in text
    assert "150.00" in text


def post_transfers(api: Api, count: int, *, start: datetime) -> list[int]:
    """`count` two-leg entries between two bench accounts, one a minute from `start`, in
    batches of `MAX_BATCH` at most; returns the amounts debited to `assets:bench:a`."""
    for code in ("assets:bench:a", "assets:bench:b"):
        api.book.open_account(AccountSpec(code, AccountType.ASSET, "USD"))
    amounts = [1 + (n * 7919) % 100_000 for n in range(count)]  # minor units, some odd cents
    requests = [
        EntryRequest(
            f"bench-{n}",
            "bench.transfer",
            (debit("assets:bench:a", amount, "USD"), credit("assets:bench:b", amount, "USD")),
            effective_at=start + timedelta(minutes=n),
            refs={"payment": f"py_{n}"},
        )
        for n, amount in enumerate(amounts)
    ]
    for first in range(0, count, MAX_BATCH):
        api.book.post_batch(requests[first : first + MAX_BATCH])
    return amounts


def test_a_long_statement_streams_as_json_and_csv_with_its_running_balance(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks, so that this statement is sent in many pieces.
    monkeypatch.setattr(statements, "CHUNK_CHARS", 4096)
    amounts = post_transfers(api, 3_000, start=datetime(2026, 1, 1, tzinfo=UTC))
    total = sum(amounts)
    later = {"from": "2026-01-01T00:30:00Z", "to": "2026-02-01T00:00:00Z"}  # the first 30 lines before it

    response = get(api, "/v1/accounts/assets:bench:a/statement", currency="USD", **later)
    body = ok(response)
    assert "content-length" not in response.headers  # streamed, not built whole
    assert body["opening_balance"] == usd(minor_to_text(sum(amounts[:30])))
    assert body["closing_balance"] == usd(minor_to_text(total))
    assert len(body["lines"]) == 3_000 - 30
    running = sum(amounts[:30])
    for line, amount in zip(body["lines"], amounts[30:], strict=True):
        running += amount
        assert line["debit"] == usd(minor_to_text(amount))
        assert line["running_balance"] == usd(minor_to_text(running))
    assert running == total

    # Byte for byte what the whole statement encodes to.
    whole = Finance(api.book).account_statement(
        "assets:bench:a", "USD", datetime(2026, 1, 1, 0, 30, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    )
    head = StatementOut(
        account="assets:bench:a",
        currency="USD",
        period_from=whole.period_from.isoformat(),
        period_to=whole.period_to.isoformat(),
        period=format_period(whole.period_from, whole.period_to),
        opening_balance=Amount.of(whole.opening_balance, "USD"),
        closing_balance=Amount.of(whole.closing_balance, "USD"),
        lines=[statement_line_out(line) for line in whole.lines],
    )
    assert response.content == msgspec.json.encode(head)

    response = get(api, "/v1/accounts/assets:bench:b/statement", currency="USD", format="csv", **JANUARY)
    assert response.status_code == 200, response.text
    assert "content-length" not in response.headers
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 3_000
    assert sum(Decimal(row["credit"]) for row in rows) == Decimal(total) / 100
    assert rows[-1]["running_balance"] == minor_to_text(-total)  # an asset credited: below zero
    assert rows[0]["reference"] == "py_0" and rows[-1]["entry_id"] == str(int(rows[0]["entry_id"]) + 2_999)
    everything = Finance(api.book).account_statement(
        "assets:bench:b", "USD", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    )
    assert response.text == statement_csv(everything)


def test_a_statement_above_the_pdf_limit_is_refused_as_pdf_and_streams_as_csv(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statements, "MAX_PDF_LINES", 20)
    post_transfers(api, 21, start=datetime(2026, 1, 1, tzinfo=UTC))
    path = "/v1/accounts/assets:bench:a/statement"

    body = problem(get(api, path, currency="USD", format="pdf", **JANUARY), 422)
    assert body["type"] == "urn:ledger:problem:statement-too-long"
    assert "21 lines, more than the PDF limit of 20; ask for format=csv" in body["detail"]
    assert (body["lines"], body["limit"]) == (21, 20)

    at_the_limit = {"from": "2026-01-01T00:01:00Z", "to": "2026-02-01T00:00:00Z"}  # 20 lines
    response = get(api, path, currency="USD", format="pdf", **at_the_limit)
    assert response.status_code == 200, response.text
    assert response.content.startswith(b"%PDF")
    rows = list(csv.DictReader(io.StringIO(ok_text(get(api, path, currency="USD", format="csv", **JANUARY)))))
    assert len(rows) == 21


def test_a_statement_stream_reads_one_snapshot(api: Api) -> None:
    amounts = post_transfers(api, 50, start=datetime(2026, 1, 1, tzinfo=UTC))
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)

    def post_between_heading_and_lines(
        heading: StatementHeading, lines: Iterator[StatementLine]
    ) -> Iterator[tuple[StatementHeading, list[StatementLine]]]:
        # Another transaction commits an entry of the period after the balances were
        # summed and before the lines are read: the stream sees neither.
        api.book.post(
            EntryRequest(
                "after-the-snapshot",
                "bench.transfer",
                (debit("assets:bench:a", 1, "USD"), credit("assets:bench:b", 1, "USD")),
                effective_at=start + timedelta(days=1),
            )
        )
        yield heading, list(lines)

    [(heading, lines)] = Finance(api.book).stream_account_statement(
        "assets:bench:a", "USD", start, end, post_between_heading_and_lines
    )
    assert len(lines) == 50
    assert heading.closing_balance == lines[-1].running_balance == sum(amounts)
    assert api.book.balance("assets:bench:a", "USD") == sum(amounts) + 1


def test_an_account_statement_refuses_an_unknown_format(api: Api) -> None:
    release(api)
    problem(get(api, f"/v1/accounts/{FEES}/statement", currency="USD", format="xml", **JANUARY), 400)


# --- reports --------------------------------------------------------------------------------------


def test_the_trial_balance_balances_per_currency(api: Api) -> None:
    release(api)

    report = ok(get(api, "/v1/reports/trial-balance", as_of="2026-02-01T00:00:00Z"))
    assert report["balanced"] is True
    [total] = report["totals"]
    assert total["debit"] == total["credit"]
    assert total["debit"]["currency"] == "USD"
    rows = {row["account"]: row for row in report["rows"]}
    assert rows[FEES]["credit"] == usd("150.00")
    assert rows["liabilities:freelancer:fr_1:pending"]["credit"] == usd("850.00")

    empty = ok(get(api, "/v1/reports/trial-balance", as_of="2026-01-01T00:00:00Z"))
    assert empty["balanced"] is True
    assert all(row["debit"]["amount"] == row["credit"]["amount"] == "0.00" for row in empty["rows"])


def test_the_fee_report_shows_billings_fees_refunds_and_net_per_client(api: Api) -> None:
    payment = release(api)
    ok(post(api, f"/v1/payments/{payment}/refunds", {"amount": usd("100.00")}), 201)

    rows = ok(get(api, "/v1/reports/fees", **JANUARY))
    [row] = rows
    assert row["client_id"] == "cl_1"
    assert (row["billings"], row["fees"], row["refunded"], row["fee_refunds"], row["net"]) == (
        usd("1000.00"),
        usd("150.00"),
        usd("100.00"),
        usd("10.00"),
        usd("140.00"),
    )
    assert ok(get(api, "/v1/reports/fees", **{"from": "2026-02-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"})) == []


def test_a_report_period_must_end_after_it_starts(api: Api) -> None:
    refused = problem(
        get(api, "/v1/reports/fees", **{"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}), 422
    )
    assert refused["field"] == "to"


# --- invoices -------------------------------------------------------------------------------------


def test_a_release_issues_a_client_invoice_and_a_fee_invoice_listed_newest_first(api: Api) -> None:
    set_parties(api)
    release(api)

    page = ok(get(api, "/v1/invoices"))
    assert page["has_more"] is False
    by_number = {d["number"]: d for d in page["data"]}
    assert set(by_number) == {"INV-2026-000001", "FEE-2026-000001"}
    client_invoice, fee_invoice = by_number["INV-2026-000001"], by_number["FEE-2026-000001"]
    assert client_invoice["kind"] == "client_invoice"
    assert client_invoice["total"] == usd("1000.00")
    assert client_invoice["recipient"]["display_name"] == "Acme Widgets Inc."
    assert fee_invoice["kind"] == "fee_invoice"
    assert fee_invoice["total"] == usd("150.00")
    assert [line["amount"] for line in fee_invoice["lines"]] == [usd("100.00"), usd("50.00")]

    api.clock.advance(timedelta(days=1))
    release(api, "100.00")
    issued = [d["issued_at"] for d in ok(get(api, "/v1/invoices"))["data"]]
    assert issued == sorted(issued, reverse=True)
    assert len(issued) == 4


def test_the_invoice_list_pages_with_limit_and_starting_after(api: Api) -> None:
    for day in range(3):
        api.clock.advance(timedelta(days=day))
        release(api, "100.00")
    everything = [d["number"] for d in ok(get(api, "/v1/invoices", limit=100))["data"]]
    assert len(everything) == 6

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 4}
    while True:
        page = ok(get(api, "/v1/invoices", **params))
        seen += [d["number"] for d in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        assert page["next_cursor"]
        params["starting_after"] = page["next_cursor"]
    assert seen == everything


def test_an_invoice_is_read_as_json_by_its_number(api: Api) -> None:
    set_parties(api)
    release(api)

    invoice = ok(get(api, "/v1/invoices/FEE-2026-000001"))
    assert invoice["number"] == "FEE-2026-000001"
    assert invoice["total"] == usd("150.00")
    assert invoice["recipient"]["display_name"] == "Ada Lovelace"
    assert invoice["references"]["client_invoice"] == "INV-2026-000001"
    missing = problem(get(api, "/v1/invoices/INV-2026-999999"), 404)
    assert missing["type"] == "urn:ledger:problem:unknown-document"


def test_an_invoice_is_a_pdf_with_accept_application_pdf_showing_its_number_and_amounts(api: Api) -> None:
    set_parties(api)
    release(api)

    response = api.client.get("/v1/invoices/FEE-2026-000001", headers=api.headers("finance", accept="application/pdf"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/pdf")
    text = pdf_text(response.content)
    assert "FEE-2026-000001" in text
    assert "Ada Lovelace" in text
    for amount in ("100.00", "50.00", "150.00"):
        assert amount in text

    client_invoice = pdf_text(
        api.client.get("/v1/invoices/INV-2026-000001", headers=api.headers("finance", accept="application/pdf")).content
    )
    assert "INV-2026-000001" in client_invoice
    assert "Acme Widgets Inc." in client_invoice
    assert "1,000.00" in client_invoice or "1000.00" in client_invoice


# --- audit and journal -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["auditor", "finance"])
def test_the_audit_runs_every_check_and_reports_ok(api: Api, role: str) -> None:
    payment = release(api)
    ok(post(api, f"/v1/payments/{payment}/refunds", {"amount": usd("10.00")}), 201)

    report = ok(get(api, "/v1/audit", role))
    assert set(report) == {"ok", "checks"}
    assert report["ok"] is True
    assert len(report["checks"]) >= 9
    names = [check["name"] for check in report["checks"]]
    assert len(names) == len(set(names))
    assert {"entries_balance", "trial_balance", "escrow_matches_milestones", "fee_chain"} <= set(names)
    for check in report["checks"]:
        assert set(check) >= {"name", "ok", "problems"}
        assert check["ok"] is True
        assert check["problems"] == []


def test_the_journal_lists_entries_with_postings_newest_first(api: Api) -> None:
    release(api)

    page = ok(get(api, "/v1/journal", "auditor"))
    assert [e["kind"] for e in page["data"]] == ["escrow.release", "escrow.fund"]
    assert page["has_more"] is False
    for entry in page["data"]:
        debits = sum(int(p["amount"]["amount"].replace(".", "")) for p in entry["postings"] if p["side"] == "debit")
        credits = sum(int(p["amount"]["amount"].replace(".", "")) for p in entry["postings"] if p["side"] == "credit")
        assert debits == credits > 0
        assert entry["idempotency_key"]
    release_entry = page["data"][0]
    assert {(p["account"], p["side"], p["amount"]["amount"]) for p in release_entry["postings"]} >= {
        ("liabilities:freelancer:fr_1:pending", "credit", "850.00"),
        (FEES, "credit", "150.00"),
    }


def test_the_journal_filters_by_kind_and_pages_with_limit_and_starting_after(api: Api) -> None:
    for _ in range(3):
        release(api, "100.00")

    releases = ok(get(api, "/v1/journal", "auditor", kind="escrow.release"))["data"]
    assert len(releases) == 3
    assert {e["kind"] for e in releases} == {"escrow.release"}

    everything = [e["id"] for e in ok(get(api, "/v1/journal", "auditor", limit=100))["data"]]
    assert len(everything) == 6
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 4}
    while True:
        page = ok(get(api, "/v1/journal", "auditor", **params))
        seen += [e["id"] for e in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        params["starting_after"] = page["next_cursor"]
    assert seen == everything


def journal_in_two_days(api: Api) -> None:
    release(api, "100.00")  # 2026-01-05 09:00
    api.clock.advance(timedelta(days=2))
    release(api, "200.00")  # 2026-01-07 09:00 (the first payment matures only on 2026-01-10)


def test_the_journal_filters_by_effective_time_before_to(api: Api) -> None:
    journal_in_two_days(api)

    early = ok(get(api, "/v1/journal", "auditor", to="2026-01-06T00:00:00Z"))["data"]
    assert [e["effective_at"] for e in early] == ["2026-01-05T09:00:00Z"] * 2


def test_the_journal_filters_by_effective_time_from(api: Api) -> None:
    journal_in_two_days(api)

    late = ok(get(api, "/v1/journal", "auditor", **{"from": "2026-01-06T00:00:00Z"}))["data"]
    assert [e["effective_at"] for e in late] == ["2026-01-07T09:00:00Z"] * 2
    window = ok(get(api, "/v1/journal", "auditor", **{"from": "2026-01-05T00:00:00Z", "to": "2026-01-06T00:00:00Z"}))
    assert len(window["data"]) == 2


# --- health and the OpenAPI document ------------------------------------------------------------------


def test_health_live_and_ready_answer_without_a_key(api: Api) -> None:
    assert ok(api.client.get("/health/live")) == {"status": "ok"}
    assert ok(api.client.get("/health/ready")) == {"status": "ok", "worker": "none has reported"}
    api.book.transaction(
        lambda uow: uow.orders.heartbeat("worker:test", started_at=uow.clock.now(), summary="nothing due")
    )
    ready = ok(api.client.get("/health/ready"))
    assert ready["worker"].startswith("worker:test at ")  # the newest heartbeat


#: Every endpoint of issue 6, as the frontend calls it.
ISSUE_ENDPOINTS = {
    ("post", "/v1/contracts"),
    ("get", "/v1/contracts/{contract_id}"),
    ("post", "/v1/contracts/{contract_id}/milestones"),
    ("get", "/v1/milestones/{milestone_id}"),
    ("post", "/v1/milestones/{milestone_id}/fund"),
    ("post", "/v1/milestones/{milestone_id}/submit"),
    ("post", "/v1/milestones/{milestone_id}/request-changes"),
    ("post", "/v1/milestones/{milestone_id}/approve"),
    ("post", "/v1/contracts/{contract_id}/end"),
    ("post", "/v1/milestones/{milestone_id}/refund-request/accept"),
    ("post", "/v1/milestones/{milestone_id}/refund-request/dispute"),
    ("post", "/v1/milestones/{milestone_id}/dispute/resolve"),
    ("post", "/v1/payments/{payment_id}/refunds"),
    ("get", "/v1/freelancers/{freelancer_id}/balance"),
    ("get", "/v1/freelancers/{freelancer_id}/transactions"),
    ("post", "/v1/freelancers/{freelancer_id}/payouts"),
    ("get", "/v1/payouts/{payout_id}"),
    ("put", "/v1/parties/{party_id}"),
    ("get", "/v1/parties/{party_id}"),
    ("get", "/v1/fees/quote"),
    ("get", "/v1/accounts"),
    ("get", "/v1/accounts/{code}/balance"),
    ("get", "/v1/accounts/{code}/statement"),
    ("get", "/v1/reports/trial-balance"),
    ("get", "/v1/reports/fees"),
    ("get", "/v1/invoices"),
    ("get", "/v1/invoices/{number}"),
    ("get", "/v1/audit"),
    ("get", "/v1/journal"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
}
ISSUE_TAGS = {"escrow", "balances", "payouts", "fees", "parties", "finance", "audit", "operators"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def test_the_openapi_document_is_openapi_3_1_served_without_a_key(api: Api) -> None:
    spec = ok(api.client.get("/schema/openapi.json"))
    assert spec["openapi"].startswith("3.1")
    assert spec["info"]["title"]
    assert "bearer" in {s.get("scheme") for s in spec["components"]["securitySchemes"].values()}
    docs = api.client.get("/schema")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")


def test_every_operation_has_a_unique_operation_id_and_a_tag(api: Api) -> None:
    spec = ok(api.client.get("/schema/openapi.json"))
    found = operations(spec)
    ids = [op.get("operationId") for _, _, op in found]
    assert all(ids), [(m, p) for m, p, op in found if not op.get("operationId")]
    assert len(ids) == len(set(ids))
    for method, path, operation in found:
        assert operation.get("tags"), f"{method.upper()} {path} has no tag"
        if path.startswith("/v1/") and not path.startswith("/v1/webhooks/"):  # provider webhooks are no family
            assert set(operation["tags"]) <= ISSUE_TAGS, f"{method.upper()} {path}: {operation['tags']}"


def test_the_openapi_document_has_every_endpoint_of_the_issue(api: Api) -> None:
    spec = ok(api.client.get("/schema/openapi.json"))
    documented = {(method, path) for method, path, _ in operations(spec)}
    assert ISSUE_ENDPOINTS - documented == set()


def test_amounts_are_documented_as_decimal_strings_never_numbers(api: Api) -> None:
    spec = ok(api.client.get("/schema/openapi.json"))
    amount = spec["components"]["schemas"]["Amount"]
    assert amount["properties"]["amount"]["type"] == "string"
    assert amount["properties"]["currency"]["type"] == "string"


# --- party statements ----------------------------------------------------------------------


def party_statement(api: Api, party: str, role: str, key: str = "finance", **params: Any) -> Response:
    query = {"role": role, "currency": "USD", "from": "2026-01-01", "to": "2027-01-01", **params}
    return api.client.get(f"/v1/parties/{party}/statement", params=query, headers=api.headers(key))


def test_a_party_statement_over_http_is_the_clis_in_json_csv_and_pdf(api: Api) -> None:
    payment = release(api, "1000.00")
    ok(post(api, f"/v1/payments/{payment}/refunds", {"amount": usd("100.00")}), 201)
    freelancer = ok(party_statement(api, "fr_1", "freelancer", "marketplace"))
    assert freelancer["account"] == "fr_1"
    assert freelancer["period"] == "[2026-01-01T00:00:00Z, 2027-01-01T00:00:00Z)"
    # 1000.00 released less the 20%/10% fee (150.00), then 100.00 refunded less its 10.00 fee back.
    assert (freelancer["opening_balance"], freelancer["closing_balance"]) == (usd("0.00"), usd("760.00"))
    assert [line["kind"] for line in freelancer["lines"]] == ["escrow.release", "escrow.payment_refund"]
    client = ok(party_statement(api, "cl_1", "client"))
    # Funded and released; the refund after release booked to the client, then paid by the provider.
    assert [line["kind"] for line in client["lines"]] == [
        "escrow.fund",
        "escrow.release",
        "escrow.payment_refund",
        "refund.settled",
    ]
    assert [line["running_balance"] for line in client["lines"]] == [
        usd("1000.00"),
        usd("0.00"),
        usd("100.00"),
        usd("0.00"),
    ]
    assert client["closing_balance"] == usd("0.00")  # nothing held or owed any more
    csv = ok_text(party_statement(api, "fr_1", "freelancer", format="csv"))
    assert csv.splitlines()[0].startswith("posted_at,entry_id,account") and len(csv.splitlines()) == 3
    pdf = party_statement(api, "fr_1", "freelancer", format="pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert problem(party_statement(api, "fr_1", "freelancer", to="2026-13-01"), 422)["field"] == "to"
