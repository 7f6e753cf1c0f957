from __future__ import annotations

import argparse
import asyncio
from urllib.parse import unquote, urlsplit

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
    # The role the application connects as: refused when superuser or BYPASSRLS.
    username = urlsplit(settings.database_url).username if settings.database_url else None
    app_user = unquote(username) if username else None
    try:
        applied = asyncio.run(migrate(dsn, app_roles=[app_user] if app_user else []))
    except (OSError, MigrationError) as exc:
        raise CommandError(str(exc)) from exc
    emit(args, {"applied": applied}, f"applied {len(applied)} migration(s): {', '.join(applied) or 'none'}")
    return 0
