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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from allocator.model.branch import branch_and_bound
from allocator.model.lagrange import Decomposition
from allocator.model.lp import LinearProgram, LpBackend, LpResult, sub_mip
from allocator.model.mathopt import solve_model, sub_proto

SKIPPED = LpResult("skipped", False, np.zeros(0), np.zeros(0), math.inf, -math.inf, 0.0)
"""A visit the deadline left no time for (a group's later visits start after it)."""
DUAL_TOL = 1e-9
"""A dual this close to 0 does not bind (:func:`coupled_pairs`)."""
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


@dataclass(frozen=True, slots=True)
class Links:
    """How a decomposition's blocks meet: components of link rows joined by loose variables.

    Loose variables (churn steps, engagement, horizon sums) sit in link rows only; freeing
    those of the rows that touch a block lets a level move pay its churn, and closure over
    loose variables pulls in their other rows too (an engagement's min/max rows, a horizon
    sum's terms). So a block's neighbourhood rows are the components, in the graph of link
    rows joined by shared loose variables, of the link rows its variables appear in.
    """

    size: int
    rows: dict[int, NDArray[np.int64]]
    """Per component, its link rows."""
    loose: dict[int, NDArray[np.int64]]
    """Per component (that has any), its loose variables."""
    reach: dict[int, NDArray[np.int64]]
    """Per block, the components its variables appear in."""


def links(lp: LinearProgram, dec: Decomposition) -> Links:
    """The components of ``dec``'s link rows, in numpy over their entries (the per-variable
    Python walk it replaced took 1.1 s at M with the lazy rows in; this 0.13 s)."""
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
    lv = is_loose[cols]
    l_at, l_col = at[lv], cols[lv]
    label = np.arange(m, dtype=np.int64)
    while len(l_at):  # min-label propagation through the loose variables
        var_min = np.full(n, m, dtype=np.int64)
        np.minimum.at(var_min, l_col, label[l_at])
        new = label.copy()
        np.minimum.at(new, l_at, var_min[l_col])
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    bv = owner[cols] >= 0
    pairs = np.unique(owner[cols][bv] * m + label[at][bv])
    return Links(
        m, _groups(label, link), _groups(label[l_at], l_col), _groups(pairs // m, pairs % m)
    )


def neighbourhood(
    dec: Decomposition, lk: Links, blocks: Sequence[int]
) -> tuple[Neighbourhood, NDArray[np.int64]]:
    """The neighbourhood of a union of ``blocks`` and what it holds: the link components it
    reaches and its blocks (as ``lk.size + block``). Two neighbourhoods clash (cannot be
    solved side by side) exactly when they hold something in common: every row of a
    component mentions only variables of blocks that reach it and the component's own loose
    variables, which each of those blocks frees; block rows mention only their block."""
    empty = np.zeros(0, dtype=np.int64)
    comps = np.unique(np.concatenate([lk.reach.get(k, empty) for k in blocks]))
    rows = [dec.blocks[k].rows for k in blocks] + [lk.rows[c] for c in comps.tolist()]
    free = [dec.blocks[k].vars for k in blocks]
    free += [lk.loose[c] for c in comps.tolist() if c in lk.loose]
    hood = Neighbourhood(np.unique(np.concatenate(free)), np.unique(np.concatenate(rows)))
    held = np.concatenate([comps, lk.size + np.asarray(blocks, dtype=np.int64)])
    return hood, held


def clashes(held: Sequence[NDArray[np.int64]]) -> list[set[int]]:
    """Per neighbourhood, the others that hold something it holds (see :func:`neighbourhood`):
    every pair of holders of each thing, in numpy."""
    n = len(held)
    clash: list[set[int]] = [set() for _ in range(n)]
    if not any(len(h) for h in held):
        return clash
    hood = np.repeat(np.arange(n, dtype=np.int64), [len(h) for h in held])
    thing = np.concatenate(held)
    order = np.argsort(thing, kind="stable")
    ks, cs = hood[order], thing[order]
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
    counts = np.diff(np.r_[starts, len(cs)])
    size = np.repeat(counts, counts)  # per entry: how many hold its thing
    left = np.repeat(ks, size)
    first = np.repeat(np.repeat(starts, counts), size)
    offset = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
    right = ks[first + offset]
    keep = left != right
    codes = np.unique(left[keep] * n + right[keep])
    for k, vs in _groups(codes // n, codes % n).items():
        clash[k] = set(vs.tolist())
    return clash


def _groups(keys: NDArray[np.int64], values: NDArray[np.int64]) -> dict[int, NDArray[np.int64]]:
    """``values`` grouped by ``keys`` (each group in its original order)."""
    if len(keys) == 0:
        return {}
    order = np.argsort(keys, kind="stable")
    k, v = keys[order], values[order]
    cuts = np.flatnonzero(k[1:] != k[:-1]) + 1
    return {int(g[0]): vs for g, vs in zip(np.split(k, cuts), np.split(v, cuts), strict=True)}


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
    mip = sub_mip(lp, hood.vars, hood.rows.tolist(), obj, lb, ub, at=values)
    if backend == "highs":
        return branch_and_bound(
            mip, time_limit_s=time_limit_s, absolute_gap=absolute_gap, hint=values[hood.vars]
        )
    return solve_model(
        sub_proto(mip),
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
    unions: Sequence[Sequence[int]] | None = None,
    max_visits: int | None = None,
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
    objective is at most ``target`` (the caller's gap is met). ``unions`` visits unions of
    blocks (e.g. :func:`coupled_pairs`) instead of single blocks; ``max_visits`` caps a
    sweep at the most promising ones (neighbourhoods and their clashes are built only for
    the neighbourhoods a sweep visits: L has 3,570 coupled pairs and visits ~100 in 7 s).
    """
    start = time.perf_counter()
    lb = np.asarray(lp.lb, dtype=np.float64) if lb is None else lb
    ub = np.asarray(lp.ub, dtype=np.float64) if ub is None else ub
    obj = np.asarray(lp.obj, dtype=np.float64)
    members = [[k] for k in range(len(dec.blocks))] if unions is None else unions
    lk = links(lp, dec)
    hoods: dict[int, Neighbourhood] = {}
    held: dict[int, NDArray[np.int64]] = {}
    current = values.copy()
    solved = improved = sweeps = 0
    total_saved = 0.0
    for _ in range(max_sweeps):
        order = _promising(dec, members, current, absolute_gap, prices, block_bounds)
        order = order[:max_visits]
        if not order:
            break
        for h in order:
            if h not in hoods:
                hoods[h], held[h] = neighbourhood(dec, lk, members[h])
        local = clashes([held[h] for h in order])
        groups = [[order[i] for i in g] for g in colour(list(range(len(order))), local)]
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
    members: Sequence[Sequence[int]],
    values: NDArray[np.float64],
    absolute_gap: float,
    prices: NDArray[np.float64] | None,
    block_bounds: tuple[float, ...] | None,
) -> list[int]:
    """Neighbourhoods worth a visit, most promising first (all, in order, without prices):
    those whose blocks' priced cost is more than ``absolute_gap`` above their bounds."""
    if prices is None or block_bounds is None:
        return list(range(len(members)))
    block_excess = [
        float(np.dot(prices[b.vars], values[b.vars])) - bb
        for b, bb in zip(dec.blocks, block_bounds, strict=True)
    ]
    excess = [sum(block_excess[k] for k in ks) for ks in members]
    keep = [h for h, e in enumerate(excess) if e > absolute_gap]
    return sorted(keep, key=lambda h: (-excess[h], h))


def coupled_pairs(
    lp: LinearProgram, dec: Decomposition, duals: NDArray[np.float64], families: frozenset[str]
) -> list[tuple[int, int]]:
    """Pairs of blocks that share a row of ``families`` with a non-zero dual: the couplings
    that bind (e.g. one team's capacity between two skills in a segment).

    Why pairs: a (skill, segment) block cannot move in-house time to another skill, or a
    provider's minimum onto another of its lines, on its own; the pair can. On L after the
    single blocks stop saving, the binding pairs saved 2.2k in 8 s (all 8,662 pairs: 0.4k).
    """
    owner = np.full(lp.num_vars, -1, dtype=np.int64)
    for k, block in enumerate(dec.blocks):
        owner[block.vars] = k
    out: set[tuple[int, int]] = set()
    for r in dec.link.tolist():
        if lp.row_name[r] not in families or abs(float(duals[r])) <= DUAL_TOL:
            continue
        ks = sorted({int(owner[v]) for v in lp.row_idx[r]} - {-1})
        out.update((a, b) for i, a in enumerate(ks) for b in ks[i + 1 :])
    return sorted(out)
