"""Deliver digests exactly once per user and local day.

Two guards, as the issue asks: a Redis lock per (user, day) keeps two instances from
even building the same digest at once, and the unique ``digest_deliveries`` row is the
record that decides — it is claimed (``sending``) in its own committed transaction
before anything is sent, and only a ``failed`` row (after its ``retry_at``) or
``--force`` can be claimed again. A crash between the provider's acceptance and the
``sent`` update leaves the row ``sending``: it is not retried automatically (a
duplicate email is worse than a missing one); ``buildpeer digest --force`` resends.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Protocol

import asyncpg
import boto3
from botocore.config import Config
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from core.db import all_tenant_ids, tenant_transaction
from core.metrics import NOTIFICATIONS
from core.settings import Settings
from subscribers.digest import query
from subscribers.digest.message import build_email
from subscribers.digest.render import render
from subscribers.digest.senders import EmailSender
from subscribers.inbox.service import Inbox, NoChannel
from subscribers.inbox.store import NewItem
from subscribers.unsubscribe import make_token, signing_key, unsubscribe_url

log = logging.getLogger(__name__)

THUMBNAIL_URL_SECONDS = 7 * 86400
LOCK_MS = 5 * 60 * 1000
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class Presigner(Protocol):
    async def __call__(self, key: str) -> str: ...


class S3Presigner:
    """Presigned GET URLs (SigV4, valid 7 days — SigV4's maximum) for thumbnails.
    Signing is local computation, so a plain boto3 client serves the event loop fine."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Presigner:
        kwargs: dict[str, Any] = {"region_name": settings.aws_region}
        addressing = "virtual"
        if settings.aws_endpoint_url:
            addressing = "path"
            kwargs.update(
                endpoint_url=settings.aws_endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        config = Config(signature_version="s3v4", s3={"addressing_style": addressing})  # type: ignore[arg-type]
        return cls(boto3.session.Session().client("s3", config=config, **kwargs), settings.bucket)

    async def __call__(self, key: str) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=THUMBNAIL_URL_SECONDS
        )
        return url


@dataclass(frozen=True, slots=True)
class DueDigest:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    day: date  # the first local day covered
    period: str = "daily"  # or "weekly" (seven days from ``day``, a Monday)


class DigestService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis | RedisCluster,  # one key per command and script: any slot
        sender: EmailSender,
        presign: Presigner,
        settings: Settings,
        *,
        inbox: Inbox | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        concurrency: int = 4,
    ) -> None:
        self._pool = pool
        self._inbox = inbox or Inbox(pool, NoChannel())
        self._redis = redis
        self._sender = sender
        self._presign = presign
        self._settings = settings
        self._clock = clock
        self._key = signing_key(settings)
        self._slots = asyncio.Semaphore(concurrency)
        hour, minute = settings.digest_hour.split(":")
        self.send_at = time(int(hour), int(minute))

    # --- one user, one day -------------------------------------------------------------
    async def deliver(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        day: date,
        *,
        period: str = "daily",
        force: bool = False,
    ) -> str:
        """``sent``, ``empty``, ``skipped`` (done, not eligible, or not retryable yet),
        ``locked`` (another instance is on it) or ``failed``."""
        lock_key = f"bp:digest:lock:{user_id}:{period}:{day.isoformat()}"
        owner = secrets.token_hex(8)
        if not await self._redis.set(lock_key, owner, nx=True, px=LOCK_MS):
            return "locked"
        try:
            return await self._deliver_locked(tenant_id, user_id, day, period, force=force)
        finally:
            await self._redis.eval(_RELEASE, 1, lock_key, owner)

    async def _claim(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, day: date, period: str, force: bool
    ) -> query.Recipient | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            who = await query.recipient(conn, user_id)
            if who is None:
                return None
            claimed = await conn.fetchval(
                "INSERT INTO digest_deliveries (tenant_id, user_id, digest_date, period, state, attempts) "
                "VALUES ($1, $2, $3, $6, 'sending', 1) "
                "ON CONFLICT (user_id, digest_date, period) DO UPDATE SET state = 'sending', "
                "  attempts = digest_deliveries.attempts + 1, error = NULL, retry_at = NULL, "
                "  updated_at = now() "
                "WHERE (digest_deliveries.state = 'failed' AND digest_deliveries.attempts < $4 "
                "       AND coalesce(digest_deliveries.retry_at, '-infinity') <= now()) "
                "   OR ($5 AND digest_deliveries.state <> 'sending') "
                "RETURNING attempts",
                tenant_id,
                user_id,
                day,
                self._settings.digest_max_attempts,
                force,
                period,
            )
        return who if claimed is not None else None

    async def _finish(
        self,
        who: query.Recipient,
        day: date,
        period: str,
        state: str,
        *,
        message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        async with tenant_transaction(self._pool, who.tenant_id) as conn:
            await conn.execute(
                "UPDATE digest_deliveries SET state = $3, message_id = $4, error = $5, updated_at = now(), "
                "  retry_at = CASE WHEN $3 = 'failed' THEN now() + make_interval(mins => "
                "    least(power(2, greatest(attempts - 1, 0))::int, 60)) END "
                "WHERE user_id = $1 AND digest_date = $2 AND period = $6",
                who.user_id,
                day,
                state,
                message_id,
                error,
                period,
            )

    async def _deliver_locked(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, day: date, period: str, *, force: bool
    ) -> str:
        who = await self._claim(tenant_id, user_id, day, period, force)
        if who is None:
            return "skipped"
        try:
            async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
                data = await query.collect(conn, who, day, period)
            if data.empty and not self._settings.digest_send_empty:
                await self._finish(who, day, period, "empty")
                return "empty"
            urls = {th.upload_id: await self._presign(th.s3_key) for th in data.thumbnails}
            link = unsubscribe_url(
                self._settings.public_url, make_token(self._key, who.tenant_id, who.user_id)
            )
            rendered = render(
                data, thumbnail_urls=urls, unsubscribe_url=link, public_url=self._settings.public_url
            )
            message = build_email(
                rendered,
                from_address=self._settings.email_from,
                to_address=who.email,
                unsubscribe_url=link,
                now=self._clock(),
            )
            message_id = await self._sender.send(
                message, tags={"tenant_id": str(who.tenant_id), "user_id": str(who.user_id)}
            )
        except Exception as exc:
            log.warning(
                "digest failed", extra={"user_id": str(user_id), "day": day.isoformat(), "error": str(exc)}
            )
            await self._finish(who, day, period, "failed", error=f"{type(exc).__name__}: {exc}"[:1000])
            NOTIFICATIONS.labels("email", "failed").inc()
            return "failed"
        await self._finish(who, day, period, "sent", message_id=message_id)
        NOTIFICATIONS.labels("email", "sent").inc()
        try:
            await self._headline(who, day, period, rendered.headline, rendered.subject, rendered.locale, data)
        except Exception:  # the email went out: a missing inbox line must not make it "failed"
            log.exception("digest inbox item failed", extra={"user_id": str(user_id)})
        log.info("digest sent", extra={"user_id": str(user_id), "day": day.isoformat(), "period": period})
        return "sent"

    async def _headline(
        self,
        who: query.Recipient,
        day: date,
        period: str,
        title: str,
        body: str,
        locale: str,
        data: query.DigestData,
    ) -> None:
        await self._inbox.add(
            who.tenant_id,
            [
                NewItem(
                    user_id=who.user_id,
                    source_key=f"digest:{period}:{day.isoformat()}",
                    kind="digest",
                    title=title,
                    body=body,
                    locale=locale,
                    data={
                        "period": period,
                        "first_day": day.isoformat(),
                        "last_day": data.last_day.isoformat(),
                    },
                )
            ],
        )

    # --- many ---------------------------------------------------------------------------
    async def _run(self, due: list[DueDigest], force: bool) -> Counter[str]:
        async def one(item: DueDigest) -> str:
            async with self._slots:
                try:
                    return await self.deliver(
                        item.tenant_id, item.user_id, item.day, period=item.period, force=force
                    )
                except Exception:
                    log.exception("digest delivery crashed", extra={"user_id": str(item.user_id)})
                    return "failed"

        return Counter(await asyncio.gather(*(one(item) for item in due)))

    async def run_day(self, day: date, *, force: bool = False) -> Counter[str]:
        """Every recipient's daily digest for local date ``day`` (the CLI), whatever the
        hour and whatever their usual period."""
        due: list[DueDigest] = []
        for tenant_id in await all_tenant_ids(self._pool):
            async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
                due += [DueDigest(tenant_id, r.user_id, day) for r in await query.recipients(conn)]
        return await self._run(due, force)

    async def due_now(self, now: datetime | None = None) -> list[DueDigest]:
        """Digests whose local send time has passed and that are neither done nor waiting."""
        moment = now or self._clock()
        due: list[DueDigest] = []
        for tenant_id in await all_tenant_ids(self._pool):
            async with tenant_transaction(self._pool, tenant_id, readonly=True) as conn:
                candidates = {}
                for r in await query.recipients(conn):
                    day = r.digest_day(moment, self.send_at)
                    if day is not None:
                        candidates[(r.user_id, day, r.frequency)] = DueDigest(
                            tenant_id, r.user_id, day, r.frequency
                        )
                if not candidates:
                    continue
                rows = await conn.fetch(
                    "SELECT user_id, digest_date, period, (state = 'failed' AND attempts < $2 "
                    "  AND coalesce(retry_at, '-infinity') <= now()) AS retryable "
                    "FROM digest_deliveries WHERE digest_date = ANY($1::date[])",
                    list({key[1] for key in candidates}),
                    self._settings.digest_max_attempts,
                )
                for row in rows:
                    if not row["retryable"]:
                        candidates.pop((row["user_id"], row["digest_date"], row["period"]), None)
                due += candidates.values()
        return due

    async def run_due(self, now: datetime | None = None) -> Counter[str]:
        return await self._run(await self.due_now(now), force=False)
