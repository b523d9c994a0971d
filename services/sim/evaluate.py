"""``flexforce evaluate``: the closed loop per policy, scored on what really happened.

Why this is the measure of decision quality: every policy runs against the same demand, the
same simulated providers (with their refusals, partial fills, delays and outages) and the same
outcome model, from an empty start; costs and service come from the capacity that was actually
in place, and every plan (and every routing of restricted work) is checked for compliance.

Policies: ``optimiser`` (the MIP, with the scenario's solver settings), ``greedy``, ``static``
(``StaticPolicy("once")``: levels sized for the horizon's peak by the first plan that holds
no provider capacity, then held — a fixed seat count; the worker's ``static`` is the same),
``reactive`` (the KEDA/HPA-style autoscaler, no planner), or ``all``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from allocator.policies import GreedyPolicy, StaticPolicy
from allocator.policies.reactive import ReactivePolicy
from services.domain import PlannerConfig
from services.sim.controllers import Controller, PlannerController, ReactiveController
from services.sim.demand import DemandTrace, load_demand
from services.sim.loop import LoopResult, allocator_policy, build_world, run_loop
from services.sim.scenario import Scenario
from services.sim.whatif import planning_policy

__all__ = ["POLICIES", "EvalResult", "evaluate", "planner_config", "render", "to_json"]

POLICIES = ("optimiser", "greedy", "reactive", "static")


def planner_config(scenario: Scenario) -> PlannerConfig:
    """The planner settings of the loop: the scenario's planning block + policy weights."""
    p = scenario.planning
    extra: dict[str, Any] = {}
    if p.forecast_method is not None:
        extra["forecast_method"] = p.forecast_method
    return PlannerConfig(
        period_minutes=p.period_minutes,
        horizon_periods=p.horizon_periods,
        allowed_lateness_minutes=p.allowed_lateness_minutes,
        control_lateness_minutes=p.control_lateness_minutes,
        min_replan_minutes=p.min_replan_minutes,
        max_staleness_minutes=p.max_staleness_minutes,
        service_target_margin=p.service_target_margin,
        report_solver_times=False,
        source=f"urn:flexforce:sim:{scenario.name}",
        policy=allocator_policy(scenario),
        **extra,
    )


@dataclass(slots=True)
class EvalResult:
    """One policy's run, summarised."""

    policy: str
    cost_internal: float
    cost_providers: float
    cost_churn: float
    penalties: float
    sla: dict[str, dict[str, float]]
    unmet_fte_hours: float
    scale_actions: int
    plans: int
    plan_failures: int
    compliance_violations: int
    violation_examples: list[str]
    runtime_s: float
    plan_seconds: float
    provider_fte_hours: dict[str, float]
    refused_events: int
    plan_storms: int
    provider_answers: dict[str, int] = field(default_factory=dict)
    late_rounds: int = 0
    """Through Kafka: rounds whose worker outputs arrived after the round was handed over
    (their requests reached the providers a round late); 0 in process."""

    @property
    def spend(self) -> float:
        return self.cost_internal + self.cost_providers + self.cost_churn

    @property
    def total(self) -> float:
        return self.spend + self.penalties

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "cost": {
                "internal": round(self.cost_internal, 2),
                "providers": round(self.cost_providers, 2),
                "churn": round(self.cost_churn, 2),
                "penalties": round(self.penalties, 2),
                "spend": round(self.spend, 2),
                "total": round(self.total, 2),
            },
            "sla": self.sla,
            "unmet_fte_hours": round(self.unmet_fte_hours, 2),
            "scale_actions": self.scale_actions,
            "plans": self.plans,
            "plan_failures": self.plan_failures,
            "compliance_violations": self.compliance_violations,
            "violation_examples": self.violation_examples[:10],
            "provider_fte_hours": {k: round(v, 2) for k, v in self.provider_fte_hours.items()},
            "provider_answers": self.provider_answers,
            "refused_events": self.refused_events,
            "plan_storms": self.plan_storms,
            "late_rounds": self.late_rounds,
            "runtime_s": round(self.runtime_s, 2),
            "plan_seconds": round(self.plan_seconds, 2),
        }


def _controller(name: str, scenario: Scenario, world: Any) -> Controller:
    if name == "reactive":
        return ReactiveController(
            policy=ReactivePolicy(),
            streams=world.catalogue.streams,
            teams=world.catalogue.team_objects,
            providers=dict(world.catalogue.providers),
            default_aht={q.id: q.default_handle_time_s for q in scenario.queues},
            domain=scenario.domain,
        )
    policy: Any
    if name == "optimiser":
        policy = planning_policy(scenario)
    elif name == "greedy":
        policy = GreedyPolicy()
    elif name == "static":
        policy = StaticPolicy("once")
    else:
        raise ValueError(f"unknown policy {name!r}: choose from {', '.join(POLICIES)} or all")
    return PlannerController(policy, planner_config(scenario))


def _summarise(name: str, result: LoopResult, runtime: float) -> EvalResult:
    model = result.world.model
    sla = {
        qid: {
            "attainment": round(score.attainment, 4),
            "target": score.target,
            "arrivals": score.arrivals,
            "intervals_on_target": round(score.intervals_on_target / score.intervals, 4)
            if score.intervals
            else 1.0,
            "abandoned": round(score.abandoned, 1),
            "peak_backlog": round(score.peak_backlog, 1),
        }
        for qid, score in sorted(model.scores.items())
    }
    violations = list(result.stats.violations) + list(model.violations)
    return EvalResult(
        policy=name,
        cost_internal=model.spend.internal,
        cost_providers=model.spend.providers,
        cost_churn=model.spend.churn,
        penalties=sum(s.penalty for s in model.scores.values()),
        sla=sla,
        unmet_fte_hours=sum(s.unmet_fte_hours for s in model.scores.values()),
        scale_actions=result.stats.requests,
        plans=result.stats.plans,
        plan_failures=result.stats.failures,
        compliance_violations=len(violations),
        violation_examples=violations[:10],
        runtime_s=runtime,
        plan_seconds=result.stats.plan_seconds,
        provider_fte_hours=dict(sorted(result.capacity_hours.items())),
        refused_events=result.stats.refused,
        plan_storms=result.stats.storms,
        provider_answers=dict(sorted(result.world.providers.answered.items())),
    )


def evaluate(
    scenario: Scenario,
    policies: Sequence[str],
    *,
    trace: DemandTrace | None = None,
    progress: Callable[[str, datetime], None] | None = None,
) -> list[EvalResult]:
    """Run the closed loop once per policy (fresh world each time) and summarise."""
    trace = trace or load_demand(scenario)
    out: list[EvalResult] = []
    for name in policies:
        world = build_world(scenario, trace)
        controller = _controller(name, scenario, world)
        started = time.perf_counter()
        tick = None if progress is None else partial(progress, name)
        result = run_loop(world, controller, tick)
        out.append(_summarise(name, result, time.perf_counter() - started))
    return out


def to_json(scenario: Scenario, results: Sequence[EvalResult]) -> dict[str, Any]:
    p = scenario.planning
    return {
        "scenario": scenario.name,
        "start": scenario.start.isoformat(),
        "duration_hours": scenario.duration_hours,
        "settings": {
            "period_minutes": p.period_minutes,
            "horizon_periods": p.horizon_periods,
            "min_replan_minutes": p.min_replan_minutes,
            "solver_backend": p.solver_backend,
            "solver_time_limit_s": p.solver_time_limit_s,
            "relative_gap": p.relative_gap,
        },
        "results": [r.to_dict() for r in results],
    }


def render(scenario: Scenario, results: Sequence[EvalResult], console: Console) -> None:
    """The side-by-side table (one column per policy)."""
    table = Table(
        title=f"{scenario.name}: {scenario.duration_hours:g} h from {scenario.start:%Y-%m-%d %H:%M}"
    )
    table.add_column("metric")
    for r in results:
        table.add_column(r.policy, justify="right")

    def row(label: str, fn: Callable[[EvalResult], str]) -> None:
        table.add_row(label, *(fn(r) for r in results))

    row("total cost", lambda r: f"{r.total:,.0f}")
    row("  internal", lambda r: f"{r.cost_internal:,.0f}")
    row("  providers", lambda r: f"{r.cost_providers:,.0f}")
    row("  churn", lambda r: f"{r.cost_churn:,.0f}")
    row("  penalties", lambda r: f"{r.penalties:,.0f}")
    for qid in results[0].sla if results else {}:
        target = results[0].sla[qid]["target"]

        def attained(r: EvalResult, q: str = qid) -> str:
            return f"{r.sla[q]['attainment']:.1%}"

        row(f"SLA {qid} (target {target:.0%})", attained)
    row("unmet FTE-hours", lambda r: f"{r.unmet_fte_hours:,.1f}")
    row("scale actions (requests)", lambda r: str(r.scale_actions))
    row("plans / scaler runs", lambda r: f"{r.plans} ({r.plan_failures} failed)")
    row("compliance violations", lambda r: str(r.compliance_violations))
    row("plan storms cut", lambda r: str(r.plan_storms))
    row("runtime s (planning)", lambda r: f"{r.runtime_s:.1f} ({r.plan_seconds:.1f})")
    console.print(table)


def write_json(path: Path, scenario: Scenario, results: Sequence[EvalResult]) -> None:
    path.write_text(json.dumps(to_json(scenario, results), indent=2) + "\n")
