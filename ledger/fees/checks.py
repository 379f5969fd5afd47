"""The fee engine's invariant for `ledger audit` (invariant 6).

`fee_chain`: each freelancer-client pair's fee events form an unbroken chain of
lifetime billings from 0 to the pair's stored total, and each event's fee
recomputes as R(F(after)) - R(F(before)) under the schedule it names (a charge's,
the one in force at its time; a refund's, the one of the charge it refunds). For a
pair billed under one schedule the fees then telescope to R(F(net lifetime
billings)); a pair billed under several owes no such total, so none is checked.
"""

from __future__ import annotations

from collections.abc import Iterator

from ledger.audit import Check, Problem
from ledger.fees.rule import cumulative_fee, round_minor
from ledger.ports.queries import FeeAuditQueries


def fee_chain(fees: FeeAuditQueries) -> Iterator[Problem]:
    """Invariant 6: each pair's fee events chain from 0 to its lifetime billings, and
    each event's fee is R(F(after)) - R(F(before)) under the schedule it names."""
    schedules = fees.fee_schedules()
    pair: tuple[str, str, str] | None = None
    expected_before = 0
    pairs_with_events: set[tuple[str, str, str]] = set()
    for event in fees.fee_chain():
        if event.pair != pair:
            pair, expected_before = event.pair, 0
            pairs_with_events.add(pair)
        if event.lifetime_before != expected_before:
            yield Problem(
                "fee_chain",
                "",
                {"fee_event_id": event.id, "lifetime_before": event.lifetime_before, "expected": expected_before},
            )
        tiers = schedules[event.schedule_id].tiers_for(event.currency)
        high, low = sorted((event.lifetime_before, event.lifetime_after), reverse=True)
        recomputed = round_minor(cumulative_fee(tiers, high)) - round_minor(cumulative_fee(tiers, low))
        if recomputed != event.fee:
            yield Problem("fee_chain", "", {"fee_event_id": event.id, "fee": event.fee, "recomputed": recomputed})
        expected_before = event.lifetime_after

    # The chain's end is the pair's stored lifetime billings (0 for a pair without events).
    billed_pairs: set[tuple[str, str, str]] = set()
    for billings in fees.pair_billings():
        billed_pairs.add(billings.pair)
        last_after = billings.last_event_after or 0
        if last_after != billings.billed:
            yield Problem(
                "fee_chain",
                "",
                {"pair": billings.pair, "lifetime_billings": billings.billed, "last_event_after": last_after},
            )
    for orphan in sorted(pairs_with_events - billed_pairs):
        yield Problem("fee_chain", "fee events without lifetime billings", {"pair": orphan})


FEE_CHECKS: list[tuple[str, Check]] = [("fee_chain", fee_chain)]
