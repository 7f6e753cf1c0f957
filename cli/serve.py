from __future__ import annotations

import argparse
import socket

import uvicorn

from cli import CommandError
from cli import workers as workers_module
from core.logging import configure_logging
from core.settings import Settings
from server.app import create_app


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the API + WebSocket server")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes sharing the port (default BUILDPEER_WORKERS, else the CPU count)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.database_url or not settings.redis_url:
        raise CommandError(
            "BUILDPEER_DATABASE_URL and BUILDPEER_REDIS_URL must be set (or use `buildpeer dev`)"
        )
    if not settings.jwt_secret and not settings.jwt_jwks_url:
        raise CommandError("BUILDPEER_JWT_SECRET or BUILDPEER_JWT_JWKS_URL must be set")
    configure_logging(settings.log_level)
    host, port = args.host or settings.host, args.port or settings.port
    workers = args.workers or settings.workers or workers_module.default_workers()
    if workers < 1:
        raise CommandError("--workers must be at least 1")
    if workers == 1:
        serve(settings, host=host, port=port)
        return 0
    if port in workers_module.metrics_ports(settings, workers):
        raise CommandError("BUILDPEER_METRICS_PORT + worker index must not reach BUILDPEER_PORT")
    return workers_module.Supervisor(settings, host=host, port=port, workers=workers).run()


class Server(uvicorn.Server):
    """uvicorn's server, which first ends the app's real-time sessions when it shuts down
    (3001: reconnect elsewhere). uvicorn waits for open responses before the lifespan's
    shutdown, so an HTTP-stream or SSE session would otherwise hold it for the whole graceful
    timeout and end as a cut connection."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        node = getattr(getattr(app, "state", None), "realtime", None)
        if node is not None:
            await node.drain()
        await super().shutdown(sockets=sockets)


def serve_on_socket(settings: Settings, sock: socket.socket) -> None:
    """One worker of ``--workers N``: the app on a socket shared through ``SO_REUSEPORT``."""
    host, port = sock.getsockname()[:2]
    try:
        Server(uvicorn_config(settings, host=host, port=port)).run(sockets=[sock])
    except KeyboardInterrupt:
        pass


def serve(settings: Settings, *, host: str, port: int) -> None:
    try:
        Server(uvicorn_config(settings, host=host, port=port)).run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it drained on (as uvicorn.run does)
        pass


def uvicorn_config(settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """How the server runs. uvicorn's proxy headers are off: the client address behind
    CloudFront and the ALB is :mod:`server.proxies`'s to decide, from
    ``BUILDPEER_TRUSTED_PROXIES`` (uvicorn would otherwise trust X-Forwarded-For from
    127.0.0.1, and rewrite the peer before the app could see it). No access log: errors are
    logged by the app, requests are counted in its metrics."""
    return uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        proxy_headers=False,
        forwarded_allow_ips=[],
        access_log=False,  # off anyway (WARNING), but uvicorn formatted each line's fields first
        timeout_graceful_shutdown=20,
        ws_max_size=64 * 1024,
        # websockets' sans-I/O protocol (bench/fanout.py, RESULTS "Fan-out": the legacy one
        # held ~7 KiB more per idle connection; wsproto ~2 KiB less, but its permessage-deflate,
        # which browsers always negotiate, keeps 15-bit windows — this one's are 12-bit). No
        # WebSocket-level keepalive: the real-time protocol pings every client itself
        # (server.realtime.session); uvicorn's timer per connection only duplicated it.
        ws="websockets-sansio",
        ws_ping_interval=None,
    )
