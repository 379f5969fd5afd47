"""Invariant 10 for `ledger audit`: the provider's own books against the ledger.

`provider_matches_ledger`: per provider account and currency, what the provider
recorded (charged - fees withheld - refunded - transferred - withdrawn for disputes
+ reinstated) equals the ledger's balance of that account (e.g.
`assets:psp:simulated`) plus the movements the ledger has not booked yet.

A provider movement is booked when entries posting to the provider account on its
side (debit for money in, credit for money out) carry its provider object's
reference in `refs["gateway_reference"]` (funding, refund and payout settlements,
processing and dispute fees all do). Movements are matched by (reference, side):

- the provider moved it and no entry carries it: not booked yet (a webhook or a
  settlement still to come): listed as a note by kind, reference and amount;
- both have it at different amounts: a problem (the ledger booked what the
  provider did not move);
- the ledger posted to the provider account with no reference the provider knows
  (or none at all): a problem;
- and the totals must agree once the unbooked movements are counted.

It needs the provider's books, passed explicitly (`provider_checks(books)`); with
none (Stripe, which is reconciled over a period instead, or no gateway) it reports
that it does not apply. The provider account's postings are read in one pass
(per reference, so memory grows with the number of provider objects).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from ledger.accounts import Side
from ledger.audit import Check, Note, Problem
from ledger.gateway.books import ProviderBooks, ProviderMovement
from ledger.ports.queries import ProviderAuditQueries

#: How the provider's movements add up, by kind, in the check's totals.
TOTALS = {
    "charge": "charged",
    "fee": "fees_withheld",
    "refund": "refunded",
    "transfer": "transferred",
    "dispute_withdrawal": "dispute_withdrawals",
    "dispute_reinstatement": "dispute_reinstatements",
}
SHOWN_ENTRIES = 10
CHECK = "provider_matches_ledger"


def provider_checks(books: ProviderBooks | None) -> list[tuple[str, Check]]:
    """Invariant 10's check, over `books` (None: the provider keeps none the ledger can read)."""
    return [(CHECK, lambda queries: provider_matches_ledger(queries, books))]


def _side(movement: ProviderMovement) -> str:
    return "debit" if movement.amount > 0 else "credit"


def provider_matches_ledger(ledger: ProviderAuditQueries, books: ProviderBooks | None) -> Iterator[Problem]:
    if books is None:
        yield Note(CHECK, "", {"applies": False, "reason": "the payment gateway keeps no books the ledger can read"})
        return
    account = books.psp_account
    # The ledger first, then the provider: what the provider does in between shows as
    # not booked yet, never as money the ledger has and the provider lacks.
    ledger_side: dict[tuple[str, str | None, str], int] = defaultdict(int)
    entry_ids: dict[tuple[str, str | None, str], list[int]] = defaultdict(list)
    balance: dict[str, int] = defaultdict(int)
    for posting in ledger.provider_postings(account):
        key = (posting.currency, posting.reference, posting.side.value)
        ledger_side[key] += posting.amount
        entry_ids[key].append(posting.entry_id)
        balance[posting.currency] += posting.amount if posting.side == Side.DEBIT else -posting.amount

    moved = books.movements()
    provider_side: dict[tuple[str, str | None, str], int] = defaultdict(int)
    kinds: dict[tuple[str, str | None, str], list[ProviderMovement]] = defaultdict(list)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TOTALS.values(), 0))
    for movement in moved:
        key = (movement.currency, movement.reference, _side(movement))
        provider_side[key] += abs(movement.amount)
        kinds[key].append(movement)
        totals[movement.currency][TOTALS[movement.kind]] += abs(movement.amount)

    unbooked: dict[str, int] = defaultdict(int)
    for key in sorted(provider_side, key=str):
        currency, reference, side = key
        if key not in ledger_side:
            for movement in kinds[key]:
                unbooked[currency] += movement.amount
                yield Note(
                    CHECK,
                    "moved by the provider, not booked by the ledger yet",
                    {
                        "account": account,
                        "currency": currency,
                        "kind": movement.kind,
                        "reference": reference,
                        "amount": movement.amount,
                    },
                )
        elif ledger_side[key] != provider_side[key]:
            yield Problem(
                CHECK,
                "the ledger booked a different amount than the provider moved",
                {
                    "account": account,
                    "currency": currency,
                    "reference": reference,
                    "side": side,
                    "kinds": tuple(movement.kind for movement in kinds[key]),
                    "provider_amount": provider_side[key],
                    "ledger_amount": ledger_side[key],
                    "entry_ids": tuple(entry_ids[key][:SHOWN_ENTRIES]),
                },
            )
    for key in sorted(set(ledger_side) - set(provider_side), key=str):
        currency, reference, side = key
        yield Problem(
            CHECK,
            "the ledger booked money the provider has no record of",
            {
                "account": account,
                "currency": currency,
                "reference": reference,
                "side": side,
                "ledger_amount": ledger_side[key],
                "entry_ids": tuple(entry_ids[key][:SHOWN_ENTRIES]),
            },
        )

    for currency in sorted(set(balance) | set(totals)):
        figures = totals[currency]
        net = sum(m.amount for m in moved if m.currency == currency)
        if net - unbooked[currency] != balance[currency]:
            yield Problem(
                CHECK,
                "the provider account differs from the provider's books",
                {
                    "account": account,
                    "currency": currency,
                    "provider": {**figures, "net": net},
                    "ledger_balance": balance[currency],
                    "not_booked_yet": unbooked[currency],
                    "difference": balance[currency] + unbooked[currency] - net,
                },
            )
