"""The audit's reads (`ledger.ports.queries.AuditQueries`): the journal and stored
balances, fee events, documents and the provider's account, as typed rows.

Sums are computed by the database and rows are streamed (`ledger.db.streaming`).
Where a check would otherwise read the whole journal (an entry's debits against its
credits, repeated keys and reversals), the query returns only the rows that disagree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, select

from ledger.db.escrow_audit_queries import SqlEscrowAuditQueries
from ledger.db.reconciliation_queries import provider_postings
from ledger.db.schema import (
    accounts,
    api_keys,
    balances,
    document_sequences,
    documents,
    entries,
    fee_events,
    fee_schedules,
    lifetime_billings,
    payment_orders,
    postings,
    state_changes,
)
from ledger.db.streaming import stream
from ledger.fees.schedule import FeeSchedule
from ledger.ports.queries import (
    AccountTotals,
    ActorRows,
    CurrencyNet,
    CurrencyTotals,
    DocumentSeries,
    DocumentTotals,
    EntryImbalance,
    EntryPostingCount,
    FeeChainLink,
    PairBillings,
    ProviderPosting,
    RepeatedKey,
    RepeatedReversal,
)

_debit = case((postings.c.side == "debit", postings.c.amount), else_=0)
_credit = case((postings.c.side == "credit", postings.c.amount), else_=0)


def _account_totals() -> Select[Any]:
    posted = (
        select(
            postings.c.account_id.label("account_id"),
            func.sum(_debit).label("debits"),
            func.sum(_credit).label("credits"),
        )
        .group_by(postings.c.account_id)
        .subquery()
    )
    stored = (
        select(balances.c.account_id.label("account_id"), func.sum(balances.c.balance).label("stored"))
        .group_by(balances.c.account_id)
        .subquery()
    )
    debits = func.coalesce(posted.c.debits, 0)
    credits = func.coalesce(posted.c.credits, 0)
    from_postings = case((accounts.c.normal_side == "debit", debits - credits), else_=credits - debits)
    return (
        select(
            accounts.c.code,
            accounts.c.currency,
            accounts.c.floor,
            func.coalesce(stored.c.stored, 0).label("stored"),
            from_postings.label("from_postings"),
        )
        .select_from(
            accounts.outerjoin(posted, posted.c.account_id == accounts.c.id).outerjoin(
                stored, stored.c.account_id == accounts.c.id
            )
        )
        .order_by(accounts.c.id)
    )


class SqlAuditQueries(SqlEscrowAuditQueries):
    """`AuditQueries` over one connection (escrow's reads come from `SqlEscrowAuditQueries`)."""

    # --- the journal ---------------------------------------------------------------------

    def unbalanced_entries(self) -> Iterator[EntryImbalance]:
        unbalanced = (
            select(postings.c.entry_id, postings.c.currency, func.sum(_debit), func.sum(_credit))
            .group_by(postings.c.entry_id, postings.c.currency)
            .having(func.sum(_debit) != func.sum(_credit))
            .order_by(postings.c.entry_id, postings.c.currency)
        )
        for entry_id, currency, debits, credits in stream(self._connection, unbalanced):
            yield EntryImbalance(int(entry_id), currency, int(debits), int(credits))

    def entries_with_fewer_postings(self, than: int) -> Iterator[EntryPostingCount]:
        counts = (
            select(postings.c.entry_id.label("entry_id"), func.count().label("n"))
            .group_by(postings.c.entry_id)
            .subquery()
        )
        too_few = (
            select(entries.c.id, func.coalesce(counts.c.n, 0))
            .select_from(entries.outerjoin(counts, counts.c.entry_id == entries.c.id))
            .where(func.coalesce(counts.c.n, 0) < than)
            .order_by(entries.c.id)
        )
        for entry_id, n in stream(self._connection, too_few):
            yield EntryPostingCount(int(entry_id), int(n))

    def account_totals(self) -> Iterator[AccountTotals]:
        for row in stream(self._connection, _account_totals()):
            floor = None if row.floor is None else int(row.floor)
            yield AccountTotals(row.code, row.currency, floor, int(row.stored), int(row.from_postings))

    def posting_totals_by_currency(self) -> Iterator[CurrencyTotals]:
        by_postings = (
            select(postings.c.currency, func.sum(_debit), func.sum(_credit))
            .group_by(postings.c.currency)
            .order_by(postings.c.currency)
        )
        for currency, debits, credits in stream(self._connection, by_postings):
            yield CurrencyTotals(currency, int(debits), int(credits))

    def stored_balances_by_currency(self) -> Iterator[CurrencyNet]:
        signed = case((accounts.c.normal_side == "debit", balances.c.balance), else_=literal(0) - balances.c.balance)
        by_balances = (
            select(accounts.c.currency, func.sum(signed))
            .select_from(balances.join(accounts, accounts.c.id == balances.c.account_id))
            .group_by(accounts.c.currency)
            .order_by(accounts.c.currency)
        )
        for currency, net in stream(self._connection, by_balances):
            yield CurrencyNet(currency, int(net))

    def actor_rows(self) -> Iterator[ActorRows]:
        for table in (entries, payment_orders, state_changes):
            query = select(table.c.actor, func.count()).group_by(table.c.actor).order_by(table.c.actor)
            for actor, n in self._connection.execute(query):
                yield ActorRows(table.name, actor, int(n))

    def api_key_ids(self) -> set[str]:
        return {str(i) for i in self._connection.execute(select(api_keys.c.id)).scalars()}

    def repeated_idempotency_keys(self) -> Iterator[RepeatedKey]:
        keys = (
            select(entries.c.idempotency_key, func.count(), func.min(entries.c.id), func.max(entries.c.id))
            .group_by(entries.c.idempotency_key)
            .having(func.count() > 1)
            .order_by(entries.c.idempotency_key)
        )
        for key, n, first, last in stream(self._connection, keys):
            yield RepeatedKey(key, int(n), int(first), int(last))

    def repeated_reversals(self) -> Iterator[RepeatedReversal]:
        reversals = (
            select(entries.c.reverses_entry_id, func.count())
            .where(entries.c.reverses_entry_id.is_not(None))
            .group_by(entries.c.reverses_entry_id)
            .having(func.count() > 1)
            .order_by(entries.c.reverses_entry_id)
        )
        for entry_id, n in stream(self._connection, reversals):
            yield RepeatedReversal(int(entry_id), int(n))

    # --- the fee engine ------------------------------------------------------------------

    def fee_schedules(self) -> Mapping[int, FeeSchedule]:
        rows = self._connection.execute(select(fee_schedules.c.id, fee_schedules.c.definition))
        return {int(row.id): FeeSchedule.from_data(row.definition) for row in rows}

    def fee_chain(self) -> Iterator[FeeChainLink]:
        events = select(fee_events).order_by(
            fee_events.c.freelancer_id, fee_events.c.client_id, fee_events.c.currency, fee_events.c.id
        )
        for row in stream(self._connection, events):
            yield FeeChainLink(
                id=int(row.id),
                freelancer_id=row.freelancer_id,
                client_id=row.client_id,
                currency=row.currency,
                schedule_id=int(row.schedule_id),
                lifetime_before=int(row.lifetime_before),
                lifetime_after=int(row.lifetime_after),
                fee=int(row.fee),
            )

    def pair_billings(self) -> Iterator[PairBillings]:
        pair = (fee_events.c.freelancer_id, fee_events.c.client_id, fee_events.c.currency)
        last_ids = select(*pair, func.max(fee_events.c.id).label("last_id")).group_by(*pair).subquery()
        last = fee_events.alias("last_event")
        lb = lifetime_billings
        ends = (
            select(lb.c.freelancer_id, lb.c.client_id, lb.c.currency, lb.c.billed, last.c.lifetime_after)
            .select_from(
                lb.outerjoin(
                    last_ids,
                    (last_ids.c.freelancer_id == lb.c.freelancer_id)
                    & (last_ids.c.client_id == lb.c.client_id)
                    & (last_ids.c.currency == lb.c.currency),
                ).outerjoin(last, last.c.id == last_ids.c.last_id)
            )
            .order_by(lb.c.freelancer_id, lb.c.client_id, lb.c.currency)
        )
        for freelancer_id, client_id, currency, billed, after in stream(self._connection, ends):
            yield PairBillings(freelancer_id, client_id, currency, int(billed), None if after is None else int(after))

    # --- documents -----------------------------------------------------------------------

    def document_series(self) -> Iterator[DocumentSeries]:
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
        for kind, year, count, distinct, low, high, last in stream(self._connection, series):
            yield DocumentSeries(
                kind, int(year), int(count), int(distinct), int(low), int(high), None if last is None else int(last)
            )

    def document_totals(self) -> Iterator[DocumentTotals]:
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
        for row in stream(self._connection, query):
            yield DocumentTotals(
                number=row.number,
                total=int(row.total),
                stated_total=row.data["total"],
                line_amounts=tuple(int(line["amount"]) for line in row.data["lines"]),
                entry_found=row.entry is not None,
                ledger=int(row.ledger),
            )

    # --- the provider's account ----------------------------------------------------------

    def provider_postings(self, account: str) -> Iterator[ProviderPosting]:
        return provider_postings(self._connection, account)
