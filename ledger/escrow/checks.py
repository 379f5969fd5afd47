"""Escrow's invariants for `ledger audit` (invariants 4 and 5).

4. `escrow_matches_milestones`: each milestone's escrow account holds funded -
   released - refunded (by the kinds of the entries that touch it; a lost
   chargeback taken from escrow counts as refunded: the bank gave it back), no other kind
   of entry touches it, its payments add up to what was released, and what it
   holds matches its state (final, draft and funding milestones hold nothing;
   funded, submitted, changes requested, refund requested and disputed ones hold
   something).
5. `conservation_per_client`: per client and currency, money collected = held in
   escrow + released (gross) + refunded; and `accounting_equation`: per currency,
   assets + expenses = liabilities + equity + revenue (tested by normal side, so
   contra accounts count on the side they are kept on).

Hourly weeks, `hourly_weeks_billed`: each closed week's limit, minutes and amount are
what its segments and the terms in force bill (billable minutes within the limit, the
amount by the cumulative rounding rule), and its escrow subject holds that amount. What
a week's subject holds against its state (charged - released - refunded) is checked
with the milestones, and conservation per client counts hourly money with the rest.

Chargebacks, `chargebacks_accounted`: each figure of a dispute (withdrawn,
reinstated, recovered from failed refunds, from escrow, from the freelancer, fee returned, unrecovered)
equals the postings that booked it; `assets:psp:disputed` holds exactly what open
disputes have withdrawn and not reinstated; and a closed dispute's loss is fully
accounted for by its recovery entries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime

from ledger.accounts import Side
from ledger.audit import Check, Detail, Problem
from ledger.escrow.chart import (
    CHARGEBACKS,
    DISPUTED,
    ESCROW_ACCOUNT_PREFIX,
    HOURLY_PROTECTION,
    RECEIVABLES,
    REFUNDS_IN_TRANSIT,
    SERVICE_FEES,
)
from ledger.escrow.hourly import limit_history, rate_history
from ledger.escrow.hourly_billing import protected_amount
from ledger.escrow.hourly_calendar import HOURLY_CALENDAR
from ledger.escrow.model import HOLDING, MilestoneState, SubjectKind
from ledger.escrow.timesheet import MINUTES_PER_HOUR, bill_week, limit_for_week
from ledger.kinds import EntryKind
from ledger.ports.queries import EscrowAuditQueries


def escrow_matches_milestones(escrow: EscrowAuditQueries) -> Iterator[Problem]:
    holding = {state.value for state in HOLDING}
    for flows in escrow.milestone_flows():
        where: dict[str, Detail] = {"milestone_id": flows.milestone_id, "state": flows.state, "held": flows.held}
        if flows.held != flows.funded + flows.advanced - flows.released - flows.refunded:
            figures = {
                "funded": flows.funded,
                "advanced": flows.advanced,
                "released": flows.released,
                "refunded": flows.refunded,
            }
            yield Problem("escrow_matches_milestones", "", {**where, **figures})
        if flows.foreign_postings:
            message = f"{flows.foreign_postings} postings of other kinds touch its escrow"
            yield Problem("escrow_matches_milestones", message, where)
        if flows.paid != flows.released:
            figures = {"payments": flows.paid, "released": flows.released}
            yield Problem("escrow_matches_milestones", "payments differ from releases", {**where, **figures})
        if (flows.state in holding) != (flows.held > 0):
            yield Problem("escrow_matches_milestones", "what it holds does not match its state", where)


def conservation_per_client(escrow: EscrowAuditQueries) -> Iterator[Problem]:
    for client in escrow.client_flows():
        if client.collected + client.advanced != client.held + client.released + client.refunded:
            yield Problem(
                "conservation_per_client",
                "",
                {
                    "client": client.client_id,
                    "currency": client.currency,
                    "collected": client.collected,
                    "advanced": client.advanced,
                    "held": client.held,
                    "released": client.released,
                    "refunded": client.refunded,
                },
            )


def accounting_equation(escrow: EscrowAuditQueries) -> Iterator[Problem]:
    # Balances are stored on each account's normal side, so the equation is tested by
    # side (a contra account, e.g. an asset kept on the credit side, counts with the
    # credits); the per-type figures are reported to read a failure by.
    for sums in escrow.balances_by_currency():
        if sums.debit_side != sums.credit_side:
            yield Problem(
                "accounting_equation",
                "",
                {
                    "currency": sums.currency,
                    "assets": sums.assets,
                    "liabilities": sums.liabilities,
                    "equity": sums.equity,
                    "revenue": sums.revenue,
                    "expenses": sums.expenses,
                },
            )


#: Where each figure of a dispute is booked: (entry kinds, account, side).
DISPUTE_FIGURES = {
    "withdrawn": ((EntryKind.DISPUTE_FUNDS_WITHDRAWN,), DISPUTED, "debit"),
    "reinstated": ((EntryKind.DISPUTE_FUNDS_REINSTATED,), DISPUTED, "credit"),
    "recovered_from_refunds": ((EntryKind.DISPUTE_REFUND_SETTLED,), REFUNDS_IN_TRANSIT, "debit"),
    "recovered_from_escrow": ((EntryKind.CHARGEBACK,), "liabilities:escrow:", "debit"),
    "recovered_from_freelancer": ((EntryKind.DISPUTE_RECOVERY,), "liabilities:freelancer:", "debit"),
    "fee_returned": ((EntryKind.DISPUTE_RECOVERY,), SERVICE_FEES, "debit"),
    "unrecovered": ((EntryKind.DISPUTE_RECOVERY, EntryKind.DISPUTE_LOST), CHARGEBACKS, "debit"),
}


def _figure_of(kind: str, code: str, side: str) -> str | None:
    for figure, (kinds, account, figure_side) in DISPUTE_FIGURES.items():
        matches = code.startswith(account) if account.endswith(":") else code == account
        if kind in kinds and matches and side == figure_side:
            return figure
    return None


def chargebacks_accounted(escrow: EscrowAuditQueries) -> Iterator[Problem]:
    kinds = sorted({kind for kinds, _, _ in DISPUTE_FIGURES.values() for kind in kinds})
    booked: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(DISPUTE_FIGURES, 0))
    for leg in escrow.dispute_legs(kinds):
        figure = _figure_of(leg.kind, leg.account, leg.side)
        if figure is not None:
            booked[str(leg.dispute_id)][figure] += leg.amount
    outstanding: dict[str, int] = defaultdict(int)
    for dispute in escrow.disputes():
        journal = booked.pop(dispute.id, dict.fromkeys(DISPUTE_FIGURES, 0))
        recorded = {figure: int(getattr(dispute, figure)) for figure in DISPUTE_FIGURES}
        if journal != recorded:
            yield Problem(
                "chargebacks_accounted",
                "figures differ from the journal",
                {"dispute_id": dispute.id, "recorded": recorded, "journal": journal},
            )
        lost = journal["withdrawn"] - journal["reinstated"]
        if dispute.outcome is None:
            outstanding[dispute.currency] += lost
        else:
            covered = sum(journal[f] for f in DISPUTE_FIGURES if f not in ("withdrawn", "reinstated"))
            if covered != lost:  # a closed dispute leaves nothing in assets:psp:disputed
                yield Problem(
                    "chargebacks_accounted", "", {"dispute_id": dispute.id, "lost": lost, "accounted_for": covered}
                )
    for dispute_id in booked:
        yield Problem(
            "chargebacks_accounted", "entries book a dispute that was never recorded", {"dispute_id": dispute_id}
        )
    at_provider = escrow.balances_of(DISPUTED)
    for currency in sorted(set(at_provider) | set(outstanding)):
        if at_provider.get(currency, 0) != outstanding[currency]:
            yield Problem(
                "chargebacks_accounted",
                "",
                {
                    "currency": currency,
                    "disputed_balance": at_provider.get(currency, 0),
                    "open_disputes_withdrawn": outstanding[currency],
                },
            )


def hourly_weeks_billed(escrow: EscrowAuditQueries) -> Iterator[Problem]:
    """Each closed week's figures are what its segments and terms bill: the limit in force
    for the week, billable minutes within it, the amount by the cumulative rounding rule;
    and a week that billed anything is held by an escrow subject of kind week for exactly
    that amount (what that subject holds against its state is `escrow_matches_milestones`)."""
    audits = list(escrow.hourly_weeks())
    carried_to: dict[tuple[str, date], int] = defaultdict(int)
    for audit in audits:
        if audit.week.carried_to is not None:
            carried_to[(audit.week.contract_id, audit.week.carried_to)] += audit.week.amount
    for audit in audits:
        week = audit.week
        where: dict[str, Detail] = {"week": week.id}
        if week.carried_in != carried_to.get((week.contract_id, week.week), 0):
            yield Problem(
                "hourly_weeks_billed",
                "what the week carries in is not what earlier weeks carried to it",
                {
                    **where,
                    "carried_in": week.carried_in,
                    "carried_to_it": carried_to.get((week.contract_id, week.week), 0),
                },
            )
        changes = list(audit.term_changes)
        limit = limit_for_week(limit_history(changes), week.week) * MINUTES_PER_HOUR
        bill = bill_week(week.week, list(audit.segments), limit, rate_history(changes))
        recorded = (
            week.limit_minutes,
            week.logged_minutes,
            week.billable_minutes,
            week.over_limit_minutes,
            week.amount,
        )
        billed = (limit, bill.logged_minutes, bill.billable_minutes, bill.over_limit_minutes, bill.amount)
        if recorded != billed:
            figures = ("limit_minutes", "logged_minutes", "billable_minutes", "over_limit_minutes", "amount")
            yield Problem(
                "hourly_weeks_billed",
                "the week's figures differ from what its time bills",
                {
                    **where,
                    "recorded": dict(zip(figures, recorded, strict=True)),
                    "billed": dict(zip(figures, billed, strict=True)),
                },
            )
        if week.protected_amount not in (0, protected_amount(bill)):
            yield Problem(
                "hourly_weeks_billed",
                "the protected amount is not the week's tracked time within the limit",
                {**where, "protected_amount": week.protected_amount, "tracked": protected_amount(bill)},
            )
        if week.billable_minutes > week.limit_minutes:
            yield Problem("hourly_weeks_billed", "billable minutes exceed the week's limit", where)
        held_by = (audit.subject_kind, audit.subject_amount)
        charged = week.amount + week.carried_in
        expected = (SubjectKind.WEEK.value, charged) if charged and not week.carried else (None, None)
        if held_by != expected:
            yield Problem(
                "hourly_weeks_billed",
                "the week's escrow subject does not match it",
                {
                    **where,
                    "amount": week.amount,
                    "subject_kind": audit.subject_kind,
                    "subject_amount": audit.subject_amount,
                },
            )
        dispute = audit.dispute
        # A charged week holds its whole charge until review end, then exactly what an open
        # dispute holds; a week not charged yet holds none of the client's money.
        if (
            dispute is not None
            and dispute.is_open
            and audit.subject_state == MilestoneState.FUNDED.value
            and (audit.held < dispute.unsettled or audit.held not in (dispute.unsettled, audit.subject_amount))
        ):
            yield Problem(
                "hourly_weeks_billed",
                "an open dispute's amount is not what the week holds",
                {**where, "held": audit.held, "disputed": dispute.unsettled},
            )
        if dispute is not None and not dispute.is_open and dispute.released + dispute.refunded != dispute.amount:
            yield Problem("hourly_weeks_billed", "a closed dispute is not fully released and refunded", where)
    for subject_id in escrow.unrecorded_week_subjects():
        yield Problem(
            "hourly_weeks_billed", "an escrow subject of kind week has no closed week", {"subject": subject_id}
        )


def receivables_match_advances(escrow: EscrowAuditQueries) -> Iterator[Problem]:
    """Per client and currency, what the platform advanced into weeks' escrow (net of what
    it took back) + what lost chargebacks reopened = receivables outstanding + written
    off, none outstanding below 0; `assets:receivables:clients` holds what is
    outstanding; and every write-off is dated when retries stop, `retry_charges_for`
    after its week closed (that of a reopened receivable then or, if later, when reopened)."""
    kinds = [EntryKind.ADVANCE, EntryKind.RECOVERY, EntryKind.WRITE_OFF, EntryKind.RECEIVABLE_REOPENED]
    figures: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"advanced": 0, "reopened": 0, "outstanding": 0, "written_off": 0}
    )
    write_offs: list[tuple[str, datetime, bool]] = []
    for leg in escrow.kind_legs(kinds):
        debit_positive = leg.amount if leg.side is Side.DEBIT else -leg.amount
        client = figures[(leg.refs.get("client", ""), leg.currency)]
        if leg.account.startswith(ESCROW_ACCOUNT_PREFIX):
            client["advanced"] -= debit_positive
        elif leg.account == CHARGEBACKS:
            client["reopened"] -= debit_positive
        elif leg.account == RECEIVABLES:
            client["outstanding"] += debit_positive
            if leg.kind == EntryKind.WRITE_OFF:
                write_offs.append((leg.refs.get("milestone", ""), leg.effective_at, "dispute" in leg.refs))
        elif leg.account == HOURLY_PROTECTION:
            client["written_off"] += debit_positive
    outstanding: dict[str, int] = defaultdict(int)
    for (client_id, currency), found in sorted(figures.items()):
        outstanding[currency] += found["outstanding"]
        owed = found["advanced"] + found["reopened"]
        if owed != found["outstanding"] + found["written_off"] or found["outstanding"] < 0:
            yield Problem("receivables_match_advances", "", {"client": client_id, "currency": currency, **found})
    at_platform = escrow.balances_of(RECEIVABLES)
    for currency in sorted(set(at_platform) | set(outstanding)):
        if at_platform.get(currency, 0) != outstanding[currency]:
            yield Problem(
                "receivables_match_advances",
                "",
                {
                    "currency": currency,
                    "receivables": at_platform.get(currency, 0),
                    "outstanding": outstanding[currency],
                },
            )
    if write_offs:
        closed = {audit.week.id: audit.week.closed_at for audit in escrow.hourly_weeks()}
        for subject_id, at, reopened in write_offs:
            due = closed.get(subject_id)
            stop = None if due is None else due + HOURLY_CALENDAR.retry_charges_for
            if stop is None or (at < stop if reopened else at != stop):
                yield Problem(
                    "receivables_match_advances",
                    "a write-off is not dated when its week's retries stopped",
                    {"week": subject_id, "written_off_at": at.isoformat()},
                )


ESCROW_CHECKS: list[tuple[str, Check]] = [
    ("escrow_matches_milestones", escrow_matches_milestones),
    ("hourly_weeks_billed", hourly_weeks_billed),
    ("receivables_match_advances", receivables_match_advances),
    ("conservation_per_client", conservation_per_client),
    ("accounting_equation", accounting_equation),
    ("chargebacks_accounted", chargebacks_accounted),
]
