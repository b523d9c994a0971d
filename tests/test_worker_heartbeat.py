"""Event-time heartbeats in the worker shell, without Kafka: the ingest side's bookkeeping
(:class:`HeartbeatEmitter`) and the domain agent's (``DomainHandler.heartbeat``), with the
table and the output sender faked as in tests/test_worker_admission.py."""

from __future__ import annotations

import json
from datetime import timedelta

from aiokafka import TopicPartition

from schemas import DeadLetter
from services.worker.agent import domains_key, inputs_key, position_key
from services.worker.heartbeat import (
    HEARTBEAT_KEY,
    HeartbeatEmitter,
    decode_heartbeat,
    encode_heartbeat,
    low_watermark,
    merge,
)
from services.worker.inbound import Inbound, encode_batch
from tests.test_domain_support import DOMAIN, T0, baseline_catalogue, hours
from tests.test_worker_admission import Fakes, P


def batch(events: list) -> bytes:  # type: ignore[type-arg]
    return encode_batch([Inbound(e, type(e).topic, 0, n) for n, e in enumerate(events)])


def beat(total: int, **inputs: timedelta) -> bytes:
    return encode_heartbeat({k.replace("_", "."): T0 + v for k, v in inputs.items()}, total)


def test_the_low_watermark_is_the_minimum_once_every_input_reported() -> None:
    a = {"ops.ticket-volume:0": T0 + timedelta(hours=5)}
    assert low_watermark(a, 2) is None, "one input partition has not reported yet"
    both = merge(a, {"ops.queues:0": T0 + timedelta(hours=3)})
    assert low_watermark(both, 2) == T0 + timedelta(hours=3)
    # a new owner re-reading older records of a partition does not move it back
    assert merge(both, {"ops.queues:0": T0})["ops.queues:0"] == T0 + timedelta(hours=3)
    value = encode_heartbeat(both, 2)
    assert decode_heartbeat(value) == (both, 2)


def test_the_emitter_reports_inputs_read_to_their_end_with_the_newest_released_time() -> None:
    from services.config import Settings
    from services.kafka import Delivered

    emitter = HeartbeatEmitter(Settings(), every_s=2.0)
    a, b = TopicPartition("ops.ticket-volume", 0), TopicPartition("ops.queues", 0)
    assert emitter.due([a, b], [], now=10.0) is None, "nothing released yet"
    events = hours(0, 3, 10)
    emitter.released([Delivered(e, "ops.ticket-volume", 0, n) for n, e in enumerate(events)])
    newest = max(e.time for e in events)
    assert emitter.due([a, b], [], now=12.0) is None, (
        "what was just released is reported a period later (its batch may still be landing "
        "on other partitions)"
    )
    assert emitter.due([a, b], [], now=13.0) is None, "at most once a period"
    later = hours(3, 4, 10)
    emitter.released([Delivered(e, "ops.ticket-volume", 0, 3) for e in later])
    assert emitter.due([a, b], [b], now=14.0) == {"ops.ticket-volume:0": newest}, (
        "the newest as of the previous tick; a partition still behind is not reported: its "
        "owner has not read it yet"
    )
    assert emitter.due([a, b], [], now=16.0) == {
        "ops.queues:0": later[0].time,
        "ops.ticket-volume:0": later[0].time,
    }


def test_an_unchanged_report_is_sent_again_after_the_repeat_period() -> None:
    """The agent needs a second heartbeat to advance idle domains: a report sent once, after
    which event time stood still, is repeated (not every period)."""
    from services.config import Settings
    from services.kafka import Delivered

    emitter = HeartbeatEmitter(Settings(), every_s=2.0, repeat_s=10.0)
    a = TopicPartition("ops.ticket-volume", 0)
    events = hours(0, 3, 10)
    emitter.released([Delivered(e, "ops.ticket-volume", 0, n) for n, e in enumerate(events)])
    assert emitter.due([a], [], now=0.0) is None
    report = emitter.due([a], [], now=2.0)
    assert report is not None
    emitter.mark_sent(report, now=2.0)
    assert emitter.due([a], [], now=4.0) is None, "unchanged: not every period"
    assert emitter.due([a], [], now=10.0) is None
    assert emitter.due([a], [], now=12.0) == report, "unchanged, repeated after 10 s"
    emitter.mark_sent(report, now=12.0)
    assert emitter.sent == 2
    emitter.released([Delivered(e, "ops.ticket-volume", 0, 9) for e in hours(3, 4, 10)])
    assert emitter.due([a], [], now=14.0) is None, "released at 13 s, reported a tick later"
    assert emitter.due([a], [], now=16.0) is not None, "changed: at once"


async def test_a_heartbeat_advances_an_idle_domain_once_all_inputs_reported() -> None:
    fakes = Fakes(position=0)
    handler = fakes.handler(real_handle=True)
    handler._planner = _NoPlanner()  # type: ignore[assignment]
    await handler.on_message(DOMAIN.encode(), batch([*baseline_catalogue()]), P, 0)
    await handler.on_message(DOMAIN.encode(), batch(hours(0, 10, 5)), P, 1)
    state = json.loads(fakes.table[DOMAIN.encode()])
    assert state["buffer"], "the last lateness-worth waits"
    assert json.loads(fakes.table[domains_key(P)]) == [DOMAIN]
    watermark = state["watermark"]
    far = timedelta(hours=20)
    # one of two inputs: not yet
    await handler.on_message(HEARTBEAT_KEY, beat(2, ops_ticket_volume__0=far), P, 2)
    assert json.loads(fakes.table[DOMAIN.encode()])["watermark"] == watermark
    # the other reports too: the minimum of the two moves the domain
    await handler.on_message(HEARTBEAT_KEY, beat(2, ops_queues__0=far), P, 3)
    state = json.loads(fakes.table[DOMAIN.encode()])
    assert state["watermark"] > watermark
    assert state["buffer"] == [], "everything buffered was applied"
    assert fakes.table[position_key(P)] == b"4", "heartbeats move the input position too"
    assert decode_heartbeat(fakes.table[inputs_key(P)])[1] == 2
    assert handler.heartbeats == 2


async def test_a_heartbeat_advances_only_domains_idle_since_the_previous_one() -> None:
    """A domain with a batch since the last heartbeat moves with its own events: another
    domain's newer time must not overtake its events still on their way through ingest."""
    fakes = Fakes(position=0)
    handler = fakes.handler(real_handle=True)
    handler._planner = _NoPlanner()  # type: ignore[assignment]
    far = timedelta(hours=20)
    await handler.on_message(HEARTBEAT_KEY, beat(1, ops_queues__0=far), P, 0)
    await handler.on_message(DOMAIN.encode(), batch([*baseline_catalogue()]), P, 1)
    await handler.on_message(DOMAIN.encode(), batch(hours(0, 10, 5)), P, 2)
    watermark = json.loads(fakes.table[DOMAIN.encode()])["watermark"]
    await handler.on_message(HEARTBEAT_KEY, beat(1, ops_queues__0=far), P, 3)
    state = json.loads(fakes.table[DOMAIN.encode()])
    assert state["watermark"] == watermark and state["buffer"], "active since the last beat"
    # its events went on after hour 10 (the rest of the batch was on its way): not late
    await handler.on_message(DOMAIN.encode(), batch(hours(10, 12, 5)), P, 4)
    assert not [e for e in fakes.sent if isinstance(e, DeadLetter)]
    await handler.on_message(HEARTBEAT_KEY, beat(1, ops_queues__0=far), P, 5)
    assert json.loads(fakes.table[DOMAIN.encode()])["buffer"], "still active"
    await handler.on_message(HEARTBEAT_KEY, beat(1, ops_queues__0=far), P, 6)
    state = json.loads(fakes.table[DOMAIN.encode()])
    assert state["watermark"] > watermark and state["buffer"] == [], "idle for a period: moved"


async def test_the_first_heartbeat_after_a_rebalance_only_starts_the_count() -> None:
    fakes = Fakes(position=0)
    handler = fakes.handler(real_handle=True)
    handler._planner = _NoPlanner()  # type: ignore[assignment]
    far = timedelta(hours=20)
    first_day = batch([*baseline_catalogue(), *hours(0, 10, 5)])
    await handler.on_message(DOMAIN.encode(), first_day, P, 0)
    await handler.on_message(HEARTBEAT_KEY, beat(1, ops_queues__0=far), P, 1)
    assert json.loads(fakes.table[DOMAIN.encode()])["buffer"], "who was active is not known"
    await handler.on_message(HEARTBEAT_KEY, beat(1, ops_queues__0=far), P, 2)
    assert json.loads(fakes.table[DOMAIN.encode()])["buffer"] == []
    handler.forget()
    await handler.on_message(DOMAIN.encode(), batch(hours(30, 31, 5)), P, 3)
    before = json.loads(fakes.table[DOMAIN.encode()])["watermark"]
    await handler.on_message(HEARTBEAT_KEY, beat(1, ops_queues__0=far * 2), P, 4)
    assert json.loads(fakes.table[DOMAIN.encode()])["watermark"] == before


async def test_a_heartbeat_behind_the_domain_changes_nothing() -> None:
    fakes = Fakes(position=0)
    handler = fakes.handler(real_handle=True)
    await handler.on_message(DOMAIN.encode(), batch([*baseline_catalogue(), *hours(0, 5, 5)]), P, 0)
    before, sent = fakes.table[DOMAIN.encode()], len(fakes.sent)
    await handler.on_message(HEARTBEAT_KEY, beat(1, ops_queues__0=timedelta(hours=1)), P, 1)
    assert fakes.table[DOMAIN.encode()] == before
    assert len(fakes.sent) == sent, "nothing published"


async def test_a_heartbeat_in_a_gap_read_from_the_broker_is_applied_as_one() -> None:
    far = timedelta(hours=30)
    records = [
        (0, DOMAIN.encode(), batch([*baseline_catalogue(), *hours(0, 10, 5)])),
        (1, HEARTBEAT_KEY, beat(1, ops_queues__0=far)),
    ]
    fakes = Fakes(position=0, gap=lambda start, end: records[start:end])
    handler = fakes.handler(real_handle=True)
    handler._planner = _NoPlanner()  # type: ignore[assignment]
    await handler.on_message(HEARTBEAT_KEY, beat(1, ops_queues__0=far), P, 2)
    assert fakes.reads == [(P, 0, 2)]
    assert json.loads(fakes.table[DOMAIN.encode()])["buffer"] == []
    assert handler.heartbeats == 2


class _NoPlanner:
    """Planning is not what these tests look at: every plan attempt fails (held capacity)."""

    async def plan(self, problem: object) -> object:
        raise RuntimeError("no solver in this test")
