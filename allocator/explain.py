"""Explanations: binding constraints, shadow prices, named relaxations, reasons for changes.

Why a separate step: an operations manager acts on a plan only if it says *why* — which limit
forced an outsourcing change, what one more internal FTE would be worth, and which constraint made
a shortfall unavoidable. Shadow prices come from the LP with every integer decision (provider
levels, engagement, tier switches) fixed at the MIP optimum, so they price marginal capacity
around the chosen plan rather than a relaxed, fictional one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from allocator.model.build import EPS, Built, Line
from allocator.plan import (
    BindingConstraint,
    Explanation,
    MarginalValue,
    ReasonCode,
    Relaxation,
)

TOL = 1e-6


@dataclass(frozen=True, slots=True)
class Solution:
    """Primal values of the MIP and (optionally) duals of the integer-fixed LP."""

    values: NDArray[np.float64]
    duals: NDArray[np.float64] | None


def row_activity(built: Built, values: NDArray[np.float64], row: int) -> float:
    """Σ coef·x of a row."""
    idx = built.lp.row_idx[row]
    coef = built.lp.row_coef[row]
    return float(np.dot(values[idx], coef)) if idx else 0.0


def at_upper(built: Built, values: NDArray[np.float64], row: int) -> bool:
    """True when the row is at its upper bound."""
    hi = built.lp.row_hi[row]
    return bool(hi < np.inf and row_activity(built, values, row) >= hi - TOL * max(1.0, abs(hi)))


def at_lower(built: Built, values: NDArray[np.float64], row: int) -> bool:
    """True when the row is at its lower bound."""
    lo = built.lp.row_lo[row]
    return bool(lo > -np.inf and row_activity(built, values, row) <= lo + TOL * max(1.0, abs(lo)))


def _saving(sol: Solution, row: int | None) -> float:
    """Objective saved by relaxing a row by one unit (−dual for a minimisation)."""
    if sol.duals is None or row is None:
        return 0.0
    return float(-sol.duals[row])


def level_at(line: Line, values: NDArray[np.float64], t: int) -> float:
    """Contracted FTE of a line in period ``t``."""
    v = line.n[t]
    if v is None:
        return line.fixed[t]
    return float(round(values[v])) * line.block


def _marginal_rate(line: Line, level: float) -> float:
    rate = line.rate.tiers[0].rate_per_hour
    for tier in line.rate.tiers:
        if level + EPS >= tier.from_fte:
            rate = tier.rate_per_hour
    return rate


def _segment(segments: tuple[tuple[int, int], ...], start: int) -> range:
    """Periods of the level segment starting at ``start`` (a level row binds on all of them)."""
    for a, b in segments:
        if a == start:
            return range(a, b)
    return range(start, start + 1)


def _binding(built: Built, sol: Solution) -> list[BindingConstraint]:
    p = built.problem
    v = sol.values
    out: list[BindingConstraint] = []

    by_team: dict[int, list[int]] = {}
    for (j, t), row in sorted(built.team_rows.items()):
        if at_upper(built, v, row) and built.lp.row_hi[row] > EPS:
            by_team.setdefault(j, []).append(t)
    for j, periods in sorted(by_team.items()):
        prices = [_saving(sol, built.team_rows[(j, t)]) for t in periods]
        out.append(
            BindingConstraint(
                "team_capacity",
                p.teams[j].id,
                tuple(periods),
                max(prices) if sol.duals is not None else None,
                f"all productive FTE of team {p.teams[j].id} used",
            )
        )
    for name, rows, test in (
        ("provider_max", built.provider_max_rows, at_upper),
        ("provider_min", built.provider_min_rows, at_lower),
    ):
        by_prov: dict[int, list[int]] = {}
        for (j, start), row in sorted(rows.items()):
            engaged = built.engaged.get((j, start))
            if engaged is not None and v[engaged] < 0.5:
                continue
            if test(built, v, row):
                by_prov.setdefault(j, []).extend(_segment(built.segments[j], start))
        for j, periods in sorted(by_prov.items()):
            out.append(
                BindingConstraint(name, p.providers[j].id, tuple(periods), None, "contract limit")
            )
    if sol.duals is not None:
        by_line: dict[int, list[int]] = {}
        for (k, _d, start), row in sorted(built.window_rows.items()):
            if abs(sol.duals[row]) > TOL:
                by_line.setdefault(k, []).extend(_segment(built.lines[k].segments, start))
        for k, periods in sorted(by_line.items()):
            line = built.lines[k]
            out.append(
                BindingConstraint(
                    "frozen_window",
                    f"{p.providers[line.provider].id}/{line.skill}",
                    tuple(sorted(set(periods))),
                    None,
                    "lead time / notice keeps the level at committed + pending",
                )
            )
    core: dict[int, list[int]] = {}
    for (k, t), row in sorted(built.core_rows.items()):
        if (
            at_lower(built, v, row)
            and row_activity(built, v, row) >= 0
            and any(v[y] > TOL for (_j, tt), y in built.classes[k].y.items() if tt == t)
        ):
            core.setdefault(k, []).append(t)
    for k, periods in sorted(core.items()):
        cls = built.classes[k]
        names = ",".join(p.streams[i].id for i in cls.streams)
        out.append(BindingConstraint("core_in_house", names, tuple(periods), None, "core share"))
    for j, row in sorted(built.concentration_rows.items()):
        if at_upper(built, v, row) and row_activity(built, v, row) > -np.inf:
            total = v[built.total_outsourced] if built.total_outsourced is not None else 0.0
            if total > TOL:
                out.append(
                    BindingConstraint(
                        "concentration_cap",
                        p.providers[j].id,
                        (),
                        _saving(sol, row) if sol.duals is not None else None,
                        "provider at the vendor-concentration cap",
                    )
                )
    if built.budget_row is not None and (
        at_upper(built, v, built.budget_row)
        or (built.overrun is not None and v[built.overrun] > TOL)
    ):
        out.append(
            BindingConstraint(
                "budget_cap",
                "horizon",
                (),
                _saving(sol, built.budget_row) if sol.duals is not None else None,
                "spend reaches the budget cap",
            )
        )
    for cls in built.classes:
        if not cls.teams and not cls.providers:
            out.append(
                BindingConstraint(
                    "compliance",
                    ",".join(p.streams[i].id for i in cls.streams),
                    (),
                    None,
                    "no team or provider may take this work (skill/region/clearance/certs)",
                )
            )
    return out


def _relaxations(
    built: Built,
    sol: Solution,
    cover: NDArray[np.float64],
    binding: list[BindingConstraint],
) -> list[Relaxation]:
    p = built.problem
    hours = p.request.period_hours
    out: list[Relaxation] = []
    bind_by: dict[tuple[str, str], set[int]] = {}
    for b in binding:
        bind_by.setdefault((b.name, b.subject), set()).update(b.periods)
    for i, stream in enumerate(p.streams):
        req = built.reqs[i]
        periods: list[int] = []
        amount = 0.0
        for t in range(p.request.horizon_periods):
            short = req.required_fte[t] - float(cover[i, t])
            if short > 1e-4:
                periods.append(t)
                amount += short * hours
        if not periods:
            continue
        cls = built.classes[built.stream_class[i]]
        forced: list[str] = []
        if not cls.teams and not cls.providers:
            forced.append("compliance")
        pset = set(periods)
        for j in cls.teams:
            if bind_by.get(("team_capacity", p.teams[j].id), set()) & pset:
                forced.append("team_capacity")
                break
        for j in cls.providers:
            pid = p.providers[j].id
            if bind_by.get(("provider_max", pid), set()) & pset:
                forced.append("provider_max")
            if bind_by.get(("frozen_window", f"{pid}/{stream.skill}"), set()) & pset:
                forced.append("frozen_window")
            if ("concentration_cap", pid) in bind_by:
                forced.append("concentration_cap")
        if not cls.providers and cls.teams:
            forced.append("no_eligible_provider")
        if ("budget_cap", "horizon") in bind_by:
            forced.append("budget_cap")
        if cls.core and any(b.name == "core_in_house" for b in binding):
            forced.append("core_in_house")
        if not forced:
            forced.append("sla_tradeoff")
        out.append(
            Relaxation(
                "unmet_demand",
                stream.id,
                amount,
                tuple(dict.fromkeys(forced)),
                tuple(periods),
                "required FTE-hours not staffed; priced by the SLA penalty",
            )
        )
    if built.overrun is not None and sol.values[built.overrun] > TOL:
        out.append(
            Relaxation(
                "budget_overrun",
                "horizon",
                float(sol.values[built.overrun]),
                ("budget_cap",),
                (),
                "covering demand costs more than the cap; overrun priced by budget_overrun_penalty",
            )
        )
    return out


def _marginals(built: Built, sol: Solution) -> list[MarginalValue]:
    if sol.duals is None:
        return []
    p = built.problem
    T = p.request.horizon_periods
    hours = p.request.period_hours
    out: list[MarginalValue] = []
    skills = sorted({s for team in p.teams for s in team.skills})
    for skill in skills:
        best: tuple[float, float, int | None] = (0.0, 0.0, None)
        for j, team in enumerate(p.teams):
            if skill not in team.skills:
                continue
            per_t = [_saving(sol, built.team_rows.get((j, t))) for t in range(T)]
            horizon = sum(max(0.0, s) for s in per_t)
            peak = max(per_t) if per_t else 0.0
            if horizon > best[1] or best[2] is None:
                best = (peak, horizon, int(np.argmax(per_t)) if per_t else None)
        out.append(MarginalValue("internal_skill", skill, best[0], best[1], best[2]))
    for j, prov in enumerate(p.providers):
        if not prov.active:
            continue
        lines = [ln for ln in built.lines if ln.provider == j]
        net_t: list[float] = []
        for t in range(T):
            nets = []
            for ln in lines:
                gross = _saving(sol, ln.capacity_rows[t])
                price = hours * _marginal_rate(ln, level_at(ln, sol.values, t))
                nets.append(gross - price)
            if not lines:
                nets.append(-hours * min(r.tiers[0].rate_per_hour for r in prov.contract.rates))
            net_t.append(max(nets))
        peak = max(net_t)
        out.append(
            MarginalValue(
                "provider",
                prov.id,
                peak,
                sum(max(0.0, s) for s in net_t),
                int(np.argmax(net_t)),
            )
        )
    return out


def explain(built: Built, sol: Solution, cover: NDArray[np.float64]) -> Explanation:
    """The plan's explanation: binding constraints, marginal values, relaxations (``cover``:
    :func:`~allocator.model.build.cover_matrix` of the plan)."""
    binding = _binding(built, sol)
    notes: list[str] = []
    if sol.duals is None:
        notes.append("marginal values not computed (compute_marginals=False or LP failed)")
    notes.append(
        "SLA shortfall is priced on the concave envelope of the Erlang service-level curve; "
        "expected_sl in the service table uses the exact curve"
    )
    return Explanation(
        binding=tuple(binding),
        marginal_values=tuple(_marginals(built, sol)),
        relaxations=tuple(_relaxations(built, sol, cover, binding)),
        notes=tuple(notes),
    )


def change_reasons(
    built: Built,
    sol: Solution,
    line_index: int,
    period: int,
    direction: str,
    pending: bool,
    binding: tuple[BindingConstraint, ...],
) -> tuple[ReasonCode, ...]:
    """Reason codes of a level change of a line effective at ``period``."""
    p = built.problem
    line = built.lines[line_index]
    prov = p.providers[line.provider]
    if not prov.active:
        return (ReasonCode.SUSPENDED,)
    reasons: list[ReasonCode] = []
    if pending:
        reasons.append(ReasonCode.PENDING_CHANGE)
    demand_now = _skill_demand(built, line, period)
    demand_before = _skill_demand(built, line, period - 1) if period > 0 else None
    if direction == "up":
        if demand_before is None or demand_now > demand_before + EPS:
            reasons.append(ReasonCode.DEMAND_INCREASE)
    elif demand_before is None or demand_now < demand_before - EPS:
        reasons.append(ReasonCode.DEMAND_DECREASE)
    total = sum(
        level_at(ln, sol.values, period) for ln in built.lines if ln.provider == line.provider
    )
    c = prov.contract
    if total > EPS and abs(total - c.min_fte) < 1e-6 and c.min_fte > 0:
        reasons.append(ReasonCode.CONTRACT_MINIMUM)
    if abs(total - c.max_fte) < 1e-6:
        reasons.append(ReasonCode.CONTRACT_MAXIMUM)
    names = {(b.name, b.subject) for b in binding}
    if ("concentration_cap", prov.id) in names:
        reasons.append(ReasonCode.CONCENTRATION_CAP)
    if direction == "down" and ("budget_cap", "horizon") in names:
        reasons.append(ReasonCode.BUDGET_CAP)
    if any(b.name == "core_in_house" and period in b.periods for b in binding):
        reasons.append(ReasonCode.CORE_IN_HOUSE)
    if not reasons:
        reasons.append(ReasonCode.COST_SAVING)
    return tuple(reasons)


def _skill_demand(built: Built, line: Line, t: int) -> float:
    total = 0.0
    for cls in built.classes:
        if cls.skill == line.skill and line.provider in cls.providers:
            total += sum(built.reqs[i].required_fte[t] for i in cls.streams)
    return total
