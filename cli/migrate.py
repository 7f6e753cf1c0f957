from __future__ import annotations

import argparse
import asyncio

from cli import CommandError
from cli.output import add_json_flag, emit
from core.migrate import MigrationError, migrate
from core.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("migrate", help="apply pending SQL migrations")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    dsn = settings.owner_database_url
    if not dsn:
        raise CommandError("BUILDPEER_DATABASE_URL (or BUILDPEER_MIGRATE_DATABASE_URL) is not set")
    try:
        applied = asyncio.run(migrate(dsn))
    except (OSError, MigrationError) as exc:
        raise CommandError(str(exc)) from exc
    emit(args, {"applied": applied}, f"applied {len(applied)} migration(s): {', '.join(applied) or 'none'}")
    return 0
