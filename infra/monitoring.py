"""The monitoring template: CloudWatch alarms (dead-letter queue not empty, upload failure
rate, API p95, Lambda errors, oldest message age) to an alarm topic, and the operations
dashboard. Queue, topic and function names come from :mod:`core.resources`."""

from __future__ import annotations

import json
from typing import Any

from core import resources
from infra.cfn import STACK, Json, logical_id, ref, stack_parameter, sub
from infra.messaging import queue_names

PERIOD = 60
OLDEST_MESSAGE_SECONDS = 900  # a processor backlog older than 15 minutes is a stuck pipeline
LAMBDA_ERRORS = 5  # per 5 minutes, per function


def _alarm(description: str, **props: Any) -> Json:
    base: Json = {
        "AlarmDescription": description,
        "ActionsEnabled": True,
        "AlarmActions": [ref("AlarmTopic")],
        "OKActions": [ref("AlarmTopic")],
        "TreatMissingData": "notBreaching",
    }
    base.update(props)
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": base}


def _sqs_metric(metric_id: str, metric: str, queue: str, stat: str) -> Json:
    return {
        "Id": metric_id,
        "ReturnData": False,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/SQS",
                "MetricName": metric,
                "Dimensions": [{"Name": "QueueName", "Value": sub(queue)}],
            },
            "Period": PERIOD,
            "Stat": stat,
        },
    }


def _queue_alarms(name: str) -> dict[str, Json]:
    dlq, queue = resources.dead_letter_queue_name(STACK, name), resources.queue_name(STACK, name)
    return {
        logical_id(name, "dead-letter-queue-not-empty-alarm"): _alarm(
            f"Messages reached the {name} dead-letter queue (docs/operations.md, dead-letter queues)",
            AlarmName=sub(f"{dlq}-not-empty"),
            # visible: waiting for a replay; received: taken by the dead-letter function, which
            # empties the processors' dead-letter queues as it marks their uploads failed
            Metrics=[
                _sqs_metric("visible", "ApproximateNumberOfMessagesVisible", dlq, "Maximum"),
                _sqs_metric("received", "NumberOfMessagesReceived", dlq, "Sum"),
                {
                    "Id": "dead",
                    "Label": "Dead letters",
                    "ReturnData": True,
                    "Expression": "visible + received",
                },
            ],
            EvaluationPeriods=1,
            Threshold=0,
            ComparisonOperator="GreaterThanThreshold",
        ),
        logical_id(name, "oldest-message-alarm"): _alarm(
            f"The oldest message in the {name} queue waited more than {OLDEST_MESSAGE_SECONDS} s",
            AlarmName=sub(f"{queue}-oldest-message-age"),
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": sub(queue)}],
            Statistic="Maximum",
            Period=PERIOD,
            EvaluationPeriods=5,
            Threshold=OLDEST_MESSAGE_SECONDS,
            ComparisonOperator="GreaterThanThreshold",
        ),
    }


def _lambda_alarm(name: str) -> dict[str, Json]:
    fn = resources.queue_name(STACK, name)
    return {
        logical_id(name, "function-errors-alarm"): _alarm(
            f"The {name} processor failed {LAMBDA_ERRORS}+ invocations in 5 minutes",
            AlarmName=sub(f"{fn}-errors"),
            Namespace="AWS/Lambda",
            MetricName="Errors",
            Dimensions=[{"Name": "FunctionName", "Value": sub(fn)}],
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=LAMBDA_ERRORS,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    }


def _sns_published(metric_id: str, topic: str) -> Json:
    return {
        "Id": metric_id,
        "ReturnData": False,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/SNS",
                "MetricName": "NumberOfMessagesPublished",
                "Dimensions": [{"Name": "TopicName", "Value": sub(resources.topic_name(STACK, topic))}],
            },
            "Period": 900,
            "Stat": "Sum",
        },
    }


def _failure_rate_alarm() -> Json:
    # upload-failed / (upload-failed + upload-completed), counted where the outcome is published;
    # below 20 outcomes in 15 minutes the rate says nothing and the alarm stays quiet.
    return _alarm(
        "More than FailureRatePercent % of uploads failed in the last 15 minutes",
        AlarmName=sub("${Stack}-upload-failure-rate"),
        Metrics=[
            _sns_published("failed", "upload-failed"),
            _sns_published("completed", "upload-completed"),
            {
                "Id": "rate",
                "Label": "Upload failure rate (%)",
                "ReturnData": True,
                "Expression": "IF((failed + completed) >= 20, 100 * failed / (failed + completed), 0)",
            },
        ],
        EvaluationPeriods=1,
        Threshold=ref("FailureRatePercent"),
        ComparisonOperator="GreaterThanThreshold",
    )


def _api_p95_alarm() -> Json:
    return _alarm(
        "API p95 latency at the load balancer is above ApiP95Seconds",
        AlarmName=sub("${Stack}-api-p95"),
        Namespace="AWS/ApplicationELB",
        MetricName="TargetResponseTime",
        Dimensions=[{"Name": "LoadBalancer", "Value": ref("LoadBalancerFullName")}],
        ExtendedStatistic="p95",
        Period=PERIOD,
        EvaluationPeriods=5,
        DatapointsToAlarm=3,
        Threshold=ref("ApiP95Seconds"),
        ComparisonOperator="GreaterThanThreshold",
    )


def _widget(title: str, metrics: list[list[Any]], y: int, x: int, stat: str = "Sum", width: int = 12) -> Json:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": width,
        "height": 6,
        "properties": {
            "title": title,
            "region": "${AWS::Region}",
            "stat": stat,
            "period": PERIOD,
            "metrics": metrics,
        },
    }


def dashboard_body() -> dict[str, Any]:
    """The dashboard JSON (with ``${...}`` placeholders resolved by ``Fn::Sub``)."""
    queues = queue_names()
    topic_metrics = [
        ["AWS/SNS", "NumberOfMessagesPublished", "TopicName", resources.topic_name(STACK, t)]
        for t in resources.TOPICS
    ]
    lb = "${LoadBalancerFullName}"
    widgets = [
        _widget("Upload outcomes (SNS publishes)", topic_metrics, 0, 0),
        _widget(
            "API latency p50 / p95 / p99 (s)",
            [
                ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", lb, {"stat": "p50"}],
                ["...", {"stat": "p95"}],
                ["...", {"stat": "p99"}],
            ],
            0,
            12,
            stat="p95",
        ),
        _widget(
            "API requests and errors",
            [
                ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", lb],
                [".", "HTTPCode_Target_5XX_Count", ".", "."],
                [".", "HTTPCode_Target_4XX_Count", ".", "."],
            ],
            6,
            0,
        ),
        _widget(
            "ECS service CPU / memory (%)",
            [
                [
                    "AWS/ECS",
                    "CPUUtilization",
                    "ClusterName",
                    "${ClusterName}",
                    "ServiceName",
                    "${ServiceName}",
                ],
                [".", "MemoryUtilization", ".", ".", ".", "."],
            ],
            6,
            12,
            stat="Average",
        ),
        _widget(
            "Queue depth (visible messages)",
            [
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", resources.queue_name(STACK, q)]
                for q in queues
            ],
            12,
            0,
            stat="Maximum",
        ),
        _widget(
            "Oldest message age (s)",
            [
                ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", resources.queue_name(STACK, q)]
                for q in queues
            ],
            12,
            12,
            stat="Maximum",
        ),
        _widget(
            "Dead-letter queues (must be 0)",
            [
                [
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    "QueueName",
                    resources.dead_letter_queue_name(STACK, q),
                ]
                for q in queues
            ],
            18,
            0,
            stat="Maximum",
        ),
        _widget(
            "Processor errors and throttles",
            [
                m
                for p in resources.PROCESSORS
                for m in (
                    ["AWS/Lambda", "Errors", "FunctionName", resources.queue_name(STACK, p.name)],
                    ["AWS/Lambda", "Throttles", "FunctionName", resources.queue_name(STACK, p.name)],
                )
            ],
            18,
            12,
        ),
        _widget(
            "Processor duration p95 (ms)",
            [
                ["AWS/Lambda", "Duration", "FunctionName", resources.queue_name(STACK, p.name)]
                for p in resources.PROCESSORS
            ],
            24,
            0,
            stat="p95",
        ),
        _widget(
            "Database and cache",
            [
                ["AWS/RDS", "CPUUtilization", "DBClusterIdentifier", "${DbClusterId}"],
                [".", "DatabaseConnections", ".", "."],
                ["AWS/ElastiCache", "EngineCPUUtilization", "ReplicationGroupId", "${CacheId}"],
            ],
            24,
            12,
            stat="Average",
        ),
    ]
    return {"widgets": widgets}


def template() -> Json:
    res: dict[str, Json] = {
        "AlarmTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": sub("${Stack}-alarms")}},
        "AlarmEmailSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Condition": "HasAlarmEmail",
            "Properties": {"TopicArn": ref("AlarmTopic"), "Protocol": "email", "Endpoint": ref("AlarmEmail")},
        },
        "UploadFailureRateAlarm": _failure_rate_alarm(),
        "ApiP95Alarm": _api_p95_alarm(),
        "Dashboard": {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                "DashboardName": sub("${Stack}-operations"),
                "DashboardBody": sub(json.dumps(dashboard_body(), separators=(",", ":"))),
            },
        },
    }
    for name in queue_names():
        res.update(_queue_alarms(name))
    for spec in resources.PROCESSORS:
        res.update(_lambda_alarm(spec.name))
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            "BuildPeer monitoring: alarms and the operations dashboard. GENERATED by"
            " `python -m infra.render` from core/resources.py; do not edit."
        ),
        "Parameters": {
            "Stack": stack_parameter(),
            "LoadBalancerFullName": {"Type": "String", "Description": "app/<name>/<id> of the ALB"},
            "ClusterName": {"Type": "String"},
            "ServiceName": {"Type": "String"},
            "DbClusterId": {"Type": "String"},
            "CacheId": {"Type": "String"},
            "AlarmEmail": {"Type": "String", "Default": "", "Description": "Who receives alarms (optional)"},
            "ApiP95Seconds": {"Type": "Number", "Default": 1},
            "FailureRatePercent": {"Type": "Number", "Default": 5},
        },
        "Conditions": {"HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [ref("AlarmEmail"), ""]}]}},
        "Resources": res,
        "Outputs": {
            "AlarmTopicArn": {"Value": ref("AlarmTopic")},
            "DashboardName": {"Value": ref("Dashboard")},
            "AlarmNames": {
                "Value": {"Fn::Join": [",", [ref(k) for k in sorted(res) if k.endswith("Alarm")]]},
            },
        },
    }
