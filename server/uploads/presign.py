"""SigV4 presigned requests, from one sync botocore client made once (presigning is local
CPU work, no I/O, so it runs inline): the single upload's POST policy, UploadPart URLs
(with the part's Content-Length and SHA-256 signed when known) and the download GET.

Write-once: S3's POST Object has no conditional-write field (``If-None-Match`` exists only as
a request header on PutObject and CompleteMultipartUpload, and a header outside the policy
is not signed, so a replay would just leave it out). A single upload's policy therefore binds
key, type, size and checksum and expires after ``presign_expiry_seconds``; that an object
already processed is never overwritten is the processors' guarantee (they pin the version
they scanned and delete any newer one). Multipart completes send ``If-None-Match: *``."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class SignedPart:
    """One UploadPart URL and the headers the client must send with it (besides
    ``Content-Length``, which every HTTP client sets itself)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


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

    def post_policy(
        self,
        key: str,
        content_type: str,
        *,
        min_size: int,
        max_size: int,
        metadata: dict[str, str] | None = None,
        sha256_b64: str | None = None,
    ) -> dict[str, Any]:
        """An S3 POST policy ``{url, fields}``: the form must carry exactly this ``key``,
        ``Content-Type`` and ``x-amz-meta-*`` (and ``x-amz-checksum-sha256`` when given; S3
        then refuses other bytes), and the file must be ``min_size``..``max_size`` bytes."""
        fields: dict[str, str] = {"Content-Type": content_type}
        for name, value in (metadata or {}).items():
            fields[f"x-amz-meta-{name}"] = value
        if sha256_b64 is not None:
            fields["x-amz-checksum-sha256"] = sha256_b64
        conditions: list[Any] = [{name: value} for name, value in fields.items()]
        conditions.append(["content-length-range", min_size, max_size])
        signed: dict[str, Any] = self.client.generate_presigned_post(
            self.bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=self.expires
        )
        return signed

    def upload_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        *,
        content_length: int | None = None,
        sha256_b64: str | None = None,
    ) -> SignedPart:
        """``content_length`` and ``sha256_b64`` become signed headers: S3 refuses a part of
        another length (403) or other bytes (400 BadDigest)."""
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": part_number,
        }
        headers: dict[str, str] = {}
        if content_length is not None:
            params["ContentLength"] = content_length
        if sha256_b64 is not None:
            params["ChecksumSHA256"] = sha256_b64
            headers["x-amz-checksum-sha256"] = sha256_b64
        url: str = self.client.generate_presigned_url(
            "upload_part", Params=params, ExpiresIn=self.expires, HttpMethod="PUT"
        )
        return SignedPart(url, headers)

    def upload_parts(
        self, key: str, upload_id: str, part_numbers: list[int], lengths: dict[int, int] | None = None
    ) -> dict[str, str]:
        """URLs for several parts (no checksums: /batch signs none)."""
        sizes = lengths or {}
        return {
            str(n): self.upload_part(key, upload_id, n, content_length=sizes.get(n)).url for n in part_numbers
        }

    def get_object(
        self, key: str, version_id: str | None, *, disposition: str, content_type: str | None, expires: int
    ) -> str:
        """A GET of exactly ``version_id`` (when the bucket versions objects) whose answer
        carries ``disposition`` (and ``content_type``) as S3 response overrides."""
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentDisposition": disposition,
        }
        if version_id:
            params["VersionId"] = version_id
        if content_type:
            params["ResponseContentType"] = content_type
        url: str = self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires, HttpMethod="GET"
        )
        return url
