"""Pure ASGI middleware: request ids, request metrics and spans, CORS."""

from __future__ import annotations

import itertools
import os
import re
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.middleware.cors import CORSMiddleware as StarletteCORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import logging as ctx
from server import metrics

_tracer = trace.get_tracer("buildpeer.server")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ID_PREFIX = os.urandom(8).hex()  # this process; request ids are the prefix + a counter
_MAX_LABEL_SETS = 4096  # bounds the (method, route, status) children cached per process


_ids = itertools.count()
_observers: dict[tuple[str, str, int], Any] = {}


def request_id(sent: str) -> str:
    """The request's id: its ``X-Request-ID`` when sane, else a new one (this process's
    prefix + a counter)."""
    if sent and _SAFE_ID.match(sent):
        return sent
    return f"{_ID_PREFIX}{next(_ids):016x}"


def latency_observer(method: str, route: str, status: int) -> Any:
    """The latency histogram's child for (method, route template, status), looked up once
    per combination and then cached (bounded)."""
    key = (method, route, status)
    observer = _observers.get(key)
    if observer is None:
        observer = metrics.HTTP_LATENCY.labels(method, route, str(status))
        if len(_observers) < _MAX_LABEL_SETS:
            _observers[key] = observer
    return observer


class RequestContextMiddleware:
    """Takes ``X-Request-ID`` (when sane) or makes one; echoes it; times the request.

    Per request only what an operator reads: the latency histogram by method, route
    template and status (the labelled child looked up once per combination, then cached),
    and a server span only when a trace exporter is installed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._observers: dict[tuple[str, object, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")
                break
        rid = request_id(rid)
        token = ctx.request_id.set(rid)
        started = time.perf_counter()
        status = 500
        rid_header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        traced = tracing()
        if traced:
            span = _tracer.start_span(f"HTTP {scope['method']}", kind=SpanKind.SERVER)
            context_token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if traced:
                route = _route_template(scope)
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.status_code", status)
                span.set_attribute("buildpeer.request_id", rid)
                span.end()
                otel_context.detach(context_token)
            self._observer(scope, status).observe(time.perf_counter() - started)
            ctx.request_id.reset(token)
            ctx.tenant_id.set(None)

    def _observer(self, scope: Scope, status: int) -> Any:
        key = (scope["method"], scope.get("endpoint"), status)
        observer = self._observers.get(key)
        if observer is None:
            observer = latency_observer(key[0], _route_template(scope), status)
            if len(self._observers) < _MAX_LABEL_SETS:
                self._observers[key] = observer
        return observer


class CORSMiddleware(StarletteCORSMiddleware):
    """Starlette's CORS middleware without its per-request work on requests that carry no
    ``Origin`` (same-origin, curl, mobile apps, polling scripts): those only get
    ``Vary: Origin``, exactly as Starlette adds it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, _ in scope["headers"]:
            if name == b"origin":
                await super().__call__(scope, receive, send)
                return

        async def vary_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                for i, (name, value) in enumerate(headers):
                    if name.lower() == b"vary":
                        headers[i] = (name, value + b", Origin")
                        break
                else:
                    headers.append(_VARY_ORIGIN)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, vary_origin)


_VARY_ORIGIN = (b"vary", b"Origin")
VARY_ORIGIN = _VARY_ORIGIN  # what a response to a request without ``Origin`` carries


def tracing() -> bool:
    """Whether a tracer provider is installed (``trace.get_tracer_provider()`` reads the
    environment on every call; the global it returns is all that matters here)."""
    return getattr(trace, "_TRACER_PROVIDER", 1) is not None


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
