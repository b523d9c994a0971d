"""Static staffing baseline: provider levels decided once, then never changed.

Why: many outsourcing set-ups are run this way — a fixed seat count per provider and skill,
sized for the peak (or the average) of the horizon, or simply left at what is committed. It
isolates what *dynamic* scaling is worth: static vs greedy shows the value of following
demand, greedy vs optimiser the value of planning it well.

Levels: inside a line's lead-time/notice window the committed + pending baseline is kept (the
plan cannot change it there); from the end of the window on, the line holds one level —

* ``committed``: the baseline continued (what is contracted today, pending changes included);
* ``peak``: the highest level the greedy plan would use after the window;
* ``mean``: the greedy plan's average level after the window, rounded up to whole blocks;
* ``once``: ``peak`` while no provider line holds capacity (committed or pending), then
  ``committed`` — sized once, then never re-sized. Stateless (it reads the problem's levels),
  so a worker planning in a fresh process per plan and the in-process loop behave alike;

adjusted to the contract (whole blocks, the provider's total within [min, max] or 0). The
assignments are then greedy within those levels (internal first, paid capacity next).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

from allocator.costing import EPS, LineKey
from allocator.demand import stream_requirements
from allocator.domain import AllocationProblem, Provider
from allocator.plan import Plan
from allocator.policies.base import assemble_plan
from allocator.policies.greedy import GreedyEngine

StaticMode = Literal["committed", "peak", "mean", "once"]


def _blocks_up(x: float, block: float) -> float:
    return math.ceil(x / block - 1e-9) * block


def _fit_contract(prov: Provider, wanted: dict[str, float]) -> dict[str, float]:
    """Whole blocks per line, provider total within [min, max] or 0."""
    c = prov.contract
    out = {sk: _blocks_up(v, c.block_fte) for sk, v in wanted.items()}
    while sum(out.values()) > c.max_fte + EPS:
        sk = max(out, key=lambda s: (out[s], s))
        out[sk] -= c.block_fte
    total = sum(out.values())
    if 0 < total < c.min_fte - EPS:
        sk = max(out, key=lambda s: (out[s], s))
        out[sk] += _blocks_up(c.min_fte - total, c.block_fte)
    return out


@dataclass(frozen=True, slots=True)
class StaticPolicy:
    """Fixed provider levels (see the module docstring), greedy assignments within them."""

    mode: StaticMode = "peak"

    @property
    def name(self) -> str:
        """``static:<mode>``."""
        return f"static:{self.mode}"

    def levels(self, problem: AllocationProblem) -> dict[LineKey, tuple[float, ...]]:
        """The fixed level series of every contract line."""
        reqs = stream_requirements(problem)
        req = problem.request
        horizon = req.horizon_periods
        mode = self.mode
        if mode == "once":
            holding = any(
                problem.committed_level(p.id, r.skill) > EPS
                or any(v > EPS for v in problem.baseline_level(p.id, r.skill))
                for p in problem.providers
                for r in p.contract.rates
            )
            mode = "committed" if holding else "peak"
        greedy: dict[LineKey, tuple[float, ...]] = {}
        if mode != "committed":
            greedy = GreedyEngine(problem, reqs).run().levels
        out: dict[LineKey, tuple[float, ...]] = {}
        for prov in problem.providers:
            c = prov.contract
            window = max(
                req.hours_to_periods(c.ramp_up_hours),
                req.hours_to_periods(c.ramp_down_notice_hours),
            )
            start = min(window, horizon)
            wanted: dict[str, float] = {}
            for rate in c.rates:
                key = (prov.id, rate.skill)
                base = problem.baseline_level(*key)
                if not prov.active:
                    wanted[rate.skill] = 0.0
                elif mode == "committed" or start >= horizon:
                    wanted[rate.skill] = base[-1]
                else:
                    tail = greedy.get(key, (0.0,) * horizon)[start:]
                    wanted[rate.skill] = max(tail) if mode == "peak" else sum(tail) / len(tail)
            fixed = _fit_contract(prov, wanted) if prov.active else wanted
            for rate in c.rates:
                key = (prov.id, rate.skill)
                base = problem.baseline_level(*key)
                if not prov.active:
                    out[key] = (0.0,) * horizon
                else:
                    out[key] = tuple(
                        base[t] if t < start else fixed[rate.skill] for t in range(horizon)
                    )
        return out

    def plan(self, problem: AllocationProblem) -> Plan:
        """The static plan, costed like the optimiser's."""
        started = time.perf_counter()
        reqs = stream_requirements(problem)
        levels = self.levels(problem)
        alloc = GreedyEngine(problem, reqs).run(fixed_levels=levels)
        return assemble_plan(
            problem,
            reqs,
            alloc.assignments,
            levels,
            policy=self.name,
            backend="static",
            started=started,
            forced_by=alloc.forced_by,
            notes=(f"static staffing ({self.mode}): provider levels fixed after the windows",),
        )
