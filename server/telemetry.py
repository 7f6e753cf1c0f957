"""Tracing for the server process: install the provider chosen by ``settings.otel_exporter``
once at start, flush it at shutdown. Propagation helpers live in :mod:`core.tracing`, shared
with the processors."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from core.settings import Settings
from core.tracing import build_provider


def setup_tracing(settings: Settings, *, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Build the provider and make it the process-global one (OpenTelemetry allows that once
    per process). Returns it for :func:`shutdown_tracing`; ``None`` when tracing is off."""
    provider = build_provider(settings.otel_exporter, f"{settings.stack}-server", exporter=exporter)
    if provider is not None:
        trace.set_tracer_provider(provider)
    return provider


def shutdown_tracing(provider: TracerProvider | None) -> None:
    """Export what is buffered and stop (bounded by the SDK's own export timeout)."""
    if provider is not None:
        provider.force_flush()
        provider.shutdown()
