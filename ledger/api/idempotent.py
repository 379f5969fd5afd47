"""Idempotency-Key on POST routes: `@idempotent` runs a request once per key and
replays the recorded response to retries.

A POST with an `Idempotency-Key` header is recorded with the response it got; a
replay with the same body and path gets that response again and changes nothing;
the same key with another body or path is a 409 `idempotency-conflict`; a retry
while the first request runs is a 409 `request-in-progress`. A refusal (a 4xx
`LedgerError`) is an answer too and is recorded; a passing failure (5xx, or any
other exception) releases the key so that a retry runs again. How long a claim and
a record last is `ledger.api.idempotency`'s.

The decorator keeps the handler's signature for Litestar (its parameters, its
return type for OpenAPI) and adds one dependency to it, `idempotency_keys` (an
`IdempotencyKeys`, provided by the app), which the handler itself never sees.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ParamSpec, overload

import msgspec
from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler

from ledger.access import ApiKey
from ledger.api.problems import PROBLEM_JSON, problem_body
from ledger.errors import Conflict, IdempotencyConflict, InvalidRequest, LedgerError
from ledger.service import Ledger

P = ParamSpec("P")

JSON = "application/json"
#: The dependency `@idempotent` adds to the handlers it wraps.
KEYS_DEPENDENCY = "idempotency_keys"
#: The dependency giving a handler the request's Idempotency-Key (`scoped_request_key`).
REQUEST_KEY_DEPENDENCY = "request_key"
MAX_KEY_LENGTH = 255


class RequestInProgress(Conflict):
    """A request with this Idempotency-Key is still being processed."""

    code = "request-in-progress"


def request_fingerprint(body: object, path: str) -> str:
    """What makes two requests with one Idempotency-Key the same request: body and path."""
    return hashlib.sha256(msgspec.json.encode(body) + b"|" + path.encode()).hexdigest()


def scoped_request_key(request: Request[Any, Any, Any]) -> str | None:
    """The `request_key` dependency: the request's Idempotency-Key, scoped to its API key,
    for use cases that remember their callers' keys: a retry after a crash between the
    money moving and the response being recorded then finds the first result instead
    of moving money again."""
    key = request.headers.get("idempotency-key")
    api_key: ApiKey | None = request.state.get("api_key")
    if key is None or not key.strip() or len(key) > MAX_KEY_LENGTH or api_key is None:
        return None
    scoped = f"{api_key.id}:{key}"
    # Stored beside payments and sent on to the provider inside its own keys: keep it short.
    return scoped if len(scoped) <= 120 else f"{api_key.id}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


class IdempotencyKeys:
    """The Idempotency-Key records of the API, in the ledger's database.

    The claim on a key has a lease (`ledger.api.idempotency`): a claim left in
    progress past it, by a server that died, is taken over by a retry of the same
    request, which runs it again. A run whose claim was taken over records nothing.

    Attributes:
        book: the ledger whose database holds the records.
        lease: how long a claim in progress holds its key.
    """

    def __init__(self, book: Ledger, lease: timedelta) -> None:
        self.book = book
        self.lease = lease

    def run(self, request: Request[Any, Any, Any], body: object, handle: Callable[[], object]) -> Response[bytes]:
        """Answer the request with `handle()`'s result, once per Idempotency-Key."""
        status = _status_code(request)
        key = request.headers.get("idempotency-key")
        if key is None:
            return Response(content=msgspec.json.encode(handle()), status_code=status, media_type=JSON)
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise InvalidRequest("Idempotency-Key is 1-255 characters", field="Idempotency-Key")
        api_key: ApiKey = request.state.api_key
        book, lease, method = self.book, self.lease, request.method
        path = request.url.path
        body_hash = request_fingerprint(body, path)
        claimed_at = book.clock.now()
        # The claim, the release and the record of the answer are statements that each
        # stand alone (an insert, a conditional update, a read): run without a transaction.
        earlier = book.autocommit(
            lambda uow: uow.api.claim_request(key, api_key.id, method, path, body_hash, now=claimed_at, lease=lease)
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
            book.autocommit(lambda uow: uow.api.release_request(key, api_key.id, claimed_at))

        try:
            content, media_type = msgspec.json.encode(handle()), JSON
        except LedgerError as error:
            # A refusal is an answer too: a retry gets the same refusal, not a second try.
            # A passing failure (the provider or the database unavailable, 5xx) is not: the
            # key is released so that the retry runs again.
            problem = problem_body(error, path)
            if problem["status"] >= 500:
                release()
                raise
            status, content, media_type = problem["status"], msgspec.json.encode(problem), PROBLEM_JSON
        except BaseException:
            release()
            raise
        book.autocommit(
            lambda uow: uow.api.finish_request(key, api_key.id, claimed_at, status, media_type, content.decode())
        )
        return Response(content=content, status_code=status, media_type=media_type)


def _status_code(request: Request[Any, Any, Any]) -> int:
    """The status of the route's success answer (its `status_code`)."""
    handler = request.route_handler
    if not isinstance(handler, HTTPRouteHandler):
        raise TypeError("@idempotent wraps HTTP route handlers only")
    return handler.status_code


@overload
def idempotent(handler: Callable[P, object], /) -> Callable[P, Response[bytes]]: ...


@overload
def idempotent(*, empty_body: object) -> Callable[[Callable[P, object]], Callable[P, Response[bytes]]]: ...


def idempotent(
    handler: Callable[P, object] | None = None, /, *, empty_body: object = None
) -> Callable[P, Response[bytes]] | Callable[[Callable[P, object]], Callable[P, Response[bytes]]]:
    """Run a POST handler once per Idempotency-Key (`IdempotencyKeys.run`).

    The handler takes the `request` and returns its response body; its request body
    is its `data` argument. `empty_body` is what a missing optional body stands for
    (`FundRequest()`), so that a request without a body and one with the empty body
    are the same request.
    """

    def wrap(handle: Callable[P, object]) -> Callable[P, Response[bytes]]:
        @functools.wraps(handle)
        def answer(*args: P.args, **kwargs: P.kwargs) -> Response[bytes]:
            keys = kwargs.pop(KEYS_DEPENDENCY)
            request = kwargs.get("request")
            if not isinstance(keys, IdempotencyKeys) or not isinstance(request, Request):
                raise TypeError(f"{handle.__qualname__}: @idempotent needs `request` and `{KEYS_DEPENDENCY}`")
            body = kwargs.get("data")
            return keys.run(request, empty_body if body is None else body, lambda: handle(*args, **kwargs))

        # Litestar reads the signature and the annotations: the handler's, plus the keys.
        signature = inspect.signature(handle)
        extra = inspect.Parameter(
            KEYS_DEPENDENCY, inspect.Parameter.KEYWORD_ONLY, annotation=NamedDependency[IdempotencyKeys]
        )
        answer.__dict__["__signature__"] = signature.replace(parameters=[*signature.parameters.values(), extra])
        answer.__annotations__ = {**handle.__annotations__, KEYS_DEPENDENCY: NamedDependency[IdempotencyKeys]}
        return answer

    return wrap if handler is None else wrap(handler)
