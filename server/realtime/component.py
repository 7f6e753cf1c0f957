"""Wiring into the Starlette app: the WebSocket route, the node's construction from the
settings, and its lifespan component."""

from __future__ import annotations

from collections.abc import Awaitable

import asyncpg
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from core.settings import Settings
from server.auth import TokenVerifier
from server.realtime import emulation
from server.realtime.broker import create_broker
from server.realtime.config import RealtimeConfig
from server.realtime.node import Node
from server.realtime.transport import WebSocketTransport

PATH = "/connection/websocket"


class WebSocketEndpoint:
    """The WebSocket route as a plain ASGI app: the transport takes the server's
    ``receive``/``send`` (no Starlette ``WebSocket`` or endpoint wrapper held per
    connection)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        node: Node | None = getattr(scope["app"].state, "realtime", None)
        if node is None:  # refused before the handshake (an HTTP 403)
            await send({"type": "websocket.close", "code": 1013, "reason": "real-time hub not running"})
            return
        transport = WebSocketTransport(scope, receive, send)
        if await transport.accept():
            await node.serve(transport)


class WebSocketFront:
    """In front of the app's whole middleware stack: the real-time WebSocket goes straight
    to its endpoint. None of the HTTP middleware applies to it, and every layer was a
    suspended coroutine (and closures) held by each open connection for its lifetime.
    ``__call__`` returns the awaitable it hands over to, so the front adds no layer itself."""

    __slots__ = ("app", "endpoint")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.endpoint = WebSocketEndpoint()

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "websocket" and scope["path"] == PATH:
            return self.endpoint(scope, receive, send)
        return self.app(scope, receive, send)


def routes() -> list[BaseRoute]:
    """The WebSocket, and the bidirectional emulation (HTTP-streaming, SSE, /emulation)."""
    return [WebSocketRoute(PATH, WebSocketEndpoint()), *emulation.routes()]


def build_node(settings: Settings, *, pool: asyncpg.Pool, verifier: TokenVerifier) -> Node:
    """The node with its broker (``BUILDPEER_REALTIME_BROKER_URL``, else the Redis URL)."""
    url = settings.realtime_broker_url or settings.redis_url
    if not url:
        raise RuntimeError("BUILDPEER_REDIS_URL (or BUILDPEER_REALTIME_BROKER_URL) must be set")
    config = RealtimeConfig.from_settings(settings)
    broker = create_broker(
        url,
        history_size=config.history_size,
        history_ttl=config.history_ttl,
        # a separate broker URL is its own Redis; the Cluster setting names REDIS_URL's
        cluster=settings.redis_cluster and url == settings.redis_url,
    )
    return Node(
        broker=broker,
        pool=pool,
        verifier=verifier,
        config=config,
        verify_in_thread=bool(settings.jwt_jwks_url),
    )


class RealtimeComponent:
    """Runs a node for the app's lifespan (start: broker feed, accepting; stop: 3001 to
    every client, drain, broker closed)."""

    name = "realtime"

    def __init__(self, node: Node) -> None:
        self.node = node

    async def start(self) -> None:
        await self.node.start()

    async def stop(self) -> None:
        await self.node.stop()
