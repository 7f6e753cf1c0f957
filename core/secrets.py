"""Secrets read at run time from AWS Secrets Manager, never resolved into a function's
configuration (where anyone who may read the function could read them).

A process that gets ``BUILDPEER_<NAME>_SECRET_ARN`` and no ``BUILDPEER_<NAME>`` reads the
secret's string when it starts (a Lambda at cold start) and uses it as ``BUILDPEER_<NAME>``:
``BUILDPEER_DATABASE_URL_SECRET_ARN`` gives ``BUILDPEER_DATABASE_URL``. ECS tasks get the same
values from the task definition's ``Secrets`` (injected by the agent at task start).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.settings import PREFIX

SUFFIX = "_SECRET_ARN"


class SecretError(RuntimeError):
    """A configured secret could not be read (names the variable, never the value)."""


def secret_variables(env: Mapping[str, str]) -> dict[str, str]:
    """``{BUILDPEER_<NAME>: arn}`` for every secret reference whose variable is unset."""
    out = {}
    for variable, arn in env.items():
        if variable.startswith(PREFIX) and variable.endswith(SUFFIX) and arn:
            target = variable.removesuffix(SUFFIX)
            if target != PREFIX.rstrip("_") and not env.get(target):
                out[target] = arn
    return out


def with_secrets(env: Mapping[str, str], client: Callable[[], Any] | None = None) -> dict[str, str]:
    """``env`` plus the values of its secret references. ``client`` makes the Secrets
    Manager client (only called when there is something to read)."""
    wanted = secret_variables(env)
    resolved = dict(env)
    if not wanted:
        return resolved
    sm = client() if client is not None else _default_client(env)
    for variable, arn in wanted.items():
        try:
            value = sm.get_secret_value(SecretId=arn)
        except Exception as exc:  # botocore's errors: any of them means "not readable"
            raise SecretError(f"{variable}{SUFFIX}: cannot read the secret ({type(exc).__name__})") from None
        secret = value.get("SecretString")
        if not isinstance(secret, str) or not secret:
            raise SecretError(f"{variable}{SUFFIX}: the secret has no string value")
        resolved[variable] = secret
    return resolved


def _default_client(env: Mapping[str, str]) -> Any:
    import boto3

    kwargs: dict[str, Any] = {"region_name": env.get(PREFIX + "AWS_REGION") or env.get("AWS_REGION")}
    endpoint = env.get(PREFIX + "AWS_ENDPOINT_URL")
    if endpoint:
        kwargs.update(endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    return boto3.session.Session().client("secretsmanager", **kwargs)
