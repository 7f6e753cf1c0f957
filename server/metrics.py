"""Prometheus metrics of the server process, served as ``GET /metrics`` by an internal
listener of their own (``BUILDPEER_METRICS_HOST``:``BUILDPEER_METRICS_PORT``), never on the
public port: the labels name tenants, which only operators may see."""

from __future__ import annotations

import asyncio
import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_wsgi_server

from core.metrics import NOTIFICATIONS, PROCESSOR_DURATION, SQS_MESSAGES

__all__ = ["NOTIFICATIONS", "PROCESSOR_DURATION", "SQS_MESSAGES"]

HTTP_LATENCY = Histogram(
    "buildpeer_http_request_duration_seconds",
    "API latency by route",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
UPLOADS_BY_STATUS = Counter(
    "buildpeer_upload_status_changes_total",
    "Upload status changes by new status and reason",
    ["status", "reason"],
)
WEBSOCKET_CONNECTIONS = Gauge(
    "buildpeer_websocket_connections", "Open WebSocket connections per tenant", ["tenant"]
)
PUBLICATIONS_DELIVERED = Counter(
    "buildpeer_publications_delivered_total", "Publications written to client connections"
)
FANOUT_LATENCY = Histogram(
    "buildpeer_fanout_latency_seconds",
    "Publish to local delivery latency",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)

log = logging.getLogger(__name__)


class MetricsListener:
    """The internal ``/metrics`` listener: a small threaded HTTP server owned by the app's
    lifespan (started before the components, stopped after them)."""

    name = "metrics-listener"

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        self._server, self._thread = start_wsgi_server(self.port, addr=self.host)
        self.port = self._server.server_port  # the bound one, when asked for port 0
        log.info("metrics listener started", extra={"url": self.url})

    async def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        await asyncio.to_thread(thread.join, 5)
