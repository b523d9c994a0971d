"""Decisions do not depend on how the input was batched or interleaved.

The issue's promise: "a recorded stream replayed into fresh topics gives the same decisions".
A replay differs from the original run in two ways the core cannot see coming: Kafka cuts the
input into other batches, and the partitions (each in order) interleave differently. Here a
closed-loop scenario — several queues, a spike, corrections, a contract and a roster change,
provider answers and timeouts — is recorded once with its partition coordinates, then
delivered again in random interleavings of its partitions (each event's disorder below the
allowed lateness) cut into random batches, sometimes restoring the processor from its JSON
state in between. Every delivery must give byte-identical outputs, the same refusals and the
same final state as the recording run.
"""

from __future__ import annotations

import functools
import itertools
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.policies import AllocationPolicy, GreedyPolicy
from schemas import (
    AllocationLogged,
    AllocationPlanned,
    CapacityRequested,
    CapacityResponded,
    DeadLetterStage,
    Event,
    ResponseStatus,
    encode,
)
from services.domain import DomainProcessor, Inbound, PlannerConfig, dump_state, load_state
from tests.test_domain_support import (
    COMMON,
    DOMAIN,
    SKILL,
    T0,
    config,
    contract,
    queue,
    requests,
    respond,
    team,
    volume,
)

NETWORK = "network"
HOURS = 40
#: (queue id, skill, reports per hour after the interval end in minutes, base arrivals)
QUEUES = (("sd", SKILL, 0, 12), ("net", NETWORK, 3, 6), ("hr", SKILL, 7, 4))
PARTITIONS = 2


def cfg() -> PlannerConfig:
    return config()


def offer(provider_id: str, rate: float, at: datetime = T0) -> Event:
    return contract(provider_id, rate, at=at, lead_h=6.0, notice_h=12.0, skills=(SKILL, NETWORK))


def scenario() -> list[Event]:
    """The input of the operations side, in event-time order (answers come from the loop)."""
    events: list[Event] = [
        queue("sd"),
        queue("net", skill=NETWORK),
        queue("hr"),
        team(),
        offer("cheap", 25.0),
        offer("pricey", 35.0),
    ]
    for hour in range(HOURS):
        for queue_id, _, minute, base in QUEUES:
            spike = queue_id == "sd" and 20 <= hour < 27
            arrivals = 200 if spike else base + hour % 3
            delay = timedelta(hours=1, minutes=minute)
            events.append(volume(hour, arrivals, queue_id=queue_id, delay=delay))
        if hour in (10, 22):  # a correction 20 minutes after the interval end (within grace)
            events.append(
                volume(
                    hour,
                    150 if hour == 22 else 30,
                    delay=timedelta(hours=1, minutes=20),
                    event_id=f"fix-sd-{hour}",
                )
            )
    events.append(offer("pricey", 30.0, at=T0 + timedelta(hours=18, minutes=30)))
    events.append(team(fte=8.0, at=T0 + timedelta(hours=28, minutes=15)))
    wrong = queue("elsewhere").model_copy(
        update={"domain": "us", "id": "wrong-domain", "time": T0 + timedelta(hours=12)}
    )
    events.append(wrong)
    return sorted(events, key=lambda e: e.time)


def answer_of(request: CapacityRequested) -> ResponseStatus | None:
    """Cheap rejects big ups and accepts the rest; pricey never answers (timeouts)."""
    if request.provider_id == "pricey":
        return None
    big = request.target_fte - request.current_fte >= 3
    return ResponseStatus.REJECTED if big else ResponseStatus.ACCEPTED


class Recorder:
    """Gives each event the coordinates it would have in the input topics (key-partitioned)."""

    def __init__(self) -> None:
        self.next_offset: dict[tuple[str, int], int] = {}

    def item(self, event: Event) -> Inbound:
        topic = type(event).topic
        partition = zlib.crc32(event.key.encode()) % PARTITIONS
        offset = self.next_offset.get((topic, partition), 0)
        self.next_offset[(topic, partition)] = offset + 1
        return Inbound(event, topic, partition, offset)


Refused = tuple[str, DeadLetterStage, str, str]


@dataclass
class Outcome:
    """Everything a delivery produced, in a comparable form."""

    wire: list[bytes] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    state: dict[str, object] = field(default_factory=dict)
    plans: int = 0
    log_kinds: set[str] = field(default_factory=set)
    delivered: list[Inbound] = field(default_factory=list)

    def add(self, events: Sequence[Event]) -> None:
        for event in events:
            message = encode(event)
            self.wire.append(message.value + b"|" + repr(message.headers).encode())
            self.plans += isinstance(event, AllocationPlanned)
            if isinstance(event, AllocationLogged):
                self.log_kinds.add(event.kind)


def restored(proc: DomainProcessor) -> DomainProcessor:
    state = load_state(dump_state(proc.to_state()))  # the bytes the worker's table stores
    return DomainProcessor(DOMAIN, proc.config, state)


def deliver(
    batches: Sequence[Sequence[Inbound]],
    policy: AllocationPolicy,
    *,
    restore_at: frozenset[int] = frozenset(),
    on_output: Callable[[list[Event], DomainProcessor], list[Inbound]] | None = None,
) -> Outcome:
    """The shell's loop over ``batches``; restores the processor from JSON after the calls
    numbered in ``restore_at``; ``on_output`` may answer with more input (the live loop)."""
    proc = DomainProcessor(DOMAIN, cfg())
    outcome = Outcome()
    calls = 0
    queue_: list[Sequence[Inbound]] = list(batches)
    answers: list[Sequence[Inbound]] = []  # delivered before the next batch, in answer order
    while answers or queue_:
        batch = answers.pop(0) if answers else queue_.pop(0)
        outcome.delivered += batch
        result = proc.ingest(batch)
        while True:
            out: list[Event] = list(result.log)
            out += proc.run_due(policy)
            outcome.add(out)
            outcome.refused += [(i.event.id, s, c, r) for i, s, c, r in result.refused]
            if on_output is not None:
                extra = on_output(out, proc)
                if extra:
                    answers.append(extra)
            calls += 1
            if calls in restore_at:
                proc = restored(proc)
            if not result.more:
                break
            result = proc.ingest(())
    outcome.refused.sort(key=lambda r: (r[0], r[1].value))
    outcome.state = proc.to_state()
    return outcome


@dataclass(frozen=True)
class Recording:
    items: tuple[Inbound, ...]
    late: tuple[Inbound, ...]
    outcome: Outcome


def record(policy: AllocationPolicy, hours: int = HOURS) -> Recording:
    """Run the closed loop once (hour batches, providers answering 10 minutes after the newest
    event time) and record every input with its coordinates, answers included."""
    recorder = Recorder()
    end = T0 + timedelta(hours=hours + 2)
    by_hour: dict[int, list[Inbound]] = {}
    for event in scenario():
        if event.time < end:
            by_hour.setdefault(int((event.time - T0) / timedelta(hours=1)), []).append(
                recorder.item(event)
            )
    batches = [by_hour[h] for h in sorted(by_hour)]
    answers: list[CapacityResponded] = []

    def answer(out: list[Event], proc: DomainProcessor) -> list[Inbound]:
        seen = proc.state.watermark
        assert seen is not None
        extra: list[Inbound] = []
        for request in requests(out):
            status = answer_of(request)
            if status is not None:
                response = respond(request, status, at=seen + timedelta(minutes=10))
                answers.append(response)
                extra.append(recorder.item(response))
        return extra

    # late on purpose: far behind the final watermark, delivered after everything else
    late_answer = CapacityResponded(
        id="late-answer",
        time=T0 + timedelta(hours=3),
        request_id="request-of-long-ago",
        provider_id="cheap",
        status=ResponseStatus.ACCEPTED,
        confirmed_fte=1.0,
        effective_at=T0 + timedelta(hours=9),
        **COMMON,
    )
    late = (recorder.item(volume(2, 99, event_id="late-volume")), recorder.item(late_answer))
    outcome = deliver([*batches, late], policy, on_output=answer)
    assert answers, "the scenario exercises provider answers"
    items = tuple(outcome.delivered[: -len(late)])
    return Recording(items, late, outcome)


@functools.cache
def greedy_recording() -> Recording:
    return record(GreedyPolicy())


def release(item: Inbound, config: PlannerConfig) -> datetime:
    event = item.event
    lateness = config.lateness if type(event).__name__ == "TicketVolumeObserved" else None
    return event.time + (config.control_lateness if lateness is None else lateness)


def interleave(items: Sequence[Inbound], rng: random.Random) -> list[Inbound]:
    """A random merge of the partitions (each kept in order) in which no event arrives after
    the watermark passed its release time (disorder < lateness): at each step, any partition
    head whose time would not push the watermark past a waiting event's release."""
    config = cfg()
    streams: dict[tuple[str, int], list[Inbound]] = {}
    for item in items:
        streams.setdefault((item.topic, item.partition), []).append(item)
    for stream in streams.values():
        assert stream == sorted(stream, key=lambda i: i.event.time), "partitions in time order"
        stream.reverse()  # pop() from the end = the head
    out: list[Inbound] = []
    while streams:
        # nothing may push the watermark past the release time of any event still to come;
        # the partition with the earliest head always qualifies
        deadline = min(release(i, config) for s in streams.values() for i in s)
        allowed = [k for k in sorted(streams) if streams[k][-1].event.time <= deadline]
        key = rng.choice(allowed)
        out.append(streams[key].pop())
        if not streams[key]:
            del streams[key]
    return out


def cut(items: Sequence[Inbound], rng: random.Random, largest: int) -> list[list[Inbound]]:
    batches: list[list[Inbound]] = []
    i = 0
    while i < len(items):
        size = rng.randint(1, largest)
        batches.append(list(items[i : i + size]))
        i += size
    return batches


def assert_same(got: Outcome, want: Outcome) -> None:
    assert got.plans == want.plans
    assert got.wire == want.wire
    assert got.refused == want.refused
    assert got.state == want.state


# ---- the recording itself ------------------------------------------------------------------


def test_the_recording_exercises_what_it_should() -> None:
    rec = greedy_recording()
    assert rec.outcome.plans >= 20
    assert {"request.accepted", "request.rejected", "request.timeout"} <= rec.outcome.log_kinds
    refused = {r[0]: (r[1], r[2]) for r in rec.outcome.refused}
    assert refused["late-volume"] == (DeadLetterStage.LATE, "LateEvent")
    assert refused["late-answer"] == (DeadLetterStage.LATE, "LateEvent")
    assert refused["wrong-domain"] == (DeadLetterStage.PROCESS, "WrongDomain")
    # the recorded order itself respects the disorder bound: nothing else was refused late
    assert {k for k, (s, _) in refused.items() if s is DeadLetterStage.LATE} <= {
        "late-volume",
        "late-answer",
        # answers that came after a re-plan superseded their request, or after a timeout
        *(k for k, (_, c) in refused.items() if c == "StaleResponse"),
    }


def test_canonical_order_in_one_batch_and_one_event_per_batch_agree() -> None:
    rec = greedy_recording()
    whole = deliver([list(rec.items), list(rec.late)], GreedyPolicy())
    singles = deliver([[i] for i in rec.items] + [list(rec.late)], GreedyPolicy())
    assert_same(whole, rec.outcome)
    assert_same(singles, rec.outcome)


# ---- random batching, interleaving and restores ---------------------------------------------


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    largest=st.sampled_from([1, 7, 40, 400]),
    restores=st.integers(min_value=0, max_value=3),
)
def test_any_batching_interleaving_and_restore_gives_identical_outputs(
    seed: int, largest: int, restores: int
) -> None:
    rec = greedy_recording()
    rng = random.Random(seed)
    order = interleave(rec.items, rng)
    batches = [*cut(order, rng, largest), list(rec.late)]
    calls = len(batches) + rec.outcome.plans  # an upper bound on ingest calls
    restore_at = frozenset(rng.randint(1, calls) for _ in range(restores))
    got = deliver(batches, GreedyPolicy(), restore_at=restore_at)
    assert_same(got, rec.outcome)


def test_interleavings_really_disorder_the_input() -> None:
    """Guard for the test above: the merges are not just the recorded order."""
    rec = greedy_recording()
    order = interleave(rec.items, random.Random(7))
    times = [i.event.time for i in order]
    inversions = sum(1 for a, b in itertools.pairwise(times) if b < a)
    assert order != list(rec.items) and inversions > 20
    watermark = times[0]
    for item in order:  # and they respect the bound the core relies on
        assert release(item, cfg()) >= watermark
        watermark = max(watermark, item.event.time)


def test_with_the_optimiser_too() -> None:
    from allocator import SolverOptions
    from allocator.policies import OptimiserPolicy

    policy = OptimiserPolicy(SolverOptions(time_limit_s=20, compute_marginals=False))
    rec = record(policy, hours=24)
    rng = random.Random(2026)
    batches = [*cut(interleave(rec.items, rng), rng, 25), list(rec.late)]
    got = deliver(batches, policy, restore_at=frozenset({3, 17}))
    assert_same(got, rec.outcome)
