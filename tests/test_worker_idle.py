"""An idle domain on a real Apache Kafka broker: its inputs stop while another domain's go on;
ingest's event-time heartbeats move its frontier, so what it had buffered is applied and its
last intervals close (before heartbeats, they stayed buffered until its next input).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.kafka import EventPublisher
from tests.conftest import LocalKafka
from tests.test_domain_support import contract, hours, queue, team
from tests.worker_harness import (
    OUTPUTS,
    TopicWatch,
    WorkerPool,
    in_domain,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
def pool(local_kafka: LocalKafka, topic_prefix: str, tmp_path: Path) -> Iterator[WorkerPool]:
    workers = WorkerPool(local_kafka.bootstrap, topic_prefix, tmp_path)
    try:
        yield workers
    finally:
        workers.close()
        print(workers.logs())


async def test_an_idle_domain_applies_what_it_buffered_when_event_time_moves_on(
    pool: WorkerPool,
) -> None:
    settings = settings_for(pool.bootstrap, pool.prefix)
    worker = pool.spawn("w1")
    await worker.wait_ready()
    catalogue = [queue(), team(), contract("cheap", 25.0, lead_h=6.0, notice_h=12.0)]
    first = [*catalogue, *hours(0, 12, 10)]
    async with TopicWatch(settings, OUTPUTS) as watch, EventPublisher(settings) as publisher:
        for domain in ("quiet", "busy"):
            await publisher.publish_many(in_domain(first, domain))

        async def states() -> dict[str, Any] | None:
            # every first event taken in (applied or buffered) by both domains, not just seen:
            # a snapshot taken at the first batch raced the rest of them (CI, 1 of ~5 runs)
            held = (await worker.domains())["domains"]
            taken = {d: held[d]["applied"] + held[d]["pending"] for d in held}
            full = all(taken.get(d) == len(first) for d in ("quiet", "busy"))
            return held if full else None

        held = await wait_for(states, 60, "both domains applied")
        # the busy domain goes on for a day; the quiet one never hears again
        await publisher.publish_many(in_domain(hours(12, 36, 10), "busy"))

        async def flushed() -> dict[str, Any] | None:
            quiet = (await worker.domains())["domains"]["quiet"]
            return quiet if quiet["pending"] == 0 else None

        try:
            quiet = await wait_for(flushed, 60, "the quiet domain's buffer to be applied")
        except AssertionError as exc:
            # Failed once in CI (not in 7 local runs, 4 under CPU load): say what the worker
            # knew, so the next failure shows whether heartbeats came and what they carried.
            lines = [
                line
                for line in worker.log_text().splitlines()
                if any(k in line for k in ("heartbeat", "quiet", "warning", "error"))
            ]
            raise AssertionError(
                f"{exc}\n/domains {await worker.domains()}\n/ready {await worker.ready()}\n"
                + "\n".join(lines[-40:])
            ) from exc
        ready = await worker.ready()
        await watch.settle(1.0)
    print(f"quiet domain before {held['quiet']}, after {quiet}; /ready {ready}")
    assert held["quiet"]["pending"] > 0, "it had a lateness-worth of reports buffered"
    assert quiet["watermark"] > held["quiet"]["watermark"], "its frontier moved without input"
    assert quiet["applied"] == held["quiet"]["applied"] + held["quiet"]["pending"]
    assert watch.plans("quiet"), "it planned"
