"""The Litestar application: controllers, dependencies, authentication, problem details, OpenAPI.

One controller per resource, each in its own module; the services reach the handlers
through Litestar's dependency injection (`ledger.api.dependencies`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from multiprocessing.process import BaseProcess

from litestar import Litestar, get
from litestar.di import NamedDependency
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from msgspec import Struct

from ledger.api.accounts import AccountController
from ledger.api.audit import AuditController
from ledger.api.auth import RequireRole
from ledger.api.contracts import ContractController
from ledger.api.dependencies import app_dependencies
from ledger.api.fees import FeeController
from ledger.api.freelancers import FreelancerController
from ledger.api.hourly import HourlyController
from ledger.api.idempotency import claim_lease
from ledger.api.idempotent import IdempotencyKeys
from ledger.api.invoices import InvoiceController
from ledger.api.metrics import ApiMetrics, metrics_route
from ledger.api.milestones import MilestoneController
from ledger.api.openapi import schema_router
from ledger.api.orders import PaymentOrderController
from ledger.api.parties import PartyController
from ledger.api.payments import PaymentController
from ledger.api.payouts import PayoutController
from ledger.api.problems import EXCEPTION_HANDLERS
from ledger.api.reports import ReportController
from ledger.api.request_log import RequestLog
from ledger.api.timeout import RequestTimeout
from ledger.api.webhooks import stripe_webhook
from ledger.bootstrap import Services, build_services
from ledger.errors import DependencyDown
from ledger.service import Ledger

log = logging.getLogger(__name__)


class Health(Struct, omit_defaults=True):
    status: str
    worker: str | None = None  # the newest worker heartbeat (readiness only)


@get("/health/live", operation_id="live", tags=["health"], sync_to_thread=False)
def live() -> Health:
    """The process is up."""
    return Health("ok")


@get("/health/ready", operation_id="ready", tags=["health"], sync_to_thread=True)
def ready(book: NamedDependency[Ledger]) -> Health:
    """The database answers; and the newest worker heartbeat (`ledger worker`), if any.
    Not ready: a 503 problem `dependency-down` whose `dependency` names what is down."""
    try:
        beats = book.transaction(lambda uow: uow.orders.heartbeats(), read_only=True)
    except Exception as error:
        # The dependency by name, never the driver's message (it may name the
        # database's host, user or schema): that goes to the server's log.
        log.warning("readiness: the database does not answer (%s)", type(error).__name__)
        raise DependencyDown("the database does not answer", dependency="database") from None
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
    on_shutdown: Sequence[Callable[[], None]] = (),
    debug: bool = False,
) -> Litestar:
    """The API over the services (`ledger.bootstrap`). The options default to the
    services' settings: a request not answered within `request_timeout_seconds` gets a
    503 (`ledger.api.timeout`); an Idempotency-Key claim left in progress holds its key
    for the timeout plus `idempotency_lease_margin`. `on_shutdown` runs when the server
    stops."""
    settings = services.settings
    stripe_webhook_secret = stripe_webhook_secret or settings.stripe_webhook_secret
    if request_timeout_seconds is None:
        request_timeout_seconds = settings.request_timeout_seconds
    if idempotency_lease_margin is None:
        idempotency_lease_margin = settings.idempotency_lease_margin
    keys = IdempotencyKeys(services.book, claim_lease(request_timeout_seconds, idempotency_lease_margin))
    metrics = ApiMetrics(services.book, multiprocess_dir=settings.metrics_multiprocess_dir)
    app = Litestar(
        route_handlers=[
            live,
            ready,
            metrics_route(metrics),
            ContractController,
            HourlyController,
            MilestoneController,
            PaymentController,
            FreelancerController,
            PayoutController,
            PartyController,
            FeeController,
            AccountController,
            ReportController,
            InvoiceController,
            AuditController,
            PaymentOrderController,
            stripe_webhook,
        ],
        dependencies=app_dependencies(services, keys, stripe_webhook_secret),
        guards=[RequireRole(services.book)],
        middleware=[RequestTimeout(request_timeout_seconds)],
        exception_handlers=EXCEPTION_HANDLERS,
        on_shutdown=[*on_shutdown, metrics.close],
        openapi_config=OpenAPIConfig(
            title="ledger",
            version="1.0.0",
            description=(
                "Payments, escrow and fee ledger of the marketplace. Amounts are objects "
                '{"amount": "1000.00", "currency": "USD"} with decimal strings, never JSON numbers. '
                "Errors are RFC 9457 problem details. Every POST takes an Idempotency-Key header."
            ),
            openapi_router=schema_router("/schema"),  # completes the document (`ledger.api.openapi`)
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", description="an API key")}
            ),
            security=[{"bearer": []}],
        ),
        debug=debug,
    )
    # Around the router and its exception handling, where Litestar's own OpenTelemetry
    # middleware goes: app-level middleware runs only once a route matched, and a
    # request no route matches is logged and counted too.
    app.asgi_handler = RequestLog(app.asgi_handler, metrics)
    return app


def create_app_from_environment() -> Litestar:
    """The app factory of `ledger serve --workers N`: each server process calls it for
    itself (uvicorn imports it by name, `factory=True`), so each builds its own
    services, engine, connection pools and gateway from the environment
    (`ledger.config`) and closes them when it stops; no process shares one with
    another. Also usable as `uvicorn --factory ledger.api.app:create_app_from_environment`.

    A worker started by uvicorn's supervisor stops (SIGTERM, a graceful shutdown) when
    the supervisor is gone: killed with SIGKILL, it can no longer stop its workers,
    which would serve on unsupervised, holding the port and their database connections.
    """
    services = build_services()
    try:
        app = create_app(services, on_shutdown=[services.close])
    except Exception:
        services.close()
        raise
    supervisor = multiprocessing.parent_process()
    if supervisor is not None:
        threading.Thread(target=_stop_with, args=(supervisor,), name="ledger-supervisor-watch", daemon=True).start()
    return app


def _stop_with(supervisor: BaseProcess) -> None:
    supervisor.join()  # returns when the supervisor has exited (its sentinel pipe closed)
    log.warning("the server's supervisor (pid %s) is gone: stopping this worker", supervisor.pid)
    os.kill(os.getpid(), signal.SIGTERM)
