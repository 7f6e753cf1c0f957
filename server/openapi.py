"""The OpenAPI 3 schema at ``/openapi.json``, built from the app's own routes.

Every feature documents its endpoints where it defines them::

    from server import openapi

    @openapi.operation("get", summary="List devices", responses={"200": openapi.json_response("Device")},
                       schemas={"Device": {...}})
    async def list_devices(request): ...

(or ``openapi.describe(endpoint, "post", {...})`` for an endpoint defined elsewhere).
The generator walks ``app.routes`` at the first request, so a registered route is in the
schema exactly when it is served; ``undocumented_routes(app)`` lists the gaps (a test
keeps it empty). Shared component schemas: ``Error``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

ATTRIBUTE = "__openapi__"
# Set on endpoints that speak another protocol over HTTP (the real-time transports: the
# Centrifugo client protocol, documented by centrifugal/protocol, not by this document).
OTHER_PROTOCOL = "__openapi_other_protocol__"
F = TypeVar("F", bound=Callable[..., Any])
Operation = dict[str, Any]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
        "message": {"type": "string", "description": "Repeated for Companion clients (Uppy)"},
    },
}

_ERROR_TEXT = {
    "400": "Bad input",
    "401": "Missing or invalid bearer token",
    "403": "Not allowed for this role or project",
    "404": "Not found (or another tenant's)",
    "409": "Conflicts with the resource's state",
    "413": "Too large",
    "415": "Type not allowed",
    "429": "Rate limited; see Retry-After",
    "503": "A backing service is unavailable",
}

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: str | Mapping[str, Any], description: str = "OK") -> dict[str, Any]:
    body = ref(schema) if isinstance(schema, str) else dict(schema)
    return {"description": description, "content": {"application/json": {"schema": body}}}


def errors(*codes: int | str) -> dict[str, Any]:
    """Error responses with the standard body, e.g. ``errors(400, 401, 404)``."""
    return {str(c): json_response("Error", _ERROR_TEXT.get(str(c), "Error")) for c in codes}


def json_body(schema: str | Mapping[str, Any], *, required: bool = True) -> dict[str, Any]:
    body = ref(schema) if isinstance(schema, str) else dict(schema)
    return {"required": required, "content": {"application/json": {"schema": body}}}


def path_param(name: str, schema: Mapping[str, Any] | None = None, description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": dict(schema or {"type": "string", "format": "uuid"}),
        "description": description,
    }


def query_param(
    name: str,
    schema: Mapping[str, Any] | None = None,
    *,
    required: bool = False,
    description: str = "",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": dict(schema or {"type": "string"}),
        "description": description,
        **extra,
    }


def describe(
    endpoint: Any, method: str, operation: Operation, schemas: Mapping[str, Any] | None = None
) -> Any:
    """Attach the documentation of ``method`` to ``endpoint`` (returned unchanged)."""
    docs: dict[str, Any] = dict(getattr(endpoint, ATTRIBUTE, {}))
    docs[method.lower()] = {"operation": operation, "schemas": dict(schemas or {})}
    setattr(endpoint, ATTRIBUTE, docs)
    return endpoint


def other_protocol(endpoint: Any, protocol: str) -> Any:
    """Mark ``endpoint`` as speaking ``protocol`` rather than this API: it is left out of the
    document and of :func:`undocumented_routes` (returned unchanged)."""
    setattr(endpoint, OTHER_PROTOCOL, protocol)
    return endpoint


def operation(method: str, *, schemas: Mapping[str, Any] | None = None, **fields: Any) -> Callable[[F], F]:
    """Decorator form of :func:`describe`: ``fields`` is the OpenAPI Operation object."""

    def decorate(endpoint: F) -> F:
        described: F = describe(endpoint, method, fields, schemas)
        return described

    return decorate


_CONVERTER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:[a-z]+)?\}")


def _walk(routes: Iterable[BaseRoute], prefix: str = "") -> Iterable[tuple[str, Route]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _walk(route.routes or [], prefix + route.path)
        elif isinstance(route, Route):
            yield _CONVERTER.sub(r"{\1}", prefix + route.path), route


def _methods(route: Route) -> list[str]:
    return sorted(m.lower() for m in (route.methods or {"GET"}) if m not in ("HEAD", "OPTIONS"))


def build_schema(
    routes: Iterable[BaseRoute], *, title: str = "BuildPeer API", version: str = "1"
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for path, route in _walk(routes):
        docs = getattr(route.endpoint, ATTRIBUTE, {})
        for method in _methods(route):
            doc = docs.get(method)
            if doc is None:
                continue
            paths.setdefault(path, {})[method] = doc["operation"]
            schemas.update(doc["schemas"])
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                # POST /api/v1/session; same-origin requests only (server/session_cookie.py)
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "bp_session"},
            },
        },
    }


def undocumented_routes(routes: Iterable[BaseRoute]) -> list[str]:
    missing: list[str] = []
    for path, route in _walk(routes):
        if getattr(route.endpoint, OTHER_PROTOCOL, None):
            continue
        docs = getattr(route.endpoint, ATTRIBUTE, {})
        missing.extend(f"{m.upper()} {path}" for m in _methods(route) if m not in docs)
    return missing


def apply_settings(node: Any, settings: Any) -> Any:
    """A copy of ``node`` with the configuration-dependent markers filled in from
    ``settings``: ``x-enum-setting: NAME`` → ``enum``, ``x-maximum-setting: NAME`` → ``maximum``
    (so the document states the limits this server enforces)."""
    if isinstance(node, list):
        return [apply_settings(item, settings) for item in node]
    if not isinstance(node, dict):
        return node
    result = {
        k: apply_settings(v, settings)
        for k, v in node.items()
        if not k.startswith("x-") or "-setting" not in k
    }
    if "x-enum-setting" in node:
        result["enum"] = list(getattr(settings, node["x-enum-setting"]))
    if "x-maximum-setting" in node:
        result["maximum"] = int(getattr(settings, node["x-maximum-setting"]))
    return result


async def openapi_json(request: Request) -> Response:
    schema = getattr(request.app.state, "openapi_schema", None)
    if schema is None:
        schema = apply_settings(build_schema(request.app.routes), request.app.state.settings)
        request.app.state.openapi_schema = schema
    return JSONResponse(schema)


# The skeleton's own endpoints, documented here rather than in their modules.
def document_builtin(health: Any) -> None:
    describe(
        health,
        "get",
        {
            "summary": "Liveness and dependencies",
            "operationId": "health",
            "responses": {
                "200": json_response({"type": "object"}, "PostgreSQL, Redis and S3 answer"),
                "503": json_response({"type": "object"}, "Something is down (named in the body)"),
            },
        },
    )
    describe(
        openapi_json,
        "get",
        {
            "summary": "This OpenAPI document",
            "operationId": "openapi",
            "responses": {"200": json_response({"type": "object"})},
        },
    )
