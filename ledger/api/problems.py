"""Errors as RFC 9457 problem details, mapped in this one place.

Every `LedgerError` has a stable `type` (`urn:ledger:problem:<code>`) and its data
fields; validation errors name the field; no bad input ever gets a 500.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from ledger.errors import (
    ConfigurationError,
    Conflict,
    DatabaseNotMigrated,
    DependencyDown,
    InvalidRequest,
    LedgerError,
    NotFound,
    RequestTimedOut,
    RetriesExhausted,
)
from ledger.gateway import GatewayUnavailable, PaymentFailed

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("ledger.api")

#: Most specific first.
STATUS_BY_ERROR: list[tuple[type[LedgerError], int]] = [
    (PaymentFailed, 402),
    (InvalidRequest, 422),
    (NotFound, 404),
    (Conflict, 409),
    (ConfigurationError, 503),
    (DatabaseNotMigrated, 503),
    (RetriesExhausted, 503),
    (RequestTimedOut, 503),
    (DependencyDown, 503),
    (GatewayUnavailable, 503),
]


def problem_type(code: str) -> str:
    return f"urn:ledger:problem:{code}"


def status_of(error: LedgerError) -> int:
    for error_class, status in STATUS_BY_ERROR:
        if isinstance(error, error_class):
            return status
    return 400


def _json_safe(value: Any) -> Any:
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    return str(value)


def problem_body(error: LedgerError, instance: str) -> dict[str, Any]:
    status = status_of(error)
    reserved = {"type", "title", "status", "detail", "instance"}
    extra = {k: _json_safe(v) for k, v in error.data.items() if k not in reserved}
    doc = (type(error).__doc__ or error.code).strip().split("\n\n")[0]
    title = " ".join(line.strip() for line in doc.splitlines())
    return {
        "type": problem_type(error.code),
        "title": title,
        "status": status,
        "detail": error.message,
        "instance": instance,
        **extra,
    }


def problem_response(body: dict[str, Any]) -> Response[bytes]:
    return Response(content=msgspec.json.encode(body), status_code=body["status"], media_type=PROBLEM_JSON)


def ledger_error_handler(request: Request[Any, Any, Any], error: LedgerError) -> Response[bytes]:
    return problem_response(problem_body(error, request.url.path))


def http_error_handler(request: Request[Any, Any, Any], error: HTTPException) -> Response[bytes]:
    body: dict[str, Any] = {
        "type": problem_type(f"http-{error.status_code}"),
        "title": HTTPStatus(error.status_code).phrase,
        "status": error.status_code,
        "detail": error.detail,
        "instance": request.url.path,
    }
    if isinstance(error, ValidationException):
        body["type"] = problem_type("validation")
        body["title"] = "The request does not match the schema"
        errors = error.extra if isinstance(error.extra, list) else []
        body["errors"] = [{"field": _field_of(e), "message": e.get("message")} for e in errors if isinstance(e, dict)]
        fields = [e["field"] for e in body["errors"] if e["field"]]
        if fields:
            body["field"] = fields[0]
            body["detail"] = "; ".join(f"{e['field']}: {e['message']}" for e in body["errors"])
    response = problem_response(body)
    response.headers.update(getattr(error, "headers", None) or {})
    if error.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ledger"'
    return response


def _field_of(error: dict[str, Any]) -> str | None:
    """The field a validation error is about. For the body, Litestar says only "data";
    msgspec's message names the field ("... `amount`", "... - at `$.amount.currency`")."""
    key = error.get("key")
    message = str(error.get("message") or "")
    at = re.search(r"at `\$\.([^`]+)`", message) or re.search(r"field `([^`]+)`", message)
    inner = at.group(1) if at else None
    if key in (None, "data"):
        return inner or (str(key) if key else None)
    return f"{key}.{inner}" if inner else str(key)


def unexpected_error_handler(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    return problem_response(
        {
            "type": problem_type("internal"),
            "title": "Internal error",
            "status": 500,
            "detail": "the server failed; retry the request with the same Idempotency-Key",
            "instance": request.url.path,
        }
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LedgerError: ledger_error_handler,
    HTTPException: http_error_handler,
    Exception: unexpected_error_handler,
}
