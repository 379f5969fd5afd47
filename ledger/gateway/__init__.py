"""The payment gateway interface: how money enters and leaves through the provider.

Escrow calls a `PaymentGateway` outside its database transactions (a network call
must not be repeated by a transaction retry), with an idempotency key, so a
repeated call is answered from the provider's memory instead of charging twice.
Implementations: `simulated` (`simulated.py`: answers at once and keeps its own
books, as a provider would; development and tests) and `stripe`
(`stripe_gateway.py`, the only importer of the stripe SDK). The gateway is chosen
by LEDGER_GATEWAY; there is no default, so a lost setting can never mark
milestones funded without money.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from ledger.errors import ConfigurationError, Conflict, LedgerError, NotFound


class GatewayNotConfigured(ConfigurationError):
    """No payment gateway is configured (LEDGER_GATEWAY); money cannot be taken in."""

    code = "gateway-not-configured"


class GatewayUnavailable(LedgerError):
    """The payment provider could not be reached or failed; nothing was recorded, retry later."""

    code = "gateway-unavailable"


class UnknownProviderObject(NotFound):
    """The payment provider has no object with this id."""

    code = "unknown-provider-object"


class PaymentFailed(Conflict):
    """The payment provider declined or failed the payment."""

    code = "payment-failed"


@dataclass(frozen=True)
class GatewayResult:
    """What the provider said of a charge, refund or payout.

    Attributes:
        status: "succeeded", "requires_action" (the customer must act; wait for a
            webhook), "failed", or "cancelled" (a charge withdrawn before it took effect).
        reference: the provider's id of the object.
        failure_reason: why it failed, in the provider's words.
        client_secret: for the frontend to complete a customer action.
        final: False when the provider may still change its answer (a PaymentIntent that
            failed authentication waits for another payment method: it can still succeed).
    """

    status: str
    reference: str
    failure_reason: str | None = None
    client_secret: str | None = None
    final: bool = True

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass(frozen=True)
class ProviderObject:
    """A payment, refund or transfer as the provider lists it, for reconciliation.

    Attributes:
        kind: "payment", "refund" or "transfer"; amount: minor units.
    """

    kind: str
    id: str
    amount: int
    currency: str
    created: datetime


#: Dispute statuses after which nothing more happens to it.
DISPUTE_CLOSED = frozenset({"won", "lost", "warning_closed"})


@dataclass(frozen=True)
class BalanceMove:
    """One movement of our balance at the provider for a dispute.

    Attributes:
        id: the provider's balance transaction id (each is booked once).
        amount: signed minor units: negative when the provider withdrew the
            disputed money, positive when it reinstated it.
        fee: signed minor units: the dispute fee charged (positive) or returned (negative).
    """

    id: str
    amount: int
    fee: int
    currency: str


@dataclass(frozen=True)
class DisputeReport:
    """A chargeback as the provider has it now.

    Attributes:
        id: the provider's dispute id; charge_reference: the disputed payment (PaymentIntent).
        amount: disputed, minor units; status: e.g. needs_response, under_review, won, lost.
        balance_moves: every withdrawal and reinstatement so far, oldest first.
    """

    id: str
    charge_reference: str
    amount: int
    currency: str
    status: str
    balance_moves: tuple[BalanceMove, ...] = ()

    @property
    def closed(self) -> bool:
        return self.status in DISPUTE_CLOSED


@dataclass(frozen=True)
class ProviderEvent:
    """A verified webhook event: which object it is about, not what the event says of it.

    Attributes:
        id: the provider's event id (each event is acted on once).
        type: the provider's event type, e.g. `payment_intent.succeeded`.
        object_id: the id of the object the event is about, if it names one.
    """

    id: str
    type: str
    object_id: str | None


@dataclass(frozen=True)
class ChargeReport:
    """A payment as the provider has it now, and the milestone funding its metadata names.

    Attributes:
        result: the payment's state; its reference is the provider's payment id.
        milestone_id, funding_key: the funding attempt the payment is for; None when the
            payment is not a milestone funding of ours.
    """

    result: GatewayResult
    milestone_id: str | None = None
    funding_key: str | None = None


@dataclass(frozen=True)
class TransferReport:
    """A payout's transfer as the provider has it now.

    Attributes:
        reference: the provider's transfer id.
        amount_reversed: minor units reversed so far, in all (0 if none).
        payout_id: the payout the transfer's metadata names; None when it is not one of ours.
    """

    reference: str
    amount_reversed: int
    payout_id: str | None = None


@dataclass(frozen=True)
class RefundReport:
    """A refund as the provider has it now.

    Attributes:
        result: succeeded, failed, or still pending ("requires_action"); its reference is
            the provider's refund id.
        refund_order: the refund order its metadata names; None when it is not one of ours.
    """

    result: GatewayResult
    refund_order: str | None = None


@dataclass(frozen=True)
class ChargebackReport:
    """A chargeback as the provider has it now, and the payment it disputes.

    Attributes:
        dispute: the chargeback.
        charge: the disputed payment as the provider has it now; None when the dispute
            names no payment.
    """

    dispute: DisputeReport
    charge: ChargeReport | None


#: What a provider event is about, as the provider has it now.
ProviderReport = ChargeReport | TransferReport | RefundReport | ChargebackReport


class PaymentGateway(Protocol):
    """A payment provider, as escrow needs it."""

    #: the asset account where money at this provider is booked
    psp_account: str

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
    ) -> GatewayResult: ...

    def refund(
        self,
        *,
        amount: int,
        currency: str,
        idempotency_key: str,
        charge_reference: str | None,
        metadata: Mapping[str, str] | None = None,
    ) -> GatewayResult: ...

    def payout(
        self, *, amount: int, currency: str, idempotency_key: str, destination: str, metadata: Mapping[str, str]
    ) -> GatewayResult: ...


@runtime_checkable
class ChargeRetrieval(Protocol):
    """A provider that can say how a charge stands now (and its metadata)."""

    def retrieve_charge(self, reference: str) -> tuple[GatewayResult, Mapping[str, str]]: ...


@runtime_checkable
class ChargeCancellation(Protocol):
    """A provider that can cancel a charge still waiting for the payer.

    Answers "cancelled", or the charge's own result when it can no longer be
    cancelled (it succeeded meanwhile)."""

    def cancel_charge(self, *, reference: str, idempotency_key: str) -> GatewayResult: ...


@runtime_checkable
class RefundRetrieval(Protocol):
    """A provider that can say how a refund stands now (and its metadata)."""

    def retrieve_refund(self, reference: str) -> tuple[GatewayResult, Mapping[str, str]]: ...


@runtime_checkable
class TransferRetrieval(Protocol):
    """A provider that can say how much of a transfer it has reversed (and its metadata)."""

    def retrieve_transfer(self, reference: str) -> tuple[int, Mapping[str, str]]: ...


@runtime_checkable
class ProcessingFees(Protocol):
    """A provider that reports what it kept of a payment: (fee, currency), or None."""

    def processing_fee(self, reference: str) -> tuple[int, str] | None: ...


@runtime_checkable
class ObjectLookup(Protocol):
    """A provider that can find an object by our payment order id in its metadata
    (`metadata["order"]`): kind is "charge", "refund" or "transfer"."""

    def find(self, kind: str, order_id: str) -> GatewayResult | None: ...


@runtime_checkable
class ObjectListing(Protocol):
    """A provider that can list its payments, refunds, transfers and disputes of a period,
    for reconciliation."""

    def list_objects(self, since: datetime, until: datetime) -> list[ProviderObject]: ...


@runtime_checkable
class EventReports(Protocol):
    """A provider that reports on its webhook events: the object an event is about,
    retrieved as the provider has it now (the event's own copy is never trusted, so
    events arriving out of order change nothing); None for an event escrow does not act on."""

    def report(self, event: ProviderEvent) -> ProviderReport | None: ...


__all__ = [
    "DISPUTE_CLOSED",
    "BalanceMove",
    "ChargeCancellation",
    "ChargeReport",
    "ChargeRetrieval",
    "ChargebackReport",
    "DisputeReport",
    "EventReports",
    "GatewayNotConfigured",
    "GatewayResult",
    "GatewayUnavailable",
    "ObjectListing",
    "ObjectLookup",
    "PaymentFailed",
    "PaymentGateway",
    "ProcessingFees",
    "ProviderEvent",
    "ProviderObject",
    "ProviderReport",
    "RefundReport",
    "RefundRetrieval",
    "TransferReport",
    "TransferRetrieval",
    "UnknownProviderObject",
]
