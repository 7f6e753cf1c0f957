"""The messaging template: uploads bucket, its KMS key, processor and consumer queues with
their dead-letter queues, SNS topics with raw SQS subscriptions, and the S3 → EventBridge
rule. Every name and setting comes from :mod:`core.resources`, the same definitions that
``devstack.aws.provision`` creates locally."""

from __future__ import annotations

from core import quarantine, resources
from infra.cfn import STACK, Json, bucket_parameter, get_att, logical_id, ref, stack_parameter, sub

DLQ_RETENTION_SECONDS = 14 * 86400  # the maximum: time to look at a poison message and replay it
LONG_POLL_SECONDS = 20
GLACIER_AFTER_DAYS = 90  # the seed: Standard (Intelligent-Tiering) 0-90 days, then Glacier
ABORT_MULTIPART_AFTER_DAYS = 7
NONCURRENT_VERSION_DAYS = 30


def queue_names() -> list[str]:
    """Logical names of every queue with a DLQ: the processors', the consumers', SES feedback."""
    return (
        [p.name for p in resources.PROCESSORS]
        + [c.name for c in resources.CONSUMERS]
        + [resources.EMAIL_EVENTS.name]
    )


def visibility_timeouts() -> dict[str, int]:
    out = {p.name: p.visibility_timeout for p in resources.PROCESSORS}
    out.update({c.name: c.visibility_timeout for c in resources.CONSUMERS})
    return out


def _key() -> Json:
    return {
        "Type": "AWS::KMS::Key",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "Description": sub("${Stack}: uploads bucket and SNS topics"),
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "AccountAdministersThroughIam",
                        "Effect": "Allow",
                        "Principal": {"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
                        "Action": "kms:*",
                        "Resource": "*",
                    }
                ],
            },
        },
    }


def _bucket() -> Json:
    return {
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketName": ref("BucketName"),
            "VersioningConfiguration": {"Status": "Enabled"},
            "AccelerateConfiguration": {"AccelerationStatus": "Enabled"},
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {
                        "ServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": get_att("UploadsKey", "Arn"),
                        },
                        "BucketKeyEnabled": True,
                    }
                ]
            },
            "CorsConfiguration": {
                "CorsRules": [
                    {
                        "AllowedOrigins": ref("CorsOrigins"),
                        "AllowedMethods": ["GET", "PUT", "POST", "DELETE", "HEAD"],
                        "AllowedHeaders": ["*"],
                        "ExposedHeaders": ["ETag", "Location"],  # stock Uppy reads both
                        "MaxAge": 3600,
                    }
                ]
            },
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "intelligent-tiering-then-glacier",
                        "Status": "Enabled",
                        "Transitions": [
                            {"StorageClass": "INTELLIGENT_TIERING", "TransitionInDays": 0},
                            {"StorageClass": "GLACIER", "TransitionInDays": GLACIER_AFTER_DAYS},
                        ],
                        "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_VERSION_DAYS},
                    },
                    {
                        "Id": "abort-incomplete-multipart",
                        "Status": "Enabled",
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_AFTER_DAYS},
                    },
                    {  # the same rule as core.quarantine.lifecycle_rule (the dev stack's)
                        "Id": quarantine.LIFECYCLE_RULE_ID,
                        "Status": "Enabled",
                        "TagFilters": [{"Key": quarantine.TAG_KEY, "Value": quarantine.TAG_VALUE}],
                        "ExpirationInDays": quarantine.EXPIRE_AFTER_DAYS,
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                    },
                ]
            },
            "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
        },
    }


def _bucket_policy() -> Json:
    return {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": ref("UploadsBucket"),
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [
                            get_att("UploadsBucket", "Arn"),
                            sub("${UploadsBucket.Arn}/*"),
                        ],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    },
                    quarantine.deny_statement(sub("${UploadsBucket.Arn}/*")),
                ],
            },
        },
    }


def _queue_pair(name: str, visibility: int) -> dict[str, Json]:
    queue, dlq = logical_id(name, "queue"), logical_id(name, "dead-letter-queue")
    return {
        dlq: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": sub(resources.dead_letter_queue_name(STACK, name)),
                "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
            },
        },
        queue: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": sub(resources.queue_name(STACK, name)),
                "VisibilityTimeout": visibility,
                "ReceiveMessageWaitTimeSeconds": LONG_POLL_SECONDS,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": get_att(dlq, "Arn"),
                    "maxReceiveCount": resources.MAX_RECEIVE_COUNT,
                },
            },
        },
    }


def _send_policy(queues: list[str], service: str, sources: list[Json]) -> Json:
    return {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [ref(logical_id(q, "queue")) for q in queues],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": service},
                        "Action": "sqs:SendMessage",
                        "Resource": [get_att(logical_id(q, "queue"), "Arn") for q in queues],
                        "Condition": {"ArnEquals": {"aws:SourceArn": sources}},
                    }
                ],
            },
        },
    }


def _email_feedback() -> dict[str, Json]:
    """SES feedback (as ``devstack.aws.provision``): the digest's configuration set sends
    bounce and complaint events to their own topic, raw-delivered to the email-events queue.
    The topic is not KMS-encrypted (SES would need the uploads key); the queue is (SSE-SQS)."""
    spec = resources.EMAIL_EVENTS
    topic = logical_id(spec.name, "topic")
    out = _queue_pair(spec.name, spec.visibility_timeout)
    out[topic] = {
        "Type": "AWS::SNS::Topic",
        "Properties": {"TopicName": sub(resources.topic_name(STACK, spec.name))},
    }
    out[logical_id(spec.name, "topic-policy")] = {
        "Type": "AWS::SNS::TopicPolicy",
        "Properties": {
            "Topics": [ref(topic)],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "SesPublishesFeedback",
                        "Effect": "Allow",
                        "Principal": {"Service": "ses.amazonaws.com"},
                        "Action": "sns:Publish",
                        "Resource": ref(topic),
                        "Condition": {"StringEquals": {"AWS:SourceAccount": ref("AWS::AccountId")}},
                    }
                ],
            },
        },
    }
    out[logical_id(spec.name, "subscription")] = {
        "Type": "AWS::SNS::Subscription",
        "Properties": {
            "TopicArn": ref(topic),
            "Protocol": "sqs",
            "Endpoint": get_att(logical_id(spec.name, "queue"), "Arn"),
            "RawMessageDelivery": True,
        },
    }
    out[logical_id(spec.name, "queue-policy")] = _send_policy([spec.name], "sns.amazonaws.com", [ref(topic)])
    out["DigestConfigurationSet"] = {
        "Type": "AWS::SES::ConfigurationSet",
        "Properties": {"Name": sub(resources.ses_configuration_set_name(STACK))},
    }
    out["DigestFeedbackDestination"] = {
        "Type": "AWS::SES::ConfigurationSetEventDestination",
        "Properties": {
            "ConfigurationSetName": ref("DigestConfigurationSet"),
            "EventDestination": {
                "Name": "bounces-and-complaints",
                "Enabled": True,
                "MatchingEventTypes": list(spec.event_types),
                "SnsDestination": {"TopicARN": ref(topic)},
            },
        },
    }
    return out


def _event_pattern() -> Json:
    # identical to devstack.aws.provision (checked by tests/infra against a moto deploy)
    return {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [ref("BucketName")]}},
    }


def template() -> Json:
    res: dict[str, Json] = {
        "UploadsKey": _key(),
        "UploadsBucket": _bucket(),
        "UploadsBucketPolicy": _bucket_policy(),
    }
    res["UploadsKeyAlias"] = {
        "Type": "AWS::KMS::Alias",
        "Properties": {"AliasName": sub("alias/${Stack}-uploads"), "TargetKeyId": ref("UploadsKey")},
    }
    for name, visibility in visibility_timeouts().items():
        res.update(_queue_pair(name, visibility))

    for topic in resources.TOPICS:
        tid = logical_id(topic, "topic")
        res[tid] = {
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "TopicName": sub(resources.topic_name(STACK, topic)),
                "KmsMasterKeyId": ref("UploadsKey"),
            },
        }
        for consumer in resources.CONSUMERS:
            res[logical_id(topic, "to", consumer.name, "subscription")] = {
                "Type": "AWS::SNS::Subscription",
                "Properties": {
                    "TopicArn": ref(tid),
                    "Protocol": "sqs",
                    "Endpoint": get_att(logical_id(consumer.name, "queue"), "Arn"),
                    "RawMessageDelivery": True,
                },
            }

    res["ObjectCreatedRule"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "Name": sub(resources.event_rule_name(STACK)),
            "Description": "S3 Object Created in the uploads bucket → one queue per processor",
            "State": "ENABLED",
            "EventPattern": _event_pattern(),
            "Targets": [
                {"Id": p.name, "Arn": get_att(logical_id(p.name, "queue"), "Arn")}
                for p in resources.PROCESSORS
            ],
        },
    }
    res["ProcessorQueuesPolicy"] = _send_policy(
        [p.name for p in resources.PROCESSORS], "events.amazonaws.com", [get_att("ObjectCreatedRule", "Arn")]
    )
    res["ConsumerQueuesPolicy"] = _send_policy(
        [c.name for c in resources.CONSUMERS],
        "sns.amazonaws.com",
        [ref(logical_id(t, "topic")) for t in resources.TOPICS],
    )

    res.update(_email_feedback())

    outputs: dict[str, Json] = {
        "BucketName": {"Value": ref("UploadsBucket")},
        "BucketArn": {"Value": get_att("UploadsBucket", "Arn")},
        "UploadsKeyArn": {"Value": get_att("UploadsKey", "Arn")},
    }
    for name in queue_names():
        outputs[logical_id(name, "queue-url")] = {"Value": ref(logical_id(name, "queue"))}
        outputs[logical_id(name, "queue-arn")] = {"Value": get_att(logical_id(name, "queue"), "Arn")}
        outputs[logical_id(name, "dead-letter-queue-arn")] = {
            "Value": get_att(logical_id(name, "dead-letter-queue"), "Arn")
        }
    for topic in resources.TOPICS:
        outputs[logical_id(topic, "topic-arn")] = {"Value": ref(logical_id(topic, "topic"))}

    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            "BuildPeer messaging: uploads bucket, processor and consumer queues with dead-letter queues,"
            " SNS topics, S3 -> EventBridge rule. GENERATED by `python -m infra.render` from"
            " core/resources.py; do not edit. Visibility timeouts are 6x each function's timeout"
            " (VISIBILITY_FACTOR): this corrects the seed, whose 5-minute visibility equals the"
            " 5-minute function timeout and lets a message reappear while it is still being processed."
        ),
        "Parameters": {
            "Stack": stack_parameter(),
            "BucketName": bucket_parameter(),
            "CorsOrigins": {
                "Type": "CommaDelimitedList",
                "Default": "*",
                "Description": "Origins allowed to upload from browsers (BUILDPEER_CORS_ORIGINS)",
            },
        },
        "Resources": res,
        "Outputs": outputs,
    }
