"""``buildpeer digest --date YYYY-MM-DD [--force]``: send every recipient's digest for
that local day now (whatever the hour). Without ``--force`` a digest already sent (or
found empty) is not sent again; with it, it is resent."""

from __future__ import annotations

import argparse
import asyncio
from datetime import date

from cli import CommandError
from cli.database import command_pool
from cli.output import add_json_flag, emit
from core.settings import Settings
from server import redis_client
from subscribers.digest.senders import sender_for
from subscribers.digest.service import DigestService, S3Presigner


def _date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {raw!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    parser = subparsers.add_parser("digest", help="send the daily digest emails of one local day now")
    parser.add_argument(
        "--date", required=True, type=_date, help="the local day the digests cover (YYYY-MM-DD)"
    )
    parser.add_argument("--force", action="store_true", help="resend digests already sent for that day")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


async def send_day(settings: Settings, day: date, *, force: bool) -> dict[str, int]:
    if not settings.database_url or not settings.redis_url:
        raise CommandError(
            "BUILDPEER_DATABASE_URL and BUILDPEER_REDIS_URL must be set (or run `buildpeer dev`)"
        )
    if not (settings.unsubscribe_secret or settings.jwt_secret):
        raise CommandError("BUILDPEER_UNSUBSCRIBE_SECRET (or BUILDPEER_JWT_SECRET) is needed to sign links")
    async with command_pool(settings, max_size=4) as pool:
        redis = redis_client.connect(settings.redis_url, cluster=settings.redis_cluster)
        sender = sender_for(settings)
        try:
            service = DigestService(pool, redis, sender, S3Presigner.from_settings(settings), settings)
            results = await service.run_day(day, force=force)
        finally:
            await sender.close()
            await redis.aclose()  # type: ignore[attr-defined,unused-ignore]
    return dict(results)


def run(args: argparse.Namespace, settings: Settings) -> int:
    results = asyncio.run(send_day(settings, args.date, force=args.force))
    summary = ", ".join(f"{k} {v}" for k, v in sorted(results.items())) or "no recipients"
    emit(args, {"date": args.date.isoformat(), "results": results}, f"digest {args.date}: {summary}")
    return 1 if results.get("failed") else 0
