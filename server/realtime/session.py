"""One client connection: reads commands from its transport, answers them, and queues
replies and pushes in its :class:`~server.realtime.writer.Writer`.

The session talks only to its node, through :class:`ClientNode`, and only to its peer
through a :class:`~server.realtime.transport.Transport`. One task per session: the
coroutine serving it reads commands; the writer has a task only while a write waits
(a client not reading); ping, pong and expiry are event-loop timers. ``disconnect`` is synchronous and
idempotent: the node forgets the session at once (fan-out never waits on a dead or slow
client), the reader is interrupted, what is queued is flushed (nothing, for a slow
client) and the transport is closed with the disconnect's code within a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Protocol

from core.auth import Principal
from core.db import DatabaseUnavailable
from server.auth import AuthError
from server.realtime import protocol as p
from server.realtime.broker import BrokerUnavailable, Publication
from server.realtime.channels import Channel, UnknownChannel, parse_channel
from server.realtime.codec import JSON, Frame
from server.realtime.config import RealtimeConfig
from server.realtime.fossil import create_delta
from server.realtime.hub import ConnectionLimitReached, Subscription
from server.realtime.transport import BadFrame, Transport, TransportClosed
from server.realtime.writer import Writer

log = logging.getLogger(__name__)

SERVER_VERSION = "buildpeer-1"
MAX_CHANNELS_PER_CONNECTION = 128
MAX_RECOVERY_BUFFER = 1000
MAX_OFFSET = 2**53  # offsets stay exact in Lua (doubles) and JavaScript
DELTA_FOSSIL = "fossil"


class ClientNode(Protocol):
    """What a session may ask of its node."""

    async def verify_token(self, token: str) -> Principal: ...

    def connect(self, session: Session) -> None:
        """Register the connected session; :class:`ConnectionLimitReached`."""
        ...

    def forget(self, session: Session) -> None:
        """The session ended: leave its channels (synchronous)."""
        ...

    async def may_subscribe(self, principal: Principal, channel: Channel) -> bool: ...

    async def subscribe(
        self, session: Session, sub: Subscription, *, recover: bool, offset: int, epoch: str
    ) -> dict[str, Any]: ...

    def activate(self, session: Session, sub: Subscription) -> None: ...

    def unsubscribe(self, session: Session, sub: Subscription) -> None: ...

    async def history(
        self, sub: Subscription, *, limit: int, since: int | None, epoch: str | None, reverse: bool
    ) -> dict[str, Any]: ...

    async def presence_stats(self, sub: Subscription) -> dict[str, Any]: ...

    async def revalidate(self, session: Session, principal: Principal) -> None:
        """End every subscription ``principal`` may no longer hold."""
        ...


class Session:
    __slots__ = (
        "_connecting",
        "_done",
        "_expiry",
        "_finished",
        "_ping_sent",
        "_reader",
        "_seen",
        "_timer",
        "client_id",
        "close_reason",
        "closed",
        "codec",
        "config",
        "node",
        "principal",
        "subscriptions",
        "transport",
        "writer",
    )

    def __init__(self, node: ClientNode, transport: Transport, config: RealtimeConfig) -> None:
        self.node = node
        self.transport = transport
        self.codec = transport.codec
        self.config = config
        self.writer = Writer(transport, limit_bytes=config.max_queue_bytes, on_broken=self._write_failed)
        self.client_id = str(uuid.uuid4())
        self.principal: Principal | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.closed = False
        self.close_reason: p.Disconnect | None = None
        self._seen = time.monotonic()
        self._ping_sent = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._connecting = False  # a connect command is being answered (not stale)
        self._reader: asyncio.Task[Any] | None = None
        self._finished = False
        self._done: asyncio.Future[None] | None = None  # made by the first wait_closed

    # --- lifecycle ---

    async def serve(self) -> None:
        """Read commands until the session ends (in the calling task), then close."""
        loop = asyncio.get_running_loop()
        self._reader = asyncio.current_task()
        self._timer = loop.call_later(self.config.ping_interval, self._on_ping_timer)
        try:
            await self._read_loop()
        except asyncio.CancelledError:
            if not self.closed or self._reader is None:
                raise  # cancelled from outside (server stopping): close below, then re-raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # interrupted by our own disconnect()
        finally:
            self._reader = None
            self.disconnect(p.CONNECTION_CLOSED)  # no-op when already closed
            try:
                await asyncio.shield(self._close())
            finally:
                self._finished = True
                if self._done is not None and not self._done.done():
                    self._done.set_result(None)

    async def _close(self) -> None:
        reason = self.close_reason or p.CONNECTION_CLOSED
        try:
            async with asyncio.timeout(self.config.close_timeout):
                if reason == p.SLOW:
                    await self.writer.abort()  # the close frame goes after what is in flight
                else:
                    await self.writer.flush()
                await self.transport.close(reason.code, reason.reason)
        except TimeoutError:
            await self.writer.abort()

    def disconnect(self, reason: p.Disconnect) -> None:
        """End the session (idempotent). The node forgets it at once."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for timer in (self._timer, self._expiry):
            if timer is not None:
                timer.cancel()
        if reason == p.SLOW:
            self.writer.drop()
        self.node.forget(self)
        self.subscriptions.clear()
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        if reason not in (p.CONNECTION_CLOSED, p.SHUTDOWN):
            log.info("websocket disconnected", extra={"client": self.client_id, "code": reason.code})

    async def wait_closed(self) -> None:
        if self._finished:
            return
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._done)

    def _write_failed(self) -> None:
        self.disconnect(p.WRITE_ERROR)

    # --- writing ---

    def enqueue(self, text: Frame, key: str | None = None) -> None:
        if self.closed:
            return
        if not self.writer.push(text, key):
            self.disconnect(p.SLOW)

    # --- reading ---

    async def _read_loop(self) -> None:
        receive = self.transport.receive
        while not self.closed:
            try:
                frame = await receive()
            except TransportClosed:
                self.disconnect(p.CONNECTION_CLOSED)
                return
            except BadFrame:
                self.disconnect(p.BAD_REQUEST)
                return
            self._seen = time.monotonic()
            await self._on_frame(frame)
            del frame  # an idle session holds neither its last frame nor its commands

    async def _on_frame(self, text: Frame) -> None:
        max_frame = self.config.max_frame_bytes
        if len(text) > max_frame or (
            isinstance(text, str) and not text.isascii() and len(text.encode()) > max_frame
        ):
            log.info("websocket frame too large", extra={"client": self.client_id})
            self.disconnect(p.BAD_REQUEST)
            return
        try:
            commands = self.codec.decode(text)
        except p.ProtocolViolation as exc:
            log.info("websocket protocol violation: %s", exc.detail, extra={"client": self.client_id})
            self.disconnect(exc.disconnect)
            return
        for command in commands:
            await self._handle(command)
            if self.closed:
                return

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
                self.enqueue(self.codec.error_reply(command.id, exc))
        except p.ProtocolViolation as exc:
            log.info("websocket protocol violation: %s", exc.detail, extra={"client": self.client_id})
            self.disconnect(exc.disconnect)
        except (BrokerUnavailable, DatabaseUnavailable) as exc:
            log.warning("realtime dependency unavailable: %s", exc)
            if command.id:
                self.enqueue(
                    self.codec.error_reply(command.id, p.ReplyError(p.ErrorCode.INTERNAL, temporary=True))
                )
        except Exception:
            log.exception("websocket command failed", extra={"client": self.client_id})
            if command.id:
                self.enqueue(self.codec.error_reply(command.id, p.ReplyError(p.ErrorCode.INTERNAL)))

    def _reply(self, command: p.Command, result: dict[str, Any], *, delta_mode: bool = False) -> None:
        if command.id and command.method:
            self.enqueue(self.codec.reply(command.id, command.method, result, delta_mode=delta_mode))

    # --- timers (event-loop callbacks, no task) ---

    def _on_ping_timer(self) -> None:
        if self.closed:
            return
        if self.principal is None:
            if self._connecting:  # its connect is queued behind others (a reconnect storm)
                self._timer = asyncio.get_running_loop().call_later(
                    self.config.ping_interval, self._on_ping_timer
                )
                return
            self.disconnect(p.STALE)  # never authenticated
            return
        self._ping_sent = time.monotonic()
        self.enqueue(self.codec.ping())
        delay = min(self.config.pong_timeout, self.config.ping_interval)
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_pong_deadline)

    def _on_pong_deadline(self) -> None:
        if self.closed:
            return
        if self._seen < self._ping_sent:
            self.disconnect(p.NO_PONG)
            return
        left = max(0.0, self.config.ping_interval - (time.monotonic() - self._ping_sent))
        self._timer = asyncio.get_running_loop().call_later(left, self._on_ping_timer)

    def _schedule_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        assert self.principal is not None
        left = max(0.0, self.principal.expires_at - time.time())
        self._expiry = asyncio.get_running_loop().call_later(left, self._on_expiry)

    def _on_expiry(self) -> None:
        if self.closed or self.principal is None:
            return
        if self.principal.expires_at - time.time() <= 0:
            self.disconnect(p.EXPIRED)
        else:
            self._schedule_expiry()

    # --- commands ---

    async def _verify(self, params: dict[str, Any]) -> Principal:
        token = params.get("token")
        if not isinstance(token, str) or not token:
            raise p.ProtocolViolation("no token", p.INVALID_TOKEN)
        try:
            return await self.node.verify_token(token)
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
        self._connecting = True
        try:
            principal = await self._verify(command.params)
        finally:
            self._connecting = False
        if self.closed:
            return
        self.principal = principal
        try:
            self.node.connect(self)
        except ConnectionLimitReached as exc:
            self.principal = None
            raise p.ReplyError(p.ErrorCode.LIMIT_EXCEEDED, "tenant connection limit", temporary=True) from exc
        self._schedule_expiry()
        self._reply(
            command,
            {
                "client": self.client_id,
                "version": SERVER_VERSION,
                "expires": True,
                "ttl": self._ttl(),
                "ping": max(1, round(self.config.ping_interval)),
                "pong": True,
                **(
                    {"session": self.transport.session_id, "node": self.transport.node_id}
                    if self.transport.session_id
                    else {}
                ),
            },
        )

    async def _cmd_refresh(self, command: p.Command) -> None:
        principal = await self._verify(command.params)
        assert self.principal is not None
        if (principal.tenant_id, principal.user_id) != (self.principal.tenant_id, self.principal.user_id):
            raise p.ProtocolViolation("refresh token is for another user", p.INVALID_TOKEN)
        if self.closed:
            return
        self.principal = principal
        self._schedule_expiry()
        self._reply(
            command,
            {"client": self.client_id, "version": SERVER_VERSION, "expires": True, "ttl": self._ttl()},
        )
        await self.node.revalidate(self, principal)  # a lower role may hold less

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
        delta = command.params.get("delta", "")
        if delta not in ("", DELTA_FOSSIL):
            raise p.ReplyError(p.ErrorCode.BAD_REQUEST, "unsupported delta format")
        principal = self.principal
        if not await self.node.may_subscribe(principal, channel):
            raise p.ReplyError(p.ErrorCode.PERMISSION_DENIED)
        if self.closed or name in self.subscriptions:
            return
        sub = Subscription(channel, channel.broker_name(principal.tenant_id), delta=delta == DELTA_FOSSIL)
        self.subscriptions[name] = sub
        try:
            result = await self.node.subscribe(self, sub, recover=recover, offset=offset, epoch=epoch)
        except BaseException:
            if self.subscriptions.get(name) is sub:
                del self.subscriptions[name]
            raise
        if self.closed or self.subscriptions.get(name) is not sub:
            return
        if self.principal is not principal and not await self.node.may_subscribe(self.principal, channel):
            # refreshed to less (or revalidated) while this subscribe was in flight
            self.end_subscription(sub, p.UNSUBSCRIBE_SERVER, push=False)
            raise p.ReplyError(p.ErrorCode.PERMISSION_DENIED)
        if sub.delta:
            result["delta"] = True
            recovered = result.get("publications")
            sub.delta_base = recovered[-1].data if recovered else None  # recovered ones go full
        self._reply(command, result, delta_mode=sub.delta)
        self.node.activate(self, sub)

    async def _cmd_unsubscribe(self, command: p.Command) -> None:
        name = command.params.get("channel")
        if not isinstance(name, str) or not name:
            raise p.ReplyError(p.ErrorCode.BAD_REQUEST, "channel required")
        sub = self.subscriptions.pop(name, None)
        if sub is not None:
            self.node.unsubscribe(self, sub)
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
        result = await self.node.history(
            sub, limit=limit, since=since_offset, epoch=since_epoch, reverse=reverse
        )
        self._reply(command, result)

    async def _cmd_presence_stats(self, command: p.Command) -> None:
        sub = self._subscribed(command)
        self._reply(command, await self.node.presence_stats(sub))

    async def _cmd_publish(self, command: p.Command) -> None:
        raise p.ReplyError(p.ErrorCode.PERMISSION_DENIED, "clients do not publish")

    async def _cmd_not_available(self, command: p.Command) -> None:
        raise p.ReplyError(p.ErrorCode.NOT_AVAILABLE)

    async def _cmd_ping(self, command: p.Command) -> None:
        self._reply(command, {})

    async def _cmd_send(self, command: p.Command) -> None:
        return None  # asynchronous messages have no handler here; no reply is expected

    # --- called by the node and the hub (synchronously) ---

    def deliver(self, sub: Subscription, pub: Publication, frame: str) -> None:
        if self.closed:
            return
        if sub.recovering:
            sub.buffer.append((pub, frame))
            if len(sub.buffer) > MAX_RECOVERY_BUFFER:
                self.end_subscription(sub, p.UNSUBSCRIBE_INSUFFICIENT)
            return
        if pub.epoch == sub.epoch and pub.offset <= sub.offset:
            return  # already delivered (recovery overlap)
        if pub.epoch != sub.epoch or pub.offset != sub.offset + 1:
            # The node delivers every channel gap-free; this is the last line of defence.
            self.end_subscription(sub, p.UNSUBSCRIBE_INSUFFICIENT)
            return
        sub.offset = pub.offset
        if sub.delta:
            self.enqueue(self._delta_frame(sub, pub))  # never coalesced: each is the next one's base
            return
        out: Frame = frame if self.codec is JSON else self.codec.shared_push(sub.channel.name, pub)
        self.enqueue(out, f"{sub.channel.name}|{pub.key}" if pub.key else None)

    def _delta_frame(self, sub: Subscription, pub: Publication) -> Frame:
        """The publication as a Fossil delta against the previous one the client received
        on ``sub`` when that is smaller (and, on JSON, valid text); else in full."""
        base, sub.delta_base = sub.delta_base, pub.data
        if base is not None:
            delta = create_delta(base, pub.data)
            if len(delta) < len(pub.data) and (self.codec.binary or _is_utf8(delta)):
                return self.codec.publication_push(
                    sub.channel.name, delta, pub.offset, delta_mode=True, delta=True
                )
        return self.codec.publication_push(sub.channel.name, pub.data, pub.offset, delta_mode=True)

    def end_subscription(self, sub: Subscription, unsubscribe: p.Unsubscribe, *, push: bool = True) -> None:
        """The server ends ``sub``: an unsubscribe push tells the client why (2500 and up:
        resubscribe and recover; below: stay unsubscribed)."""
        name = sub.channel.name
        if self.subscriptions.get(name) is not sub:
            return
        del self.subscriptions[name]
        self.node.unsubscribe(self, sub)
        if push:
            self.enqueue(self.codec.unsubscribe_push(name, unsubscribe.code, unsubscribe.reason))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


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
