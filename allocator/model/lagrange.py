"""A Lagrangian bound (and candidate levels) from the model's time structure.

Why: the LP relaxation is weak where contracts bind. A provider's minimum when engaged, its
FTE blocks and its discount tiers are all integer decisions per level segment, and the LP
takes fractions of each (``conv({0} ∪ [min, max]) = [0, max]``), so on the M benchmark its
bound sits ~2 % under the best plans and no plan can be *proven* within 1 % from it. Branching
closes that gap only slowly because the model is large.

But the integer decisions are local in time. Remove the few rows that tie one level segment to
the next (churn steps, the frozen-window step rows, and any lazy horizon row in play) and the
model falls apart into independent blocks, about one per ``Policy.level_change_hours`` of the
horizon, each a small MIP (M: ~2k variables, ~60 integers). Pricing the removed rows with the
LP's duals gives the Lagrangian bound

    L(y) = offset + Σ_link y_r·rhs_r + Σ_blocks min{(c − A_linkᵀy)·x : x in the block} ,

a valid lower bound for every sign-correct ``y``, equal to the LP bound when the blocks are
solved as LPs and higher when they are solved as MIPs (measured on M: LP 1,108k, Lagrangian
1,127k, best plan ~1,135k). Each block MIP is solved to a small absolute gap and its *dual
bound* is what enters the sum, so a time-limited block still gives a valid (weaker) term.

The blocks' integer solutions are also good levels: each is the best a segment can do at the
LP's prices for churn, so the caller fixes them (as it fixes rounded LP levels) and gets a plan.

Blocks are independent, so they are solved on ``threads`` threads (the back-ends release the
GIL); the result does not depend on the thread count when each block reaches its gap.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from allocator.model.branch import branch_and_bound
from allocator.model.lp import LinearProgram, LpBackend, LpResult, sub_mip
from allocator.model.mathopt import solve_model, sub_proto

LINK_ROWS = frozenset({"churn", "frozen_up", "frozen_down"})
"""Row families that tie consecutive level segments together (dualised, not kept in blocks)."""
INTEGRAL_TOL = 1e-6
"""An integer variable this close to an integer at the LP solution counts as integral."""
ROOT_MIN_S = 0.02
"""With ``root_only`` or ``block_limit_s``, a block is not started with less time than this
left (it would only pay the sub-model's set-up)."""
BOUND_LINK_ROWS = LINK_ROWS | frozenset(
    {"team_capacity", "provider_max", "provider_min", "engaged"}
)
"""Link rows of the finer decomposition used for the bound: the rows that tie a period's
skills together (teams work several skills; a provider's engagement and min/max span its
lines) are dualised too, so a block is one skill's lines and classes over one segment. Why:
on M the segment blocks (~2k variables, ~60 integers) took ~0.3 s each even stopped at their
root (HiGHS' cut rounds), the (skill, segment) blocks (~250 variables, ~8 integers) ~20 ms
each solved to the end; the bound gave up 5 % of the gain (19.9k vs 20.9k over the LP) for
less than a third of the CPU, and at L 79k in 21 CPU-s where the root-stopped segment blocks
needed 40 CPU-s for 90k (so within the time the solver has, far more). Engagement adds little
to the gain (its binaries relaxed: 20.6k of 20.9k at M), the tier switches almost all of it."""
DUAL_TOL = 1e-7
"""Reduced costs this close to 0 count as 0 (the LP's dual-feasibility tolerance)."""


@dataclass(frozen=True, slots=True)
class Block:
    """Variables and the rows among them that no dualised row separates."""

    vars: NDArray[np.int64]
    rows: NDArray[np.int64]
    integers: int


@dataclass(frozen=True, slots=True)
class Decomposition:
    """Blocks with rows (sub-MIPs), loose variables (in no kept row) and the dualised rows."""

    blocks: tuple[Block, ...]
    loose: NDArray[np.int64]
    link: NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class LagrangeResult:
    """The bound (−inf when it could not be made valid), block solutions and timings."""

    bound: float
    values: NDArray[np.float64]
    """Block solutions side by side (loose variables at their cheapest bound)."""
    has_values: bool
    """Every block returned a solution, so ``values`` holds integer levels for all of them."""
    blocks: int
    closed: int
    """Blocks solved to their gap (the others entered with their time-limited bound)."""
    wall_time_s: float
    prices: NDArray[np.float64]
    """The Lagrangian costs ``c − A_linkᵀy`` (per variable)."""
    block_bounds: tuple[float, ...]
    """Per block, a lower bound on ``prices·x`` over the block (−inf when none came back)."""


def decompose(
    lp: LinearProgram, rows: list[int], link_rows: frozenset[str] = LINK_ROWS
) -> Decomposition:
    """Split ``rows`` into dualised link rows and connected blocks of the remaining rows.

    Connected components come from min-label propagation over the row/column incidence in
    numpy (a handful of passes: blocks are short chains of periods), not from the variables'
    meaning, so any new row family that crosses segments only needs a name in ``LINK_ROWS``.
    """
    n = lp.num_vars
    link = [r for r in rows if lp.lazy[r] or lp.row_name[r] in link_rows]
    keep = [r for r in rows if not (lp.lazy[r] or lp.row_name[r] in link_rows)]
    lengths = np.fromiter((len(lp.row_idx[r]) for r in keep), np.int64, len(keep))
    cols = np.fromiter((c for r in keep for c in lp.row_idx[r]), np.int64, int(lengths.sum()))
    owner = np.repeat(np.arange(len(keep), dtype=np.int64), lengths)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    label = np.arange(n, dtype=np.int64)
    if len(cols):
        while True:
            row_min = np.minimum.reduceat(label[cols], starts)
            new = label.copy()
            np.minimum.at(new, cols, row_min[owner])
            new = new[new]  # pointer jumping: follow labels to their own label
            if np.array_equal(new, label):
                break
            label = new
    in_row = np.zeros(n, dtype=bool)
    in_row[cols] = True
    row_label = label[cols[starts]] if len(keep) else np.zeros(0, dtype=np.int64)
    keep_arr = np.asarray(keep, dtype=np.int64)
    integer = np.asarray(lp.integer, dtype=bool)
    blocks: list[Block] = []
    var_order = np.argsort(label, kind="stable")
    row_order = np.argsort(row_label, kind="stable")
    var_groups = np.split(var_order, np.flatnonzero(np.diff(label[var_order])) + 1)
    rows_by_label: dict[int, NDArray[np.int64]] = {}
    if len(keep):
        splits = np.flatnonzero(np.diff(row_label[row_order])) + 1
        for grp in np.split(row_order, splits):
            rows_by_label[int(row_label[grp[0]])] = np.sort(keep_arr[grp])
    loose: list[NDArray[np.int64]] = []
    for grp in var_groups:
        vs = np.sort(grp)
        if not in_row[vs[0]]:
            loose.append(vs)
            continue
        blocks.append(Block(vs, rows_by_label[int(label[vs[0]])], int(integer[vs].sum())))
    blocks.sort(key=lambda b: (-len(b.vars), int(b.vars[0])))
    return Decomposition(
        tuple(blocks),
        np.sort(np.concatenate(loose)) if loose else np.zeros(0, dtype=np.int64),
        np.asarray(link, dtype=np.int64),
    )


def _signed_duals(
    lp: LinearProgram, rows: NDArray[np.int64], duals: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Duals with the sign each row allows (a valid multiplier), and the rhs each one prices.

    For ``lo ≤ a·x ≤ hi`` in a minimisation, ``y > 0`` prices ``lo`` and ``y < 0`` prices ``hi``;
    a sign whose side is infinite is clipped to 0 (only solver noise produces it).
    """
    lo = np.asarray([lp.row_lo[r] for r in rows], dtype=np.float64)
    hi = np.asarray([lp.row_hi[r] for r in rows], dtype=np.float64)
    y = duals[rows].copy()
    y[(y > 0) & ~np.isfinite(lo)] = 0.0
    y[(y < 0) & ~np.isfinite(hi)] = 0.0
    rhs = np.where(y > 0, lo, np.where(y < 0, hi, 0.0))
    return y, rhs


def lagrangian_bound(
    lp: LinearProgram,
    dec: Decomposition,
    relaxed: LpResult,
    *,
    backend: LpBackend,
    deadline: float,
    absolute_gap: float,
    threads: int = 1,
    seed: int = 0,
    lb: NDArray[np.float64] | None = None,
    ub: NDArray[np.float64] | None = None,
    root_only: bool = False,
    block_limit_s: float | None = None,
) -> LagrangeResult:
    """``L(y)`` at the LP's duals, blocks solved as MIPs until ``deadline`` (see module doc).

    The bound is the LP's objective plus, per block, how far the block's MIP bound rises above
    the block's LP value at the LP solution ``x*`` (which is the block's LP optimum, by
    complementary slackness): the same ``L(y)``, but a block stopped early (its MIP bound
    still weak) adds nothing instead of pulling the sum below the LP bound.

    Each block gets an equal share of the time left when it starts (times ``threads``, which
    run side by side) and the absolute gap ``absolute_gap / blocks``, so the sum is within
    ``absolute_gap`` of the exact ``L(y)`` when every block closes.

    ``root_only`` stops each block after its root node with the primal heuristics off
    (:func:`~allocator.model.mathopt.solve_model`'s ``root_bound``): the bound of the root cuts, at
    a third of the time; the block solutions are then not worth using and few blocks "close".
    Each root then runs to its end (or the deadline) in block order instead of taking an
    equal share; a block the deadline leaves no time for adds nothing. Blocks whose integers
    are all integral at ``x*`` are not solved (``x*`` is their MIP optimum: they add nothing),
    and the others go cheapest first: fewest fractional integers × variables (what a strong
    branching pass costs). Measured on the blocks' own solve times, that order had 75 % of
    M's gain after half the time (most fractional first: 24 %), and 68 % of L's (36 %): small
    blocks gain as much as large ones for a fraction of the time.
    ``block_limit_s`` does the same for whole block MIPs (small blocks, e.g. from
    ``BOUND_LINK_ROWS``): each runs until it closes, the deadline, or ``block_limit_s`` (or
    its equal share of the time left, when that is longer).
    """
    start = time.perf_counter()
    lb = np.asarray(lp.lb, dtype=np.float64) if lb is None else lb
    ub = np.asarray(lp.ub, dtype=np.float64) if ub is None else ub
    y, _rhs = _signed_duals(lp, dec.link, relaxed.duals)
    cost = np.asarray(lp.obj, dtype=np.float64).copy()
    for r, yr in zip(dec.link.tolist(), y.tolist(), strict=True):
        if yr:
            cost[lp.row_idx[r]] -= yr * np.asarray(lp.row_coef[r])
    values = np.zeros(lp.num_vars)
    values[dec.loose] = _loose_minimiser(dec.loose, cost, lb, ub)
    n = len(dec.blocks)
    gap = absolute_gap / max(1, n)
    integer = np.asarray(lp.integer, dtype=bool)
    x = relaxed.values
    fractional = integer & (np.abs(x - np.round(x)) > INTEGRAL_TOL)
    split = [int(fractional[block.vars].sum()) for block in dec.blocks]
    # Cheapest first: under a deadline most of the gain comes early (see the docstring).
    todo = sorted(range(n), key=lambda k: (split[k] * len(dec.blocks[k].vars), k))
    results: list[LpResult | None] = [None] * n

    def run(k: int) -> LpResult:
        block = dec.blocks[k]
        if split[k] == 0:
            # x* is the block's LP optimum (complementary slackness); with no fractional
            # integer it is also its MIP optimum, so the block adds nothing (M: 45 of the
            # 213 (skill, segment) blocks with integers).
            value = float(np.dot(cost[block.vars], relaxed.values[block.vars]))
            res = LpResult(
                "optimal", True, relaxed.values[block.vars], np.zeros(0), value, value, 0.0
            )
            results[k] = res
            return res
        left = deadline - time.perf_counter()
        waiting = max(1, sum(1 for j in range(n) if results[j] is None and split[j] > 0))
        share = max(0.02, left * min(threads, waiting) / waiting)
        if root_only or block_limit_s is not None:
            # A root ends by itself (and a small block soon): let it, so blocks give their
            # whole gain in order and the ones the deadline leaves no time for are skipped
            # (equal slivers of a short limit gave every block too little to finish a single
            # cut round).
            if left < ROOT_MIN_S:
                res = LpResult("skipped", False, np.zeros(0), np.zeros(0), math.inf, -math.inf, 0.0)
                results[k] = res
                return res
            share = left if root_only else min(left, max(share, block_limit_s or 0.0))
        mip = sub_mip(lp, block.vars, block.rows.tolist(), cost, lb, ub)
        if backend == "highs" and not root_only:
            # Our branch and bound over HiGHS' warm LP (model/branch.py): the same blocks
            # closed 4-5x faster than by HiGHS' MIP solver.
            res = branch_and_bound(mip, time_limit_s=share, absolute_gap=gap)
            results[k] = res
            return res
        res = solve_model(
            sub_proto(mip),
            backend,
            time_limit_s=share,
            relative_gap=0.0,
            absolute_gap=gap,
            seed=seed,
            root_bound=root_only,
            restarts=not root_only,
        )
        results[k] = res
        return res

    if threads > 1 and n > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(run, todo))
    else:
        for k in todo:
            run(k)
    bound = relaxed.objective
    has_values = True
    closed = 0
    block_bounds: list[float] = []
    for block, res in zip(dec.blocks, results, strict=True):
        assert res is not None
        lp_value = float(np.dot(cost[block.vars], relaxed.values[block.vars]))
        block_bounds.append(max(lp_value, res.best_bound))
        if math.isfinite(res.best_bound):
            bound += max(0.0, res.best_bound - lp_value)
        if res.has_solution:
            values[block.vars] = res.values
            closed += res.objective - res.best_bound <= gap + 1e-9
        else:
            has_values = False
    return LagrangeResult(
        bound,
        values,
        has_values,
        n,
        closed,
        time.perf_counter() - start,
        cost,
        tuple(block_bounds),
    )


def _loose_minimiser(
    vs: NDArray[np.int64],
    cost: NDArray[np.float64],
    lb: NDArray[np.float64],
    ub: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Values of variables in no kept row: their cheapest finite bound (lb when unpriced)."""
    c, lo, hi = cost[vs], lb[vs], ub[vs]
    at = np.where(c < -DUAL_TOL, hi, lo)
    return np.where(np.isfinite(at), at, np.where(np.isfinite(lo), lo, 0.0))
