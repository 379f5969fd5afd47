"""PDFs of documents and statements: what they print, and that they print it the same way twice."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader

from ledger.invoices.documents import Document, DocumentKind, DocumentLine, PartyDetails, Statement, StatementLine
from ledger.invoices.render import format_money, format_rate, render_document, render_statement

ISSUED_AT = datetime(2026, 3, 14, 23, 30, tzinfo=UTC)

FREELANCER = PartyDetails(
    party_id="fr_1",
    display_name="Ada Lovelace Studio",
    legal_name="Ada Lovelace Studio GmbH",
    address="Unter den Linden 1\n10117 Berlin",
    country="DE",
    tax_id="DE123456789",
)
CLIENT = PartyDetails(
    party_id="cl_1",
    display_name="Babbage & Sons <Engines>",
    legal_name="Babbage and Sons Ltd",
    address="1 Analytical Row\nLondon EC1A 1AA",
    country="GB",
    tax_id="GB987654321",
)
PLATFORM = PartyDetails(party_id="platform", display_name="Workbench Marketplace", legal_name="Workbench Inc.")


def client_invoice(
    *,
    issuer: PartyDetails = FREELANCER,
    recipient: PartyDetails = CLIENT,
    currency: str = "USD",
    amount: int = 100000,
    number: str = "INV-2026-000042",
) -> Document:
    return Document(
        id="doc_client_1",
        kind=DocumentKind.CLIENT_INVOICE,
        number=number,
        series_year=2026,
        sequence=42,
        issued_at=ISSUED_AT,
        issuer=issuer,
        recipient=recipient,
        currency=currency,
        lines=(DocumentLine("Milestone \u201cDesign\u201d, contract \u201cDifference engine\u201d", amount),),
        total=amount,
        references={"contract": "ct_1", "milestone": "ms_1", "payment": "pay_1"},
        entry_ids=(7,),
    )


def fee_invoice() -> Document:
    return Document(
        id="doc_fee_1",
        kind=DocumentKind.FEE_INVOICE,
        number="FEE-2026-000007",
        series_year=2026,
        sequence=7,
        issued_at=ISSUED_AT,
        issuer=PLATFORM,
        recipient=FREELANCER,
        currency="USD",
        lines=(
            DocumentLine("Service fee on 500.00 USD at 20%", 10000, quantity_amount=50000, rate=Decimal("0.20")),
            DocumentLine("Service fee on 100.00 USD at 10%", 1000, quantity_amount=10000, rate=Decimal("0.10")),
        ),
        total=11000,
        blended_rate=Decimal("0.1833"),
        references={"contract": "ct_1", "milestone": "ms_1", "payment": "pay_1", "client_invoice": "INV-2026-000042"},
        entry_ids=(7,),
        notes=("Lifetime billings with Babbage & Sons <Engines>: 0.00 before this payment, 600.00 after (USD).",),
    )


def credit_note() -> Document:
    return Document(
        id="doc_cn_1",
        kind=DocumentKind.CREDIT_NOTE,
        number="CN-2026-000003",
        series_year=2026,
        sequence=3,
        issued_at=ISSUED_AT + timedelta(days=3),
        issuer=FREELANCER,
        recipient=CLIENT,
        currency="USD",
        lines=(DocumentLine("Refund of payment pay_1", 25000),),
        total=25000,
        references={"contract": "ct_1", "payment": "pay_1", "refund": "re_1"},
        corrects="INV-2026-000042",
        entry_ids=(9,),
    )


def statement(lines: int = 120) -> Statement:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    balance = 50000
    rows = []
    for i in range(lines):
        debit, credit = (2500, 0) if i % 3 == 0 else (0, 1000)
        balance += credit - debit
        rows.append(
            StatementLine(
                posted_at=start + timedelta(hours=5 * i + 1),
                entry_id=1000 + i,
                account="liabilities:freelancer:fr_1",
                reference=f"milestone ms_{i} / payment pay_{i}",
                kind="escrow.release" if credit else "payout.sent",
                debit=debit,
                credit=credit,
                currency="USD",
                running_balance=balance,
            )
        )
    return Statement(
        title="Freelancer fr_1",
        subject="fr_1",
        accounts=("liabilities:freelancer:fr_1",),
        currency="USD",
        normal_side="credit",
        period_from=start,
        period_to=datetime(2026, 2, 1, tzinfo=UTC),
        opening_balance=50000,
        lines=tuple(rows),
        closing_balance=balance,
    )


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def page_count(pdf: bytes) -> int:
    return len(PdfReader(io.BytesIO(pdf)).pages)


def test_a_client_invoice_prints_its_number_date_parties_references_and_total() -> None:
    text = pdf_text(render_document(client_invoice()))

    for expected in (
        "Invoice",
        "INV-2026-000042",
        "2026-03-14",
        "Ada Lovelace Studio GmbH",
        "Babbage & Sons <Engines>",
        "Unter den Linden 1",
        "Germany",
        "DE123456789",
        "ct_1",
        "ms_1",
        "pay_1",
        "$1,000.00",
    ):
        assert expected in text, expected


def test_a_client_invoice_says_the_platform_issued_it_on_behalf_of_the_freelancer() -> None:
    text = pdf_text(render_document(client_invoice()))

    assert "Issued by the platform on behalf of Ada Lovelace Studio" in text


def test_the_issue_date_is_the_utc_date() -> None:
    evening_in_new_york = datetime(2026, 3, 14, 21, 0, tzinfo=ZoneInfo("America/New_York"))  # 01:00 UTC next day
    document = replace(client_invoice(), issued_at=evening_in_new_york)

    text = pdf_text(render_document(document))

    assert "2026-03-15" in text
    assert "2026-03-14" not in text


def test_unknown_party_fields_are_left_out_never_printed_as_none() -> None:
    minimal_issuer = PartyDetails(party_id="fr_2", display_name="Grace")
    minimal_recipient = PartyDetails(party_id="cl_2", display_name="Hopper Co", address="", tax_id=None)

    text = pdf_text(render_document(client_invoice(issuer=minimal_issuer, recipient=minimal_recipient)))

    assert "Grace" in text
    assert "Hopper Co" in text
    assert "None" not in text
    assert "Tax ID" not in text


def test_a_fee_invoice_shows_each_tier_its_rate_and_the_blended_rate() -> None:
    text = pdf_text(render_document(fee_invoice()))

    for expected in ("Service fee invoice", "FEE-2026-000007", "Workbench Marketplace", "Ada Lovelace Studio"):
        assert expected in text, expected
    for expected in ("$500.00", "20.00%", "$100.00", "$100.00", "10.00%", "$10.00", "$110.00", "18.33%"):
        assert expected in text, expected
    assert "INV-2026-000042" in text
    assert "Lifetime billings with Babbage & Sons <Engines>" in text
    assert "None" not in text


def test_a_credit_note_names_the_invoice_it_corrects() -> None:
    text = pdf_text(render_document(credit_note()))

    assert "Credit note" in text
    assert "CN-2026-000003" in text
    assert "Corrects invoice INV-2026-000042" in text
    assert "$250.00" in text
    assert "re_1" in text


def test_yen_amounts_have_no_decimals() -> None:
    text = pdf_text(render_document(client_invoice(currency="JPY", amount=1500)))

    assert "¥1,500" in text
    assert "¥1,500.00" not in text


def test_dinar_amounts_have_three_decimals() -> None:
    document = client_invoice(currency="BHD", amount=1234)
    text = pdf_text(render_document(document))

    assert format_money(1234, "BHD") == "BHD1.234"
    assert "BHD1.234" in text


def test_money_is_formatted_per_currency_and_locale_from_exact_minor_units() -> None:
    assert format_money(100000, "USD") == "$1,000.00"
    assert format_money(1500, "JPY") == "¥1,500"
    assert format_money(1, "USD") == "$0.01"
    assert format_money(-123456, "EUR") == "-€1,234.56"
    assert format_money(100000, "USD", "de_DE") == "1.000,00\xa0$"
    assert format_money(2**62 + 1, "USD") == "$46,116,860,184,273,879.05"


def test_amounts_are_never_rounded_to_cldr_digits_that_differ_from_iso() -> None:
    """CLDR shows the Iraqi dinar with no decimals; ISO 4217 (and so the ledger) has three."""
    assert format_money(1234, "IQD").endswith("1.234")


def test_rates_are_percentages_with_two_decimals_and_never_rounded() -> None:
    assert format_rate(Decimal("0.1833")) == "18.33%"
    assert format_rate(Decimal("0.15")) == "15.00%"
    assert format_rate(Decimal("0.2")) == "20.00%"
    assert format_rate(Decimal("0.12345")) == "12.345%"


@pytest.mark.parametrize("document", [client_invoice(), fee_invoice(), credit_note()], ids=lambda d: d.number)
def test_rendering_a_document_twice_gives_identical_bytes(document: Document) -> None:
    assert render_document(document) == render_document(document)


def test_a_document_renders_the_same_after_a_round_trip_through_its_stored_data() -> None:
    document = fee_invoice()

    assert render_document(Document.from_data(document.to_data())) == render_document(document)


def test_a_document_fits_one_page_and_many_lines_flow_onto_more() -> None:
    document = client_invoice()
    many = replace(document, lines=tuple(DocumentLine(f"Work item {i}", 100) for i in range(80)), total=8000)

    assert page_count(render_document(document)) == 1
    assert page_count(render_document(many)) > 1
    assert "$80.00" in pdf_text(render_document(many))


def test_a_statement_prints_its_period_balances_and_totals() -> None:
    subject = statement()
    text = pdf_text(render_statement(subject))

    for expected in ("Freelancer fr_1", "[2026-01-01 00:00:00, 2026-02-01 00:00:00) UTC", "USD"):
        assert expected in text, expected
    assert format_money(subject.opening_balance, "USD") in text
    assert format_money(subject.total_debits, "USD") in text
    assert format_money(subject.total_credits, "USD") in text
    assert format_money(subject.closing_balance, "USD") in text
    assert "Closing balance" in text
    assert "None" not in text


def test_a_long_statement_flows_over_pages_with_the_header_on_each() -> None:
    pdf = render_statement(statement(120))
    pages = [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]

    assert len(pages) > 1
    assert all("Posted at" in page and "Balance" in page for page in pages)
    assert "1119" in "".join(pages)  # the last entry is printed too
    assert "Closing balance" in pages[-1]


def test_rendering_a_statement_twice_gives_identical_bytes() -> None:
    assert render_statement(statement()) == render_statement(statement())


def test_a_statement_without_lines_shows_equal_opening_and_closing_balances() -> None:
    empty = statement(0)
    text = pdf_text(render_statement(empty))

    assert text.count("$500.00") >= 2
    assert page_count(render_statement(empty)) == 1


def test_a_very_large_amount_is_printed_whole() -> None:
    amount = 2**62 + 1
    text = pdf_text(render_document(client_invoice(amount=amount)))

    assert text.count("$46,116,860,184,273,879.05") == 2  # the line and the total, each on one line
