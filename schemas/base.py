"""The base every flexforce event shares: identity, origin, event time and planning domain.

An event is one pydantic model. On the wire (see :mod:`schemas.wire`) the CloudEvents context
attributes ``id``, ``source`` and ``time`` ride in Kafka headers and the remaining fields are the
JSON value, so the same object can be built in Python, validated from Kafka, or documented as
JSON Schema without a separate envelope type to keep in step.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

#: Identifiers of queues, projects, teams, skills, regions and the like. Conservative so they can
#: be used in Kafka keys, metric labels and log lines without escaping.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

#: Provider ids become part of a topic name (``providers.<id>.capacity-requests``) and of a Kafka
#: ACL principal, so they are lower-case and limited to what topic names allow everywhere.
PROVIDER_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"

Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
ProviderId = Annotated[str, StringConstraints(pattern=PROVIDER_ID_PATTERN)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
Text = Annotated[str, StringConstraints(max_length=2000)]
Fte = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]

_EVENT_TYPE_RE = re.compile(r"^flexforce\.[a-z_]+\.[a-z_]+\.v[0-9]+$")

#: Names that belong to the CloudEvents context (headers), not to the JSON data.
ENVELOPE_FIELDS: frozenset[str] = frozenset({"id", "source", "time"})


class Sensitivity(StrEnum):
    """How sensitive the work is; restricted work needs clearance or certified providers."""

    PUBLIC = "public"
    INTERNAL = "internal"
    RESTRICTED = "restricted"


class Event(BaseModel):
    """Base of every event: a dedupe id, a source, an event time and a planning domain.

    ``time`` is *event time*: when the fact happened in the operations system. flexforce's logic
    never reads the wall clock, so a recorded stream replays to the same decisions.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    #: CloudEvents ``type`` of this event, e.g. ``flexforce.ops.ticket_volume.v1``.
    event_type: ClassVar[str] = ""
    #: Name of the field whose value is the Kafka key (``"domain"`` for domain-keyed events).
    key_field: ClassVar[str] = "domain"
    #: Logical topic (without prefix) the event is published to.
    topic: ClassVar[str] = ""

    id: EventId = Field(description="Unique event id; consumers drop repeats of the same id.")
    source: Annotated[str, StringConstraints(min_length=1, max_length=500)] = Field(
        description="URI-reference of the system that emitted the event (CloudEvents source)."
    )
    time: AwareDatetime = Field(description="Event time, timezone-aware (CloudEvents time).")
    domain: Identifier = Field(
        description="Planning domain (region or business unit) the event belongs to."
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.event_type and not _EVENT_TYPE_RE.match(cls.event_type):
            raise TypeError(f"{cls.__name__}.event_type {cls.event_type!r} is not versioned")

    @property
    def key(self) -> str:
        """The Kafka key this event is published under."""
        return str(getattr(self, self.key_field))

    def data(self) -> dict[str, Any]:
        """The JSON-ready data part (everything but the CloudEvents context attributes)."""
        return self.model_dump(mode="json", exclude=set(ENVELOPE_FIELDS))


def utc_iso(moment: datetime) -> str:
    """RFC 3339 text for a timezone-aware datetime, the form CloudEvents ``time`` requires."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: flexforce times must carry a timezone")
    return moment.isoformat()
