"""The internal hand-over format from the batched ingest stage to the domain agent.

One Kafka message on ``internal.domain-inputs`` carries many validated events of one planning
domain, in input order, each with the topic, partition and offset it came from (the plan's input
watermark and the dead letters of late events need them). Events are already validated, so the
domain agent rebuilds them without the strict wire checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from schemas import EVENT_TYPES, Event

INTERNAL_TOPIC = "internal.domain-inputs"
FORMAT_VERSION = 1
#: Events per internal message: keeps messages well under Kafka's default 1 MB record limit.
MAX_ITEMS_PER_MESSAGE = 1500


class Inbound(NamedTuple):
    """A validated input event and where it was read."""

    event: Event
    topic: str
    partition: int
    offset: int


def encode_batch(items: Sequence[Inbound]) -> bytes:
    """Serialise a batch of one domain's events (JSON, envelope attributes included)."""
    rows = [
        [
            item.topic,
            item.partition,
            item.offset,
            type(item.event).event_type,
            item.event.model_dump(mode="json"),
        ]
        for item in items
    ]
    return json.dumps({"v": FORMAT_VERSION, "items": rows}, separators=(",", ":")).encode()


def decode_batch(value: bytes) -> list[Inbound]:
    """Rebuild the events of an internal message (trusted: validated at ingest)."""
    body: dict[str, Any] = json.loads(value)
    if body.get("v") != FORMAT_VERSION:
        raise ValueError(f"internal batch format {body.get('v')!r} is not {FORMAT_VERSION}")
    return [
        Inbound(EVENT_TYPES[event_type].model_validate(data), topic, partition, offset)
        for topic, partition, offset, event_type, data in body["items"]
    ]


def chunks(
    items: Sequence[Inbound], size: int = MAX_ITEMS_PER_MESSAGE
) -> Iterator[Sequence[Inbound]]:
    """Split a domain's batch into messages of bounded size, keeping order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
