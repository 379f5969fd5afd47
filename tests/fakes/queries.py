"""The read queries in memory (`ledger.ports.queries`): the audit's, the finance reports',
statements', reconciliation's and the metrics', computed over the fake's tables as the SQL of
`ledger.db.*_queries` computes them over the database's."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from ledger.accounts import Side
from ledger.escrow.chart import escrow_account_code
from ledger.escrow.hourly_calendar import week_of
from ledger.escrow.orders import OPEN_STATES
from ledger.fees.schedule import FeeSchedule
from ledger.journal import Entry
from ledger.ports.queries import (
    AccountNet,
    AccountTotals,
    ActorRows,
    ClientFlows,
    CurrencyBalances,
    CurrencyNet,
    CurrencyTotals,
    DisputeFigures,
    DisputeLeg,
    DocumentSeries,
    DocumentTotals,
    EntryImbalance,
    EntryPostingCount,
    FeeChainLink,
    FeeRevenueRow,
    KindLeg,
    MilestoneFlows,
    PairBillings,
    PostingScope,
    ProviderPosting,
    RepeatedKey,
    RepeatedReversal,
    StatementPosting,
    WeekAudit,
)
from tests.fakes.state import MemoryState, PostingRow

FUNDED_KINDS = frozenset({"escrow.fund", "escrow.fund_bonus", "escrow.fund.reversal", "escrow.fund_bonus.reversal"})
RELEASED_KINDS = frozenset({"escrow.release", "escrow.release.reversal"})
REFUNDED_KINDS = frozenset({"escrow.refund", "escrow.refund.reversal", "escrow.chargeback"})
ADVANCED_KINDS = frozenset({"escrow.advance", "escrow.recovery"})


def _debit(posting: PostingRow) -> int:
    return posting.amount if posting.side is Side.DEBIT else 0


def _credit(posting: PostingRow) -> int:
    return posting.amount if posting.side is Side.CREDIT else 0


class MemoryAuditQueries:
    """Everything the audit's checks read. Entries and documents cannot be changed or
    deleted through the stores, so the rows the journal checks look for (unbalanced
    entries, repeated keys) appear only if a test writes them into the state itself."""

    def __init__(self, state: MemoryState) -> None:
        self._state = state

    # --- the journal ---------------------------------------------------------------------

    def unbalanced_entries(self) -> Iterator[EntryImbalance]:
        sums: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
        for posting in self._state.postings:
            totals = sums[(posting.entry_id, posting.currency)]
            totals[0] += _debit(posting)
            totals[1] += _credit(posting)
        for (entry_id, currency), (debits, credits) in sorted(sums.items()):
            if debits != credits:
                yield EntryImbalance(entry_id, currency, debits, credits)

    def entries_with_fewer_postings(self, than: int) -> Iterator[EntryPostingCount]:
        counts: dict[int, int] = defaultdict(int)
        for posting in self._state.postings:
            counts[posting.entry_id] += 1
        for entry_id in sorted(self._state.entries):
            if counts[entry_id] < than:
                yield EntryPostingCount(entry_id, counts[entry_id])

    def account_totals(self) -> Iterator[AccountTotals]:
        posted: dict[int, int] = defaultdict(int)
        for posting in self._state.postings:
            account = self._state.accounts[posting.account_id]
            posted[account.id] += account.signed(posting.side, posting.amount)
        for account_id in sorted(self._state.accounts):
            account = self._state.accounts[account_id]
            stored = self._state.balances.get(account_id, 0)
            yield AccountTotals(account.code, account.currency, account.floor, stored, posted[account_id])

    def posting_totals_by_currency(self) -> Iterator[CurrencyTotals]:
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for posting in self._state.postings:
            sums[posting.currency][0] += _debit(posting)
            sums[posting.currency][1] += _credit(posting)
        for currency, (debits, credits) in sorted(sums.items()):
            yield CurrencyTotals(currency, debits, credits)

    def stored_balances_by_currency(self) -> Iterator[CurrencyNet]:
        nets: dict[str, int] = defaultdict(int)
        for account_id, balance in self._state.balances.items():
            account = self._state.accounts[account_id]
            nets[account.currency] += balance if account.normal_side is Side.DEBIT else -balance
        for currency, net in sorted(nets.items()):
            yield CurrencyNet(currency, net)

    def repeated_idempotency_keys(self) -> Iterator[RepeatedKey]:
        by_key: dict[str, list[int]] = defaultdict(list)
        for entry_id, row in self._state.entries.items():
            by_key[row.entry.idempotency_key].append(entry_id)
        for key, ids in sorted(by_key.items()):
            if len(ids) > 1:
                yield RepeatedKey(key, len(ids), min(ids), max(ids))

    def actor_rows(self) -> Iterator[ActorRows]:
        tables = {
            "entries": [row.entry.actor for row in self._state.entries.values()],
            "payment_orders": [row.order.actor for row in self._state.orders.values()],
        }
        for table, actors in tables.items():
            for actor, n in sorted(Counter(actors).items()):
                yield ActorRows(table, actor, n)

    def api_key_ids(self) -> set[str]:
        return set(self._state.api_keys)

    def repeated_reversals(self) -> Iterator[RepeatedReversal]:
        counts: dict[int, int] = defaultdict(int)
        for row in self._state.entries.values():
            if row.entry.reverses_entry_id is not None:
                counts[row.entry.reverses_entry_id] += 1
        for entry_id, n in sorted(counts.items()):
            if n > 1:
                yield RepeatedReversal(entry_id, n)

    # --- the fee engine ------------------------------------------------------------------

    def fee_schedules(self) -> Mapping[int, FeeSchedule]:
        return {schedule_id: s.schedule for schedule_id, s in self._state.schedules.items()}

    def fee_chain(self) -> Iterator[FeeChainLink]:
        rows = sorted(self._state.fee_events.values(), key=lambda r: (r.freelancer_id, r.client_id, r.currency, r.id))
        for row in rows:
            yield FeeChainLink(
                row.id,
                row.freelancer_id,
                row.client_id,
                row.currency,
                row.schedule_id,
                row.lifetime_before,
                row.lifetime_after,
                row.fee,
            )

    def pair_billings(self) -> Iterator[PairBillings]:
        last: dict[tuple[str, str, str], int] = {}
        for row in self._state.fee_events.values():  # in id order: the last one stays
            last[(row.freelancer_id, row.client_id, row.currency)] = row.lifetime_after
        for pair, billed in sorted(self._state.lifetime.items()):
            yield PairBillings(pair[0], pair[1], pair[2], billed, last.get(pair))

    # --- escrow ----------------------------------------------------------------------------

    def _postings_by_account(self) -> dict[int, list[PostingRow]]:
        found: dict[int, list[PostingRow]] = defaultdict(list)
        for posting in self._state.postings:
            found[posting.account_id].append(posting)
        return found

    def milestone_flows(self) -> Iterator[MilestoneFlows]:
        by_account = self._postings_by_account()
        paid: dict[str, int] = defaultdict(int)
        for payment in self._state.payments.values():
            paid[payment.payment.milestone_id] += payment.payment.gross
        for milestone_id in sorted(self._state.milestones):
            milestone = self._state.milestones[milestone_id].milestone
            contract = self._state.contracts[milestone.contract_id]
            account_id = self._state.account_ids.get((escrow_account_code(milestone_id), contract.currency))
            if account_id is None:
                continue  # the SQL joins milestones to their escrow accounts: none, no row
            funded = released = refunded = foreign = advanced = 0
            for posting in by_account[account_id]:
                kind = self._state.entries[posting.entry_id].entry.kind
                credit_positive = posting.amount if posting.side is Side.CREDIT else -posting.amount
                if kind in FUNDED_KINDS:
                    funded += credit_positive
                elif kind in RELEASED_KINDS:
                    released -= credit_positive
                elif kind in REFUNDED_KINDS:
                    refunded -= credit_positive
                elif kind in ADVANCED_KINDS:
                    advanced += credit_positive
                else:
                    foreign += 1
            yield MilestoneFlows(
                milestone_id=milestone_id,
                state=milestone.state.value,
                client_id=contract.client_id,
                currency=contract.currency,
                held=self._state.balances.get(account_id, 0),
                funded=funded,
                released=released,
                refunded=refunded,
                foreign_postings=foreign,
                paid=paid[milestone_id],
                advanced=advanced,
            )

    def hourly_weeks(self) -> Iterator[WeekAudit]:
        weeks = sorted(self._state.closed_weeks.values(), key=lambda w: (w.contract_id, w.week))
        for week in weeks:
            subject = self._state.milestones.get(week.milestone_id or "")
            segments = sorted(
                (
                    row
                    for row in self._state.segments.values()
                    if row.contract_id == week.contract_id
                    and row.deleted_at is None
                    and week_of(row.segment.start) == week.week
                ),
                key=lambda row: (row.segment.start, row.id),
            )
            changes = sorted(
                (row for row in self._state.term_changes.values() if row.contract_id == week.contract_id),
                key=lambda row: (row.change.changed_at, row.id),
            )
            yield WeekAudit(
                week=week,
                subject_kind=None if subject is None else subject.milestone.kind.value,
                subject_amount=None if subject is None else subject.milestone.amount,
                segments=tuple(row.segment for row in segments),
                term_changes=tuple(row.change for row in changes),
                held=0 if subject is None else self._held(subject.milestone.id, week.contract_id),
                dispute=self._state.week_disputes.get(week.milestone_id or ""),
                subject_state=None if subject is None else subject.milestone.state.value,
            )

    def _held(self, subject_id: str, contract_id: str) -> int:
        currency = self._state.contracts[contract_id].currency
        account_id = self._state.account_ids.get((escrow_account_code(subject_id), currency))
        return 0 if account_id is None else self._state.balances.get(account_id, 0)

    def unrecorded_week_subjects(self) -> Iterator[str]:
        recorded = {w.milestone_id for w in self._state.closed_weeks.values()}
        for subject_id, row in sorted(self._state.milestones.items()):
            if row.milestone.kind == "week" and subject_id not in recorded:
                yield subject_id

    def client_flows(self) -> Iterator[ClientFlows]:
        sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        for flows in self.milestone_flows():
            totals = sums[(flows.client_id, flows.currency)]
            totals[0] += flows.funded
            totals[1] += flows.held
            totals[2] += flows.paid
            totals[3] += flows.refunded
            totals[4] += flows.advanced
        for (client_id, currency), (collected, held, released, refunded, advanced) in sorted(sums.items()):
            yield ClientFlows(client_id, currency, collected, held, released, refunded, advanced)

    def balances_by_currency(self) -> Iterator[CurrencyBalances]:
        sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for account_id, balance in self._state.balances.items():
            account = self._state.accounts[account_id]
            totals = sums[account.currency]
            totals[account.normal_side.value] += balance
            totals[account.type.value] += balance
        for currency, totals in sorted(sums.items()):
            yield CurrencyBalances(
                currency=currency,
                debit_side=totals["debit"],
                credit_side=totals["credit"],
                assets=totals["asset"],
                liabilities=totals["liability"],
                equity=totals["equity"],
                revenue=totals["revenue"],
                expenses=totals["expense"],
            )

    def kind_legs(self, kinds: Sequence[str]) -> Iterator[KindLeg]:
        wanted = set(kinds)
        for posting in self._state.postings:
            entry = self._state.entries[posting.entry_id].entry
            if entry.kind in wanted:
                account = self._state.accounts[posting.account_id]
                yield KindLeg(
                    entry.kind,
                    dict(entry.refs),
                    entry.effective_at,
                    account.code,
                    account.currency,
                    posting.side,
                    posting.amount,
                )

    def dispute_legs(self, kinds: Sequence[str]) -> Iterator[DisputeLeg]:
        wanted = set(kinds)
        for posting in self._state.postings:
            entry = self._state.entries[posting.entry_id].entry
            if entry.kind in wanted:
                dispute = entry.refs.get("dispute")
                code = self._state.accounts[posting.account_id].code
                yield DisputeLeg(entry.kind, dispute, code, posting.side, posting.amount)

    def disputes(self) -> Iterator[DisputeFigures]:
        for dispute_id in sorted(self._state.disputes):
            d = self._state.disputes[dispute_id]
            yield DisputeFigures(
                id=d.id,
                currency=d.currency,
                outcome=None if d.outcome is None else d.outcome.value,
                withdrawn=d.withdrawn,
                reinstated=d.reinstated,
                recovered_from_refunds=d.recovered_from_refunds,
                recovered_from_escrow=d.recovered_from_escrow,
                recovered_from_freelancer=d.recovered_from_freelancer,
                fee_returned=d.fee_returned,
                unrecovered=d.unrecovered,
            )

    def balances_of(self, code: str) -> Mapping[str, int]:
        return {
            account.currency: self._state.balances.get(account.id, 0)
            for account in self._state.accounts.values()
            if account.code == code
        }

    # --- documents ---------------------------------------------------------------------------

    def document_series(self) -> Iterator[DocumentSeries]:
        series: dict[tuple[str, int], list[int]] = defaultdict(list)
        for row in self._state.documents.values():
            series[(row.kind, row.series_year)].append(row.sequence)
        for (kind, year), numbers in sorted(series.items()):
            last = self._state.document_sequences.get((kind, year))
            yield DocumentSeries(kind, year, len(numbers), len(set(numbers)), min(numbers), max(numbers), last)

    def document_totals(self) -> Iterator[DocumentTotals]:
        for document_id in sorted(self._state.documents):
            row = self._state.documents[document_id]
            measured = sum(
                p.amount
                for p in self._state.postings
                if p.entry_id == row.entry_id
                and p.side.value == row.measured_side
                and self._state.accounts[p.account_id].code == row.measured_account
                and p.currency == row.currency
            )
            yield DocumentTotals(
                number=row.number,
                total=row.total,
                stated_total=row.data["total"],
                line_amounts=tuple(int(line["amount"]) for line in row.data["lines"]),
                entry_found=row.entry_id in self._state.entries,
                ledger=measured,
            )

    # --- the provider's account ----------------------------------------------------------------

    def provider_postings(self, account: str) -> Iterator[ProviderPosting]:
        yield from provider_postings(self._state, account)


def provider_postings(
    state: MemoryState,
    account: str,
    *,
    kinds: Sequence[str] | None = None,
    recorded_from: datetime | None = None,
    recorded_to: datetime | None = None,
) -> Iterator[ProviderPosting]:
    """Postings to `account` (of entries of `kinds`, recorded in [from, to), when given), by posting."""
    for posting in list(state.postings):
        if state.accounts[posting.account_id].code != account:
            continue
        entry = state.entries[posting.entry_id].entry
        if (
            (kinds is not None and entry.kind not in kinds)
            or (recorded_from is not None and entry.recorded_at < recorded_from)
            or (recorded_to is not None and entry.recorded_at >= recorded_to)
        ):
            continue
        reference = entry.refs.get("gateway_reference")
        yield ProviderPosting(entry.id, entry.kind, reference, posting.side, posting.amount, posting.currency)


class MemoryReportQueries:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    def account_nets(self, before: datetime) -> list[AccountNet]:
        nets: dict[int, int] = {}
        for posting in self._state.postings:
            if self._state.entries[posting.entry_id].entry.effective_at < before:
                signed = posting.amount if posting.side is Side.DEBIT else -posting.amount
                nets[posting.account_id] = nets.get(posting.account_id, 0) + signed
        rows = [
            AccountNet(a.code, a.type.value, a.currency, net)
            for a, net in ((self._state.accounts[i], n) for i, n in nets.items())
        ]
        return sorted(rows, key=lambda r: (r.currency, r.account))

    def fee_revenue(self, start: datetime, end: datetime) -> list[FeeRevenueRow]:
        sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for row in self._state.fee_events.values():
            if start <= row.effective_at < end:
                totals = sums[(row.currency, row.client_id)]
                offset = 0 if row.kind == "charge" else 2
                totals[offset] += row.amount
                totals[offset + 1] += row.fee
        return [
            FeeRevenueRow(client, currency, billed, fees, refunded, fee_refunds)
            for (currency, client), (billed, fees, refunded, fee_refunds) in sorted(sums.items())
        ]

    def is_empty(self) -> bool:
        return not self._state.entries and not self._state.contracts


class MemoryStatementQueries:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    def _found(self, scope: PostingScope, start: datetime | None, end: datetime) -> list[tuple[Any, ...]]:
        found = []
        for posting in self._state.postings:
            entry = self._state.entries[posting.entry_id].entry
            in_scope = posting.account_id in scope.accounts or (
                posting.account_id in scope.shared and entry.refs.get("client") == scope.client
            )
            if in_scope and (start is None or start <= entry.effective_at) and entry.effective_at < end:
                found.append((entry.effective_at, entry.id, posting.id, posting, entry))
        found.sort(key=lambda item: item[:3])
        return found

    def postings(self, scope: PostingScope, start: datetime, end: datetime) -> Iterator[StatementPosting]:
        for _, _, _, posting, entry in self._found(scope, start, end):
            yield StatementPosting(
                account_id=posting.account_id,
                side=posting.side,
                amount=posting.amount,
                entry_id=entry.id,
                kind=entry.kind,
                effective_at=entry.effective_at,
                refs={str(k): str(v) for k, v in entry.refs.items()},
                actor=entry.actor,
            )

    def count(self, scope: PostingScope, start: datetime, end: datetime) -> int:
        return len(self._found(scope, start, end))

    def nets(self, scope: PostingScope, before: datetime) -> dict[int, int]:
        nets: dict[int, int] = {}
        for _, _, _, posting, _ in self._found(scope, None, before):
            signed = posting.amount if posting.side == Side.DEBIT else -posting.amount
            nets[posting.account_id] = nets.get(posting.account_id, 0) + signed
        return nets

    def entry_count(self, start: datetime | None, end: datetime | None) -> int:
        return sum(1 for _ in self.entries(start, end))

    def entries(self, start: datetime | None, end: datetime | None) -> Iterator[Entry]:
        found = [
            row.entry
            for row in self._state.entries.values()
            if (start is None or start <= row.entry.effective_at) and (end is None or row.entry.effective_at < end)
        ]
        yield from sorted(found, key=lambda entry: (entry.effective_at, entry.id))


class MemoryReconciliationQueries:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    def booked_postings(
        self, account: str, kinds: Sequence[str], since: datetime, until: datetime
    ) -> list[ProviderPosting]:
        return list(provider_postings(self._state, account, kinds=kinds, recorded_from=since, recorded_to=until))


class MemoryMetricsQueries:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    def posting_count(self) -> int:
        return len(self._state.postings)

    def orders_by_state(self) -> Mapping[str, int]:
        return dict(Counter(row.order.state.value for row in self._state.orders.values()))

    def oldest_open_order_created_at(self) -> datetime | None:
        open_orders = [row.order.created_at for row in self._state.orders.values() if row.order.state in OPEN_STATES]
        return min(open_orders, default=None)

    def timers_due(self, at: datetime) -> int:
        return sum(1 for timer in self._state.timers.values() if timer.done_at is None and timer.due_at <= at)
