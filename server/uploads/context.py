"""The uploads feature's per-app objects, made once on first use and kept on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from core.publish import EventPublisher
from core.settings import Settings
from server.status_cache import StatusCache
from server.uploads.changes import ProgressThrottle, UploadChanges
from server.uploads.presign import Presigner


@dataclass
class Uploads:
    settings: Settings
    pool: Any  # asyncpg.Pool
    s3: Any  # aiobotocore S3 client
    cache: StatusCache
    presigner: Presigner
    throttle: ProgressThrottle

    @property
    def bucket(self) -> str:
        return self.settings.bucket


def uploads(conn: HTTPConnection) -> Uploads:
    state = conn.app.state
    found: Uploads | None = getattr(state, "uploads", None)
    if found is None or found.pool is not state.pool or found.s3 is not state.s3:
        found = Uploads(
            settings=state.settings,
            pool=state.pool,
            s3=state.s3,
            cache=state.status_cache,
            presigner=found.presigner if found is not None else Presigner(state.settings),
            throttle=ProgressThrottle(state.redis),
        )
        state.uploads = found
    return found


def publisher(conn: HTTPConnection) -> EventPublisher:
    result: EventPublisher = conn.app.state.publisher
    return result


def changes(conn: HTTPConnection) -> UploadChanges:
    """The after-a-change step with the app's current publisher (the hub replaces the
    default one at start)."""
    ctx = uploads(conn)
    return UploadChanges(ctx.cache, publisher(conn), ctx.throttle)
