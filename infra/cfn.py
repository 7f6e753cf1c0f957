"""Tiny builders for CloudFormation intrinsic functions and shared naming helpers.

The generated templates use the long form (``{"Fn::Sub": ...}``) so they dump as plain YAML.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

STACK_PATTERN = "[a-z0-9][a-z0-9-]{1,40}"  # the same rule as core.settings._name


def ref(name: str) -> Json:
    return {"Ref": name}


def sub(text: str) -> Json:
    return {"Fn::Sub": text}


def get_att(resource: str, attribute: str) -> Json:
    return {"Fn::GetAtt": [resource, attribute]}


def logical_id(*parts: str) -> str:
    """``("upload-completed", "topic")`` → ``UploadCompletedTopic``."""
    words = [w for part in parts for w in part.replace("_", "-").split("-") if w]
    return "".join(w[:1].upper() + w[1:] for w in words)


def stack_parameter() -> Json:
    return {
        "Type": "String",
        "Default": "buildpeer",
        "AllowedPattern": STACK_PATTERN,
        "Description": "Name prefix of every queue, topic and function (BUILDPEER_STACK)",
    }


def bucket_parameter() -> Json:
    return {
        "Type": "String",
        "Default": "buildpeer-uploads",
        "AllowedPattern": STACK_PATTERN,
        "Description": "Uploads bucket (BUILDPEER_BUCKET)",
    }


def queue_arn(name_expression: str) -> Json:
    """ARN of a queue in this account and region, from a ``Fn::Sub`` name expression."""
    return sub(f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{name_expression}")


def topic_arn(name_expression: str) -> Json:
    return sub(f"arn:${{AWS::Partition}}:sns:${{AWS::Region}}:${{AWS::AccountId}}:{name_expression}")


STACK = "${Stack}"  # passed as the stack to core.resources' name functions → Fn::Sub names
