"""Prometheus metrics of the server process (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

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


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
