"""The fee engine's invariant for `ledger audit` (DESIGN.md, invariant 6).

`fee_chain`: each freelancer-client pair's fee events form an unbroken chain of
lifetime billings from 0 to the pair's stored total, and each event's fee
recomputes as R(F(after)) - R(F(before)) under the schedule it names (a charge's,
the one in force at its time; a refund's, the one of the charge it refunds). For a
pair billed under one schedule the fees then telescope to R(F(net lifetime
billings)); a pair billed under several owes no such total, so none is checked.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, func, select

from ledger.audit import Check, Problem, stream
from ledger.db.schema import fee_events, fee_schedules, lifetime_billings
from ledger.fees.rule import cumulative_fee, round_minor
from ledger.fees.schedule import FeeSchedule


def fee_chain(connection: Connection) -> Iterator[Problem]:
    """Invariant 6: each pair's fee events chain from 0 to its lifetime billings, and
    each event's fee is R(F(after)) - R(F(before)) under the schedule it names."""
    schedules = {
        int(row.id): FeeSchedule.from_data(row.definition) for row in connection.execute(select(fee_schedules))
    }
    pair_columns = (fee_events.c.freelancer_id, fee_events.c.client_id, fee_events.c.currency)
    pair: tuple[str, str, str] | None = None
    expected_before = 0
    for row in stream(connection, select(fee_events).order_by(*pair_columns, fee_events.c.id)):
        this = (row.freelancer_id, row.client_id, row.currency)
        if this != pair:
            pair, expected_before = this, 0
        if int(row.lifetime_before) != expected_before:
            yield {
                "fee_event_id": int(row.id),
                "lifetime_before": int(row.lifetime_before),
                "expected": expected_before,
            }
        tiers = schedules[int(row.schedule_id)].tiers_for(row.currency)
        high, low = sorted((int(row.lifetime_before), int(row.lifetime_after)), reverse=True)
        recomputed = round_minor(cumulative_fee(tiers, high)) - round_minor(cumulative_fee(tiers, low))
        if recomputed != int(row.fee):
            yield {"fee_event_id": int(row.id), "fee": int(row.fee), "recomputed": recomputed}
        expected_before = int(row.lifetime_after)

    # The chain's end is the pair's stored lifetime billings (0 for a pair without events).
    last_ids = select(*pair_columns, func.max(fee_events.c.id).label("last_id")).group_by(*pair_columns).subquery()
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
        .where(func.coalesce(last.c.lifetime_after, 0) != lb.c.billed)
        .order_by(lb.c.freelancer_id, lb.c.client_id, lb.c.currency)
    )
    for row in stream(connection, ends):
        yield {
            "pair": [row.freelancer_id, row.client_id, row.currency],
            "lifetime_billings": int(row.billed),
            "last_event_after": int(row.lifetime_after or 0),
        }
    orphans = (
        select(*pair_columns)
        .select_from(
            fee_events.outerjoin(
                lb,
                (lb.c.freelancer_id == fee_events.c.freelancer_id)
                & (lb.c.client_id == fee_events.c.client_id)
                & (lb.c.currency == fee_events.c.currency),
            )
        )
        .where(lb.c.billed.is_(None))
        .distinct()
    )
    for row in stream(connection, orphans):
        yield {"pair": list(row), "problem": "fee events without lifetime billings"}


FEE_CHECKS: list[tuple[str, Check]] = [("fee_chain", fee_chain)]
