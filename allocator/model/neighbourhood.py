"""Block neighbourhood search: re-optimise one time block of a plan at a time, exactly.

Why: a rounded LP plan is a few tenths of a percent to a few percent above the optimum, and
the gap lives in the integer decisions (levels, engagement, tiers) of each level segment. The
decomposition of :mod:`allocator.model.lagrange` already splits the model into blocks of about
one segment each. Holding every variable outside one block at the current plan, the block's
rows plus the few cross-segment rows that touch it (churn and window steps to its neighbours,
any active horizon row) form a small MIP whose optimum is the best plan that differs from the
current one only inside the block, levels free over their whole range. Solving each block that
way and keeping improvements is a large-neighbourhood search with exact moves, which the ±1
block level search (:mod:`allocator.model.local`) only approximates.

Blocks that share no row can move at once, so they are grouped by a greedy colouring and each
group is solved on ``threads`` threads; a horizon-wide row in the model (concentration, budget)
ties every block to every other, and then they run one after another. Every accepted move keeps
every row satisfied (each row that mentions a freed variable is in the block's MIP), so the
plan stays feasible and its objective only falls.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from allocator.model.lagrange import Decomposition
from allocator.model.lp import LinearProgram, LpBackend, LpResult
from allocator.model.mathopt import solve_model, sub_proto

IMPROVEMENT_TOL = 1e-6
"""Relative objective fall below which a block's answer is not taken (solver noise)."""


@dataclass(frozen=True, slots=True)
class Neighbourhood:
    """One block's free variables and every row that mentions any of them."""

    vars: NDArray[np.int64]
    rows: NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The improved values, what they saved, and how the search went."""

    values: NDArray[np.float64]
    saved: float
    solved: int
    improved: int
    sweeps: int
    wall_time_s: float


def neighbourhoods(lp: LinearProgram, dec: Decomposition) -> list[Neighbourhood]:
    """Per block: its variables plus the loose variables of the link rows touching it.

    Loose variables (churn steps, horizon sums) sit in link rows only; freeing those of the
    rows that touch the block lets a level move pay its churn. Closure over loose variables
    pulls in a horizon sum's other terms too (they are loose and only move with it).
    """
    link_of: dict[int, list[int]] = {}
    for r in dec.link.tolist():
        for v in lp.row_idx[r]:
            link_of.setdefault(v, []).append(r)
    loose = set(dec.loose.tolist())
    out: list[Neighbourhood] = []
    for block in dec.blocks:
        free = set(block.vars.tolist())
        rows = set(block.rows.tolist())
        todo = list(free)
        while todo:
            v = todo.pop()
            for r in link_of.get(v, ()):
                if r in rows:
                    continue
                rows.add(r)
                for u in lp.row_idx[r]:
                    if u in loose and u not in free:
                        free.add(u)
                        todo.append(u)
        out.append(
            Neighbourhood(
                np.asarray(sorted(free), dtype=np.int64), np.asarray(sorted(rows), dtype=np.int64)
            )
        )
    return out


def clashes(lp: LinearProgram, hoods: list[Neighbourhood]) -> list[set[int]]:
    """Per neighbourhood, the others it cannot be solved with (a row of one mentions a free
    variable of the other)."""
    owner: dict[int, int] = {}
    for k, h in enumerate(hoods):
        for v in h.vars.tolist():
            owner[v] = k
    clash: list[set[int]] = [set() for _ in hoods]
    for k, h in enumerate(hoods):
        for r in h.rows.tolist():
            for v in lp.row_idx[r]:
                o = owner.get(v)
                if o is not None and o != k:
                    clash[k].add(o)
                    clash[o].add(k)
    return clash


def colour(order: list[int], clash: list[set[int]]) -> list[list[int]]:
    """Greedy colouring of ``order`` (most promising first): groups that can run at once."""
    groups: list[list[int]] = []
    colour_of: dict[int, int] = {}
    for k in order:
        used = {colour_of[o] for o in clash[k] if o in colour_of}
        c = next(i for i in range(len(groups) + 1) if i not in used)
        if c == len(groups):
            groups.append([])
        groups[c].append(k)
        colour_of[k] = c
    return groups


def _solve_hood(
    lp: LinearProgram,
    hood: Neighbourhood,
    values: NDArray[np.float64],
    lb: NDArray[np.float64],
    ub: NDArray[np.float64],
    backend: LpBackend,
    time_limit_s: float,
    absolute_gap: float,
    seed: int,
) -> LpResult:
    """The neighbourhood MIP (other variables held at ``values``), started from ``values``."""
    obj = np.asarray(lp.obj, dtype=np.float64)
    model = sub_proto(lp, hood.vars, hood.rows.tolist(), obj, lb, ub, at=values)
    return solve_model(
        model,
        backend,
        time_limit_s=time_limit_s,
        absolute_gap=absolute_gap,
        seed=seed,
        hint=values[hood.vars],
    )


def improve(
    lp: LinearProgram,
    dec: Decomposition,
    values: NDArray[np.float64],
    *,
    backend: LpBackend,
    deadline: float,
    absolute_gap: float,
    threads: int = 1,
    seed: int = 0,
    lb: NDArray[np.float64] | None = None,
    ub: NDArray[np.float64] | None = None,
    max_sweeps: int = 3,
    prices: NDArray[np.float64] | None = None,
    block_bounds: tuple[float, ...] | None = None,
    seconds_per_var: float = 0.0,
) -> SearchResult:
    """Sweep the blocks (group by group) until a sweep saves nothing or time runs out.

    ``values`` must satisfy every row the decomposition was made from; the result does too.
    ``lb``/``ub`` narrow the variables (e.g. levels fixed in the frozen windows).

    With the Lagrangian ``prices`` and ``block_bounds`` (:mod:`allocator.model.lagrange`),
    each sweep visits only blocks whose priced cost is more than ``absolute_gap`` above their
    bound, largest first: the sum of those excesses is most of the plan's gap, so the time
    goes where the gap is and blocks already at their bound are not visited at all.

    Each visit gets an equal share of the time left, but at least ``seconds_per_var`` per
    free variable of its neighbourhood (while time is left).
    """
    start = time.perf_counter()
    lb = np.asarray(lp.lb, dtype=np.float64) if lb is None else lb
    ub = np.asarray(lp.ub, dtype=np.float64) if ub is None else ub
    obj = np.asarray(lp.obj, dtype=np.float64)
    hoods = neighbourhoods(lp, dec)
    clash = clashes(lp, hoods)
    current = values.copy()
    solved = improved = sweeps = 0
    total_saved = 0.0
    for _ in range(max_sweeps):
        order = _promising(dec, current, absolute_gap, prices, block_bounds)
        if not order:
            break
        groups = colour(order, clash)
        sweeps += 1
        saved_this = 0.0
        for group in groups:
            if time.perf_counter() >= deadline:
                break
            snapshot = current.copy()

            def run(
                k: int, snapshot: NDArray[np.float64] = snapshot, visits: int = len(order)
            ) -> tuple[int, LpResult]:
                left = deadline - time.perf_counter()
                share = max(0.05, left * min(threads, visits) / visits)
                # A floor per free variable: a thin slice of the time left gives a large
                # neighbourhood too little to improve on its hint (L: 38 visits of ~0.5 s
                # found one move), so fewer, most promising ones get enough.
                share = max(share, min(left, seconds_per_var * len(hoods[k].vars)))
                return k, _solve_hood(
                    lp, hoods[k], snapshot, lb, ub, backend, share, absolute_gap, seed
                )

            if threads > 1 and len(group) > 1:
                with ThreadPoolExecutor(max_workers=threads) as pool:
                    answers = list(pool.map(run, group))
            else:
                answers = [run(k) for k in group]
            for k, res in answers:
                solved += 1
                if not res.has_solution:
                    continue
                vs = hoods[k].vars
                before = float(np.dot(obj[vs], current[vs]))
                after = float(np.dot(obj[vs], res.values))
                if after < before - IMPROVEMENT_TOL * max(1.0, abs(before)):
                    current[vs] = res.values
                    saved_this += before - after
                    improved += 1
        total_saved += saved_this
        if saved_this <= absolute_gap or time.perf_counter() >= deadline:
            break
    return SearchResult(current, total_saved, solved, improved, sweeps, time.perf_counter() - start)


def _promising(
    dec: Decomposition,
    values: NDArray[np.float64],
    absolute_gap: float,
    prices: NDArray[np.float64] | None,
    block_bounds: tuple[float, ...] | None,
) -> list[int]:
    """Blocks worth a visit, most promising first (all, in block order, without prices)."""
    if prices is None or block_bounds is None:
        return list(range(len(dec.blocks)))
    excess = [
        float(np.dot(prices[b.vars], values[b.vars])) - bb
        for b, bb in zip(dec.blocks, block_bounds, strict=True)
    ]
    keep = [k for k, e in enumerate(excess) if e > absolute_gap]
    return sorted(keep, key=lambda k: (-excess[k], k))
