"""One log line and one count per HTTP request, with a request id.

`RequestLog` wraps the whole application, outside Litestar's router (where
Litestar's own OpenTelemetry middleware sits), so a request no route matches (a
scanner's 404) is logged and counted too. For each request it:

- takes the caller's `X-Request-Id` when it is a plain token (letters, digits, `.`,
  `_`, `-`, at most 128), or makes one, and answers with it in `X-Request-Id`; every
  line logged while the request is served carries it (`ledger.observability.request_context`);
- logs one line, `ledger.api.requests`, when the response is sent: `request_id`,
  `method`, `route` (the route template, `/v1/contracts/{contract_id}`, so no id of
  a party or contract is logged; `unmatched` when no route matched), `status`,
  `duration_ms`, `actor` (the API key's id, `provider` for a webhook, null for the
  open routes) and `idempotency_key` (as the caller sent it, cut to 200 characters).
  Never a body, the Authorization header, or a query string;
- counts it in `/metrics` (`ledger.api.metrics.ApiMetrics.observe`).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ledger.actors import SYSTEM, acting_as, current_actor
from ledger.api.metrics import UNMATCHED, ApiMetrics
from ledger.observability import request_context

log = logging.getLogger("ledger.api.requests")

REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")
#: An Idempotency-Key is the caller's text; a line keeps its start.
MAX_LOGGED_KEY = 200


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


def request_id_of(scope: Scope) -> str:
    """The caller's request id when it is a plain token, else a new one."""
    given = _header(scope, REQUEST_ID_HEADER)
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given.decode("ascii")
    return uuid.uuid4().hex


class RequestLog:
    """The ASGI application `app`, each HTTP request logged, counted and given an id."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics | None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        began = time.perf_counter()
        status = 500  # if nothing is sent, the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        # The actor is what the request's authentication names (`ledger.api.auth`);
        # SYSTEM until then, logged as null.
        with request_context(request_id), acting_as(SYSTEM):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - began
                self._record(scope, request_id, status, seconds, current_actor())

    def _record(self, scope: Scope, request_id: str, status: int, seconds: float, actor: str) -> None:
        route = scope.get("path_template") or UNMATCHED
        method = str(scope.get("method", ""))
        if self.metrics is not None:
            self.metrics.observe(method, route, status, seconds)
        key = _header(scope, b"idempotency-key")
        log.info(
            "%s %s %s",
            method,
            route,
            status,
            extra={
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "actor": None if actor == SYSTEM else actor,
                "idempotency_key": None if key is None else key.decode("latin-1")[:MAX_LOGGED_KEY],
            },
        )
