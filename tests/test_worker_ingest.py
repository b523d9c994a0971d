"""The ingest stage's pure parts: the internal hand-over format and event-time alignment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Event, QueueDefined, TicketVolumeObserved
from schemas.ops import AnswerWithinSla
from services.kafka import Delivered
from services.worker.inbound import Inbound, decode_batch, encode_batch
from services.worker.ingest import Aligner
from tests.samples import any_event

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _volume(
    queue: str, hour: int, arrivals: int = 5, aht: float | None = 300.0
) -> TicketVolumeObserved:
    start = T0 + timedelta(hours=hour)
    return TicketVolumeObserved(
        id=f"v-{queue}-{hour}",
        source="urn:test",
        time=start + timedelta(hours=1, seconds=7),
        domain="eu",
        queue_id=queue,
        interval_start=start,
        interval_minutes=60,
        arrivals=arrivals,
        backlog=1,
        mean_handle_time_s=aht,
    )


def test_round_trip_equals_validated_events() -> None:
    queue = QueueDefined(
        id="q",
        source="urn:test",
        time=T0,
        domain="eu",
        queue_id="sd",
        skill="desk",
        sla=AnswerWithinSla(target_fraction=0.8, within_seconds=60),
        default_handle_time_s=300.0,
    )
    items = [Inbound(queue, "ops.queues", 0, 3)] + [
        Inbound(_volume("sd", h, aht=None if h == 2 else 300.0), "ops.ticket-volume", 4, 10 + h)
        for h in range(5)
    ]
    back = decode_batch(encode_batch(items))
    assert back == items
    for mine, theirs in zip(back, items, strict=True):
        assert mine.event.model_dump_json() == theirs.event.model_dump_json()
    # Volumes are rebuilt without validation: exactly what validation gives, fields-set too.
    assert (
        back[-1].event.model_fields_set
        == TicketVolumeObserved.model_validate(items[-1].event.model_dump()).model_fields_set
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(any_event, min_size=1, max_size=8))
def test_any_valid_input_crosses_the_internal_topic_unchanged(events: list[Event]) -> None:
    """The internal message (orjson) carries every valid input event exactly: same values,
    same JSON, whatever the event type."""
    items = [Inbound(e, type(e).topic, 0, n) for n, e in enumerate(events)]
    back = decode_batch(encode_batch(items))
    assert back == items
    assert [b.event.model_dump_json() for b in back] == [e.model_dump_json() for e in events]


def test_reads_the_previous_format() -> None:
    event = _volume("sd", 0)
    row = [
        "ops.ticket-volume",
        1,
        2,
        TicketVolumeObserved.event_type,
        event.model_dump(mode="json"),
    ]
    value = json.dumps({"v": 1, "items": [row]}).encode()
    assert decode_batch(value) == [Inbound(event, "ops.ticket-volume", 1, 2)]


def _delivered(tp: TopicPartition, offset: int, hour: int) -> Delivered:
    return Delivered(_volume(f"q{tp.partition}", hour), "ops.ticket-volume", tp.partition, offset)


def test_aligner_merges_partitions_in_event_time() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    aligner = Aligner()
    # Partition a's whole day arrives before partition b's first hours.
    aligner.add(a, 23, [_delivered(a, h, h) for h in range(24)])
    assert aligner.release([a, b]) == []  # b not read yet: it may hold the oldest events
    assert aligner.committable() == {a: 0}
    aligner.add(b, 5, [_delivered(b, h, h) for h in range(6)])
    released = aligner.release([a, b])  # both behind: up to b's frontier (hour 5)
    assert [d.event.time for d in released] == sorted(d.event.time for d in released)
    assert len(released) == 12
    assert aligner.held(a) == 18 and aligner.held(b) == 0
    assert aligner.committable() == {a: 6, b: 6}
    assert len(aligner.release([])) == 18  # everything read to its end: nothing waits
    assert aligner.committable() == {a: 24, b: 6}


def test_aligner_forgets_revoked_partitions() -> None:
    a = TopicPartition("t", 0)
    aligner = Aligner()
    aligner.add(a, 3, [_delivered(a, h, h) for h in range(4)])
    assert aligner.forget([a]) == 4
    assert aligner.committable() == {}
