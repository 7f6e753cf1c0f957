"""The messaging template deploys into moto (CloudFormation over HTTP) and creates exactly
what the local stack's ``provision`` creates for the same stack name and bucket."""

from __future__ import annotations

import json
from typing import Any

from core import resources
from core.settings import Settings
from devstack.aws import client, provision
from tests.infra.conftest import TEMPLATES, MotoProcess, reset

STACK, BUCKET = "bp-infra-test", "bp-infra-test-uploads"


def _client(server: MotoProcess, service: str) -> Any:
    return client(Settings(aws_endpoint_url=server.url), service)


def _queues(server: MotoProcess) -> dict[str, dict[str, Any]]:
    sqs = _client(server, "sqs")
    out = {}
    for url in sqs.list_queues(QueueNamePrefix=STACK).get("QueueUrls", []):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"]) if "RedrivePolicy" in attrs else None
        out[url.rsplit("/", 1)[-1]] = {
            "visibility": int(attrs["VisibilityTimeout"]),
            "wait": int(attrs.get("ReceiveMessageWaitTimeSeconds", "0")),
            "dlq": redrive and redrive["deadLetterTargetArn"].rsplit(":", 1)[-1],
            "max_receive": redrive and int(redrive["maxReceiveCount"]),
        }
    return out


def _topics(server: MotoProcess) -> set[str]:
    return {t["TopicArn"].rsplit(":", 1)[-1] for t in _client(server, "sns").list_topics()["Topics"]}


def _rule(server: MotoProcess) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    events = _client(server, "events")
    name = resources.event_rule_name(STACK)
    rule = events.describe_rule(Name=name)
    targets = events.list_targets_by_rule(Rule=name)["Targets"]
    return json.loads(rule["EventPattern"]), sorted((t["Id"], t["Arn"].rsplit(":", 1)[-1]) for t in targets)


def _deploy(server: MotoProcess) -> dict[str, str]:
    cfn = _client(server, "cloudformation")
    cfn.create_stack(
        StackName=STACK,
        TemplateBody=(TEMPLATES / "messaging.yaml").read_text(),
        Parameters=[
            {"ParameterKey": "Stack", "ParameterValue": STACK},
            {"ParameterKey": "BucketName", "ParameterValue": BUCKET},
        ],
    )
    stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _snapshot(server: MotoProcess) -> dict[str, Any]:
    return {
        "queues": _queues(server),
        "topics": _topics(server),
        "rule": _rule(server),
        "buckets": {b["Name"] for b in _client(server, "s3").list_buckets()["Buckets"]},
    }


def test_template_creates_what_the_local_stack_provisions(moto: MotoProcess) -> None:
    provision(Settings(aws_endpoint_url=moto.url, stack=STACK, bucket=BUCKET))
    local = _snapshot(moto)
    reset(moto)
    outputs = _deploy(moto)
    deployed = _snapshot(moto)

    assert deployed == local
    assert deployed["buckets"] == {BUCKET}
    assert outputs["BucketName"] == BUCKET
    assert len(deployed["queues"]) == 2 * (
        len(resources.PROCESSORS) + len(resources.CONSUMERS) + 1
    )  # + SES feedback


def test_deployed_names_and_settings_follow_core_resources(moto: MotoProcess) -> None:
    deployed = moto
    _deploy(deployed)
    queues = _queues(deployed)

    expected = {resources.queue_name(STACK, p.name): p.visibility_timeout for p in resources.PROCESSORS}
    expected |= {resources.queue_name(STACK, c.name): c.visibility_timeout for c in resources.CONSUMERS}
    expected[resources.queue_name(STACK, resources.EMAIL_EVENTS.name)] = (
        resources.EMAIL_EVENTS.visibility_timeout
    )
    for name, visibility in expected.items():
        logical = name.removeprefix(f"{STACK}-")
        assert queues[name]["visibility"] == visibility
        assert queues[name]["max_receive"] == resources.MAX_RECEIVE_COUNT == 3
        assert queues[name]["dlq"] == resources.dead_letter_queue_name(STACK, logical)
        assert queues[resources.dead_letter_queue_name(STACK, logical)]["dlq"] is None
    for spec in resources.PROCESSORS:  # visibility ≥ 6x the function timeout
        assert queues[resources.queue_name(STACK, spec.name)]["visibility"] >= 6 * spec.timeout_seconds
    assert len(queues) == 2 * len(expected)
    assert _topics(deployed) == {resources.topic_name(STACK, t) for t in resources.TOPICS} | {
        resources.topic_name(STACK, resources.EMAIL_EVENTS.name)
    }
    assert {t for t in resources.TOPICS} == {"upload-completed", "upload-failed", "processing-completed"}
    _, targets = _rule(deployed)
    assert targets == sorted((p.name, resources.queue_name(STACK, p.name)) for p in resources.PROCESSORS)

    encryption = _client(deployed, "s3").get_bucket_encryption(Bucket=BUCKET)
    (rule,) = encryption["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    key_arn = rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"]
    # (moto's DescribeKey fails on keys made by CloudFormation: it keeps the policy as a dict)
    kms = _client(deployed, "kms")
    assert key_arn in {k["KeyArn"] for k in kms.list_keys()["Keys"]}
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert key_arn.endswith(str(aliases[f"alias/{STACK}-uploads"]))
