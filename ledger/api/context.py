"""What every request handler shares: the services, authentication, idempotency.

Authentication: `Authorization: Bearer <api key>`; each route names the roles that
may use it in its `opt["roles"]` (admin may use every route); routes without
roles are open. Idempotency: a POST with an `Idempotency-Key` header is recorded
with the response it got; a replay with the same body gets that response again
and changes nothing, the same key with another body is a 409. How long a claim and
a record last is `ledger.api.idempotency`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from ledger.access import ApiKey
from ledger.api.keys import authenticate
from ledger.api.problems import problem_body
from ledger.bootstrap import Services
from ledger.errors import Conflict, IdempotencyConflict, InvalidRequest, LedgerError
from ledger.service import Ledger

JSON = "application/json"
MARKETPLACE = ("marketplace",)
FINANCE = ("finance",)
READERS = ("finance", "auditor")


def services(request: Request[Any, Any, Any]) -> Services:
    found: Services = request.app.state.services
    return found


def require_role(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: authenticate the bearer key and check its role against the route's roles."""
    roles = handler.opt.get("roles")
    if roles is None:
        return
    header = connection.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise NotAuthorizedException("an API key is required: Authorization: Bearer <key>")
    book: Ledger = connection.app.state.services.book
    api_key = book.transaction(lambda uow: authenticate(uow, key.strip()), read_only=True)
    if api_key is None:
        raise NotAuthorizedException("unknown or revoked API key")
    if api_key.role != "admin" and api_key.role not in roles:
        raise PermissionDeniedException(f"the {api_key.role} role may not use this route")
    connection.state.api_key = api_key


class RequestInProgress(Conflict):
    """A request with this Idempotency-Key is still being processed."""

    code = "request-in-progress"


def respond(status: int, payload: object) -> Response[bytes]:
    return Response(content=msgspec.json.encode(payload), status_code=status, media_type=JSON)


def request_key(request: Request[Any, Any, Any]) -> str | None:
    """The request's Idempotency-Key, scoped to its API key, for use cases that remember
    their callers' keys: a retry after a crash between the money moving and the response
    being recorded then finds the first result instead of moving money again."""
    key = request.headers.get("idempotency-key")
    if key is None or not key.strip() or len(key) > 255:
        return None
    api_key: ApiKey = request.state.api_key
    scoped = f"{api_key.id}:{key}"
    # Stored beside payments and sent on to the provider inside its own keys: keep it short.
    return scoped if len(scoped) <= 120 else f"{api_key.id}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def request_fingerprint(body: object, path: str) -> str:
    """What makes two requests with one Idempotency-Key the same request: body and path."""
    return hashlib.sha256(msgspec.json.encode(body) + b"|" + path.encode()).hexdigest()


def idempotent(request: Request[Any, Any, Any], body: object, run: Callable[[], tuple[int, object]]) -> Response[bytes]:
    """Run a POST once per Idempotency-Key; replay its recorded response to retries.

    The claim on the key has a lease (`ledger.api.idempotency`): a claim left in
    progress past it, by a server that died, is taken over by a retry of the same
    request, which runs it again. A run whose claim was taken over records nothing.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        status, payload = run()
        return respond(status, payload)
    if not key.strip() or len(key) > 255:
        raise InvalidRequest("Idempotency-Key is 1-255 characters", field="Idempotency-Key")
    api_key: ApiKey = request.state.api_key
    book = services(request).book
    lease: timedelta = request.app.state.idempotency_lease
    path = request.url.path
    body_hash = request_fingerprint(body, path)
    claimed_at = book.clock.now()
    earlier = book.transaction(
        lambda uow: uow.api.claim_request(key, api_key.id, request.method, path, body_hash, now=claimed_at, lease=lease)
    )
    if earlier is not None:
        if earlier.body_hash != body_hash or earlier.path != path:
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was used for another request", idempotency_key=key, path=earlier.path
            )
        if earlier.status is None:
            raise RequestInProgress(f"a request with Idempotency-Key {key!r} is in progress; retry later")
        return Response(
            content=(earlier.response or "").encode(), status_code=earlier.status, media_type=earlier.media_type
        )

    def release() -> None:
        book.transaction(lambda uow: uow.api.release_request(key, api_key.id, claimed_at))

    try:
        status, payload = run()
        content, media_type = msgspec.json.encode(payload), JSON
    except LedgerError as error:
        # A refusal is an answer too: a retry gets the same refusal, not a second try.
        # A passing failure (the provider or the database unavailable, 5xx) is not: the
        # key is released so that the retry runs again.
        problem = problem_body(error, path)
        if problem["status"] >= 500:
            release()
            raise
        status, content, media_type = problem["status"], msgspec.json.encode(problem), "application/problem+json"
    except BaseException:
        release()
        raise
    book.transaction(
        lambda uow: uow.api.finish_request(key, api_key.id, claimed_at, status, media_type, content.decode())
    )
    return Response(content=content, status_code=status, media_type=media_type)
