"""The OpenAPI document: Litestar's, completed where its generation stops short.

Litestar builds the document from the controllers. Three things it cannot know, this
module adds to the built `OpenAPI` object, once, from the routes themselves:

- Errors. Litestar documents a 400 with its own `{status_code, detail, extra}` body,
  which this API never sends: every error is RFC 9457 problem details
  (`ledger.api.problems`). Every operation declares the statuses it can answer, each
  as `application/problem+json` with the `Problem` schema: 500 and 503 (the provider
  or the database unavailable, the request timed out) everywhere; 400 and 422 where
  there are parameters or a body; 401 and 403 where a key is needed (a route with
  `opt["roles"]`, as `RequireRole` reads it; the others say `security: []`); 404 where
  there are path parameters; 409 where the state changes; 402 where a payment method is
  charged; and the few that only the route's code tells (`OTHER_ANSWERS`).
- Representations. The handlers that answer CSV or PDF return a bare `Response`, which
  tells Litestar nothing: `REPRESENTATIONS` lists them by operation id.
- Unknown members. A request body whose Struct has `forbid_unknown_fields` refuses
  them: its component schema (and those of the Structs inside it that forbid them too)
  says `additionalProperties: false`.
- The Idempotency-Key header. `@idempotent` (`ledger.api.idempotent`) and the
  `request_key` dependency read it from the request, which Litestar does not see:
  every operation taking either declares the optional header parameter.

The document is built lazily, on the first request to `/schema*` (building it for every
app would cost each server process and each test its time), by the schema router's
`before_request` hook; `documented(app)` gives it completed from code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import msgspec
import msgspec.inspect as mi
from litestar import Litestar, Request, Router
from litestar.enums import ParamType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
)
from litestar.routes import HTTPRoute

from ledger.api.idempotent import KEYS_DEPENDENCY, MAX_KEY_LENGTH, REQUEST_KEY_DEPENDENCY
from ledger.api.problems import PROBLEM_JSON

PROBLEM = "Problem"

#: Media types the API answers beside JSON, by operation id: how the client selects each.
REPRESENTATIONS: dict[str, dict[str, str]] = {
    "getAccountStatement": {"text/csv": "`format=csv`", "application/pdf": "`format=pdf`"},
    "getPartyStatement": {"text/csv": "`format=csv`", "application/pdf": "`format=pdf`"},
    "getInvoice": {"application/pdf": "`Accept: application/pdf`"},
}

#: Routes that charge a client's payment method in the request and answer 402 when it
#: is declined. (Funding and an hourly bonus report a declined charge in their 200 body,
#: `status: failed`: they never answer 402.)
CHARGES_IN_REQUEST = {"approveMilestone"}

#: Statuses a route answers that its method, parameters and roles do not tell, by
#: operation id (the Schemathesis run checks that every status it meets is declared).
OTHER_ANSWERS: dict[str, set[int]] = {
    "stripeWebhook": {400},  # the signature is a header Litestar does not see
    "listTime": {409},  # wrong-contract-type: a fixed-price contract has no time ...
    "listWeeks": {409},  # ... nor weeks
    "getWeek": {409},
    "listInvoices": {404},  # its cursor is a document number: an unknown one is an unknown document
}

#: When each status is answered, as documented.
WHEN: dict[int, str] = {
    400: (
        "The request does not match its schema (`urn:ledger:problem:validation`; `field` names the "
        "first member at fault, `errors` lists them all), or it is malformed."
    ),
    401: "No API key, or an unknown or revoked one (`Authorization: Bearer <key>`).",
    402: "The payment provider declined the charge (`payment-failed`); nothing was released.",
    403: "The key's role may not use this route.",
    404: "Nothing has the id the request names.",
    409: (
        "The state does not allow it (a refused transition, a wrong contract type, a balance below its "
        "floor), or the Idempotency-Key was used for another request or is in progress."
    ),
    422: "The request is well-formed but refused (`invalid-request` and its kinds); `field` names the member.",
    500: "The server failed; retry with the same Idempotency-Key.",
    503: (
        "The payment provider or the database is unavailable, it is not configured, or the request was "
        "not answered in time (`request-timed-out`); retry later with the same Idempotency-Key."
    ),
}


def problem_schema() -> Schema:
    """RFC 9457 problem details as `ledger.api.problems` sends them."""
    text = Schema(type=OpenAPIType.STRING)
    text_or_null = Schema(one_of=[text, Schema(type=OpenAPIType.NULL)])
    return Schema(
        title=PROBLEM,
        type=OpenAPIType.OBJECT,
        description=(
            "RFC 9457 problem details. Beside the standard members, an error's data are members "
            "too (e.g. `account`, `available`, `requested`, `milestone_id`)."
        ),
        required=["type", "title", "status", "detail", "instance"],
        properties={
            "type": Schema(
                type=OpenAPIType.STRING,
                pattern="^urn:ledger:problem:",
                description="stable per error: `urn:ledger:problem:<code>`",
            ),
            "title": Schema(type=OpenAPIType.STRING, description="the kind of error, the same for each `type`"),
            "status": Schema(type=OpenAPIType.INTEGER, minimum=400, maximum=599, description="the HTTP status"),
            "detail": Schema(type=OpenAPIType.STRING, description="this occurrence, in words"),
            "instance": Schema(type=OpenAPIType.STRING, description="the request's path"),
            "field": Schema(type=OpenAPIType.STRING, description="the member or parameter at fault"),
            "errors": Schema(
                type=OpenAPIType.ARRAY,
                description="validation errors: each member at fault",
                items=Schema(
                    type=OpenAPIType.OBJECT,
                    properties={"field": text_or_null, "message": text_or_null},
                ),
            ),
        },
        additional_properties=True,
    )


def response_name(status: int) -> str:
    """`NotFound`, `UnprocessableEntity`, ...: the component of a status's problem response."""
    return re.sub(r"[^A-Za-z]", "", HTTPStatus(status).phrase.title())


def answers(route: HTTPRoute, handler: HTTPRouteHandler, method: str, operation: Operation) -> set[int]:
    """The error statuses an operation can answer (see the module)."""
    statuses = {500, 503}
    parameters = [p for p in operation.parameters or [] if not isinstance(p, Reference)]
    if parameters or operation.request_body is not None:
        statuses |= {400, 422}
    if route.path_parameters:
        statuses.add(404)
    if needs_key(handler):
        statuses |= {401, 403}
    if method != "GET":
        statuses.add(409)
    if operation.operation_id in CHARGES_IN_REQUEST:
        statuses.add(402)
    return statuses | OTHER_ANSWERS.get(operation.operation_id or "", set())


#: The header as `ledger.api.idempotent` takes it.
IDEMPOTENCY_KEY = Parameter(
    name="Idempotency-Key",
    param_in=ParamType.HEADER,
    required=False,
    schema=Schema(type=OpenAPIType.STRING, min_length=1, max_length=MAX_KEY_LENGTH),
    description=(
        "Your id of this request (a UUID, say): a retry with the same key gets the first response and moves "
        "no money again; the same key with another request is 409 `idempotency-conflict`. Scoped to the "
        "API key, kept for LEDGER_IDEMPOTENCY_RETENTION (7 days by default)."
    ),
)


def takes_idempotency_key(handler: HTTPRouteHandler) -> bool:
    """`@idempotent` handlers and those taking the `request_key` dependency read the header."""
    taken = handler.parsed_fn_signature.parameters
    return KEYS_DEPENDENCY in taken or REQUEST_KEY_DEPENDENCY in taken


def needs_key(handler: HTTPRouteHandler) -> bool:
    """`RequireRole` asks for a key on the routes that name roles."""
    return handler.opt.get("roles") is not None


def operations(app: Litestar, openapi: OpenAPI) -> Iterator[tuple[HTTPRoute, HTTPRouteHandler, str, Operation]]:
    """Each documented operation with its route, handler and method."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        item = (openapi.paths or {}).get(route.path_format or "/")
        for method, (handler, _) in route.route_handler_map.items():
            operation = getattr(item, method.lower(), None)
            if isinstance(operation, Operation):
                yield route, handler, method, operation


def complete(app: Litestar, openapi: OpenAPI) -> OpenAPI:
    """Add problem details, representations and closed request bodies (see the module) to
    `openapi`, Litestar's document of `app`."""
    components = openapi.components
    schemas = components.schemas
    schemas[PROBLEM] = problem_schema()
    responses = components.responses = dict(components.responses or {})
    for route, handler, method, operation in operations(app, openapi):
        declared = dict(operation.responses or {})
        statuses = answers(route, handler, method, operation) | {int(s) for s in declared if int(s) >= 400}
        for status in sorted(statuses):
            name = response_name(status)
            responses.setdefault(name, problem_response(status))
            declared[str(status)] = Reference(ref=f"#/components/responses/{name}")
        operation.responses = dict(sorted(declared.items()))
        if not needs_key(handler):
            operation.security = []
        add_representations(operation)
        if takes_idempotency_key(handler):
            operation.parameters = [*(operation.parameters or []), IDEMPOTENCY_KEY]
        for struct in request_structs(handler):
            if struct.__struct_config__.forbid_unknown_fields:
                schemas[component_of(struct, schemas)].additional_properties = False
    return openapi


def problem_response(status: int) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=WHEN.get(status, HTTPStatus(status).description),
        content={PROBLEM_JSON: OpenAPIMediaType(schema=Reference(ref=f"#/components/schemas/{PROBLEM}"))},
    )


def add_representations(operation: Operation) -> None:
    """The success response's other media types (`REPRESENTATIONS`)."""
    others = REPRESENTATIONS.get(operation.operation_id or "")
    success = next((r for s, r in (operation.responses or {}).items() if s.startswith("2")), None)
    if not others or not isinstance(success, OpenAPIResponse):
        return
    content = success.content = dict(success.content or {})
    for media_type, selector in others.items():
        content[media_type] = OpenAPIMediaType(
            schema=Schema(type=OpenAPIType.STRING, content_media_type=media_type, description=f"with {selector}")
        )
    selectors = ", ".join(f"{media_type} with {selector}" for media_type, selector in others.items())
    success.description = f"{success.description}. JSON by default; {selectors}."


def request_structs(handler: HTTPRouteHandler) -> Iterator[type[msgspec.Struct]]:
    """The Structs of the handler's request body, and those inside them. The body is the
    handler's `data`, or a dependency's (where Litestar looks for it too)."""
    signatures = [handler.parsed_fn_signature]
    signatures += [provider.parsed_fn_signature for provider in handler.resolve_dependencies().values()]
    data = next((s.parameters["data"] for s in signatures if "data" in s.parameters), None)
    if data is None:
        return
    seen: set[type[Any]] = set()
    pending: list[mi.Type] = [mi.type_info(data.annotation)]
    while pending:
        info = pending.pop()
        if isinstance(info, mi.StructType):
            if info.cls in seen:
                continue
            seen.add(info.cls)
            yield info.cls
            pending += [field.type for field in info.fields]
        elif isinstance(info, mi.Metadata):
            pending.append(info.type)
        elif isinstance(info, mi.UnionType):
            pending += info.types
        elif isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            pending.append(info.item_type)
        elif isinstance(info, mi.TupleType):
            pending += info.item_types
        elif isinstance(info, mi.DictType):
            pending += [info.key_type, info.value_type]


def component_of(cls: type[Any], schemas: dict[str, Schema]) -> str:
    """The component name Litestar gave a class: its name, or as much of its dotted path
    as tells it from another of the same name, joined by `_`."""
    name = re.sub(r"[^a-zA-Z0-9._-]+", "_", cls.__qualname__.replace(".<locals>.", "."))
    key = [*cls.__module__.split("."), name]
    for start in range(len(key) - 1, -1, -1):
        if (candidate := "_".join(key[start:])) in schemas:
            return candidate
    raise LookupError(f"{cls.__module__}.{cls.__qualname__} has no component schema")


def documented(app: Litestar) -> OpenAPI:
    """`app`'s OpenAPI document, completed (once per document Litestar builds)."""
    openapi = app.openapi_schema
    if PROBLEM not in (openapi.components.schemas or {}):
        complete(app, openapi)
    return openapi


async def complete_before_serving(request: Request[Any, Any, Any]) -> None:
    """The schema router's `before_request`: every page of `/schema*` shows the completed
    document. Async, so that it runs on the event loop, one request at a time."""
    documented(request.app)


def schema_router(path: str) -> Router:
    """The router Litestar serves the document and its pages on (`OpenAPIConfig.openapi_router`)."""
    return Router(path, route_handlers=[], include_in_schema=False, before_request=complete_before_serving)
