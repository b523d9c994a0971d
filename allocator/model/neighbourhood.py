"""Block neighbourhood search: re-optimise one block of a plan at a time, exactly.

Why: a rounded LP plan is a few tenths of a percent to a few percent above the optimum, and
the gap lives in the integer decisions (levels, engagement, tiers) of each level segment.
Holding every variable outside one block of a decomposition (:mod:`allocator.model.lagrange`)
at the current plan, the block's rows plus the rows that tie it to the rest (churn and window
steps to the neighbouring segments, and for the solver's (skill, segment) blocks the team
capacity and provider min/max rows shared with other skills, any active horizon row) form a
small MIP whose optimum is the best plan that differs from the current one only inside the
block. Solving each block that way and keeping improvements is a large-neighbourhood search
with exact moves, which the ±1 block level search (:mod:`allocator.model.local`) only
approximates.

The solver uses the (skill, segment) blocks of the Lagrangian bound: ~300 free variables and
~8 integers each, solved by :mod:`allocator.model.branch` (HiGHS) in a few milliseconds with
the plan as the first incumbent. Measured on M from the re-tiered rounding (1,141.0k): 4.1k
saved in 0.4 s and 5.9k in 1.9 s; the segment blocks (~2k variables, ~60 integers, HiGHS'
MIP solver) saved 0.1k in 4.5 s. Other back-ends solve the same neighbourhoods through MathOpt.

Blocks that share no row can move at once, so they are grouped by a greedy colouring and each
group is solved on ``threads`` threads; a horizon-wide row in the model (concentration, budget)
ties every block to every other, and then they run one after another. Every accepted move keeps
every row satisfied (each row that mentions a freed variable is in the block's MIP), so the
plan stays feasible and its objective only falls.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from allocator.model.branch import branch_and_bound, sub_mip
from allocator.model.lagrange import Decomposition
from allocator.model.lp import LinearProgram, LpBackend, LpResult
from allocator.model.mathopt import solve_model, sub_proto

SKIPPED = LpResult("skipped", False, np.zeros(0), np.zeros(0), math.inf, -math.inf, 0.0)
"""A visit the deadline left no time for (a group's later visits start after it)."""
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


def neighbourhoods(
    lp: LinearProgram, dec: Decomposition
) -> tuple[list[Neighbourhood], list[set[int]]]:
    """Per block: its variables plus the loose variables of the link rows touching it; and
    per neighbourhood, the others it cannot be solved with.

    Loose variables (churn steps, engagement, horizon sums) sit in link rows only; freeing
    those of the rows that touch the block lets a level move pay its churn. Closure over
    loose variables pulls in their other rows too (an engagement's min/max rows, a horizon
    sum's terms): so a block's rows are the components, in the graph of link rows joined by
    shared loose variables, of the link rows its variables appear in. Two neighbourhoods
    clash when a row of one mentions a variable the other frees; block rows mention only
    their block's variables, so only link rows can make a clash.

    In numpy over the link rows' entries (the per-variable Python walk it replaced took
    0.13 s at M and 1.1 s at L, a tenth of M's share of a 2 s limit).
    """
    link = np.unique(dec.link)
    m = len(link)
    row_ids, cols, _ = lp.triplets(link.tolist())
    at = np.searchsorted(link, row_ids)
    n = lp.num_vars
    owner = np.full(n, -1, dtype=np.int64)
    for k, block in enumerate(dec.blocks):
        owner[block.vars] = k
    is_loose = np.zeros(n, dtype=bool)
    is_loose[dec.loose] = True
    # Components of link rows joined by loose variables (min-label propagation).
    lv = is_loose[cols]
    l_at, l_col = at[lv], cols[lv]
    label = np.arange(m, dtype=np.int64)
    while len(l_at):
        var_min = np.full(n, m, dtype=np.int64)
        np.minimum.at(var_min, l_col, label[l_at])
        new = label.copy()
        np.minimum.at(new, l_at, var_min[l_col])
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    comp_rows = _groups(label, link)
    comp_loose = _groups(label[l_at], l_col)
    # Which components each block's variables reach.
    bv = owner[cols] >= 0
    pairs = np.unique(owner[cols][bv] * m + label[at][bv])
    reach = _groups(pairs // m, pairs % m)
    hoods: list[Neighbourhood] = []
    empty = np.zeros(0, dtype=np.int64)
    for k, block in enumerate(dec.blocks):
        comps = reach.get(k, empty).tolist()
        rows = [block.rows] + [comp_rows[c] for c in comps]
        free = [block.vars] + [comp_loose[c] for c in comps if c in comp_loose]
        hoods.append(
            Neighbourhood(np.unique(np.concatenate(free)), np.unique(np.concatenate(rows)))
        )
    # Every row of a component mentions only variables of blocks that reach it and its own
    # loose variables, which each of those blocks frees: two neighbourhoods clash exactly
    # when they reach a common component.
    return hoods, _clashes(pairs // m, pairs % m, len(hoods))


def _groups(keys: NDArray[np.int64], values: NDArray[np.int64]) -> dict[int, NDArray[np.int64]]:
    """``values`` grouped by ``keys`` (each group in its original order)."""
    if len(keys) == 0:
        return {}
    order = np.argsort(keys, kind="stable")
    k, v = keys[order], values[order]
    cuts = np.flatnonzero(k[1:] != k[:-1]) + 1
    return {int(g[0]): vs for g, vs in zip(np.split(k, cuts), np.split(v, cuts), strict=True)}


def _clashes(hood: NDArray[np.int64], comp: NDArray[np.int64], n: int) -> list[set[int]]:
    """Per neighbourhood, the others that reach a component it reaches (``hood[i]`` reaches
    ``comp[i]``): every pair within each component, in numpy."""
    clash: list[set[int]] = [set() for _ in range(n)]
    if len(comp) == 0:
        return clash
    order = np.argsort(comp, kind="stable")
    ks, cs = hood[order], comp[order]
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
    counts = np.diff(np.r_[starts, len(cs)])
    size = np.repeat(counts, counts)  # per entry: its component's size
    left = np.repeat(ks, size)
    first = np.repeat(np.repeat(starts, counts), size)
    offset = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
    right = ks[first + offset]
    keep = left != right
    codes = np.unique(left[keep] * n + right[keep])
    for k, vs in _groups(codes // n, codes % n).items():
        clash[k] = set(vs.tolist())
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
    obj: NDArray[np.float64],
    hood: Neighbourhood,
    values: NDArray[np.float64],
    lb: NDArray[np.float64],
    ub: NDArray[np.float64],
    backend: LpBackend,
    time_limit_s: float,
    absolute_gap: float,
    seed: int,
) -> LpResult:
    """The neighbourhood MIP (other variables held at ``values``), started from ``values``:
    by branch and bound on HiGHS' LP for ``highs``, through MathOpt for other back-ends."""
    if backend == "highs":
        mip = sub_mip(lp, hood.vars, hood.rows.tolist(), obj, lb, ub, at=values)
        return branch_and_bound(
            mip, time_limit_s=time_limit_s, absolute_gap=absolute_gap, hint=values[hood.vars]
        )
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
    target: float = -math.inf,
) -> SearchResult:
    """Sweep the blocks (group by group) until a sweep saves nothing or time runs out.

    ``values`` must satisfy every row the decomposition was made from; the result does too.
    ``lb``/``ub`` narrow the variables (e.g. levels fixed in the frozen windows).

    With the Lagrangian ``prices`` and ``block_bounds`` (:mod:`allocator.model.lagrange`),
    each sweep visits only blocks whose priced cost is more than ``absolute_gap`` above their
    bound, largest first: the sum of those excesses is most of the plan's gap, so the time
    goes where the gap is and blocks already at their bound are not visited at all.

    Each visit gets an equal share of the time left, but at least ``seconds_per_var`` per
    free variable of its neighbourhood (while time is left). The search stops once the plan's
    objective is at most ``target`` (the caller's gap is met).
    """
    start = time.perf_counter()
    lb = np.asarray(lp.lb, dtype=np.float64) if lb is None else lb
    ub = np.asarray(lp.ub, dtype=np.float64) if ub is None else ub
    obj = np.asarray(lp.obj, dtype=np.float64)
    hoods, clash = neighbourhoods(lp, dec)
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
            if time.perf_counter() >= deadline or float(np.dot(obj, current)) + lp.offset <= target:
                break
            snapshot = current.copy()

            def run(
                k: int, snapshot: NDArray[np.float64] = snapshot, visits: int = len(order)
            ) -> tuple[int, LpResult]:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return k, SKIPPED
                share = max(0.05, left * min(threads, visits) / visits)
                # A floor per free variable: a thin slice of the time left gives a large
                # neighbourhood too little to improve on its hint (L: 38 visits of ~0.5 s
                # found one move), so fewer, most promising ones get enough.
                share = max(share, min(left, seconds_per_var * len(hoods[k].vars)))
                return k, _solve_hood(
                    lp, obj, hoods[k], snapshot, lb, ub, backend, share, absolute_gap, seed
                )

            if threads > 1 and len(group) > 1:
                with ThreadPoolExecutor(max_workers=threads) as pool:
                    answers = list(pool.map(run, group))
            else:
                answers = [run(k) for k in group]
            for k, res in answers:
                if res is SKIPPED:
                    continue
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
        if float(np.dot(obj, current)) + lp.offset <= target:
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
