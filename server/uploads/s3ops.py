"""The S3 calls of the multipart flow (async client on ``app.state.s3``)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from server.errors import ApiError

# CompleteMultipartUpload errors caused by the parts the client named (a part too small, a
# checksum missing or wrong): a 400 for the client, not a server error.
REFUSED_COMPLETE = frozenset(
    {"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "InvalidRequest", "BadDigest", "InvalidDigest"}
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def normalize_etag(etag: str) -> str:
    return etag.strip().strip('"')


async def list_all_parts(
    s3: Any, bucket: str, key: str, upload_id: str, *, page_size: int = 1000
) -> list[dict[str, Any]]:
    """Every stored part, following ``PartNumberMarker`` past S3's 1,000-part pages."""
    parts: list[dict[str, Any]] = []
    marker = 0
    while True:
        try:
            page = await s3.list_parts(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker, MaxParts=page_size
            )
        except ClientError as exc:
            if error_code(exc) in ("NoSuchUpload", "NoSuchKey", "404"):
                raise ApiError(404, "upload_not_found", "the multipart upload no longer exists") from None
            raise
        for part in page.get("Parts", []):
            item = {"PartNumber": part["PartNumber"], "Size": part["Size"], "ETag": part["ETag"]}
            if part.get("ChecksumSHA256"):
                item["ChecksumSHA256"] = part["ChecksumSHA256"]
            parts.append(item)
        if not page.get("IsTruncated"):
            return parts
        next_marker = int(page.get("NextPartNumberMarker") or 0)
        if next_marker <= marker:
            return parts
        marker = next_marker


async def abort(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    try:
        await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as exc:
        if error_code(exc) not in ("NoSuchUpload", "NoSuchKey", "404"):
            raise
