"""The Stripe payment gateway: the only module that imports `stripe`.

Every call that creates something passes a deterministic idempotency key made from
our own ids (the SDK's default is a random key per call, which would let a retried
job charge twice); network errors and 5xx answers are retried by the SDK with
backoff, with the same key. A call that still fails raises `GatewayUnavailable`
and leaves the ledger unchanged, so the operation can be retried.

Funding is a PaymentIntent for the client's Stripe customer and the payment method
the frontend passes, confirmed and captured at once (a card hold would lapse after
7 days, shorter than the 14-day review). Payouts are Connect transfers to the
freelancer's connected account; they stay in transit until Stripe confirms them.
A webhook event is reported (`report`) by what the `retrieve_*` methods say of its
object now, never by the event's copy, so events arriving out of order change nothing;
escrow acts on the report.

Stripe forgets an idempotency key after 24 hours, so an order re-sent later is first
looked up by our order id in the objects' metadata (`find`): PaymentIntents through
Stripe's Search API, refunds and transfers (which have no search) by listing the
recent ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import stripe

from ledger.clock import Clock, SystemClock
from ledger.errors import ConfigurationError, InvalidRequest
from ledger.gateway import (
    BalanceMove,
    ChargebackReport,
    ChargeReport,
    DisputeReport,
    GatewayResult,
    GatewayUnavailable,
    ProviderEvent,
    ProviderObject,
    ProviderReport,
    RefundReport,
    TransferReport,
    UnknownProviderObject,
)

PSP_ACCOUNT = "assets:psp:stripe"
PENDING = {"requires_action", "requires_confirmation", "processing", "requires_capture"}
#: How far back `find` lists refunds and transfers (they have no search): an order is looked
#: up 23 hours after its first send, or when an operator retries it.
LOOKUP_WINDOW = timedelta(days=7)
#: The refund events acted on (`charge.refund.updated` is the older name of `refund.updated`).
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"})
#: At most this many listed objects are read by one `find`; past it the answer would be a
#: guess, so the lookup fails (the order waits) rather than answering "not there".
LOOKUP_LIMIT = 5_000


def _plain(obj: Any) -> dict[str, Any]:
    """A Stripe object as a plain dict."""
    return dict(obj.to_dict()) if hasattr(obj, "to_dict") else dict(obj)


def _result(obj: Any) -> GatewayResult:
    intent = _plain(obj)
    status = intent["status"]
    if status == "succeeded":
        return GatewayResult("succeeded", intent["id"], client_secret=intent.get("client_secret"))
    if status in PENDING:
        return GatewayResult("requires_action", intent["id"], client_secret=intent.get("client_secret"))
    error = intent.get("last_payment_error") or {}
    reason = error.get("message") or error.get("code") or status
    if status == "requires_payment_method" and error:
        # A confirmation failed (3-D Secure not completed): Stripe keeps the PaymentIntent
        # open for another payment method, and the payer, who holds its client secret, can
        # still complete it. Not final: a new attempt cancels it first. (A decline answered
        # to our own creating call is judged in `charge`.)
        client_secret = intent.get("client_secret")
        return GatewayResult("failed", intent["id"], failure_reason=reason, client_secret=client_secret, final=False)
    return GatewayResult("failed", intent["id"], failure_reason=reason)


def _cancel_result(intent: dict[str, Any]) -> GatewayResult:
    """A PaymentIntent after a cancellation: "cancelled", or its own result when it succeeded."""
    if intent["status"] == "canceled":
        return GatewayResult("cancelled", str(intent["id"]))
    result = _result(intent)
    if result.succeeded:
        return result
    # Stripe refused to cancel a PaymentIntent that has not finished (it is processing):
    # nothing is decided yet, so the cancellation is asked again later.
    raise GatewayUnavailable(f"Stripe cannot cancel {intent['id']} while it is {intent['status']}; retry later")


def _search_value(value: str) -> str:
    """A value quoted for Stripe's search query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _refund_result(refund: dict[str, Any]) -> GatewayResult:
    """A Stripe refund: succeeded, failed (failed or canceled), or still pending ("requires_action")."""
    status = refund["status"]
    outcome = (
        "succeeded" if status == "succeeded" else "failed" if status in ("failed", "canceled") else "requires_action"
    )
    return GatewayResult(outcome, str(refund["id"]), failure_reason=refund.get("failure_reason"))


class StripeGateway:
    """Stripe through the official SDK.

    Attributes:
        psp_account: money at Stripe is booked to `assets:psp:stripe`.
        client: the SDK client (its API base can point at a local stand-in in tests).
    """

    psp_account = PSP_ACCOUNT

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        max_network_retries: int = 3,
        timeout: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        if not api_key:
            raise ConfigurationError("LEDGER_GATEWAY=stripe needs STRIPE_API_KEY")
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            # A timed-out call is retried like a network error, with the same idempotency key.
            http_client=stripe.RequestsClient(timeout=timeout),
        )
        #: PaymentIntents carry a transfer group per contract where the server accepts one.
        self.transfer_groups = True
        #: Stripe's time, for how far back `find` lists (Stripe stamps objects with it).
        self.clock: Clock = clock or SystemClock()

    def _read(self, method: Any, reference: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Retrieve an object as Stripe has it now."""
        try:
            return _plain(method(reference, params=params) if params else method(reference))
        except stripe.InvalidRequestError as error:
            if error.http_status == 404:
                raise UnknownProviderObject(f"Stripe has no {reference}", reference=reference) from None
            raise GatewayUnavailable(f"Stripe refused to read {reference}: {error.user_message or error}") from None
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"Stripe is unavailable: {error.user_message or error}") from None

    def _call(self, method: Any, params: dict[str, Any], key: str | None) -> Any:
        try:
            return method(params=params, options={"idempotency_key": key} if key else None)
        except stripe.CardError as error:
            body = error.json_body if isinstance(error.json_body, dict) else {}
            raise _Declined(error.user_message or str(error), body) from None
        except stripe.InvalidRequestError as error:
            refusal = _UnexpectedState if error.code == "payment_intent_unexpected_state" else InvalidRequest
            raise refusal(f"Stripe refused the request: {error.user_message or error}", field=error.param) from None
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as error:
            raise GatewayUnavailable(f"Stripe is unavailable: {error.user_message or error}") from None
        except stripe.AuthenticationError:
            raise ConfigurationError("Stripe refused STRIPE_API_KEY") from None

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
        if not customer.startswith("cus_"):
            raise InvalidRequest(
                f"the client has no Stripe customer (got {customer!r}); set provider_id on their party record",
                field="provider_id",
            )
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer,
            "capture_method": "automatic",
            "metadata": dict(metadata),
        }
        if "contract" in metadata and self.transfer_groups:
            params["transfer_group"] = metadata["contract"]
        if off_session:
            # No payer is present (an hourly week's charge): Stripe charges the customer's
            # saved method at once, and fails rather than asking for the payer's action.
            payment_method = payment_method or self._default_payment_method(customer)
            if not payment_method:
                reason = f"customer {customer} has no default payment method to charge without the payer"
                return GatewayResult("failed", idempotency_key, failure_reason=reason)
            params["off_session"] = "true"
        if payment_method:
            params["payment_method"] = payment_method
            params["confirm"] = "true"
        try:
            intent = self._create_intent(params, idempotency_key)
        except _Declined as declined:
            # Stripe leaves a PaymentIntent declined at creation in requires_payment_method
            # (its last_payment_error says why), open for another payment method. It is still
            # final here: each funding attempt is a new PaymentIntent with its own key, we never
            # confirm this one again, and its client secret reaches nobody (a decline answers
            # none), so nobody can complete it; a declined bonus thus withdraws its approval at
            # once instead of holding the milestone for 24 hours. Should it succeed all the same,
            # the success of a failed attempt is booked and refunded. A failed 3-D Secure is
            # different: the payer holds the client secret and can still finish (see `_result`).
            intent_id = (declined.body.get("error") or {}).get("payment_intent", {}).get("id", idempotency_key)
            return GatewayResult("failed", intent_id, failure_reason=declined.reason)
        return _result(intent)

    def _default_payment_method(self, customer: str) -> str | None:
        """The customer's saved default payment method (`invoice_settings`), if any."""
        found = self._read(self.client.v1.customers.retrieve, customer)
        method = (found.get("invoice_settings") or {}).get("default_payment_method")
        if isinstance(method, dict):  # expanded
            method = method.get("id")
        return str(method) if method else None

    def _create_intent(self, params: dict[str, Any], key: str) -> Any:
        try:
            return self._call(self.client.v1.payment_intents.create, params, key)
        except InvalidRequest as refused:
            if "transfer_group" not in params or "transfer_group" not in f"{refused} {refused.data.get('field')}":
                raise
        # A server that refuses transfer groups (some Stripe-compatible servers do): the
        # refused request created nothing, so the same key is free for the call without it.
        self.transfer_groups = False
        return self._call(
            self.client.v1.payment_intents.create, {k: v for k, v in params.items() if k != "transfer_group"}, key
        )

    def cancel_charge(self, *, reference: str, idempotency_key: str) -> GatewayResult:
        """Cancel a PaymentIntent still waiting for the payer: "cancelled", or, when Stripe can
        no longer cancel it (400 payment_intent_unexpected_state: it succeeded meanwhile, or
        was cancelled already), the PaymentIntent's own result as Stripe has it now."""
        cancel = partial(self.client.v1.payment_intents.cancel, reference)
        try:
            intent = _plain(self._call(cancel, {}, idempotency_key))
        except _UnexpectedState:
            intent = self._read(self.client.v1.payment_intents.retrieve, reference)
        return _cancel_result(intent)

    def find(self, kind: str, order_id: str) -> GatewayResult | None:
        """The object of `kind` ("charge", "refund" or "transfer") that our payment order
        `order_id` made, found by its metadata as Stripe has it now; None when there is none.

        PaymentIntents are searched (`metadata['order']`); a succeeded one is preferred, as
        that is money taken. Refunds and transfers are listed, newest first, back to
        `LOOKUP_WINDOW`; a refund is ours by `metadata["order"]` or, for a refund sent with
        only its refund order's key, `metadata["refund_order"]`."""
        if kind == "charge":
            query = f"metadata['order']:{_search_value(order_id)}"
            search = partial(self.client.v1.payment_intents.search, params={"query": query, "limit": 100})
            found = sorted(self._scan(search), key=lambda i: int(i.get("created") or 0), reverse=True)
            best = next((i for i in found if i.get("status") == "succeeded"), found[0] if found else None)
            return None if best is None else _result(best)
        if kind == "refund":
            refund = self._recent(self.client.v1.refunds, order_id, ("order", "refund_order"))
            return None if refund is None else _refund_result(refund)
        if kind == "transfer":
            transfer = self._recent(self.client.v1.transfers, order_id, ("order",))
            # As `payout` answers: in transit until Stripe confirms it.
            return None if transfer is None else GatewayResult("requires_action", str(transfer["id"]))
        raise InvalidRequest(f"kind is charge, refund or transfer, not {kind!r}", field="kind")

    def _recent(self, service: Any, order_id: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        """The newest object listed since `LOOKUP_WINDOW` whose metadata names `order_id` under one of `keys`."""
        since = int((self.clock.now() - LOOKUP_WINDOW).timestamp())
        listing = partial(service.list, params={"created": {"gte": since}, "limit": 100})
        for item in self._scan(listing):
            metadata = item.get("metadata") or {}
            if any(metadata.get(key) == order_id for key in keys):
                return item
        return None

    def _scan(self, first_page: Callable[[], Any], *, limit: int = LOOKUP_LIMIT) -> Iterator[dict[str, Any]]:
        """Every object of a list or search, page after page; GatewayUnavailable past `limit`."""
        seen = 0
        try:
            for obj in first_page().auto_paging_iter():
                seen += 1
                if seen > limit:
                    raise GatewayUnavailable(f"more than {limit} objects to look through; an operator decides")
                yield _plain(obj)
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"Stripe is unavailable: {error.user_message or error}") from None

    def retrieve_charge(self, reference: str) -> tuple[GatewayResult, Mapping[str, str]]:
        """The PaymentIntent as Stripe has it now, and its metadata."""
        intent = self._read(self.client.v1.payment_intents.retrieve, reference)
        return _result(intent), dict(intent.get("metadata") or {})

    def retrieve_transfer(self, reference: str) -> tuple[int, Mapping[str, str]]:
        """How much of the transfer has been reversed (minor units, 0 if none), and its metadata."""
        transfer = self._read(self.client.v1.transfers.retrieve, reference)
        reversed_amount = int(transfer.get("amount_reversed") or 0)
        if transfer.get("reversed") and not reversed_amount:
            reversed_amount = int(transfer["amount"])
        return reversed_amount, dict(transfer.get("metadata") or {})

    def retrieve_refund(self, reference: str) -> tuple[GatewayResult, Mapping[str, str]]:
        """A refund as Stripe has it now, and its metadata."""
        refund = self._read(self.client.v1.refunds.retrieve, reference)
        return _refund_result(refund), dict(refund.get("metadata") or {})

    def retrieve_dispute(self, reference: str) -> DisputeReport:
        """A chargeback as Stripe has it now, with every balance transaction it caused."""
        dispute = self._read(self.client.v1.disputes.retrieve, reference)
        intent = dispute.get("payment_intent")
        moves = tuple(
            BalanceMove(str(txn["id"]), int(txn["amount"]), int(txn.get("fee") or 0), str(txn["currency"]).upper())
            for txn in dispute.get("balance_transactions") or ()
            if isinstance(txn, dict)
        )
        return DisputeReport(
            id=str(dispute["id"]),
            charge_reference=str(intent["id"] if isinstance(intent, dict) else intent or ""),
            amount=int(dispute["amount"]),
            currency=str(dispute["currency"]).upper(),
            status=str(dispute["status"]),
            balance_moves=moves,
        )

    def processing_fee(self, reference: str) -> tuple[int, str] | None:
        """Stripe's fee on a succeeded payment, from its balance transaction: (fee, currency)."""
        intent = self._read(
            self.client.v1.payment_intents.retrieve, reference, {"expand": ["latest_charge.balance_transaction"]}
        )
        charge = intent.get("latest_charge")
        transaction = charge.get("balance_transaction") if isinstance(charge, dict) else None
        if not isinstance(transaction, dict) or transaction.get("fee") is None:
            return None
        return int(transaction["fee"]), str(transaction.get("currency") or intent["currency"]).upper()

    def refund(
        self,
        *,
        amount: int,
        currency: str,
        idempotency_key: str,
        charge_reference: str | None,
        metadata: Mapping[str, str] | None = None,
    ) -> GatewayResult:
        """Refund (part of) a PaymentIntent. Its metadata links the refund order (the key,
        `refund_order`) and whatever the caller adds (the payment order, `order`, for `find`)."""
        params: dict[str, Any] = {
            "amount": amount,
            "payment_intent": charge_reference,
            "metadata": {**(metadata or {}), "refund_order": idempotency_key},
        }
        return _refund_result(_plain(self._call(self.client.v1.refunds.create, params, idempotency_key)))

    def payout(
        self, *, amount: int, currency: str, idempotency_key: str, destination: str, metadata: Mapping[str, str]
    ) -> GatewayResult:
        if not destination.startswith("acct_"):
            raise InvalidRequest(
                f"the freelancer has no Stripe connected account (got {destination!r}); set provider_id on their party record",
                field="provider_id",
            )
        params = {
            "amount": amount,
            "currency": currency.lower(),
            "destination": destination,
            "metadata": dict(metadata),
        }
        transfer = self._call(self.client.v1.transfers.create, params, idempotency_key)
        # In transit until Stripe confirms it (the transfer.created webhook or a retrieval).
        return GatewayResult("requires_action", transfer["id"])

    def list_objects(self, since: datetime, until: datetime) -> list[ProviderObject]:
        """Succeeded payments, refunds, transfers and disputes created in [since, until), for reconciliation."""
        params: Any = {"created": {"gte": int(since.timestamp()), "lt": int(until.timestamp())}, "limit": 100}
        found: list[ProviderObject] = []
        listings = (
            ("payment", self.client.v1.payment_intents),
            ("refund", self.client.v1.refunds),
            ("transfer", self.client.v1.transfers),
            ("dispute", self.client.v1.disputes),
        )
        try:
            for kind, service in listings:
                for obj in service.list(params=params).auto_paging_iter():
                    item = _plain(obj)
                    if kind == "payment" and item.get("status") != "succeeded":
                        continue
                    if kind == "refund" and item.get("status") != "succeeded":
                        continue
                    if kind == "dispute" and str(item.get("status", "")).startswith("warning_"):
                        continue  # an inquiry: no money moved
                    found.append(
                        ProviderObject(
                            kind,
                            str(item["id"]),
                            int(item["amount"]),
                            str(item["currency"]).upper(),
                            datetime.fromtimestamp(int(item.get("created") or 0), UTC),
                        )
                    )
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"Stripe is unavailable: {error.user_message or error}") from None
        return found

    def construct_event(self, payload: bytes, signature: str | None, secret: str) -> ProviderEvent:
        """Verify a webhook's signature (5-minute tolerance) and read which object it is
        about; ValueError if it is not genuine."""
        try:
            event = _plain(stripe.Webhook.construct_event(payload, signature, secret, tolerance=300))
        except (stripe.SignatureVerificationError, ValueError) as error:
            raise ValueError(str(error)) from None
        obj = (event.get("data") or {}).get("object") or {}
        object_id = obj.get("id")
        return ProviderEvent(str(event["id"]), str(event["type"]), None if object_id is None else str(object_id))

    def report(self, event: ProviderEvent) -> ProviderReport | None:
        """The object a webhook event is about, retrieved as Stripe has it now (never the
        event's copy): PaymentIntents (`payment_intent.*`), transfers (`transfer.*`),
        refunds and disputes (`charge.dispute.*`, with the PaymentIntent disputed). None
        for any other event."""
        if event.type.startswith("payment_intent."):
            return self._charge_report(_object_id(event))
        if event.type.startswith("transfer."):
            reference = _object_id(event)
            amount_reversed, metadata = self.retrieve_transfer(reference)
            return TransferReport(reference, amount_reversed, metadata.get("payout") or None)
        if event.type in REFUND_EVENTS:
            result, metadata = self.retrieve_refund(_object_id(event))
            return RefundReport(result, metadata.get("refund_order") or None)
        if event.type.startswith("charge.dispute."):
            dispute = self.retrieve_dispute(_object_id(event))
            charge = self._charge_report(dispute.charge_reference) if dispute.charge_reference else None
            return ChargebackReport(dispute, charge)
        return None

    def _charge_report(self, reference: str) -> ChargeReport:
        result, metadata = self.retrieve_charge(reference)
        return ChargeReport(result, metadata.get("milestone") or None, metadata.get("funding_key") or None)


def _object_id(event: ProviderEvent) -> str:
    if not event.object_id:
        raise InvalidRequest(f"the {event.type} event {event.id} names no object", field="data.object.id")
    return event.object_id


class _UnexpectedState(InvalidRequest):
    """Stripe refused an action the PaymentIntent's status no longer allows
    (`payment_intent_unexpected_state`); elsewhere it is a refusal like any other."""


class _Declined(Exception):
    def __init__(self, reason: str, body: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.body = body
