"""Worker failures on a real Apache Kafka broker: SIGKILL and restart, replay into fresh
topics, two workers sharing domains and one taking over when the other dies.

These are the guarantees the issue promises operations: no input lost, no capacity request
sent twice (ids are deterministic, so a consumer can always dedupe), the same decisions from the
same recorded input, and a dead worker's domains planned again within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from schemas import AllocationPlanned, Event, ResponseStatus, ScalingDecided
from schemas.topics import INPUT_TOPICS
from services.config import Settings
from services.kafka import EventPublisher, deployment_topics, ensure_topics, read_topic
from tests.conftest import LocalKafka
from tests.test_domain_support import DOMAIN, T0, contract, hours, queue, team, volume
from tests.worker_harness import (
    OUTPUTS,
    ProviderSimulator,
    TopicWatch,
    WorkerPool,
    WorkerProcess,
    duplicate_request_ids,
    in_domain,
    metric_sum,
    settings_for,
    ups,
    wait_for,
)

pytestmark = pytest.mark.kafka

TERMS: dict[str, Any] = {"lead_h": 6.0, "notice_h": 12.0}


@pytest.fixture
def pool(local_kafka: LocalKafka, topic_prefix: str, tmp_path: Path) -> Iterator[WorkerPool]:
    """Workers for this test, all killed at the end; log tails shown if the test failed."""
    workers = WorkerPool(local_kafka.bootstrap, topic_prefix, tmp_path)
    try:
        yield workers
    finally:
        workers.close()
        print(workers.logs())


def catalogue() -> list[Event]:
    return [
        queue(),
        team(),
        contract("cheap", 25.0, **TERMS),
        contract("mid", 30.0, **TERMS),
        contract("pricey", 35.0, **TERMS),
    ]


def demand(hour: int) -> int:
    """A day of quiet, then spikes and lulls, so plans keep asking and releasing."""
    if hour < 24:
        return 10
    return 200 if (hour // 6) % 2 == 0 else 20


def letters_of(watch: TopicWatch, domain: str) -> int:
    """Distinct dead letters of a domain's inputs (a redelivered refusal has the same id)."""
    return len({x.id for x in watch.dead_letters() if x.domain == domain})


async def accounted(
    worker: WorkerProcess, watch: TopicWatch, domain: str, expected: int, timeout: float
) -> None:
    """Wait until every input of the domain is accounted for: applied or still buffered in the
    worker's persisted state, or dead-lettered on Kafka."""

    last: dict[str, Any] = {}

    async def done() -> bool:
        worker._check_alive()
        await watch.poll(100)
        state = (await worker.domains())["domains"].get(domain)
        last["state"] = state
        last["letters"] = letters_of(watch, domain)
        if state is None:
            return False
        return bool(state["applied"] + state["pending"] + last["letters"] >= expected)

    try:
        await wait_for(done, timeout, f"{worker.name} to account for {expected} of {domain}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last state {last}") from None


def requests_seen(watch: TopicWatch) -> Callable[[], Awaitable[bool]]:
    """A check for ``wait_for``: has any capacity request reached its topic yet?"""

    async def seen() -> bool:
        await watch.poll(100)
        return bool(watch.requests())

    return seen


async def finish(
    worker: WorkerProcess,
    watch: TopicWatch,
    provider: ProviderSimulator,
    publisher: EventPublisher,
    published: int,
) -> int:
    """End a stream: let the worker catch up (the provider still answering), stop the
    provider, then one last report hours later makes everything before it final. Returns
    the number of reports it published."""
    await accounted(worker, watch, DOMAIN, published + len(provider.answered), 60)
    await provider.pause()  # an answer on its way lands before the last report
    await publisher.publish(volume(100, 10))
    await accounted(worker, watch, DOMAIN, published + len(provider.answered) + 1, 60)
    await watch.settle(1.0)
    return 1


# ---- 6: SIGKILL mid-stream and restart ---------------------------------------------------


async def test_a_killed_worker_restarts_without_losing_input_or_repeating_a_request(
    pool: WorkerPool,
) -> None:
    """At least once (the only guarantee: ``FLEXFORCE_EXACTLY_ONCE=true`` is refused, see
    docs/worker.md "Delivery guarantee"). Measured: no repeated request id in 4 of 4 runs."""
    settings = settings_for(pool.bootstrap, pool.prefix)
    worker = pool.spawn("w1")
    await worker.wait_ready()
    accept = lambda _: ResponseStatus.ACCEPTED  # noqa: E731
    stream = [volume(h, demand(h)) for h in range(72)]
    published = 0
    now = T0

    async with (
        TopicWatch(settings, OUTPUTS) as watch,
        ProviderSimulator(settings, accept, lambda: now) as provider,
        EventPublisher(settings) as publisher,
    ):
        published += await publisher.publish_many(catalogue())
        killed_at = None
        for hour, event in enumerate(stream):
            async with provider.turn:  # answers stay in event-time order with the reports
                await publisher.publish(event)
                now = event.time
            published += 1
            await asyncio.sleep(0.05)
            if hour == 36:
                # caught up first, so what is re-read after the kill is what was in flight —
                # not 30 hours of this accelerated stream, older than the dedupe window
                await accounted(worker, watch, DOMAIN, published + len(provider.answered), 30)
                # and its plans out: the solver runs behind the inputs (a slow CI machine took
                # longer than these 36 accelerated hours for the first provider-aware plan)
                await wait_for(requests_seen(watch), 60, "a capacity request before the kill")
                worker.kill()  # mid-stream: no goodbye, no commit, no flush
                killed_at = watch.requests()[:]
            if hour == 44:
                worker.start()
        assert killed_at, "requests were made before the kill"
        await worker.wait_ready()
        published += await finish(worker, watch, provider, publisher, published)
        answers = len(provider.answered)
    state = (await worker.domains())["domains"][DOMAIN]
    letters = letters_of(watch, DOMAIN)
    accounted_for = state["applied"] + state["pending"] + letters
    # Nothing lost. Not asserted exactly: across the crash a few inputs (provider answers
    # racing their request's timeout) were both dead-lettered by the dead worker and applied
    # by the restarted one (measured 0-5 of ~170); reported on the worker issue.
    print(f"accounted {accounted_for} of {published + answers} inputs ({letters} dead letters)")
    assert accounted_for >= published + answers, "every input applied, buffered or dead-lettered"
    counts, payloads = duplicate_request_ids(watch)
    assert ups(watch.requests()), "the stream produced scale-ups"
    differing = {rid: len(p) for rid, p in payloads.items() if len(p) > 1}
    assert not differing, f"one request id, different content: {differing}"
    repeated = {rid: n for rid, n in counts.items() if n > 1}
    print(f"{len(counts)} request ids, {sum(counts.values())} records, repeated ids {repeated}")
    assert not repeated, f"request ids on the topic more than once: {repeated}"


# ---- 7: replay determinism ---------------------------------------------------------------


async def test_a_recorded_stream_replayed_into_fresh_topics_gives_the_same_decisions(
    pool: WorkerPool, local_kafka: LocalKafka
) -> None:
    original = settings_for(pool.bootstrap, pool.prefix)
    worker = pool.spawn("original")
    await worker.wait_ready()

    def reject_cheap(request: Any) -> ResponseStatus:
        cheap = request.provider_id == "cheap"
        return ResponseStatus.REJECTED if cheap else ResponseStatus.ACCEPTED

    now = T0
    async with (
        TopicWatch(original, OUTPUTS) as first,
        ProviderSimulator(original, reject_cheap, lambda: now) as provider,
        EventPublisher(original) as publisher,
    ):
        total = await publisher.publish_many(catalogue())
        for hour in range(54):  # one report at a time: many small batches
            report = volume(hour, demand(hour))
            async with provider.turn:  # answers stay in event-time order with the reports
                await publisher.publish(report)
                now = report.time
            total += 1
            await asyncio.sleep(0.04)
        total += await finish(worker, first, provider, publisher, total)
        total += len(provider.answered)
        assert any(r.status is ResponseStatus.REJECTED for r in provider.answered.values())
    worker.terminate()
    # record the input stream as it is on the broker, and replay it, in bulk, into new topics
    recorded: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    for spec in INPUT_TOPICS:
        async for record, _ in read_topic(original, spec.name, idle_timeout_s=1.0):
            recorded.append((spec.name, record.key, record.value, list(record.headers)))
    assert len(recorded) == total
    # The whole recording is on the new topics before the replay worker starts: a back-fill,
    # which the worker's ingest merges across topics in event time. Published topic by topic
    # into a live worker instead, the worker would read all the reports (up to the last one,
    # days later) before the first answer exists, and rightly refuse every answer as late.
    replay = settings_for(pool.bootstrap, "r" + pool.prefix)
    await ensure_topics(replay, deployment_topics())
    async with EventPublisher(replay) as republisher:
        acks = [await republisher.send_raw(*record) for record in recorded]
        await asyncio.gather(*acks)
    again = pool.spawn("replay", prefix=replay.topic_prefix)
    await again.wait_ready()
    async with TopicWatch(replay, OUTPUTS) as second:
        await accounted(again, second, DOMAIN, total, 60)
        await second.settle(1.5)

    def decisions(watch: TopicWatch) -> dict[str, list[Any]]:
        return {
            "plans": [(p.plan_id, p.as_of) for p in watch.plans()],
            "requests": sorted(
                (r.request_id, r.provider_id, r.skill, r.target_fte, r.effective_at)
                for r in watch.requests()
            ),
            "decisions": sorted(
                (d.decision_id, d.target_id, d.direction.value, d.to_fte, d.effective_at)
                for d in watch.events(ScalingDecided)
            ),
            "logs": sorted((x.id, x.kind) for x in watch.logs()),
        }

    assert first.plans() and ups(first.requests())
    a, b = decisions(first), decisions(second)
    if a != b:
        print(plan_trail(first, "original"), plan_trail(second, "replay"), sep="\n")
        for w in (worker, again):
            notable = [x for x in w.log_text().splitlines() if "warning" in x or "error" in x]
            print(f"--- {w.name}: warnings and errors", *notable[-40:], sep="\n")
    assert a["requests"] == b["requests"]
    assert a["decisions"] == b["decisions"]
    assert a["plans"] == b["plans"]
    assert a["logs"] == b["logs"]


def plan_trail(watch: TopicWatch, title: str) -> str:
    """A run's plans (as-of, id, cost, solver), log records and dead letters in event time,
    to find where two runs part."""
    rows = [
        (
            p.as_of,
            f"plan {p.plan_id[:8]} {p.cost.total:,.2f} {p.solver.status.value} "
            f"gap={p.solver.gap} t={p.solver.solve_seconds:.2f}",
        )
        for p in watch.plans()
    ]
    rows += [(x.time, f"log {x.kind} {x.message[:90]}") for x in watch.logs()]
    rows += [(x.time, f"dead letter {x.error_class} {x.reason[:90]}") for x in watch.dead_letters()]
    rows.sort(key=lambda row: row[0])
    return "\n".join([f"--- {title}", *(f"{at:%d %H:%M} {what}" for at, what in rows)])


# ---- 8: two workers, one dies, the other takes over --------------------------------------


async def test_two_workers_split_the_domains_and_one_takes_over_when_the_other_dies(
    pool: WorkerPool,
) -> None:
    settings = settings_for(pool.bootstrap, pool.prefix)
    workers = [pool.spawn("w1"), pool.spawn("w2")]
    for w in workers:
        await w.wait_ready()

    async def split() -> list[list[int]] | None:
        owned = [(await w.ready()).get("partitions", []) for w in workers]
        ok = all(owned) and sorted(owned[0] + owned[1]) == list(range(6))
        return owned if ok else None

    owned = await wait_for(split, 60, "the two workers to split the internal partitions")
    partition_of = _partitioner(settings)
    candidates = ["eu", "us", "apac", "latam", "emea", "anz", "af", "me"]
    survivor_domain = next(d for d in candidates if partition_of(d) in owned[0])
    victim_domain = next(d for d in candidates if partition_of(d) in owned[1])
    domains = [survivor_domain, victim_domain]
    sent = dict.fromkeys(domains, 0)
    async with TopicWatch(settings, OUTPUTS) as watch, EventPublisher(settings) as publisher:

        async def send(events: list[Event], domain: str) -> None:
            sent[domain] += await publisher.publish_many(in_domain(events, domain))

        for d in domains:
            await send(catalogue(), d)
            await send(hours(0, 24, 10), d)
        await watch.until(lambda w: all(w.plans(d) for d in domains), 30, "plans for both")
        hour = 24

        async def tick() -> None:
            nonlocal hour
            while True:
                for d in domains:
                    await send([volume(hour, demand(hour))], d)
                hour += 1
                await asyncio.sleep(0.25)

        ticker = asyncio.create_task(tick())
        try:
            start = len(watch.plans(victim_domain))
            await watch.until(
                lambda w: len(w.plans(victim_domain)) >= start + 2, 30, "plans while both live"
            )
            killed_ms = time.time() * 1000
            workers[1].kill()
            killed = time.monotonic()

            def survivor_plan(w: TopicWatch) -> float | None:
                """Create time of the first victim-domain plan produced after the kill: the
                victim is dead by then, so only the survivor can have produced it."""
                return next(
                    (
                        s.timestamp_ms
                        for s in w.seen
                        if isinstance(s.event, AllocationPlanned)
                        and s.event.domain == victim_domain
                        and s.timestamp_ms > killed_ms
                    ),
                    None,
                )

            produced_ms: float = await watch.until(survivor_plan, 60, "a plan by the survivor")
            takeover = (produced_ms - killed_ms) / 1000
            observed = time.monotonic() - killed
            await asyncio.sleep(1)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        survivor = workers[0]
        for d in domains:
            await accounted(survivor, watch, d, sent[d], 30)
        await watch.settle(1.0)
    held = await survivor.domains()
    assert set(domains) <= set(held["domains"]), "the survivor holds both domains' state"
    assert held["partitions"] == list(range(6))
    plan = await survivor.plan(victim_domain)
    assert plan is not None and plan["plan_id"] == watch.plans(victim_domain)[-1].plan_id
    restarts = metric_sum(await survivor.metrics(), "flexforce_ingest_restarts_total")
    ready = await survivor.ready()
    print(
        f"takeover: {takeover:.1f} s from SIGKILL to the survivor producing a plan for "
        f"{victim_domain} (seen on the topic after {observed:.1f} s); ingest restarts: "
        f"{restarts}; internal-topic gaps read directly: {ready.get('input_gaps_filled')}, "
        f"seeks back: {ready.get('input_rewinds')}"
    )
    for line in survivor.log_text().splitlines():
        if "domain.inputs_" in line:  # gaps read, seeks back, expired inputs
            print(line[line.find("domain.inputs_") :])
    assert ready.get("input_rewinds") == 0, "every gap was read directly (no seek fallback)"
    assert "domain=" + victim_domain in survivor.log_text().split("plan.published", 1)[-1]
    assert takeover < 15, "takeover should take about the group session timeout (6 s)"


def _partitioner(settings: Settings) -> Any:
    """Which internal partition a domain's batches go to (the ingest producer's default
    partitioner on the domain key), so the test knows which worker plans which domain."""
    partitioner = DefaultPartitioner()
    partitions = list(range(settings.internal_partitions))
    return lambda domain: partitioner(domain.encode(), partitions, partitions)
