"""Typed Kafka plumbing over aiokafka: create topics, publish events, read and dead-letter records.

Everything here is thin: encoding rules live in :mod:`schemas.wire`, topic rules in
:mod:`schemas.topics`. What this module adds is the I/O and one promise — a record that cannot be
used is written, whole, to its dead-letter topic before its offset is committed, so bad input is
never lost and never crashes a reader.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import IllegalStateError, TopicAlreadyExistsError

from schemas import DeadLetter, DeadLetterHeader, DeadLetterStage, Event
from schemas.topics import (
    ALL_TOPICS,
    INPUT_TOPICS,
    TopicSpec,
    capacity_requests_spec,
    dead_letter_spec,
    logical_name,
    spec_for,
    topic_for,
)
from schemas.wire import InvalidEvent, decode_many, encode
from services.config import Settings

log = structlog.get_logger(__name__)

DEAD_LETTER_SOURCE = "urn:flexforce:dead-letter"


def deployment_topics(provider_ids: Iterable[str] = ()) -> list[TopicSpec]:
    """Every topic a deployment needs: the table, per-provider requests and all dead letters."""
    specs = list(ALL_TOPICS) + [capacity_requests_spec(p) for p in sorted(set(provider_ids))]
    return specs + [dead_letter_spec(spec) for spec in specs]


async def ensure_topics(
    settings: Settings, specs: Sequence[TopicSpec], *, partitions: int | None = None
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); return the names created.

    ``partitions`` overrides the table's partition counts (the embedded broker and tests want
    fewer); replication is 1 on a single broker and the cluster default elsewhere.
    """
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        brokers = len((await admin.describe_cluster())["brokers"])
        wanted = [
            NewTopic(
                name=settings.topic(spec.name),
                num_partitions=partitions or spec.partitions,
                replication_factor=min(3, brokers),
                topic_configs={} if settings.embedded else spec.kafka_configs(),
            )
            for spec in specs
            if settings.topic(spec.name) not in existing
        ]
        if wanted:
            # Another process may win the race; the topics then exist, which is all we need.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
        created = [topic.name for topic in wanted]
        if created:
            log.info("topics.created", count=len(created), topics=created)
        return created
    finally:
        await admin.close()


class EventPublisher:
    """Publishes flexforce events to their topics (idempotent producer on Apache Kafka)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(**settings.producer_options())

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> EventPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def publish(self, event: Event) -> None:
        """Send one event and wait until the broker has it."""
        await (await self.enqueue(event))

    async def enqueue(self, event: Event) -> asyncio.Future[Any]:
        """Queue one event for sending; await the returned future for the broker's ack."""
        message = encode(event)
        spec = spec_for(topic_for(event))
        if len(message.value) > spec.max_event_bytes:
            raise ValueError(
                f"{type(event).__name__} is {len(message.value)} bytes, over the "
                f"{spec.max_event_bytes}-byte limit of {spec.name}"
            )
        return await self.send_raw(
            topic_for(event), message.key, message.value, list(message.headers)
        )

    async def publish_many(self, events: Iterable[Event]) -> int:
        """Send events in order, batched by the producer; returns how many were acknowledged."""
        futures = [await self.enqueue(event) for event in events]
        await asyncio.gather(*futures)
        return len(futures)

    async def send_raw(
        self,
        logical_topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> asyncio.Future[Any]:
        """Queue a record as given (no validation) — for dead letters and for testing refusal."""
        ack: asyncio.Future[Any] = await self._producer.send(
            self._settings.topic(logical_topic), value=value, key=key, headers=headers
        )
        return ack


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def dead_letter_for(
    record: ConsumerRecord[bytes, bytes],
    logical_topic: str,
    refusal: InvalidEvent,
    stage: DeadLetterStage = DeadLetterStage.VALIDATE,
) -> DeadLetter:
    """The dead letter for a refused record: original bytes and headers kept, reason attached.

    Its id is derived from topic, partition and offset, so re-processing the same record after a
    crash writes the same dead letter, which consumers drop as a duplicate.
    """
    moment = datetime.fromtimestamp(record.timestamp / 1000, tz=UTC)
    key = record.key or b""
    return DeadLetter(
        id=f"dlq:{logical_topic}:{record.partition}:{record.offset}",
        source=DEAD_LETTER_SOURCE,
        time=moment,
        domain=refusal.domain or "unknown",
        original_topic=logical_topic,
        partition=record.partition,
        offset=record.offset,
        original_key=key.decode("utf-8", errors="replace"),
        original_key_b64=_b64(record.key),
        original_value_b64=_b64(record.value),
        original_headers=[
            DeadLetterHeader(key=name, value_b64=_b64(value)) for name, value in record.headers
        ],
        original_timestamp_ms=record.timestamp,
        stage=stage,
        error_class=refusal.error_class,
        reason=refusal.reason,
    )


def dead_letter_record(letter: DeadLetter) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """Topic, key, value and headers of a dead letter: keyed by the *original* key bytes."""
    message = encode(letter)
    key = base64.b64decode(letter.original_key_b64) if letter.original_key_b64 else b""
    return topic_for(letter), key, message.value, list(message.headers)


@dataclass(frozen=True, slots=True)
class Refused:
    """A record that was dead-lettered instead of delivered."""

    letter: DeadLetter


@dataclass(frozen=True, slots=True)
class Delivered:
    """A valid event with where it came from (for watermarks and replay)."""

    event: Event
    topic: str
    partition: int
    offset: int


def decode_record(record: ConsumerRecord[bytes, bytes], prefix: str) -> Delivered | Refused:
    """Validate one consumed record against the contract of the topic it came from."""
    return decode_records([record], prefix)[0]


def decode_records(
    records: Sequence[ConsumerRecord[bytes, bytes]], prefix: str
) -> list[Delivered | Refused]:
    """Validate records of one topic partition in one go (the batched hot path)."""
    if not records:
        return []
    logical = logical_name(prefix, records[0].topic)
    spec = spec_for(logical)
    verdicts = decode_many(
        [(r.key, r.value, r.headers) for r in records],
        spec.event,
        max_bytes=spec.max_event_bytes,
    )
    return [
        Refused(dead_letter_for(record, logical, verdict))
        if isinstance(verdict, InvalidEvent)
        else Delivered(verdict, logical, record.partition, record.offset)
        for record, verdict in zip(records, verdicts, strict=True)
    ]


class ValidatingReader:
    """Reads input topics, yields valid events and dead-letters the rest, losing nothing.

    Offsets are committed only after the events of a batch were handed out and every dead letter
    of the batch is acknowledged by the broker, so a crash re-reads rather than drops.
    """

    def __init__(
        self,
        settings: Settings,
        group_id: str | None,
        specs: Sequence[TopicSpec] = INPUT_TOPICS,
        publisher: EventPublisher | None = None,
    ) -> None:
        self._settings = settings
        self._topics = [settings.topic(spec.name) for spec in specs]
        self._consumer = AIOKafkaConsumer(*self._topics, **settings.consumer_options(group_id))
        self._publisher = publisher or EventPublisher(settings)
        self._owns_publisher = publisher is None
        self._uncommitted: dict[TopicPartition, int] = {}
        self.delivered = 0
        self.refused = 0

    async def start(self) -> None:
        if self._owns_publisher:
            await self._publisher.start()
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()
        if self._owns_publisher:
            await self._publisher.stop()

    async def __aenter__(self) -> ValidatingReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def batches(
        self, timeout_ms: int = 500, max_records: int = 5000
    ) -> AsyncIterator[list[Delivered | Refused]]:
        """Yield each fetched batch, decoded in offset order, its dead letters already written.

        The batch's offsets are committed when the caller asks for the next one (or calls
        :meth:`commit`), i.e. after the caller has processed it.
        """
        while True:
            fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            outcomes: list[Delivered | Refused] = []
            acks: list[asyncio.Future[Any]] = []
            for records in fetched.values():
                for outcome in decode_records(records, self._settings.topic_prefix):
                    outcomes.append(outcome)
                    if isinstance(outcome, Refused):
                        topic, key, value, headers = dead_letter_record(outcome.letter)
                        acks.append(await self._publisher.send_raw(topic, key, value, headers))
                        log.warning(
                            "event.dead_lettered",
                            topic=outcome.letter.original_topic,
                            offset=outcome.letter.offset,
                            error_class=outcome.letter.error_class,
                            reason=outcome.letter.reason,
                        )
            await asyncio.gather(*acks)
            self.refused += len(acks)
            self.delivered += len(outcomes) - len(acks)
            for tp, records in fetched.items():
                self._uncommitted[tp] = records[-1].offset + 1
            yield outcomes
            await self.commit()

    async def commit(self) -> None:
        """Commit what has been handed out so far (also done when the next batch is asked for).

        Call it before leaving a ``batches()`` loop early; what is not committed is read again
        by the next reader of the group — at least once, never lost.
        """
        if self._uncommitted:
            await self._consumer.commit(dict(self._uncommitted))
            self._uncommitted.clear()

    async def lag(self) -> dict[TopicPartition, int]:
        """Records between this reader's position and the end of each assigned partition."""
        return await consumer_lag(self._consumer)


async def consumer_lag(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    """Records between a consumer's position and the end of each partition it holds."""
    assigned = list(consumer.assignment())
    if not assigned:
        return {}
    ends = await consumer.end_offsets(assigned)
    lags: dict[TopicPartition, int] = {}
    for tp in assigned:
        # A rebalance may revoke a partition between the calls above and here (another worker
        # joined or died); skip it rather than crash the reader, and with it the worker.
        try:
            lags[tp] = ends[tp] - await consumer.position(tp)
        except IllegalStateError:
            continue
    return lags


async def read_topic(
    settings: Settings,
    logical_topic: str,
    *,
    idle_timeout_s: float = 2.0,
    limit: int | None = None,
) -> AsyncIterator[tuple[ConsumerRecord[bytes, bytes], Delivered | Refused]]:
    """Read a topic from the beginning without a consumer group (for ``tail`` and tests).

    Stops after ``idle_timeout_s`` without new records, or after ``limit`` records.
    """
    consumer = AIOKafkaConsumer(
        settings.topic(logical_topic), **settings.consumer_options(group_id=None)
    )
    await consumer.start()
    seen = 0
    try:
        while limit is None or seen < limit:
            fetched = await consumer.getmany(timeout_ms=int(idle_timeout_s * 1000))
            if not fetched:
                return
            for records in fetched.values():
                for record in records:
                    yield record, decode_record(record, settings.topic_prefix)
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
    finally:
        await consumer.stop()
