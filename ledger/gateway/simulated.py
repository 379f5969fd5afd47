"""The simulated payment provider: answers at once, and keeps its own books.

It behaves as the provider the ledger talks to would: every call that creates
something is remembered by its idempotency key (a repeated call gets the first
answer, also from a new instance on the same database: a restarted server), a
refund must name a succeeded charge and may not exceed what is left of it, a
charge waiting for the payer can be cancelled, and the objects can be found again
by our id in their metadata. Its records are its books (`provider_books`, written
on its own connection and committed on their own: a ledger transaction that rolls
back does not erase what the provider did); without a database it keeps the same
record in memory. The audit compares them with the ledger (invariant 10).

For tests and demonstrations: `decline_next(reason)` makes the next charge or
payout fail, `require_action_next()` makes the next charge wait for the payer,
`complete_action` is the payer finishing (or failing) 3-D Secure, and
`open_dispute` / `close_dispute` are the client's bank. Outages, for the next
charge, refund or payout: `unavailable_next()` (the provider does not answer and
does nothing) and `lose_answer_next()` (it does the work, but its answer never
arrives); both raise `GatewayUnavailable`, as a timeout would, and a call again with
the same idempotency key then gets the work's first answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from ledger.errors import InvalidRequest
from ledger.gateway import BalanceMove, DisputeReport, GatewayResult, GatewayUnavailable, UnknownProviderObject
from ledger.gateway.books import KINDS, ProviderMovement, ProviderRecord, movements, parse_reference

T = TypeVar("T")
#: The outages the simulated provider can be told to have (`unavailable_next`, `lose_answer_next`).
UNAVAILABLE, ANSWER_LOST = "unavailable", "answer_lost"

PSP_ACCOUNT = "assets:psp:simulated"


class BookView(Protocol):
    """The provider's books inside one of its own transactions (the store's port)."""

    def by_key(self, key: str) -> ProviderRecord | None: ...
    def get(self, reference: str, *, lock: bool = False) -> ProviderRecord | None: ...
    def refunded(self, charge_reference: str) -> int: ...
    def find(self, kind: str, order_id: str) -> ProviderRecord | None: ...
    def records(self) -> list[ProviderRecord]: ...
    def add(self, **values: Any) -> ProviderRecord: ...
    def update(self, record: ProviderRecord, **changes: Any) -> ProviderRecord: ...


class Books(Protocol):
    """Where the provider keeps its records: in memory, or in a table of its own
    (`ledger.db.provider_books.DatabaseBooks`, committed on the provider's own connection)."""

    def atomically(self, work: Callable[[Any], T]) -> T: ...

    def close(self) -> None: ...


class MemoryBookView:
    def __init__(self, records: list[ProviderRecord]) -> None:
        self._records = records

    def by_key(self, key: str) -> ProviderRecord | None:
        return next((r for r in self._records if r.idempotency_key == key), None)

    def get(self, reference: str, *, lock: bool = False) -> ProviderRecord | None:
        parsed = parse_reference(reference)
        if parsed is None or not 1 <= parsed[1] <= len(self._records):
            return None
        record = self._records[parsed[1] - 1]
        return record if record.kind == parsed[0] else None

    def refunded(self, charge_reference: str) -> int:
        return sum(
            r.amount
            for r in self._records
            if r.kind == "refund" and r.status == "succeeded" and r.charge_reference == charge_reference
        )

    def find(self, kind: str, order_id: str) -> ProviderRecord | None:
        return next((r for r in self._records if r.kind == kind and r.order_id == order_id), None)

    def records(self) -> list[ProviderRecord]:
        return list(self._records)

    def add(self, **values: Any) -> ProviderRecord:
        values["metadata"] = dict(values.get("metadata") or {})
        record = ProviderRecord(id=len(self._records) + 1, **values)
        self._records.append(record)
        return record

    def update(self, record: ProviderRecord, **changes: Any) -> ProviderRecord:
        updated = replace(record, **changes)
        self._records[record.id - 1] = updated
        return updated


class MemoryBooks:
    """The same books, in this process's memory (a work that raises changes nothing)."""

    def __init__(self) -> None:
        self._records: list[ProviderRecord] = []
        self._lock = threading.Lock()

    def atomically(self, work: Callable[[MemoryBookView], T]) -> T:
        with self._lock:
            staged = list(self._records)
            result = work(MemoryBookView(staged))
            self._records = staged
            return result

    def close(self) -> None:
        """Nothing to let go of."""


def _answer(record: ProviderRecord, status: str | None = None) -> GatewayResult:
    """What the provider says of the record: as it stands now, or with the status it first answered."""
    status = status or record.status
    secret = f"{record.reference}_secret" if record.kind == "charge" and status != "failed" else None
    reason = record.failure_reason if status in ("failed", "cancelled") else None
    return GatewayResult(status, record.reference, failure_reason=reason, client_secret=secret)


class SimulatedGateway:
    """A provider that answers at once: succeeds, unless told to decline or to wait for the payer.

    Attributes:
        psp_account: money at this provider is booked to `assets:psp:simulated`.
        fee_basis_points, fee_fixed: the processing fee it withholds from each
            succeeded charge (none by default).
    """

    def __init__(
        self,
        books: Books | None = None,
        *,
        psp_account: str = PSP_ACCOUNT,
        fee_basis_points: int = 0,
        fee_fixed: int = 0,
    ) -> None:
        self._books: Books = books if books is not None else MemoryBooks()
        self.psp_account = psp_account
        self.fee_basis_points = fee_basis_points
        self.fee_fixed = fee_fixed
        self._declines: list[str] = []
        self._requires_action = 0
        self._outages: list[str] = []  # UNAVAILABLE or ANSWER_LOST, for the next calls in turn

    # --- the tester's levers ----------------------------------------------------------

    def decline_next(self, reason: str = "card_declined") -> None:
        self._declines.append(reason)

    def require_action_next(self) -> None:
        self._requires_action += 1

    def unavailable_next(self) -> None:
        """The next charge, refund or payout times out before the provider does anything."""
        self._outages.append(UNAVAILABLE)

    def lose_answer_next(self) -> None:
        """The next charge, refund or payout that does something new is done, and its
        answer lost: the caller sees a timeout."""
        self._outages.append(ANSWER_LOST)

    @property
    def outages_armed(self) -> int:
        """Outages asked for and not yet met by a call."""
        return len(self._outages)

    def clear_outages(self) -> None:
        """Withdraw the outages no call has met (the request meant to meet them was refused)."""
        self._outages.clear()

    def _reach(self) -> None:
        """A call reaches the provider: unless it is down for this one."""
        if self._outages and self._outages[0] == UNAVAILABLE:
            self._outages.pop(0)
            raise GatewayUnavailable("the provider did not answer in time (simulated outage)")

    def _answered(self, created: bool) -> None:
        """The provider did the work; its answer is lost if that was asked for (never a replay's)."""
        if created and self._outages and self._outages[0] == ANSWER_LOST:
            self._outages.pop(0)
            raise GatewayUnavailable("the provider's answer was lost (simulated outage)")

    @property
    def calls(self) -> dict[str, GatewayResult]:
        """Each idempotency key the provider has answered, with its first answer, oldest first."""
        return {
            r.idempotency_key: _answer(r, r.answered)
            for r in self._books.atomically(lambda view: view.records())
            if r.idempotency_key is not None
        }

    def records(self) -> list[ProviderRecord]:
        """The provider's books: every object it holds, oldest first."""
        return self._books.atomically(lambda view: view.records())

    def movements(self) -> list[ProviderMovement]:
        """The money the provider moved on our balance with it, oldest first."""
        return movements(self.records())

    def _fee(self, amount: int) -> int:
        return min(amount, amount * self.fee_basis_points // 10_000 + self.fee_fixed)

    @staticmethod
    def _replay(view: BookView, key: str, kind: str, amount: int, currency: str) -> ProviderRecord | None:
        found = view.by_key(key)
        if found is not None and (found.kind, found.amount, found.currency) != (kind, amount, currency):
            raise InvalidRequest(
                f"idempotency key {key!r} was used for a {found.kind} of {found.amount} {found.currency}",
                field="idempotency_key",
            )
        return found

    @staticmethod
    def _positive(amount: int) -> None:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidRequest(f"amount must be a positive integer of minor units, not {amount!r}", field="amount")

    # --- money in ---------------------------------------------------------------------

    def charge(
        self,
        *,
        amount: int,
        currency: str,
        idempotency_key: str,
        customer: str,
        metadata: Mapping[str, str],
        payment_method: str | None = None,
        off_session: bool = False,
    ) -> GatewayResult:
        self._positive(amount)
        self._reach()

        def work(view: BookView) -> tuple[ProviderRecord, bool]:
            found = self._replay(view, idempotency_key, "charge", amount, currency)
            if found is not None:
                return found, False
            status, reason, fee = "succeeded", None, self._fee(amount)
            if self._declines:
                status, reason, fee = "failed", self._declines[0], 0
            elif self._requires_action:
                status, fee = "requires_action", 0
            record = view.add(
                kind="charge",
                idempotency_key=idempotency_key,
                amount=amount,
                currency=currency,
                status=status,
                answered=status,
                fee=fee,
                failure_reason=reason,
                party=customer,
                order_id=metadata.get("order"),
                metadata=metadata,
            )
            return record, True

        record, created = self._books.atomically(work)
        if created:
            self._used(record)
        self._answered(created)
        return _answer(record, record.answered)

    def _used(self, record: ProviderRecord) -> None:
        """A lever is used up by the new call it applied to, never by a replay."""
        if record.answered == "failed" and self._declines:
            self._declines.pop(0)
        elif record.answered == "requires_action" and self._requires_action:
            self._requires_action -= 1

    def complete_action(self, reference: str, *, succeed: bool) -> GatewayResult:
        """The payer finishes (or fails) 3-D Secure for a charge that waits for them."""

        def work(view: BookView) -> ProviderRecord:
            charge = self._charge(view, reference, lock=True)
            if charge.status == "requires_action":
                if succeed:
                    return view.update(charge, status="succeeded", fee=self._fee(charge.amount))
                return view.update(charge, status="failed", failure_reason="authentication_failed")
            if charge.status == ("succeeded" if succeed else "failed"):
                return charge
            raise InvalidRequest(f"charge {reference} is {charge.status}: it waits for no one", field="charge")

        return _answer(self._books.atomically(work))

    def cancel_charge(self, *, reference: str, idempotency_key: str) -> GatewayResult:
        """Cancel a charge still waiting for the payer; a succeeded one cannot be (its result comes back)."""

        def work(view: BookView) -> ProviderRecord:
            charge = self._charge(view, reference, lock=True)
            if charge.status == "requires_action":
                return view.update(charge, status="cancelled", failure_reason="cancelled")
            return charge

        return _answer(self._books.atomically(work))

    def retrieve_charge(self, reference: str) -> tuple[GatewayResult, Mapping[str, str]]:
        """The charge as the provider has it now, and its metadata."""
        charge = self._books.atomically(lambda view: self._charge(view, reference, missing=UnknownProviderObject))
        return _answer(charge), dict(charge.metadata)

    def processing_fee(self, reference: str) -> tuple[int, str] | None:
        """The fee withheld from a succeeded charge: (fee, currency); None if none."""
        charge = self._books.atomically(lambda view: self._charge(view, reference, missing=UnknownProviderObject))
        return (charge.fee, charge.currency) if charge.status == "succeeded" and charge.fee else None

    @staticmethod
    def _charge(
        view: BookView, reference: str | None, *, lock: bool = False, missing: type[Exception] = InvalidRequest
    ) -> ProviderRecord:
        charge = view.get(reference, lock=lock) if reference else None
        if charge is None or charge.kind != "charge":
            message = f"no such charge: {reference!r}"
            if missing is UnknownProviderObject:
                raise UnknownProviderObject(message, reference=reference)
            raise InvalidRequest(message, field="charge")
        return charge

    # --- money out --------------------------------------------------------------------

    def refund(
        self,
        *,
        amount: int,
        currency: str,
        idempotency_key: str,
        charge_reference: str | None,
        metadata: Mapping[str, str] | None = None,
    ) -> GatewayResult:
        """Refund (part of) the named charge; refused (InvalidRequest, as a 400) for an unknown
        charge, one that has not succeeded, or more than is left unrefunded of it. The refund
        is found by `metadata["order"]` (the key when none is given)."""
        self._positive(amount)
        self._reach()
        order_id = (metadata or {}).get("order") or idempotency_key

        def work(view: BookView) -> tuple[ProviderRecord, bool]:
            found = self._replay(view, idempotency_key, "refund", amount, currency)
            if found is not None:
                return found, False
            charge = self._charge(view, charge_reference, lock=True)
            if charge.status != "succeeded":
                raise InvalidRequest(
                    f"charge {charge.reference} is {charge.status}: only a succeeded charge can be refunded",
                    field="charge",
                )
            if charge.currency != currency:
                raise InvalidRequest(
                    f"charge {charge.reference} is in {charge.currency}, not {currency}", field="currency"
                )
            left = charge.amount - view.refunded(charge.reference)
            if amount > left:
                raise InvalidRequest(
                    f"refund of {amount} is more than the {left} left unrefunded of charge {charge.reference}",
                    field="amount",
                )
            record = view.add(
                kind="refund",
                idempotency_key=idempotency_key,
                amount=amount,
                currency=currency,
                status="succeeded",
                answered="succeeded",
                charge_reference=charge.reference,
                order_id=order_id,
                metadata={"order": order_id},
            )
            return record, True

        refund, created = self._books.atomically(work)
        self._answered(created)
        return _answer(refund, refund.answered)

    def retrieve_refund(self, reference: str) -> tuple[GatewayResult, Mapping[str, str]]:
        """A refund as the provider has it now, and its metadata."""
        refund = self._books.atomically(lambda view: view.get(reference))
        if refund is None or refund.kind != "refund":
            raise UnknownProviderObject(f"no such refund: {reference!r}", reference=reference)
        return _answer(refund), dict(refund.metadata)

    def payout(
        self, *, amount: int, currency: str, idempotency_key: str, destination: str, metadata: Mapping[str, str]
    ) -> GatewayResult:
        """A transfer to the destination account: paid at once, unless told to decline."""
        self._positive(amount)
        self._reach()

        def work(view: BookView) -> tuple[ProviderRecord, bool]:
            found = self._replay(view, idempotency_key, "transfer", amount, currency)
            if found is not None:
                return found, False
            status, reason = ("failed", self._declines[0]) if self._declines else ("succeeded", None)
            record = view.add(
                kind="transfer",
                idempotency_key=idempotency_key,
                amount=amount,
                currency=currency,
                status=status,
                answered=status,
                failure_reason=reason,
                party=destination,
                order_id=metadata.get("order"),
                metadata=metadata,
            )
            return record, True

        record, created = self._books.atomically(work)
        if created:
            self._used(record)
        self._answered(created)
        return _answer(record, record.answered)

    def find(self, kind: str, order_id: str) -> GatewayResult | None:
        """The first object of `kind` ("charge", "refund" or "transfer") whose metadata names
        `order_id` as its order, as it stands now; for re-sends after a key was forgotten."""
        if kind not in KINDS or kind == "dispute":
            raise InvalidRequest(f"kind is charge, refund or transfer, not {kind!r}", field="kind")
        found = self._books.atomically(lambda view: view.find(kind, order_id))
        return None if found is None else _answer(found)

    # --- the client's bank --------------------------------------------------------------

    def open_dispute(self, charge_reference: str, *, amount: int | None = None, fee: int = 0) -> DisputeReport:
        """The client's bank disputes (part of) a succeeded charge: the provider withdraws it (and its fee)."""

        def work(view: BookView) -> ProviderRecord:
            charge = self._charge(view, charge_reference, lock=True)
            if charge.status != "succeeded":
                raise InvalidRequest(
                    f"charge {charge_reference} is {charge.status}: nothing to dispute", field="charge"
                )
            return view.add(
                kind="dispute",
                idempotency_key=None,
                amount=charge.amount if amount is None else amount,
                currency=charge.currency,
                status="needs_response",
                answered="needs_response",
                fee=fee,
                charge_reference=charge.reference,
            )

        return _dispute_report(self._books.atomically(work))

    def close_dispute(self, reference: str, *, won: bool) -> DisputeReport:
        """The bank decides: won gives the withdrawn money back (the fee is kept), lost keeps it."""

        def work(view: BookView) -> ProviderRecord:
            dispute = self._dispute(view, reference)
            if dispute.status != "needs_response":
                return dispute
            if won:
                return view.update(dispute, status="won", reinstated=dispute.amount)
            return view.update(dispute, status="lost")

        return _dispute_report(self._books.atomically(work))

    def retrieve_dispute(self, reference: str) -> DisputeReport:
        return _dispute_report(self._books.atomically(lambda view: self._dispute(view, reference)))

    @staticmethod
    def _dispute(view: BookView, reference: str) -> ProviderRecord:
        dispute = view.get(reference)
        if dispute is None or dispute.kind != "dispute":
            raise UnknownProviderObject(f"no such dispute: {reference!r}", reference=reference)
        return dispute

    def close(self) -> None:
        """Let go of the database connections the books hold."""
        self._books.close()


def _dispute_report(dispute: ProviderRecord) -> DisputeReport:
    moves = [BalanceMove(f"txn_{dispute.reference}_withdrawal", -dispute.amount, dispute.fee, dispute.currency)]
    if dispute.reinstated:
        moves.append(BalanceMove(f"txn_{dispute.reference}_reinstatement", dispute.reinstated, 0, dispute.currency))
    return DisputeReport(
        id=dispute.reference,
        charge_reference=dispute.charge_reference or "",
        amount=dispute.amount,
        currency=dispute.currency,
        status=dispute.status,
        balance_moves=tuple(moves),
    )
