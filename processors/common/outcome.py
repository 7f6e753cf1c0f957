"""What a processor's work produced: the step result the pipeline records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from core.status import ReasonCode

StepResultState = Literal["done", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class DerivativeFile:
    """A derivative already written to S3 (the pipeline records its row)."""

    kind: str  # thumb-200 | thumb-800 | preview | text
    s3_key: str
    mime_type: str
    size_bytes: int
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class StepOutcome:
    state: StepResultState
    result: dict[str, Any] = field(default_factory=dict)
    reason: ReasonCode | None = None
    derivatives: tuple[DerivativeFile, ...] = ()
    # merged into uploads.metadata / columns of the upload row
    metadata: dict[str, Any] = field(default_factory=dict)
    sniffed_type: str | None = None
    sha256: str | None = None
    quarantine: bool = False
    stored_size: int | None = None  # what S3 stored (the metadata step's HEAD)
    sha256_verified: bool | None = None  # sha256 compared with the declared one

    @classmethod
    def failed(cls, reason: ReasonCode, message: str, **result: Any) -> StepOutcome:
        return cls(state="failed", reason=reason, result={"error": message, **result})


class Rejected(Exception):
    """The file is unusable for a reason the user should see (never retried)."""

    def __init__(self, reason: ReasonCode, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
