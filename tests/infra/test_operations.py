"""Operations in the AWS templates (issue 11): Redis AUTH + TLS with the token read at run
time, secrets never resolved into Lambda environments, CloudFront's origin secret required
at the ALB, /metrics never routed by the ALB; and the run-time halves of each, for real
(Secrets Manager on moto over HTTP, a Redis that requires its AUTH token)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis as redis_sync

from core.secrets import SecretError, with_secrets
from core.settings import Settings
from devstack.process import ManagedProcess, free_port, port_open, wait_until
from devstack.redis import redis_server_binary
from server import redis_client
from tests.infra.conftest import MotoProcess, load
from tests.infra.test_templates import by_type, strings


def _resolves(value: Any, logical_id: str) -> bool:
    """``value`` is a Secrets Manager dynamic reference to ``logical_id`` (a resource or parameter)."""
    return value == {"Fn::Sub": "{{resolve:secretsmanager:${" + logical_id + "}}}"}


# ---- Redis: AUTH token + TLS, the token from Secrets Manager at run time ---------------------


def test_elasticache_requires_tls_and_an_auth_token_kept_in_secrets_manager() -> None:
    data = load("data.yaml")
    cache = data["Resources"]["Cache"]["Properties"]
    assert cache["TransitEncryptionEnabled"] is True and cache["TransitEncryptionMode"] == "required"
    assert _resolves(cache["AuthToken"], "CacheAuthToken")
    token = data["Resources"]["CacheAuthToken"]
    assert token["Type"] == "AWS::SecretsManager::Secret"
    assert token["Properties"]["GenerateSecretString"]["ExcludePunctuation"] is True  # AUTH-safe characters
    # Cluster mode or not (an Fn::If of two Fn::Sub), the URL is TLS.
    value = data["Outputs"]["RedisUrl"]["Value"]
    urls = [v["Fn::Sub"] for v in value["Fn::If"][1:]] if "Fn::If" in value else [value["Fn::Sub"]]
    assert urls and all(url.startswith("rediss://") for url in urls), urls
    assert data["Outputs"]["CacheAuthTokenSecretArn"]["Value"] == {"Ref": "CacheAuthToken"}


def test_the_server_task_reads_the_auth_token_at_start() -> None:
    service, main = load("service.yaml"), load("main.yaml")
    (container,) = service["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    secrets = {s["Name"]: s["ValueFrom"] for s in container["Secrets"]}
    assert secrets["BUILDPEER_REDIS_AUTH_TOKEN"] == {"Ref": "CacheAuthTokenSecretArn"}
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert "BUILDPEER_REDIS_AUTH_TOKEN" not in environment
    (policy,) = service["Resources"]["ExecutionRole"]["Properties"]["Policies"]
    assert {"Ref": "CacheAuthTokenSecretArn"} in policy["PolicyDocument"]["Statement"][0]["Resource"]
    wiring = main["Resources"]["Service"]["Properties"]["Parameters"]
    assert wiring["CacheAuthTokenSecretArn"] == {"Fn::GetAtt": ["Data", "Outputs.CacheAuthTokenSecretArn"]}
    assert wiring["RedisUrl"] == {"Fn::GetAtt": ["Data", "Outputs.RedisUrl"]}


@pytest.fixture
def redis_with_auth(tmp_path: Path) -> Any:
    port, token = free_port(), "tok3n-0123456789abcdefABCDEF"
    process = ManagedProcess(
        "redis-auth",
        [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--requirepass", token,
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        log_path=tmp_path / "redis.log",
        stop_signal=signal.SIGTERM,
    )  # fmt: skip
    process.start()
    try:
        wait_until(lambda: port_open(port), 20, "redis with AUTH")
        yield port, token
    finally:
        process.stop()


async def test_the_auth_token_setting_reaches_a_redis_that_requires_it(redis_with_auth: Any) -> None:
    port, token = redis_with_auth
    plain = f"redis://127.0.0.1:{port}/0"
    with pytest.raises(redis_sync.exceptions.AuthenticationError):
        redis_sync.Redis.from_url(plain).ping()
    settings = Settings.from_env({"BUILDPEER_REDIS_URL": plain, "BUILDPEER_REDIS_AUTH_TOKEN": token})
    assert settings.redis_url is not None and token in settings.redis_url
    client = redis_client.connect(settings.redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


# ---- Lambda: secrets read at cold start, never in the environment ----------------------------


def test_no_lambda_environment_holds_a_resolved_secret() -> None:
    processors = load("processors.yaml")
    functions = by_type(processors, "AWS::Lambda::Function")
    assert functions
    for name, fn in functions.items():
        variables = fn["Properties"]["Environment"]["Variables"]
        assert not any("resolve:secretsmanager" in s for s in strings(variables)), name
        assert "BUILDPEER_DATABASE_URL" not in variables, name
        assert variables["BUILDPEER_DATABASE_URL_SECRET_ARN"] == {"Ref": "DatabaseUrlSecretArn"}, name
        role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        (policy,) = processors["Resources"][role]["Properties"]["Policies"]
        reads = [
            s for s in policy["PolicyDocument"]["Statement"] if "secretsmanager:GetSecretValue" in s["Action"]
        ]
        assert reads == [
            {
                "Sid": "ReadDatabaseUrlSecret",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": [{"Ref": "DatabaseUrlSecretArn"}],
            }
        ], name


def test_secrets_are_read_at_run_time_from_secrets_manager(moto: MotoProcess) -> None:
    sm = boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        endpoint_url=moto.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    url = "postgresql://buildpeer_app:s3cret@writer.example:5432/buildpeer"
    arn = sm.create_secret(Name="bp/database-url", SecretString=url)["ARN"]
    env = {
        "BUILDPEER_DATABASE_URL_SECRET_ARN": arn,
        "BUILDPEER_AWS_ENDPOINT_URL": moto.url,
        "BUILDPEER_AWS_REGION": "us-east-1",
    }
    assert Settings.from_env(with_secrets(env)).database_url == url
    # A value given directly wins; nothing is fetched for it.
    direct = {
        **env,
        "BUILDPEER_DATABASE_URL": "postgresql://other@h/db",
        "BUILDPEER_DATABASE_URL_SECRET_ARN": "nope",
    }
    assert with_secrets(direct)["BUILDPEER_DATABASE_URL"] == "postgresql://other@h/db"
    # An unreadable secret names its variable, not a value.
    missing = {**env, "BUILDPEER_DATABASE_URL_SECRET_ARN": arn.replace("database-url", "nothing-here")}
    with pytest.raises(SecretError) as info:
        with_secrets(missing)
    assert "BUILDPEER_DATABASE_URL_SECRET_ARN" in str(info.value) and "s3cret" not in str(info.value)


# ---- the edge: CloudFront's origin secret, required at the ALB ------------------------------


def test_the_alb_forwards_only_requests_with_cloudfronts_origin_secret() -> None:
    service, edge, main = load("service.yaml"), load("edge.yaml"), load("main.yaml")
    listener = service["Resources"]["HttpsListener"]["Properties"]
    (default,) = listener["DefaultActions"]
    assert default["Type"] == "fixed-response" and default["FixedResponseConfig"]["StatusCode"] == "403"
    json.loads(default["FixedResponseConfig"]["MessageBody"])  # the API's JSON error shape
    rules = by_type(service, "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert list(rules) == ["FromCloudFrontRule"]  # the only way to the targets
    rule = rules["FromCloudFrontRule"]["Properties"]
    (condition,) = rule["Conditions"]
    assert condition["Field"] == "http-header"
    assert condition["HttpHeaderConfig"]["HttpHeaderName"] == "X-Origin-Verify"
    (value,) = condition["HttpHeaderConfig"]["Values"]
    assert _resolves(value, "OriginVerifySecret")
    assert rule["Actions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": "TargetGroup"}}]

    (origin,) = edge["Resources"]["Distribution"]["Properties"]["DistributionConfig"]["Origins"]
    (header,) = origin["OriginCustomHeaders"]
    assert header["HeaderName"] == "X-Origin-Verify"
    assert _resolves(header["HeaderValue"], "OriginVerifySecretArn")
    edge_params = main["Resources"]["Edge"]["Properties"]["Parameters"]
    assert edge_params["OriginVerifySecretArn"] == {
        "Fn::GetAtt": ["Service", "Outputs.OriginVerifySecretArn"]
    }
    # The server trusts the ALB's subnets for the client address (server/proxies.py).
    service_params = main["Resources"]["Service"]["Properties"]["Parameters"]
    assert service_params["TrustedProxyCidrs"] == {"Fn::GetAtt": ["Network", "Outputs.PublicSubnetCidrs"]}


def test_metrics_have_their_own_port_that_the_alb_never_routes() -> None:
    service, network = load("service.yaml"), load("network.yaml")
    (container,) = service["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    ports = {p["Name"]: p["ContainerPort"] for p in container["PortMappings"]}
    assert ports == {"http": 8000, "metrics": {"Ref": "MetricsPort"}}
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["BUILDPEER_METRICS_PORT"] == {"Ref": "MetricsPort"}
    assert environment["BUILDPEER_PORT"] == "8000"
    assert service["Parameters"]["MetricsPort"]["Default"] != 8000
    assert service["Resources"]["TargetGroup"]["Properties"]["Port"] == 8000
    (target,) = service["Resources"]["Service"]["Properties"]["LoadBalancers"]
    assert target["ContainerPort"] == 8000
    ingress = network["Resources"]["ServiceSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(r["FromPort"], r["ToPort"]) for r in ingress] == [(8000, 8000)]
    health = container["HealthCheck"]["Command"][-1]
    assert "127.0.0.1:8000/health" in health
