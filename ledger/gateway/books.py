"""A payment provider's own books: the objects it holds and the money they moved.

The simulated gateway keeps them as a real provider would (in its own table, or in
memory), and the audit's `provider_matches_ledger` compares them with the ledger
(docs/architecture.md, "Invariants", invariant 10). A record is the provider's object as it stands now; the
money it moved is derived from it (`movements`), never stored twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

#: The provider's id prefix of each kind of object (Stripe's, so references read alike).
PREFIXES = {"charge": "pi", "refund": "re", "transfer": "tr", "dispute": "dp"}
KINDS = tuple(PREFIXES)


@dataclass(frozen=True)
class ProviderRecord:
    """One object at the provider: a charge, a refund, a transfer (payout) or a dispute.

    Attributes:
        id: the provider's sequence number; `reference` is its id as the API shows it.
        kind: "charge", "refund", "transfer" or "dispute".
        idempotency_key: the key of the call that created it (None for a dispute: the
            client's bank opens it); a repeated call gets `answered` again.
        amount: minor units; fee: what the provider withheld (a succeeded charge's
            processing fee, a dispute's fee).
        status: now: succeeded, requires_action, failed or cancelled; a dispute:
            needs_response, won or lost. answered: the status the call was answered with.
        party: the customer charged or the account paid; charge_reference: the charge a
            refund or dispute acts on.
        order_id: our id in its metadata (`metadata["order"]`), to find it again.
        reinstated: what of a dispute's withdrawal the provider gave back.
    """

    id: int
    kind: str
    idempotency_key: str | None
    amount: int
    currency: str
    status: str
    answered: str
    fee: int = 0
    failure_reason: str | None = None
    party: str | None = None
    charge_reference: str | None = None
    order_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    reinstated: int = 0

    @property
    def reference(self) -> str:
        return reference_of(self.kind, self.id)


def reference_of(kind: str, number: int) -> str:
    return f"{PREFIXES[kind]}_sim_{number}"


def parse_reference(reference: str) -> tuple[str, int] | None:
    """The kind and number of a simulated provider's reference; None if it is not one."""
    prefix, _, number = reference.partition("_sim_")
    kinds = [kind for kind, p in PREFIXES.items() if p == prefix]
    if not kinds or not number.isdigit():
        return None
    return kinds[0], int(number)


@dataclass(frozen=True)
class ProviderMovement:
    """Money the provider moved on our balance with it.

    Attributes:
        kind: "charge", "fee", "refund", "transfer", "dispute_withdrawal" or
            "dispute_reinstatement"; reference: the provider object that moved it.
        amount: signed minor units: positive into our balance at the provider,
            negative out of it.
    """

    kind: str
    reference: str
    amount: int
    currency: str


def movements(records: Sequence[ProviderRecord]) -> list[ProviderMovement]:
    """The money the records moved, in record order."""
    moved: list[ProviderMovement] = []
    for record in records:
        ref, cur = record.reference, record.currency
        if record.kind == "charge" and record.status == "succeeded":
            moved.append(ProviderMovement("charge", ref, record.amount, cur))
            if record.fee:
                moved.append(ProviderMovement("fee", ref, -record.fee, cur))
        elif record.kind in ("refund", "transfer") and record.status == "succeeded":
            moved.append(ProviderMovement(record.kind, ref, -record.amount, cur))
        elif record.kind == "dispute":
            moved.append(ProviderMovement("dispute_withdrawal", ref, -record.amount, cur))
            if record.fee:
                moved.append(ProviderMovement("fee", ref, -record.fee, cur))
            if record.reinstated:
                moved.append(ProviderMovement("dispute_reinstatement", ref, record.reinstated, cur))
    return moved


@runtime_checkable
class ProviderBooks(Protocol):
    """A provider whose books the audit can read: what it moved on `psp_account`."""

    psp_account: str

    def movements(self) -> list[ProviderMovement]: ...


def provider_books_of(gateway: object) -> ProviderBooks | None:
    """The gateway's own books, when it keeps them (the simulated one does)."""
    return gateway if isinstance(gateway, ProviderBooks) else None
