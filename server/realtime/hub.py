"""The hub: sessions of this process, their channel subscriptions, and the broker.

It implements :class:`core.publish.EventPublisher`: ``publish(event)`` appends the event
to the history of its ``upload:``, ``project:``, ``user:`` and ``tenant:`` channels and
fans it out to every instance; each instance delivers to its local subscribers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.websockets import WebSocket

from core.auth import Principal
from core.events import Event
from core.settings import Settings
from server import metrics
from server.auth import TokenVerifier
from server.realtime import protocol as p
from server.realtime.broker import Broker, BrokerUnavailable, Publication, StreamPosition
from server.realtime.channels import Channel, Namespace
from server.realtime.registry import SessionRegistry
from server.realtime.session import Session, Subscription

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("buildpeer.hub")


@dataclass(frozen=True, slots=True)
class HubConfig:
    ping_interval: float = 25.0
    pong_timeout: float = 8.0
    max_queue_bytes: int = 1024 * 1024
    max_frame_bytes: int = 65536
    history_size: int = 300
    history_ttl: int = 600
    tenant_connection_limit: int = 0
    shutdown_timeout: float = 5.0
    close_timeout: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> HubConfig:
        return cls(
            ping_interval=settings.realtime_ping_seconds,
            pong_timeout=settings.realtime_pong_timeout_seconds,
            max_queue_bytes=settings.realtime_max_queue_bytes,
            max_frame_bytes=settings.realtime_max_frame_bytes,
            history_size=settings.realtime_history_size,
            history_ttl=settings.realtime_history_ttl_seconds,
            tenant_connection_limit=settings.realtime_tenant_connection_limit,
            shutdown_timeout=settings.realtime_shutdown_seconds,
        )


def event_channels(event: Event) -> list[Channel]:
    return [
        Channel(Namespace.UPLOAD, event.upload_id),
        Channel(Namespace.PROJECT, event.project_id),
        Channel(Namespace.USER, event.user_id),
        Channel(Namespace.TENANT, event.tenant_id),
    ]


def event_data(event: Event, upload: dict[str, Any] | None = None) -> bytes:
    """The publication of an event: the event itself plus, when known, the upload's
    current public document (``core.upload_view.upload_document``)."""
    body = event.to_dict()
    if upload is not None:
        body["upload"] = upload
    return orjson.dumps(body)


def _client_channel(broker_channel: str) -> str:
    return broker_channel.split(":", 1)[1]


class Hub:
    def __init__(
        self,
        *,
        broker: Broker,
        pool: asyncpg.Pool,
        verifier: TokenVerifier,
        config: HubConfig | None = None,
        verify_in_thread: bool = False,
    ) -> None:
        self.broker = broker
        self.pool = pool
        self.verifier = verifier
        self.config = config or HubConfig()
        self.registry = SessionRegistry(self.config.tenant_connection_limit)
        self.accepting = False
        self._verify_in_thread = verify_in_thread
        self._sessions: set[Session] = set()
        self._channels: dict[str, dict[Session, Subscription]] = {}
        self._ready: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ---

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.broker.start(self._on_publication, self._on_resubscribed)
        self.accepting = True

    async def stop(self) -> None:
        """Stop accepting, advise every client to reconnect elsewhere, drain, close."""
        self.accepting = False
        sessions = list(self._sessions)
        for session in sessions:
            session.disconnect(p.SHUTDOWN)
        if sessions:
            await asyncio.wait(
                [asyncio.create_task(s.wait_closed()) for s in sessions], timeout=self.config.shutdown_timeout
            )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.shield(self.broker.stop())

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def serve(self, websocket: WebSocket) -> None:
        """The ``/connection/websocket`` endpoint."""
        if not self.accepting:
            await websocket.accept()
            await websocket.close(p.SHUTDOWN.code, p.SHUTDOWN.reason)
            return
        session = Session(self, websocket)
        self._sessions.add(session)
        try:
            await session.serve()
        finally:
            session.disconnect(p.CONNECTION_CLOSED)  # no-op when already closed
            self._sessions.discard(session)

    async def verify_token(self, token: str) -> Principal:
        if self._verify_in_thread:  # a JWKS fetch may block
            return await asyncio.to_thread(self.verifier.verify, token)
        return self.verifier.verify(token)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # --- subscriptions ---

    async def subscribe(
        self, session: Session, sub: Subscription, *, recover: bool, offset: int, epoch: str
    ) -> dict[str, Any]:
        key = sub.broker_channel
        subscribers = self._channels.get(key)
        if subscribers is None:
            subscribers = self._channels[key] = {}
            self._ready[key] = asyncio.create_task(self.broker.subscribe(key), name=f"broker-sub-{key}")
        subscribers[session] = sub  # live publications are buffered in ``sub`` from now on
        ready = self._ready[key]
        try:
            await asyncio.shield(ready)
            pubs, position = await self.broker.history(
                key, since=offset if recover else None, limit=-1 if recover else 0
            )
        except BaseException:
            self._drop(session, sub)
            raise
        result: dict[str, Any] = {"recoverable": True, "positioned": True}
        if recover:
            recovered = (
                epoch == position.epoch
                and offset <= position.offset
                and (offset == position.offset or (bool(pubs) and pubs[0].offset == offset + 1))
            )
            result["was_recovering"] = True
            result["recovered"] = recovered
            if recovered and pubs:
                result["publications"] = [p.publication_dict(pub.data, pub.offset) for pub in pubs]
                position = StreamPosition(max(position.offset, pubs[-1].offset), position.epoch)
        sub.offset, sub.epoch = position.offset, position.epoch
        result["epoch"] = position.epoch
        result["offset"] = position.offset
        assert session.principal is not None
        self._spawn(
            self._quiet(self.broker.add_presence(key, session.client_id, str(session.principal.user_id))),
            "presence-add",
        )
        return result

    def activate(self, session: Session, sub: Subscription) -> None:
        """After the subscribe reply is queued: deliver what arrived meanwhile, go live."""
        buffered, sub.buffer = sub.buffer, []
        sub.recovering = False
        for pub, frame in buffered:
            session.deliver(sub, pub, frame)

    def unsubscribe(self, session: Session, sub: Subscription) -> None:
        self._drop(session, sub)
        self._spawn(
            self._quiet(self.broker.remove_presence(sub.broker_channel, session.client_id)), "presence-rm"
        )

    def forget(self, session: Session) -> None:
        """The session ended: leave its channels and the registry (synchronous)."""
        for sub in session.subscriptions.values():
            self.unsubscribe(session, sub)
        session.subscriptions.clear()
        if session.principal is not None:
            self.registry.remove(session, session.principal.tenant_id, session.principal.user_id)

    def _drop(self, session: Session, sub: Subscription) -> None:
        key = sub.broker_channel
        subscribers = self._channels.get(key)
        if subscribers is None or subscribers.get(session) is not sub:
            return
        del subscribers[session]
        if subscribers:
            return
        del self._channels[key]
        ready = self._ready.pop(key)
        self._spawn(self._release(key, ready), f"broker-unsub-{key}")

    async def _release(self, key: str, ready: asyncio.Task[None]) -> None:
        try:
            await asyncio.shield(ready)
        except Exception:
            return  # never subscribed
        await self._quiet(self.broker.unsubscribe(key))

    async def refresh_presence(self, session: Session) -> None:
        if session.principal is None:
            return
        for sub in list(session.subscriptions.values()):
            await self._quiet(
                self.broker.add_presence(
                    sub.broker_channel, session.client_id, str(session.principal.user_id)
                )
            )

    @staticmethod
    async def _quiet(coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except BrokerUnavailable as exc:
            log.debug("realtime broker call failed: %s", exc)

    async def history(
        self, sub: Subscription, *, limit: int, since: int | None, epoch: str | None, reverse: bool
    ) -> dict[str, Any]:
        cap = self.config.history_size
        limit = cap if limit < 0 or limit > cap else limit
        pubs, position = await self.broker.history(
            sub.broker_channel, since=since, limit=limit, reverse=reverse
        )
        if epoch is not None and since is not None and epoch != position.epoch:
            raise p.ReplyError(p.ErrorCode.UNRECOVERABLE_POSITION)
        return {
            "publications": [p.publication_dict(pub.data, pub.offset) for pub in pubs],
            "epoch": position.epoch,
            "offset": position.offset,
        }

    # --- fan-out ---

    def _on_publication(self, key: str, pub: Publication) -> None:
        subscribers = self._channels.get(key)
        if not subscribers:
            return
        frame = p.publication_push(_client_channel(key), pub.data, pub.offset)
        for session, sub in list(subscribers.items()):
            session.deliver(sub, pub, frame)
        metrics.PUBLICATIONS_DELIVERED.inc(len(subscribers))

    async def _on_resubscribed(self) -> None:
        """The live feed was down: deliver what was published meanwhile from history, or
        tell the client to reconnect and recover (3010) when its position is lost."""
        for key, subscribers in list(self._channels.items()):
            live = [(s, sub) for s, sub in subscribers.items() if not sub.recovering]
            if not live:
                continue
            try:
                pubs, position = await self.broker.history(
                    key, since=min(sub.offset for _, sub in live), limit=-1
                )
            except BrokerUnavailable:
                for session, _ in live:
                    session.disconnect(p.INSUFFICIENT_STATE)
                continue
            name = _client_channel(key)
            for session, sub in live:
                if sub.epoch != position.epoch:
                    session.disconnect(p.INSUFFICIENT_STATE)
                    continue
                for pub in pubs:
                    session.deliver(sub, pub, p.publication_push(name, pub.data, pub.offset))
                if not session.closed and sub.offset < position.offset:
                    session.disconnect(p.INSUFFICIENT_STATE)

    # --- publishing (EventPublisher) ---

    async def publish(self, event: Event, upload: dict[str, Any] | None = None) -> None:
        data = event_data(event, upload)
        key = str(event.upload_id)
        started = time.perf_counter()
        channels = event_channels(event)
        with _tracer.start_as_current_span(
            "publish",
            kind=SpanKind.PRODUCER,
            attributes={"buildpeer.event_type": event.type.value, "buildpeer.channels": len(channels)},
        ):
            await asyncio.gather(
                *(
                    self.broker.publish(channel.broker_name(event.tenant_id), data, key=key)
                    for channel in channels
                )
            )
        metrics.FANOUT_LATENCY.observe(time.perf_counter() - started)

    async def publish_data(
        self, tenant_id: uuid.UUID, channel: Channel, data: bytes, *, key: str | None = None
    ) -> StreamPosition:
        """Publish raw JSON ``data`` to one channel (tests, benchmarks, admin tools)."""
        return await self.broker.publish(channel.broker_name(tenant_id), data, key=key)

    def disconnect_user(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, disconnect: p.Disconnect = p.FORCE_RECONNECT
    ) -> int:
        return self.registry.disconnect_user(tenant_id, user_id, disconnect)
