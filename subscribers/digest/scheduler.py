"""The digest scheduler: a loop in every server instance; the one holding the Redis
leader lock does the work each tick (others just keep trying for the lock), and, once an
hour, the notifications' housekeeping (inbox retention, idle device tokens).

Leadership is a key with a TTL of several ticks, renewed by its holder; if the leader
dies, another instance takes over when the key expires. Even two leaders at once (a
paused process whose lock expired) would not double-send: the per-digest Redis lock
and the unique ``digest_deliveries`` row make each delivery once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from subscribers.digest.service import DigestService

log = logging.getLogger(__name__)

LEADER_KEY = "bp:digest:leader"
_ACQUIRE = (
    "local v = redis.call('get', KEYS[1]) "
    "if v == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end "
    "if not v then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end "
    "return 0"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class DigestScheduler:
    name = "digest-scheduler"

    def __init__(
        self,
        service: DigestService,
        redis: Redis | RedisCluster,  # one key per command and script: any slot
        *,
        interval: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        leader_key: str = LEADER_KEY,
        stop_timeout: float = 30.0,
        housekeeping: Callable[[], Awaitable[Any]] | None = None,
        housekeeping_interval: float = 3600.0,
    ) -> None:
        self._housekeeping = housekeeping
        self._housekeeping_interval = housekeeping_interval
        self._housekeeping_at = float("-inf")
        self._service = service
        self._redis = redis
        self._interval = interval
        self._clock = clock
        self._leader_key = leader_key
        self._lease_ms = int(max(interval * 3, 10.0) * 1000)
        self._stop_timeout = stop_timeout
        self.instance = secrets.token_hex(8)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        self.ticks = 0
        self.led_ticks = 0
        self.results: Counter[str] = Counter()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)
        self._task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.error = task.exception()
            log.error("digest scheduler crashed", exc_info=self.error)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self._stop_timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except Exception:
                pass  # surfaced by _on_done
        with contextlib.suppress(Exception):
            await self._redis.eval(_RELEASE, 1, self._leader_key, self.instance)

    async def is_leader(self) -> bool:
        won = await self._redis.eval(_ACQUIRE, 1, self._leader_key, self.instance, self._lease_ms)
        return bool(won)

    async def tick(self) -> Counter[str]:
        """One pass: when leader, deliver every digest now due."""
        self.ticks += 1
        if not await self.is_leader():
            return Counter()
        self.led_ticks += 1
        results = await self._service.run_due(self._clock())
        self.results.update(results)
        loop = asyncio.get_running_loop()
        if (
            self._housekeeping is not None
            and loop.time() - self._housekeeping_at >= self._housekeeping_interval
        ):
            self._housekeeping_at = loop.time()
            try:
                await self._housekeeping()
            except Exception:
                log.exception("notification housekeeping failed")
        if results:
            log.info("digest tick", extra={k: v for k, v in results.items()})
        return results

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("digest scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
