"""One client connection: reads commands, answers them, and writes replies and pushes
through a send queue bounded in bytes.

Tasks per session (all owned, all cancelled at the end): the reader, the writer, the
pinger and, once connected, the expiry timer. ``disconnect`` is synchronous and
idempotent: it detaches the session from the hub at once (so fan-out never waits on a
dead or slow client), then the writer flushes what is queued (nothing, for a slow
client) and the socket is closed with the disconnect's code within a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from core.auth import Principal
from core.db import DatabaseUnavailable
from server.auth import AuthError
from server.realtime import protocol as p
from server.realtime.broker import BrokerUnavailable, Publication
from server.realtime.channels import Channel, UnknownChannel, may_subscribe, parse_channel
from server.realtime.registry import ConnectionLimitReached

if TYPE_CHECKING:
    from server.realtime.hub import Hub

log = logging.getLogger(__name__)

SERVER_VERSION = "buildpeer-1"
MAX_CHANNELS_PER_CONNECTION = 128
MAX_RECOVERY_BUFFER = 1000
MAX_OFFSET = 2**53  # offsets stay exact in Lua (doubles) and JavaScript
WRITE_BATCH_CHARS = 256 * 1024


@dataclass(eq=False)
class Subscription:
    channel: Channel
    broker_channel: str
    offset: int = 0
    epoch: str = ""
    recovering: bool = True
    buffer: list[tuple[Publication, str]] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Out:
    text: str
    key: str | None
    dead: bool = False


class Session:
    def __init__(self, hub: Hub, websocket: WebSocket) -> None:
        self.hub = hub
        self.ws = websocket
        self.config = hub.config
        self.client_id = str(uuid.uuid4())
        self.principal: Principal | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.closed = False
        self.close_reason: p.Disconnect | None = None
        self._peer_gone = False
        self._queue: deque[_Out] = deque()
        self._coalesce: dict[str, _Out] = {}
        self.queued_chars = 0
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self._seen = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ---

    async def serve(self) -> None:
        await self.ws.accept()
        writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.client_id}")
        self._tasks += [
            asyncio.create_task(self._read_loop(), name=f"ws-reader-{self.client_id}"),
            asyncio.create_task(self._ping_loop(), name=f"ws-pinger-{self.client_id}"),
        ]
        try:
            await self._done.wait()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            try:
                await asyncio.wait_for(self._flush_and_close(writer), self.config.close_timeout)
            except (TimeoutError, asyncio.CancelledError):
                pass
            finally:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)

    async def _flush_and_close(self, writer: asyncio.Task[None]) -> None:
        self._wake.set()
        if self.close_reason == p.SLOW:
            writer.cancel()  # its queue is dropped; the close frame goes after what is in flight
        await asyncio.gather(asyncio.shield(writer), return_exceptions=True)
        if self._peer_gone:
            return
        reason = self.close_reason or p.CONNECTION_CLOSED
        with contextlib.suppress(Exception):
            await self.ws.close(reason.code, reason.reason)

    def disconnect(self, reason: p.Disconnect) -> None:
        """End the session (idempotent). The hub forgets it at once."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if reason == p.SLOW:
            self._queue.clear()
            self._coalesce.clear()
            self.queued_chars = 0
        self.hub.forget(self)
        self._wake.set()
        self._done.set()
        if reason not in (p.CONNECTION_CLOSED, p.SHUTDOWN):
            log.info("websocket disconnected", extra={"client": self.client_id, "code": reason.code})

    async def wait_closed(self) -> None:
        await self._done.wait()

    # --- writing ---

    def enqueue(self, text: str, key: str | None = None) -> None:
        if self.closed:
            return
        if key is not None:
            previous = self._coalesce.get(key)
            if previous is not None and not previous.dead:
                previous.dead = True  # superseded by a newer state of the same upload
                self.queued_chars -= len(previous.text)
        entry = _Out(text, key)
        self._queue.append(entry)
        if key is not None:
            self._coalesce[key] = entry
        self.queued_chars += len(text)
        if self.queued_chars > self.config.max_queue_bytes:
            self.disconnect(p.SLOW)
            return
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self.closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            parts: list[str] = []
            size = 0
            while self._queue and size < WRITE_BATCH_CHARS:
                entry = self._queue.popleft()
                if entry.dead:
                    continue
                self.queued_chars -= len(entry.text)
                if entry.key is not None and self._coalesce.get(entry.key) is entry:
                    del self._coalesce[entry.key]
                parts.append(entry.text)
                size += len(entry.text)
            if not parts:
                continue
            try:
                await self.ws.send_text("\n".join(parts))
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._peer_gone = True
                self.disconnect(p.WRITE_ERROR)
                return

    # --- reading ---

    async def _read_loop(self) -> None:
        try:
            while not self.closed:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    self._peer_gone = True
                    self.disconnect(p.CONNECTION_CLOSED)
                    return
                self._seen = time.monotonic()
                text = message.get("text")
                if text is None:
                    self.disconnect(p.BAD_REQUEST)  # JSON protocol: text frames only
                    return
                if (
                    len(text) > self.config.max_frame_bytes
                    or len(text.encode()) > self.config.max_frame_bytes
                ):
                    log.info("websocket frame too large", extra={"client": self.client_id})
                    self.disconnect(p.BAD_REQUEST)
                    return
                try:
                    commands = p.decode_frame(text)
                except p.ProtocolViolation as exc:
                    log.info("websocket protocol violation: %s", exc.detail, extra={"client": self.client_id})
                    self.disconnect(exc.disconnect)
                    return
                for command in commands:
                    await self._handle(command)
                    if self.closed:
                        return
        except (WebSocketDisconnect, OSError):
            self._peer_gone = True
            self.disconnect(p.CONNECTION_CLOSED)
        except RuntimeError:  # receive after the socket closed
            self._peer_gone = True
            self.disconnect(p.CONNECTION_CLOSED)

    async def _handle(self, command: p.Command) -> None:
        if command.method is None:
            return  # pong: _seen was updated
        if self.principal is None and command.method != "connect":
            self.disconnect(p.BAD_REQUEST)
            return
        handler = _HANDLERS.get(command.method)
        try:
            if handler is None:
                raise p.ReplyError(p.ErrorCode.METHOD_NOT_FOUND)
            await handler(self, command)
        except p.ReplyError as exc:
            if command.id:
                self.enqueue(p.error_reply(command.id, exc))
        except p.ProtocolViolation as exc:
            log.info("websocket protocol violation: %s", exc.detail, extra={"client": self.client_id})
            self.disconnect(exc.disconnect)
        except (BrokerUnavailable, DatabaseUnavailable) as exc:
            log.warning("realtime dependency unavailable: %s", exc)
            if command.id:
                self.enqueue(p.error_reply(command.id, p.ReplyError(p.ErrorCode.INTERNAL, temporary=True)))
        except Exception:
            log.exception("websocket command failed", extra={"client": self.client_id})
            if command.id:
                self.enqueue(p.error_reply(command.id, p.ReplyError(p.ErrorCode.INTERNAL)))

    def _reply(self, command: p.Command, result: dict[str, Any]) -> None:
        if command.id and command.method:
            self.enqueue(p.reply(command.id, command.method, result))

    # --- timers ---

    async def _ping_loop(self) -> None:
        interval, timeout = self.config.ping_interval, self.config.pong_timeout
        await asyncio.sleep(interval)
        if self.principal is None:
            self.disconnect(p.STALE)  # never authenticated
            return
        while not self.closed:
            sent = time.monotonic()
            self.enqueue(p.PING)
            await asyncio.sleep(min(timeout, interval))
            if self._seen < sent:
                self.disconnect(p.NO_PONG)
                return
            await self.hub.refresh_presence(self)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - sent)))

    async def _expiry_loop(self) -> None:
        while not self.closed and self.principal is not None:
            left = self.principal.expires_at - time.time()
            if left <= 0:
                self.disconnect(p.EXPIRED)
                return
            await asyncio.sleep(left)

    # --- commands ---

    async def _verify(self, params: dict[str, Any]) -> Principal:
        token = params.get("token")
        if not isinstance(token, str) or not token:
            raise p.ProtocolViolation("no token", p.INVALID_TOKEN)
        try:
            return await self.hub.verify_token(token)
        except AuthError as exc:
            if exc.code == "token_expired":
                raise p.ReplyError(p.ErrorCode.TOKEN_EXPIRED) from exc
            raise p.ProtocolViolation(exc.message, p.INVALID_TOKEN) from exc

    def _ttl(self) -> int:
        assert self.principal is not None
        return max(1, int(self.principal.expires_at - time.time()))

    async def _cmd_connect(self, command: p.Command) -> None:
        if self.principal is not None:
            raise p.ProtocolViolation("already connected")
        principal = await self._verify(command.params)
        if self.closed:
            return
        try:
            self.hub.registry.add(self, principal.tenant_id, principal.user_id)
        except ConnectionLimitReached as exc:
            raise p.ReplyError(p.ErrorCode.LIMIT_EXCEEDED, "tenant connection limit", temporary=True) from exc
        self.principal = principal
        self._tasks.append(asyncio.create_task(self._expiry_loop(), name=f"ws-expiry-{self.client_id}"))
        self._reply(
            command,
            {
                "client": self.client_id,
                "version": SERVER_VERSION,
                "expires": True,
                "ttl": self._ttl(),
                "ping": max(1, round(self.config.ping_interval)),
                "pong": True,
            },
        )

    async def _cmd_refresh(self, command: p.Command) -> None:
        principal = await self._verify(command.params)
        assert self.principal is not None
        if (principal.tenant_id, principal.user_id) != (self.principal.tenant_id, self.principal.user_id):
            raise p.ProtocolViolation("refresh token is for another user", p.INVALID_TOKEN)
        self.principal = principal
        self._reply(
            command,
            {"client": self.client_id, "version": SERVER_VERSION, "expires": True, "ttl": self._ttl()},
        )

    async def _cmd_subscribe(self, command: p.Command) -> None:
        assert self.principal is not None
        name = command.params.get("channel")
        if not isinstance(name, str) or not name:
            raise p.ReplyError(p.ErrorCode.BAD_REQUEST, "channel required")
        if name in self.subscriptions:
            raise p.ReplyError(p.ErrorCode.ALREADY_SUBSCRIBED)
        if len(self.subscriptions) >= MAX_CHANNELS_PER_CONNECTION:
            raise p.ReplyError(p.ErrorCode.LIMIT_EXCEEDED, "too many channels")
        try:
            channel = parse_channel(name)
        except UnknownChannel as exc:
            raise p.ReplyError(p.ErrorCode.UNKNOWN_CHANNEL) from exc
        recover = command.params.get("recover") is True
        offset = command.params.get("offset", 0)
        epoch = command.params.get("epoch", "")
        if not _is_offset(offset) or not isinstance(epoch, str):
            raise p.ReplyError(p.ErrorCode.BAD_REQUEST, "offset must be a non-negative integer")
        if not await may_subscribe(self.hub.pool, self.principal, channel):
            raise p.ReplyError(p.ErrorCode.PERMISSION_DENIED)
        if self.closed:
            return
        sub = Subscription(channel, channel.broker_name(self.principal.tenant_id))
        self.subscriptions[name] = sub
        try:
            result = await self.hub.subscribe(self, sub, recover=recover, offset=offset, epoch=epoch)
        except BaseException:
            if self.subscriptions.get(name) is sub:
                del self.subscriptions[name]
            raise
        if self.closed or self.subscriptions.get(name) is not sub:
            return
        self._reply(command, result)
        self.hub.activate(self, sub)

    async def _cmd_unsubscribe(self, command: p.Command) -> None:
        name = command.params.get("channel")
        if not isinstance(name, str) or not name:
            raise p.ReplyError(p.ErrorCode.BAD_REQUEST, "channel required")
        sub = self.subscriptions.pop(name, None)
        if sub is not None:
            self.hub.unsubscribe(self, sub)
        self._reply(command, {})

    def _subscribed(self, command: p.Command) -> Subscription:
        name = command.params.get("channel")
        if not isinstance(name, str) or not name:
            raise p.ReplyError(p.ErrorCode.BAD_REQUEST, "channel required")
        sub = self.subscriptions.get(name)
        if sub is None:
            raise p.ReplyError(p.ErrorCode.PERMISSION_DENIED, "not subscribed")
        return sub

    async def _cmd_history(self, command: p.Command) -> None:
        sub = self._subscribed(command)
        limit = command.params.get("limit", 0)
        reverse = command.params.get("reverse", False) is True
        since = command.params.get("since")
        if isinstance(limit, bool) or not isinstance(limit, int) or abs(limit) > MAX_OFFSET:
            raise p.ReplyError(p.ErrorCode.BAD_REQUEST, "limit must be an integer")
        since_offset: int | None = None
        since_epoch: str | None = None
        if since is not None:
            if not isinstance(since, dict):
                raise p.ReplyError(p.ErrorCode.BAD_REQUEST, "since must be an object")
            since_offset = since.get("offset", 0)
            since_epoch = since.get("epoch", "")
            if not _is_offset(since_offset):
                raise p.ReplyError(p.ErrorCode.BAD_REQUEST, "since.offset must be a non-negative integer")
            if not isinstance(since_epoch, str):
                raise p.ReplyError(p.ErrorCode.BAD_REQUEST, "since.epoch must be a string")
        result = await self.hub.history(
            sub, limit=limit, since=since_offset, epoch=since_epoch, reverse=reverse
        )
        self._reply(command, result)

    async def _cmd_presence_stats(self, command: p.Command) -> None:
        sub = self._subscribed(command)
        stats = await self.hub.broker.presence_stats(sub.broker_channel)
        self._reply(command, {"num_clients": stats.num_clients, "num_users": stats.num_users})

    async def _cmd_publish(self, command: p.Command) -> None:
        raise p.ReplyError(p.ErrorCode.PERMISSION_DENIED, "clients do not publish")

    async def _cmd_not_available(self, command: p.Command) -> None:
        raise p.ReplyError(p.ErrorCode.NOT_AVAILABLE)

    async def _cmd_ping(self, command: p.Command) -> None:
        self._reply(command, {})

    async def _cmd_send(self, command: p.Command) -> None:
        return None  # asynchronous messages have no handler here; no reply is expected

    # --- delivery (called by the hub, synchronously) ---

    def deliver(self, sub: Subscription, pub: Publication, frame: str) -> None:
        if self.closed:
            return
        if sub.recovering:
            sub.buffer.append((pub, frame))
            if len(sub.buffer) > MAX_RECOVERY_BUFFER:
                self.disconnect(p.INSUFFICIENT_STATE)
            return
        if pub.epoch != sub.epoch:
            self.disconnect(p.INSUFFICIENT_STATE)
            return
        if pub.offset <= sub.offset:
            return  # already delivered (recovery overlap)
        if pub.offset != sub.offset + 1:
            self.disconnect(p.INSUFFICIENT_STATE)  # a gap: the client recovers on reconnect
            return
        sub.offset = pub.offset
        self.enqueue(frame, f"{sub.channel.name}|{pub.key}" if pub.key else None)


def _is_offset(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_OFFSET


_HANDLERS = {
    "connect": Session._cmd_connect,
    "refresh": Session._cmd_refresh,
    "subscribe": Session._cmd_subscribe,
    "unsubscribe": Session._cmd_unsubscribe,
    "history": Session._cmd_history,
    "presence_stats": Session._cmd_presence_stats,
    "publish": Session._cmd_publish,
    "presence": Session._cmd_not_available,
    "rpc": Session._cmd_not_available,
    "sub_refresh": Session._cmd_not_available,
    "ping": Session._cmd_ping,
    "send": Session._cmd_send,
}
