"""``buildpeer suppression list|lift --tenant T``: the email addresses SES bounces and
complaints suppressed in a tenant (no digest goes to them), and lifting one after the address
was fixed. The same as ``GET /api/v1/email-suppressions`` and ``DELETE
/api/v1/email-suppressions/{email}`` for the tenant's admins; each lift is logged."""

from __future__ import annotations

import argparse
import asyncio
import logging
import uuid
from typing import Any

from cli import CommandError
from cli.database import command_pool
from cli.output import add_json_flag, emit
from core.db import tenant_transaction
from core.settings import Settings
from subscribers import email_feedback

log = logging.getLogger(__name__)


def _tenant(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a tenant id (UUID), got {raw!r}") from None


def _address(raw: str) -> str:
    try:
        return email_feedback.parse_address(raw)
    except email_feedback.InvalidAddress as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    group = subparsers.add_parser(
        "suppression", help="email addresses suppressed by SES bounces and complaints"
    ).add_subparsers(dest="action", required=True)
    p = group.add_parser("list", help="a tenant's suppressed addresses")
    p.add_argument("--tenant", required=True, type=_tenant)
    add_json_flag(p)
    p.set_defaults(handler=run)
    p = group.add_parser("lift", help="send digests to an address again (after it was fixed)")
    p.add_argument("--tenant", required=True, type=_tenant)
    p.add_argument("--email", required=True, type=_address)
    add_json_flag(p)
    p.set_defaults(handler=run)


async def list_all(settings: Settings, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    async def go(conn: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            items, cursor = await email_feedback.suppressions(
                conn, tenant_id, after=cursor, limit=email_feedback.MAX_PAGE
            )
            found.extend(items)
            if cursor is None:
                return found

    return await _in_tenant(settings, tenant_id, go, readonly=True)


async def lift(settings: Settings, tenant_id: uuid.UUID, email: str) -> dict[str, Any]:
    async def go(conn: Any) -> dict[str, Any]:
        lifted = await email_feedback.lift(conn, tenant_id, email)
        if lifted is None:
            raise CommandError(f"{email} is not suppressed in tenant {tenant_id}")
        return lifted

    lifted = await _in_tenant(settings, tenant_id, go, readonly=False)
    log.info(
        "email suppression lifted",
        extra={"tenant_id": str(tenant_id), "email": email, "reason": lifted["reason"], "via": "cli"},
    )
    return lifted


async def _in_tenant(settings: Settings, tenant_id: uuid.UUID, work: Any, *, readonly: bool) -> Any:
    async with command_pool(settings, max_size=1) as pool:
        async with tenant_transaction(pool, tenant_id, readonly=readonly) as conn:
            return await work(conn)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "list":
        items = asyncio.run(list_all(settings, args.tenant))
        lines = [f"{i['email']}  {i['reason']}  {i['detail'] or '-'}  {i['event_at']}" for i in items]
        emit(
            args,
            {"tenant_id": str(args.tenant), "items": items},
            "\n".join(lines) if lines else f"no suppressed addresses in tenant {args.tenant}",
        )
        return 0
    lifted = asyncio.run(lift(settings, args.tenant, args.email))
    emit(
        args,
        {"tenant_id": str(args.tenant), "lifted": lifted},
        f"{lifted['email']} gets digests again (was suppressed: {lifted['reason']})",
    )
    return 0
