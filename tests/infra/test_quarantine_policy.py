"""Quarantined originals: the bucket policy denies them to every reader but the scanner, a
lifecycle rule on the quarantine tag deletes them after 30 days, and each processor may delete
an original's versions. moto does not evaluate bucket-policy conditions, so the policy is
checked here as a document (with the IAM semantics of its two condition operators), and what
moto does with it is checked too."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from core import quarantine
from core.settings import Settings
from devstack.aws import DUMMY_CREDENTIALS, provision
from tests.infra.conftest import MotoProcess, load
from tests.infra.test_templates import by_type

READS = ("s3:GetObject", "s3:GetObjectVersion")


def _string_condition(operator: str, expected: dict[str, str], context: dict[str, str]) -> bool:
    """IAM's StringEquals / StringNotEquals (a missing key: StringEquals false, the negated
    operator true)."""
    results = []
    for key, value in expected.items():
        present = key in context
        if operator == "StringEquals":
            results.append(present and context[key] == value)
        elif operator == "StringNotEquals":
            results.append(not present or context[key] != value)
        else:
            raise AssertionError(f"operator {operator} not modelled")
    return all(results)


def denied(statement: dict[str, Any], action: str, context: dict[str, str]) -> bool:
    """Whether this Deny statement applies to ``action`` with the request ``context``."""
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    if action not in statement["Action"]:
        return False
    return all(_string_condition(op, exp, context) for op, exp in statement["Condition"].items())


def _context(*, object_tag: str | None, principal_tag: str | None) -> dict[str, str]:
    out = {}
    if object_tag is not None:
        out[f"s3:ExistingObjectTag/{quarantine.TAG_KEY}"] = object_tag
    if principal_tag is not None:
        out[f"aws:PrincipalTag/{quarantine.SCANNER_PRINCIPAL_TAG[0]}"] = principal_tag
    return out


def test_the_deny_statement_reads_as_intended() -> None:
    statement = quarantine.deny_statement("arn:aws:s3:::b/*")
    scanner = quarantine.SCANNER_PRINCIPAL_TAG[1]
    for action in READS:
        # the API server's presigned GET, an investor, anyone: denied a quarantined object
        assert denied(statement, action, _context(object_tag="infected", principal_tag=None))
        assert denied(statement, action, _context(object_tag="infected", principal_tag="server"))
        # the scanner may still read it; nobody is denied a clean object
        assert not denied(statement, action, _context(object_tag="infected", principal_tag=scanner))
        assert not denied(statement, action, _context(object_tag=None, principal_tag=None))
        assert not denied(statement, action, _context(object_tag="clean", principal_tag=None))
    assert not denied(statement, "s3:PutObjectTagging", _context(object_tag="infected", principal_tag=None))


def test_the_template_carries_the_policy_the_tag_and_the_lifecycle_rule() -> None:
    messaging = load("messaging.yaml")
    policy = by_type(messaging, "AWS::S3::BucketPolicy")["UploadsBucketPolicy"]["Properties"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    deny = statements["DenyQuarantinedToAllButTheScanner"]
    assert deny == quarantine.deny_statement({"Fn::Sub": "${UploadsBucket.Arn}/*"})
    bucket = by_type(messaging, "AWS::S3::Bucket")["UploadsBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    rule = rules[quarantine.LIFECYCLE_RULE_ID]
    assert rule["TagFilters"] == [{"Key": quarantine.TAG_KEY, "Value": quarantine.TAG_VALUE}]
    assert rule["ExpirationInDays"] == 30 and rule["Status"] == "Enabled"

    processors = load("processors.yaml")
    roles = by_type(processors, "AWS::IAM::Role")
    tag = {"Key": quarantine.SCANNER_PRINCIPAL_TAG[0], "Value": quarantine.SCANNER_PRINCIPAL_TAG[1]}
    tagged = [name for name, role in roles.items() if tag in role["Properties"].get("Tags", [])]
    assert tagged == ["ScanRole"], "only the scanner reads quarantined objects"
    deleters = ("scan", "metadata", "image", "document", "deadletter", "sweeper")
    assert sorted(n.removesuffix("Role").lower() for n in roles) == sorted(deleters)
    for name, role in roles.items():
        granted = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
        assert "s3:DeleteObjectVersion" in [a for s in granted for a in s["Action"]], name


def test_what_moto_does_with_it(moto: MotoProcess) -> None:
    """moto denies every read a conditional Deny names (it does not evaluate conditions), so
    the dev stack probes and leaves the policy off there; versioning, the lifecycle rule and
    version tags it keeps."""
    settings = Settings(aws_endpoint_url=moto.url, stack="bpq", bucket="bpq-uploads")
    provision(settings)
    s3 = boto3.client(
        "s3",
        endpoint_url=moto.url,
        region_name=settings.aws_region,
        aws_access_key_id=DUMMY_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=DUMMY_CREDENTIALS["aws_secret_access_key"],
    )
    bucket = settings.bucket
    with pytest.raises(ClientError) as no_policy:
        s3.get_bucket_policy(Bucket=bucket)
    assert no_policy.value.response["Error"]["Code"] == "NoSuchBucketPolicy"
    assert s3.list_object_versions(Bucket=bucket).get("Versions", []) == [], "the probe is gone"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert next(r for r in rules if r["ID"] == quarantine.LIFECYCLE_RULE_ID)["Expiration"]["Days"] == 30

    first = s3.put_object(Bucket=bucket, Key="k", Body=b"scanned")["VersionId"]
    s3.put_object_tagging(
        Bucket=bucket,
        Key="k",
        VersionId=first,
        Tagging={"TagSet": [{"Key": quarantine.TAG_KEY, "Value": quarantine.TAG_VALUE}]},
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=first)["TagSet"] == quarantine.tag_set()
    # why the probe: under the policy moto refuses even an untagged object
    s3.put_object(Bucket=bucket, Key="clean", Body=b"clean")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(quarantine.bucket_policy(bucket)))
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="clean")
