"""The domain core's batched fast path decides exactly what the step-by-step walk decides.

``DomainProcessor`` takes runs of steps that only release ticket volumes in one go
(``_steps``) and accepts ticket volumes on an inlined path (``_accept_all``). Here the same
deliveries — the closed-loop recording of ``test_domain_determinism`` in random interleavings
and batchings, with duplicates, late reports, reports of another domain, interval mismatches,
many reports at the same instant and a heartbeat now and then mixed in — go once through the
fast path and once through the reference walk (one ``_step`` per point of the timeline, one
``_accept`` per event): outputs, refusals (with their reasons, in order), counters and the
final state must be identical.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.policies import GreedyPolicy
from schemas import Event, TicketVolumeObserved, encode
from services.domain import DomainProcessor, Inbound, StepResult
from services.domain.processor import Refusal
from tests.test_domain_determinism import cfg, cut, greedy_recording, interleave
from tests.test_domain_support import DOMAIN, T0, volume


def _slow_steps(self: DomainProcessor, first: int, limit: int, result: StepResult) -> None:
    self._step(first, result)


def _slow_accept_all(self: DomainProcessor, items: Sequence[Any], result: StepResult) -> None:
    for item in items:
        self._accept(item, result)


@contextmanager
def reference_walk() -> Iterator[None]:
    """The processor without its fast paths: every step and every accept one by one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DomainProcessor, "_steps", _slow_steps)
        mp.setattr(DomainProcessor, "_accept_all", _slow_accept_all)
        yield


@dataclass
class Trace:
    wire: list[bytes] = field(default_factory=list)
    refused: list[tuple[str, str, str, str, str, int, int]] = field(default_factory=list)
    counters: list[tuple[int, ...]] = field(default_factory=list)
    states: list[str] = field(default_factory=list)

    def result(self, result: StepResult) -> None:
        self.refused += [_refusal(r) for r in result.refused]
        self.counters.append(
            (
                result.duplicates,
                result.accepted,
                result.applied,
                result.intervals_closed,
                result.more,
                result.pending,
                result.late_catalogue,
            )
        )

    def outputs(self, events: Sequence[Event]) -> None:
        for event in events:
            message = encode(event)
            self.wire.append(message.value + b"|" + repr(message.headers).encode())


def _refusal(refusal: Refusal) -> tuple[str, str, str, str, str, int, int]:
    item, stage, error_class, reason = refusal
    where = (item.topic, item.partition, item.offset)
    return (item.event.id, stage.value, error_class, reason, *where)


Call = tuple[str, Any]  # ("ingest", [Inbound, ...]) or ("advance", datetime)


def run(calls: Sequence[Call], *, restore_every: int = 0) -> Trace:
    """The shell's loop over ``calls`` (plans in-line with the greedy policy)."""
    policy = GreedyPolicy()
    proc = DomainProcessor(DOMAIN, cfg())
    trace = Trace()
    for n, (kind, arg) in enumerate(calls, 1):
        result = proc.ingest(arg) if kind == "ingest" else proc.advance(arg)
        while True:
            trace.result(result)
            trace.outputs(result.log)
            trace.outputs(proc.run_due(policy))
            if not result.more:
                break
            result = proc.ingest(())
        text = json.dumps(proc.to_state(), sort_keys=True)
        trace.states.append(text)  # after every call, not only at the end
        if restore_every and n % restore_every == 0:
            proc = DomainProcessor(DOMAIN, proc.config, json.loads(text))
    return trace


def noisy(items: Sequence[Inbound], rng: random.Random) -> list[Inbound]:
    """The delivery with trouble mixed in: repeats, reports of another domain, a queue that
    switches interval length, reports after the grace, bursts of reports at one instant."""
    out: list[Inbound] = []
    extra = 10_000
    for item in items:
        out.append(item)
        event = item.event
        roll = rng.random()
        if roll < 0.05:
            out.append(item)  # a repeat (at-least-once delivery)
        elif roll < 0.07 and isinstance(event, TicketVolumeObserved):
            other = event.model_copy(update={"domain": "us", "id": f"us-{event.id}"})
            out.append(Inbound(other, item.topic, item.partition, extra))
        elif roll < 0.09 and isinstance(event, TicketVolumeObserved):
            odd = event.model_copy(update={"interval_minutes": 30, "id": f"half-{event.id}"})
            out.append(Inbound(odd, item.topic, item.partition, extra))
        elif roll < 0.11 and isinstance(event, TicketVolumeObserved):
            hour = int((event.interval_start - T0) / timedelta(hours=1))
            late = volume(hour, 3, delay=timedelta(hours=2, minutes=30), event_id=f"late-{extra}")
            out.append(Inbound(late, item.topic, item.partition, extra))
        elif roll < 0.14 and isinstance(event, TicketVolumeObserved):
            for k in range(3):  # same event time (same release) as this report, other queues
                twin = event.model_copy(
                    update={"queue_id": f"burst{k}", "id": f"burst{k}-{event.id}"}
                )
                out.append(Inbound(twin, item.topic, item.partition, extra + k))
        extra += 10
    return out


def calls_of(batches: Sequence[Sequence[Inbound]], rng: random.Random) -> list[Call]:
    calls: list[Call] = []
    for batch in batches:
        calls.append(("ingest", list(batch)))
        if batch and rng.random() < 0.1:
            newest: datetime = max(i.event.time for i in batch)
            calls.append(("advance", newest + timedelta(minutes=rng.randint(0, 50))))
    return calls


def assert_identical(calls: Sequence[Call], restore_every: int = 0) -> Trace:
    fast = run(calls, restore_every=restore_every)
    with reference_walk():
        slow = run(calls, restore_every=restore_every)
    assert fast.counters == slow.counters
    assert fast.refused == slow.refused
    assert fast.wire == slow.wire
    assert fast.states == slow.states
    return fast


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    largest=st.sampled_from([1, 5, 60, 2000]),
    restore_every=st.sampled_from([0, 0, 3, 11]),
)
def test_fast_path_matches_the_step_by_step_walk(
    seed: int, largest: int, restore_every: int
) -> None:
    rec = greedy_recording()
    rng = random.Random(seed)
    order = noisy(interleave(rec.items, rng), rng)
    batches = [*cut(order, rng, largest), list(rec.late)]
    assert_identical(calls_of(batches, rng), restore_every)


def test_the_comparison_sees_every_kind_of_trouble() -> None:
    """Guard for the property above: the noise really produces each refusal, plans happen,
    and whole batches go through the fast path."""
    rec = greedy_recording()
    rng = random.Random(11)
    order = noisy(interleave(rec.items, rng), rng)
    trace = assert_identical(calls_of([order, list(rec.late)], rng))
    classes = {r[2] for r in trace.refused}
    assert {"LateEvent", "WrongDomain", "IntervalMismatch"} <= classes
    assert sum(c[0] for c in trace.counters) > 0  # duplicates
    assert len(trace.wire) > 20


def test_a_back_fill_in_one_batch_matches_too() -> None:
    """The benchmark's shape: many queues, weeks of hourly reports in one large batch, then
    more in small ones (no catalogue: nothing is planned, every close and prune is timed)."""
    rng = random.Random(5)
    items: list[Inbound] = []
    offset = 0
    grace = cfg().interval_grace
    for hour in range(24 * 9):
        for q in range(12):
            # q0 first (the first step, hence the dedupe prunes, off the hour); q5 reports
            # at the end of the grace: released at its interval's close, a step of both
            delay = timedelta(hours=1, seconds=rng.randint(1, 120))
            if q == 5:
                delay = timedelta(hours=1) + grace
            event = volume(hour, rng.randint(0, 50), queue_id=f"q{q}", delay=delay)
            items.append(Inbound(event, "ops.ticket-volume", q % 4, offset))
            offset += 1
    half = len(items) // 2
    calls: list[Call] = [("ingest", items[i : i + 211]) for i in range(0, half, 211)]
    calls += [("ingest", items[half:])]
    assert_identical(calls, restore_every=5)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40),  # id
            st.integers(-3 * 86_400, 6 * 86_400),  # seconds after T0
            st.sampled_from([0, 60, -330]),  # offset minutes of the time's zone
            st.booleans(),  # prune after it
        ),
        max_size=120,
    ),
    st.integers(60, 3 * 1440),
)
def test_dedupe_prune_forgets_exactly_the_expired_ids(
    ops: list[tuple[int, int, int, bool]], window_minutes: int
) -> None:
    """The bucketed prune keeps what the plain scan ``{k: t for k, t in seen.items() if
    t >= horizon}`` keeps, in the same order, through adds, repeats and restores."""
    from datetime import timezone

    from services.domain.dedupe import Deduper

    window = timedelta(minutes=window_minutes)
    dedupe, reference = Deduper(), Deduper()
    clock = T0
    for n, (key, seconds, offset, prune) in enumerate(ops):
        moment = (T0 + timedelta(seconds=seconds)).astimezone(timezone(timedelta(minutes=offset)))
        event_id = f"e{key}"
        new = event_id not in reference.seen
        if new:
            reference.seen[event_id] = moment
        assert dedupe.check_and_add(event_id, moment) is new
        if prune:
            clock = max(clock, moment)
            dedupe.prune(clock, window)
            if reference.pruned_at is None or clock >= reference.pruned_at + window / 4:
                horizon = clock - window
                reference.seen = {k: t for k, t in reference.seen.items() if t >= horizon}
                reference.pruned_at = clock
        assert list(dedupe.seen.items()) == list(reference.seen.items())
        assert dedupe.pruned_at == reference.pruned_at
        if n % 17 == 16:
            dedupe = Deduper.from_json(json.loads(json.dumps(dedupe.to_json())))
