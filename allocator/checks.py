"""Independent verification of every hard constraint on a plan from any policy.

Why: "never silently wrong" needs a second opinion that shares no code with the thing it
checks. The checker reads only the problem's domain objects and the plan's decisions
(assignments, line levels, changes, costs, service) and recomputes everything else — costs
through :mod:`allocator.costing`, which the tests cross-check against the optimiser's own
read-back of its MIP. It returns a list of :class:`Violation` (empty = the plan is sound) instead
of raising, so a benchmark can count violations and a test can show all of them at once.

Semantics follow the domain docs (``allocator/domain.py``):

* assignments are productive FTE; a team's total per period ≤ its productive FTE;
* a provider's line level is contracted productive FTE; work on a line ≤ its level;
* a provider's total level, when > 0, is within [min, max], and every line is whole blocks —
  except where the level *is* the committed + pending baseline inside a lead-time/notice window
  (the plan cannot change it there, so it is not the plan's fault);
* inside the lead-time window a line may not rise except as the baseline rises (level ≤
  baseline); inside the notice window it may not fall except as the baseline falls (level ≥
  baseline) — this is also how pending changes are honoured;
* a line's level is constant inside each of the provider's level segments
  (``AllocationProblem.level_segments``: block starts, window ends, pending effective periods);
* suspended providers have level 0 and no work from period 0 (no notice applies);
* the core share, the concentration cap (over the horizon, on assigned FTE-hours) and the
  budget cap (overrun only as priced, reported slack) hold; unmet demand is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from allocator.changes import problem_line_steps
from allocator.costing import all_lines, cover_of, plan_costs
from allocator.demand import StreamRequirement, stream_requirements
from allocator.domain import RESTRICTED_CLEARANCE, AllocationProblem
from allocator.plan import Plan

TOL = 1e-6
"""Absolute tolerance on FTE quantities (solver tolerances are ~1e-9 relative)."""
COST_REL_TOL = 1e-5
COST_ABS_TOL = 1e-3


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: which constraint, on which entity, in which period (None = horizon)."""

    constraint: str
    entity: str
    period: int | None
    detail: str

    def __str__(self) -> str:
        where = "horizon" if self.period is None else f"period {self.period}"
        return f"{self.constraint} [{self.entity} @ {where}]: {self.detail}"


def _levels(plan: Plan) -> dict[tuple[str, str], tuple[float, ...]]:
    return {(ln.provider_id, ln.skill): ln.levels for ln in plan.provider_levels}


def _level(levels: dict[tuple[str, str], tuple[float, ...]], pid: str, skill: str, t: int) -> float:
    series = levels.get((pid, skill))
    return series[t] if series is not None else 0.0


def _close(a: float, b: float, rel: float = COST_REL_TOL, abs_: float = COST_ABS_TOL) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def check_plan(
    problem: AllocationProblem,
    plan: Plan,
    reqs: tuple[StreamRequirement, ...] | None = None,
) -> list[Violation]:
    """Every hard-constraint violation in ``plan`` (empty when the plan is sound).

    ``reqs`` may pass precomputed stream requirements (they are a pure function of the problem).
    """
    reqs = reqs if reqs is not None else stream_requirements(problem)
    out: list[Violation] = []
    _check_shape(problem, plan, out)
    if out:
        return out
    _check_assignments(problem, plan, out)
    _check_levels(problem, plan, out)
    _check_changes(problem, plan, out)
    _check_policy(problem, plan, out)
    _check_service_and_costs(problem, plan, reqs, out)
    return out


def _check_shape(problem: AllocationProblem, plan: Plan, out: list[Violation]) -> None:
    """Unknown ids, wrong horizon, malformed level series: nothing else can be checked then."""
    horizon = problem.request.horizon_periods
    if plan.horizon_periods != horizon:
        out.append(Violation("shape", "plan", None, f"horizon {plan.horizon_periods} != {horizon}"))
    streams = {s.id for s in problem.streams}
    teams = {t.id for t in problem.teams}
    providers = {p.id for p in problem.providers}
    for a in plan.assignments:
        known = teams if a.source_kind == "team" else providers
        if a.stream_id not in streams or a.source_id not in known:
            out.append(
                Violation("unknown_entity", f"{a.stream_id}<-{a.source_id}", a.period, "unknown id")
            )
        if not 0 <= a.period < horizon:
            out.append(Violation("shape", a.stream_id, a.period, "period outside the horizon"))
        if not math.isfinite(a.fte) or a.fte < -TOL:
            out.append(Violation("shape", a.stream_id, a.period, f"assignment fte {a.fte}"))
    lines = set(all_lines(problem))
    seen: set[tuple[str, str]] = set()
    for ln in plan.provider_levels:
        key = (ln.provider_id, ln.skill)
        if key not in lines:
            out.append(Violation("unknown_entity", f"{key[0]}/{key[1]}", None, "no such line"))
        if key in seen:
            out.append(Violation("shape", f"{key[0]}/{key[1]}", None, "line listed twice"))
        seen.add(key)
        if len(ln.levels) != horizon:
            out.append(Violation("shape", f"{key[0]}/{key[1]}", None, "levels of wrong length"))
        elif any(not math.isfinite(v) or v < -TOL for v in ln.levels):
            out.append(Violation("shape", f"{key[0]}/{key[1]}", None, "negative level"))
        if key in lines and abs(ln.committed_fte - problem.committed_level(*key)) > TOL:
            out.append(
                Violation("shape", f"{key[0]}/{key[1]}", None, "committed_fte differs from input")
            )


def _check_assignments(problem: AllocationProblem, plan: Plan, out: list[Violation]) -> None:
    """Eligibility of every assignment, team availability, and work within line levels."""
    streams = {s.id: s for s in problem.streams}
    teams = {t.id: t for t in problem.teams}
    providers = {p.id: p for p in problem.providers}
    team_use: dict[tuple[str, int], float] = {}
    line_use: dict[tuple[str, str, int], float] = {}
    for a in plan.assignments:
        s = streams[a.stream_id]
        ent = f"{a.stream_id}<-{a.source_id}"
        if a.fte <= TOL:
            continue
        if a.source_kind == "team":
            team = teams[a.source_id]
            team_use[(team.id, a.period)] = team_use.get((team.id, a.period), 0.0) + a.fte
            if s.skill not in team.skills:
                out.append(Violation("skill", ent, a.period, f"team lacks skill {s.skill}"))
            if not s.region_allowed(team.region):
                out.append(Violation("region", ent, a.period, f"team region {team.region}"))
            if s.sensitivity == "restricted" and RESTRICTED_CLEARANCE not in team.clearances:
                out.append(Violation("compliance", ent, a.period, "team without clearance"))
            continue
        prov = providers[a.source_id]
        key = (prov.id, s.skill, a.period)
        line_use[key] = line_use.get(key, 0.0) + a.fte
        if not prov.active:
            out.append(Violation("suspended", ent, a.period, "work given to a suspended provider"))
        if s.skill not in prov.contract.skills:
            out.append(Violation("skill", ent, a.period, f"no contract line for {s.skill}"))
        if not s.required_certifications <= prov.certifications:
            missing = sorted(s.required_certifications - prov.certifications)
            out.append(Violation("compliance", ent, a.period, f"missing certifications {missing}"))
        if not any(s.region_allowed(r) for r in prov.regions):
            kind = "compliance" if s.sensitivity == "restricted" else "region"
            out.append(Violation(kind, ent, a.period, f"regions {sorted(prov.regions)}"))
    for (tid, t), used in sorted(team_use.items()):
        avail = teams[tid].productive_fte(t)
        if used > avail + TOL:
            out.append(Violation("team_capacity", tid, t, f"{used:.6g} FTE assigned > {avail:.6g}"))
    levels = _levels(plan)
    for (pid, skill, t), used in sorted(line_use.items()):
        level = _level(levels, pid, skill, t)
        if used > level + TOL:
            out.append(
                Violation("line_capacity", f"{pid}/{skill}", t, f"{used:.6g} FTE > level {level}")
            )


def _check_levels(problem: AllocationProblem, plan: Plan, out: list[Violation]) -> None:
    """Min/max when engaged, blocks, level segments, lead time, notice, pending, suspension."""
    req = problem.request
    horizon = req.horizon_periods
    plan_levels = _levels(plan)
    for prov in problem.providers:
        c = prov.contract
        up = req.hours_to_periods(c.ramp_up_hours)
        notice = req.hours_to_periods(c.ramp_down_notice_hours)
        window = max(up, notice)
        series = {
            r.skill: [_level(plan_levels, prov.id, r.skill, t) for t in range(horizon)]
            for r in c.rates
        }
        bases = {r.skill: problem.baseline_level(prov.id, r.skill) for r in c.rates}
        for skill, levels in series.items():
            ent = f"{prov.id}/{skill}"
            base = bases[skill]
            prev = prev_base = problem.committed_level(prov.id, skill)
            for t, level in enumerate(levels):
                if not prov.active:
                    if level > TOL:
                        out.append(Violation("suspended", ent, t, f"level {level} > 0"))
                    continue
                at_base = abs(level - base[t]) <= TOL
                blocks = level / c.block_fte
                if not at_base and abs(blocks - round(blocks)) > 1e-6:
                    out.append(
                        Violation("block", ent, t, f"level {level} not whole {c.block_fte} blocks")
                    )
                if t < up:
                    if level > base[t] + TOL:
                        out.append(
                            Violation(
                                "lead_time", ent, t, f"level {level} above baseline {base[t]}"
                            )
                        )
                    if level - prev > max(0.0, base[t] - prev_base) + TOL:
                        out.append(Violation("lead_time", ent, t, f"rise {prev} -> {level}"))
                if t < notice:
                    if level < base[t] - TOL:
                        out.append(
                            Violation("notice", ent, t, f"level {level} below baseline {base[t]}")
                        )
                    if prev - level > max(0.0, prev_base - base[t]) + TOL:
                        out.append(Violation("notice", ent, t, f"fall {prev} -> {level}"))
                prev, prev_base = level, base[t]
        if not prov.active:
            continue
        for start, end in problem.level_segments(prov.id):
            for skill, levels in series.items():
                for t in range(start + 1, end):
                    if abs(levels[t] - levels[start]) > TOL:
                        out.append(
                            Violation(
                                "level_segment",
                                f"{prov.id}/{skill}",
                                t,
                                f"level {levels[t]} != {levels[start]} held since period {start} "
                                f"(levels change only at block starts)",
                            )
                        )
                        break
        for t in range(horizon):
            total = sum(series[s][t] for s in series)
            pinned = t < window and all(abs(series[s][t] - bases[s][t]) <= TOL for s in series)
            if total <= TOL or pinned:
                continue
            if total < c.min_fte - TOL:
                out.append(Violation("provider_min", prov.id, t, f"{total} < min {c.min_fte}"))
            if total > c.max_fte + TOL:
                out.append(Violation("provider_max", prov.id, t, f"{total} > max {c.max_fte}"))


def _check_changes(problem: AllocationProblem, plan: Plan, out: list[Violation]) -> None:
    """The change list is what the providers must be told (:mod:`allocator.changes`: the
    level steps, and the revisions of pending steps the plan does not follow), and new
    requests respect lead time/notice."""
    req = problem.request
    levels = _levels(plan)
    expected: set[tuple[str, str, int, float, float]] = set()
    for prov in problem.providers:
        for r in prov.contract.rates:
            path = [_level(levels, prov.id, r.skill, t) for t in range(req.horizon_periods)]
            for step in problem_line_steps(problem, prov, r.skill, path):
                expected.add(
                    (prov.id, r.skill, step.period, round(step.from_fte, 6), round(step.to_fte, 6))
                )
    listed: set[tuple[str, str, int, float, float]] = set()
    for ch in plan.changes:
        key = (
            ch.provider_id,
            ch.skill,
            ch.effective_period,
            round(ch.from_fte, 6),
            round(ch.to_fte, 6),
        )
        listed.add(key)
        ent = f"{ch.provider_id}/{ch.skill}"
        if (ch.direction == "up") != (ch.to_fte > ch.from_fte):
            out.append(Violation("changes", ent, ch.effective_period, "direction mismatch"))
        prov = problem.provider(ch.provider_id)
        if ch.pending or not prov.active:
            continue
        lead_h = (
            prov.contract.ramp_up_hours
            if ch.direction == "up"
            else prov.contract.ramp_down_notice_hours
        )
        lead = req.hours_to_periods(lead_h)
        kind = "lead_time" if ch.direction == "up" else "notice"
        if ch.effective_period < lead:
            out.append(
                Violation(kind, ent, ch.effective_period, f"new change inside {lead}-period window")
            )
        if ch.request_by_period > ch.effective_period - lead:
            out.append(Violation(kind, ent, ch.effective_period, "request_by_period too late"))
    for key in sorted(expected - listed):
        out.append(Violation("changes", f"{key[0]}/{key[1]}", key[2], "change not listed"))
    for key in sorted(listed - expected):
        out.append(Violation("changes", f"{key[0]}/{key[1]}", key[2], "listed change not a step"))


def _check_policy(problem: AllocationProblem, plan: Plan, out: list[Violation]) -> None:
    """Core in-house share per stream and period; vendor concentration over the horizon."""
    policy = problem.policy
    cover = cover_of(plan.assignments)
    share = policy.core_in_house_share
    if share > 0:
        for s in problem.streams:
            if not s.core:
                continue
            for t in range(problem.request.horizon_periods):
                total = cover.total.get((s.id, t), 0.0)
                inside = cover.internal.get((s.id, t), 0.0)
                if inside < share * total - TOL:
                    out.append(
                        Violation(
                            "core_in_house",
                            s.id,
                            t,
                            f"internal {inside:.6g} < {share} x cover {total:.6g}",
                        )
                    )
    cap = policy.vendor_concentration_cap
    per: dict[str, float] = {}
    for a in plan.assignments:
        if a.source_kind == "provider":
            per[a.source_id] = per.get(a.source_id, 0.0) + a.fte
    total = sum(per.values())
    for pid, mine in sorted(per.items()):
        if mine > cap * total + TOL * max(1.0, total):
            out.append(
                Violation(
                    "concentration_cap",
                    pid,
                    None,
                    f"{mine:.6g} of {total:.6g} outsourced FTE-periods > cap {cap}",
                )
            )


def _check_service_and_costs(
    problem: AllocationProblem,
    plan: Plan,
    reqs: tuple[StreamRequirement, ...],
    out: list[Violation],
) -> None:
    """Service table and unmet demand consistent; costs recomputed; budget overrun reported."""
    horizon = problem.request.horizon_periods
    cover = cover_of(plan.assignments).total
    svc = {(s.stream_id, s.period): s for s in plan.service}
    if len(svc) != len(plan.service) or len(svc) != len(problem.streams) * horizon:
        out.append(Violation("service", "plan", None, "service table incomplete or duplicated"))
    relaxed = {r.subject for r in plan.explanation.relaxations if r.slack == "unmet_demand"}
    for stream, req in zip(problem.streams, reqs, strict=True):
        unmet_total = 0.0
        for t in range(horizon):
            row = svc.get((stream.id, t))
            if row is None:
                continue
            staffed = cover.get((stream.id, t), 0.0)
            need = req.required_fte[t]
            if abs(row.staffed_fte - staffed) > TOL * max(1.0, staffed):
                out.append(
                    Violation(
                        "service", stream.id, t, f"staffed {row.staffed_fte} != assigned {staffed}"
                    )
                )
            if abs(row.required_fte - need) > TOL * max(1.0, need):
                out.append(
                    Violation("service", stream.id, t, f"required {row.required_fte} != {need}")
                )
            most = req.cap(t)  # = need, unless demand is uncertain (Policy.demand_cv)
            if staffed > most + TOL * max(1.0, most):
                out.append(Violation("service", stream.id, t, f"staffed {staffed} > need {most}"))
            if abs(row.unmet_fte - max(0.0, need - staffed)) > TOL * max(1.0, need):
                out.append(Violation("unmet_demand", stream.id, t, f"unmet {row.unmet_fte} wrong"))
            unmet_total += max(0.0, need - staffed)
        if unmet_total > 1e-4 and stream.id not in relaxed:
            out.append(
                Violation("unmet_demand", stream.id, None, "unmet demand not named in relaxations")
            )
    levels = {(ln.provider_id, ln.skill): ln.levels for ln in plan.provider_levels}
    ref = plan_costs(problem, reqs, plan.assignments, levels)
    got = plan.costs
    for name in (
        "internal",
        "providers",
        "churn",
        "sla_penalty",
        "unmet_penalty",
        "quality_penalty",
        "budget_overrun",
        "budget_overrun_penalty",
    ):
        mine, theirs = getattr(ref, name), getattr(got, name)
        if not _close(mine, theirs):
            out.append(
                Violation("cost", name, None, f"plan says {theirs:.6f}, recomputed {mine:.6f}")
            )
    cap = problem.policy.budget_cap
    if cap is not None and ref.spend > cap + COST_ABS_TOL:
        over = ref.spend - cap
        if not any(r.slack == "budget_overrun" for r in plan.explanation.relaxations):
            out.append(
                Violation(
                    "budget_cap", "horizon", None, f"spend over cap by {over:.2f}, unreported"
                )
            )
    if not _close(plan.stats.objective, got.total, rel=1e-6):
        out.append(
            Violation("cost", "objective", None, f"objective {plan.stats.objective} != {got.total}")
        )
