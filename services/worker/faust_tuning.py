"""Faust consumer settings that ``faust.App`` does not expose.

faust-streaming 0.15.3 builds its worker consumer with ``fetch_max_wait_ms=1500`` hard-coded.
aiokafka keeps one fetch request in flight per broker and leaves out of it every partition that
still has fetched records waiting to be handed out; when that request holds only partitions with
nothing new, the broker parks it for the full wait. A partition whose records were just handed
out is then not fetched again until the parked request returns: the domain agent sat idle for
~1.5 s after every few internal messages while the ingest stage had long forwarded everything
(``bench/pipeline.py``: 5,000 events processed in ~0.15 s, then a 1.4-1.5 s gap, repeatedly;
5-6k events/s end to end). A short wait costs one empty fetch round trip per wait when idle.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

#: Longest time (ms) the broker holds a fetch of the worker's Faust consumer with no new data.
FETCH_MAX_WAIT_MS = 50


def tune_worker_consumer(fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make Faust's worker consumers wait at most ``fetch_max_wait_ms`` (idempotent; applies
    to consumers created after the call)."""
    thread = faust_aiokafka.AIOKafkaConsumerThread
    create = getattr(thread, "_flexforce_original_create", None)
    if create is None:
        create = thread._create_worker_consumer
        thread._flexforce_original_create = create  # type: ignore[attr-defined]

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        # read when the consumer starts and builds its Fetcher (aiokafka 0.14)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms
        return consumer

    thread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
