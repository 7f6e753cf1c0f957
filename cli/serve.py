from __future__ import annotations

import argparse

import uvicorn

from cli import CommandError
from core.logging import configure_logging
from core.settings import Settings
from server.app import create_app


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the API + WebSocket server")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.database_url or not settings.redis_url:
        raise CommandError(
            "BUILDPEER_DATABASE_URL and BUILDPEER_REDIS_URL must be set (or use `buildpeer dev`)"
        )
    if not settings.jwt_secret and not settings.jwt_jwks_url:
        raise CommandError("BUILDPEER_JWT_SECRET or BUILDPEER_JWT_JWKS_URL must be set")
    configure_logging(settings.log_level)
    serve(settings, host=args.host or settings.host, port=args.port or settings.port)
    return 0


def serve(settings: Settings, *, host: str, port: int) -> None:
    try:
        uvicorn.Server(uvicorn_config(settings, host=host, port=port)).run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it drained on (as uvicorn.run does)
        pass


def uvicorn_config(settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """How the server runs. uvicorn's proxy headers are off: the client address behind
    CloudFront and the ALB is :mod:`server.proxies`'s to decide, from
    ``BUILDPEER_TRUSTED_PROXIES`` (uvicorn would otherwise trust X-Forwarded-For from
    127.0.0.1, and rewrite the peer before the app could see it)."""
    return uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        proxy_headers=False,
        forwarded_allow_ips=[],
        timeout_graceful_shutdown=20,
        ws_max_size=64 * 1024,
    )
