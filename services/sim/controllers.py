"""The two ways capacity gets requested in the loop: the planner (``DomainProcessor`` + an
allocation policy) or the reactive autoscaler — both fed the same events, both emitting
``CapacityRequested`` to the same provider simulator.

Why both behind one small interface (:class:`Controller`): the evaluation must differ *only*
in the decision-maker; demand, providers and the outcome model are shared, so any difference
in cost or service is the policy's.

The planner controller drives the real functional core: ingest, stop at every due plan, plan
with the policy, check the plan with :func:`allocator.checks.check_plan` (every violation is
counted), ``apply_plan``, continue while ``more``. The reactive controller keeps the latest
observation per queue (its metric source), runs :class:`allocator.policies.reactive.ReactivePolicy`
each tick, turns actions into requests, treats an unanswered request as rejected at its
``respond_by``, and checks every action against the contract independently.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from allocator import AllocatorError
from allocator.checks import check_plan
from allocator.domain import Provider, Sla, Team, WorkStream
from allocator.policies import AllocationPolicy
from allocator.policies.reactive import (
    QueueObservation,
    ReactivePolicy,
    ReactiveState,
    ScaleAction,
)
from schemas import (
    CapacityRequested,
    CapacityResponded,
    Event,
    ProjectDemandChanged,
    ProjectStatus,
    ProviderContractUpdated,
    ResponseStatus,
    TicketVolumeObserved,
    capacity_request_id,
)
from services.domain import DomainProcessor, Inbound, PlannerConfig
from services.domain.catalogue import provider_of

__all__ = ["Controller", "PlannerController", "ReactiveController", "Stats"]

_EPS = 1e-9


@dataclass(slots=True)
class Stats:
    """What a controller did, for the evaluation report."""

    plans: int = 0
    failures: int = 0
    requests: int = 0
    plan_seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    refused: int = 0
    storms: int = 0
    """Ticks where the planner kept finding a plan due at one step and was cut off."""


class Controller(Protocol):
    stats: Stats

    def warm(self, events: Sequence[Event]) -> None:
        """History before the loop: train forecasts, decide nothing."""

    def tick(self, now: datetime, events: Sequence[Event]) -> list[CapacityRequested]:
        """Take the events of one tick (event time ≤ ``now``); return the requests to send."""


@dataclass(slots=True)
class PlannerController:
    """The functional core with one allocation policy, one processor per domain."""

    policy: AllocationPolicy
    config: PlannerConfig
    processors: dict[str, DomainProcessor] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    offset: int = 0
    max_plans_per_tick: int = 12
    """Guard against an urgent re-plan loop inside one tick (a request that times out at the
    step it was made re-triggers a plan that makes it again); counted in ``stats.storms``."""

    def _items(self, events: Sequence[Event]) -> dict[str, list[Inbound]]:
        out: dict[str, list[Inbound]] = {}
        for event in events:
            self.offset += 1
            out.setdefault(event.domain, []).append(
                Inbound(event, type(event).topic, 0, self.offset)
            )
        return out

    def _proc(self, domain: str) -> DomainProcessor:
        if domain not in self.processors:
            self.processors[domain] = DomainProcessor(domain, self.config)
        return self.processors[domain]

    def warm(self, events: Sequence[Event]) -> None:
        for domain, items in sorted(self._items(events).items()):
            proc = self._proc(domain)
            step = proc.ingest(items)
            self.stats.refused += len(step.refused)
            while step.more:
                step = proc.ingest(())
                self.stats.refused += len(step.refused)

    def tick(self, now: datetime, events: Sequence[Event]) -> list[CapacityRequested]:
        out: list[CapacityRequested] = []
        for domain, items in sorted(self._items(events).items()):
            proc = self._proc(domain)
            step = proc.ingest(items)
            plans = 0
            while True:
                self.stats.refused += len(step.refused)
                if plans < self.max_plans_per_tick:
                    out += self._plan(proc)
                    plans += 1
                elif plans == self.max_plans_per_tick:
                    self.stats.storms += 1  # see docs: an urgent re-plan loop at one step
                    plans += 1
                if not step.more:
                    break
                step = proc.ingest(())
        return out

    def _plan(self, proc: DomainProcessor) -> list[CapacityRequested]:
        trigger = proc.due()
        if trigger is None:
            return []
        started = time.perf_counter()
        try:
            problem = proc.problem(trigger)
            plan = self.policy.plan(problem)
        except AllocatorError as exc:
            self.stats.failures += 1
            proc.apply_failure(f"{type(exc).__name__}: {exc}", trigger)
            return []
        finally:
            self.stats.plan_seconds += time.perf_counter() - started
        self.stats.plans += 1
        self.stats.violations += [
            f"plan {trigger.as_of.isoformat()}: {v}" for v in check_plan(problem, plan)
        ]
        outputs = proc.apply_plan(plan, trigger)
        requests = [e for e in outputs if isinstance(e, CapacityRequested)]
        self.stats.requests += len(requests)
        return requests


@dataclass(slots=True)
class _Sent:
    request: CapacityRequested
    before: float


@dataclass(slots=True)
class ReactiveController:
    """The reactive autoscaler in the loop (see the module docstring)."""

    policy: ReactivePolicy
    streams: Sequence[WorkStream]
    teams: Sequence[Team]
    providers: dict[str, Provider]
    default_aht: Mapping[str, float]
    domain: str
    respond_window: timedelta = timedelta(hours=24)
    state: ReactiveState = field(default_factory=ReactiveState)
    last: dict[str, TicketVolumeObserved] = field(default_factory=dict)
    projects: dict[str, ProjectDemandChanged] = field(default_factory=dict)
    sent: dict[str, _Sent] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)

    def warm(self, events: Sequence[Event]) -> None:
        """A reactive scaler has no forecast: history only fills its metric source."""
        for event in events:
            if isinstance(event, TicketVolumeObserved):
                self.last[event.queue_id] = event

    def tick(self, now: datetime, events: Sequence[Event]) -> list[CapacityRequested]:
        for event in sorted(events, key=lambda e: (e.time, e.id)):
            if isinstance(event, TicketVolumeObserved):
                self.last[event.queue_id] = event
            elif isinstance(event, CapacityResponded):
                self._answer(event)
            elif isinstance(event, ProviderContractUpdated):
                self.providers[event.provider_id] = provider_of(event)
            elif isinstance(event, ProjectDemandChanged):
                self.projects[event.project_id] = event
        for rid in sorted(self.sent):
            sent = self.sent[rid]
            if sent.request.respond_by < now:  # silence until the deadline: rejected
                del self.sent[rid]
                self._feedback(sent, None, now)
        observations = [
            QueueObservation(
                stream=s,
                arrivals=float(obs.arrivals),
                aht_s=obs.mean_handle_time_s or self.default_aht[s.id],
                backlog=float(obs.backlog),
                interval_minutes=obs.interval_minutes,
            )
            for s in self.streams
            if (obs := self.last.get(s.id)) is not None
        ]
        observations += self._project_load(now)
        actions, self.state = self.policy.decide(
            now, observations, self.teams, list(self.providers.values()), self.state
        )
        out: list[CapacityRequested] = []
        for action in actions:
            self.stats.violations += self._check(action, now)
            request = self._request(action, now)
            self.sent[request.request_id] = _Sent(request, action.from_fte)
            out.append(request)
        self.stats.requests += len(out)
        self.stats.plans += 1
        return out

    def _project_load(self, now: datetime) -> list[QueueObservation]:
        """Running approved projects as resolve-within load (their weekly hours, per hour)."""
        out = []
        for pid, p in sorted(self.projects.items()):
            day = now.astimezone(UTC).date()
            if p.status is not ProjectStatus.APPROVED or not p.start <= day <= p.end:
                continue
            stream = WorkStream(
                id=pid,
                kind="project",
                skill=p.skill,
                sla=Sla.resolve_within(40.0),
                sensitivity=p.sensitivity.value,
                allowed_regions=frozenset(p.allowed_regions),
            )
            out.append(QueueObservation(stream, 1.0, p.hours_per_week / 168.0 * 3600.0, 0.0, 60))
        return out

    def _request(self, action: ScaleAction, now: datetime) -> CapacityRequested:
        plan_id = f"reactive:{now.isoformat()}"
        rid = capacity_request_id(plan_id, action.provider_id, action.skill, action.effective_at)
        return CapacityRequested(
            id=f"req-{rid}",
            source="urn:flexforce:sim:reactive",
            time=now,
            domain=self.domain,
            request_id=rid,
            provider_id=action.provider_id,
            skill=action.skill,
            current_fte=action.from_fte,
            target_fte=action.to_fte,
            effective_at=action.effective_at,
            respond_by=min(action.effective_at, now + self.respond_window),
            plan_id=plan_id,
            reasons=[action.reason],
        )

    def _answer(self, response: CapacityResponded) -> None:
        sent = self.sent.pop(response.request_id, None)
        if sent is None or response.time > sent.request.respond_by:
            return  # late or unknown: already treated as rejected
        confirmed = None if response.status is ResponseStatus.REJECTED else response.confirmed_fte
        self._feedback(sent, confirmed, response.time)

    def _feedback(self, sent: _Sent, confirmed: float | None, now: datetime) -> None:
        req = sent.request
        self.state = self.policy.on_answer(
            self.state,
            (req.provider_id, req.skill),
            confirmed=confirmed,
            before=sent.before,
            now=now,
            requested=req.target_fte,
        )

    def _check(self, action: ScaleAction, now: datetime) -> list[str]:
        """Independent contract check of one action (blocks, max, min, lead time, notice)."""
        prov = self.providers[action.provider_id]
        c = prov.contract
        out: list[str] = []
        where = f"{now.isoformat()} {action.provider_id}/{action.skill}"
        ratio = action.to_fte / c.block_fte
        if abs(ratio - round(ratio)) > 1e-6:
            out.append(f"{where}: {action.to_fte} is not whole {c.block_fte}-FTE blocks")
        if action.skill not in c.skills:
            out.append(f"{where}: no contract line")
        others = sum(
            self.state.line((prov.id, r.skill)).level for r in c.rates if r.skill != action.skill
        )
        total = others + action.to_fte
        if total > c.max_fte + 1e-6:
            out.append(f"{where}: provider total {total} above max_fte {c.max_fte}")
        if _EPS < total < c.min_fte - 1e-6:
            out.append(f"{where}: provider total {total} below min_fte {c.min_fte}")
        if prov.active:
            hours = c.ramp_up_hours if action.direction == "up" else c.ramp_down_notice_hours
            if action.effective_at < now + timedelta(hours=hours) - timedelta(seconds=1):
                out.append(f"{where}: effective before the lead time / notice")
        elif action.direction == "up":
            out.append(f"{where}: increase at a suspended provider")
        return out
