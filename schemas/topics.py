"""The topic table: names, keys, events, and the configuration each topic needs.

Topic names are logical (``ops.ticket-volume``) and get a deployment prefix at the edge
(``acme.prod.ops.ticket-volume``), so several environments can share one cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from schemas.allocation import AllocationLogged, AllocationPlanned, ScalingDecided
from schemas.base import PROVIDER_ID_PATTERN, Event
from schemas.deadletter import DeadLetter
from schemas.ops import (
    ProjectDemandChanged,
    QueueDefined,
    TeamCapacityUpdated,
    TicketVolumeObserved,
)
from schemas.providers import CapacityRequested, CapacityResponded, ProviderContractUpdated

#: Largest input event accepted (value bytes). Ops events are small; anything near this is a bug
#: or an attack, and is dead-lettered rather than parsed.
MAX_INPUT_EVENT_BYTES = 256 * 1024
#: Plans carry whole horizons; producers compress them, but the topic must allow them.
MAX_PLAN_EVENT_BYTES = 8 * 1024 * 1024

_PREFIX_RE = re.compile(r"^([a-zA-Z0-9_-]+\.)*$")

DEAD_LETTER_SUFFIX = ".dlq"
CAPACITY_REQUESTS_TEMPLATE = "providers.{provider_id}.capacity-requests"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One logical topic and everything a deployment needs to create and use it."""

    name: str
    event: type[Event]
    key: str
    description: str
    compacted: bool = False
    partitions: int = 6
    max_event_bytes: int = MAX_INPUT_EVENT_BYTES
    is_input: bool = True
    configs: dict[str, str] = field(default_factory=dict)

    def kafka_configs(self) -> dict[str, str]:
        """Topic-level configs to create it with."""
        configs = {"max.message.bytes": str(self.max_event_bytes + 64 * 1024)}
        if self.compacted:
            configs |= {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
        return configs | self.configs

    @property
    def dead_letter(self) -> str:
        return self.name + DEAD_LETTER_SUFFIX


INPUT_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "ops.queues", QueueDefined, "queue_id", "Queue catalogue: skill, SLA, compliance.", True, 3
    ),
    TopicSpec(
        "ops.ticket-volume",
        TicketVolumeObserved,
        "queue_id",
        "Arrivals, backlog and handle time per queue and interval.",
        partitions=12,
    ),
    TopicSpec(
        "ops.project-demand", ProjectDemandChanged, "project_id", "Project effort by skill.", False
    ),
    TopicSpec("ops.workforce", TeamCapacityUpdated, "team_id", "Team rosters and costs.", True, 3),
    TopicSpec(
        "providers.contracts",
        ProviderContractUpdated,
        "provider_id",
        "Provider contract terms.",
        True,
        3,
    ),
    TopicSpec(
        "providers.capacity-responses",
        CapacityResponded,
        "provider_id",
        "Providers' answers to capacity requests.",
    ),
)

OUTPUT_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "allocation.plans",
        AllocationPlanned,
        "domain",
        "Solved allocation plans over the rolling horizon.",
        partitions=6,
        max_event_bytes=MAX_PLAN_EVENT_BYTES,
        is_input=False,
    ),
    TopicSpec(
        "allocation.decisions",
        ScalingDecided,
        "domain",
        "Scale-up / scale-down / hold decisions with reasons.",
        is_input=False,
    ),
    TopicSpec(
        "allocation.log",
        AllocationLogged,
        "domain",
        "Audit trail of every notable step.",
        is_input=False,
    ),
)

ALL_TOPICS: tuple[TopicSpec, ...] = INPUT_TOPICS + OUTPUT_TOPICS
TOPICS_BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in ALL_TOPICS}


def capacity_requests_spec(provider_id: str) -> TopicSpec:
    """The per-provider request topic: one per provider so ACLs can confine each to its own."""
    if not re.match(PROVIDER_ID_PATTERN, provider_id):
        raise ValueError(f"invalid provider id {provider_id!r}")
    return TopicSpec(
        CAPACITY_REQUESTS_TEMPLATE.format(provider_id=provider_id),
        CapacityRequested,
        "provider_id",
        f"Capacity requests for provider {provider_id}.",
        partitions=1,
        is_input=False,
    )


def dead_letter_spec(spec: TopicSpec) -> TopicSpec:
    """The dead-letter topic of ``spec``: keeps refused inputs a long time (30 days)."""
    return TopicSpec(
        spec.dead_letter,
        DeadLetter,
        "original_key",
        f"Refused messages of {spec.name}, with the reason.",
        partitions=1,
        max_event_bytes=2 * spec.max_event_bytes + 64 * 1024,
        is_input=False,
        configs={"retention.ms": str(30 * 24 * 3600 * 1000)},
    )


def validate_prefix(prefix: str) -> str:
    """A deployment prefix is empty or dot-terminated segments (``acme.prod.``)."""
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"topic prefix {prefix!r} must be empty or like 'acme.prod.'")
    return prefix


def logical_name(prefix: str, physical: str) -> str:
    """Strip the deployment prefix from a physical topic name."""
    if prefix and not physical.startswith(prefix):
        raise ValueError(f"topic {physical!r} does not carry prefix {prefix!r}")
    return physical[len(prefix) :]


def spec_for(logical: str) -> TopicSpec:
    """The spec of a logical topic name, including per-provider and dead-letter topics."""
    if logical in TOPICS_BY_NAME:
        return TOPICS_BY_NAME[logical]
    if logical.endswith(DEAD_LETTER_SUFFIX):
        return dead_letter_spec(spec_for(logical[: -len(DEAD_LETTER_SUFFIX)]))
    match = re.fullmatch(r"providers\.(.+)\.capacity-requests", logical)
    if match and re.match(PROVIDER_ID_PATTERN, match.group(1)):
        return capacity_requests_spec(match.group(1))
    raise KeyError(f"unknown topic {logical!r}")


def topic_for(event: Event) -> str:
    """The logical topic an event belongs on."""
    if isinstance(event, CapacityRequested):
        return capacity_requests_spec(event.provider_id).name
    if isinstance(event, DeadLetter):
        return event.original_topic + DEAD_LETTER_SUFFIX
    return type(event).topic
