"""SigV4 presigned URLs for PUT (single upload) and UploadPart, from one sync botocore
client made once: presigning is local CPU work, no I/O, so it runs inline."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from core.settings import Settings


def presign_client(settings: Settings) -> Any:
    """The S3 client used only for signing. With ``s3_accelerate`` (and real AWS) the URLs
    name ``<bucket>.s3-accelerate.amazonaws.com``; a custom endpoint is signed path-style."""
    s3_config: dict[str, Any]
    kwargs: dict[str, Any] = {"region_name": settings.aws_region}
    if settings.aws_endpoint_url:
        s3_config = {"addressing_style": "path"}
        kwargs.update(
            endpoint_url=settings.aws_endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    elif settings.s3_accelerate:
        s3_config = {"use_accelerate_endpoint": True, "addressing_style": "virtual"}
    else:
        s3_config = {"addressing_style": "virtual"}
    config = Config(signature_version="s3v4", s3=s3_config, region_name=settings.aws_region)  # type: ignore[arg-type]
    return boto3.session.Session().client("s3", config=config, **kwargs)


class Presigner:
    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.bucket = settings.bucket
        self.expires = settings.presign_expiry_seconds
        self.client = client if client is not None else presign_client(settings)

    def put_object(self, key: str, content_type: str, metadata: dict[str, str] | None = None) -> str:
        """A PUT whose signature covers ``Content-Type`` (and ``x-amz-meta-*`` for
        ``metadata``): the client must send exactly those headers."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ContentType": content_type}
        if metadata:
            params["Metadata"] = metadata
        url: str = self.client.generate_presigned_url(
            "put_object",
            Params=params,
            ExpiresIn=self.expires,
            HttpMethod="PUT",
        )
        return url

    def upload_part(self, key: str, upload_id: str, part_number: int) -> str:
        url: str = self.client.generate_presigned_url(
            "upload_part",
            Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number},
            ExpiresIn=self.expires,
            HttpMethod="PUT",
        )
        return url

    def upload_parts(self, key: str, upload_id: str, part_numbers: list[int]) -> dict[str, str]:
        return {str(n): self.upload_part(key, upload_id, n) for n in part_numbers}
