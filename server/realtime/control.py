"""Control messages between server instances, carried on the broker's control channel:
end a user's sessions everywhere, or re-check what a user may still subscribe to after
their membership or role changed (``server.admin`` calls :class:`ControlPublisher`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

import orjson

from server.realtime.broker import Broker


class ControlOp(StrEnum):
    DISCONNECT = "disconnect"  # end the user's sessions with ``code``/``reason``
    REVALIDATE = "revalidate"  # end the user's subscriptions they may no longer hold


class BadControlMessage(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ControlMessage:
    op: ControlOp
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    code: int = 0
    reason: str = ""

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "op": self.op.value,
                "tenant": str(self.tenant_id),
                "user": str(self.user_id),
                "code": self.code,
                "reason": self.reason,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> ControlMessage:
        try:
            raw = orjson.loads(data)
            code = raw.get("code", 0)
            reason = raw.get("reason", "")
            if not isinstance(code, int) or not isinstance(reason, str):
                raise TypeError("code/reason")
            return cls(ControlOp(raw["op"]), uuid.UUID(raw["tenant"]), uuid.UUID(raw["user"]), code, reason)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadControlMessage(str(exc)) from exc


class ControlPublisher:
    """Sends control messages to every instance through ``broker`` (no need to start it:
    publishing uses the broker's command connections). Implements
    ``server.admin.AccessNotifier``."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def access_changed(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self.broker.publish_control(ControlMessage(ControlOp.REVALIDATE, tenant_id, user_id).encode())

    async def disconnect_user(self, tenant_id: uuid.UUID, user_id: uuid.UUID, code: int, reason: str) -> None:
        message = ControlMessage(ControlOp.DISCONNECT, tenant_id, user_id, code, reason)
        await self.broker.publish_control(message.encode())
