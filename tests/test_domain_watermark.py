"""Idle domains: an event-time heartbeat (``DomainProcessor.advance``) moves a domain's frontier
when its own inputs stop, and decisions stay a function of the event stream.

Without it a domain whose inputs stop keeps its last lateness-worth of events buffered (and its
last intervals open) forever. The heartbeat carries the low watermark of the inputs — event
time, from the stream — never the wall clock, so the replay and batching guarantees of
tests/test_domain_determinism.py hold with heartbeats anywhere in the stream.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from allocator.policies import GreedyPolicy
from schemas import Event, encode
from services.domain import DomainProcessor, Inbound
from tests.test_domain_determinism import (
    Outcome,
    assert_same,
    cfg,
    cut,
    greedy_recording,
    interleave,
    release,
    restored,
)
from tests.test_domain_support import DOMAIN, T0, baseline_catalogue, config, hours, tick

#: A batch of inputs, or a heartbeat carrying the inputs' low watermark.
Delivery = Sequence[Inbound] | datetime


def items(events: Sequence[Event]) -> list[Inbound]:
    return [Inbound(e, type(e).topic, 0, n) for n, e in enumerate(events)]


def run(proc: DomainProcessor, delivery: Delivery) -> list[bytes]:
    """The shell's loop for one internal message (events or a heartbeat); wire outputs."""
    policy = GreedyPolicy()
    result = proc.advance(delivery) if isinstance(delivery, datetime) else proc.ingest(delivery)
    out: list[bytes] = []
    while True:
        for event in [*result.log, *proc.run_due(policy)]:
            message = encode(event)
            out.append(message.value + b"|" + repr(message.headers).encode())
        if not result.more:
            return out
        result = proc.ingest(())


def test_an_idle_domain_is_flushed_by_a_heartbeat() -> None:
    proc = DomainProcessor(DOMAIN, config())
    run(proc, items([*baseline_catalogue(), *hours(0, 24, 20)]))
    before = proc.state.buffer.__len__()
    assert before > 0, "the last lateness-worth of reports waits for the frontier"
    assert proc.state.watermark is not None
    last = proc.state.watermark
    clock = proc.state.clock
    out = run(proc, last + cfg().max_lateness + timedelta(minutes=1))
    assert len(proc.state.buffer) == 0, "everything buffered is applied"
    assert proc.state.clock is not None and clock is not None and proc.state.clock > clock
    assert out, "the intervals it closed re-plan"
    assert proc.state.demand.next_close is None or proc.state.demand.next_close > last


def test_a_heartbeat_decides_exactly_what_an_event_at_its_time_would() -> None:
    """Up to its time, a heartbeat is indistinguishable from the next report of some other
    queue (the ``tick`` the other tests use to say "event time passed")."""
    inputs = items([*baseline_catalogue(), *hours(0, 30, 15)])
    by_event = DomainProcessor(DOMAIN, config())
    by_heartbeat = DomainProcessor(DOMAIN, config())
    assert run(by_event, inputs) == run(by_heartbeat, inputs)
    marker = tick(by_event.state.watermark, config())
    got = run(by_heartbeat, marker.time)
    want = run(by_event, items([marker]))
    assert got == want and got
    assert by_heartbeat.state.clock == by_event.state.clock
    assert by_heartbeat.state.digest == by_event.state.digest
    assert by_heartbeat.state.applied == by_event.state.applied


def test_a_heartbeat_never_moves_the_watermark_back() -> None:
    proc = DomainProcessor(DOMAIN, config())
    run(proc, items([*baseline_catalogue(), *hours(0, 5, 10)]))
    state = json.dumps(proc.to_state())
    assert run(proc, T0) == []
    assert json.dumps(proc.to_state()) == state


def test_events_overtaken_by_a_heartbeat_are_late_like_after_an_event() -> None:
    proc = DomainProcessor(DOMAIN, config())
    run(proc, items(baseline_catalogue()))
    run(proc, T0 + timedelta(hours=10))
    result = proc.ingest(items(hours(2, 3, 10)))
    assert [(c, "watermark" in r) for _, _, c, r in result.refused] == [("LateEvent", True)]


def test_a_heartbeat_before_any_event_starts_the_domain() -> None:
    proc = DomainProcessor(DOMAIN, config())
    assert run(proc, T0) == []
    assert proc.state.watermark == T0
    restored_proc = restored(proc)
    assert restored_proc.to_state() == proc.to_state()


def deliver(batches: Sequence[Delivery], restore_at: frozenset[int]) -> Outcome:
    """test_domain_determinism's loop, with heartbeats among the batches."""
    proc = DomainProcessor(DOMAIN, cfg())
    outcome = Outcome()
    policy = GreedyPolicy()
    calls = 0
    for batch in batches:
        if isinstance(batch, datetime):
            result = proc.advance(batch)
        else:
            outcome.delivered += batch
            result = proc.ingest(batch)
        while True:
            out = list(result.log)
            out += proc.run_due(policy)
            outcome.add(out)
            outcome.refused += [(i.event.id, s, c, r) for i, s, c, r in result.refused]
            calls += 1
            if calls in restore_at:
                proc = restored(proc)
            if not result.more:
                break
            result = proc.ingest(())
    outcome.refused.sort(key=lambda r: (r[0], r[1].value))
    outcome.state = proc.to_state()
    return outcome


def with_heartbeats(
    batches: list[list[Inbound]], rng: random.Random, every: float
) -> list[Delivery]:
    """Heartbeats between batches, each at a random time between the watermark so far and
    the bound the core relies on: the earliest release time of any input still to come."""
    config_ = cfg()
    # ingest's heartbeat is the newest event time it released: never past the stream's newest
    newest = max(item.event.time for batch in batches for item in batch)
    out: list[Delivery] = []
    seen: datetime | None = None
    for n, batch in enumerate(batches):
        out.append(batch)
        for item in batch:
            if seen is None or item.event.time > seen:
                seen = item.event.time
        rest = [item for later in batches[n + 1 :] for item in later]
        if not rest or seen is None or rng.random() > every:
            continue
        bound = min(newest, *(release(item, config_) for item in rest))
        if bound <= seen:
            continue
        span = (bound - seen).total_seconds()
        out.append(seen + timedelta(seconds=rng.uniform(0, span)) if rng.random() < 0.7 else bound)
    return out


@settings(
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a failure prints its seed; no shrink
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    largest=st.sampled_from([1, 7, 40]),
    every=st.sampled_from([0.2, 1.0]),
    restores=st.integers(min_value=0, max_value=2),
)
def test_heartbeats_anywhere_in_the_stream_give_identical_outputs(
    seed: int, largest: int, every: float, restores: int
) -> None:
    rec = greedy_recording()
    rng = random.Random(seed)
    batches = cut(interleave(rec.items, rng), rng, largest)
    deliveries = [*with_heartbeats(batches, rng, every), list(rec.late)]
    beats = sum(isinstance(d, datetime) for d in deliveries)
    assert beats or every < 1.0
    calls = len(deliveries) + rec.outcome.plans
    restore_at = frozenset(rng.randint(1, calls) for _ in range(restores))
    got = deliver(deliveries, restore_at)
    assert_same(got, rec.outcome)
