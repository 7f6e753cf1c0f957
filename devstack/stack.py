"""``buildpeer dev``: start what is missing, provision, migrate, seed, write ``var/dev.env``.

Everything it starts is recorded in start order and stopped in reverse by :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from core.db import create_pool, tenant_transaction
from core.migrate import migrate
from core.settings import Settings
from devstack.aws import MotoServer, provision
from devstack.clamd import EmbeddedClamd
from devstack.fcm_emulator import FcmEmulator
from devstack.postgres import EmbeddedPostgres
from devstack.redis import EmbeddedRedis
from devstack.smtp_sink import SmtpSink
from server import admin
from server.auth import mint_token

log = logging.getLogger(__name__)

DEMO_USERS = (
    ("admin", "admin@demo.buildpeer.example"),
    ("field_worker", "campo@demo.buildpeer.example"),
    ("investor", "inversionista@demo.buildpeer.example"),
)
# The SQS long polls of the server's consumers and of the worker, unless set: a stop waits for
# the poll in flight, so with SQS's 20 s Ctrl-C took as long.
DEV_POLLS = ("events_wait_seconds", "push_wait_seconds", "worker_wait_seconds")
DEV_POLL_SECONDS = 2


class DevStackError(RuntimeError):
    """A configuration dev cannot run with, explained in one line."""


def describe_redis(url: str, *, cluster: bool) -> str:
    """What the Redis at ``url`` is, checked against ``BUILDPEER_REDIS_CLUSTER``: a Cluster node
    used as a single Redis (or the reverse) would fail on the first command that dev serves."""
    shown = redact_url(url)
    try:
        with redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5) as client:
            is_cluster = bool(client.info("cluster").get("cluster_enabled"))
            nodes = client.execute_command("CLUSTER NODES") if is_cluster and cluster else {}
    except (redis.RedisError, OSError) as exc:
        # the app retries; dev does not refuse to start over a Redis that is not up yet
        return f"BUILDPEER_REDIS_URL {shown}, not reachable now ({exc})"
    if is_cluster and not cluster:
        raise DevStackError(f"{shown} is a Redis Cluster node: set BUILDPEER_REDIS_CLUSTER=true")
    if cluster and not is_cluster:
        raise DevStackError(f"{shown} is not a Redis Cluster node: unset BUILDPEER_REDIS_CLUSTER")
    if not cluster:
        return f"BUILDPEER_REDIS_URL {shown}"
    flags = [str(node.get("flags", "")) for node in nodes.values()]
    masters = sum(1 for f in flags if "master" in f and "fail" not in f)
    return f"Redis Cluster at {shown} ({masters} masters): cache, broker, limits and locks"


def redact_url(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class DevStack:
    def __init__(self, settings: Settings, *, say: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.var = settings.var_dir.resolve()
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self.demo: dict[str, Any] = {}

    def _started(self, name: str, stop: Callable[[], None]) -> None:
        self._stops.append((name, stop))

    def start(self) -> Settings:
        s = self.settings
        if s.redis_url:  # before anything starts: a wrong Redis mode stops dev at once
            self.say(f"redis       {describe_redis(s.redis_url, cluster=s.redis_cluster)} (nothing embedded)")
        elif s.redis_cluster:
            raise DevStackError(
                "BUILDPEER_REDIS_CLUSTER=true needs BUILDPEER_REDIS_URL naming one node of the Cluster"
            )
        self.var.mkdir(parents=True, exist_ok=True)
        changes: dict[str, Any] = {}
        if not s.jwt_secret and not s.jwt_jwks_url:
            changes["jwt_secret"] = self._persistent_secret("jwt-secret")
        if not s.database_url:
            pg = EmbeddedPostgres(self.var / "postgres" / "data", durable=True)
            pg.start()
            self._started("postgres", pg.stop)
            changes.update(database_url=pg.app_url(), migrate_database_url=pg.owner_url)
            self.say(f"postgres    embedded, {pg.owner_url} (data in {pg.data_dir})")
        if not s.redis_url:
            rd = EmbeddedRedis(self.var / "redis", durable=True)
            rd.start()
            self._started("redis", rd.stop)
            changes["redis_url"] = rd.url
            self.say(f"redis       embedded, {rd.url}")
        if not s.aws_endpoint_url:
            moto = MotoServer()
            moto.start()
            self._started("moto", moto.stop)
            changes["aws_endpoint_url"] = moto.url
            self.say(f"aws         in-process moto server, {moto.url} (S3 objects live in memory)")
        if not s.clamd_url:
            clamd = EmbeddedClamd(self.var)
            clamd.start()
            self._started("clamd", clamd.stop)
            changes["clamd_url"] = clamd.url
            self.say(f"clamd       {clamd.url}, signatures: {clamd.database}")
        if not s.fcm_credentials:
            fcm = FcmEmulator(self.var / "push").start()
            self._started("fcm emulator", fcm.stop)
            changes.update(fcm_credentials=str(fcm.credentials_path), fcm_endpoint=fcm.url)
            self.say(f"push        FCM v1 emulator {fcm.url}, messages kept in {fcm.directory}")
        if not s.smtp_url:
            sink = SmtpSink(self.var / "mail").start()
            self._started("smtp sink", sink.stop)
            changes["smtp_url"] = sink.url
            self.say(f"email       SMTP sink {sink.url}, messages kept as .eml in {self.var / 'mail'}")
        for name in DEV_POLLS:  # unless set: Ctrl-C waits for each long poll in flight
            if f"BUILDPEER_{name.upper()}" not in os.environ:
                changes[name] = DEV_POLL_SECONDS
        self.settings = s = s.replace(**changes)
        applied = asyncio.run(migrate(s.owner_database_url or ""))
        self.say(f"migrations  {len(applied)} applied")
        provision(s)
        self.say(f"resources   bucket {s.bucket}, queues and topics of stack {s.stack}")
        self.demo = asyncio.run(self._seed())
        return s

    def _persistent_secret(self, name: str) -> str:
        path = self.var / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    async def _seed(self) -> dict[str, Any]:
        """The demo tenant: reused when ``var/demo.json`` names one that still exists."""
        path = self.var / "demo.json"
        pool = await create_pool(self.settings.database_url or "", min_size=1, max_size=2)
        try:
            if path.exists():
                demo = json.loads(path.read_text())
                async with tenant_transaction(pool, demo["tenant_id"]) as conn:
                    if await conn.fetchval("SELECT 1 FROM tenants"):
                        return dict(demo)
            tenant = await admin.create_tenant(pool, "Constructora Demo", timezone="America/Mexico_City")
            tid = tenant["tenant_id"]
            projects = [
                (await admin.create_project(pool, tid, name))["project_id"]
                for name in ("Torre Reforma", "Residencial Paulista")
            ]
            users = {}
            for role, email in DEMO_USERS:
                users[role] = (await admin.create_user(pool, tid, email, role))["user_id"]
                for project in projects:
                    await admin.add_member(pool, project, users[role])
            demo = {"tenant_id": tid, "projects": projects, "users": users}
            path.write_text(json.dumps(demo, indent=2))
            return demo
        finally:
            await pool.close()

    def tokens(self, ttl_seconds: int = 12 * 3600) -> dict[str, str]:
        return {
            role: mint_token(
                self.settings,
                user_id=uuid.UUID(user_id),
                tenant_id=self.demo["tenant_id"],
                role=role,
                ttl_seconds=ttl_seconds,
            )
            for role, user_id in self.demo["users"].items()
        }

    def write_env(self, extra: dict[str, str] | None = None) -> Path:
        s = self.settings
        values = {
            "BUILDPEER_DATABASE_URL": s.database_url,
            "BUILDPEER_MIGRATE_DATABASE_URL": s.migrate_database_url,
            "BUILDPEER_REDIS_URL": s.redis_url,
            "BUILDPEER_REDIS_CLUSTER": "true" if s.redis_cluster else None,
            "BUILDPEER_AWS_ENDPOINT_URL": s.aws_endpoint_url,
            "BUILDPEER_CLAMD_URL": s.clamd_url,
            "BUILDPEER_FCM_CREDENTIALS": s.fcm_credentials,
            "BUILDPEER_FCM_ENDPOINT": s.fcm_endpoint,
            "BUILDPEER_SMTP_URL": s.smtp_url,
            "BUILDPEER_JWT_SECRET": s.jwt_secret,
            "BUILDPEER_BUCKET": s.bucket,
            "BUILDPEER_STACK": s.stack,
            "BUILDPEER_WORKER_WAIT_SECONDS": str(s.worker_wait_seconds),
            "BUILDPEER_API_URL": f"http://{s.host}:{s.port}",
            "BUILDPEER_TOKEN": self.tokens()["field_worker"],
            "BUILDPEER_DEMO_PROJECT": self.demo["projects"][0],
            **(extra or {}),
        }
        path = self.var / "dev.env"
        lines = ["# written by `buildpeer dev`; CLI commands read it for unset variables"]
        lines += [f"{k}={v}" for k, v in values.items() if v]
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def stop(self) -> None:
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception:
                log.exception("failed to stop %s", name)
