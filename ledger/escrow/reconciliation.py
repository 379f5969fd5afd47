"""Reconciliation: the payment provider's objects against the ledger's entries.

For a period, every payment, refund, transfer and dispute (chargeback) at the provider is matched by its
id to the ledger entry that books it (the entry's `gateway_reference`): matched,
missing in the ledger, missing at the provider, or amounts that differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import select

from ledger.clock import require_utc
from ledger.db.schema import accounts, entries, postings
from ledger.errors import ConfigurationError, InvalidRequest
from ledger.gateway import ProviderObject
from ledger.kinds import EntryKind

if TYPE_CHECKING:
    from ledger.db.unit_of_work import UnitOfWork

#: Ledger entry kind that books each kind of provider object, and the PSP side.
BOOKED_BY = {
    "payment": ((EntryKind.FUND, EntryKind.FUND_BONUS), "debit"),
    "refund": ((EntryKind.REFUND_SETTLED,), "credit"),
    "transfer": ((EntryKind.PAYOUT_PAID,), "credit"),
    "dispute": ((EntryKind.DISPUTE_FUNDS_WITHDRAWN,), "credit"),
}


class ListsObjects(Protocol):
    def list_objects(self, since: datetime, until: datetime) -> list[ProviderObject]: ...


@dataclass(frozen=True)
class ReconciliationLine:
    """One object compared. status: matched, missing_in_ledger, missing_at_provider, amount_mismatch."""

    status: str
    kind: str
    reference: str
    currency: str
    provider_amount: int | None
    ledger_amount: int | None
    entry_id: int | None


def ledger_side(
    uow: UnitOfWork, psp_account: str, since: datetime, until: datetime
) -> dict[str, tuple[str, int, str, int]]:
    """reference -> (kind, amount on the PSP account, currency, entry id) for booked provider objects."""
    kinds = {k: (kind, side) for kind, (ks, side) in BOOKED_BY.items() for k in ks}
    rows = uow.connection.execute(
        select(entries.c.id, entries.c.kind, entries.c.refs, postings.c.side, postings.c.amount, postings.c.currency)
        .select_from(
            postings.join(entries, entries.c.id == postings.c.entry_id).join(
                accounts, accounts.c.id == postings.c.account_id
            )
        )
        .where(
            entries.c.kind.in_(list(kinds)),
            accounts.c.code == psp_account,
            entries.c.recorded_at >= since,
            entries.c.recorded_at < until,
        )
    )
    found: dict[str, tuple[str, int, str, int]] = {}
    for entry_id, kind, refs, side, amount, currency in rows:
        reference = dict(refs).get("gateway_reference")
        object_kind, psp_side = kinds[kind]
        if reference and side == psp_side:
            earlier = found.get(reference)
            total = int(amount) + (earlier[1] if earlier else 0)
            found[reference] = (object_kind, total, currency, int(entry_id))
    return found


def reconcile(
    uow: UnitOfWork, gateway: object, psp_account: str, since: datetime, until: datetime
) -> list[ReconciliationLine]:
    start, end = require_utc(since), require_utc(until)
    if end <= start:
        raise InvalidRequest("the period ends before or when it starts", field="to")
    lister = getattr(gateway, "list_objects", None)
    if lister is None:
        raise ConfigurationError("the configured payment gateway cannot list its objects; reconcile needs stripe")
    provider = {obj.id: obj for obj in lister(start, end)}
    booked = ledger_side(uow, psp_account, start, end)
    lines = []
    for reference, obj in sorted(provider.items()):
        mine = booked.pop(reference, None)
        if mine is None:
            lines.append(
                ReconciliationLine("missing_in_ledger", obj.kind, reference, obj.currency, obj.amount, None, None)
            )
        else:
            status = "matched" if mine[1] == obj.amount else "amount_mismatch"
            lines.append(ReconciliationLine(status, obj.kind, reference, obj.currency, obj.amount, mine[1], mine[3]))
    for reference, (kind, amount, currency, entry_id) in sorted(booked.items()):
        lines.append(ReconciliationLine("missing_at_provider", kind, reference, currency, None, amount, entry_id))
    return lines
