"""The dispatcher: sends due payment orders to the provider and books the answers.

One order at a time: lease it (a short transaction), mark it sent, call the
provider outside any transaction, then apply the answer in a transaction of its
own (`ledger.escrow.order_results`), idempotently: a result applied twice, or
applied by a webhook first, changes nothing the second time.

- A provider that is unavailable (or a timeout) puts the order back with a
  backoff; after `MAX_ATTEMPTS` sends it is given up as failed and stays visible.
- A refusal by the provider (it will not do this) is applied as a failure, with
  the provider's reason.
- The provider forgets idempotency keys 24 hours after the first send: within
  `RESEND_WINDOW` an order is re-sent with its key; after that (and for an
  operator's retry) the provider is searched for the object by our order id
  first, and an order the provider cannot be searched for waits for an operator.
- Nothing that goes wrong with one order stops the others.

`ledger tick` and `ledger worker` run it over every due order; a request runs it
over the orders it wrote itself (and those their answers write), so the
frontend gets an immediate answer when the provider is fast.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ledger.errors import InvalidRequest, LedgerError, NotFound
from ledger.escrow.order_results import apply_processing_fee, apply_result, expire_waiting_charge, give_up
from ledger.escrow.orders import (
    ACTION_TIMEOUT,
    LEASE,
    LOOKUP_LIMIT,
    MAX_ATTEMPTS,
    RESEND_WINDOW,
    OrderKind,
    OrderState,
    PaymentOrder,
    backoff,
)
from ledger.gateway import (
    ChargeCancellation,
    ChargeRetrieval,
    GatewayResult,
    GatewayUnavailable,
    ObjectLookup,
    PaymentGateway,
    ProcessingFees,
    RefundRetrieval,
    TransferRetrieval,
)
from ledger.ports.unit_of_work import UnitOfWork
from ledger.service import Ledger

log = logging.getLogger("ledger.dispatcher")

BATCH = 100


def dispatcher_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class DispatchReport:
    """What one dispatch did, by order state after it."""

    sent: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def merged(self, other: DispatchReport) -> DispatchReport:
        outcomes = dict(self.outcomes)
        for outcome, n in other.outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
        return DispatchReport(self.sent + other.sent, outcomes, self.errors + other.errors)

    def summary(self) -> str:
        if not self.sent:
            return "no payment orders due"
        parts = ", ".join(f"{n} {state}" for state, n in sorted(self.outcomes.items()))
        return f"{self.sent} payment orders sent ({parts})"


class Dispatcher:
    """Sends payment orders through one gateway.

    Attributes:
        book: the ledger; gateway: the provider; owner: the lease holder's name.
    """

    def __init__(self, book: Ledger, gateway: PaymentGateway, *, owner: str | None = None) -> None:
        self.book = book
        self.gateway = gateway
        self.owner = owner or dispatcher_name()

    # --- what to send -------------------------------------------------------------------

    def run(self, ids: Iterable[str] | None = None, *, limit: int = 10_000) -> DispatchReport:
        """Send the due orders (all of them, or only `ids` and the orders their answers write)."""
        report = DispatchReport()
        wanted = None if ids is None else list(ids)
        while report.sent < limit:
            claimed = self.book.transaction(functools.partial(self._claim, self.book.clock.now(), wanted))
            if not claimed:
                break
            spawned: list[str] = []
            for order in claimed:
                report.sent += 1
                try:
                    spawned.extend(self._send(order, report))
                except Exception as error:
                    # An answer that cannot be booked for an unforeseen reason (a bug, the
                    # database lost): the order keeps its lease and is taken over when it
                    # expires, as a crashed sender's would be; the other orders go on.
                    log.exception("payment order %s could not be completed; it waits for its lease", order.id)
                    report.errors.append(f"{order.id}: {type(error).__name__}: {error}")
                    report.count("error")
            if wanted is not None:
                wanted = spawned  # only what this request's own orders led to
        return report

    def _claim(self, now: datetime, wanted: list[str] | None, uow: UnitOfWork) -> list[PaymentOrder]:
        return uow.orders.claim(owner=self.owner, now=now, lease_until=now + LEASE, ids=wanted, limit=BATCH)

    def expire_waiting(self) -> int:
        """Cancel charges the payer has not completed within 24 hours (3-D Secure abandoned)."""
        cutoff = self.book.clock.now() - ACTION_TIMEOUT
        waiting = self.book.transaction(lambda uow: uow.orders.waiting_for_payer(cutoff), read_only=True)
        expired = 0
        for order in waiting:
            try:
                expired += self.book.transaction(
                    functools.partial(
                        expire_waiting_charge,
                        order_id=order.id,
                        can_cancel=isinstance(self.gateway, ChargeCancellation),
                    )
                )
            except LedgerError as error:
                log.warning("payment order %s could not be expired: %s", order.id, error)
        return expired

    # --- one order ------------------------------------------------------------------------

    def _send(self, order: PaymentOrder, report: DispatchReport) -> list[str]:
        if order.kind is OrderKind.PROCESSING_FEE:
            return self._processing_fee(order, report)
        try:
            result = self._call(order)
        except GatewayUnavailable as error:
            return self._later(order, f"provider unavailable: {error}", report)
        except (InvalidRequest, NotFound) as refused:
            result = GatewayResult("failed", order.provider_reference or "", failure_reason=str(refused))
        except LedgerError as error:
            return self._later(order, f"{type(error).__name__}: {error}", report)
        except Exception as error:
            log.exception("payment order %s: unexpected error from the provider", order.id)
            return self._later(order, f"{type(error).__name__}: {error}", report)
        if result is None:
            return self._later(
                order, "waiting for an operator: the provider cannot be searched for it", report, park=True
            )
        try:
            state, written = self.book.transaction(
                lambda uow: apply_result(uow, order.id, result, psp_account=self.gateway.psp_account, fees=self._fees)
            )
        except LedgerError as error:
            log.warning("payment order %s: the answer could not be booked yet: %s", order.id, error)
            return self._later(order, f"booking refused: {error}", report)
        report.count(state)
        return written

    def _processing_fee(self, order: PaymentOrder, report: DispatchReport) -> list[str]:
        """Ask what the provider kept of a payment and book it (nothing when it keeps nothing)."""
        gateway = self.gateway
        try:
            found = (
                gateway.processing_fee(order.target_reference or "") if isinstance(gateway, ProcessingFees) else None
            )
        except GatewayUnavailable as error:
            return self._later(order, f"provider unavailable: {error}", report)
        except (InvalidRequest, NotFound) as refused:
            found = None
            log.warning("payment order %s: no processing fee: %s", order.id, refused)
        state = self.book.transaction(
            lambda uow: apply_processing_fee(uow, order.id, found, psp_account=gateway.psp_account)
        )
        report.count(state)
        return []

    @property
    def _fees(self) -> bool:
        return isinstance(self.gateway, ProcessingFees)

    def _later(self, order: PaymentOrder, reason: str, report: DispatchReport, *, park: bool = False) -> list[str]:
        attempts = order.attempts + 1
        now = self.book.clock.now()
        report.errors.append(f"{order.id}: {reason}")
        if attempts >= MAX_ATTEMPTS and not park:
            state, written = self.book.transaction(lambda uow: give_up(uow, order.id, reason=reason))
            report.count(state)
            return written
        wait = timedelta(days=1) if park else backoff(attempts)
        self.book.transaction(
            lambda uow: uow.orders.retry_later(order.id, attempts=attempts, at=now + wait, reason=reason)
        )
        report.count("retry")
        return []

    def _call(self, order: PaymentOrder) -> GatewayResult | None:
        """Ask the provider; None when it cannot be asked safely (an operator decides)."""
        gateway = self.gateway
        if order.provider_reference and order.state is OrderState.SENT:
            status = self._status(order)
            if status is not None:
                return status
        now = self.book.clock.now()
        forgotten = order.first_sent_at is not None and now - order.first_sent_at > RESEND_WINDOW
        if order.first_sent_at is not None and now - order.first_sent_at > LOOKUP_LIMIT:
            return None  # beyond what the provider can be searched for: an operator decides
        if forgotten or order.details.get("lookup_first"):
            # The provider has forgotten the key (or an operator retries): look for the
            # object by our order id before sending again.
            if isinstance(gateway, ObjectLookup):
                found = gateway.find(_lookup_kind(order.kind), order.id)
                if found is not None:
                    return found
            elif forgotten:
                return None
        first = order.first_sent_at or now
        self.book.transaction(lambda uow: uow.orders.mark_sent(order.id, first_sent_at=first))
        details = order.details
        if order.kind in (OrderKind.FUND, OrderKind.BONUS):
            metadata = {key: details[key] for key in ("contract", "milestone", "funding_key") if key in details}
            if order.kind is OrderKind.BONUS:
                metadata["bonus"] = "true"
            return gateway.charge(
                amount=order.amount,
                currency=order.currency,
                idempotency_key=order.provider_key,
                customer=self._provider_id(details.get("party", "")),
                metadata={**metadata, "order": order.id},
                payment_method=details.get("payment_method") or None,
                off_session=details.get("off_session") == "true",
            )
        if order.kind is OrderKind.REFUND:
            return gateway.refund(
                amount=order.amount,
                currency=order.currency,
                idempotency_key=order.provider_key,
                charge_reference=order.target_reference,
                metadata={"order": order.id},
            )
        if order.kind is OrderKind.PAYOUT:
            return gateway.payout(
                amount=order.amount,
                currency=order.currency,
                idempotency_key=order.provider_key,
                destination=self._provider_id(details.get("party", "")),
                metadata={"payout": order.payout_id or "", "order": order.id},
            )
        if order.kind is OrderKind.CANCEL:
            if not isinstance(gateway, ChargeCancellation) or not order.target_reference:
                return GatewayResult("cancelled", order.target_reference or "")
            return gateway.cancel_charge(reference=order.target_reference, idempotency_key=order.provider_key)
        raise AssertionError(f"unknown order kind {order.kind}")  # pragma: no cover

    def _status(self, order: PaymentOrder) -> GatewayResult | None:
        """How an order the provider acknowledged stands now, where the provider can say."""
        gateway, reference = self.gateway, order.provider_reference or ""
        if order.kind is OrderKind.REFUND and isinstance(gateway, RefundRetrieval):
            return gateway.retrieve_refund(reference)[0]
        if order.kind in (OrderKind.FUND, OrderKind.BONUS) and isinstance(gateway, ChargeRetrieval):
            return gateway.retrieve_charge(reference)[0]
        if order.kind is OrderKind.PAYOUT and isinstance(gateway, TransferRetrieval):
            reversed_amount, _ = gateway.retrieve_transfer(reference)
            if reversed_amount:
                return None  # a reversal: the provider's webhook books it
            return GatewayResult("succeeded", reference)
        return None

    def _provider_id(self, party: str) -> str:
        record = self.book.transaction(lambda uow: uow.documents.party(party), read_only=True) if party else None
        return (record.provider_id if record else None) or party


def _lookup_kind(kind: OrderKind) -> str:
    return {OrderKind.REFUND: "refund", OrderKind.PAYOUT: "transfer"}.get(kind, "charge")
