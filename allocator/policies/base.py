"""The one interface every allocation policy implements, and plan assembly shared by baselines.

Why a protocol (like KEDA's scalers: one interface, one file per implementation): the service
layer, the benchmark and the checker treat the optimiser and the baselines alike — give a
problem, get a :class:`~allocator.plan.Plan` — so a new policy is one new file, not a change to
every caller.

:func:`assemble_plan` turns plain decisions (assignments, line levels) into a full plan with
costs from :mod:`allocator.costing`, the service table, the capacity changes to request and a
minimal explanation, so heuristic plans carry the same information as optimised ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from allocator.changes import problem_line_steps
from allocator.costing import EPS, LineKey, plan_costs, service_table
from allocator.demand import StreamRequirement
from allocator.domain import AllocationProblem
from allocator.plan import (
    Assignment,
    CapacityChange,
    Explanation,
    Plan,
    ProviderLineLevels,
    ReasonCode,
    Relaxation,
    SolverStats,
    sorted_assignments,
)


@runtime_checkable
class AllocationPolicy(Protocol):
    """Anything that turns an :class:`AllocationProblem` into a :class:`Plan`."""

    @property
    def name(self) -> str:
        """Stable policy name, used in reports and as ``Plan.policy``."""
        ...

    def plan(self, problem: AllocationProblem) -> Plan:
        """The policy's plan for ``problem`` (pure: same problem, same plan)."""
        ...


def capacity_changes(
    problem: AllocationProblem,
    levels: Mapping[LineKey, tuple[float, ...]],
    reqs: tuple[StreamRequirement, ...],
) -> tuple[CapacityChange, ...]:
    """The level steps of every line as changes to request, with simple reason codes.

    A step that reproduces a step of the baseline (committed + pending) is the pending request
    being honoured; every other step is new and must be requested ``lead`` periods ahead.
    """
    req = problem.request
    demand_by_skill: dict[str, list[float]] = {}
    for stream, r in zip(problem.streams, reqs, strict=True):
        acc = demand_by_skill.setdefault(stream.skill, [0.0] * req.horizon_periods)
        for t, v in enumerate(r.required_fte):
            acc[t] += v
    out: list[CapacityChange] = []
    for prov in problem.providers:
        for rate in prov.contract.rates:
            key = (prov.id, rate.skill)
            if key not in levels:
                continue
            skill_demand = demand_by_skill.get(rate.skill, [0.0] * req.horizon_periods)
            for step in problem_line_steps(problem, prov, rate.skill, levels[key]):
                t, direction = step.period, step.direction
                pending = step.honoured or (step.in_window and prov.active)
                reasons: list[ReasonCode] = []
                if not prov.active:
                    reasons.append(ReasonCode.SUSPENDED)
                elif pending:
                    reasons.append(ReasonCode.PENDING_CHANGE)
                else:
                    if step.revision:
                        reasons.append(ReasonCode.PENDING_REVISED)
                    before = skill_demand[t - 1] if t > 0 else None
                    if direction == "up" and (before is None or skill_demand[t] > before):
                        reasons.append(ReasonCode.DEMAND_INCREASE)
                    elif direction == "down" and (before is None or skill_demand[t] < before):
                        reasons.append(ReasonCode.DEMAND_DECREASE)
                    total = sum(
                        levels.get((prov.id, r.skill), (0.0,) * (t + 1))[t]
                        for r in prov.contract.rates
                    )
                    if prov.contract.min_fte > 0 and abs(total - prov.contract.min_fte) < 1e-6:
                        reasons.append(ReasonCode.CONTRACT_MINIMUM)
                    if abs(total - prov.contract.max_fte) < 1e-6:
                        reasons.append(ReasonCode.CONTRACT_MAXIMUM)
                    if not reasons:
                        reasons.append(ReasonCode.COST_SAVING)
                out.append(step.change(prov, rate.skill, req, tuple(reasons), pending))
    return tuple(out)


def _relaxations(
    problem: AllocationProblem,
    reqs: tuple[StreamRequirement, ...],
    cover: Mapping[tuple[str, int], float],
    budget_overrun: float,
    forced_by: Mapping[str, tuple[str, ...]],
) -> tuple[Relaxation, ...]:
    hours = problem.request.period_hours
    out: list[Relaxation] = []
    for stream, r in zip(problem.streams, reqs, strict=True):
        periods: list[int] = []
        amount = 0.0
        for t, need in enumerate(r.required_fte):
            short = need - cover.get((stream.id, t), 0.0)
            if short > 1e-4:
                periods.append(t)
                amount += short * hours
        if periods:
            out.append(
                Relaxation(
                    "unmet_demand",
                    stream.id,
                    amount,
                    forced_by.get(stream.id, ("capacity",)),
                    tuple(periods),
                    "required FTE-hours not staffed by the heuristic",
                )
            )
    if budget_overrun > 1e-6:
        out.append(
            Relaxation(
                "budget_overrun",
                "horizon",
                budget_overrun,
                ("budget_cap",),
                (),
                "the heuristic's spend exceeds the cap; overrun priced by budget_overrun_penalty",
            )
        )
    return tuple(out)


def assemble_plan(
    problem: AllocationProblem,
    reqs: tuple[StreamRequirement, ...],
    assignments: Iterable[Assignment],
    levels: Mapping[LineKey, tuple[float, ...]],
    *,
    policy: str,
    backend: str,
    started: float,
    build_time_s: float = 0.0,
    forced_by: Mapping[str, tuple[str, ...]] | None = None,
    notes: tuple[str, ...] = (),
) -> Plan:
    """A complete :class:`Plan` from decisions, costed exactly like the optimiser's plans.

    ``levels`` may hold any contract line; lines at 0 throughout with nothing committed are
    dropped. Stats report the heuristic honestly: status ``heuristic``, best bound 0 (every
    cost term is non-negative, so 0 is a valid if weak bound) and the gap that implies.
    """
    items = sorted_assignments(a for a in assignments if a.fte > EPS)
    kept = {
        key: tuple(series)
        for key, series in levels.items()
        if max(series, default=0.0) > EPS
        or problem.committed_level(*key) > EPS
        or max(problem.baseline_level(*key)) > EPS
    }
    costs = plan_costs(problem, reqs, items, kept)
    service = service_table(problem, reqs, items)
    cover = {(s.stream_id, s.period): s.staffed_fte for s in service}
    lines = tuple(
        ProviderLineLevels(pid, skill, problem.committed_level(pid, skill), series)
        for (pid, skill), series in sorted(kept.items())
    )
    objective = costs.total
    stats = SolverStats(
        backend=backend,
        status="heuristic",
        objective=objective,
        best_bound=0.0,
        gap=1.0 if objective > 0 else 0.0,
        solve_time_s=time.perf_counter() - started - build_time_s,
        build_time_s=build_time_s,
    )
    explanation = Explanation(
        relaxations=_relaxations(problem, reqs, cover, costs.budget_overrun, forced_by or {}),
        notes=notes,
    )
    return Plan(
        policy=policy,
        as_of=problem.request.as_of,
        period_minutes=problem.request.period_minutes,
        horizon_periods=problem.request.horizon_periods,
        assignments=items,
        provider_levels=lines,
        changes=capacity_changes(problem, kept, reqs),
        costs=costs,
        service=service,
        stats=stats,
        explanation=explanation,
    )
