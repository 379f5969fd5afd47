"""The OpenAPI document says what the API sends (`ledger.api.openapi`): errors as problem
details, CSV and PDF where they come, closed request bodies where they are closed.

Read from `/schema/openapi.json`, as a client reads it; what the API answers is checked
against it by Schemathesis in `test_openapi_fuzz.py`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
from collections.abc import Iterator
from typing import Any

import msgspec
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

import ledger.api
from ledger.api.openapi import REPRESENTATIONS, documented
from ledger.api.schemas import StatementOut
from tests.e2e.conftest import Api
from tests.e2e.test_finance_api import release

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
JSON = "application/json"
OPEN_PREFIXES = ("/health/", "/v1/webhooks/")


def document(api: Api) -> dict[str, Any]:
    response = api.client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    spec: dict[str, Any] = response.json()
    return spec


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = spec["components"][section][name]
    return node


def errors(spec: dict[str, Any], operation: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(s): resolve(spec, r) for s, r in operation["responses"].items() if s[0] in "45"}


def test_every_error_an_operation_declares_is_a_problem_details_object(api: Api) -> None:
    spec = document(api)
    for method, path, operation in operations(spec):
        declared = errors(spec, operation)
        assert {500, 503} <= set(declared), f"{method} {path}: {sorted(declared)}"
        for status, response in declared.items():
            content = response.get("content", {})
            assert list(content) == [PROBLEM_JSON], f"{method} {path} {status}: {list(content)}"
            assert content[PROBLEM_JSON]["schema"] == {"$ref": PROBLEM_REF}, f"{method} {path} {status}"


def test_no_operation_documents_litestars_default_error_body(api: Api) -> None:
    spec = document(api)
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            for media_type, content in resolve(spec, response).get("content", {}).items():
                schema = resolve(spec, content.get("schema", {}))
                assert "status_code" not in schema.get("properties", {}), f"{method} {path} {status} {media_type}"


def test_the_problem_schema_is_rfc_9457_with_the_members_the_api_adds(api: Api) -> None:
    problem = document(api)["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "instance"}
    assert {"field", "errors"} <= set(problem["properties"])
    assert problem["additionalProperties"] is True  # an error's data are members too


def test_each_operation_declares_the_errors_its_route_can_answer(api: Api) -> None:
    spec = document(api)
    for method, path, operation in operations(spec):
        declared = set(errors(spec, operation))
        name = f"{method} {path}"
        if path.startswith(OPEN_PREFIXES):
            assert operation.get("security") == [], f"{name} needs no key"
            assert not declared & {401, 403}, name
        else:
            assert "security" not in operation, f"{name} takes the API's bearer key"
            assert {401, 403} <= declared, name
        if operation.get("parameters") or "requestBody" in operation:
            assert {400, 422} <= declared, name
        if "{" in path:
            assert 404 in declared, name
        if method != "GET":
            assert 409 in declared, name
    approve = spec["paths"]["/v1/milestones/{milestone_id}/approve"]["post"]
    assert "402" in approve["responses"], "a bonus the provider declines is a 402"


def test_every_representation_a_handler_sends_is_documented(api: Api) -> None:
    """The media types in each handler's code (`media_type=...`) are those its operation's
    success response declares: JSON, and `REPRESENTATIONS`' for the operation."""
    spec = document(api)
    documented = {op["operationId"]: op for _, _, op in operations(spec)}
    assert set(REPRESENTATIONS) <= set(documented), "the table names operations that exist"
    for handler in schema_handlers(api):
        operation_id = str(handler.operation_id)
        sent = media_types_in(handler) - {JSON}
        assert sent == set(REPRESENTATIONS.get(operation_id, {})), f"{operation_id} sends {sorted(sent)}"
        success = next(resolve(spec, r) for s, r in documented[operation_id]["responses"].items() if s[0] == "2")
        if sent:
            assert set(success["content"]) == {JSON, *sent}, operation_id


def schema_handlers(api: Api) -> Iterator[HTTPRouteHandler]:
    for route in api.client.app.routes:
        if isinstance(route, HTTPRoute):
            for handler, _ in route.route_handler_map.values():
                if handler.resolve_include_in_schema():
                    yield handler


def media_types_in(handler: HTTPRouteHandler) -> set[str]:
    """The `media_type=` arguments in the handler's own code, which must be constants."""
    fn = handler.fn
    fn = inspect.unwrap(getattr(fn, "func", fn))  # a sync handler runs as an `AsyncCallable`
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    found = set()
    for node in ast.walk(tree):
        for keyword in node.keywords if isinstance(node, ast.Call) else []:
            if keyword.arg == "media_type":
                value = literal(keyword.value, fn.__globals__)
                assert value is not None, (
                    f"{handler.operation_id}: media_type={ast.unparse(keyword.value)} is no constant"
                )
                found.add(value)
    return found


def literal(node: ast.expr, names: dict[str, Any]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and isinstance(names.get(node.id), str):
        return str(names[node.id])
    return None


def test_request_bodies_refuse_unknown_members_exactly_where_their_struct_does(api: Api) -> None:
    spec = document(api)
    structs = api_structs()
    components = spec["components"]["schemas"]
    in_bodies = {
        name
        for _, _, operation in operations(spec)
        for content in operation.get("requestBody", {}).get("content", {}).values()
        for name in referenced(spec, content["schema"])
    }
    assert {"ContractCreate", "Amount"} <= in_bodies  # a body and a Struct inside one
    for name in in_bodies:
        assert name in structs, f"{name}: no msgspec Struct of ledger.api has this name"
        forbids = structs[name].__struct_config__.forbid_unknown_fields
        closed = components[name].get("additionalProperties") is False
        assert closed == forbids, f"{name}: forbid_unknown_fields={forbids}, additionalProperties false={closed}"


def referenced(spec: dict[str, Any], node: Any, seen: set[str] | None = None) -> set[str]:
    """The component schemas `node` refers to, directly or through others."""
    seen = set() if seen is None else seen
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/") and (name := ref.rsplit("/", 1)[1]) not in seen:
            seen.add(name)
            referenced(spec, spec["components"]["schemas"][name], seen)
        for value in node.values():
            referenced(spec, value, seen)
    elif isinstance(node, list):
        for value in node:
            referenced(spec, value, seen)
    return seen


def api_structs() -> dict[str, type[msgspec.Struct]]:
    """The msgspec Structs defined in `ledger.api`'s modules, by name."""
    found: dict[str, type[msgspec.Struct]] = {}
    for module_info in pkgutil.iter_modules(ledger.api.__path__, "ledger.api."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, msgspec.Struct) and value.__module__ == module.__name__:
                assert found.setdefault(value.__name__, value) is value, f"two Structs named {value.__name__}"
    return found


def test_every_schema_page_shows_the_completed_document(api: Api) -> None:
    """The document is completed on the first request to any page of `/schema`, and once."""
    swagger = api.client.get("/schema/swagger")  # embeds the document; asked before openapi.json
    assert swagger.status_code == 200
    assert PROBLEM_JSON in swagger.text
    served = document(api)
    assert served == document(api)
    assert documented(api.client.app).to_schema() == served


def test_every_operation_that_changes_something_declares_the_optional_idempotency_key(api: Api) -> None:
    spec = document(api)
    for method, path, operation in operations(spec):
        headers = [p for p in operation.get("parameters", []) if p["in"] == "header" and p["name"] == "Idempotency-Key"]
        # A PUT (a party's record) is idempotent by itself: it takes no key.
        changes = method in {"POST", "PATCH", "DELETE"} and not path.startswith(OPEN_PREFIXES)
        if not changes:
            assert not headers, (method, path)
            continue
        [header] = headers
        assert header["required"] is False and header["schema"] == {"type": "string", "minLength": 1, "maxLength": 255}
    too_long = api.client.post(
        "/v1/contracts",
        json={"client_id": "cl_1", "freelancer_id": "fr_1", "currency": "USD", "title": "Logo"},
        headers=api.headers(**{"Idempotency-Key": "k" * 256}),
    )
    assert too_long.status_code == 422 and too_long.json()["field"] == "Idempotency-Key"  # as documented


def test_a_statement_s_json_is_documented_as_the_statement_it_streams(api: Api) -> None:
    spec = document(api)
    for path in ("/v1/accounts/{code}/statement", "/v1/parties/{party_id}/statement"):
        success = spec["paths"][path]["get"]["responses"]["200"]["content"][JSON]["schema"]
        assert success == {"$ref": "#/components/schemas/StatementOut"}, path
    release(api, "1000.00")
    streamed = api.client.get(
        "/v1/parties/fr_1/statement",
        params={"role": "freelancer", "currency": "USD", "from": "2026-01-01", "to": "2027-01-01"},
        headers=api.headers(),
    )
    assert streamed.status_code == 200, streamed.text
    statement = msgspec.json.decode(streamed.content, type=StatementOut, strict=True)  # the shape documented
    assert statement.lines and statement.account == "fr_1"
