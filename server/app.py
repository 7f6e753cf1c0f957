"""The Starlette application factory: the composition root of the HTTP side.

One lifespan opens PostgreSQL, Redis and the AWS clients in order, starts the
background components, and closes everything in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Protocol

import aioboto3
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from core.db import create_pool
from core.publish import EventPublisher, MemoryPublisher
from core.settings import Settings
from server import (
    dashboard,
    derivatives_api,
    notifications_api,
    openapi,
    realtime,
    redis_client,
    session_api,
    uploads,
)
from server.auth import TokenVerifier
from server.errors import EXCEPTION_HANDLERS
from server.gc_policy import GcPolicy
from server.health import health
from server.metrics import MetricsListener
from server.middleware import CORSMiddleware, RequestContextMiddleware
from server.proxies import ClientAddressMiddleware
from server.realtime.component import WebSocketFront
from server.status_cache import StatusCache
from server.telemetry import setup_tracing, shutdown_tracing
from server.uploads.ratelimit import RateLimitMiddleware
from server.uploads.status import StatusFastPath

log = logging.getLogger(__name__)


class App(Starlette):
    """Starlette, with the status poll's fast path (:class:`StatusFastPath`) in front of the
    whole middleware stack: the most requested route skips the layers it does not need; and
    the real-time WebSocket before it (:class:`~server.realtime.component.WebSocketFront`)."""

    def build_middleware_stack(self) -> ASGIApp:
        return WebSocketFront(StatusFastPath(super().build_middleware_stack(), self.state.settings))


class Component(Protocol):
    """A background part owned by the app: started after the clients open, stopped
    (in reverse order) before they close. ``stop`` must drain within its own deadline."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def aws_client_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"region_name": settings.aws_region}
    if settings.aws_endpoint_url:
        kwargs.update(
            endpoint_url=settings.aws_endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    return kwargs


openapi.document_builtin(health)


def _routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),  # /metrics: the internal listener only
    ]
    # Feature routes register here (one line each).
    routes += uploads.routes()
    routes.append(Route("/openapi.json", openapi.openapi_json, methods=["GET"]))
    routes += realtime.routes()
    routes += derivatives_api.routes()
    routes += dashboard.routes()
    routes += notifications_api.routes()
    routes += session_api.routes()
    return routes


def _components(app: Starlette, node: realtime.Node) -> list[Component]:
    components: list[Component] = []
    # Feature components (hub, consumers, sweepers, schedulers) register here.
    components += uploads.components(app.state)
    components.append(realtime.RealtimeComponent(node))
    if app.state.settings.events_consumer_enabled:
        components.append(realtime.EventConsumer.for_app(app, node))
    components += notifications_api.components(app)
    return components


async def _stop_components(components: list[Component]) -> None:
    """Every component but the real-time node stops at once (the queue consumers' long polls
    end together, not one after another), then the node they publish through. The first
    error (a consumer whose loop had crashed) is raised after everything has stopped."""
    node_parts = [c for c in components if isinstance(c, realtime.RealtimeComponent)]
    others = [c for c in components if c not in node_parts]
    errors = [r for r in await asyncio.gather(*(c.stop() for c in others), return_exceptions=True) if r]
    for component in node_parts:
        try:
            await component.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def create_app(settings: Settings, *, run_components: bool = True) -> Starlette:
    """``run_components=False`` serves HTTP only (tests that drive components themselves)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            provider = setup_tracing(settings)
            stack.callback(shutdown_tracing, provider)
            if settings.metrics_port:
                app.state.metrics_listener = MetricsListener(settings.metrics_host, settings.metrics_port)
                await app.state.metrics_listener.start()
                stack.push_async_callback(app.state.metrics_listener.stop)
            if not settings.database_url or not settings.redis_url:
                raise RuntimeError("BUILDPEER_DATABASE_URL and BUILDPEER_REDIS_URL must be set")
            app.state.pool = await create_pool(
                settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
            )
            stack.push_async_callback(app.state.pool.close)
            app.state.redis = redis_client.connect(settings.redis_url, cluster=settings.redis_cluster)
            stack.push_async_callback(app.state.redis.aclose)
            await redis_client.prepare(app.state.redis)
            app.state.status_cache = StatusCache(app.state.redis, settings.status_cache_ttl_seconds)
            app.state.aws = aioboto3.Session()
            aws_kwargs = aws_client_kwargs(settings)
            app.state.s3 = await stack.enter_async_context(app.state.aws.client("s3", **aws_kwargs))
            app.state.sqs = await stack.enter_async_context(app.state.aws.client("sqs", **aws_kwargs))
            app.state.sns = await stack.enter_async_context(app.state.aws.client("sns", **aws_kwargs))
            if run_components:
                # The publisher (the real-time node) exists before the components using it.
                node = realtime.build_node(settings, pool=app.state.pool, verifier=app.state.verifier)
                app.state.realtime = node
                app.state.publisher = node
                started: list[Component] = []
                stack.push_async_callback(_stop_components, started)
                for component in _components(app, node):
                    await component.start()
                    started.append(component)
                    log.info("component started", extra={"component": component.name})
            gc_policy = GcPolicy()  # see server/gc_policy.py: a third of a poll's CPU otherwise
            gc_policy.settle()
            stack.callback(gc_policy.restore)
            yield

    app = App(
        routes=_routes(),
        middleware=[
            Middleware(ClientAddressMiddleware, trusted=settings.trusted_proxies),  # first: who asks
            Middleware(RequestContextMiddleware),
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=["ETag", "X-Request-ID", "Retry-After"],
                max_age=3600,
            ),
            Middleware(RateLimitMiddleware),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    if not run_components:  # no real-time node: publications are kept for the test to read
        publisher: EventPublisher = MemoryPublisher()
        app.state.publisher = publisher
    return app
