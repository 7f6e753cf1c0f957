"""Principals: who is calling, for which tenant, in which role (DESIGN §3 Auth).

Pure data and the role rules; token verification lives in ``server.auth``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    FIELD_WORKER = "field_worker"
    INVESTOR = "investor"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role
    expires_at: int  # unix seconds, from the token's exp

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def can_upload(self) -> bool:
        return self.role in (Role.ADMIN, Role.FIELD_WORKER)
