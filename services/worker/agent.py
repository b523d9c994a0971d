"""The domain agent's shell: load a domain's state, feed the pure processor, solve, publish.

All decisions are made by :class:`services.domain.DomainProcessor` (pure); this module only
moves bytes: table in, events out, and the solver call in another process.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import faust
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TableT

from allocator import Plan, Policy
from allocator.domain import InternalCost
from schemas import (
    AllocationPlanned,
    CapacityRequested,
    DeadLetter,
    DeadLetterHeader,
    DeadLetterStage,
    Event,
    ScalingDecided,
)
from schemas.topics import capacity_requests_spec, dead_letter_spec, topic_for
from schemas.wire import encode
from services.config import Settings
from services.domain import DomainProcessor, PlannerConfig, dump_state, load_state
from services.kafka import ensure_topics
from services.metrics import (
    CAPACITY_REQUESTS,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    EVENTS_OUT,
    FALLBACKS,
    PLAN_GAP,
    PLAN_SOLVE_SECONDS,
    PLANNED_COST,
    SECURITY_EVENTS,
    UNMET_DEMAND,
    forget_domain,
)
from services.worker.heartbeat import (
    decode_heartbeat,
    encode_heartbeat,
    is_heartbeat,
    low_watermark,
    merge,
)
from services.worker.inbound import Inbound, decode_batch
from services.worker.planner import Planner

log = structlog.get_logger(__name__)


#: Fallback only (the gap could not be read directly): after a seek, internal messages past the
#: gap still buffered in the stream are skipped without seeking again for this long.
REWIND_RETRY_S = 1.0
#: How long reading a gap of the internal topic directly may go without progress before giving
#: up (then the fallback seek is used, from what was applied so far).
GAP_READ_TIMEOUT_S = 30.0


def position_key(partition: int) -> bytes:
    """The table key holding the next internal offset of ``partition`` to apply. Starts with
    NUL, so it can never be a domain (identifiers start with a letter or digit)."""
    return b"\x00next-offset:" + str(partition).encode()


def is_position_key(key: bytes) -> bool:
    """Whether a table key is one of the handler's own records (input position, domains of a
    partition, input watermarks), not a domain."""
    return key.startswith(b"\x00")


def domains_key(partition: int) -> bytes:
    """The table key listing the domains whose batches came through ``partition``."""
    return b"\x00domains:" + str(partition).encode()


def inputs_key(partition: int) -> bytes:
    """The table key holding the input partitions' event times reported by heartbeats."""
    return b"\x00inputs:" + str(partition).encode()


def planner_policy(settings: Settings) -> Policy:
    """The allocator's business policy, from the ``FLEXFORCE_POLICY_*`` settings."""
    return Policy(
        core_in_house_share=settings.policy_core_in_house_share,
        vendor_concentration_cap=settings.policy_vendor_concentration_cap,
        budget_cap=settings.policy_budget_cap,
        churn_cost_per_fte=settings.policy_churn_cost_per_fte,
        sla_penalty_per_contact=settings.policy_sla_penalty_per_contact,
        unmet_work_penalty_per_hour=settings.policy_unmet_work_penalty_per_hour,
        quality_penalty_per_fte_hour=settings.policy_quality_penalty_per_fte_hour,
        max_occupancy=settings.policy_max_occupancy,
        level_change_hours=settings.policy_level_change_hours,
        internal_cost=cast(InternalCost, settings.policy_internal_cost),
        demand_cv=settings.policy_demand_cv,
        understaffing_penalty_per_fte_hour=settings.policy_understaffing_penalty_per_fte_hour,
        request_cost_per_fte=settings.policy_request_cost_per_fte,
    )


def planner_config(settings: Settings) -> PlannerConfig:
    """The pure core's configuration, from the service settings."""
    return PlannerConfig(
        policy=planner_policy(settings),
        provider_keys=settings.provider_keys(),
        period_minutes=settings.period_minutes,
        horizon_periods=settings.horizon_periods,
        allowed_lateness_minutes=settings.allowed_lateness_minutes,
        control_lateness_minutes=settings.control_lateness_minutes,
        interval_grace_minutes=settings.interval_grace_minutes,
        min_replan_minutes=settings.min_replan_minutes,
        max_staleness_minutes=settings.max_staleness_minutes,
        service_target_margin=settings.service_target_margin,
        source=settings.source,
    )


def dead_letter_for_event(
    item: Inbound, stage: DeadLetterStage, error_class: str, reason: str
) -> DeadLetter:
    """A dead letter for an event refused after validation (late, forged): the event is kept
    in its canonical wire form, with the coordinates it was read from."""
    message = encode(item.event)
    return DeadLetter(
        id=f"dlq:{item.topic}:{item.partition}:{item.offset}",
        source="urn:flexforce:dead-letter",
        time=item.event.time,
        domain=item.event.domain,
        original_topic=item.topic,
        partition=item.partition,
        offset=item.offset,
        original_key=item.event.key,
        original_key_b64=base64.b64encode(message.key).decode(),
        original_value_b64=base64.b64encode(message.value).decode(),
        original_headers=[
            DeadLetterHeader(key=name, value_b64=base64.b64encode(value).decode())
            for name, value in message.headers
        ],
        stage=stage,
        error_class=error_class,
        reason=reason,
    )


class OutputSender:
    """Publishes decision events through Faust's producer (transactional under exactly-once)."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self._app = app
        self._settings = settings
        self._topics: dict[str, faust.TopicT] = {}
        self._provider_topics_ready: set[str] = set()

    async def _topic(self, logical: str) -> faust.TopicT:
        topic = self._topics.get(logical)
        if topic is None:
            topic = self._app.topic(self._settings.topic(logical), key_type=bytes, value_type=bytes)
            self._topics[logical] = topic
        return topic

    async def send_all(self, events: Sequence[Event]) -> None:
        """Send in order; per-provider request topics are created the first time."""
        for event in events:
            if isinstance(event, CapacityRequested):
                await self._ensure_provider_topic(event.provider_id)
            message = encode(event)
            topic = await self._topic(topic_for(event))
            await topic.send(key=message.key, value=message.value, headers=list(message.headers))
        counts = Counter(type(event).event_type for event in events)
        for event_type, count in counts.items():
            EVENTS_OUT.labels(event_type).inc(count)

    async def _ensure_provider_topic(self, provider_id: str) -> None:
        if provider_id not in self._provider_topics_ready:
            spec = capacity_requests_spec(provider_id)
            await ensure_topics(self._settings, [spec, dead_letter_spec(spec)])
            self._provider_topics_ready.add(provider_id)


#: Seek the internal topic's partition to an offset (the shell's consumer).
Rewind = Callable[[int, int], Awaitable[None]]
#: The earliest offset still on the internal topic's partition.
Earliest = Callable[[int], Awaitable[int]]
#: The records (offset, key, value) of the internal topic's partition in [start, end), in order,
#: read straight from the broker; raises if it cannot read up to ``end``.
GapRecord = tuple[int, bytes | None, bytes | None]
ReadGap = Callable[[int, int, int], AsyncIterator[GapRecord]]


class GapReader:
    """Reads a range of one internal partition with a consumer of its own (no group).

    Why not seek the stream's consumer back: Faust (0.15.3) drops every fetched record whose
    offset is below its per-partition *read offset*, and its fetch loop sets that read offset
    to the offset of each record it hands to the stream, after ours too. A
    ``Consumer.seek_wait`` issued while the agent handles a message is undone at once by the
    records already fetched behind it, so the re-fetched gap is dropped (measured: a seek back
    from offset 40 to 3 in a 3,000-record partition, read offset 40 right after the seek,
    offset 3 never re-delivered; in a worker, up to 18 seeks 1.5 s apart before one landed
    while the fetch loop was idle). Reading the gap directly does not depend on the stream.
    """

    def __init__(self, settings: Settings, topic: str, timeout_s: float = GAP_READ_TIMEOUT_S):
        self._settings = settings
        self._topic = topic
        self._timeout_s = timeout_s

    async def __call__(self, partition: int, start: int, end: int) -> AsyncIterator[GapRecord]:
        tp = TopicPartition(self._topic, partition)
        consumer = AIOKafkaConsumer(**self._settings.consumer_options(None))
        await consumer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + self._timeout_s
            while await consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"read {self._topic}[{partition}] {start}..{end}: no progress for "
                        f"{self._timeout_s:g} s at {await consumer.position(tp)}"
                    )
                batch = await consumer.getmany(tp, timeout_ms=500)
                records = batch.get(tp, ())
                if records:
                    deadline = time.monotonic() + self._timeout_s
                for record in records:
                    if record.offset >= end:
                        return
                    yield record.offset, record.key, record.value
        finally:
            await consumer.stop()


class DomainHandler:
    """Feeds one domain's inbound batches to its processor and publishes what it decides.

    Input position: the table, not the consumer group, says which internal message of a
    partition is next. Every batch stores the domain's state and then, in the same changelog
    partition, the partition's next offset (:func:`position_key`); :meth:`admit` applies only
    that message, skips what the state already holds, and on a gap seeks back to it. The
    group's committed offset alone loses messages on a takeover: Faust (0.15.3, aiokafka 0.14)
    drops records fetched for partitions paused during a rebalance and does not seek back a
    partition without a committed offset, clears the stream buffers after delivering from them
    while it seeks, and can commit an offset before the table's changelog write is on the
    broker (see docs/worker.md, "Takeover").
    """

    def __init__(
        self,
        settings: Settings,
        states: TableT[Any, Any],
        plans: TableT[Any, Any],
        sender: OutputSender,
        planner: Planner,
        rewind: Rewind | None = None,
        earliest: Earliest | None = None,
        read_gap: ReadGap | None = None,
    ) -> None:
        self._settings = settings
        self._config = planner_config(settings)
        self._states = states
        self._plans = plans
        self._sender = sender
        self._planner = planner
        self._rewind = rewind
        self._earliest = earliest
        self._read_gap = read_gap
        self._processors: dict[str, DomainProcessor] = {}
        self._next: dict[int, int] = {}
        self._domains: dict[int, set[str]] = {}
        #: Per internal partition, the domains that had a batch since its last heartbeat
        #: (absent until this worker has seen one heartbeat there: see :meth:`heartbeat`).
        self._active: dict[int, set[str]] = {}
        #: Domains whose gauges this worker set, with their internal partition.
        self._gauged: dict[str, int] = {}
        self._partition_of: dict[str, int] = {}
        self._rewinding: dict[int, float] = {}
        self.handled = 0
        self.rewinds = 0
        self.skipped = 0
        self.gaps_filled = 0
        self.heartbeats = 0

    def forget(self) -> None:
        """Drop cached processors and input positions (after a rebalance the table is the
        source of truth: another worker may have moved a partition on meanwhile)."""
        self._processors.clear()
        self._next.clear()
        self._domains.clear()
        self._active.clear()
        self._rewinding.clear()

    def retain(self, partitions: set[int]) -> None:
        """After a rebalance: drop the gauges of the domains whose internal partition this
        worker no longer holds (their new owner reports them)."""
        for domain, partition in list(self._gauged.items()):
            if partition not in partitions:
                forget_domain(domain)
                del self._gauged[domain]

    async def on_message(
        self, key: bytes | None, value: bytes | None, partition: int, offset: int
    ) -> None:
        """One message of the internal topic, as the agent receives it: admitted by offset
        (:meth:`admit`), then a domain's batch or an event-time heartbeat."""
        if await self.admit(partition, offset):
            await self._apply_message(key, value, partition, offset)

    async def _apply_message(
        self, key: bytes | None, value: bytes | None, partition: int, offset: int
    ) -> None:
        if key is None or value is None:  # not one of ours: nothing to apply
            self._applied(partition, offset)
        elif is_heartbeat(key):
            await self.heartbeat(value, partition, offset)
        else:
            try:
                items = decode_batch(value)
            except Exception:  # never crash the agent: say so and move on
                log.exception("domain.batch_undecodable", partition=partition, offset=offset)
                self._applied(partition, offset)
                return
            await self.handle(key.decode(), items, partition, offset)

    async def admit(self, partition: int, offset: int) -> bool:
        """Whether the internal message at ``offset`` is to be applied now: it is the
        partition's next one (by the table's record), or everything between that and it has
        just been read from the broker and applied (a gap: messages the stream never
        delivered). Earlier ones are already in the state (a redelivery): skipped.

        Without a gap reader, or when reading fails, the stream's consumer is sought back
        instead and this message (and what follows it in the stream's buffer) is skipped
        until the next one arrives.

        Called while the message is the stream's current event (the table reads and writes
        its partition's store and changelog partition)."""
        expected = self._next.get(partition)
        if expected is None:
            stored = self._states.get(position_key(partition))
            if stored is not None:
                expected = int(stored)
            else:  # nothing of this partition ever applied: from its first message
                expected = await self._earliest_offset(partition, offset)
            self._next[partition] = expected
        if offset == expected:
            self._rewinding.pop(partition, None)
            return True
        if offset < expected:
            self.skipped += 1
            return False
        earliest = await self._earliest_offset(partition, expected)
        if earliest > expected:  # deleted by retention: nothing left to re-read there
            log.error(
                "domain.inputs_expired",
                partition=partition,
                expected=expected,
                earliest=earliest,
            )
            self._next[partition] = expected = earliest
            if offset <= expected:
                self._rewinding.pop(partition, None)
                return True
        if self._read_gap is not None:
            if await self._fill(partition, expected, offset):
                self._rewinding.pop(partition, None)
                return True
            expected = self._next[partition]  # as far as the gap was applied
        self.skipped += 1
        now = time.monotonic()
        last = self._rewinding.get(partition)
        if self._rewind is not None and (last is None or now - last > REWIND_RETRY_S):
            log.warning("domain.inputs_rewind", partition=partition, expected=expected, got=offset)
            self._rewinding[partition] = now
            self.rewinds += 1
            await self._rewind(partition, expected)
        return False

    async def _fill(self, partition: int, start: int, end: int) -> bool:
        """Read the messages ``start``..``end`` - 1 of the partition from the broker and
        apply them as they come; False if they could not all be read (what was applied is
        recorded: the position moved on that far)."""
        assert self._read_gap is not None
        applied = 0
        try:
            async for offset, key, value in self._read_gap(partition, start, end):
                await self._apply_message(key, value, partition, offset)
                applied += 1
        except Exception as exc:
            log.warning(
                "domain.inputs_gap_read_failed",
                partition=partition,
                expected=start,
                got=end,
                applied=applied,
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        log.warning(
            "domain.inputs_gap_filled",
            partition=partition,
            expected=start,
            got=end,
            messages=applied,
        )
        self.gaps_filled += 1
        self._next[partition] = end
        return True

    async def _earliest_offset(self, partition: int, default: int) -> int:
        if self._earliest is None:
            return default
        try:
            return await self._earliest(partition)
        except Exception as exc:  # broker trouble: assume nothing was deleted
            log.warning("domain.earliest_offset_failed", partition=partition, error=str(exc))
            return default

    def _applied(self, partition: int | None, offset: int | None) -> None:
        """Record that the internal message was applied (after the state, same partition)."""
        if partition is None or offset is None:
            return
        self._states[position_key(partition)] = str(offset + 1).encode()
        self._next[partition] = offset + 1

    def _processor(self, domain: str) -> DomainProcessor:
        processor = self._processors.get(domain)
        if processor is None:
            stored = self._states.get(domain.encode())
            state = None if stored is None else load_state(stored)
            processor = DomainProcessor(domain, self._config, state)
            self._processors[domain] = processor
        return processor

    async def handle(
        self,
        domain: str,
        items: list[Inbound],
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        """Process one inbound batch (the internal message at ``partition``/``offset``, whose
        position is then stored); never raises (a crashed agent would stall the domain)."""
        if partition is not None:
            self._register(partition, domain)
        try:
            await self._handle(domain, items)
        except Exception as exc:  # a bug must not lose input: dead-letter it with the reason
            log.exception("domain.batch_failed", domain=domain, items=len(items))
            self._processors.clear()
            reason = f"processing failed: {type(exc).__name__}: {exc}"
            letters = [
                dead_letter_for_event(item, DeadLetterStage.PROCESS, type(exc).__name__, reason)
                for item in items
            ]
            await self._sender.send_all(letters)
        self._applied(partition, offset)

    def _register(self, partition: int, domain: str) -> None:
        """Remember which domains a partition carries (a heartbeat advances the idle ones) and
        that this one was active since the partition's last heartbeat."""
        self._partition_of[domain] = partition
        active = self._active.get(partition)
        if active is not None:
            active.add(domain)
        known = self._domains_of(partition)
        if domain not in known:
            known.add(domain)
            self._states[domains_key(partition)] = json.dumps(sorted(known)).encode()

    def _domains_of(self, partition: int) -> set[str]:
        known = self._domains.get(partition)
        if known is None:
            stored = self._states.get(domains_key(partition))
            known = set() if stored is None else set(json.loads(stored))
            self._domains[partition] = known
        return known

    async def heartbeat(self, value: bytes, partition: int, offset: int | None = None) -> None:
        """An event-time heartbeat from ingest (:mod:`services.worker.heartbeat`): record the
        input partitions' event times and, once all have reported, advance the *idle* domains
        of this partition to their minimum (they close intervals and plan).

        Idle means: no batch of the domain on this partition since the previous heartbeat.
        A domain with events of its own moves with them, and a heartbeat carrying another
        domain's newer time must not overtake its events still on their way through ingest
        (one publish of two domains' day reaches the input partitions one after another;
        advancing the second domain then would refuse its own events as late). Activity is
        read from the internal partition's order, not a clock, so re-reading the partition
        decides the same. The first heartbeat this worker sees on a partition (after start
        or a rebalance) only starts the count: it cannot tell who was active before it.
        """
        try:
            inputs, total = decode_heartbeat(value)
            stored = self._states.get(inputs_key(partition))
            known = {} if stored is None else decode_heartbeat(stored)[0]
            merged = merge(known, inputs)
            if merged != known:
                self._states[inputs_key(partition)] = encode_heartbeat(merged, total)
            watermark = low_watermark(merged, total)
            self.heartbeats += 1
            active = self._active.get(partition)
            self._active[partition] = set()
            if watermark is not None and active is not None:
                for domain in sorted(self._domains_of(partition) - active):
                    self._partition_of[domain] = partition
                    await self._advance(domain, watermark)
        except Exception:  # never crash the agent on a heartbeat
            log.exception("domain.heartbeat_failed", partition=partition, offset=offset)
        self._applied(partition, offset)

    async def _advance(self, domain: str, watermark: Any) -> None:
        processor = self._processor(domain)
        current = processor.state.watermark
        if current is not None and watermark <= current:
            return
        try:
            await self._run_steps(domain, processor, processor.advance(watermark))
        except Exception:
            log.exception("domain.advance_failed", domain=domain)
            self._processors.pop(domain, None)
            return
        self._states[domain.encode()] = dump_state(processor.to_state())

    async def _handle(self, domain: str, items: list[Inbound]) -> None:
        """Run one inbound batch through the core's event-time timeline and publish.

        The core applies events in a canonical order once they are final and stops wherever a
        plan is due (``result.more``), so plans fall at the same points of event time however
        Kafka cut and interleaved the input: plan there, publish, and continue with
        ``ingest(())`` until what the batch made final is done. State is stored once at the
        end; a crash before that replays the batch, which yields the same output ids.
        """
        processor = self._processor(domain)
        await self._run_steps(domain, processor, processor.ingest(items))
        self._states[domain.encode()] = dump_state(processor.to_state())
        self.handled += len(items)

    async def _run_steps(self, domain: str, processor: DomainProcessor, result: Any) -> None:
        """Publish what a step result refused and logged, plan where due, and continue
        while the core says more final steps remain."""
        while True:
            outputs: list[Event] = []
            for item, stage, error_class, reason in result.refused:
                # buffered events may come back from a restored state as the core's own tuple
                inbound = Inbound(item.event, item.topic, item.partition, item.offset)
                outputs.append(dead_letter_for_event(inbound, stage, error_class, reason))
                EVENTS_DEAD_LETTERED.labels(item.topic, stage.value, error_class).inc()
                if error_class == "ForgedResponse":
                    provider = getattr(item.event, "provider_id", "unknown")
                    SECURITY_EVENTS.labels(provider).inc()
            if result.duplicates:
                EVENTS_DUPLICATE.labels(domain).inc(result.duplicates)
            outputs.extend(result.log)
            trigger = processor.due()
            if trigger is not None:
                outputs.extend(await self._plan(domain, processor, trigger))
            await self._sender.send_all(outputs)
            if not result.more:
                break
            result = processor.ingest(())

    async def _plan(self, domain: str, processor: DomainProcessor, trigger: Any) -> list[Event]:
        started = time.perf_counter()
        try:
            problem = processor.problem()
            asked = time.perf_counter()
            plan: Plan = await self._planner.plan(problem)
        except Exception as exc:  # solver, pool or data trouble: hold capacity, say why
            FALLBACKS.labels(domain, type(exc).__name__).inc()
            log.error("plan.failed", domain=domain, error=str(exc), error_class=type(exc).__name__)
            return processor.apply_failure(f"{type(exc).__name__}: {exc}", trigger)
        answered = time.perf_counter()
        PLAN_SOLVE_SECONDS.labels(domain).observe(answered - started)
        outputs = processor.apply_plan(plan, trigger)
        applied = time.perf_counter()
        for event in outputs:
            if isinstance(event, AllocationPlanned):
                self._plans[domain.encode()] = encode(event).value
                partition = self._partition_of.get(domain)
                if partition is not None:
                    self._gauged[domain] = partition
                PLAN_GAP.labels(domain).set(event.solver.gap or 0.0)
                PLANNED_COST.labels(domain).set(event.cost.total)
                UNMET_DEMAND.labels(domain).set(plan.unmet_fte_hours)
                log.info(
                    "plan.published",
                    domain=domain,
                    plan_id=event.plan_id,
                    cost=event.cost.total,
                    status=event.solver.status.value,
                    # where a plan's time went: the problem from state, the planner process
                    # (its own build + solve, the rest is hand-over and read-back), apply
                    problem_s=round(asked - started, 3),
                    planner_s=round(answered - asked, 3),
                    solver_s=round(event.solver.build_seconds + event.solver.solve_seconds, 3),
                    apply_s=round(applied - answered, 3),
                )
            elif isinstance(event, CapacityRequested):
                direction = "up" if event.target_fte > event.current_fte else "down"
                CAPACITY_REQUESTS.labels(event.provider_id, direction).inc()
            elif isinstance(event, ScalingDecided):
                log.info(
                    "decision",
                    domain=domain,
                    decision_id=event.decision_id,
                    target=event.target_id,
                    direction=event.direction.value,
                    to_fte=event.to_fte,
                )
        return outputs
