"""Every event type through a real broker: valid ones arrive intact, invalid ones are
dead-lettered with their reason and their original bytes, and nothing is lost."""

from __future__ import annotations

import base64
import json

import pytest

from schemas import DeadLetter, Event
from schemas.topics import spec_for, topic_for
from schemas.wire import encode
from services.config import ClientProfile, Settings
from services.kafka import (
    Delivered,
    EventPublisher,
    Refused,
    ValidatingReader,
    deployment_topics,
    ensure_topics,
    read_topic,
)
from tests.samples import sample_events

pytestmark = pytest.mark.kafka


def _corruptions(event: Event) -> list[tuple[bytes, bytes, list[tuple[str, bytes]], str]]:
    """Two wrong records per topic: an unknown field, and a key that does not match."""
    message = encode(event)
    data = json.loads(message.value) | {"unexpected_field": 1}
    return [
        (message.key, json.dumps(data).encode(), list(message.headers), "ValidationError"),
        (b"not-" + message.key, message.value, list(message.headers), "KeyMismatch"),
    ]


async def _roundtrip(settings: Settings) -> None:
    events = [e for e in sample_events() if not isinstance(e, DeadLetter)]
    provider_ids = ["acme-outsourcing"]
    specs = [s for s in deployment_topics(provider_ids) if not s.name.endswith(".dlq")]
    await ensure_topics(settings, deployment_topics(provider_ids), partitions=2)

    expected_refusals: dict[tuple[str, bytes], str] = {}
    async with EventPublisher(settings) as publisher:
        await publisher.publish_many(events)
        for event in events:
            for key, value, headers, error_class in _corruptions(event):
                await (await publisher.send_raw(topic_for(event), key, value, headers))
                expected_refusals[(topic_for(event), value)] = error_class

    delivered: list[Delivered] = []
    refused: list[Refused] = []
    total = len(events) + len(expected_refusals)
    async with ValidatingReader(settings, group_id="contract-test", specs=specs) as reader:
        async for batch in reader.batches(timeout_ms=500):
            delivered += [o for o in batch if isinstance(o, Delivered)]
            refused += [o for o in batch if isinstance(o, Refused)]
            if len(delivered) + len(refused) >= total:
                break

    # Every valid event arrived exactly once, unchanged, on the topic its type belongs to.
    assert sorted(d.event.id for d in delivered) == sorted(e.id for e in events)
    by_id = {d.event.id: d for d in delivered}
    for event in events:
        assert by_id[event.id].event == event
        assert by_id[event.id].topic == topic_for(event)

    # Every wrong record was refused with the expected class and a reason.
    assert len(refused) == len(expected_refusals)
    for outcome in refused:
        letter = outcome.letter
        original = base64.b64decode(letter.original_value_b64 or "")
        assert expected_refusals[(letter.original_topic, original)] == letter.error_class
        assert letter.reason

    # ... and sits on its dead-letter topic, with the original key, value and headers.
    for spec in specs:
        on_dlq = [
            outcome
            async for _, outcome in read_topic(settings, spec.dead_letter, idle_timeout_s=1.0)
        ]
        assert len(on_dlq) == 2, spec.dead_letter
        for item in on_dlq:
            assert isinstance(item, Delivered) and isinstance(item.event, DeadLetter)
            letter = item.event
            assert letter.original_topic == spec.name
            assert spec_for(letter.original_topic) == spec
            original = base64.b64decode(letter.original_value_b64 or "")
            assert (spec.name, original) in expected_refusals
            header_names = [h.key for h in letter.original_headers]
            assert "ce_type" in header_names and "ce_id" in header_names


async def test_every_event_type_through_apache_kafka(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    await _roundtrip(Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix))


async def test_committed_offsets_mean_nothing_is_read_twice(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A second reader in the same group starts after what the first one committed."""
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    volume_spec = spec_for("ops.ticket-volume")
    await ensure_topics(settings, [volume_spec, spec_for("ops.ticket-volume.dlq")], partitions=1)
    first, second = sample_events()[1], sample_events("other-domain")[1]
    async with EventPublisher(settings) as publisher:
        await publisher.publish(first)
    seen: list[str] = []
    async with ValidatingReader(settings, "offsets-test", specs=[volume_spec]) as reader:
        async for batch in reader.batches(timeout_ms=300):
            seen += [o.event.domain for o in batch if isinstance(o, Delivered)]
            if seen:
                await reader.commit()
                break
    async with EventPublisher(settings) as publisher:
        await publisher.publish(second)
    async with ValidatingReader(settings, "offsets-test", specs=[volume_spec]) as reader:
        async for batch in reader.batches(timeout_ms=300):
            seen += [o.event.domain for o in batch if isinstance(o, Delivered)]
            if len(seen) >= 2:
                break
    assert seen == ["eu-west", "other-domain"]


@pytest.mark.embedded
async def test_contract_round_trips_through_the_embedded_broker(
    embedded_bootstrap: str, topic_prefix: str
) -> None:
    await _roundtrip(
        Settings(
            bootstrap_servers=embedded_bootstrap,
            topic_prefix=topic_prefix,
            client_profile=ClientProfile.EMBEDDED,
        )
    )
