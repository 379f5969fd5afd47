"""Invariant 8 for `ledger audit`: documents are numbered without gaps per series
and year, and each document's total equals its lines and the ledger entry it cites."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, and_, func, select

from ledger.audit import Check, Problem, stream
from ledger.db.schema import accounts, document_sequences, documents, entries, postings


def numbering_is_gapless(connection: Connection) -> Iterator[Problem]:
    series = (
        select(
            documents.c.kind,
            documents.c.series_year,
            func.count(),
            func.count(func.distinct(documents.c.sequence)),
            func.min(documents.c.sequence),
            func.max(documents.c.sequence),
            func.max(document_sequences.c.last_sequence),
        )
        .select_from(
            documents.outerjoin(
                document_sequences,
                and_(
                    document_sequences.c.kind == documents.c.kind,
                    document_sequences.c.series_year == documents.c.series_year,
                ),
            )
        )
        .group_by(documents.c.kind, documents.c.series_year)
        .order_by(documents.c.kind, documents.c.series_year)
    )
    for kind, year, count, distinct, low, high, last in stream(connection, series):
        if not (count == distinct == high and low == 1 and last == high):
            yield {
                "series": kind,
                "year": int(year),
                "documents": int(count),
                "distinct_numbers": int(distinct),
                "lowest": int(low),
                "highest": int(high),
                "series_last_number": None if last is None else int(last),
            }


def totals_match_entries(connection: Connection) -> Iterator[Problem]:
    measured = (
        select(func.coalesce(func.sum(postings.c.amount), 0))
        .select_from(postings.join(accounts, accounts.c.id == postings.c.account_id))
        .where(
            postings.c.entry_id == documents.c.entry_id,
            accounts.c.code == documents.c.measured_account,
            accounts.c.currency == documents.c.currency,
            postings.c.side == documents.c.measured_side,
        )
        .scalar_subquery()
    )
    query = (
        select(
            documents.c.number,
            documents.c.total,
            documents.c.data,
            entries.c.id.label("entry"),
            measured.label("ledger"),
        )
        .select_from(documents.outerjoin(entries, entries.c.id == documents.c.entry_id))
        .order_by(documents.c.id)
    )
    for row in stream(connection, query):
        lines = sum(int(line["amount"]) for line in row.data["lines"])
        if (
            row.entry is None
            or int(row.ledger) != int(row.total)
            or lines != int(row.total)
            or row.data["total"] != row.total
        ):
            yield {"document": row.number, "total": int(row.total), "lines": lines, "ledger": int(row.ledger)}


INVOICE_CHECKS: list[tuple[str, Check]] = [
    ("documents_numbered_without_gaps", numbering_is_gapless),
    ("documents_match_entries", totals_match_entries),
]
