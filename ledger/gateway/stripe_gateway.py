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
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import stripe

from ledger.errors import ConfigurationError, InvalidRequest, LedgerError
from ledger.gateway import GatewayResult, ProviderObject

PSP_ACCOUNT = "assets:psp:stripe"
PENDING = {"requires_action", "requires_confirmation", "processing", "requires_capture"}


class GatewayUnavailable(LedgerError):
    """The payment provider could not be reached or failed; nothing was recorded, retry later."""

    code = "gateway-unavailable"


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
    return GatewayResult("failed", intent["id"], failure_reason=reason)


class StripeGateway:
    """Stripe through the official SDK.

    Attributes:
        psp_account: money at Stripe is booked to `assets:psp:stripe`.
        client: the SDK client (its API base can point at a local stand-in in tests).
    """

    psp_account = PSP_ACCOUNT

    def __init__(self, api_key: str, *, api_base: str | None = None, max_network_retries: int = 3) -> None:
        if not api_key:
            raise ConfigurationError("LEDGER_GATEWAY=stripe needs STRIPE_API_KEY")
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
        )

    def _call(self, method: Any, params: dict[str, Any], key: str | None) -> Any:
        try:
            return method(params=params, options={"idempotency_key": key} if key else None)
        except stripe.CardError as error:
            body = error.json_body if isinstance(error.json_body, dict) else {}
            raise _Declined(error.user_message or str(error), body) from None
        except stripe.InvalidRequestError as error:
            raise InvalidRequest(
                f"Stripe refused the request: {error.user_message or error}", field=error.param
            ) from None
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
        if "contract" in metadata:
            params["transfer_group"] = metadata["contract"]
        if payment_method:
            params["payment_method"] = payment_method
            params["confirm"] = "true"
        try:
            intent = self._call(self.client.v1.payment_intents.create, params, idempotency_key)
        except _Declined as declined:
            intent_id = (declined.body.get("error") or {}).get("payment_intent", {}).get("id", idempotency_key)
            return GatewayResult("failed", intent_id, failure_reason=declined.reason)
        return _result(intent)

    def retrieve_charge(self, reference: str) -> tuple[GatewayResult, Mapping[str, str]]:
        """The PaymentIntent as Stripe has it now, and its metadata."""
        try:
            intent = self.client.v1.payment_intents.retrieve(reference)
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"Stripe is unavailable: {error.user_message or error}") from None
        return _result(intent), dict(_plain(intent).get("metadata") or {})

    def processing_fee(self, reference: str) -> tuple[int, str] | None:
        """Stripe's fee on a succeeded payment, from its balance transaction: (fee, currency)."""
        try:
            intent = _plain(
                self.client.v1.payment_intents.retrieve(
                    reference, params={"expand": ["latest_charge.balance_transaction"]}
                )
            )
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"Stripe is unavailable: {error.user_message or error}") from None
        charge = intent.get("latest_charge")
        transaction = charge.get("balance_transaction") if isinstance(charge, dict) else None
        if not isinstance(transaction, dict) or transaction.get("fee") is None:
            return None
        return int(transaction["fee"]), str(transaction.get("currency") or intent["currency"]).upper()

    def refund(
        self, *, amount: int, currency: str, idempotency_key: str, charge_reference: str | None
    ) -> GatewayResult:
        params: dict[str, Any] = {
            "amount": amount,
            "payment_intent": charge_reference,
            "metadata": {"refund_order": idempotency_key},
        }
        refund = _plain(self._call(self.client.v1.refunds.create, params, idempotency_key))
        status = refund["status"]
        return GatewayResult(
            "succeeded"
            if status == "succeeded"
            else "failed"
            if status in ("failed", "canceled")
            else "requires_action",
            refund["id"],
            failure_reason=refund.get("failure_reason"),
        )

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
        """Succeeded payments, refunds and transfers created in [since, until), for reconciliation."""
        params: Any = {"created": {"gte": int(since.timestamp()), "lt": int(until.timestamp())}, "limit": 100}
        found: list[ProviderObject] = []
        listings = (
            ("payment", self.client.v1.payment_intents),
            ("refund", self.client.v1.refunds),
            ("transfer", self.client.v1.transfers),
        )
        try:
            for kind, service in listings:
                for obj in service.list(params=params).auto_paging_iter():
                    item = _plain(obj)
                    if kind == "payment" and item.get("status") != "succeeded":
                        continue
                    if kind == "refund" and item.get("status") != "succeeded":
                        continue
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

    def construct_event(self, payload: bytes, signature: str | None, secret: str) -> Any:
        """Verify a webhook's signature (5-minute tolerance) and parse it; ValueError if it is not genuine."""
        try:
            return stripe.Webhook.construct_event(payload, signature, secret, tolerance=300)
        except (stripe.SignatureVerificationError, ValueError) as error:
            raise ValueError(str(error)) from None


class _Declined(Exception):
    def __init__(self, reason: str, body: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.body = body
