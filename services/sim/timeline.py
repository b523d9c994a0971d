"""What a closed-loop run did, interval by interval: the data behind the report's charts.

Why a recorder next to (not inside) the loop: ``flexforce evaluate`` only needs totals, the
report needs time series — demand, capacity in place per source, routed agents, service level,
costs, requests and answers, plans. :class:`Recorder` wraps one :meth:`ServiceModel.step` at a
time and reads the model's running totals before and after, so the outcome model stays the one
source of truth and both loops (in process, :func:`run_recorded`; through Kafka,
:mod:`services.sim.demo`) record the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, cast

from allocator.plan import Plan
from schemas import CapacityRequested, CapacityResponded, Event
from services.sim.controllers import Controller, PlannerController
from services.sim.demand import DemandTrace, Interval, load_demand
from services.sim.loop import LoopResult, World, build_world, run_loop
from services.sim.outcome import ServiceModel
from services.sim.scenario import Scenario

__all__ = [
    "DecisionRecord",
    "IntervalRecord",
    "PlanRecord",
    "RecordedRun",
    "Recorder",
    "RecordingModel",
    "Timeline",
    "run_recorded",
]


@dataclass(slots=True)
class IntervalRecord:
    start: datetime
    arrivals: dict[str, int]
    required_fte: dict[str, float]
    """Agents the outcome model needs per queue for the offered load (arrivals + backlog)."""
    routed_fte: dict[str, float]
    teams_fte: dict[str, float]
    """Productive FTE of each in-house team."""
    providers_fte: dict[str, float]
    """FTE in place per provider (all skills)."""
    service_level: dict[str, float | None]
    """Share of this interval's judged tickets that met the SLA (None: nothing judged)."""
    backlog: dict[str, float]
    cost: dict[str, float]
    """Spend of the interval: internal, providers, churn, penalties."""


@dataclass(slots=True)
class DecisionRecord:
    at: datetime
    provider_id: str
    skill: str
    from_fte: float
    to_fte: float
    request_id: str
    answer: str = "unanswered"
    confirmed_fte: float | None = None
    answered_at: datetime | None = None


@dataclass(slots=True)
class PlanRecord:
    as_of: datetime
    cost_total: float
    cost_providers: float
    solve_seconds: float
    status: str
    policy: str


@dataclass(slots=True)
class Timeline:
    """The series of one run (measured window only) plus its decisions and plans."""

    scenario: str
    domain: str
    interval_minutes: int
    targets: dict[str, float]
    intervals: list[IntervalRecord] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)
    plans: list[PlanRecord] = field(default_factory=list)

    @property
    def queues(self) -> list[str]:
        return sorted(self.targets)

    def request(self, req: CapacityRequested) -> None:
        if any(d.request_id == req.request_id for d in self.decisions):
            return
        self.decisions.append(
            DecisionRecord(
                req.time,
                req.provider_id,
                req.skill,
                req.current_fte,
                req.target_fte,
                req.request_id,
            )
        )

    def answer(self, resp: CapacityResponded) -> None:
        for d in self.decisions:
            if d.request_id == resp.request_id and d.answer == "unanswered":
                d.answer = resp.status.value
                d.confirmed_fte = resp.confirmed_fte
                d.answered_at = resp.time

    def plan(self, as_of: datetime, plan: Plan, seconds: float) -> None:
        self.plans.append(
            PlanRecord(
                as_of,
                plan.costs.total,
                plan.costs.providers,
                seconds,
                str(plan.stats.status),
                plan.policy,
            )
        )

    def to_json(self) -> dict[str, Any]:
        return cast(dict[str, Any], _jsonable(asdict(self)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(slots=True)
class Recorder:
    """Steps the outcome model and appends one :class:`IntervalRecord` per measured interval."""

    model: ServiceModel
    timeline: Timeline

    def step(
        self,
        start: datetime,
        demand: Mapping[str, Interval],
        lines: Mapping[tuple[str, str], float],
        *,
        measure: bool,
    ) -> dict[str, float]:
        model = self.model
        if not measure:
            return model.step(start, demand, lines, measure=measure)
        required = {s.id: self._required(s.id, demand) for s in model.streams}
        before = {q: (sc.met, sc.judged, sc.penalty) for q, sc in model.scores.items()}
        spend = (model.spend.internal, model.spend.providers, model.spend.churn)
        agents = model.step(start, demand, lines, measure=measure)
        sl: dict[str, float | None] = {}
        penalties = 0.0
        for q, sc in model.scores.items():
            met, judged, penalty = before[q]
            sl[q] = (sc.met - met) / (sc.judged - judged) if sc.judged - judged > 1e-9 else None
            penalties += sc.penalty - penalty
        providers: dict[str, float] = {}
        for (pid, _), fte in lines.items():
            providers[pid] = providers.get(pid, 0.0) + fte
        self.timeline.intervals.append(
            IntervalRecord(
                start=start,
                arrivals={q: demand[q].arrivals if q in demand else 0 for q in model.scores},
                required_fte=required,
                routed_fte=dict(agents),
                teams_fte={t.id: t.productive_fte(0) for t in model.teams},
                providers_fte=dict(sorted(providers.items())),
                service_level=sl,
                backlog=dict(model.backlog),
                cost={
                    "internal": model.spend.internal - spend[0],
                    "providers": model.spend.providers - spend[1],
                    "churn": model.spend.churn - spend[2],
                    "penalties": penalties,
                },
            )
        )
        return agents

    def _required(self, stream_id: str, demand: Mapping[str, Interval]) -> float:
        model = self.model
        stream = next(s for s in model.streams if s.id == stream_id)
        item = demand.get(stream_id, Interval(0, None))
        aht = item.aht_s or model.default_aht[stream_id]
        hours = model.interval_minutes / 60.0
        if stream.sla.kind == "answer_within":
            offered = item.arrivals + model.backlog[stream_id]
            if offered <= 1e-9:
                return 0.0
            return float(model.required_agents(stream, offered, aht))
        open_h = sum(c.left_h for c in model.cohorts[stream_id])
        return (open_h + item.arrivals * aht / 3600.0) / hours


class RecordingModel:
    """A :class:`ServiceModel` stand-in for :func:`services.sim.loop.run_loop`: ``step`` goes
    through a :class:`Recorder`, everything else to the real model."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def step(
        self,
        start: datetime,
        demand: Mapping[str, Interval],
        lines: Mapping[tuple[str, str], float],
        *,
        measure: bool,
    ) -> dict[str, float]:
        return self._recorder.step(start, demand, lines, measure=measure)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recorder.model, name)


class _RecordingController:
    """Records the requests a controller sends and the answers it is given."""

    def __init__(self, inner: Controller, timeline: Timeline, start: datetime) -> None:
        self.inner = inner
        self.timeline = timeline
        self.start = start
        self.stats = inner.stats

    def warm(self, events: Sequence[Event]) -> None:
        self.inner.warm(events)

    def tick(self, now: datetime, events: Sequence[Event]) -> list[CapacityRequested]:
        for event in events:
            if isinstance(event, CapacityResponded):
                self.timeline.answer(event)
        out = self.inner.tick(now, events)
        if now > self.start:
            for req in out:
                self.timeline.request(req)
        return out


class _RecordingPolicy:
    """Wraps an allocation policy to record each plan's cost and solve time."""

    def __init__(self, inner: Any, timeline: Timeline, start: datetime) -> None:
        self.inner = inner
        self.timeline = timeline
        self.start = start

    @property
    def name(self) -> str:
        return str(self.inner.name)

    def plan(self, problem: Any) -> Plan:
        started = time.perf_counter()
        plan: Plan = self.inner.plan(problem)
        if plan.as_of >= self.start:
            self.timeline.plan(plan.as_of, plan, time.perf_counter() - started)
        return plan


@dataclass(slots=True)
class RecordedRun:
    result: LoopResult
    timeline: Timeline
    seconds: float
    controller: Controller
    """The controller as it ended (a :class:`PlannerController` holds the domain state)."""


def new_timeline(scenario: Scenario, trace: DemandTrace) -> Timeline:
    targets = {q.id: q.sla.target for q in scenario.queues}
    targets |= {p.id: 0.9 for p in scenario.projects}
    return Timeline(scenario.name, scenario.domain, trace.interval_minutes, targets)


def run_recorded(
    scenario: Scenario,
    policy: str = "optimiser",
    *,
    trace: DemandTrace | None = None,
    progress: Callable[[datetime], None] | None = None,
) -> RecordedRun:
    """The in-process closed loop of ``flexforce evaluate`` for one policy, recorded."""
    from services.sim import evaluate as ev

    trace = trace or load_demand(scenario)
    world: World = build_world(scenario, trace)
    timeline = new_timeline(scenario, trace)
    controller = ev._controller(policy, scenario, world)
    if isinstance(controller, PlannerController):
        controller.policy = cast(Any, _RecordingPolicy(controller.policy, timeline, scenario.start))
    real_model = world.model
    world.model = cast(ServiceModel, RecordingModel(Recorder(real_model, timeline)))
    started = time.perf_counter()
    try:
        result = run_loop(
            world,
            cast(Controller, _RecordingController(controller, timeline, scenario.start)),
            progress,
        )
    finally:
        world.model = real_model
    return RecordedRun(result, timeline, time.perf_counter() - started, controller)
