"""``buildpeer worker``: the local Lambda runtime for the processor queues."""

from __future__ import annotations

import argparse

from cli import CommandError
from core.logging import configure_logging
from core.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker", help="poll the processor queues and run the processor handlers (local Lambda runtime)"
    )
    parser.add_argument("--concurrency", type=int, default=None, help="batches in flight per queue")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.database_url:
        raise CommandError("BUILDPEER_DATABASE_URL is not set (start `buildpeer dev` or set it)")
    if not settings.clamd_url:
        raise CommandError("BUILDPEER_CLAMD_URL is not set: the scan would never pass (tcp://host:port)")
    if args.concurrency is not None:
        if not 1 <= args.concurrency <= 100:
            raise CommandError("--concurrency must be between 1 and 100")
        settings = settings.replace(worker_concurrency=args.concurrency)
    configure_logging(settings.log_level)
    from processors.worker import main

    return main(settings)
