"""The SNS envelope, parsed in one place.

The topics deliver to their queues with raw message delivery, so an SQS body is usually the
event JSON itself; a subscription without it wraps the event in an SNS ``Notification``
(``{"Type": "Notification", "Message": "<the event JSON>", ...}``). Both are accepted.
"""

from __future__ import annotations

import orjson

from core.events import Event, parse_event


def unwrap_sns(body: str | bytes) -> str | bytes:
    """The message inside an SQS body: the ``Message`` of an SNS ``Notification`` envelope,
    else the body as it is (also when it is not JSON: the caller's parser says why)."""
    try:
        outer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if (
        isinstance(outer, dict)
        and outer.get("Type") == "Notification"
        and isinstance(outer.get("Message"), str)
    ):
        return str(outer["Message"])
    return body


def event_from_body(body: str | bytes) -> Event:
    """A v1 event from an SQS body (raw delivery or enveloped); raises ``InvalidEvent``."""
    return parse_event(unwrap_sns(body))
