"""The batched ingest stage: validate input partitions in bulk, dead-letter, forward by domain.

This runs inside the worker process next to the Faust app but with its own aiokafka consumer
group, because a Faust agent pays per-event overhead that caps it far below the rates replays and
back-fills need. Three things make it both fast and correct:

* **Batches.** Each fetch is validated per partition in one call
  (:func:`services.kafka.decode_records`), forwarded as few large messages per domain
  (:mod:`services.worker.inbound`), and counted in metrics once per batch, never per event.
* **Event-time alignment across partitions.** A domain's watermark is the newest event time it
  has seen, and events more than the allowed lateness behind it are refused as late. A consumer
  hands out whole partitions at a time when it is behind (a back-fill or a replay: one fetch can
  hold a partition's whole history), so forwarding in fetch order would make the domain see
  partition 0's last week before partition 1's first day — and refuse most of partition 1.
  :class:`Aligner` holds each partition's events until every partition that may still deliver
  older ones has caught up to them (a k-way merge by event time across partitions, like Kafka
  Streams' task idling), pausing partitions that run ahead so memory stays bounded. Live, every
  partition is at its end and nothing waits.
* **Pipelining with at-least-once.** Forwarding does not wait for the broker's acks before the
  next fetch; offsets are committed, in fetch order, only once the forwarded messages and dead
  letters up to them are acknowledged — and only up to the first event still held by the
  aligner. A crash re-reads (the domain agent drops repeats by event id), never loses.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar, cast

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from prometheus_client import Gauge

from schemas import TicketVolumeObserved
from schemas.topics import INPUT_TOPICS, logical_name, spec_for
from services.config import Settings
from services.kafka import Delivered, consumer_lag, dead_letter_record, decode_records
from services.metrics import EVENTS_DEAD_LETTERED, EVENTS_IN, INGEST_LAG, REGISTRY
from services.worker.heartbeat import HeartbeatEmitter
from services.worker.inbound import INTERNAL_TOPIC, Inbound, encode_rows, row
from services.worker.volumes import volume_row

if TYPE_CHECKING:
    from services.worker.ingest_process import IngestChild

log = structlog.get_logger(__name__)

#: Wall-clock start of the stage's work: a benchmark measures rates from here, not from the
#: process start (Faust's start-up is not ingest time).
INGEST_FIRST_FETCH = Gauge(
    "flexforce_ingest_first_fetch_timestamp_seconds",
    "Unix time of the ingest stage's first non-empty fetch (0 until then).",
    registry=REGISTRY,
)
INGEST_HELD = Gauge(
    "flexforce_ingest_held_events",
    "Valid events held back to align partitions in event time (behind a slower partition).",
    registry=REGISTRY,
)

#: Records per fetch: large enough that per-batch costs vanish, small enough that one batch's
#: validation does not stall the event loop (heartbeats, the web views) for long.
MAX_RECORDS = 10_000
#: Bytes per partition per fetch (compressed). The service default (16 MB) lets one fetch
#: return a partition's whole history while the others wait; a little (the broker still sends
#: at least one whole producer batch) keeps partitions in step, which the aligner needs.
PARTITION_FETCH_BYTES = 128 * 1024
FETCH_BYTES = 8 * 1024 * 1024
#: How long the broker may hold a fetch with nothing new (aiokafka's default is 500 ms). A
#: partition with fetched records still waiting is left out of the next fetch request; if that
#: request has only idle partitions, the partition is not fetched again until it returns (see
#: services/worker/faust_tuning.py): a short wait keeps a live event's path short.
FETCH_MAX_WAIT_MS = 50
#: A partition holding more than this many events is paused until the others catch up. Held
#: events are validated models (~1-2 kB each): at 10,000 the ingest process peaked at ~250 MB
#: in bench/pipeline.py, at 2,000 (and 10,000 records a fetch) at ~190 MB, no slower.
PAUSE_ABOVE = 2_000
#: Forwarded batches whose acks are still outstanding before the loop waits for the oldest.
MAX_IN_FLIGHT = 4
#: When fetches come back empty for this long while some partition still claims to be behind,
#: held events are released anyway (its end may be unreachable, e.g. behind another producer's
#: open transaction). Measured on empty fetches, not wall time: a busy loop is not a stall.
STALL_S = 3.0


class _HasTime(Protocol):
    @property
    def time(self) -> datetime: ...


class Timed(Protocol):
    """What the aligner needs of an item: its event time and its offset."""

    @property
    def event(self) -> _HasTime: ...

    @property
    def offset(self) -> int: ...


T = TypeVar("T", bound=Timed)


@dataclass
class _Partition(Generic[T]):
    """One input partition's held events and how far it was read."""

    held: deque[T] = field(default_factory=deque)
    #: Newest event time read from this partition (None before the first valid event).
    frontier: datetime | None = None
    #: Offset after the last record read (valid or not).
    next_offset: int | None = None


#: Events per internal message, and its size bound. The domain agent stores the domain's whole
#: state (~0.3 MB of JSON) once per internal message: when that took 20-50 ms, 5,000 events a
#: message cost 4-10 µs per event and messages held 20,000. With orjson it is ~4 ms, and large
#: messages mostly keep more decoded events alive at once. Measured in bench/pipeline.py
#: (A/B, three runs each): 20,000 a message 55-61k events/s, main process 168-173 MB;
#: 5,000 55-58k, 146-151 MB; 8,000 (59-61k, 156-157 MB in two runs) is kept.
MESSAGE_ITEMS = 8_000
MESSAGE_BYTES = 1536 * 1024


def encode_chunks(
    rows: Sequence[list[Any]], max_items: int = MESSAGE_ITEMS, max_bytes: int = MESSAGE_BYTES
) -> Iterator[bytes]:
    """One domain's released rows as internal messages (order kept), each at most
    ``max_items`` events and ``max_bytes`` bytes (halved until it fits; one event always fits:
    inputs are at most 256 KiB)."""
    for start in range(0, len(rows), max_items):
        yield from _bounded(rows[start : start + max_items], max_bytes)


def _bounded(rows: Sequence[list[Any]], max_bytes: int) -> Iterator[bytes]:
    value = encode_rows(rows)
    if len(value) <= max_bytes or len(rows) == 1:
        yield value
        return
    half = len(rows) // 2
    yield from _bounded(rows[:half], max_bytes)
    yield from _bounded(rows[half:], max_bytes)


class Stamp(NamedTuple):
    """The two things the stage still needs of a validated event once it is a row."""

    time: datetime
    domain: str


class Held(NamedTuple):
    """A validated event as the stage holds it until release: event time, domain, its row of
    the internal message and its offset. The validated model itself (~2.8 kB with its strings
    and datetimes; ~90 MB of the stage's peak in bench/pipeline.py with 30k events held) is
    dropped at once; a row is a fraction of that."""

    event: Stamp
    row: list[Any]
    offset: int


class Aligner(Generic[T]):
    """Releases events across partitions in event-time order (see the module docstring).

    Pure bookkeeping, no I/O: the stage tells it what was read and which partitions may still
    deliver older events; it answers what may go now and which offsets are safe to commit.
    """

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition[T]] = {}

    def add(self, tp: TopicPartition, last_offset: int, delivered: Iterable[T]) -> None:
        """Record a partition's fetched records (valid ones held, in offset order)."""
        part: _Partition[T] = self._parts.setdefault(tp, _Partition())
        held = part.held
        frontier = part.frontier
        for item in delivered:
            held.append(item)
            moment = item.event.time
            if frontier is None or moment > frontier:
                frontier = moment
        part.frontier = frontier
        part.next_offset = last_offset + 1

    def release(self, behind: Iterable[TopicPartition]) -> list[T]:
        """Events that no partition in ``behind`` (not yet read to its end) can precede.

        The bound is the oldest frontier among those partitions: anything at or before it is
        final in event time. A partition behind but not read at all yet bounds everything.
        Each partition releases a prefix (offset order), so commits stay contiguous.
        """
        bound: datetime | None = None
        for tp in behind:
            part = self._parts.get(tp)
            if part is None or part.frontier is None:
                return []
            if bound is None or part.frontier < bound:
                bound = part.frontier
        out: list[T] = []
        for part in self._parts.values():
            held = part.held
            if not held:
                continue
            if bound is None or held[-1].event.time <= bound:
                out.extend(held)
                held.clear()
                continue
            while held and held[0].event.time <= bound:
                out.append(held.popleft())
        # Stable: equal times keep partition order. Runs are sorted already (cheap Timsort).
        out.sort(key=_event_time)
        return out

    def held(self, tp: TopicPartition) -> int:
        part = self._parts.get(tp)
        return 0 if part is None else len(part.held)

    def total_held(self) -> int:
        return sum(len(part.held) for part in self._parts.values())

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition, the offset up to which every record was forwarded or dead-lettered."""
        offsets: dict[TopicPartition, int] = {}
        for tp, part in self._parts.items():
            if part.held:
                offsets[tp] = part.held[0].offset
            elif part.next_offset is not None:
                offsets[tp] = part.next_offset
        return offsets

    def forget(self, partitions: Iterable[TopicPartition]) -> int:
        """Drop revoked partitions (their new owner re-reads what was not committed)."""
        dropped = 0
        for tp in partitions:
            part = self._parts.pop(tp, None)
            if part is not None:
                dropped += len(part.held)
        return dropped


def _event_time(item: Timed) -> datetime:
    return item.event.time


def _offset(item: Held) -> int:
    return item.offset


def _fast_volumes(
    records: list[ConsumerRecord[bytes, bytes]], prefix: str
) -> tuple[list[Held], list[ConsumerRecord[bytes, bytes]]]:
    """Ticket volumes in the canonical wire form, straight to rows
    (:func:`services.worker.volumes.volume_row`), and the records left for the careful path
    (every record when the partition holds another topic)."""
    if not records:
        return [], records
    logical = logical_name(prefix, records[0].topic)
    spec = spec_for(logical)
    if spec.event is not TicketVolumeObserved:
        return [], records
    fast: list[Held] = []
    careful: list[ConsumerRecord[bytes, bytes]] = []
    max_bytes = spec.max_event_bytes
    for record in records:
        offset = record.offset
        got = volume_row(
            record.key, record.value, record.headers, logical, record.partition, offset, max_bytes
        )
        if got is None:
            careful.append(record)
        else:
            fast.append(Held(Stamp(got[0], got[1]), got[2], offset))
    return fast, careful


def group_by_domain(items: Sequence[Held]) -> dict[str, list[list[Any]]]:
    """Rows of released events, per planning domain, in release order."""
    grouped: dict[str, list[list[Any]]] = defaultdict(list)
    for item in items:
        grouped[item.event.domain].append(item.row)
    return grouped


@dataclass
class IngestStats:
    """Cumulative counters of one stage's loop (plain data: crosses the process boundary)."""

    forwarded: int = 0
    events_in: Counter[str] = field(default_factory=Counter)
    #: Per (topic, stage, error class).
    dead_lettered: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    lag: int | None = None
    held: int = 0
    first_fetch: float | None = None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what is acknowledged and drops held events before partitions move away."""

    def __init__(self, stage: IngestStage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._stage._drain()
        dropped = self._stage._aligner.forget(revoked)

        if dropped:
            log.info("ingest.revoked", partitions=len(revoked), held_dropped=dropped)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        return None


class IngestStage:
    """Reads every input topic, forwards valid events to ``internal.domain-inputs``."""

    def __init__(self, settings: Settings, group_id: str, *, child_process: bool = True) -> None:
        self._settings = settings
        self._group_id = group_id
        self._child_process = child_process
        self._stopping = asyncio.Event()
        self._aligner: Aligner[Held] = Aligner()
        self._heartbeat = HeartbeatEmitter(settings)  # event time for idle domains
        self._in_flight: deque[tuple[asyncio.Future[Any], dict[TopicPartition, int]]] = deque()
        self._consumer: AIOKafkaConsumer | None = None
        self._commit_lock = asyncio.Lock()
        self._first_fetch = False
        self._child: IngestChild | None = None
        self.ready = asyncio.Event()
        self.forwarded = 0
        self.dead_lettered = 0
        #: What the loop counted (a child process reports these to the worker's metrics).
        self.stats = IngestStats()

    def stop(self) -> None:
        self._stopping.set()
        if self._child is not None:
            self._child.stop()

    async def run(self) -> None:
        """Consume until :meth:`stop`; offsets commit only after their forwards are acked.

        By default in a child process (:mod:`services.worker.ingest_process`): validation,
        alignment and forwarding then run on another core than the domain agent, and this
        only mirrors the child's counters (``ready``, ``forwarded``, metrics). Raises when the
        child dies, so the worker's supervisor starts a new one.
        """
        if self._child_process:
            from services.worker.ingest_process import IngestChild

            self._child = IngestChild(self._settings, self._group_id, self)
            try:
                if not self._stopping.is_set():
                    await self._child.run()
            finally:
                self._child = None
            return
        await self.run_here()

    async def run_here(self) -> None:
        """:meth:`run` in this process and event loop."""
        settings = self._settings
        topics = [settings.topic(spec.name) for spec in INPUT_TOPICS]
        options = settings.consumer_options(self._group_id) | {
            "max_partition_fetch_bytes": PARTITION_FETCH_BYTES,
            "fetch_max_bytes": FETCH_BYTES,
            "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        }
        consumer = AIOKafkaConsumer(**options)
        # Uncompressed: the internal topic is written and read by the worker fleet itself, the
        # compact rows are half the size already, and aiokafka's gzip (always level 9) cost ~11 %
        # of the worker's CPU under ingest load (py-spy). Dead letters are few.
        producer = AIOKafkaProducer(**settings.producer_options() | {"compression_type": None})
        self._consumer = consumer
        await producer.start()
        try:
            consumer.subscribe(topics, listener=_Rebalance(self))
            await consumer.start()
            try:
                self.ready.set()
                log.info("ingest.started", group=self._group_id)
                await self._loop(consumer, producer)
                await self._drain()
            finally:
                await consumer.stop()
        finally:
            await producer.stop()
        log.info("ingest.stopped", forwarded=self.forwarded, dead_lettered=self.dead_lettered)

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        prefix = self._settings.topic_prefix
        idle_since: float | None = None
        while not self._stopping.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=MAX_RECORDS)
            acks: list[asyncio.Future[Any]] = []
            valid: Counter[str] = Counter()
            for tp, records in fetched.items():
                delivered = await self._decode(records, prefix, producer, acks, valid)
                self._aligner.add(tp, records[-1].offset, delivered)
            if fetched and not self._first_fetch:
                self._first_fetch = True
                self.stats.first_fetch = time.time()
                INGEST_FIRST_FETCH.set(self.stats.first_fetch)
            held_before = self._aligner.total_held()
            behind = await self._behind(consumer)
            now = time.monotonic()
            if fetched or not held_before:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since > STALL_S and behind:
                # Nothing arrives, yet some partition claims to be behind: its end cannot be
                # reached (e.g. another producer's open transaction). Do not hold the rest.
                log.warning("ingest.partitions_stalled", partitions=[str(tp) for tp in behind])
                behind = []
            released = self._aligner.release(behind)
            self.stats.held = self._aligner.total_held()
            INGEST_HELD.set(self.stats.held)
            self._pace(consumer)
            acks += await self._forward(producer, released)
            # it reads item.event.time only, which a Held has
            self._heartbeat.released(cast("Sequence[Delivered]", released))
            inputs = [self._settings.topic(spec.name) for spec in INPUT_TOPICS]
            await self._heartbeat.maybe_send(producer, consumer, behind, inputs, acks)
            for event_type, count in valid.items():
                EVENTS_IN.labels(event_type).inc(count)
            self.stats.events_in.update(valid)
            if acks or fetched:
                self._in_flight.append((asyncio.gather(*acks), self._aligner.committable()))
            await self._commit_done(block=len(self._in_flight) > MAX_IN_FLIGHT)
            if not fetched and not held_before:
                lags = await consumer_lag(consumer)
                self.stats.lag = sum(max(0, lag) for lag in lags.values())
                INGEST_LAG.set(self.stats.lag)

    async def _decode(
        self,
        records: list[ConsumerRecord[bytes, bytes]],
        prefix: str,
        producer: AIOKafkaProducer,
        acks: list[asyncio.Future[Any]],
        valid: Counter[str],
    ) -> list[Held]:
        """Validate one partition's records, keep the valid ones as rows of the internal
        message (:class:`Held`); dead-letter the refused ones (acks collected)."""
        delivered: list[Held] = []
        event_type = ""
        fast, careful = _fast_volumes(records, prefix)
        if fast:
            event_type = TicketVolumeObserved.event_type
            if not careful:  # the usual case: every record in the canonical form
                delivered = fast
                valid[event_type] += len(delivered)
                return delivered
        for outcome in decode_records(careful, prefix):
            if isinstance(outcome, Delivered):
                event = outcome.event
                event_type = type(event).event_type
                item = Inbound(event, outcome.topic, outcome.partition, outcome.offset)
                delivered.append(Held(Stamp(event.time, event.domain), row(item), item.offset))
                continue
            topic, key, value, headers = dead_letter_record(outcome.letter)
            acks.append(
                await producer.send(
                    self._settings.topic(topic), value=value, key=key, headers=headers
                )
            )
            letter = outcome.letter
            labels = (letter.original_topic, letter.stage.value, letter.error_class)
            EVENTS_DEAD_LETTERED.labels(*labels).inc()
            self.stats.dead_lettered[labels] += 1
            self.dead_lettered += 1
            log.warning(
                "event.dead_lettered",
                topic=letter.original_topic,
                offset=letter.offset,
                error_class=letter.error_class,
                reason=letter.reason,
            )
        if fast:  # in offset order, as the aligner holds them
            delivered = sorted([*fast, *delivered], key=_offset)
        if delivered:  # a partition holds one topic: one event type
            valid[event_type] += len(delivered)
        return delivered

    async def _forward(
        self, producer: AIOKafkaProducer, released: Sequence[Held]
    ) -> list[asyncio.Future[Any]]:
        """Queue released events as internal messages, one domain at a time, in order."""
        acks: list[asyncio.Future[Any]] = []
        topic = self._settings.topic(INTERNAL_TOPIC)
        for domain, rows in sorted(group_by_domain(released).items()):
            key = domain.encode()
            for value in encode_chunks(rows):
                acks.append(await producer.send(topic, value=value, key=key))
        self.forwarded += len(released)
        self.stats.forwarded = self.forwarded
        return acks

    async def _behind(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """Assigned partitions not yet read to their end: they may still deliver older events."""
        behind = []
        committed_only = not self._settings.embedded
        for tp in consumer.assignment():
            end = consumer.last_stable_offset(tp) if committed_only else consumer.highwater(tp)
            if end is None or await consumer.position(tp) < end:
                behind.append(tp)
        return behind

    def _pace(self, consumer: AIOKafkaConsumer) -> None:
        """Pause partitions that hold many events (they are ahead); resume the others."""
        paused = consumer.paused()
        for tp in consumer.assignment():
            ahead = self._aligner.held(tp) > PAUSE_ABOVE
            if ahead and tp not in paused:
                consumer.pause(tp)
            elif not ahead and tp in paused:
                consumer.resume(tp)

    async def _commit_done(self, block: bool) -> None:
        """Commit, in order, the offsets of every batch whose acks are all in.

        Locked: the rebalance listener drains concurrently with the loop, and two interleaved
        commits could otherwise move a partition's committed offset backwards.
        """
        async with self._commit_lock:
            offsets: dict[TopicPartition, int] = {}
            while self._in_flight and (block or self._in_flight[0][0].done()):
                future, batch_offsets = self._in_flight[0]
                await future  # raises if the broker refused: the stage fails, nothing commits
                self._in_flight.popleft()
                offsets.update(batch_offsets)
                block = False
            if offsets and self._consumer is not None:
                assigned = self._consumer.assignment()
                offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
                if offsets:
                    await self._consumer.commit(offsets)

    async def _drain(self) -> None:
        """Wait for every outstanding ack and commit (before stopping or a rebalance)."""
        while self._in_flight:
            await self._commit_done(block=True)
