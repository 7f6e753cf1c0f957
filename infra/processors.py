"""The processors template: one Lambda function per :data:`core.resources.PROCESSORS` entry
(memory and timeout from the seed), its SQS event source mapping with partial batch
responses, its log group, and an IAM role that names only that function's own resources."""

from __future__ import annotations

from core import resources
from core.quarantine import SCANNER_PRINCIPAL_TAG as SCANNER_TAG
from infra.cfn import (
    STACK,
    Json,
    bucket_parameter,
    get_att,
    logical_id,
    queue_arn,
    ref,
    stack_parameter,
    sub,
    topic_arn,
)

RUNTIME = "python3.11"
LOG_RETENTION_DAYS = 30
# Messages per invocation: the heavy processors take one file at a time so a batch can never
# outlast the function timeout; metadata is cheap and streams.
BATCH_SIZE = {"scan": 1, "metadata": 10, "image": 5, "document": 1}
ORIGINAL_KEYS = "tenant-*/project-*/uploads/*/original/*"
DERIVED_KEYS = "tenant-*/project-*/uploads/*/derived/*"


def handler(name: str) -> str:
    return f"processors.{name}.handler.handler"


def function_name(name: str) -> str:
    return resources.queue_name(STACK, name)  # functions are named like their queues: ${Stack}-scan


def _object_arn(keys: str) -> Json:
    return sub(f"arn:${{AWS::Partition}}:s3:::${{BucketName}}/{keys}")


def _s3_statements(name: str) -> list[Json]:
    read = {
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:GetObjectVersion"],
        "Resource": [_object_arn(ORIGINAL_KEYS)],
    }
    out = [read, _delete_originals()]  # any processor may refuse an overwrite (delete that version)
    if name == "scan":  # infected → tag the original (its pinned version), delete derivatives
        out.append(
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObjectTagging",
                    "s3:PutObjectTagging",
                    "s3:GetObjectVersionTagging",
                    "s3:PutObjectVersionTagging",
                ],
                "Resource": [_object_arn(ORIGINAL_KEYS)],
            }
        )
        out.append(
            {"Effect": "Allow", "Action": ["s3:DeleteObject"], "Resource": [_object_arn(DERIVED_KEYS)]}
        )
    if name in ("image", "document"):
        out.append(
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject"],
                "Resource": [_object_arn(DERIVED_KEYS)],
            }
        )
    return out


def _delete_originals() -> Json:
    """Delete an original's versions: a refused overwrite, the original of a failed upload."""
    return {
        "Sid": "DeleteOriginalVersions",
        "Effect": "Allow",
        "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
        "Resource": [_object_arn(ORIGINAL_KEYS)],
    }


def policy_statements(name: str) -> list[Json]:
    """What processor ``name`` may do: its own queue, its own log group, the bucket's keys it
    reads or writes, publish to the outcome topics, use the uploads key."""
    fn = function_name(name)
    return [
        {
            "Sid": "OwnQueue",
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ],
            "Resource": [queue_arn(resources.queue_name(STACK, name))],
        },
        {
            "Sid": "OwnLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [
                sub(
                    f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/{fn}:*"
                )
            ],
        },
        *_s3_statements(name),
        {
            "Sid": "PublishOutcomes",
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": [topic_arn(resources.topic_name(STACK, t)) for t in resources.TOPICS],
        },
        {
            "Sid": "UploadsKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": [ref("UploadsKeyArn")],
        },
        {
            # read at cold start (core/secrets.py), never resolved into the environment
            "Sid": "ReadDatabaseUrlSecret",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [ref("DatabaseUrlSecretArn")],
        },
    ]


def _environment(name: str) -> Json:
    env: Json = {
        "BUILDPEER_STACK": ref("Stack"),
        "BUILDPEER_BUCKET": ref("BucketName"),
        "BUILDPEER_AWS_REGION": ref("AWS::Region"),
        "BUILDPEER_DATABASE_URL_SECRET_ARN": ref("DatabaseUrlSecretArn"),
        "BUILDPEER_REDIS_URL": ref("RedisUrl"),
        "BUILDPEER_OTEL_EXPORTER": ref("OtelExporter"),
        "BUILDPEER_LOG_LEVEL": "INFO",
        "POWERTOOLS_SERVICE_NAME": sub(f"${{Stack}}-{name}"),
        "POWERTOOLS_METRICS_NAMESPACE": "BuildPeer",
    }
    if name == "scan":
        env["BUILDPEER_CLAMD_URL"] = ref("ClamdUrl")
    return env


def _function_resources(spec: resources.ProcessorSpec) -> dict[str, Json]:
    out = _function(spec.name, spec.memory_mb, spec.timeout_seconds, policy_statements(spec.name))
    out[logical_id(spec.name, "event-source-mapping")] = _event_source(
        spec.name, resources.queue_name(STACK, spec.name), BATCH_SIZE[spec.name]
    )
    return out


def _event_source(name: str, queue: str, batch: int) -> Json:
    return {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "EventSourceArn": queue_arn(queue),
            "FunctionName": ref(logical_id(name, "function")),
            "BatchSize": batch,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": ref("MaxConcurrency")},
        },
    }


def _function(name: str, memory: int, timeout: int, statements: list[Json]) -> dict[str, Json]:
    fn, role, logs = (logical_id(name, s) for s in ("function", "role", "log-group"))
    return {
        logs: {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "LogGroupName": sub(f"/aws/lambda/{function_name(name)}"),
                "RetentionInDays": LOG_RETENTION_DAYS,
            },
        },
        role: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                # ENI management for running inside the VPC (EC2 actions have no resource scope)
                "ManagedPolicyArns": [
                    sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaENIManagementAccess")
                ],
                "Policies": [
                    {
                        "PolicyName": f"{name}-processor",
                        "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                    }
                ],
                # the bucket policy denies quarantined objects to every principal without it
                **({"Tags": [{"Key": SCANNER_TAG[0], "Value": SCANNER_TAG[1]}]} if name == "scan" else {}),
            },
        },
        fn: {
            "Type": "AWS::Lambda::Function",
            "DependsOn": [logs],
            "Properties": {
                "FunctionName": sub(function_name(name)),
                "Description": f"BuildPeer {name} processor",
                "Runtime": RUNTIME,
                "Architectures": ["x86_64"],
                "Handler": handler(name),
                "Code": {"S3Bucket": ref("CodeBucket"), "S3Key": ref("CodeKey")},
                "Layers": {"Fn::If": ["HasLayers", ref("LayerArns"), ref("AWS::NoValue")]},
                "MemorySize": memory,
                "Timeout": timeout,
                "Role": get_att(role, "Arn"),
                "VpcConfig": {"SubnetIds": ref("SubnetIds"), "SecurityGroupIds": [ref("SecurityGroupId")]},
                "Environment": {"Variables": _environment(name)},
                "TracingConfig": {"Mode": "PassThrough"},
            },
        },
    }


# Functions of the pipeline that are not fed by an S3 event queue (processors/deadletter and
# processors/sweeper): the dead-letter function consumes the processors' dead-letter queues and
# marks their uploads failed; the sweeper fails uploads stuck past the processing timeout and
# republishes interrupted outbox events, every SWEEP_RATE.
DEADLETTER, SWEEPER = "deadletter", "sweeper"
SWEEP_RATE = "rate(5 minutes)"


def _common_statements(name: str) -> list[Json]:
    """Own log group, publish the outcome topics, use the uploads key, read the database URL:
    what every function needs."""
    common = ("OwnLogGroup", "PublishOutcomes", "UploadsKey", "ReadDatabaseUrlSecret")
    return [s for s in policy_statements(name) if s.get("Sid") in common]


def deadletter_statements() -> list[Json]:
    return [
        {
            "Sid": "ProcessorDeadLetterQueues",
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ],
            "Resource": [
                queue_arn(resources.dead_letter_queue_name(STACK, p.name)) for p in resources.PROCESSORS
            ],
        },
        _delete_originals(),  # a dead-lettered step fails its upload: its original goes
        *_common_statements(DEADLETTER),
    ]


def _auxiliary_resources() -> dict[str, Json]:
    out = _function(DEADLETTER, 256, 60, deadletter_statements())
    for spec in resources.PROCESSORS:
        out[logical_id(spec.name, "dead-letter-event-source-mapping")] = _event_source(
            DEADLETTER, resources.dead_letter_queue_name(STACK, spec.name), 10
        )
    out.update(_function(SWEEPER, 256, 300, [_delete_originals(), *_common_statements(SWEEPER)]))
    out["SweeperSchedule"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "Name": sub("${Stack}-sweeper"),
            "ScheduleExpression": SWEEP_RATE,
            "State": "ENABLED",
            "Targets": [{"Id": SWEEPER, "Arn": get_att(logical_id(SWEEPER, "function"), "Arn")}],
        },
    }
    out["SweeperInvokePermission"] = {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "FunctionName": ref(logical_id(SWEEPER, "function")),
            "Action": "lambda:InvokeFunction",
            "Principal": "events.amazonaws.com",
            "SourceArn": get_att("SweeperSchedule", "Arn"),
        },
    }
    return out


def template() -> Json:
    res: dict[str, Json] = {}
    outputs: dict[str, Json] = {}
    res.update(_auxiliary_resources())
    for spec in resources.PROCESSORS:
        res.update(_function_resources(spec))
        outputs[logical_id(spec.name, "function-arn")] = {
            "Value": get_att(logical_id(spec.name, "function"), "Arn")
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            "BuildPeer processors: one Lambda per processor fed by its SQS queue (partial batch"
            " responses). GENERATED by `python -m infra.render` from core/resources.py; do not edit."
        ),
        "Parameters": {
            "Stack": stack_parameter(),
            "BucketName": bucket_parameter(),
            "UploadsKeyArn": {"Type": "String", "Description": "KMS key of the bucket and topics"},
            "CodeBucket": {"Type": "String", "Description": "S3 bucket holding the processors' zip"},
            "CodeKey": {
                "Type": "String",
                "Description": "S3 key of the zip built by `python -m infra.package`",
            },
            "LayerArns": {
                "Type": "CommaDelimitedList",
                "Default": "",
                "Description": "Lambda layers with native tools (Tesseract spa+eng) for the processors",
            },
            "SubnetIds": {"Type": "List<AWS::EC2::Subnet::Id>", "Description": "Private subnets"},
            "SecurityGroupId": {"Type": "AWS::EC2::SecurityGroup::Id", "Description": "Processors' group"},
            "DatabaseUrlSecretArn": {
                "Type": "String",
                "Description": "Secrets Manager secret holding the app-role PostgreSQL URL",
            },
            "RedisUrl": {"Type": "String", "Description": "rediss:// URL of the ElastiCache primary"},
            "ClamdUrl": {"Type": "String", "Description": "tcp://host:3310 of the clamd service"},
            "OtelExporter": {
                "Type": "String",
                "Default": "none",
                "AllowedValues": ["none", "otlp", "console"],
            },
            "MaxConcurrency": {
                "Type": "Number",
                "Default": 25,
                "MinValue": 2,
                "MaxValue": 1000,
                "Description": "Concurrent invocations per processor (seed: 0-100 in total over four)",
            },
        },
        "Conditions": {
            "HasLayers": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", ref("LayerArns")]}, ""]}]}
        },
        "Resources": res,
        "Outputs": outputs,
    }
