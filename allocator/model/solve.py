"""Solve the allocation MIP and read the answer back into a :class:`~allocator.plan.Plan`."""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from allocator.demand import stream_requirements
from allocator.domain import AllocationProblem, SolverOptions
from allocator.errors import SolverFailure
from allocator.explain import Solution, change_reasons, explain, level_at
from allocator.model.build import Built, build_model
from allocator.model.lp import LpResult
from allocator.plan import (
    Assignment,
    CapacityChange,
    CostBreakdown,
    Direction,
    Explanation,
    Plan,
    ProviderLineLevels,
    SolverStats,
    StreamService,
    sorted_assignments,
)

TINY = 1e-9


def solve(problem: AllocationProblem, options: SolverOptions | None = None) -> Plan:
    """Optimal (to ``options.relative_gap``) plan for ``problem``.

    Shortfalls never make the model infeasible: they are priced (SLA penalty, unmet work,
    budget overrun) and named in ``plan.explanation.relaxations``. A time limit returns the best
    plan found with its gap; no plan at all raises :class:`SolverFailure`.
    """
    opts = options or SolverOptions()
    start = time.perf_counter()
    reqs = stream_requirements(problem)
    built = build_model(problem, reqs)
    build_time = time.perf_counter() - start
    res = built.lp.solve(
        opts.backend,
        time_limit_s=opts.time_limit_s,
        relative_gap=opts.relative_gap,
        threads=opts.threads,
        seed=opts.seed,
    )
    if not res.has_solution:
        raise SolverFailure(
            f"{opts.backend} returned {res.status} without a solution "
            f"after {res.wall_time_s:.2f}s (time limit {opts.time_limit_s}s)"
        )
    values = res.values.copy()
    fixed = {j: float(round(values[j])) for j in range(built.lp.num_vars) if built.lp.integer[j]}
    for j, v in fixed.items():
        values[j] = v
    duals: NDArray[np.float64] | None = None
    if opts.compute_marginals:
        lp = built.lp.solve_lp_fixed(fixed, opts.time_limit_s)
        if lp.status == "MPSOLVER_OPTIMAL":
            duals = lp.duals
    sol = Solution(values=values, duals=duals)
    return read_plan(built, sol, res, opts.backend, build_time)


def _stats(built: Built, res: LpResult, backend: str, build_time: float) -> SolverStats:
    obj = res.objective
    bound = min(res.best_bound, obj)
    gap = abs(obj - bound) / max(abs(obj), 1e-9)
    return SolverStats(
        backend=backend,
        status="optimal" if res.status == "MPSOLVER_OPTIMAL" else "feasible",
        objective=obj,
        best_bound=bound,
        gap=gap,
        solve_time_s=res.wall_time_s,
        build_time_s=build_time,
        num_variables=built.lp.num_vars,
        num_constraints=built.lp.num_rows,
        num_integer_variables=built.lp.num_integer,
    )


def _assignments(built: Built, v: NDArray[np.float64]) -> list[Assignment]:
    p = built.problem
    out: list[Assignment] = []
    for cls in built.classes:
        covers: dict[int, dict[int, float]] = {}
        for i in cls.streams:
            for t, c in enumerate(built.cover[i]):
                if c is not None and v[c] > TINY:
                    covers.setdefault(t, {})[i] = float(v[c])
        for (j, t), var in sorted(cls.x.items()):
            _split(out, covers.get(t, {}), float(v[var]), t, p.teams[j].id, "team", p)
        for (j, t), var in sorted(cls.y.items()):
            _split(out, covers.get(t, {}), float(v[var]), t, p.providers[j].id, "provider", p)
    return out


def _split(
    out: list[Assignment],
    covers: dict[int, float],
    amount: float,
    t: int,
    source: str,
    kind: str,
    p: AllocationProblem,
) -> None:
    total = sum(covers.values())
    if amount <= TINY or total <= TINY:
        return
    for i, c in sorted(covers.items()):
        fte = amount * c / total
        if fte > TINY:
            out.append(Assignment(t, p.streams[i].id, source, kind, fte))  # type: ignore[arg-type]


def _costs(built: Built, v: NDArray[np.float64]) -> CostBreakdown:
    def fam(name: str) -> float:
        terms = built.cost_vars[name]
        return built.const_costs[name] + sum(c * float(v[j]) for j, c in terms.items())

    over = float(v[built.overrun]) if built.overrun is not None else 0.0
    return CostBreakdown(
        internal=fam("internal"),
        providers=fam("providers"),
        churn=fam("churn"),
        sla_penalty=fam("sla"),
        unmet_penalty=fam("unmet"),
        quality_penalty=fam("quality"),
        budget_overrun=over,
        budget_overrun_penalty=over * built.problem.policy.budget_overrun_penalty,
    )


def _service(built: Built, v: NDArray[np.float64]) -> list[StreamService]:
    p = built.problem
    out: list[StreamService] = []
    for i, stream in enumerate(p.streams):
        req = built.reqs[i]
        for t in range(p.request.horizon_periods):
            c = built.cover[i][t]
            staffed = float(v[c]) if c is not None else 0.0
            need = req.required_fte[t]
            out.append(
                StreamService(
                    period=t,
                    stream_id=stream.id,
                    required_fte=need,
                    staffed_fte=staffed,
                    unmet_fte=max(0.0, need - staffed),
                    expected_sl=req.expected_sl(t, staffed),
                    target_sl=req.target_sl,
                )
            )
    return out


def _levels_and_changes(
    built: Built, sol: Solution, explanation: Explanation
) -> tuple[list[ProviderLineLevels], list[CapacityChange]]:
    p = built.problem
    req = p.request
    levels: list[ProviderLineLevels] = []
    changes: list[CapacityChange] = []
    for k, line in enumerate(built.lines):
        prov = p.providers[line.provider]
        lv = tuple(level_at(line, sol.values, t) for t in range(req.horizon_periods))
        levels.append(ProviderLineLevels(prov.id, line.skill, line.committed, lv))
        up_lead = req.hours_to_periods(prov.contract.ramp_up_hours)
        notice = req.hours_to_periods(prov.contract.ramp_down_notice_hours)
        prev = line.committed
        prev_base = line.committed
        for t, cur in enumerate(lv):
            base = line.baseline[t]
            if abs(cur - prev) > 1e-9:
                direction: Direction = "up" if cur > prev else "down"
                pending = (
                    abs(cur - base) < 1e-9
                    and abs(prev - prev_base) < 1e-9
                    and (abs(base - prev_base) > 1e-9)
                )
                lead = up_lead if direction == "up" else notice
                # Inside its window a change can only be the effect of a pending request.
                pending = pending or t < lead
                changes.append(
                    CapacityChange(
                        provider_id=prov.id,
                        skill=line.skill,
                        direction=direction,
                        from_fte=prev,
                        to_fte=cur,
                        effective_period=t,
                        effective_at=req.period_start(t),
                        request_by_period=0 if pending or not prov.active else max(0, t - lead),
                        reasons=change_reasons(
                            built, sol, k, t, direction, pending, explanation.binding
                        ),
                        pending=pending,
                    )
                )
            prev, prev_base = cur, base
    return levels, changes


def read_plan(built: Built, sol: Solution, res: LpResult, backend: str, build_time: float) -> Plan:
    """Turn solver values into domain output objects, in canonical (sorted) order."""
    p = built.problem
    explanation = explain(built, sol)
    levels, changes = _levels_and_changes(built, sol, explanation)
    return Plan(
        policy=f"optimiser:{backend}",
        as_of=p.request.as_of,
        period_minutes=p.request.period_minutes,
        horizon_periods=p.request.horizon_periods,
        assignments=sorted_assignments(_assignments(built, sol.values)),
        provider_levels=tuple(levels),
        changes=tuple(changes),
        costs=_costs(built, sol.values),
        service=tuple(_service(built, sol.values)),
        stats=_stats(built, res, backend, build_time),
        explanation=explanation,
    )
