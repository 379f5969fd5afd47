"""Escrow's invariants for `ledger audit` (DESIGN.md, invariants 4 and 5).

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

Chargebacks, `chargebacks_accounted`: each figure of a dispute (withdrawn,
reinstated, recovered from failed refunds, from escrow, from the freelancer, fee returned, unrecovered)
equals the postings that booked it; `assets:psp:disputed` holds exactly what open
disputes have withdrawn and not reinstated; and a closed dispute's loss is fully
accounted for by its recovery entries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from sqlalchemy import Connection, select, text

from ledger.audit import Check, Problem, stream
from ledger.db.schema import accounts, balances, disputes, entries, postings
from ledger.escrow.chart import CHARGEBACKS, DISPUTED, REFUNDS_IN_TRANSIT, SERVICE_FEES
from ledger.escrow.model import HOLDING
from ledger.kinds import EntryKind

FLOWS = """
WITH escrow AS (
    SELECT m.id AS milestone_id, m.state, c.client_id, c.currency, a.id AS account_id
      FROM milestones m
      JOIN contracts c ON c.id = m.contract_id
      JOIN accounts a ON a.code = 'liabilities:escrow:' || m.id AND a.currency = c.currency
),
flows AS (
    SELECT p.account_id,
           sum(CASE WHEN e.kind IN ('escrow.fund', 'escrow.fund_bonus', 'escrow.fund.reversal', 'escrow.fund_bonus.reversal')
                    THEN CASE WHEN p.side = 'credit' THEN p.amount ELSE -p.amount END ELSE 0 END) AS funded,
           sum(CASE WHEN e.kind IN ('escrow.release', 'escrow.release.reversal')
                    THEN CASE WHEN p.side = 'debit' THEN p.amount ELSE -p.amount END ELSE 0 END) AS released,
           sum(CASE WHEN e.kind IN ('escrow.refund', 'escrow.refund.reversal', 'escrow.chargeback')
                    THEN CASE WHEN p.side = 'debit' THEN p.amount ELSE -p.amount END ELSE 0 END) AS refunded,
           sum(CASE WHEN e.kind NOT IN ('escrow.fund', 'escrow.fund_bonus', 'escrow.release', 'escrow.refund',
                                        'escrow.chargeback',
                                        'escrow.fund.reversal', 'escrow.fund_bonus.reversal',
                                        'escrow.release.reversal', 'escrow.refund.reversal')
                    THEN 1 ELSE 0 END) AS foreign_postings
      FROM postings p JOIN entries e ON e.id = p.entry_id
     WHERE p.account_id IN (SELECT account_id FROM escrow)
     GROUP BY p.account_id
),
held AS (
    SELECT account_id, sum(balance) AS held FROM balances
     WHERE account_id IN (SELECT account_id FROM escrow) GROUP BY account_id
),
paid AS (
    SELECT milestone_id, sum(gross) AS gross FROM payments GROUP BY milestone_id
)
SELECT x.milestone_id, x.state, x.client_id, x.currency,
       coalesce(h.held, 0) AS held, coalesce(f.funded, 0) AS funded, coalesce(f.released, 0) AS released,
       coalesce(f.refunded, 0) AS refunded, coalesce(f.foreign_postings, 0) AS foreign_postings,
       coalesce(y.gross, 0) AS paid
  FROM escrow x
  LEFT JOIN flows f ON f.account_id = x.account_id
  LEFT JOIN held h ON h.account_id = x.account_id
  LEFT JOIN paid y ON y.milestone_id = x.milestone_id
"""


def escrow_matches_milestones(connection: Connection) -> Iterator[Problem]:
    holding = {state.value for state in HOLDING}
    for row in stream(connection, text(FLOWS + " ORDER BY x.milestone_id")):
        where = {"milestone_id": row.milestone_id, "state": row.state, "held": int(row.held)}
        expected = int(row.funded) - int(row.released) - int(row.refunded)
        if int(row.held) != expected:
            yield {**where, "funded": int(row.funded), "released": int(row.released), "refunded": int(row.refunded)}
        if int(row.foreign_postings):
            yield {**where, "problem": f"{int(row.foreign_postings)} postings of other kinds touch its escrow"}
        if int(row.paid) != int(row.released):
            yield {
                **where,
                "problem": "payments differ from releases",
                "payments": int(row.paid),
                "released": int(row.released),
            }
        if (row.state in holding) != (int(row.held) > 0):
            yield {**where, "problem": "what it holds does not match its state"}


def conservation_per_client(connection: Connection) -> Iterator[Problem]:
    per_client = (
        "SELECT client_id, currency, sum(funded) AS collected, sum(held) AS held, sum(paid) AS released,"
        " sum(refunded) AS refunded FROM (" + FLOWS + ") AS m GROUP BY client_id, currency ORDER BY client_id, currency"
    )
    for row in stream(connection, text(per_client)):
        collected, held, released, refunded = (int(row.collected), int(row.held), int(row.released), int(row.refunded))
        if collected != held + released + refunded:
            yield {
                "client": row.client_id,
                "currency": row.currency,
                "collected": collected,
                "held": held,
                "released": released,
                "refunded": refunded,
            }


def accounting_equation(connection: Connection) -> Iterator[Problem]:
    # Balances are stored on each account's normal side, so the equation is tested by
    # side (a contra account, e.g. an asset kept on the credit side, counts with the
    # credits); the per-type figures are reported to read a failure by.
    sums = text(
        "SELECT a.currency,"
        " sum(CASE WHEN a.normal_side = 'debit' THEN b.balance ELSE 0 END) AS debit_side,"
        " sum(CASE WHEN a.normal_side = 'credit' THEN b.balance ELSE 0 END) AS credit_side,"
        " sum(CASE WHEN a.type = 'asset' THEN b.balance ELSE 0 END) AS assets,"
        " sum(CASE WHEN a.type = 'liability' THEN b.balance ELSE 0 END) AS liabilities,"
        " sum(CASE WHEN a.type = 'equity' THEN b.balance ELSE 0 END) AS equity,"
        " sum(CASE WHEN a.type = 'revenue' THEN b.balance ELSE 0 END) AS revenue,"
        " sum(CASE WHEN a.type = 'expense' THEN b.balance ELSE 0 END) AS expenses"
        " FROM balances b JOIN accounts a ON a.id = b.account_id GROUP BY a.currency ORDER BY a.currency"
    )
    for row in stream(connection, sums):
        if int(row.debit_side) != int(row.credit_side):
            yield {
                "currency": row.currency,
                "assets": int(row.assets),
                "liabilities": int(row.liabilities),
                "equity": int(row.equity),
                "revenue": int(row.revenue),
                "expenses": int(row.expenses),
            }


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


def chargebacks_accounted(connection: Connection) -> Iterator[Problem]:
    kinds = sorted({kind for kinds, _, _ in DISPUTE_FIGURES.values() for kind in kinds})
    booked: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(DISPUTE_FIGURES, 0))
    legs = (
        select(entries.c.kind, entries.c.refs, accounts.c.code, postings.c.side, postings.c.amount)
        .select_from(
            postings.join(entries, entries.c.id == postings.c.entry_id).join(
                accounts, accounts.c.id == postings.c.account_id
            )
        )
        .where(entries.c.kind.in_(kinds))
    )
    for kind, refs, code, side, amount in stream(connection, legs):
        figure = _figure_of(kind, code, side)
        if figure is not None:
            booked[str(dict(refs).get("dispute"))][figure] += int(amount)
    outstanding: dict[str, int] = defaultdict(int)
    for row in stream(connection, select(disputes).order_by(disputes.c.id)):
        journal = booked.pop(row.id, dict.fromkeys(DISPUTE_FIGURES, 0))
        recorded = {figure: int(getattr(row, figure)) for figure in DISPUTE_FIGURES}
        if journal != recorded:
            yield {
                "dispute_id": row.id,
                "problem": "figures differ from the journal",
                "recorded": recorded,
                "journal": journal,
            }
        lost = journal["withdrawn"] - journal["reinstated"]
        if row.outcome is None:
            outstanding[row.currency] += lost
        else:
            covered = sum(journal[f] for f in DISPUTE_FIGURES if f not in ("withdrawn", "reinstated"))
            if covered != lost:  # a closed dispute leaves nothing in assets:psp:disputed
                yield {"dispute_id": row.id, "lost": lost, "accounted_for": covered}
    for dispute_id in booked:
        yield {"dispute_id": dispute_id, "problem": "entries book a dispute that was never recorded"}
    held = (
        select(accounts.c.currency, balances.c.balance)
        .select_from(balances.join(accounts, accounts.c.id == balances.c.account_id))
        .where(accounts.c.code == DISPUTED)
    )
    at_provider: dict[str, int] = defaultdict(int)
    for currency, amount in connection.execute(held):
        at_provider[currency] += int(amount)
    for currency in sorted(set(at_provider) | set(outstanding)):
        if at_provider[currency] != outstanding[currency]:
            yield {
                "currency": currency,
                "disputed_balance": at_provider[currency],
                "open_disputes_withdrawn": outstanding[currency],
            }


ESCROW_CHECKS: list[tuple[str, Check]] = [
    ("escrow_matches_milestones", escrow_matches_milestones),
    ("conservation_per_client", conservation_per_client),
    ("accounting_equation", accounting_equation),
    ("chargebacks_accounted", chargebacks_accounted),
]
