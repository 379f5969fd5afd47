"""The payment provider's account in the ledger: its postings and the provider objects they book."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import Connection, select

from ledger.accounts import Side
from ledger.db.schema import accounts, entries, postings
from ledger.db.streaming import stream
from ledger.ports.queries import ProviderPosting


def provider_postings(
    connection: Connection,
    account: str,
    *,
    kinds: Sequence[str] | None = None,
    recorded_from: datetime | None = None,
    recorded_to: datetime | None = None,
) -> Iterator[ProviderPosting]:
    """Postings to `account` (of entries of `kinds`, recorded in [from, to), when given), by posting."""
    statement = (
        select(entries.c.id, entries.c.kind, entries.c.refs, postings.c.side, postings.c.amount, accounts.c.currency)
        .select_from(
            postings.join(entries, entries.c.id == postings.c.entry_id).join(
                accounts, accounts.c.id == postings.c.account_id
            )
        )
        .where(accounts.c.code == account)
        .order_by(postings.c.id)
    )
    if kinds is not None:
        statement = statement.where(entries.c.kind.in_(list(kinds)))
    if recorded_from is not None:
        statement = statement.where(entries.c.recorded_at >= recorded_from)
    if recorded_to is not None:
        statement = statement.where(entries.c.recorded_at < recorded_to)
    for entry_id, kind, refs, side, amount, currency in stream(connection, statement):
        reference = (refs or {}).get("gateway_reference")
        yield ProviderPosting(
            int(entry_id), kind, None if reference is None else str(reference), Side(side), int(amount), currency
        )


class SqlReconciliationQueries:
    """`ReconciliationQueries` over one connection."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def booked_postings(
        self, account: str, kinds: Sequence[str], since: datetime, until: datetime
    ) -> list[ProviderPosting]:
        return list(provider_postings(self._connection, account, kinds=kinds, recorded_from=since, recorded_to=until))
