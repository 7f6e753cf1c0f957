"""Retention of notification data, run by the digest scheduler's leader (hourly):
inbox items past ``inbox_retention_days``, device tokens idle for ``device_idle_days``
(no successful send and no re-registration), push delivery records past the inbox's age."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg

from core.db import all_tenant_ids, tenant_transaction
from core.settings import Settings
from subscribers.inbox import store as inbox_store
from subscribers.push import store as push_store

log = logging.getLogger(__name__)


class Housekeeping:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._inbox_days = settings.inbox_retention_days
        self._device_days = settings.device_idle_days

    async def __call__(self, now: datetime | None = None) -> Counter[str]:
        moment = now or datetime.now(UTC)
        before = moment - timedelta(days=self._inbox_days)
        done: Counter[str] = Counter()
        for tenant_id in await all_tenant_ids(self._pool):
            async with tenant_transaction(self._pool, tenant_id) as conn:
                done["inbox_items"] += await inbox_store.purge_older(conn, before)
                done["device_tokens"] += await push_store.prune_devices(conn, self._device_days)
                done["push_deliveries"] += await push_store.purge_old(conn, before)
        if sum(done.values()):
            log.info("notification housekeeping", extra=dict(done))
        return done
