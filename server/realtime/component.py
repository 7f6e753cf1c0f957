"""Wiring into the Starlette app: the WebSocket route and the hub's lifespan component."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from server.realtime.broker import create_broker
from server.realtime.hub import Hub, HubConfig

log = logging.getLogger(__name__)

PATH = "/connection/websocket"


async def websocket_endpoint(websocket: WebSocket) -> None:
    hub: Hub | None = getattr(websocket.app.state, "realtime", None)
    if hub is None:
        await websocket.close(1013, "real-time hub not running")
        return
    await hub.serve(websocket)


def routes() -> list[WebSocketRoute]:
    return [WebSocketRoute(PATH, websocket_endpoint)]


class RealtimeComponent:
    """Owns the hub for the app's lifespan; sets ``app.state.realtime`` and makes the hub
    the app's ``publisher`` (the Uploads API publishes progress through it)."""

    name = "realtime"

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.hub: Hub | None = None

    async def start(self) -> None:
        state = self.app.state
        settings = state.settings
        url = settings.realtime_broker_url or settings.redis_url
        if not url:
            raise RuntimeError("BUILDPEER_REDIS_URL (or BUILDPEER_REALTIME_BROKER_URL) must be set")
        config = HubConfig.from_settings(settings)
        broker = create_broker(url, history_size=config.history_size, history_ttl=config.history_ttl)
        self.hub = Hub(
            broker=broker,
            pool=state.pool,
            verifier=state.verifier,
            config=config,
            verify_in_thread=bool(settings.jwt_jwks_url),
        )
        await self.hub.start()
        state.realtime = self.hub
        state.publisher = self.hub

    async def stop(self) -> None:
        if self.hub is not None:
            await self.hub.stop()
            self.hub = None
