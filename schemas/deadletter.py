"""Dead letters: inputs flexforce refused, kept whole with the reason, never lost."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Event, Identifier


class DeadLetterStage(StrEnum):
    """Where the record was refused: unreadable, invalid, too late, forged, or failed later."""

    DECODE = "decode"
    VALIDATE = "validate"
    LATE = "late"
    SECURITY = "security"
    PROCESS = "process"


class DeadLetterHeader(BaseModel):
    """One Kafka header of the original record, its value base64-encoded (headers are bytes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    value_b64: str | None


class DeadLetter(Event):
    """An input that could not be used, kept whole (base64) with the reason it was refused.

    The Kafka key of a dead letter is the original key, so a fixed message can be re-published
    to its original topic as it was.
    """

    event_type: ClassVar[str] = "flexforce.dlq.dead_letter.v1"
    key_field: ClassVar[str] = "original_key"
    topic: ClassVar[str] = "{original_topic}.dlq"

    domain: Identifier = Field(
        "unknown", description="The original's domain when it could be read, else 'unknown'."
    )
    original_topic: Annotated[str, Field(min_length=1, max_length=249)] = Field(
        description="Logical name (without the deployment prefix) of the original topic."
    )
    partition: int = Field(ge=-1)
    offset: int = Field(ge=-1)
    original_key: str = Field("", description="The original key, as text (UTF-8, replaced).")
    original_key_b64: str | None = None
    original_value_b64: str | None = None
    original_headers: list[DeadLetterHeader] = Field(default_factory=list)
    original_timestamp_ms: int | None = None
    stage: DeadLetterStage
    error_class: Annotated[str, Field(min_length=1, max_length=200)]
    reason: Annotated[str, Field(min_length=1, max_length=20_000)]
