"""Statements on the fake: streamed CSV is the whole statement's CSV, the PDF limit, one snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ledger.accounts import AccountSpec, AccountType
from ledger.invoices import statements
from ledger.invoices.documents import StatementHeading, StatementLine, StatementTooLong
from ledger.invoices.service import Finance
from ledger.journal import EntryRequest, credit, debit
from ledger.service import Ledger

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)


def transfers(book: Ledger, count: int) -> list[int]:
    book.open_account(AccountSpec("assets:a", AccountType.ASSET, "USD"))
    book.open_account(AccountSpec("assets:b", AccountType.ASSET, "USD"))
    amounts = [100 + n for n in range(count)]
    book.post_batch(
        [
            EntryRequest(
                f"t{n}",
                "transfer",
                (debit("assets:a", amount, "USD"), credit("assets:b", amount, "USD")),
                effective_at=START + timedelta(minutes=n),
            )
            for n, amount in enumerate(amounts)
        ]
    )
    return amounts


def test_the_streamed_csv_is_the_whole_statements_csv_in_chunks(book: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statements, "CHUNK_CHARS", 256)
    amounts = transfers(book, 200)
    finance = Finance(book)
    chunks = list(finance.stream_account_statement("assets:a", "USD", START, END, statements.csv_chunks))
    assert len(chunks) > 10
    whole = finance.account_statement("assets:a", "USD", START, END)
    assert "".join(chunks) == statements.statement_csv(whole)
    assert whole.closing_balance == whole.lines[-1].running_balance == sum(amounts)


def test_the_pdf_limit_counts_lines_before_reading_them(book: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    transfers(book, 11)
    monkeypatch.setattr(statements, "MAX_PDF_LINES", 10)
    with pytest.raises(StatementTooLong) as refused:
        Finance(book).account_statement("assets:a", "USD", START, END)
    assert refused.value.data == {"field": "format", "lines": 11, "limit": 10}
    assert len(Finance(book).account_statement("assets:a", "USD", START + timedelta(minutes=1), END).lines) == 10


def test_a_stream_reads_the_state_of_its_first_chunk(book: Ledger) -> None:
    transfers(book, 3)

    def post_meanwhile(heading: StatementHeading, lines: Iterator[StatementLine]) -> Iterator[int]:
        book.post(EntryRequest("late", "transfer", (debit("assets:a", 1, "USD"), credit("assets:b", 1, "USD")), START))
        yield len(list(lines))

    assert list(Finance(book).stream_account_statement("assets:a", "USD", START, END, post_meanwhile)) == [3]
