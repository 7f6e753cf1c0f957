"""Quarantined originals in the uploads bucket: the tag the scan puts on an infected
object version, the bucket-policy statement that denies tagged objects to every reader but
the scanner, and the lifecycle rule that deletes them after 30 days. One definition for the
CloudFormation template (``infra/messaging.py``) and the dev stack (``devstack/aws.py``)."""

from __future__ import annotations

from typing import Any

TAG_KEY = "buildpeer-quarantine"
TAG_VALUE = "infected"
EXPIRE_AFTER_DAYS = 30
# The scan function's role carries this principal tag; the deny statement exempts it (a tag,
# not a role name, so the template needs no named IAM resources).
SCANNER_PRINCIPAL_TAG = ("buildpeer-role", "scanner")
LIFECYCLE_RULE_ID = "expire-quarantined"


def tag_set() -> list[dict[str, str]]:
    return [{"Key": TAG_KEY, "Value": TAG_VALUE}]


def deny_statement(objects_arn: Any) -> dict[str, Any]:
    """Deny reading any version of a quarantined object (presigned GETs included: they carry
    the signer's identity) to every principal but the scanner."""
    tag_key, tag_value = SCANNER_PRINCIPAL_TAG
    return {
        "Sid": "DenyQuarantinedToAllButTheScanner",
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes"],
        "Resource": [objects_arn],
        "Condition": {
            "StringEquals": {f"s3:ExistingObjectTag/{TAG_KEY}": TAG_VALUE},
            "StringNotEquals": {f"aws:PrincipalTag/{tag_key}": tag_value},
        },
    }


def bucket_policy(bucket: str, *, partition: str = "aws") -> dict[str, Any]:
    """The dev stack's bucket policy (the template adds its own transport statement)."""
    return {
        "Version": "2012-10-17",
        "Statement": [deny_statement(f"arn:{partition}:s3:::{bucket}/*")],
    }


def lifecycle_rule() -> dict[str, Any]:
    """The S3 API form (PutBucketLifecycleConfiguration) of the expiry rule: tagged versions
    expire 30 days after creation; once noncurrent they go a day later."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Tag": {"Key": TAG_KEY, "Value": TAG_VALUE}},
        "Expiration": {"Days": EXPIRE_AFTER_DAYS},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
    }
