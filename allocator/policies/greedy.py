"""Greedy baseline: what a competent planner with a spreadsheet does, period by period.

Why it is in the package: the optimiser's value is only credible against a fair baseline. This
one respects every hard constraint a real planner respects — skills, clearances, regions and
certifications, suspended providers, contract max and min-when-engaged, FTE blocks, lead times,
notice and pending changes, team rosters, the core in-house share and the vendor-concentration
cap — and makes the sensible local choices:

1. internal first: every stream, hardest to place first (no provider option, then core), is
   covered by the cheapest eligible team with hours left;
2. then outsourced capacity already paid for (committed levels, levels inside notice windows);
3. then the provider whose *extra* capacity is cheapest per useful FTE — the tiered price of
   the added blocks, including the jump to the contract minimum when engaging a provider, plus
   churn and the quality penalty — within the contract and the concentration share;
4. finally, a provider level that dips and comes back is held through the dip when paying for
   the idle FTE costs less than the churn of releasing and re-hiring them.

What it does not do is look at the whole horizon at once: it cannot pre-hire ahead of a lead
time for a peak, trade a cheap partial cover against the SLA penalty, or pick block sizes and
tiers jointly across periods. That is the optimiser's job, and the gap between the two is what
the benchmark measures.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from allocator.costing import EPS, LineKey
from allocator.demand import StreamRequirement, stream_requirements
from allocator.domain import AllocationProblem, SkillRate
from allocator.plan import Assignment, Plan
from allocator.policies.base import assemble_plan


@dataclass(slots=True)
class _Line:
    """One contract line while planning: its terms, windows and chosen levels."""

    provider: int
    skill: str
    rate: SkillRate
    block: float
    up_lead: int
    notice: int
    committed: float
    base: tuple[float, ...]
    levels: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _PeriodState:
    """Mutable bookkeeping of one period's provider stage."""

    t: int
    remaining: list[float]
    used: dict[tuple[int, str], float]
    prov_used: list[float]
    out: list[Assignment]
    stream_ids: tuple[str, ...] = ()
    provider_ids: tuple[str, ...] = ()

    def assign(self, i: int, key: tuple[int, str], fte: float) -> None:
        """Give ``fte`` of stream ``i`` to the provider line ``key``."""
        self.out.append(
            Assignment(self.t, self.stream_ids[i], self.provider_ids[key[0]], "provider", fte)
        )
        self.used[key] += fte
        self.prov_used[key[0]] += fte
        self.remaining[i] -= fte


@dataclass(slots=True)
class Allocation:
    """Decisions of a greedy run: assignments, line levels and why demand went unmet."""

    assignments: list[Assignment]
    levels: dict[LineKey, tuple[float, ...]]
    forced_by: dict[str, tuple[str, ...]]


def _floor_block(x: float, block: float) -> float:
    return math.floor(x / block + 1e-9) * block


def _ceil_block(x: float, block: float) -> float:
    return math.ceil(x / block - 1e-9) * block


class GreedyEngine:
    """The period-by-period allocation shared by the greedy and the static policies.

    With ``fixed_levels`` the provider levels are given (static staffing) and only the
    assignments are greedy; otherwise levels are chosen as described in the module docstring.
    """

    def __init__(self, problem: AllocationProblem, reqs: tuple[StreamRequirement, ...]) -> None:
        self.p = problem
        self.reqs = reqs
        self.T = problem.request.horizon_periods
        self.H = problem.request.period_hours
        req = problem.request
        self.lines: dict[tuple[int, str], _Line] = {}
        for j, prov in enumerate(problem.providers):
            for rate in prov.contract.rates:
                key = (prov.id, rate.skill)
                self.lines[(j, rate.skill)] = _Line(
                    provider=j,
                    skill=rate.skill,
                    rate=rate,
                    block=prov.contract.block_fte,
                    up_lead=req.hours_to_periods(prov.contract.ramp_up_hours),
                    notice=req.hours_to_periods(prov.contract.ramp_down_notice_hours),
                    committed=problem.committed_level(*key),
                    base=problem.baseline_level(*key),
                )
        self.stream_ids = tuple(s.id for s in problem.streams)
        self.provider_ids = tuple(pr.id for pr in problem.providers)
        self.team_order: list[list[int]] = []
        self.prov_elig: list[list[int]] = []
        for stream in problem.streams:
            teams = [j for j, team in enumerate(problem.teams) if team.can_take(stream)]
            teams.sort(
                key=lambda j: (
                    problem.teams[j].cost_per_hour / (1.0 - problem.teams[j].shrinkage),
                    problem.teams[j].id,
                )
            )
            self.team_order.append(teams)
            self.prov_elig.append(
                [j for j, prov in enumerate(problem.providers) if prov.can_take(stream)]
            )
        # Hardest to place first: no provider option, then core streams, then the rest.
        self.order = sorted(
            range(len(problem.streams)),
            key=lambda i: (
                bool(self.prov_elig[i]),
                not problem.streams[i].core,
                problem.streams[i].id,
            ),
        )

    # -- per-period bounds --------------------------------------------------------------------
    def _bounds(self, line: _Line, t: int, prev: float) -> tuple[float, float]:
        """Lowest and highest level the line may take in ``t`` given the level in ``t − 1``."""
        prov = self.p.providers[line.provider]
        if not prov.active:
            return 0.0, 0.0
        base_prev = line.base[t - 1] if t > 0 else line.committed
        hi = _floor_block(prov.contract.max_fte, line.block)
        lo = 0.0
        if t < line.up_lead:
            hi = min(line.base[t], prev + max(0.0, line.base[t] - base_prev))
        if t < line.notice:
            lo = max(line.base[t], prev - max(0.0, base_prev - line.base[t]))
        return lo, max(lo, hi)

    def _pinned(self, j: int, t: int, level: dict[tuple[int, str], float]) -> bool:
        """All lines of provider ``j`` at their baseline inside a window (contract min exempt)."""
        lines = [ln for ln in self.lines.values() if ln.provider == j]
        return all(
            t < max(ln.up_lead, ln.notice) and abs(level[(j, ln.skill)] - ln.base[t]) < 1e-9
            for ln in lines
        )

    # -- the run --------------------------------------------------------------------------------
    def run(self, fixed_levels: dict[LineKey, tuple[float, ...]] | None = None) -> Allocation:
        """Allocate every period in order; returns assignments, levels and unmet reasons."""
        p = self.p
        policy = p.policy
        share = policy.core_in_house_share
        cap = policy.vendor_concentration_cap
        churn = policy.churn_cost_per_fte
        qpen = policy.quality_penalty_per_fte_hour
        out: list[Assignment] = []
        forced: dict[str, set[str]] = {}
        prev_level = {k: ln.committed for k, ln in self.lines.items()}
        provider_lines: dict[int, list[tuple[int, str]]] = {}
        for key in self.lines:
            provider_lines.setdefault(key[0], []).append(key)

        for t in range(self.T):
            remaining = [r.required_fte[t] for r in self.reqs]
            team_left = [team.productive_fte(t) for team in p.teams]
            internal = [0.0] * len(remaining)
            # 1. internal first, cheapest eligible team with hours left.
            for i in self.order:
                for j in self.team_order[i]:
                    if remaining[i] <= EPS:
                        break
                    take = min(remaining[i], team_left[j])
                    if take > EPS:
                        out.append(Assignment(t, p.streams[i].id, p.teams[j].id, "team", take))
                        remaining[i] -= take
                        team_left[j] -= take
                        internal[i] += take
                if remaining[i] > EPS and self.team_order[i]:
                    forced.setdefault(p.streams[i].id, set()).add("team_capacity")

            # 2. provider levels start at the lowest the contract allows (or the fixed level).
            level: dict[tuple[int, str], float] = {}
            lo: dict[tuple[int, str], float] = {}
            hi: dict[tuple[int, str], float] = {}
            for key, line in self.lines.items():
                pid = p.providers[key[0]].id
                if fixed_levels is not None:
                    v = fixed_levels.get((pid, key[1]), (0.0,) * self.T)[t]
                    lo[key] = hi[key] = level[key] = v
                else:
                    lo[key], hi[key] = self._bounds(line, t, prev_level[key])
                    level[key] = lo[key]
            used = dict.fromkeys(self.lines, 0.0)
            prov_used = [0.0] * len(p.providers)
            outsourceable = sum(remaining[i] for i in range(len(remaining)) if self.prov_elig[i])
            limit = cap * outsourceable if cap < 1.0 else math.inf

            st = _PeriodState(
                t, remaining, used, prov_used, out, self.stream_ids, self.provider_ids
            )
            assign = st.assign

            for i in self.order:
                if remaining[i] <= EPS or not self.prov_elig[i]:
                    if remaining[i] > EPS:
                        forced.setdefault(p.streams[i].id, set()).add(
                            "compliance" if not self.team_order[i] else "no_eligible_provider"
                        )
                    continue
                stream = p.streams[i]
                room = math.inf
                if stream.core and share > 0:
                    room = 0.0 if share >= 1.0 else internal[i] * (1.0 - share) / share
                    if room < remaining[i] - EPS:
                        forced.setdefault(stream.id, set()).add("core_in_house")
                outsourced = 0.0
                # 2a. capacity already paid for: best quality first.
                keys = [(j, stream.skill) for j in self.prov_elig[i]]
                keys = [k for k in keys if k in self.lines]
                keys.sort(key=lambda k: (-p.providers[k[0]].quality_score, p.providers[k[0]].id))
                for key in keys:
                    want = min(remaining[i], room - outsourced, limit - prov_used[key[0]])
                    take = min(want, level[key] - used[key])
                    if take > EPS:
                        assign(i, key, take)
                        outsourced += take
                if fixed_levels is not None:
                    continue
                # 3. add capacity where the extra FTE is cheapest per useful FTE.
                while remaining[i] > EPS and room - outsourced > EPS:
                    best: tuple[float, str, tuple[int, str], float, float] | None = None
                    for key in keys:
                        j = key[0]
                        prov = p.providers[j]
                        line = self.lines[key]
                        want = min(remaining[i], room - outsourced, limit - prov_used[j])
                        if want <= EPS:
                            continue
                        free = level[key] - used[key]
                        total = sum(level[k] for k in provider_lines[j])
                        top = min(hi[key], level[key] + prov.contract.max_fte - total)
                        top = level[key] + _floor_block(top - level[key], line.block)
                        new = level[key] + _ceil_block(max(0.0, want - free), line.block)
                        if prov.contract.min_fte > 0 and total < prov.contract.min_fte - EPS:
                            new = max(
                                new,
                                level[key] + _ceil_block(prov.contract.min_fte - total, line.block),
                            )
                        new = min(new, top)
                        if new <= level[key] + EPS:
                            continue
                        new_total = total - level[key] + new
                        if new_total < prov.contract.min_fte - EPS:
                            continue
                        useful = min(want, free + new - level[key])
                        if useful <= EPS:
                            continue
                        delta = self.H * (
                            line.rate.cost_per_hour(new) - line.rate.cost_per_hour(level[key])
                        )
                        delta += churn * (new - level[key])
                        delta += self.H * qpen * (1.0 - prov.quality_score) * useful
                        cand = (delta / useful, prov.id, key, new, useful)
                        if best is None or cand[:2] < best[:2]:
                            best = cand
                    if best is None:
                        break
                    _, _, key, new, useful = best
                    level[key] = new
                    assign(i, key, useful)
                    outsourced += useful
                if remaining[i] > EPS:
                    why = forced.setdefault(stream.id, set())
                    for key in keys:
                        ln = self.lines[key]
                        if t < ln.up_lead:
                            why.add("frozen_window")
                        if abs(level[key] - hi[key]) < EPS and t >= ln.up_lead:
                            why.add("provider_max")
                        if limit - prov_used[key[0]] <= EPS:
                            why.add("concentration_cap")
            if fixed_levels is None:
                self._fix_minimums(t, level, lo, hi, used, provider_lines)
            for key, v in level.items():
                self.lines[key].levels.append(v)
                prev_level[key] = v

        levels = {(p.providers[k[0]].id, k[1]): tuple(ln.levels) for k, ln in self.lines.items()}
        if fixed_levels is None:
            levels = self._hold_segments(self._hold_through_dips(levels))
            # Assign again within the held levels: the per-period pass placed work on levels
            # that may differ from the held ones (a cap cut), and idle held capacity is paid for.
            again = GreedyEngine(self.p, self.reqs).run(fixed_levels=levels)
            for sid, reasons in again.forced_by.items():
                forced.setdefault(sid, set()).update(reasons)
            return Allocation(
                again.assignments,
                levels,
                {sid: tuple(sorted(why)) for sid, why in sorted(forced.items())},
            )
        out = self._trim_concentration(out)
        return Allocation(
            out, levels, {sid: tuple(sorted(why)) for sid, why in sorted(forced.items())}
        )

    def _hold_segments(
        self, levels: dict[LineKey, tuple[float, ...]]
    ) -> dict[LineKey, tuple[float, ...]]:
        """Each line's level held constant over the provider's level segments, at its peak.

        Contracts change levels only at block starts (``AllocationProblem.level_segments``), so a
        planner sizes each block for its busiest period. Holding the per-line maximum keeps every
        per-period rule the first pass honoured: inside the lead-time window levels only fall
        within a segment (the maximum is the segment's first level), inside the notice window
        they only rise (the maximum is its last), whole blocks stay whole blocks, and a total
        that reached the contract minimum in one period keeps it. Only the contract maximum can
        break (lines peaking at different periods); then the largest lines are cut block by
        block, never below their lowest level of the segment (inside a notice window that is
        what the notice allows; outside the windows it is 0 or more).
        """
        p = self.p
        out = {k: list(v) for k, v in levels.items()}
        for j, prov in enumerate(p.providers):
            keys = [(prov.id, r.skill) for r in prov.contract.rates]
            c = prov.contract
            for start, end in p.level_segments(prov.id):
                floor = {k: min(out[k][start:end]) for k in keys}
                held = {k: max(out[k][start:end]) for k in keys}
                for k in sorted(keys, key=lambda k: (-held[k], k)):
                    block = self.lines[(j, k[1])].block
                    while (
                        sum(held.values()) > c.max_fte + EPS and held[k] - block >= floor[k] - EPS
                    ):
                        held[k] -= block
                for k in keys:
                    out[k][start:end] = [held[k]] * (end - start)
        return {k: tuple(v) for k, v in out.items()}

    def _fix_minimums(
        self,
        t: int,
        level: dict[tuple[int, str], float],
        lo: dict[tuple[int, str], float],
        hi: dict[tuple[int, str], float],
        used: dict[tuple[int, str], float],
        provider_lines: dict[int, list[tuple[int, str]]],
    ) -> None:
        """An engaged provider below its minimum: drop idle lines to 0 or raise to the minimum."""
        for j, keys in provider_lines.items():
            prov = self.p.providers[j]
            mn = prov.contract.min_fte
            total = sum(level[k] for k in keys)
            if mn <= 0 or total <= EPS or total >= mn - EPS or self._pinned(j, t, level):
                continue
            if all(used[k] <= EPS and lo[k] <= EPS for k in keys):
                for k in keys:
                    level[k] = 0.0
                continue
            for k in sorted(keys, key=lambda k: self.lines[k].rate.cost_per_hour(1.0)):
                total = sum(level[kk] for kk in keys)
                if total >= mn - EPS:
                    break
                line = self.lines[k]
                room = min(hi[k], level[k] + prov.contract.max_fte - total)
                level[k] = min(
                    level[k] + _ceil_block(mn - total, line.block),
                    level[k] + _floor_block(room - level[k], line.block),
                )

    def _hold_through_dips(
        self, levels: dict[LineKey, tuple[float, ...]]
    ) -> dict[LineKey, tuple[float, ...]]:
        """Hold a level through a dip when idle FTE cost less than releasing and re-hiring."""
        churn = self.p.policy.churn_cost_per_fte
        if churn <= 0:
            return levels
        out = {k: list(v) for k, v in levels.items()}
        for (j, skill), line in self.lines.items():
            prov = self.p.providers[j]
            if not prov.active:
                continue
            key = (prov.id, skill)
            lv = out[key]
            others = [(prov.id, r.skill) for r in prov.contract.rates if r.skill != skill]
            start = max(1, line.up_lead, line.notice)
            t = start
            while t < self.T:
                h = lv[t - 1]
                if lv[t] >= h - EPS:
                    t += 1
                    continue
                e = t
                while e < self.T and lv[e] < h - EPS:
                    e += 1
                if e >= self.T:
                    break
                hold = sum(
                    self.H * (line.rate.cost_per_hour(h) - line.rate.cost_per_hour(lv[u]))
                    for u in range(t, e)
                )
                steps = sum(abs(lv[u] - lv[u - 1]) for u in range(t, e + 1))
                saving = churn * (steps - (lv[e] - h))
                fits = all(
                    h + sum(out[o][u] for o in others) <= prov.contract.max_fte + EPS
                    for u in range(t, e)
                )
                if hold < saving - EPS and fits:
                    for u in range(t, e):
                        lv[u] = h
                t = e
        return {k: tuple(v) for k, v in out.items()}

    def _trim_concentration(self, items: list[Assignment]) -> list[Assignment]:
        """Make every provider's share of outsourced FTE-hours ≤ the cap, trimming the largest.

        The per-period limit keeps shares near the cap; this pass guarantees the horizon rule
        when some outsourceable demand stayed unmet (which shrinks the denominator).
        """
        cap = self.p.policy.vendor_concentration_cap
        if cap >= 1.0:
            return items
        for _ in range(50):
            per: dict[str, float] = {}
            for a in items:
                if a.source_kind == "provider":
                    per[a.source_id] = per.get(a.source_id, 0.0) + a.fte
            total = sum(per.values())
            over = {k: v for k, v in per.items() if v > cap * total + 1e-9 * max(1.0, total)}
            if not over:
                return items
            pid = max(over, key=lambda k: (over[k], k))
            mine = per[pid]
            target = cap * (total - mine) / (1.0 - cap) * (1.0 - 1e-9)
            factor = max(0.0, target / mine)
            items = [
                Assignment(a.period, a.stream_id, a.source_id, a.source_kind, a.fte * factor)
                if a.source_id == pid
                else a
                for a in items
            ]
        return items


class GreedyPolicy:
    """Greedy baseline policy (see the module docstring)."""

    name = "greedy"

    def allocate(
        self, problem: AllocationProblem
    ) -> tuple[tuple[StreamRequirement, ...], Allocation]:
        """Requirements and the greedy decisions, without assembling a plan."""
        reqs = stream_requirements(problem)
        return reqs, GreedyEngine(problem, reqs).run()

    def plan(self, problem: AllocationProblem) -> Plan:
        """The greedy plan, costed like the optimiser's."""
        started = time.perf_counter()
        reqs, alloc = self.allocate(problem)
        return assemble_plan(
            problem,
            reqs,
            alloc.assignments,
            alloc.levels,
            policy=self.name,
            backend="greedy",
            started=started,
            forced_by=alloc.forced_by,
            notes=("greedy baseline: internal first, then the cheapest extra provider FTE",),
        )
