"""`POST /v1/webhooks/stripe`: signed instead of authenticated with an API key.

The raw body is verified against the `Stripe-Signature` header with
STRIPE_WEBHOOK_SECRET and a 5-minute tolerance; a missing, bad or stale signature
is a 400 and nothing is recorded. The Stripe gateway reads a verified event, and
`escrow.provider_events` acts on it (stored by id first; duplicates change nothing).
"""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, ServiceUnavailableException
from msgspec import Struct

from ledger.actors import PROVIDER, set_actor
from ledger.escrow.service import Escrow
from ledger.gateway.stripe_gateway import StripeGateway


class Received(Struct):
    received: bool
    outcome: str


@post("/v1/webhooks/stripe", operation_id="stripeWebhook", tags=["webhooks"], status_code=200, security=[])
async def stripe_webhook(
    request: Request[Any, Any, Any], escrow: NamedDependency[Escrow], stripe_webhook_secret: NamedDependency[str | None]
) -> Received:
    """A Stripe event. Acknowledged (2xx) once stored and acted on, or if it is a duplicate."""
    secret = stripe_webhook_secret
    gateway = escrow.gateway
    if not isinstance(gateway, StripeGateway) or not secret:
        raise ServiceUnavailableException(
            "Stripe webhooks are not configured (LEDGER_GATEWAY=stripe, STRIPE_WEBHOOK_SECRET)"
        )
    payload = await request.body()
    try:
        event = gateway.construct_event(payload, request.headers.get("stripe-signature"), secret)
    except ValueError as error:
        raise ClientException(detail=f"the webhook signature does not verify: {error}", status_code=400) from None
    set_actor(PROVIDER)  # what the event books is the provider's doing (the thread copies the context)
    outcome = await anyio.to_thread.run_sync(escrow.provider_events.handle, event)
    return Received(True, outcome)
