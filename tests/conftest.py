"""Session-wide real services (embedded PostgreSQL, Redis, moto over HTTP), started once
with the same launchers as ``buildpeer dev`` and stopped at the end. Tests isolate by
tenant: each makes its own tenants, so their rows, S3 keys and Redis keys never meet."""

from __future__ import annotations

import asyncio
import threading
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette

from core.db import create_pool, tenant_transaction
from core.keys import original_key
from core.settings import Settings
from devstack.clamd import PROJECT_TEST_DATABASE, EmbeddedClamd
from devstack.ephemeral import EphemeralServices, ephemeral_services
from devstack.process import free_port, wait_until
from devstack.redis_cluster import RedisCluster
from server import admin, redis_client
from server.app import create_app
from server.auth import mint_token

JWT_SECRET = "test-secret-0123456789abcdef-0123456789"


Stack = EphemeralServices


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with ephemeral_services(
        tmp_path_factory.mktemp("stack"),
        jwt_secret=JWT_SECRET,
        stack="bptest",
        bucket="bptest-uploads",
        rate_limit_ip_per_minute=0,
        rate_limit_tenant_per_minute=0,
        # Short long polls: a test server's consumers stop within a second, not after 20 s.
        events_wait_seconds=1,
        push_wait_seconds=1,
    ) as services:
        yield services


@pytest.fixture(scope="session")
def clamd(stack: Stack) -> Iterator[EmbeddedClamd]:
    """One real clamd for the session, on the project's test signatures (EICAR): it starts
    in seconds and behaves the same on every machine."""
    server = EmbeddedClamd(
        stack.base_dir / "clamd",
        port=free_port(),
        database_dir=PROJECT_TEST_DATABASE,
    )
    server.start()
    yield server
    server.stop()


@asynccontextmanager
async def running_worker(settings: Settings, **options: Any) -> AsyncIterator[Any]:
    """``buildpeer worker`` in this event loop, polling ``settings``' processor queues;
    drained and stopped on exit."""
    from processors.worker import Worker

    options = {"poll_wait_seconds": 1, "sweep_interval_seconds": 3600, "drain_seconds": 30, **options}
    worker = Worker(settings, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.started.wait(), 60)
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 90)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real six-process Redis Cluster (3 masters, 3 replicas, Debian's redis-server) for the
    session; ``settings.replace(redis_url=redis_cluster.url, redis_cluster=True)`` uses it."""
    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def settings(stack: Stack) -> Settings:
    return stack.settings


async def _close_pool(p: asyncpg.Pool, name: str) -> None:
    """Close a session pool; a connection some test never gave back would make ``close``
    wait forever (one CI run sat out pytest's 900 s there), so past 30 s it is terminated
    and named in a warning instead."""
    try:
        await asyncio.wait_for(p.close(), 30)
    except TimeoutError:
        p.terminate()
        warnings.warn(f"session pool {name}: a connection was never released; terminated", stacklevel=1)


@pytest.fixture(scope="session")
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    assert stack.settings.database_url
    p = await create_pool(stack.settings.database_url, min_size=1, max_size=10)
    yield p
    await _close_pool(p, "pool")


@pytest.fixture(scope="session")
async def owner_pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    """The migration owner (superuser here): for assertions the app role cannot make."""
    p = await create_pool(stack.pg.owner_url, min_size=1, max_size=2)
    yield p
    await _close_pool(p, "owner_pool")


@pytest.fixture(scope="session")
async def redis(stack: Stack) -> AsyncIterator[Redis]:
    assert stack.settings.redis_url
    r = redis_client.connect(stack.settings.redis_url)
    yield r
    await r.aclose()


@dataclass
class TenantFixture:
    tenant_id: uuid.UUID
    projects: list[uuid.UUID]
    users: dict[str, uuid.UUID]
    tokens: dict[str, str]
    settings: Settings
    extra: dict[str, Any] = field(default_factory=dict)

    def auth(self, role: str = "field_worker") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


async def create_tenant_fixture(
    pool: asyncpg.Pool, settings: Settings, *, timezone: str = "America/Mexico_City", locale: str = "es"
) -> TenantFixture:
    """A tenant with two projects; ``admin``, ``field_worker`` and ``investor`` are members
    of project 0; ``outsider`` (a field worker) belongs to no project."""
    suffix = uuid.uuid4().hex[:8]
    tenant = await admin.create_tenant(pool, f"Constructora {suffix}", timezone=timezone, locale=locale)
    tid = uuid.UUID(tenant["tenant_id"])
    projects = [
        uuid.UUID((await admin.create_project(pool, tid, f"Obra {i} {suffix}"))["project_id"])
        for i in range(2)
    ]
    users: dict[str, uuid.UUID] = {}
    for key, role in (
        ("admin", "admin"),
        ("field_worker", "field_worker"),
        ("investor", "investor"),
        ("outsider", "field_worker"),
    ):
        row = await admin.create_user(pool, tid, f"{key}-{suffix}@example.com", role)
        users[key] = uuid.UUID(row["user_id"])
    for key in ("admin", "field_worker", "investor"):
        await admin.add_member(pool, projects[0], users[key])
    roles = {
        "admin": "admin",
        "field_worker": "field_worker",
        "investor": "investor",
        "outsider": "field_worker",
    }
    tokens = {key: mint_token(settings, user_id=users[key], tenant_id=tid, role=roles[key]) for key in users}
    return TenantFixture(tid, projects, users, tokens, settings)


async def insert_upload(pool: asyncpg.Pool, t: TenantFixture, status: str = "uploading") -> uuid.UUID:
    """An upload row (a PDF in project 0, by the field worker) written straight to the
    database, for tests of the parts downstream of the Uploads API."""
    upload_id = uuid.uuid4()
    async with tenant_transaction(pool, t.tenant_id) as conn:
        await conn.execute(
            "INSERT INTO uploads (tenant_id, upload_id, project_id, uploader_id, file_name, declared_type, "
            "size_bytes, s3_key, status) "
            "VALUES ($1, $2, $3, $4, 'plano.pdf', 'application/pdf', 1234, $5, $6)",
            t.tenant_id,
            upload_id,
            t.projects[0],
            t.users["field_worker"],
            original_key(t.tenant_id, t.projects[0], upload_id, "plano.pdf"),
            status,
        )
    return upload_id


@pytest.fixture
async def make_tenant(pool: asyncpg.Pool, settings: Settings) -> Any:
    async def factory(**kwargs: Any) -> TenantFixture:
        return await create_tenant_fixture(pool, settings, **kwargs)

    return factory


@pytest.fixture
async def tenant(make_tenant: Any) -> TenantFixture:
    result: TenantFixture = await make_tenant()
    return result


async def _with_lifespan(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture
async def app(settings: Settings) -> Starlette:
    return create_app(settings, run_components=False)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _with_lifespan(app):
        yield c


class LiveServer:
    """A real uvicorn server in a thread on a free 127.0.0.1 port."""

    def __init__(self, app: Starlette) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # proxy_headers off, as `buildpeer serve` runs: server.proxies owns the client address
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 30, "uvicorn")
        if not self.server.started:
            raise RuntimeError("uvicorn failed to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[Any]:
    """``live_server(app=None, settings=None)`` → a started :class:`LiveServer`; all are
    stopped at the end of the test."""
    servers: list[LiveServer] = []

    def start(app: Starlette | None = None, settings_override: Settings | None = None) -> LiveServer:
        server = LiveServer(app or create_app(settings_override or settings)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


__all__ = ["JWT_SECRET", "LiveServer", "Stack", "TenantFixture", "insert_upload", "running_worker"]
