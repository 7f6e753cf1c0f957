"""Throw-away services for tests and benchmarks: PostgreSQL, Redis and moto on free
loopback ports under one folder, migrated and provisioned; stopped in reverse on exit.
(``buildpeer dev`` keeps its data instead: see :mod:`devstack.stack`.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.migrate import migrate
from core.settings import Settings
from devstack.aws import MotoServer, Provisioned, provision
from devstack.postgres import EmbeddedPostgres
from devstack.process import free_port
from devstack.redis import EmbeddedRedis


@dataclass
class EphemeralServices:
    pg: EmbeddedPostgres
    redis: EmbeddedRedis
    moto: MotoServer
    settings: Settings
    provisioned: Provisioned
    base_dir: Path


@contextmanager
def ephemeral_services(base_dir: Path, **settings: Any) -> Iterator[EphemeralServices]:
    """``settings`` override the defaults (a JWT secret and the service URLs are set)."""
    pg = EmbeddedPostgres(base_dir / "pg", port=free_port(), durable=False)
    redis = EmbeddedRedis(base_dir / "redis", port=free_port(), durable=False)
    moto = MotoServer(port=free_port())
    started: list[Any] = []
    try:
        for service in (pg, redis, moto):
            service.start()
            started.append(service)
        values: dict[str, Any] = {
            "database_url": pg.app_url(),
            "migrate_database_url": pg.owner_url,
            "redis_url": redis.url,
            "aws_endpoint_url": moto.url,
            "var_dir": base_dir / "var",
            "metrics_port": 0,  # many apps per process: a test that scrapes asks for a listener
            **settings,
        }
        configured = Settings(**values)
        asyncio.run(migrate(pg.owner_url))
        provisioned = provision(configured)
        yield EphemeralServices(pg, redis, moto, configured, provisioned, base_dir)
    finally:
        for service in reversed(started):
            service.stop()
