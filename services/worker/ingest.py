"""The batched ingest stage: validate input partitions in bulk, dead-letter, forward by domain.

This runs inside the worker process next to the Faust app but with its own aiokafka consumer
group, because a Faust agent pays per-event overhead that caps it far below the rates replays and
back-fills need. Offsets are committed only after the forwarded batches and the dead letters are
acknowledged, so a crash re-reads (the domain agent drops the repeats by event id) and never
loses an input.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Sequence

import structlog

from schemas.topics import INPUT_TOPICS
from services.config import Settings
from services.kafka import Delivered, EventPublisher, Refused, ValidatingReader
from services.metrics import EVENTS_DEAD_LETTERED, EVENTS_IN, INGEST_LAG
from services.worker.inbound import INTERNAL_TOPIC, Inbound, chunks, encode_batch

log = structlog.get_logger(__name__)


def group_by_domain(batch: Sequence[Delivered | Refused]) -> dict[str, list[Inbound]]:
    """Valid events of a fetched batch, per planning domain, in input order."""
    grouped: dict[str, list[Inbound]] = defaultdict(list)
    for outcome in batch:
        if isinstance(outcome, Delivered):
            event = outcome.event
            grouped[event.domain].append(
                Inbound(event, outcome.topic, outcome.partition, outcome.offset)
            )
    return grouped


class IngestStage:
    """Reads every input topic, forwards valid events to ``internal.domain-inputs``."""

    def __init__(self, settings: Settings, group_id: str) -> None:
        self._settings = settings
        self._group_id = group_id
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.forwarded = 0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; each batch is forwarded before its offsets commit."""
        async with (
            EventPublisher(self._settings) as publisher,
            ValidatingReader(
                self._settings, self._group_id, specs=INPUT_TOPICS, publisher=publisher
            ) as reader,
        ):
            self.ready.set()
            log.info("ingest.started", group=self._group_id)
            async for batch in reader.batches(timeout_ms=200, max_records=20_000):
                await self._forward(publisher, batch)
                if self._stopping.is_set():
                    await reader.commit()
                    break
                if not batch:
                    INGEST_LAG.set(sum(max(0, lag) for lag in (await reader.lag()).values()))
        log.info("ingest.stopped", forwarded=self.forwarded)

    async def _forward(
        self, publisher: EventPublisher, batch: Sequence[Delivered | Refused]
    ) -> None:
        acks = []
        for domain, items in sorted(group_by_domain(batch).items()):
            for chunk in chunks(items):
                acks.append(
                    await publisher.send_raw(
                        INTERNAL_TOPIC, domain.encode(), encode_batch(chunk), []
                    )
                )
        await asyncio.gather(*acks)
        valid = Counter(type(o.event).event_type for o in batch if isinstance(o, Delivered))
        refused = Counter(
            (o.letter.original_topic, o.letter.stage.value, o.letter.error_class)
            for o in batch
            if isinstance(o, Refused)
        )
        for event_type, count in valid.items():
            EVENTS_IN.labels(event_type).inc(count)
        for labels, count in refused.items():
            EVENTS_DEAD_LETTERED.labels(*labels).inc(count)
        self.forwarded += sum(valid.values())
