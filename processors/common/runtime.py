"""What a processor needs besides its logic: settings, AWS clients and a database pool.

A Lambda builds one :class:`Runtime` at module scope (from ``BUILDPEER_*`` variables) and
reuses it across warm invocations. The local worker builds its own from its settings and
hands it to the very same handlers through the invocation context (``context.runtime``).

Handlers are synchronous (the Lambda signature, CPU-bound work), the database driver is
asyncpg: the runtime owns one event loop on a daemon thread that holds the pool, and
handler threads submit coroutines to it with :meth:`Runtime.run`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import asyncpg
import boto3
from botocore.config import Config

from core.db import create_pool
from core.events import TOPIC_FOR_TYPE, EventType
from core.resources import topic_name
from core.secrets import with_secrets
from core.settings import Settings

T = TypeVar("T")
DB_TIMEOUT_SECONDS = 60.0


class Runtime:
    def __init__(self, settings: Settings, *, pool_max: int = 4) -> None:
        if not settings.database_url:
            raise ValueError("BUILDPEER_DATABASE_URL is required by the processors")
        self.settings = settings
        self._pool_max = pool_max
        kwargs: dict[str, Any] = {
            "region_name": settings.aws_region,
            "config": Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32),
        }
        if settings.aws_endpoint_url:
            kwargs.update(
                endpoint_url=settings.aws_endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        # boto3 clients are thread-safe; sessions are not, so each client gets its own.
        self.s3: Any = boto3.session.Session().client("s3", **kwargs)
        self.sns: Any = boto3.session.Session().client("sns", **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="buildpeer-db", daemon=True)
        self._thread.start()
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = threading.Lock()
        self._topics: dict[EventType, str] = {}

    # -- database ---------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = DB_TIMEOUT_SECONDS) -> T:
        """Run ``coro`` on the runtime's loop and wait for its result (from any thread)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool (created on first use; only for coroutines given to :meth:`run`)."""
        with self._pool_lock:
            if self._pool is None:
                dsn = self.settings.database_url
                assert dsn is not None
                self._pool = self.run(create_pool(dsn, min_size=0, max_size=self._pool_max))
            return self._pool

    # -- events -----------------------------------------------------------------------

    def topic_arn(self, event_type: EventType) -> str:
        if not self._topics:
            wanted = {topic_name(self.settings.stack, t): et for et, t in TOPIC_FOR_TYPE.items()}
            for page in self.sns.get_paginator("list_topics").paginate():
                for topic in page.get("Topics", []):
                    arn = topic["TopicArn"]
                    name = arn.rsplit(":", 1)[-1]
                    if name in wanted:
                        self._topics[wanted[name]] = arn
        try:
            return self._topics[event_type]
        except KeyError:
            raise RuntimeError(
                f"SNS topic {topic_name(self.settings.stack, TOPIC_FOR_TYPE[event_type])} does not exist"
            ) from None

    def close(self) -> None:
        if self._pool is not None:
            self.run(self._pool.close())
            self._pool = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class LazyRuntime:
    """The Lambda's module-scope runtime: built from the environment on first use."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

    def get(self) -> Runtime:
        with self._lock:
            if self._runtime is None:
                # Secrets (the database URL) are read from Secrets Manager here, at cold start.
                self._runtime = Runtime(Settings.from_env(with_secrets(os.environ)))
            return self._runtime


DEFAULT_RUNTIME = LazyRuntime()


def runtime_for(context: Any) -> Runtime:
    """The runtime the invoker provides (the local worker), else the Lambda's own."""
    provided = getattr(context, "runtime", None)
    if isinstance(provided, Runtime):
        return provided
    return DEFAULT_RUNTIME.get()
