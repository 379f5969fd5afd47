"""Reconciliation: the payment provider's objects against the ledger's entries.

For a period, every payment, refund, transfer and dispute (chargeback) at the provider is matched by its
id to the ledger entry that books it (the entry's `gateway_reference`): matched,
missing in the ledger, missing at the provider, or amounts that differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ledger.clock import require_utc
from ledger.errors import ConfigurationError, InvalidRequest
from ledger.gateway import ObjectListing
from ledger.kinds import EntryKind
from ledger.ports.unit_of_work import UnitOfWork
from ledger.progress import Progress

#: Ledger entry kind that books each kind of provider object, and the PSP side.
BOOKED_BY = {
    "payment": ((EntryKind.FUND, EntryKind.FUND_BONUS), "debit"),
    "refund": ((EntryKind.REFUND_SETTLED,), "credit"),
    "transfer": ((EntryKind.PAYOUT_PAID,), "credit"),
    "dispute": ((EntryKind.DISPUTE_FUNDS_WITHDRAWN,), "credit"),
}


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
    found: dict[str, tuple[str, int, str, int]] = {}
    for posting in uow.reconciliation.booked_postings(psp_account, list(kinds), since, until):
        object_kind, psp_side = kinds[EntryKind(posting.kind)]
        if posting.reference and posting.side == psp_side:
            earlier = found.get(posting.reference)
            total = posting.amount + (earlier[1] if earlier else 0)
            found[posting.reference] = (object_kind, total, posting.currency, posting.entry_id)
    return found


def reconcile(
    uow: UnitOfWork,
    gateway: object,
    psp_account: str,
    since: datetime,
    until: datetime,
    progress: Progress | None = None,
) -> list[ReconciliationLine]:
    start, end = require_utc(since), require_utc(until)
    if end <= start:
        raise InvalidRequest("the period ends before or when it starts", field="to")
    if not isinstance(gateway, ObjectListing):
        raise ConfigurationError("the configured payment gateway cannot list its objects; reconcile needs stripe")
    provider = {}
    for obj in gateway.list_objects(start, end):  # the provider pages through them: the long part
        provider[obj.id] = obj
        if progress is not None:
            progress(len(provider), None)
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
