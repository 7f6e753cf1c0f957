"""The node: owns the broker, presence, recovery, token checks and authorisation, and
decides what reaches the hub (centrifugal/centrifuge ``node.go``).

It implements :class:`core.publish.EventPublisher`: ``publish(event)`` appends the event
to the history of its ``upload:``, ``project:``, ``user:`` and ``tenant:`` channels and
fans it out to every instance; each instance delivers to its local subscribers.

**No silent gaps.** For every channel with local subscribers the node keeps the last
position it delivered (offset + epoch). A live publication that is the next one goes to
the hub; a duplicate is dropped; anything else (a gap, a new epoch) makes the node fill
the gap from history first. When history cannot (trimmed, a new epoch, the broker not
answering), the channel's subscriptions end with the "insufficient state" unsubscribe
push (2500): the clients resubscribe from their own positions and recover or learn that
they cannot. A reconnected PUB/SUB feed, a publish that timed out, and a periodic check
all end in that same check.

**Authorisation that follows the user.** On ``refresh`` and when a control message says
a user's memberships or role changed, every subscription the user may no longer hold ends
with a server unsubscribe push (2000), on every instance.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import asyncpg
import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from core.auth import Principal, Role
from core.db import DatabaseUnavailable, tenant_transaction
from core.events import Event
from server import metrics
from server.auth import TokenVerifier
from server.realtime import protocol as p
from server.realtime.broker import Broker, BrokerUnavailable, Publication, StreamPosition
from server.realtime.channels import Channel, Namespace, may_subscribe
from server.realtime.config import RealtimeConfig
from server.realtime.control import BadControlMessage, ControlMessage, ControlOp, ControlPublisher
from server.realtime.hub import Hub, Subscription
from server.realtime.session import Session
from server.realtime.transport import Transport

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("buildpeer.hub")

SYNC_ATTEMPTS = 4
SYNC_BACKOFF = 0.25
MAX_PENDING = 1000
_RANK = {Role.INVESTOR: 0, Role.FIELD_WORKER: 1, Role.ADMIN: 2}


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


class _Channel:
    """A broker channel this node is subscribed to: the last position delivered to the
    hub, live publications waiting while a gap is filled, the task filling it."""

    __slots__ = ("key", "opened", "pending", "position", "sync")

    def __init__(self, key: str) -> None:
        self.key = key
        self.opened: asyncio.Task[None] | None = None
        self.position: StreamPosition | None = None
        self.pending: list[Publication] = []
        self.sync: asyncio.Task[None] | None = None


class Node:
    def __init__(
        self,
        *,
        broker: Broker,
        pool: asyncpg.Pool,
        verifier: TokenVerifier,
        config: RealtimeConfig | None = None,
        verify_in_thread: bool = False,
    ) -> None:
        self.broker = broker
        self.pool = pool
        self.verifier = verifier
        self.config = config or RealtimeConfig()
        self.hub: Hub[Session] = Hub(self.config.tenant_connection_limit)
        self.control = ControlPublisher(broker)
        self.accepting = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._verify_in_thread = verify_in_thread
        self._sessions: set[Session] = set()
        self._channels: dict[str, _Channel] = {}
        self._releases: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        # Other control messages on the broker's channel (e.g. ``/emulation`` commands for a
        # stream held by this process): each handler answers ``True`` when it took one.
        self.control_handlers: list[Callable[[bytes], bool]] = []

    # --- lifecycle ---

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.broker.start(self._on_publication, self._on_resubscribed, self._on_control)
        self._ticker = asyncio.create_task(self._tick_forever(), name="realtime-node-ticker")
        self.accepting = True

    async def drain(self) -> None:
        """Stop accepting and advise every client to reconnect elsewhere (3001), waiting up to
        the shutdown timeout for their sessions to close. The server calls it as soon as it
        starts shutting down: a stream transport's response would otherwise hold uvicorn's
        graceful wait to its end. Idempotent; the broker keeps running."""
        self.accepting = False
        sessions = list(self._sessions)
        for session in sessions:
            session.disconnect(p.SHUTDOWN)
        if sessions:
            await asyncio.wait(
                [asyncio.create_task(s.wait_closed()) for s in sessions], timeout=self.config.shutdown_timeout
            )

    async def stop(self) -> None:
        """Drain, then stop the node's tasks and close the broker."""
        await self.drain()
        tasks = [*self._tasks, *([self._ticker] if self._ticker else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.shield(self.broker.stop())

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def serve(self, transport: Transport, on_session: Callable[[Session], None] | None = None) -> None:
        """One connection, from accept to close (the transport is accepted). ``on_session``
        sees the session before it reads (bidirectional emulation indexes it)."""
        if not self.accepting:
            await transport.close(p.SHUTDOWN.code, p.SHUTDOWN.reason)
            return
        session = Session(self, transport, self.config)
        self._sessions.add(session)
        if on_session is not None:
            on_session(session)
        try:
            await session.serve()
        finally:
            self._sessions.discard(session)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # --- sessions (ClientNode) ---

    async def verify_token(self, token: str) -> Principal:
        """The token's principal, held to the user's current role when that is lower (a
        token minted before the role was lowered does not bring the old role back)."""
        if self._verify_in_thread:  # a JWKS fetch may block
            principal = await asyncio.to_thread(self.verifier.verify, token)
        else:
            principal = self.verifier.verify(token)
        return _held_to(principal, await self._current_role(principal.tenant_id, principal.user_id))

    async def _current_role(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
        async with tenant_transaction(self.pool, tenant_id, readonly=True) as conn:
            role = await conn.fetchval("SELECT role FROM users WHERE user_id = $1", user_id)
        return None if role is None else Role(role)

    def connect(self, session: Session) -> None:
        assert session.principal is not None
        self.hub.add_client(session, session.principal.tenant_id, session.principal.user_id)

    def forget(self, session: Session) -> None:
        for sub in list(session.subscriptions.values()):
            self.unsubscribe(session, sub)
        if session.principal is not None:
            self.hub.remove_client(session, session.principal.tenant_id, session.principal.user_id)

    async def may_subscribe(self, principal: Principal, channel: Channel) -> bool:
        return await may_subscribe(self.pool, principal, channel)

    async def subscribe(
        self, session: Session, sub: Subscription, *, recover: bool, offset: int, epoch: str
    ) -> dict[str, Any]:
        key = sub.broker_channel
        state = self._channels.get(key) or self._open_channel(key)
        self.hub.add_subscriber(key, session, sub)  # live publications wait in ``sub`` from now on
        assert state.opened is not None
        try:
            await asyncio.shield(state.opened)
            pubs, position = await self.broker.history(
                key, since=offset if recover else None, limit=-1 if recover else 0
            )
        except BaseException:
            self._remove(session, sub)
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
                result["publications"] = pubs  # encoded by the session's codec
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
        self._remove(session, sub)
        self._spawn(
            self._quiet(self.broker.remove_presence(sub.broker_channel, session.client_id)), "presence-rm"
        )

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
            "publications": pubs,  # encoded by the session's codec
            "epoch": position.epoch,
            "offset": position.offset,
        }

    async def presence_stats(self, sub: Subscription) -> dict[str, Any]:
        stats = await self.broker.presence_stats(sub.broker_channel)
        return {"num_clients": stats.num_clients, "num_users": stats.num_users}

    async def revalidate(self, session: Session, principal: Principal) -> None:
        for sub in list(session.subscriptions.values()):
            if session.closed:
                return
            if sub.recovering:
                continue  # its subscribe re-checks the principal before answering
            try:
                allowed = await self.may_subscribe(principal, sub.channel)
            except (DatabaseUnavailable, asyncpg.PostgresError, OSError) as exc:
                log.warning("realtime: cannot re-check subscriptions, reconnecting the client: %s", exc)
                session.disconnect(p.FORCE_RECONNECT)  # fail closed: it is authorised again
                return
            if not allowed:
                session.end_subscription(sub, p.UNSUBSCRIBE_SERVER)

    # --- channels: open, close, and the gap-free position ---

    def _open_channel(self, key: str) -> _Channel:
        state = _Channel(key)
        previous = self._releases.get(key)
        state.opened = self._spawn(self._open(state, previous), f"broker-sub-{key}")
        self._channels[key] = state
        return state

    async def _open(self, state: _Channel, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:  # its broker unsubscribe goes first
            await asyncio.gather(asyncio.shield(previous), return_exceptions=True)
        await self.broker.subscribe(state.key)
        await self._catch_up(state, attempts=1)

    def _remove(self, session: Session, sub: Subscription) -> None:
        key = sub.broker_channel
        if not self.hub.remove_subscriber(key, session, sub):
            return
        state = self._channels.pop(key, None)
        if state is None:
            return
        if state.sync is not None:
            state.sync.cancel()
        release = self._spawn(self._release(state), f"broker-unsub-{key}")
        self._releases[key] = release
        release.add_done_callback(lambda task: self._forget_release(key, task))

    def _forget_release(self, key: str, task: asyncio.Task[None]) -> None:
        if self._releases.get(key) is task:
            del self._releases[key]

    async def _release(self, state: _Channel) -> None:
        assert state.opened is not None
        try:
            await asyncio.shield(state.opened)
        except BaseException:
            return
        await self._quiet(self.broker.unsubscribe(state.key))

    def _on_publication(self, key: str, pub: Publication) -> None:
        state = self._channels.get(key)
        if state is None:
            return
        position = state.position
        if (
            position is None
            or state.sync is not None
            or (state.opened is not None and not state.opened.done())
        ):
            self._hold(state, pub)
            if position is None:
                self._check(state)  # after a failed catch-up: take a new baseline
            return
        if pub.epoch == position.epoch:
            if pub.offset <= position.offset:
                return  # delivered already (from history)
            if pub.offset == position.offset + 1:
                self._deliver(state, pub)
                return
        log.warning(
            "realtime: gap on %s (delivered %s/%s, got %s/%s); filling from history",
            key,
            position.offset,
            position.epoch,
            pub.offset,
            pub.epoch,
        )
        self._hold(state, pub)
        self._check(state)

    def _hold(self, state: _Channel, pub: Publication) -> None:
        state.pending.append(pub)
        if len(state.pending) > MAX_PENDING:
            del state.pending[0]  # still in history: the catch-up reads it from there

    def _deliver(self, state: _Channel, pub: Publication) -> None:
        state.position = StreamPosition(pub.offset, pub.epoch)
        delivered = self.hub.broadcast(state.key, pub)
        if delivered:
            metrics.PUBLICATIONS_DELIVERED.inc(delivered)

    def _check(self, state: _Channel) -> None:
        """Compare the channel's delivered position with the stream (once at a time)."""
        if state.sync is not None or state.opened is None or not state.opened.done():
            return
        if self._channels.get(state.key) is not state:
            return
        state.sync = self._spawn(self._run_check(state), f"realtime-check-{state.key}")

    async def _run_check(self, state: _Channel) -> None:
        try:
            await self._catch_up(state, attempts=SYNC_ATTEMPTS)
        except BrokerUnavailable:
            pass  # the channel's subscriptions were ended: they recover on resubscribe
        finally:
            state.sync = None

    async def _catch_up(self, state: _Channel, *, attempts: int) -> None:
        """Deliver what the stream has after the delivered position, then what waited; or
        end the channel's subscriptions with "insufficient state" when history cannot."""
        failures = 0
        while self._channels.get(state.key) is state:
            try:
                if state.position is None:
                    _, head = await self.broker.history(state.key, since=None, limit=0)
                    state.position = head  # the baseline: subscribers position themselves
                    pubs: list[Publication] = []
                else:
                    pubs, head = await self.broker.history(
                        state.key, since=state.position.offset, limit=self.config.history_size
                    )
            except BrokerUnavailable:
                failures += 1
                if failures >= attempts:
                    self._insufficient(state, None)
                    raise
                await asyncio.sleep(SYNC_BACKOFF * 2**failures)
                continue
            if self._channels.get(state.key) is not state:
                return
            position = state.position
            assert position is not None
            if head.epoch != position.epoch or (pubs and pubs[0].offset != position.offset + 1):
                self._insufficient(state, head)
            else:
                for pub in pubs:
                    if pub.offset == position.offset + 1:
                        self._deliver(state, pub)
                        position = StreamPosition(pub.offset, pub.epoch)
                if position.offset < head.offset:
                    if len(pubs) >= self.config.history_size:
                        continue  # more than one read's worth behind
                    self._insufficient(state, head)  # the stream moved on but history lost it
            if not self._drain_pending(state):
                return

    def _drain_pending(self, state: _Channel) -> bool:
        """Deliver waiting publications that are next in line; ``True`` when one is not
        (another gap: history again)."""
        pending, state.pending = state.pending, []
        for index, pub in enumerate(pending):
            position = state.position
            assert position is not None
            if pub.epoch == position.epoch and pub.offset <= position.offset:
                continue
            if pub.epoch == position.epoch and pub.offset == position.offset + 1:
                self._deliver(state, pub)
                continue
            state.pending = pending[index:] + state.pending
            return True
        return False

    def _insufficient(self, state: _Channel, head: StreamPosition | None) -> None:
        """History cannot fill the gap: every live subscription on the channel ends with
        "insufficient state" (the client resubscribes and recovers from its position)."""
        ended = 0
        for session, sub in self.hub.subscribers(state.key):
            if not sub.recovering:
                session.end_subscription(sub, p.UNSUBSCRIBE_INSUFFICIENT)
                ended += 1
        state.position = head
        state.pending = [
            pub
            for pub in state.pending
            if head is not None and pub.epoch == head.epoch and pub.offset > head.offset
        ]
        log.warning(
            "realtime: insufficient state on %s: %d subscription(s) told to recover", state.key, ended
        )

    async def _on_resubscribed(self) -> None:
        """The live feed was down: every channel checks its position against history."""
        for state in list(self._channels.values()):
            self._check(state)

    async def _tick_forever(self) -> None:
        """Every ping interval: presence of every subscription, and every channel's position
        (a publication the live feed lost without a reconnect is found here)."""
        while True:
            await asyncio.sleep(self.config.ping_interval)
            for state in list(self._channels.values()):
                self._check(state)
            for session in list(self._sessions):
                principal = session.principal
                if principal is None or session.closed:
                    continue
                for sub in list(session.subscriptions.values()):
                    await self._quiet(
                        self.broker.add_presence(
                            sub.broker_channel, session.client_id, str(principal.user_id)
                        )
                    )

    @staticmethod
    async def _quiet(coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except BrokerUnavailable as exc:
            log.debug("realtime broker call failed: %s", exc)

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
            names = [channel.broker_name(event.tenant_id) for channel in channels]
            try:
                await self.broker.publish_many(names, data, key=key)
            except BrokerUnavailable:
                self._check_after_failed_publish(names)
                raise
        metrics.FANOUT_LATENCY.observe(time.perf_counter() - started)

    async def publish_data(
        self, tenant_id: uuid.UUID, channel: Channel, data: bytes, *, key: str | None = None
    ) -> StreamPosition:
        """Publish raw JSON ``data`` to one channel (tests, benchmarks, admin tools)."""
        return await self._publish(channel.broker_name(tenant_id), data, key)

    async def _publish(self, broker_channel: str, data: bytes, key: str | None) -> StreamPosition:
        try:
            return await self.broker.publish(broker_channel, data, key=key)
        except BrokerUnavailable:
            self._check_after_failed_publish([broker_channel])
            raise

    def _check_after_failed_publish(self, broker_channels: list[str]) -> None:
        """It may still have been stored (a timeout): local subscribers check the stream."""
        for name in broker_channels:
            state = self._channels.get(name)
            if state is not None:
                self._check(state)

    # --- users, on every instance (control messages) ---

    async def disconnect_user(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, disconnect: p.Disconnect = p.FORCE_RECONNECT
    ) -> None:
        """End every session of the user on every instance (this one included)."""
        await self.control.disconnect_user(tenant_id, user_id, disconnect.code, disconnect.reason)

    async def access_changed(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """``server.admin.AccessNotifier``: the user's memberships or role changed."""
        await self.control.access_changed(tenant_id, user_id)

    def _on_control(self, data: bytes) -> None:
        for handler in self.control_handlers:
            if handler(data):
                return
        if not data.startswith(b"{"):
            return  # another kind of control message, for a handler this process has not
        try:
            message = ControlMessage.decode(data)
        except BadControlMessage as exc:
            log.error("realtime: bad control message: %s", exc)
            return
        sessions = self.hub.user_clients(message.tenant_id, message.user_id)
        if not sessions:
            return
        if message.op is ControlOp.DISCONNECT:
            disconnect = p.Disconnect(message.code, message.reason)
            for session in sessions:
                session.disconnect(disconnect)
        else:
            self._spawn(self._revalidate_user(message.tenant_id, message.user_id), "realtime-revalidate")

    async def _revalidate_user(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        try:
            role = await self._current_role(tenant_id, user_id)
        except (DatabaseUnavailable, asyncpg.PostgresError, OSError) as exc:
            log.warning("realtime: cannot read the user's role, reconnecting their sessions: %s", exc)
            for session in self.hub.user_clients(tenant_id, user_id):
                session.disconnect(p.FORCE_RECONNECT)  # fail closed: authorised again on connect
            return
        for session in self.hub.user_clients(tenant_id, user_id):
            principal = session.principal
            if principal is None or session.closed:
                continue
            principal = session.principal = _held_to(principal, role)  # lowered: from now on
            await self.revalidate(session, principal)


def _held_to(principal: Principal, role: Role | None) -> Principal:
    """``principal`` with the user's current ``role`` when it ranks lower than the token's."""
    if role is None or _RANK[role] >= _RANK[principal.role]:
        return principal
    return replace(principal, role=role)
