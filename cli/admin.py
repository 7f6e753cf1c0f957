"""Administration commands: tenant, user, project, token (each with ``--json``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

from cli import CommandError
from cli.database import command_pool
from cli.output import add_json_flag, emit
from core.auth import Role
from core.settings import LOCALES, Settings
from server import admin
from server.auth import mint_token
from server.realtime.broker import BrokerUnavailable, create_broker
from server.realtime.control import ControlPublisher


def register(subparsers: argparse._SubParsersAction) -> None:
    tenant = subparsers.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    p = tenant.add_parser("create", help="create a tenant")
    p.add_argument("--name", required=True)
    p.add_argument("--timezone", default=None, help="IANA time zone (default: BUILDPEER_DEFAULT_TIMEZONE)")
    p.add_argument("--locale", choices=LOCALES, default=None)
    add_json_flag(p)
    p.set_defaults(handler=_sync(_tenant_create))

    user = subparsers.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    p = user.add_parser("create", help="create a user")
    p.add_argument("--tenant", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--timezone", default=None)
    p.add_argument("--locale", choices=LOCALES, default=None)
    add_json_flag(p)
    p.set_defaults(handler=_sync(_user_create))
    p = user.add_parser("set-role", help="change a user's role (live subscriptions follow)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    add_json_flag(p)
    p.set_defaults(handler=_sync(_user_set_role))

    project = subparsers.add_parser("project", help="manage projects").add_subparsers(
        dest="action", required=True
    )
    p = project.add_parser("create", help="create a project")
    p.add_argument("--tenant", required=True)
    p.add_argument("--name", required=True)
    add_json_flag(p)
    p.set_defaults(handler=_sync(_project_create))
    p = project.add_parser("add-member", help="add a user to a project")
    p.add_argument("--project", required=True)
    p.add_argument("--user", required=True)
    add_json_flag(p)
    p.set_defaults(handler=_sync(_project_add_member))
    p = project.add_parser("remove-member", help="take a user off a project (live subscriptions end)")
    p.add_argument("--project", required=True)
    p.add_argument("--user", required=True)
    add_json_flag(p)
    p.set_defaults(handler=_sync(_project_remove_member))

    p = subparsers.add_parser("token", help="mint a dev JWT (HS256 with BUILDPEER_JWT_SECRET)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--ttl", type=int, default=3600 * 12, help="seconds (default 12 h)")
    add_json_flag(p)
    p.set_defaults(handler=_token)


Handler = Callable[[asyncpg.Pool, argparse.Namespace, Settings], Awaitable[tuple[dict[str, Any], str]]]


def _sync(handler: Handler) -> Callable[[argparse.Namespace, Settings], int]:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        async def go() -> tuple[dict[str, Any], str]:
            async with command_pool(settings) as pool:
                return await handler(pool, args, settings)

        try:
            result, human = asyncio.run(go())
        except (admin.AdminError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        emit(args, result, human)
        return 0

    return run


async def _tenant_create(
    pool: asyncpg.Pool, args: argparse.Namespace, s: Settings
) -> tuple[dict[str, Any], str]:
    row = await admin.create_tenant(
        pool, args.name, timezone=args.timezone or s.default_timezone, locale=args.locale or s.default_locale
    )
    return row, f"tenant {row['tenant_id']} ({row['name']})"


async def _user_create(
    pool: asyncpg.Pool, args: argparse.Namespace, s: Settings
) -> tuple[dict[str, Any], str]:
    row = await admin.create_user(
        pool, args.tenant, args.email, args.role, timezone=args.timezone, locale=args.locale
    )
    return row, f"user {row['user_id']} ({row['email']}, {row['role']})"


async def _project_create(
    pool: asyncpg.Pool, args: argparse.Namespace, s: Settings
) -> tuple[dict[str, Any], str]:
    row = await admin.create_project(pool, args.tenant, args.name)
    return row, f"project {row['project_id']} ({row['name']})"


async def _project_add_member(
    pool: asyncpg.Pool, args: argparse.Namespace, s: Settings
) -> tuple[dict[str, Any], str]:
    row = await admin.add_member(pool, args.project, args.user)
    return row, f"user {row['user_id']} is a member of project {row['project_id']}"


@contextlib.asynccontextmanager
async def _access_notifier(s: Settings) -> AsyncIterator[admin.AccessNotifier | None]:
    """The real-time servers' control channel (their broker), when one is configured."""
    url = s.realtime_broker_url or s.redis_url
    if not url:
        yield None
        return
    broker = create_broker(
        url,
        history_size=s.realtime_history_size,
        history_ttl=s.realtime_history_ttl_seconds,
        cluster=s.redis_cluster and url == s.redis_url,  # the control shard channel on a Cluster
    )
    try:
        yield ControlPublisher(broker)
    except BrokerUnavailable as exc:
        raise CommandError(f"changed, but the real-time servers could not be told: {exc}") from exc
    finally:
        await broker.stop()


async def _project_remove_member(
    pool: asyncpg.Pool, args: argparse.Namespace, s: Settings
) -> tuple[dict[str, Any], str]:
    async with _access_notifier(s) as notify:
        row = await admin.remove_member(pool, args.project, args.user, notify=notify)
    return row, f"user {row['user_id']} is no longer a member of project {row['project_id']}"


async def _user_set_role(
    pool: asyncpg.Pool, args: argparse.Namespace, s: Settings
) -> tuple[dict[str, Any], str]:
    async with _access_notifier(s) as notify:
        row = await admin.set_role(pool, args.tenant, args.user, args.role, notify=notify)
    return row, f"user {row['user_id']} is now {row['role']}"


def _token(args: argparse.Namespace, settings: Settings) -> int:
    try:
        token = mint_token(
            settings, user_id=args.user, tenant_id=args.tenant, role=args.role, ttl_seconds=args.ttl
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    emit(args, {"token": token}, token)
    return 0
