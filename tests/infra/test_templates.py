"""Static checks of the CloudFormation templates: cfn-lint, generated parts up to date, and
the properties that matter, tied back to core/resources.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core import resources
from infra import render
from tests.infra.conftest import TEMPLATES, load

CFN_LINT = Path(sys.executable).parent / "cfn-lint"
ALL_TEMPLATES = sorted(p.name for p in TEMPLATES.glob("*.yaml"))
SEED = {"image": (1024, 300), "document": (2048, 300), "scan": (3008, 300), "metadata": (512, 60)}


def by_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def strings(value: Any) -> list[str]:
    """Every string inside a (policy) document, Fn::Sub bodies included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_every_template_is_covered() -> None:
    expected = {"main", "network", "messaging", "data", "processors", "service", "edge", "monitoring"}
    assert {Path(n).stem for n in ALL_TEMPLATES} == expected


@pytest.mark.parametrize("name", ALL_TEMPLATES)
def test_cfn_lint_passes(name: str) -> None:
    result = subprocess.run(
        [str(CFN_LINT), str(TEMPLATES / name)], capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    broken = (
        (TEMPLATES / "messaging.yaml")
        .read_text()
        .replace("VisibilityTimeout: 1800", "VisibilityTimeout: 99999")
    )
    (tmp_path / "broken.yaml").write_text(broken)
    result = subprocess.run([str(CFN_LINT), str(tmp_path / "broken.yaml")], capture_output=True, text=True)
    assert result.returncode != 0 and "E3034 99999 is greater than the maximum of 43200" in result.stdout


def test_generated_templates_are_up_to_date() -> None:
    assert render.stale() == [], "run: python -m infra.render"


def test_check_mode_reports_a_stale_template(tmp_path: Path) -> None:
    assert render.main(["--out", str(tmp_path)]) == 0
    assert render.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "processors.yaml").write_text("# hand edit\n")
    assert render.stale(tmp_path) == ["processors.yaml"]
    assert render.main(["--check", "--out", str(tmp_path)]) == 1


# ---- messaging ---------------------------------------------------------------------------


def test_bucket_properties() -> None:
    bucket = load("messaging.yaml")["Resources"]["UploadsBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["AccelerateConfiguration"] == {"AccelerationStatus": "Enabled"}
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    (sse,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": ["UploadsKey", "Arn"]}
    (cors,) = bucket["CorsConfiguration"]["CorsRules"]
    assert "ETag" in cors["ExposedHeaders"]
    assert {"POST", "PUT", "GET", "DELETE"} <= set(cors["AllowedMethods"])
    assert cors["AllowedHeaders"] == ["*"]  # content-type included (stock Uppy 6 signRequest mode)
    assert bucket["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}

    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    transitions = {
        t["StorageClass"]: t["TransitionInDays"]
        for t in rules["intelligent-tiering-then-glacier"]["Transitions"]
    }
    assert transitions == {"INTELLIGENT_TIERING": 0, "GLACIER": 90}
    assert rules["abort-incomplete-multipart"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert all(r["Status"] == "Enabled" for r in rules.values())


def test_bucket_refuses_plain_http() -> None:
    policy = load("messaging.yaml")["Resources"]["UploadsBucketPolicy"]["Properties"]["PolicyDocument"]
    (deny,) = [s for s in policy["Statement"] if s["Sid"] == "DenyInsecureTransport"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_queues_redrive_after_three_receives_with_visibility_six_times_the_function_timeout() -> None:
    messaging, processors = load("messaging.yaml"), load("processors.yaml")
    queues = {
        q["Properties"]["QueueName"]["Fn::Sub"]: q["Properties"]
        for q in by_type(messaging, "AWS::SQS::Queue").values()
    }
    timeouts = {
        fn["Properties"]["FunctionName"]["Fn::Sub"]: fn["Properties"]["Timeout"]
        for fn in by_type(processors, "AWS::Lambda::Function").values()
    }
    for spec in resources.PROCESSORS:
        queue = queues[resources.queue_name("${Stack}", spec.name)]
        function_timeout = timeouts[resources.queue_name("${Stack}", spec.name)]
        assert queue["VisibilityTimeout"] >= 6 * function_timeout
        if function_timeout == 300:  # the seed's 5-minute visibility for 5-minute functions, corrected
            assert queue["VisibilityTimeout"] == 1800
    for name in [p.name for p in resources.PROCESSORS] + [c.name for c in resources.CONSUMERS]:
        queue = queues[resources.queue_name("${Stack}", name)]
        assert queue["RedrivePolicy"]["maxReceiveCount"] == 3
        dlq_logical = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        dlq = messaging["Resources"][dlq_logical]["Properties"]
        assert dlq["QueueName"] == {"Fn::Sub": resources.dead_letter_queue_name("${Stack}", name)}
        assert dlq["MessageRetentionPeriod"] == 14 * 86400
    assert "6x" in messaging["Description"] and "seed" in messaging["Description"]


def test_every_topic_feeds_every_consumer_queue_raw() -> None:
    messaging = load("messaging.yaml")
    feedback = resources.topic_name("${Stack}", resources.EMAIL_EVENTS.name)  # its own test below
    topics = {
        k: v["Properties"]["TopicName"]["Fn::Sub"]
        for k, v in by_type(messaging, "AWS::SNS::Topic").items()
        if v["Properties"]["TopicName"]["Fn::Sub"] != feedback
    }
    assert sorted(topics.values()) == sorted(resources.topic_name("${Stack}", t) for t in resources.TOPICS)
    pairs = set()
    for sub in by_type(messaging, "AWS::SNS::Subscription").values():
        props = sub["Properties"]
        if props["TopicArn"]["Ref"] not in topics:
            continue
        assert props["Protocol"] == "sqs" and props["RawMessageDelivery"] is True
        queue = messaging["Resources"][props["Endpoint"]["Fn::GetAtt"][0]]["Properties"]["QueueName"][
            "Fn::Sub"
        ]
        pairs.add((topics[props["TopicArn"]["Ref"]], queue))
    assert pairs == {
        (resources.topic_name("${Stack}", t), resources.queue_name("${Stack}", c.name))
        for t in resources.TOPICS
        for c in resources.CONSUMERS
    }
    assert all(
        t["Properties"]["KmsMasterKeyId"] == {"Ref": "UploadsKey"}
        for k, t in by_type(messaging, "AWS::SNS::Topic").items()
        if k in topics
    )


def test_ses_feedback_reaches_the_email_events_queue() -> None:
    messaging = load("messaging.yaml")
    spec = resources.EMAIL_EVENTS
    resources_ = messaging["Resources"]
    (config_set,) = by_type(messaging, "AWS::SES::ConfigurationSet").values()
    assert config_set["Properties"]["Name"] == {"Fn::Sub": resources.ses_configuration_set_name("${Stack}")}
    (destination,) = by_type(messaging, "AWS::SES::ConfigurationSetEventDestination").values()
    event_destination = destination["Properties"]["EventDestination"]
    assert sorted(event_destination["MatchingEventTypes"]) == ["bounce", "complaint"]
    topic = event_destination["SnsDestination"]["TopicARN"]["Ref"]
    assert resources_[topic]["Properties"]["TopicName"] == {
        "Fn::Sub": resources.topic_name("${Stack}", spec.name)
    }
    (policy,) = by_type(messaging, "AWS::SNS::TopicPolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "ses.amazonaws.com"} and statement["Action"] == "sns:Publish"
    (subscription,) = [
        s
        for s in by_type(messaging, "AWS::SNS::Subscription").values()
        if s["Properties"]["TopicArn"] == {"Ref": topic}
    ]
    queue = resources_[subscription["Properties"]["Endpoint"]["Fn::GetAtt"][0]]["Properties"]
    assert queue["QueueName"] == {"Fn::Sub": resources.queue_name("${Stack}", spec.name)}
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 3 and subscription["Properties"]["RawMessageDelivery"]


def test_only_the_rule_and_the_topics_may_send_to_the_queues() -> None:
    messaging = load("messaging.yaml")
    policies = by_type(messaging, "AWS::SQS::QueuePolicy")
    for policy in policies.values():
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Action"] == "sqs:SendMessage"
        assert "aws:SourceArn" in statement["Condition"]["ArnEquals"]
    assert policies["ProcessorQueuesPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "events.amazonaws.com"
    }


# ---- processors -------------------------------------------------------------------------


def test_functions_follow_the_seed_and_report_partial_batch_failures() -> None:
    processors = load("processors.yaml")
    functions = by_type(processors, "AWS::Lambda::Function")
    assert len(functions) == len(resources.PROCESSORS) + 2 == 6  # + dead-letter and sweeper
    for spec in resources.PROCESSORS:
        fn = functions[f"{spec.name.capitalize()}Function"]["Properties"]
        assert (fn["MemorySize"], fn["Timeout"]) == SEED[spec.name]
        assert fn["Handler"] == f"processors.{spec.name}.handler.handler"
        assert fn["FunctionName"] == {"Fn::Sub": f"${{Stack}}-{spec.name}"}
        esm = processors["Resources"][f"{spec.name.capitalize()}EventSourceMapping"]["Properties"]
        assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert esm["EventSourceArn"]["Fn::Sub"].endswith(":" + resources.queue_name("${Stack}", spec.name))
        assert esm["FunctionName"] == {"Ref": f"{spec.name.capitalize()}Function"}


def _role_documents(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [p["PolicyDocument"] for p in template["Resources"][role]["Properties"].get("Policies", [])]


@pytest.mark.parametrize("name", [p.name for p in resources.PROCESSORS])
def test_processor_roles_name_only_their_own_resources(name: str) -> None:
    processors = load("processors.yaml")
    (document,) = _role_documents(processors, f"{name.capitalize()}Role")
    texts = strings(document)
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert action != "*" and not action.endswith(":*"), action
        assert "*" not in statement["Resource"] and statement["Resource"] != "*"
    queue_arns = [t for t in texts if ":sqs:" in t]
    assert queue_arns == [
        f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:${{Stack}}-{name}"
    ]
    others = [p.name for p in resources.PROCESSORS if p.name != name]
    for text in texts:  # never another processor's queue, function or log group
        assert not any(re.search(rf"\$\{{Stack\}}-{other}\b", text) for other in others), text
    s3 = [t for t in texts if ":s3:::" in t]
    assert s3 and all(t.startswith("arn:${AWS::Partition}:s3:::${BucketName}/tenant-*/") for t in s3)
    logs = [t for t in texts if ":logs:" in t]
    assert logs == [
        f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/${{Stack}}-{name}:*"
    ]
    writes = {
        a for s in document["Statement"] for a in s["Action"] if a in ("s3:PutObject", "s3:DeleteObject")
    }
    # every processor may delete an original's versions (a refused overwrite, a failed
    # upload's original: issue 12); only the image and document processors write
    assert writes == (
        {"s3:PutObject", "s3:DeleteObject"} if name in ("image", "document") else {"s3:DeleteObject"}
    )


def test_dead_letter_function_reads_only_the_processor_dead_letter_queues() -> None:
    processors = load("processors.yaml")
    (document,) = _role_documents(processors, "DeadletterRole")
    queues = {t.rsplit(":", 1)[-1] for t in strings(document) if ":sqs:" in t}
    assert queues == {resources.dead_letter_queue_name("${Stack}", p.name) for p in resources.PROCESSORS}
    sources = {
        m["Properties"]["EventSourceArn"]["Fn::Sub"].rsplit(":", 1)[-1]
        for m in by_type(processors, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": "DeadletterFunction"}
    }
    assert sources == queues
    # S3: only deleting originals' versions (a dead-lettered or timed-out upload's original)
    originals = "arn:${AWS::Partition}:s3:::${BucketName}/tenant-*/project-*/uploads/*/original/*"
    assert [t for t in strings(document) if ":s3:::" in t] == [originals]
    (sweeper,) = _role_documents(processors, "SweeperRole")
    assert not any(":sqs:" in t for t in strings(sweeper))
    assert [t for t in strings(sweeper) if ":s3:::" in t] == [originals]
    for role in (document, sweeper):
        s3_actions = {a for s in role["Statement"] for a in s["Action"] if a.startswith("s3:")}
        assert s3_actions == {"s3:DeleteObject", "s3:DeleteObjectVersion"}
    schedule = processors["Resources"]["SweeperSchedule"]["Properties"]
    assert schedule["ScheduleExpression"].startswith("rate(")


# ---- service, data, network, edge -------------------------------------------------------


def test_server_task_role_consumes_only_the_consumer_queues() -> None:
    service = load("service.yaml")
    (document,) = _role_documents(service, "TaskRole")
    texts = strings(document)
    queues = {t.rsplit(":", 1)[-1] for t in texts if ":sqs:" in t}
    assert queues == {resources.queue_name("${Stack}", c.name) for c in resources.CONSUMERS} | {
        resources.queue_name("${Stack}", resources.EMAIL_EVENTS.name)
    }
    topics = {t.rsplit(":", 1)[-1] for t in texts if ":sns:" in t}
    assert topics == {resources.topic_name("${Stack}", t) for t in resources.TOPICS}
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(a != "*" and not a.endswith(":*") for a in actions)
        assert statement["Resource"] != "*"
    (secrets,) = _role_documents(service, "ExecutionRole")
    assert all(isinstance(r, dict) and "Ref" in r for r in secrets["Statement"][0]["Resource"])


def test_service_sizing_health_and_scaling() -> None:
    service, main = load("service.yaml"), load("main.yaml")
    task = service["Resources"]["TaskDefinition"]["Properties"]
    assert (task["Cpu"], task["Memory"]) == ("2048", "4096")
    attributes = {
        a["Key"]: a["Value"]
        for a in service["Resources"]["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]
    }
    assert int(attributes["idle_timeout.timeout_seconds"]) >= 3600
    assert service["Resources"]["TargetGroup"]["Properties"]["HealthCheckPath"] == "/health"
    listener = service["Resources"]["HttpsListener"]["Properties"]
    assert listener["Protocol"] == "HTTPS" and listener["Port"] == 443
    sizes = main["Mappings"]["Sizes"]["production"]
    assert (sizes["MinTasks"], sizes["MaxTasks"]) == (2, 10)
    cpu = service["Resources"]["CpuScaling"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert cpu["TargetValue"] == 70
    metrics = service["Resources"]["QueueDepthScaling"]["Properties"][
        "TargetTrackingScalingPolicyConfiguration"
    ]["CustomizedMetricSpecification"]["Metrics"]
    sqs = [m for m in metrics if "MetricStat" in m and m["MetricStat"]["Metric"]["Namespace"] == "AWS/SQS"]
    assert sqs[0]["MetricStat"]["Metric"]["Dimensions"][0]["Value"] == {"Fn::Sub": "${Stack}-events"}
    deployment = service["Resources"]["Service"]["Properties"]["DeploymentConfiguration"]
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}


def test_data_network_and_edge() -> None:
    data, network, edge = load("data.yaml"), load("network.yaml"), load("edge.yaml")
    instances = by_type(data, "AWS::RDS::DBInstance")
    assert len(instances) == 2  # writer + reader, in the two AZs
    assert {str(i["Properties"]["AvailabilityZone"]) for i in instances.values()} == {
        str({"Fn::Select": [0, {"Fn::GetAZs": ""}]}),
        str({"Fn::Select": [1, {"Fn::GetAZs": ""}]}),
    }
    cluster = data["Resources"]["Database"]["Properties"]
    assert cluster["StorageEncrypted"] is True and cluster["Engine"] == "aurora-postgresql"
    cache = data["Resources"]["Cache"]["Properties"]
    assert cache["MultiAZEnabled"] and cache["TransitEncryptionEnabled"] and cache["AtRestEncryptionEnabled"]

    subnets = by_type(network, "AWS::EC2::Subnet")
    assert len(subnets) == 4
    assert len(by_type(network, "AWS::EC2::NatGateway")) == 2

    (acl,) = by_type(edge, "AWS::WAFv2::WebACL").values()
    rate = next(r for r in acl["Properties"]["Rules"] if "RateBasedStatement" in r["Statement"])
    statement = rate["Statement"]["RateBasedStatement"]
    assert statement["AggregateKeyType"] == "IP" and statement["EvaluationWindowSec"] == 60
    assert statement["Limit"] == {"Ref": "RequestsPerMinutePerIp"}
    assert edge["Parameters"]["RequestsPerMinutePerIp"]["Default"] == 1000
    distribution = edge["Resources"]["Distribution"]["Properties"]["DistributionConfig"]
    assert distribution["WebACLId"] == {"Fn::GetAtt": ["WebAcl", "Arn"]}


# ---- monitoring --------------------------------------------------------------------------


def test_alarms_cover_queues_functions_failure_rate_and_latency() -> None:
    monitoring = load("monitoring.yaml")
    alarms = {
        a["Properties"]["AlarmName"]["Fn::Sub"]: a["Properties"]
        for a in by_type(monitoring, "AWS::CloudWatch::Alarm").values()
    }
    names = [p.name for p in resources.PROCESSORS] + [c.name for c in resources.CONSUMERS]
    for name in names:
        dlq = alarms[resources.dead_letter_queue_name("${Stack}", name) + "-not-empty"]
        assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        watched = {m["MetricStat"]["Metric"]["MetricName"] for m in dlq["Metrics"] if "MetricStat" in m}
        assert watched == {"ApproximateNumberOfMessagesVisible", "NumberOfMessagesReceived"}
        assert alarms[resources.queue_name("${Stack}", name) + "-oldest-message-age"]["MetricName"] == (
            "ApproximateAgeOfOldestMessage"
        )
    for spec in resources.PROCESSORS:
        assert alarms[resources.queue_name("${Stack}", spec.name) + "-errors"]["MetricName"] == "Errors"
    assert alarms["${Stack}-api-p95"]["ExtendedStatistic"] == "p95"
    rate = alarms["${Stack}-upload-failure-rate"]["Metrics"]
    assert any("Expression" in m and "failed" in m["Expression"] for m in rate)
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms.values())


def test_dashboard_body_is_valid_json_with_every_queue() -> None:
    monitoring = load("monitoring.yaml")
    body = monitoring["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    resolved = re.sub(r"\$\{[^}]+\}", "x", body)
    widgets = json.loads(resolved)["widgets"]
    titles = {w["properties"]["title"] for w in widgets}
    assert {"Queue depth (visible messages)", "Dead-letter queues (must be 0)"} <= titles
    for spec in resources.PROCESSORS:
        assert resources.dead_letter_queue_name("${Stack}", spec.name) in body


def test_cache_cluster_mode_is_a_parameter_the_app_follows() -> None:
    data, main, service = load("data.yaml"), load("main.yaml"), load("service.yaml")
    for name in ("CacheClusterMode", "CacheShards", "CacheReplicasPerShard"):
        assert name in data["Parameters"] and name in main["Parameters"]
        assert main["Resources"]["Data"]["Properties"]["Parameters"][name] == {"Ref": name}
    cache = data["Resources"]["Cache"]["Properties"]
    assert cache["NumNodeGroups"] == {
        "Fn::If": ["CacheIsCluster", {"Ref": "CacheShards"}, {"Ref": "AWS::NoValue"}]
    }
    assert cache["ClusterMode"] == {"Fn::If": ["CacheIsCluster", "enabled", "disabled"]}
    assert cache["TransitEncryptionEnabled"] is True and "AuthToken" in cache  # TLS + AUTH in both modes
    url = data["Outputs"]["RedisUrl"]["Value"]["Fn::If"]
    assert (
        url[0] == "CacheIsCluster"
        and "ConfigurationEndPoint" in str(url[1])
        and "PrimaryEndPoint" in str(url[2])
    )
    assert main["Resources"]["Service"]["Properties"]["Parameters"]["RedisCluster"] == {
        "Fn::GetAtt": ["Data", "Outputs.RedisCluster"]
    }
    (container,) = service["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["BUILDPEER_REDIS_CLUSTER"] == {"Ref": "RedisCluster"} and env["BUILDPEER_WORKERS"] == "2"
