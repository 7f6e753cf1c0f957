"""Uploads: Companion-compatible presign routes, native status/progress routes, the
rate limiter and the stale-upload sweeper (issue 3)."""

from __future__ import annotations

from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import BaseRoute, Route

from server.uploads import companion, docs, native, originals, sign, status
from server.uploads.sweeper import StaleUploadSweeper

docs.document()


class PartNumberConvertor(Convertor[str]):
    """A part number segment: anything but the sibling routes' literal names, so
    ``GET /s3/multipart/{id}/complete`` is a 405 (POST only) rather than a part ``complete``."""

    regex = r"(?!(?:complete|batch)$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("partnumber", PartNumberConvertor())


def routes() -> list[BaseRoute]:
    return [
        # First: the most requested route (polling) is matched before the others are tried.
        Route("/api/v1/uploads/{upload_id}", status.upload_status, methods=["GET"]),
        Route("/s3/params", companion.get_params, methods=["GET"]),
        Route("/s3/multipart", companion.create_multipart, methods=["POST"]),
        Route("/s3/sign", sign.sign_request, methods=["POST"]),
        Route("/s3/multipart/{uploadId}/batch", companion.sign_batch, methods=["GET"]),
        Route("/s3/multipart/{uploadId}/complete", companion.complete, methods=["POST"]),
        Route("/s3/multipart/{uploadId}/{partNumber:partnumber}", companion.sign_part, methods=["GET"]),
        Route("/s3/multipart/{uploadId}", companion.list_parts, methods=["GET"]),
        Route("/s3/multipart/{uploadId}", companion.abort, methods=["DELETE"]),
        Route("/api/v1/uploads/{upload_id}", originals.delete_upload, methods=["DELETE"]),
        Route("/api/v1/uploads/{upload_id}/original", originals.download_original, methods=["GET"]),
        Route("/api/v1/uploads/{upload_id}/progress", native.report_progress, methods=["POST"]),
        Route("/api/v1/projects/{project_id}/uploads", native.project_uploads, methods=["GET"]),
    ]


def components(app_state: Any) -> list[Any]:
    return [StaleUploadSweeper(app_state)]
