"""Event-time heartbeats: how an idle domain learns that event time moved on.

A domain's frontier (watermark − lateness) only moves with its own events, so a domain whose
inputs stop would keep its last lateness-worth of events buffered and its last intervals open
forever. Stream processors solve this with watermarks that travel with the stream; so here:

* **Ingest** (:class:`HeartbeatEmitter`) sends, at most every :data:`HEARTBEAT_EVERY_S`, a
  heartbeat record to *every* partition of ``internal.domain-inputs`` (key
  :data:`HEARTBEAT_KEY`), carrying for each input partition it owns and has read to its end
  the newest event time it had released one heartbeat period *earlier*. Ingest aligns its
  partitions in event time, so that is its low watermark (partitions still behind are left
  out: their owner has not read them yet). The period's delay is for partitions that looked
  read to their end only because a producer's batch had reached some of them and not yet
  the others (one publish of two domains' first day, say): reporting the newest time at once
  would advance the second domain past its own events still on their way, and refuse them as
  late. The wall clock decides only *when* a heartbeat is sent; what it says is event time.
* **The domain agent** (``DomainHandler.heartbeat``) keeps, per internal partition and in its
  table (so it survives a takeover), the newest value per input partition, and once every input
  partition has reported, advances the *idle* domains of that internal partition (no batch
  of theirs since the previous heartbeat there) to the **minimum**
  (``DomainProcessor.advance``). The minimum over all inputs, across all ingest members: one
  slow or dead member holds it back rather than making its unread events late. A domain
  with events of its own moves with them: the delay above narrows the race of a heartbeat
  overtaking a domain's events in flight, and skipping active domains closes it unless a
  domain's own events pause for a whole period mid-publish.

Decisions stay a function of the event stream: an input event is accepted if it is within its
kind's lateness of the watermark, with or without heartbeats, and ingest's alignment already
assumes inputs read to their end do not deliver events older than what was released (see
``services.worker.ingest``). tests/test_domain_watermark.py checks the core's side.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.config import Settings
from services.kafka import Delivered
from services.worker.inbound import INTERNAL_TOPIC

#: Key of a heartbeat on the internal topic (domains start with a letter or digit).
HEARTBEAT_KEY = b"\x00heartbeat"
#: Wall-clock spacing of heartbeats (their content is event time).
HEARTBEAT_EVERY_S = 2.0
#: An unchanged heartbeat is sent again this often. The agent advances idle domains from a
#: partition's second heartbeat on (the first after a start or a rebalance only starts its
#: count of who was active), so a value sent once, after which event time stood still, left
#: an idle domain's buffer unapplied for good (CI, twice in a row).
HEARTBEAT_REPEAT_S = 10.0


def is_heartbeat(key: bytes | None) -> bool:
    return key == HEARTBEAT_KEY


def input_name(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def encode_heartbeat(inputs: Mapping[str, datetime], total: int) -> bytes:
    """``inputs``: input partition → newest event time released from it; ``total``: how many
    input partitions exist (a watermark is only taken once all of them reported)."""
    body = {"v": 1, "total": total, "inputs": {k: v.isoformat() for k, v in inputs.items()}}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def decode_heartbeat(value: bytes) -> tuple[dict[str, datetime], int]:
    body: dict[str, Any] = json.loads(value)
    if body.get("v") != 1:
        raise ValueError(f"heartbeat format {body.get('v')!r} is not 1")
    inputs = {str(k): datetime.fromisoformat(v) for k, v in body["inputs"].items()}
    return inputs, int(body["total"])


def merge(known: Mapping[str, datetime], update: Mapping[str, datetime]) -> dict[str, datetime]:
    """Newest value per input partition (a new owner re-reading older records of a partition
    does not move it back)."""
    merged = dict(known)
    for name, moment in update.items():
        if name not in merged or moment > merged[name]:
            merged[name] = moment
    return merged


def low_watermark(known: Mapping[str, datetime], total: int) -> datetime | None:
    """The minimum over all input partitions, or None while some have not reported."""
    if not known or len(known) < total:
        return None
    return min(known.values())


class HeartbeatEmitter:
    """The ingest side (see the module docstring). Pure bookkeeping plus one send call."""

    def __init__(
        self,
        settings: Settings,
        every_s: float = HEARTBEAT_EVERY_S,
        repeat_s: float = HEARTBEAT_REPEAT_S,
    ) -> None:
        self._settings = settings
        self._every_s = every_s
        self._repeat_s = repeat_s
        self._newest: datetime | None = None
        self._settling: datetime | None = None  # the newest released at the last tick
        self._last_tick = float("-inf")
        self._last_sent: tuple[datetime, frozenset[str]] | None = None
        self._last_sent_at = float("-inf")
        self.sent = 0

    def released(self, items: Sequence[Delivered]) -> None:
        for item in items:
            moment = item.event.time
            if self._newest is None or moment > self._newest:
                self._newest = moment

    def due(
        self, assigned: Iterable[TopicPartition], behind: Iterable[TopicPartition], now: float
    ) -> dict[str, datetime] | None:
        """The inputs to report now, or None (nothing new, or too soon): at most once a
        period, the newest event time released by the previous tick (see the module
        docstring); the same report again only after ``repeat_s``."""
        if now - self._last_tick < self._every_s:
            return None
        settled, self._settling, self._last_tick = self._settling, self._newest, now
        if settled is None:
            return None
        lagging = set(behind)
        names = frozenset(input_name(tp) for tp in assigned if tp not in lagging)
        if not names:
            return None
        if self._last_sent == (settled, names) and now - self._last_sent_at < self._repeat_s:
            return None
        return dict.fromkeys(sorted(names), settled)

    def mark_sent(self, inputs: Mapping[str, datetime], now: float) -> None:
        """Remember what was reported (an unchanged report waits ``repeat_s``)."""
        settled = next(iter(inputs.values()))  # every input carries the same time
        self._last_sent = (settled, frozenset(inputs))
        self._last_sent_at = now
        self.sent += 1

    async def maybe_send(
        self,
        producer: AIOKafkaProducer,
        consumer: AIOKafkaConsumer,
        behind: Iterable[TopicPartition],
        topics: Iterable[str],
        acks: list[Any],
    ) -> None:
        """Send a heartbeat to every internal partition when one is due (acks collected)."""
        now = time.monotonic()
        inputs = self.due(consumer.assignment(), behind, now)
        if inputs is None:
            return
        total = 0
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                return  # metadata not there yet: next time
            total += len(partitions)
        value = encode_heartbeat(inputs, total)
        internal = self._settings.topic(INTERNAL_TOPIC)
        for partition in sorted(await producer.partitions_for(internal)):
            acks.append(
                await producer.send(internal, value=value, key=HEARTBEAT_KEY, partition=partition)
            )
        self.mark_sent(inputs, now)
