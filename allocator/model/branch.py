"""Small MIPs by branch and bound over one warm HiGHS LP.

Why not the back-end's MIP solver: the Lagrangian bound (:mod:`allocator.model.lagrange`) and
the block neighbourhood search solve hundreds of tiny MIPs — one skill's contract lines over
one level segment, ~300 variables, 4-18 integers (M: 168 of them, L: 624). HiGHS' MIP solver
spent ~28 ms on each (M median), most of it set-up, presolve, root cuts and heuristics that a
model this small does not repay, while the same LP re-solves from a neighbouring basis in
~0.3 ms (~0.1 ms of it HiGHS' fixed cost per run). This search closes the same blocks to the
same bound in 1.1 CPU-s at M (HiGHS' MIP: 4.7 s) and 4.4 CPU-s at L (23 s). Branching on the
most fractional integer instead took up to 6,500 nodes on L's 13-integer blocks (34 s in all);
strong branching at every node at most 61 (6.6 s); pseudocosts below the root saved a fifth.

The algorithm, plainly: solve the root LP; keep open nodes in a heap by LP bound (ties in
creation order, so a run is deterministic). At a node, an integer not yet branched on
``RELIABLE`` times each way is *strong-branched* — both children solved, each from the node's
basis — and scored by the product of the two bound rises; the others are scored by their
pseudocosts (mean rise per unit moved, learnt in this search); the best score is branched on
(up to ``STRONG_CANDIDATES`` most fractional candidates per node). A strong-branching child
that is infeasible or cannot beat the incumbent by the gap fixes its integer the other way at
this node, and the node is tried again. Integral LP solutions are incumbents; a hint that
satisfies every row starts as one. The bound returned is the least LP bound among open nodes,
nodes dropped for the gap, and the incumbent: valid whenever the search stops, so a block cut
short still adds what it proved.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass

import highspy
import numpy as np
from highspy._core import _Highs
from numpy.typing import NDArray

from allocator.model.lp import LpResult, SmallMip

INTEGRAL_TOL = 1e-6
"""An integer variable this close to an integer counts as integral."""
FEASIBILITY_TOL = 1e-6
"""Row and bound tolerance when a hint is checked."""
STRONG_CANDIDATES = 10
"""Fractional integers tried per node (most fractional first). The blocks have at most ~18
integers, so this is usually all of them; it caps a node's LPs on a larger model."""
RELIABLE = 1
"""Observed branchings (each way) after which a variable is scored by its pseudocost (mean
bound rise per unit moved, in this search) instead of by solving both children."""
_INF = math.inf
_OPTIMAL = highspy.HighsModelStatus.kOptimal
_INFEASIBLE = highspy.HighsModelStatus.kInfeasible


class _Stopped(Exception):
    """The deadline passed, or an LP ended neither optimal nor infeasible."""


@dataclass(slots=True)
class _Node:
    bound: float
    lo: NDArray[np.float64]
    hi: NDArray[np.float64]
    x: NDArray[np.float64]
    basis: highspy.HighsBasis


class _Search:
    """One branch and bound: the HiGHS instance, the integer columns and the incumbent."""

    def __init__(
        self, mip: SmallMip, deadline: float, absolute_gap: float, lp_limit: int | None
    ) -> None:
        self.deadline = deadline
        self.lp_limit = lp_limit
        self.gap = absolute_gap
        self.ints = np.flatnonzero(mip.integer).astype(np.int32)
        self.incumbent = _INF
        self.best_x: NDArray[np.float64] | None = None
        self.pruned = _INF
        """Least LP bound of the nodes dropped for not beating the incumbent by the gap: the
        optimum may lie there (within the gap), so the bound returned never exceeds it."""
        self.lps = 0
        k = len(self.ints)
        self.rise = np.zeros((2, k))
        """Per integer, summed bound rise per unit moved down (row 0) and up (row 1)."""
        self.seen = np.zeros((2, k), dtype=np.int64)
        h = _Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("presolve", "off")
        h.setOptionValue("random_seed", 0)
        # Set once: setting it before every LP cost ~15 % of a search. The deadline is checked
        # before every LP; this only stops one LP that would run away.
        h.setOptionValue("time_limit", max(1e-3, deadline - time.perf_counter()))
        model = highspy.HighsLp()
        model.num_col_ = len(mip.cost)
        model.num_row_ = len(mip.row_lo)
        model.col_cost_ = mip.cost
        model.col_lower_ = mip.lb
        model.col_upper_ = mip.ub
        model.row_lower_ = mip.row_lo
        model.row_upper_ = mip.row_hi
        model.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        model.a_matrix_.start_ = mip.start
        model.a_matrix_.index_ = mip.index
        model.a_matrix_.value_ = mip.value
        h.passModel(model)
        self.highs = h

    def lp(
        self,
        lo: NDArray[np.float64],
        hi: NDArray[np.float64],
        start: highspy.HighsBasis | None = None,
    ) -> _Node | None:
        """The LP with the integers in ``[lo, hi]``; None when infeasible or it cannot beat
        the incumbent by the gap. Raises _Stopped past the deadline or the LP limit, or on an
        LP that ends neither optimal nor infeasible."""
        if time.perf_counter() >= self.deadline or self.lps == self.lp_limit:
            raise _Stopped
        h = self.highs
        if start is not None:
            h.setBasis(start)
        h.changeColsBounds(len(self.ints), self.ints, lo, hi)
        h.run()
        self.lps += 1
        status = h.getModelStatus()
        if status == _INFEASIBLE:
            return None
        if status != _OPTIMAL:
            raise _Stopped
        bound = float(h.getInfo().objective_function_value)
        if bound >= self.incumbent - self.gap:
            self.pruned = min(self.pruned, bound)
            return None
        x = np.asarray(h.getSolution().col_value, dtype=np.float64)
        node = _Node(bound, lo, hi, x, h.getBasis())
        if self.fractional(node).size == 0:
            self.incumbent, self.best_x = bound, x
            return None
        return node

    def fractional(self, node: _Node) -> NDArray[np.int64]:
        """Positions (in ``ints``) of fractional integers, most fractional first."""
        xi = node.x[self.ints]
        f = np.abs(xi - np.round(xi))
        cand = np.flatnonzero(f > INTEGRAL_TOL)
        return cand[np.argsort(-f[cand], kind="stable")][:STRONG_CANDIDATES]

    def children(self, node: _Node, j: int) -> tuple[_Node | None, _Node | None]:
        """Both children of ``node`` on integer ``j``; their bound rises feed the pseudocosts."""
        v = float(node.x[self.ints[j]])
        down_hi = node.hi.copy()
        down_hi[j] = math.floor(v)
        up_lo = node.lo.copy()
        up_lo[j] = math.ceil(v)
        down = self.lp(node.lo, down_hi, node.basis)
        up = self.lp(up_lo, node.hi, node.basis)
        for side, child, dist in ((0, down, v - math.floor(v)), (1, up, math.ceil(v) - v)):
            if child is not None:
                self.rise[side, j] += (child.bound - node.bound) / dist
                self.seen[side, j] += 1
        return down, up

    def estimate(self, node: _Node, j: int) -> float:
        """Pseudocost score of branching on ``j``: product of the expected bound rises."""
        v = float(node.x[self.ints[j]])
        down = self.rise[0, j] / self.seen[0, j] * (v - math.floor(v))
        up = self.rise[1, j] / self.seen[1, j] * (math.ceil(v) - v)
        return float(max(down, 1e-9) * max(up, 1e-9))

    def branch(self, node: _Node) -> list[_Node]:
        """Reliability branching at ``node``: the children to keep (none when it is closed).

        Integers not yet branched on ``RELIABLE`` times each way are strong-branched (both
        children solved; a side that cannot hold a better plan fixes the integer the other
        way and the node is tried again); the others are scored by their pseudocosts. The
        best score wins (strong branching at every node: two thirds of M's LPs were below the
        root, and the search took a fifth longer)."""
        while True:
            cand = self.fractional(node)
            if node.bound >= self.incumbent - self.gap:
                self.pruned = min(self.pruned, node.bound)
                return []
            if cand.size == 0:
                return []
            trusted = np.min(self.seen[:, cand], axis=0) >= RELIABLE
            best: tuple[_Node, _Node] | None = None
            best_score = -1.0
            tightened = False
            for j in cand[~trusted].tolist():
                down, up = self.children(node, j)
                if down is None or up is None:
                    # One side (or both) cannot hold a better plan: the node is the other.
                    survivor = up if down is None else down
                    if survivor is None:
                        return []
                    node = survivor
                    tightened = True
                    break
                score = max(down.bound - node.bound, 1e-9) * max(up.bound - node.bound, 1e-9)
                if score > best_score:
                    best, best_score = (down, up), score
            if tightened:
                continue
            guess = max(cand[trusted].tolist(), key=lambda j: self.estimate(node, j), default=None)
            if guess is not None and (best is None or self.estimate(node, guess) > best_score):
                return [c for c in self.children(node, guess) if c is not None]
            assert best is not None
            return list(best)


def branch_and_bound(
    mip: SmallMip,
    *,
    time_limit_s: float,
    absolute_gap: float = 1e-6,
    hint: NDArray[np.float64] | None = None,
    lp_limit: int | None = None,
) -> LpResult:
    """Solve ``mip`` to ``absolute_gap`` or the time limit (see the module doc).

    Status ``optimal`` (closed to the gap), ``feasible`` (an incumbent, not closed),
    ``no_solution_found`` (neither) or ``infeasible``. ``best_bound`` is valid in every case
    (−inf only when the root LP did not solve); ``values`` is the incumbent, in ``mip``'s
    variable order. ``lp_limit`` stops the search after that many LPs (a work limit: unlike
    the time limit, it stops at the same point on every run).
    """
    start = time.perf_counter()
    search = _Search(mip, start + time_limit_s, absolute_gap, lp_limit)
    if hint is not None and _satisfies(mip, hint):
        search.incumbent = float(np.dot(mip.cost, hint))
        search.best_x = np.asarray(hint, dtype=np.float64).copy()
    heap: list[tuple[float, int, _Node]] = []
    seq = 0
    rooted = False
    try:
        root = search.lp(mip.lb[search.ints].copy(), mip.ub[search.ints].copy())
        rooted = True
        if root is not None:
            heap.append((root.bound, seq, root))
        while heap and heap[0][0] < search.incumbent - absolute_gap:
            node = heapq.heappop(heap)[2]
            try:
                kids = search.branch(node)
            except _Stopped:
                seq += 1
                heapq.heappush(heap, (node.bound, seq, node))
                raise
            for kid in kids:
                seq += 1
                heapq.heappush(heap, (kid.bound, seq, kid))
    except _Stopped:
        pass
    bound = min([search.incumbent, search.pruned] + [b for b, _, _ in heap]) if rooted else -_INF
    has = search.best_x is not None
    if has and bound >= search.incumbent - absolute_gap:
        status = "optimal"
    elif has:
        status = "feasible"
    elif bound == _INF:
        status = "infeasible"
    else:
        status = "no_solution_found"
    return LpResult(
        status=status,
        has_solution=has,
        values=search.best_x if search.best_x is not None else np.zeros(len(mip.cost)),
        duals=np.zeros(0),
        objective=search.incumbent,
        best_bound=bound,
        wall_time_s=time.perf_counter() - start,
    )


def _satisfies(mip: SmallMip, x: NDArray[np.float64]) -> bool:
    """``x`` within every bound and row (tolerance ``FEASIBILITY_TOL``) and integral."""
    tol = FEASIBILITY_TOL
    if np.any(x < mip.lb - tol) or np.any(x > mip.ub + tol):
        return False
    xi = x[mip.integer]
    if np.any(np.abs(xi - np.round(xi)) > INTEGRAL_TOL):
        return False
    counts = np.diff(mip.start)
    rows = np.repeat(np.arange(len(mip.row_lo)), counts)
    activity = np.bincount(rows, weights=mip.value * x[mip.index], minlength=len(mip.row_lo))
    return bool(np.all(activity >= mip.row_lo - tol) and np.all(activity <= mip.row_hi + tol))
