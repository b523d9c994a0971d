"""The closed loop, in process: operations → controller → providers → capacity in place →
service outcome → back to operations, stepping through event time one demand interval at a
time.

Why this order within a tick ``[t, t + Δ)``: the capacity in place at ``t`` serves the
interval's demand (outcome model); at ``t + Δ`` the operations system reports the interval
(arrivals, handle time and the backlog the outcome left), contract changes and project
approvals of the tick happen, providers send the answers that are due; the controller takes
all of it and returns requests, which providers receive at ``t + Δ``. No wall clock anywhere:
the same scenario gives the same result.

Phases: *history* (queues, rosters and demand before the lead-in only train the forecasts;
nothing is planned), *lead-in* (the full loop, not measured, so capacity with lead times is in
place; the provider contracts are published at its start), *measured* (``scenario.start`` to
``scenario.end``). ``flexforce evaluate --kafka`` feeds a worker the same events at the same
event times (services/sim/demo.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from allocator import Policy, Sla, WorkStream
from schemas import Event
from services.sim.controllers import Controller, Stats
from services.sim.demand import DemandTrace, Interval, load_demand
from services.sim.operations import Catalogue, OperationsSimulator, build_catalogue
from services.sim.outcome import ServiceModel
from services.sim.providers import ProviderSimulator
from services.sim.scenario import Scenario

__all__ = ["LoopResult", "World", "allocator_policy", "build_world", "run_loop"]


def allocator_policy(scenario: Scenario) -> Policy:
    """The scenario's weights as the allocator's :class:`Policy` (the same prices score every
    policy in the outcome model)."""
    w = scenario.policy
    return Policy(
        core_in_house_share=w.core_in_house_share,
        vendor_concentration_cap=w.vendor_concentration_cap,
        churn_cost_per_fte=w.churn_cost_per_fte,
        sla_penalty_per_contact=w.sla_penalty_per_contact,
        unmet_work_penalty_per_hour=w.unmet_work_penalty_per_hour,
        quality_penalty_per_fte_hour=w.quality_penalty_per_fte_hour,
        max_occupancy=w.max_occupancy,
        level_change_hours=w.level_change_hours,
        demand_cv=w.demand_cv,
        understaffing_penalty_per_fte_hour=w.understaffing_penalty_per_fte_hour,
        request_cost_per_fte=w.request_cost_per_fte,
    )


@dataclass(slots=True)
class World:
    """Everything one run shares between policies, rebuilt fresh per run (no state leaks)."""

    scenario: Scenario
    trace: DemandTrace
    catalogue: Catalogue
    ops: OperationsSimulator
    providers: ProviderSimulator
    model: ServiceModel


PROJECT_RESOLVE_HOURS = 40.0
"""Resolve-within target of project work (the planner's ``project_resolve_hours`` default)."""


def project_streams(scenario: Scenario) -> tuple[WorkStream, ...]:
    """Projects of the pipeline as work streams (served like incident work in the outcome)."""
    return tuple(
        WorkStream(
            id=p.id,
            kind="project",
            skill=p.skill,
            sla=Sla.resolve_within(PROJECT_RESOLVE_HOURS),
            sensitivity=p.sensitivity,
            allowed_regions=frozenset(p.allowed_regions),
        )
        for p in scenario.projects
    )


def project_work(scenario: Scenario, start: datetime, minutes: int) -> dict[str, Interval]:
    """Project work arriving in ``[start, start + minutes)``: one work package of the
    interval's share of ``hours_per_week``, once the project is approved and running."""
    out: dict[str, Interval] = {}
    for p in scenario.projects:
        if p.approved_at <= start and p.start <= start < p.end:
            hours = p.hours_per_week / 168.0 * minutes / 60.0
            out[p.id] = Interval(1, hours * 3600.0) if hours > 0 else Interval(0, None)
    return out


def build_world(scenario: Scenario, trace: DemandTrace | None = None) -> World:
    trace = trace or load_demand(scenario)
    catalogue = build_catalogue(scenario, trace.start, trace.interval_minutes)
    ops = OperationsSimulator(scenario, trace, catalogue)
    providers = ProviderSimulator(scenario.providers, scenario.domain, catalogue.contracts)
    model = ServiceModel(
        streams=catalogue.streams + project_streams(scenario),
        teams=catalogue.team_objects,
        providers=catalogue.providers,
        team_cost={t.id: t.cost_per_hour for t in scenario.teams},
        policy=allocator_policy(scenario),
        default_aht={q.id: q.default_handle_time_s for q in scenario.queues}
        | {p.id: 3600.0 for p in scenario.projects},
        interval_minutes=trace.interval_minutes,
    )
    return World(scenario, trace, catalogue, ops, providers, model)


@dataclass(slots=True)
class LoopResult:
    world: World
    stats: Stats
    ticks: int
    capacity_hours: dict[str, float]
    """FTE-hours in place per provider over the measured window."""


def run_loop(
    world: World,
    controller: Controller,
    progress: Callable[[datetime], None] | None = None,
) -> LoopResult:
    """Run the loop over the world's trace (see the module docstring)."""
    sc, trace, ops, providers, model = (
        world.scenario,
        world.trace,
        world.ops,
        world.providers,
        world.model,
    )
    lead_in = sc.start - timedelta(hours=sc.lead_in_hours)
    first = max(0, trace.index(lead_in))
    history: list[Event] = world.catalogue.in_house()
    for i in range(first):
        history += ops.volumes(i, {})
    controller.warm(history)
    capacity_hours: dict[str, float] = {}
    hours = trace.interval_minutes / 60.0
    ticks = 0
    for i in range(first, trace.length):
        start = ops.interval_start(i)
        end = start + trace.interval
        if start >= sc.end:
            break
        measure = start >= sc.start
        lines = providers.in_place(start)
        demand = {q: trace.at(q, i) for q in world.catalogue.queues}
        demand |= project_work(sc, start, trace.interval_minutes)
        model.step(start, demand, lines, measure=measure)
        if measure:
            for (pid, _), fte in lines.items():
                capacity_hours[pid] = capacity_hours.get(pid, 0.0) + fte * hours
        events: list[Event] = []
        if i == first:
            events += world.catalogue.contracts_at(start)
        events += ops.volumes(i, {q: model.open_tickets(q) for q in world.catalogue.queues})
        events += providers.contract_events(start, end)
        events += ops.projects(start, end)
        events += providers.due(end)
        events.sort(key=lambda e: (e.time, e.id))  # event-time order, as a broker would
        for request in controller.tick(end, events):
            providers.request(request, received_at=end)
        ticks += 1
        if progress is not None:
            progress(end)
    model.finish(sc.end)
    return LoopResult(world, controller.stats, ticks, capacity_hours)
