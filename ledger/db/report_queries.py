"""Finance reports' sums and statements' postings, computed by the database; statements'
postings and the journal's entries (for its export) are streamed."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, and_, case, exists, func, or_, select

from ledger.accounts import Side
from ledger.db.journal_store import entry_from_row
from ledger.db.schema import accounts, contracts, entries, fee_events, postings
from ledger.db.streaming import stream
from ledger.journal import Entry, Posting
from ledger.ports.queries import AccountNet, FeeRevenueRow, PostingScope, StatementPosting

#: Postings with their entries and accounts.
_LEGS = postings.join(entries, entries.c.id == postings.c.entry_id).join(
    accounts, accounts.c.id == postings.c.account_id
)


def _fee_total(kind: str, column: ColumnElement[int]) -> ColumnElement[int]:
    return func.sum(case((fee_events.c.kind == kind, column), else_=0))


class SqlReportQueries:
    """`ReportQueries` over one connection."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def account_nets(self, before: datetime) -> list[AccountNet]:
        signed = case((postings.c.side == "debit", postings.c.amount), else_=-postings.c.amount)
        query = (
            select(accounts.c.code, accounts.c.type, accounts.c.currency, func.sum(signed))
            .select_from(_LEGS)
            .where(entries.c.effective_at < before)
            .group_by(accounts.c.code, accounts.c.type, accounts.c.currency)
            .order_by(accounts.c.currency, accounts.c.code)
        )
        return [
            AccountNet(code, type_, currency, int(net))
            for code, type_, currency, net in self._connection.execute(query)
        ]

    def fee_revenue(self, start: datetime, end: datetime) -> list[FeeRevenueRow]:
        query = (
            select(
                fee_events.c.client_id,
                fee_events.c.currency,
                _fee_total("charge", fee_events.c.amount),
                _fee_total("charge", fee_events.c.fee),
                _fee_total("refund", fee_events.c.amount),
                _fee_total("refund", fee_events.c.fee),
            )
            .where(fee_events.c.effective_at >= start, fee_events.c.effective_at < end)
            .group_by(fee_events.c.client_id, fee_events.c.currency)
            .order_by(fee_events.c.currency, fee_events.c.client_id)
        )
        return [
            FeeRevenueRow(client, currency, int(billed), int(fees), int(refunded), int(fee_refunds))
            for client, currency, billed, fees, refunded, fee_refunds in self._connection.execute(query)
        ]

    def is_empty(self) -> bool:
        recorded = select(or_(exists(select(entries.c.id)), exists(select(contracts.c.id))))
        return not self._connection.execute(recorded).scalar_one()


class SqlStatementQueries:
    """`StatementQueries` over one connection."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _in_period(scope: PostingScope, start: datetime | None, end: datetime) -> list[ColumnElement[bool]]:
        in_scope: ColumnElement[bool] = postings.c.account_id.in_(list(scope.accounts))
        if scope.shared and scope.client is not None:
            for_client = and_(
                postings.c.account_id.in_(list(scope.shared)), entries.c.refs["client"].as_string() == scope.client
            )
            in_scope = or_(in_scope, for_client)
        period = [entries.c.effective_at < end]
        if start is not None:
            period.append(entries.c.effective_at >= start)
        return [in_scope, *period]

    def postings(self, scope: PostingScope, start: datetime, end: datetime) -> Iterator[StatementPosting]:
        query = (
            select(
                postings.c.account_id,
                postings.c.side,
                postings.c.amount,
                entries.c.id,
                entries.c.kind,
                entries.c.effective_at,
                entries.c.refs,
                entries.c.actor,
            )
            .select_from(postings.join(entries, entries.c.id == postings.c.entry_id))
            .where(*self._in_period(scope, start, end))
            .order_by(entries.c.effective_at, entries.c.id, postings.c.id)
        )
        # A server-side cursor: a statement of a busy account over a long period may
        # have millions of lines, and only a batch of them is held at a time.
        for account_id, side, amount, entry_id, kind, effective_at, refs, actor in stream(self._connection, query):
            yield StatementPosting(
                account_id=int(account_id),
                side=Side(side),
                amount=int(amount),
                entry_id=int(entry_id),
                kind=kind,
                effective_at=effective_at,
                refs={str(k): str(v) for k, v in dict(refs).items()},
                actor=actor,
            )

    def count(self, scope: PostingScope, start: datetime, end: datetime) -> int:
        query = (
            select(func.count())
            .select_from(postings.join(entries, entries.c.id == postings.c.entry_id))
            .where(*self._in_period(scope, start, end))
        )
        return int(self._connection.execute(query).scalar_one())

    def nets(self, scope: PostingScope, before: datetime) -> dict[int, int]:
        signed = case((postings.c.side == "debit", postings.c.amount), else_=-postings.c.amount)
        query = (
            select(postings.c.account_id, func.sum(signed))
            .select_from(postings.join(entries, entries.c.id == postings.c.entry_id))
            .where(*self._in_period(scope, None, before))
            .group_by(postings.c.account_id)
        )
        return {int(account_id): int(net) for account_id, net in self._connection.execute(query)}

    def entry_count(self, start: datetime | None, end: datetime | None) -> int:
        query = select(func.count()).select_from(entries)
        if start is not None:
            query = query.where(entries.c.effective_at >= start)
        if end is not None:
            query = query.where(entries.c.effective_at < end)
        return int(self._connection.execute(query).scalar_one())

    def entries(self, start: datetime | None, end: datetime | None) -> Iterator[Entry]:
        query = (
            select(
                entries.c.id,
                entries.c.idempotency_key,
                entries.c.kind,
                entries.c.effective_at,
                entries.c.recorded_at,
                entries.c.refs,
                entries.c["metadata"],
                entries.c.reverses_entry_id,
                entries.c.actor,
                accounts.c.code,
                postings.c.currency,
                postings.c.side,
                postings.c.amount,
            )
            .select_from(_LEGS)
            .order_by(entries.c.effective_at, entries.c.id, postings.c.id)
        )
        if start is not None:
            query = query.where(entries.c.effective_at >= start)
        if end is not None:
            query = query.where(entries.c.effective_at < end)
        # One server-side cursor over the postings; an entry's postings are consecutive,
        # so only one entry is held at a time, whatever the journal's length.
        for _, rows in itertools.groupby(stream(self._connection, query), key=lambda row: row.id):
            legs = list(rows)
            yield entry_from_row(
                legs[0], tuple(Posting(leg.code, leg.currency, Side(leg.side), int(leg.amount)) for leg in legs)
            )
