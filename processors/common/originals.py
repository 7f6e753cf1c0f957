"""An upload's original in S3: deleting a refused newer version (an overwrite) and the
original of a failed upload.

Originals are write-once. The processors pin the first object version they see (see
:func:`processors.common.store.claim`); any other version of the same key that S3 reports
is refused here: deleted by its version id, so the pinned version is current again, and
audited (a row in ``overwrite_rejections``, a log line, a metric).
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from botocore.exceptions import ClientError

from core.metrics import OVERWRITES_REJECTED
from processors.common.s3event import ObjectRef
from processors.common.store import UploadRow

log = logging.getLogger(__name__)
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})


def delete_version(s3: Any, bucket: str, key: str, version_id: str | None) -> None:
    """Delete one object version (permanently), or the object when the bucket keeps no
    versions. Deleting what is already gone is not an error."""
    kwargs = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        kwargs["VersionId"] = version_id
    s3.delete_object(**kwargs)


def reject_overwrite(s3: Any, ref: ObjectRef, upload: UploadRow, *, processor: str, recorded: bool) -> None:
    """Delete the refused version ``ref``; the first processor to refuse it (``recorded``)
    logs and counts it."""
    delete_version(s3, ref.bucket, ref.key, ref.version_id)
    if not recorded:
        return
    OVERWRITES_REJECTED.inc()
    if not is_metrics_disabled():
        with single_metric(
            name="OverwritesRejected", unit=MetricUnit.Count, value=1, namespace="BuildPeer"
        ) as metric:
            metric.add_dimension(name="service", value="processors")
    log.warning(
        "overwrite_rejected",
        extra={
            "event": "overwrite_rejected",
            "tenant_id": str(upload.tenant_id),
            "upload_id": str(upload.upload_id),
            "key": ref.key,
            "rejected_version_id": ref.version_id,
            "rejected_etag": ref.etag,
            "pinned_version_id": upload.scanned_version_id,
            "upload_status": str(upload.status),
            "processor": processor,
            "unversioned": not (ref.version_id and ref.version_id != "null"),
        },
    )


def delete_original(s3: Any, bucket: str, upload: UploadRow) -> None:
    """Delete the pinned original of a failed upload (nothing when none was pinned)."""
    if not upload.pinned:
        return
    delete_version(s3, bucket, upload.s3_key, upload.scanned_version_id)
    log.info(
        "original of a failed upload deleted",
        extra={"upload_id": str(upload.upload_id), "version_id": upload.scanned_version_id},
    )


def is_missing(exc: BaseException) -> bool:
    """True for S3's answer about an object version that no longer exists."""
    if not isinstance(exc, ClientError):
        return False
    return str(exc.response.get("Error", {}).get("Code")) in MISSING_CODES
