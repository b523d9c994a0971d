"""One cost function for every policy: money and penalties of a plan, from its decisions alone.

Why this exists: the optimiser reads its cost breakdown back from the MIP's variables, which
only a MIP has. The baselines (greedy, static) and the plan checker need the *same* numbers
from plain decisions — assignments and provider levels — so that "optimiser cost / greedy
cost" compares like with like. This module is deliberately written without reference to the
model's variables: the tests cross-check it against the optimiser's own read-back, which makes
two independent implementations of the objective agree on every random instance.

The objective, term by term (H = period length in hours):

* internal (``Policy.internal_cost``): rostered — Σ teams, periods rostered FTE × H ×
  cost_per_hour, whatever the plan assigns (the roster is paid); assigned — Σ assigned FTE × H ×
  cost_per_hour / (1 − shrinkage);
* providers: Σ lines, periods H × tiered hourly price of the line's contracted level;
* churn: churn_cost_per_fte × Σ |level[t] − level[t−1]|, with level[−1] the committed level,
  plus request_cost_per_fte × Σ |(level[t] − level[t−1]) − (base[t] − base[t−1])| with base
  the committed + pending baseline (what is asked of providers beyond what they were told);
* SLA (queues): weight × contacts × (target − min(target, curve(cover))), where the curve is
  the concave service-level envelope the optimiser also prices;
* unmet work (projects): weight × (work hours − H × cover); understaffing (queues, with
  ``Policy.understaffing_penalty_per_fte_hour``): price × H × max(0, required − cover);
* quality: Σ provider FTE × H × quality_penalty × (1 − quality score);
* budget overrun: max(0, spend − cap), priced at ``budget_overrun_penalty``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from allocator.demand import StreamRequirement
from allocator.domain import AllocationProblem
from allocator.plan import Assignment, CostBreakdown, StreamService

EPS = 1e-7
LineKey = tuple[str, str]
"""(provider id, skill) of a contract line."""


@dataclass(frozen=True, slots=True)
class Cover:
    """Productive FTE per (stream, period) and per source kind, summed from assignments."""

    total: dict[tuple[str, int], float]
    internal: dict[tuple[str, int], float]


def cover_of(assignments: Iterable[Assignment]) -> Cover:
    """Sum assignments into cover per (stream, period), total and internal."""
    total: dict[tuple[str, int], float] = {}
    internal: dict[tuple[str, int], float] = {}
    for a in assignments:
        key = (a.stream_id, a.period)
        total[key] = total.get(key, 0.0) + a.fte
        if a.source_kind == "team":
            internal[key] = internal.get(key, 0.0) + a.fte
    return Cover(total, internal)


def all_lines(problem: AllocationProblem) -> list[LineKey]:
    """Every contract line of every provider, in a stable order."""
    return [(p.id, r.skill) for p in problem.providers for r in p.contract.rates]


def plan_costs(
    problem: AllocationProblem,
    reqs: tuple[StreamRequirement, ...],
    assignments: Iterable[Assignment],
    levels: Mapping[LineKey, tuple[float, ...]],
) -> CostBreakdown:
    """Cost breakdown of a plan given by its assignments and line levels.

    Lines missing from ``levels`` are at 0 FTE in every period (a line committed above 0 and
    absent from ``levels`` therefore pays the churn of dropping to 0 at period 0).
    """
    items = list(assignments)
    hours = problem.request.period_hours
    horizon = problem.request.horizon_periods
    policy = problem.policy
    teams = {t.id: t for t in problem.teams}
    providers = {p.id: p for p in problem.providers}

    assigned = policy.internal_cost == "assigned"
    internal = 0.0
    if not assigned:
        for team in problem.teams:
            roster = sum(team.rostered_fte(t) for t in range(horizon))
            internal += hours * team.cost_per_hour * roster
    quality = 0.0
    for a in items:
        if a.source_kind == "team":
            if assigned:
                internal += a.fte * hours * teams[a.source_id].internal_rate
        else:
            q = providers[a.source_id].quality_score
            quality += a.fte * hours * policy.quality_penalty_per_fte_hour * (1.0 - q)

    provider_cost = 0.0
    churn = 0.0
    for pid, skill in all_lines(problem):
        prov = providers[pid]
        rate = prov.contract.rate(skill)
        series = levels.get((pid, skill), (0.0,) * horizon)
        base = problem.baseline_level(pid, skill)
        prev = prev_base = problem.committed_level(pid, skill)
        for t in range(horizon):
            level = series[t]
            provider_cost += hours * rate.cost_per_hour(level)
            churn += policy.churn_cost_per_fte * abs(level - prev)
            churn += policy.request_cost_per_fte * abs(level - prev - (base[t] - prev_base))
            prev, prev_base = level, base[t]

    cover = cover_of(items).total
    sla = 0.0
    unmet = 0.0
    for stream, req in zip(problem.streams, reqs, strict=True):
        weight = policy.penalty_weight(stream)
        for t in range(horizon):
            need = req.cap(t)
            if need <= EPS:
                continue
            got = min(cover.get((stream.id, t), 0.0), need)
            if stream.kind == "project":
                unmet += weight * (req.volume[t] - hours * got)
            else:
                level = min(req.target_sl, req.curves[t].value(got))
                sla += weight * req.volume[t] * (req.target_sl - level)
                short = max(0.0, req.required_fte[t] - got)
                unmet += policy.understaffing_penalty_per_fte_hour * hours * short

    spend = internal + provider_cost + churn
    overrun = 0.0
    if policy.budget_cap is not None:
        overrun = max(0.0, spend - policy.budget_cap)
    return CostBreakdown(
        internal=internal,
        providers=provider_cost,
        churn=churn,
        sla_penalty=sla,
        unmet_penalty=unmet,
        quality_penalty=quality,
        budget_overrun=overrun,
        budget_overrun_penalty=overrun * policy.budget_overrun_penalty,
    )


def service_table(
    problem: AllocationProblem,
    reqs: tuple[StreamRequirement, ...],
    assignments: Iterable[Assignment],
) -> tuple[StreamService, ...]:
    """Cover, unmet FTE and expected service level per stream and period (stream-major)."""
    cover = cover_of(assignments).total
    out: list[StreamService] = []
    horizon = problem.request.horizon_periods
    periods = np.arange(horizon, dtype=np.int64)
    for stream, req in zip(problem.streams, reqs, strict=True):
        staffed = np.asarray([cover.get((stream.id, t), 0.0) for t in range(horizon)])
        out.extend(stream_service_rows(stream.id, req, staffed, periods))
    return tuple(out)


def stream_service_rows(
    stream_id: str,
    req: StreamRequirement,
    staffed: NDArray[np.float64],
    periods: NDArray[np.int64],
) -> list[StreamService]:
    """One stream's service per period from its cover — shared by every policy's plan and the
    optimiser's read-back, so they report service the same way."""
    sls = req.expected_sl_all(periods, staffed)
    return [
        StreamService(
            period=t,
            stream_id=stream_id,
            required_fte=req.required_fte[t],
            staffed_fte=float(staffed[t]),
            unmet_fte=max(0.0, req.required_fte[t] - float(staffed[t])),
            expected_sl=float(sls[t]),
            target_sl=req.target_sl,
        )
        for t in range(len(periods))
    ]
