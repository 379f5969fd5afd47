"""The Litestar application: controllers, authentication, problem details, OpenAPI."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.exceptions import ServiceUnavailableException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from msgspec import Struct

from ledger.api.audit import AuditController
from ledger.api.context import require_role, services
from ledger.api.escrow import ContractController, MilestoneController, PaymentController
from ledger.api.finance import FeeController, FinanceController, PartyController
from ledger.api.idempotency import claim_lease
from ledger.api.money_out import FreelancerController, PayoutController
from ledger.api.problems import EXCEPTION_HANDLERS
from ledger.api.timeout import RequestTimeout
from ledger.api.webhooks import stripe_webhook
from ledger.bootstrap import Services


class Health(Struct, omit_defaults=True):
    status: str
    worker: str | None = None  # the newest worker heartbeat (readiness only)


@get("/health/live", operation_id="live", tags=["health"], sync_to_thread=False)
def live() -> Health:
    """The process is up."""
    return Health("ok")


@get("/health/ready", operation_id="ready", tags=["health"], sync_to_thread=True)
def ready(request: Request[Any, Any, Any]) -> Health:
    """The database answers; and the newest worker heartbeat (`ledger worker`), if any."""
    try:
        beats = services(request).book.transaction(lambda uow: uow.orders.heartbeats(), read_only=True)
    except Exception:
        raise ServiceUnavailableException("the database does not answer") from None
    if not beats:
        return Health("ok", worker="none has reported")
    name, at, _ = beats[0]
    return Health("ok", worker=f"{name} at {at.isoformat()}")


def create_app(
    services: Services,
    *,
    stripe_webhook_secret: str | None = None,
    request_timeout_seconds: float | None = None,
    idempotency_lease_margin: timedelta | None = None,
    debug: bool = False,
) -> Litestar:
    """The API over the services (`ledger.bootstrap`). The options default to the
    services' settings: a request not answered within `request_timeout_seconds` gets a
    503 (`ledger.api.timeout`); an Idempotency-Key claim left in progress holds its key
    for the timeout plus `idempotency_lease_margin`."""
    settings = services.settings
    svc = services
    stripe_webhook_secret = stripe_webhook_secret or settings.stripe_webhook_secret
    if request_timeout_seconds is None:
        request_timeout_seconds = settings.request_timeout_seconds
    if idempotency_lease_margin is None:
        idempotency_lease_margin = settings.idempotency_lease_margin
    return Litestar(
        route_handlers=[
            live,
            ready,
            ContractController,
            MilestoneController,
            PaymentController,
            FreelancerController,
            PayoutController,
            PartyController,
            FeeController,
            FinanceController,
            AuditController,
            stripe_webhook,
        ],
        guards=[require_role],
        middleware=[RequestTimeout(request_timeout_seconds)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        state=State(
            {
                "services": svc,
                "stripe_webhook_secret": stripe_webhook_secret,
                "idempotency_lease": claim_lease(request_timeout_seconds, idempotency_lease_margin),
            }
        ),
        openapi_config=OpenAPIConfig(
            title="ledger",
            version="1.0.0",
            description=(
                "Payments, escrow and fee ledger of the marketplace. Amounts are objects "
                '{"amount": "1000.00", "currency": "USD"} with decimal strings, never JSON numbers. '
                "Errors are RFC 9457 problem details. Every POST takes an Idempotency-Key header."
            ),
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", description="an API key")}
            ),
            security=[{"bearer": []}],
        ),
        debug=debug,
    )
