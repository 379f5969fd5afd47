"""Invoices, credit notes, numbering, statements and reports, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest

from ledger import FixedClock, Ledger, UnitOfWork
from ledger.errors import ConfigurationError, InvalidRequest, UnknownAccount
from ledger.escrow.service import Escrow
from ledger.gateway.simulated import SimulatedGateway
from ledger.invoices.documents import DocumentKind, UnknownDocument
from ledger.invoices.issuing import REFUND_RULE
from ledger.invoices.render import render_document
from ledger.invoices.service import Finance
from ledger.invoices.statements import CSV_COLUMNS
from tests.conftest import CONCURRENCY_REPORT

D = 100


@pytest.fixture
def escrow(book: Ledger) -> Escrow:
    return Escrow(book, SimulatedGateway())


@pytest.fixture
def finance(book: Ledger) -> Finance:
    return Finance(book)


def release(escrow: Escrow, amount: int, *, client: str = "cl_1", freelancer: str = "fr_1") -> str:
    contract = escrow.contracts.open_contract(
        client_id=client, freelancer_id=freelancer, currency="USD", title="Website"
    )
    milestone = escrow.contracts.add_milestone(contract.id, title="Landing page", amount=amount)
    escrow.funding.fund(milestone.id)
    [payment] = escrow.approvals.approve(milestone.id)
    return payment.id


def test_a_release_issues_a_client_invoice_and_a_fee_invoice(
    escrow: Escrow, finance: Finance, clock: FixedClock
) -> None:
    finance.set_party("cl_1", display_name="Acme GmbH", legal_name="Acme GmbH", country="de", tax_id="DE123456789")
    finance.set_party("fr_1", display_name="Ada Lovelace")
    payment_id = release(escrow, 600 * D)
    client_invoice, fee_invoice = finance.documents()  # newest first; within a release, by series
    assert client_invoice.number == f"INV-{clock.now().year}-000001"
    assert (client_invoice.issuer.display_name, client_invoice.recipient.display_name) == ("Ada Lovelace", "Acme GmbH")
    assert client_invoice.recipient.country == "DE"
    assert client_invoice.total == 600 * D and client_invoice.references["payment"] == payment_id
    assert fee_invoice.number == f"FEE-{clock.now().year}-000001"
    assert fee_invoice.issuer.party_id == "platform" and fee_invoice.recipient.display_name == "Ada Lovelace"
    assert [(line.quantity_amount, line.rate, line.amount) for line in fee_invoice.lines] == [
        (500 * D, Decimal("0.20"), 100 * D),
        (100 * D, Decimal("0.10"), 10 * D),
    ]
    assert fee_invoice.total == 110 * D and fee_invoice.blended_rate == Decimal("0.1833")
    assert finance.document(client_invoice.number) == client_invoice


def test_invoices_never_fail_for_missing_party_details(escrow: Escrow, finance: Finance) -> None:
    release(escrow, 100 * D, client="cl_unknown", freelancer="fr_unknown")
    client_invoice = next(d for d in finance.documents() if d.kind is DocumentKind.CLIENT_INVOICE)
    assert client_invoice.recipient.display_name == "cl_unknown"
    assert client_invoice.recipient.tax_id is None


def test_a_refund_issues_credit_notes_that_cite_the_invoices(escrow: Escrow, finance: Finance, book: Ledger) -> None:
    payment_id = release(escrow, 1_000 * D)
    escrow.refunds.refund_payment(payment_id, 500 * D)
    documents = {d.number.split("-")[0] + str(d.sequence): d for d in finance.documents()}
    client_note, fee_note = documents["CN1"], documents["CN2"]
    assert client_note.corrects == documents["INV1"].number and client_note.total == 500 * D
    assert fee_note.corrects == documents["FEE1"].number and fee_note.total == 50 * D
    assert fee_note.notes == (REFUND_RULE,)
    assert book.audit().ok


def test_numbers_are_sequential_per_series(escrow: Escrow, finance: Finance) -> None:
    for amount in (100, 200, 300):
        release(escrow, amount * D)
    numbers = sorted(d.number for d in finance.documents() if d.kind is DocumentKind.CLIENT_INVOICE)
    assert [n[-6:] for n in numbers] == ["000001", "000002", "000003"]


def test_an_unknown_document_is_a_clear_error(finance: Finance) -> None:
    with pytest.raises(UnknownDocument, match="no document INV-1999-000001"):
        finance.document("INV-1999-000001")


@pytest.mark.postgresql_only
def test_concurrent_releases_never_leave_a_gap_or_a_duplicate(escrow: Escrow, finance: Finance, book: Ledger) -> None:
    threads = 8
    milestones = []
    for i in range(threads * 3):
        contract = escrow.contracts.open_contract(
            client_id=f"cl_{i % 3}", freelancer_id=f"fr_{i}", currency="USD", title="t"
        )
        milestone = escrow.contracts.add_milestone(contract.id, title="m", amount=(100 + i) * D)
        escrow.funding.fund(milestone.id)
        milestones.append(milestone.id)
    barrier = threading.Barrier(threads)

    def approve_some(thread: int) -> None:
        barrier.wait()
        for milestone_id in milestones[thread::threads]:
            escrow.approvals.approve(milestone_id)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(approve_some, range(threads)))
    for kind in (DocumentKind.CLIENT_INVOICE, DocumentKind.FEE_INVOICE):
        sequences = sorted(d.sequence for d in finance.documents(limit=1000) if d.kind is kind)
        assert sequences == list(range(1, threads * 3 + 1))
    report = book.audit()
    assert report.ok, report.to_json()
    CONCURRENCY_REPORT.append(f"invoices: {threads} threads, {threads * 3} releases, numbers gapless")


# --- statements and reports ----------------------------------------------------------------


def test_a_freelancer_statement_shows_each_movement_with_a_running_balance(
    escrow: Escrow, finance: Finance, clock: FixedClock
) -> None:
    start = clock.now()
    payment_id = release(escrow, 1_000 * D)
    clock.advance(timedelta(days=5))
    escrow.orders.tick()
    escrow.refunds.refund_payment(payment_id, 100 * D)
    statement = finance.party_statement("fr_1", "freelancer", "USD", start, start + timedelta(days=30))
    assert statement.opening_balance == 0
    assert [line.kind for line in statement.lines] == [
        "escrow.release",
        "escrow.available",
        "escrow.available",
        "escrow.payment_refund",
    ]
    assert statement.closing_balance == 850 * D - 90 * D
    assert statement.lines[-1].running_balance == statement.closing_balance


def test_a_client_statement_shows_refunds_after_release_and_chargebacks(
    escrow: Escrow, finance: Finance, clock: FixedClock
) -> None:
    from ledger.gateway import BalanceMove, DisputeReport

    start = clock.now()
    payment_id = release(escrow, 1_000 * D)  # funded and released: nothing held for the client
    clock.advance(timedelta(days=6))
    escrow.orders.tick()
    escrow.refunds.refund_payment(payment_id, 100 * D)  # booked to the client, then sent
    escrow.orders.dispatch()
    clock.advance(timedelta(days=1))
    middle = clock.now()
    # The client's bank takes back the 900.00 not refunded: withdrawn, then lost and recovered
    # from the freelancer's balance and the fee.
    payment = escrow.reads.payment(payment_id)
    report = DisputeReport("dp_1", "pi_sim_1", 900 * D, "USD", "lost", (BalanceMove("txn_w", -900 * D, 0, "USD"),))
    escrow.chargebacks.apply_dispute(report, payment.milestone_id)
    end = clock.now() + timedelta(days=1)

    whole = finance.party_statement("cl_1", "client", "USD", start, end)
    kinds = [(line.kind, line.account) for line in whole.lines]
    assert kinds[:3] == [
        ("escrow.fund", f"liabilities:escrow:{payment.milestone_id}"),
        ("escrow.release", f"liabilities:escrow:{payment.milestone_id}"),
        ("escrow.payment_refund", "liabilities:refunds:in_transit"),
    ]
    assert ("refund.settled", "liabilities:refunds:in_transit") in kinds
    assert ("dispute.funds_withdrawn", "assets:psp:disputed") in kinds
    assert ("dispute.recovery", "assets:psp:disputed") in kinds
    assert [line.running_balance for line in whole.lines[:3]] == [1_000 * D, 0, 100 * D]
    # Once the refund is paid and the chargeback settled, the client is square.
    assert (whole.opening_balance, whole.closing_balance) == (0, 0)
    assert whole.opening_balance + whole.total_credits - whole.total_debits == whole.closing_balance
    first = finance.party_statement("cl_1", "client", "USD", start, middle)
    second = finance.party_statement("cl_1", "client", "USD", middle, end)
    assert first.closing_balance == second.opening_balance == 0
    assert len(first.lines) + len(second.lines) == len(whole.lines)
    # Another client's statement has none of it.
    assert finance.party_statement("cl_2", "client", "USD", start, end).lines == ()


def test_statements_chain_and_end_at_the_ledgers_balance(
    escrow: Escrow, finance: Finance, book: Ledger, clock: FixedClock
) -> None:
    start = clock.now()
    for amount in (100, 250, 700):
        release(escrow, amount * D)
        clock.advance(timedelta(days=1))
    middle = start + timedelta(days=1, hours=12)
    end = start + timedelta(days=10)
    first = finance.account_statement("revenue:fees:service", "USD", start, middle)
    second = finance.account_statement("revenue:fees:service", "USD", middle, end)
    assert second.opening_balance == first.closing_balance
    for statement in (first, second):
        assert statement.opening_balance + statement.total_credits - statement.total_debits == statement.closing_balance
    assert second.closing_balance == book.balance("revenue:fees:service", "USD", as_of=end)


def test_statement_csv_has_the_documented_columns(escrow: Escrow, finance: Finance, clock: FixedClock) -> None:
    from ledger.invoices.statements import statement_csv

    start = clock.now()
    release(escrow, 100 * D)
    rows = list(
        csv.reader(
            io.StringIO(
                statement_csv(finance.party_statement("fr_1", "freelancer", "USD", start, start + timedelta(days=1)))
            )
        )
    )
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1][5:9] == ["0.00", "80.00", "USD", "80.00"]


def test_statement_refusals_are_clear(finance: Finance, clock: FixedClock) -> None:
    now = clock.now()
    with pytest.raises(InvalidRequest, match="before or when it starts"):
        finance.account_statement("revenue:fees:service", "USD", now, now - timedelta(days=1))
    with pytest.raises(UnknownAccount):
        finance.account_statement("assets:nope", "USD", now, now + timedelta(days=1))


def test_the_trial_balance_balances(escrow: Escrow, finance: Finance, clock: FixedClock) -> None:
    release(escrow, 1_000 * D)
    balance = finance.trial_balance(clock.now() + timedelta(seconds=1))
    assert balance.balanced and balance.totals["USD"] == (1_000 * D, 1_000 * D)
    assert finance.trial_balance(clock.now() - timedelta(days=1)).rows == []


def test_fee_revenue_by_client(escrow: Escrow, finance: Finance, clock: FixedClock) -> None:
    start = clock.now()
    payment_id = release(escrow, 1_000 * D)
    release(escrow, 100 * D, client="cl_2")
    escrow.refunds.refund_payment(payment_id, 500 * D)
    rows = {r.client_id: r for r in finance.fee_revenue(start, start + timedelta(days=1))}
    assert (rows["cl_1"].billings, rows["cl_1"].fees, rows["cl_1"].fee_refunds, rows["cl_1"].net) == (
        1_000 * D,
        150 * D,
        50 * D,
        100 * D,
    )
    assert rows["cl_2"].fees == 20 * D


def test_party_records_validate_and_keep_unset_fields(finance: Finance) -> None:
    with pytest.raises(InvalidRequest, match="display name"):
        finance.set_party("cl_1", country="DE")
    finance.set_party("cl_1", display_name="Acme", tax_id="X1")
    updated = finance.set_party("cl_1", address="1 Main St\nBerlin")
    assert (updated.display_name, updated.tax_id, updated.address) == ("Acme", "X1", "1 Main St\nBerlin")
    with pytest.raises(InvalidRequest, match="alpha-2"):
        finance.set_party("cl_1", country="Germany")


def test_documents_are_issued_in_the_release_transaction(escrow: Escrow, book: Ledger, finance: Finance) -> None:
    contract = escrow.contracts.open_contract(client_id="cl_1", freelancer_id="fr_1", currency="USD", title="t")
    milestone = escrow.contracts.add_milestone(contract.id, title="m", amount=100 * D)
    escrow.funding.fund(milestone.id)

    def approve_then_fail(uow: UnitOfWork) -> None:
        from ledger.escrow.approvals import approve

        approve(uow, milestone.id)
        raise RuntimeError("the transaction fails after the release")

    with pytest.raises(RuntimeError):
        book.transaction(approve_then_fail)
    assert finance.documents() == []
    escrow.approvals.approve(milestone.id)
    assert sorted(d.sequence for d in finance.documents()) == [1, 1]  # the number came back


def test_an_issued_invoice_pdf_shows_what_the_document_and_the_ledger_say(
    escrow: Escrow, finance: Finance, book: Ledger
) -> None:
    import pypdf

    finance.set_party("cl_1", display_name="Acme GmbH", tax_id="DE811907980")
    finance.set_party("fr_1", display_name="Ada Lovelace")
    payment_id = release(escrow, 600 * D)
    payment = escrow.reads.payment(payment_id)
    released = book.entry(payment.entry_id)
    for document in finance.documents():
        text = "".join(
            page.extract_text()
            for page in pypdf.PdfReader(io.BytesIO(render_document(finance.document(document.number)))).pages
        )
        assert document.number in text
        assert document.recipient.display_name in text and document.issuer.display_name in text
        assert render_document(finance.document(document.number)) == render_document(
            finance.document(document.number)
        )  # deterministic
        if document.kind is DocumentKind.CLIENT_INVOICE:
            escrow_debit = next(p.amount for p in released.postings if p.account.startswith("liabilities:escrow:"))
            assert document.total == escrow_debit == 600 * D and "$600.00" in text and "DE811907980" in text
        else:
            fee_credit = next(p.amount for p in released.postings if p.account == "revenue:fees:service")
            assert document.total == fee_credit == payment.fee == 110 * D
            assert "$110.00" in text and "$100.00" in text and "$10.00" in text and "18.33%" in text


def test_reconciliation_needs_a_gateway_that_lists_its_objects(escrow: Escrow, clock: FixedClock) -> None:
    with pytest.raises(ConfigurationError, match="cannot list its objects"):
        escrow.orders.reconcile(clock.now() - timedelta(days=1), clock.now())
