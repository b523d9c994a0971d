"""The reorder buffer: accepted events wait here until the frontier makes them final.

Why: input reaches a domain as an interleaving of many partitions, cut into batches by Kafka
fetches, so arrival order is not reproducible. Events are therefore applied in a canonical
order instead — by **release time** (event time + the lateness of the event's kind: the
watermark at which no earlier-placed event can still arrive), then kind rank, event type, key,
event id and finally the input coordinates — once the watermark has passed their release time.

A binary heap keeps push and pop at O(log n); the buffer only ever holds about one lateness
worth of events. Release times are integer microseconds since the Unix epoch: cheaper to
compare than aware datetimes, and exact (event times carry at most microseconds).
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

from schemas import (
    EVENT_TYPES,
    CapacityResponded,
    Event,
    ProjectDemandChanged,
    ProviderContractUpdated,
    QueueDefined,
    TeamCapacityUpdated,
    TicketVolumeObserved,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

#: Order of kinds released at the same instant: catalogue first (a queue defined at the same
#: moment as its first report must exist when the report is applied), then demand, then
#: provider responses.
KIND_RANK: dict[type[Event], int] = {
    QueueDefined: 0,
    TeamCapacityUpdated: 0,
    ProviderContractUpdated: 0,
    ProjectDemandChanged: 0,
    TicketVolumeObserved: 1,
    CapacityResponded: 2,
}


_VOLUME_RANK = KIND_RANK[TicketVolumeObserved]
_VOLUME_TYPE = TicketVolumeObserved.event_type


class Inbound(NamedTuple):
    """One validated input and where it came from (for dead letters and plan watermarks)."""

    event: Event
    topic: str
    partition: int
    offset: int


class InboundLike(Protocol):
    """Anything shaped like :class:`Inbound` (the shell's own hand-over tuple works too)."""

    @property
    def event(self) -> Event: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch (exact)."""
    return (moment - EPOCH) // _MICROSECOND


def from_us(value: int) -> datetime:
    """Inverse of :func:`to_us`, in UTC."""
    return EPOCH + timedelta(microseconds=value)


_Entry = tuple[int, int, str, str, str, str, int, int, InboundLike]


class ReorderBuffer:
    """Accepted, not yet applied events in canonical order (see the module docstring)."""

    __slots__ = ("_heap", "_json")

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._json: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: InboundLike, release_us: int) -> None:
        event = item.event
        heapq.heappush(
            self._heap,
            (
                release_us,
                KIND_RANK[type(event)],
                type(event).event_type,
                event.key,
                event.id,
                item.topic,
                item.partition,
                item.offset,
                item,
            ),
        )

    def push_volume(self, item: InboundLike, event: TicketVolumeObserved, release_us: int) -> None:
        """:meth:`push` of a ticket volume (``event`` is ``item.event``): the same entry."""
        heapq.heappush(
            self._heap,
            (
                release_us,
                _VOLUME_RANK,
                _VOLUME_TYPE,
                event.queue_id,
                event.id,
                item.topic,
                item.partition,
                item.offset,
                item,
            ),
        )

    def peek(self) -> InboundLike:
        """The next event (the buffer must not be empty)."""
        return self._heap[0][-1]

    def top(self) -> int | None:
        """Release time (µs) of the next event, or None when empty."""
        return self._heap[0][0] if self._heap else None

    def pop(self) -> InboundLike:
        item = heapq.heappop(self._heap)[-1]
        self._json.pop(item.event.id, None)
        return item

    def take(self, release_us: int) -> list[InboundLike]:
        """Pop every event released at or before ``release_us``, in order."""
        heap = self._heap
        out: list[InboundLike] = []
        while heap and heap[0][0] <= release_us:
            out.append(heapq.heappop(heap)[-1])
        if self._json:
            for item in out:
                self._json.pop(item.event.id, None)
        return out

    def to_json(self) -> list[list[Any]]:
        """Entries in canonical order (a sorted list is a valid heap), events in wire JSON."""
        out: list[list[Any]] = []
        for entry in sorted(self._heap, key=lambda e: e[:-1]):
            item = entry[-1]
            cached = self._json.get(item.event.id)
            if cached is None:
                event = item.event
                cached = [type(event).event_type, event.model_dump(mode="json")]
                self._json[event.id] = cached
            out.append([entry[0], item.topic, item.partition, item.offset, *cached])
        return out

    @classmethod
    def from_json(cls, data: list[list[Any]]) -> ReorderBuffer:
        """Rebuild; items come back as :class:`Inbound` (the shell's own type is not kept)."""
        buffer = cls()
        for release, topic, partition, offset, event_type, raw in data:
            event = EVENT_TYPES[event_type].model_validate(raw)
            buffer.push(Inbound(event, str(topic), int(partition), int(offset)), int(release))
            buffer._json[event.id] = [event_type, raw]
        return buffer
