"""Timers and limits of the real-time node, from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings


@dataclass(frozen=True, slots=True)
class RealtimeConfig:
    ping_interval: float = 25.0
    pong_timeout: float = 8.0
    max_queue_bytes: int = 1024 * 1024
    max_frame_bytes: int = 65536
    history_size: int = 300
    history_ttl: int = 600
    tenant_connection_limit: int = 0
    shutdown_timeout: float = 5.0
    close_timeout: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RealtimeConfig:
        return cls(
            ping_interval=settings.realtime_ping_seconds,
            pong_timeout=settings.realtime_pong_timeout_seconds,
            max_queue_bytes=settings.realtime_max_queue_bytes,
            max_frame_bytes=settings.realtime_max_frame_bytes,
            history_size=settings.realtime_history_size,
            history_ttl=settings.realtime_history_ttl_seconds,
            tenant_connection_limit=settings.realtime_tenant_connection_limit,
            shutdown_timeout=settings.realtime_shutdown_seconds,
        )
