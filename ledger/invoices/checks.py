"""Invariant 8 for `ledger audit`: documents are numbered without gaps per series
and year, and each document's total equals its lines and the ledger entry it cites."""

from __future__ import annotations

from collections.abc import Iterator

from ledger.audit import Check, Problem
from ledger.ports.queries import DocumentAuditQueries


def numbering_is_gapless(documents: DocumentAuditQueries) -> Iterator[Problem]:
    for series in documents.document_series():
        numbered = series.documents == series.distinct_numbers == series.highest and series.lowest == 1
        if not (numbered and series.series_last_number == series.highest):
            yield Problem(
                "documents_numbered_without_gaps",
                "",
                {
                    "series": series.kind,
                    "year": series.year,
                    "documents": series.documents,
                    "distinct_numbers": series.distinct_numbers,
                    "lowest": series.lowest,
                    "highest": series.highest,
                    "series_last_number": series.series_last_number,
                },
            )


def totals_match_entries(documents: DocumentAuditQueries) -> Iterator[Problem]:
    for document in documents.document_totals():
        lines = sum(document.line_amounts)
        if (
            not document.entry_found
            or document.ledger != document.total
            or lines != document.total
            or document.stated_total != document.total
        ):
            yield Problem(
                "documents_match_entries",
                "",
                {"document": document.number, "total": document.total, "lines": lines, "ledger": document.ledger},
            )


INVOICE_CHECKS: list[tuple[str, Check]] = [
    ("documents_numbered_without_gaps", numbering_is_gapless),
    ("documents_match_entries", totals_match_entries),
]
