"""Pure ASGI middleware: request ids and request metrics."""

from __future__ import annotations

import re
import time
import uuid

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import logging as ctx
from server import metrics

_tracer = trace.get_tracer("buildpeer.server")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Takes ``X-Request-ID`` (when sane) or makes one; echoes it; times the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = ctx.request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        span = _tracer.start_span(f"HTTP {scope['method']}", kind=SpanKind.SERVER)
        context_token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_template(scope)
            span.update_name(f"{scope['method']} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.status_code", status)
            span.set_attribute("buildpeer.request_id", rid)
            span.end()
            otel_context.detach(context_token)
            metrics.HTTP_LATENCY.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )
            ctx.request_id.reset(token)
            ctx.tenant_id.set(None)


def _route_template(scope: Scope) -> str:
    """The path template of the route that served the request, from the endpoint the
    router already put in the scope (no second round of matching)."""
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return "unmatched"
    app = scope.get("app")
    state = getattr(app, "state", None)
    labels: dict[object, str] | None = getattr(state, "route_labels", None)
    if labels is None:
        routes = getattr(getattr(app, "router", None), "routes", [])
        labels = {getattr(r, "endpoint", None): str(getattr(r, "path", "other")) for r in reversed(routes)}
        if state is not None:
            state.route_labels = labels
    return labels.get(endpoint, "other")
