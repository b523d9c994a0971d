"""A small backend-neutral sparse MIP container.

Variables and rows are collected in plain Python lists; :mod:`allocator.model.mathopt` turns
them into one OR-Tools MathOpt proto for the MIP back-ends (HiGHS, SCIP), and
:mod:`allocator.model.warm_lp` into one highspy instance for the LP stages.

Rows can be *lazy*: dense horizon-wide rows (vendor concentration, budget) slow every simplex
pivot several-fold and rarely bind. They are left out of the solve until a solution violates
them (see :mod:`allocator.model.solve`); dropping rows only relaxes the model, so bounds found
without them stay valid bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from allocator.domain import Backend

INF = math.inf

LpBackend = Backend | str
"""A MIP back-end, or ``"highs_lp"`` for a pure LP (the level search's segment LPs)."""


@dataclass(frozen=True, slots=True)
class LpResult:
    """Raw solver answer: values by variable index, duals by row index (LP solves only)."""

    status: str
    has_solution: bool
    values: NDArray[np.float64]
    duals: NDArray[np.float64]
    objective: float
    best_bound: float
    wall_time_s: float


class LinearProgram:
    """Minimisation MIP: ``min c·x + offset  s.t.  lo <= Ax <= hi,  lb <= x <= ub``."""

    def __init__(self) -> None:
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.obj: list[float] = []
        self.integer: list[bool] = []
        self.row_idx: list[list[int]] = []
        self.row_coef: list[list[float]] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []
        self.row_name: list[str] = []
        self.lazy: list[bool] = []
        self.offset = 0.0

    @property
    def num_vars(self) -> int:
        """Number of variables."""
        return len(self.lb)

    @property
    def num_rows(self) -> int:
        """Number of constraints."""
        return len(self.row_lo)

    @property
    def num_integer(self) -> int:
        """Number of integer variables."""
        return sum(self.integer)

    def var(self, lb: float = 0.0, ub: float = INF, obj: float = 0.0, integer: bool = False) -> int:
        """Add one variable and return its index."""
        self.lb.append(lb)
        self.ub.append(ub)
        self.obj.append(obj)
        self.integer.append(integer)
        return len(self.lb) - 1

    def add_obj(self, index: int, coef: float) -> None:
        """Add ``coef`` to the objective coefficient of variable ``index``."""
        self.obj[index] += coef

    def row(
        self,
        idx: Sequence[int],
        coef: Sequence[float],
        lo: float = -INF,
        hi: float = INF,
        name: str = "",
        lazy: bool = False,
    ) -> int:
        """Add ``lo <= Σ coef·x[idx] <= hi`` and return its row index."""
        self.row_idx.append(list(idx))
        self.row_coef.append(list(coef))
        self.row_lo.append(lo)
        self.row_hi.append(hi)
        self.row_name.append(name)
        self.lazy.append(lazy)
        return len(self.row_lo) - 1

    def activity(self, values: NDArray[np.float64], row: int) -> float:
        """``Σ coef·x`` of ``row`` at ``values``."""
        idx = self.row_idx[row]
        return float(np.dot(values[idx], self.row_coef[row])) if idx else 0.0

    def violated(self, values: NDArray[np.float64], rows: Sequence[int], tol: float) -> list[int]:
        """Rows among ``rows`` that ``values`` break by more than ``tol`` (relative)."""
        out: list[int] = []
        for r in rows:
            act = self.activity(values, r)
            lo, hi = self.row_lo[r], self.row_hi[r]
            if act > hi + tol * max(1.0, abs(hi)) or act < lo - tol * max(1.0, abs(lo)):
                out.append(r)
        return out

    def objective_at(self, values: NDArray[np.float64]) -> float:
        """Objective value at ``values``."""
        return float(np.dot(np.asarray(self.obj), values)) + self.offset

    def triplets(
        self, rows: Sequence[int]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """The matrix of ``rows`` (ascending) as (row id, column, coefficient), sorted by row
        then column, with repeated (row, column) entries summed: MathOpt requires a strictly
        sorted matrix, and HiGHS a row without repeated columns."""
        lengths = [len(self.row_idx[r]) for r in rows]
        total = sum(lengths)
        row_ids = np.repeat(np.asarray(rows, dtype=np.int64), lengths)
        cols = np.fromiter((c for r in rows for c in self.row_idx[r]), np.int64, total)
        coef = np.fromiter((c for r in rows for c in self.row_coef[r]), np.float64, total)
        order = np.lexsort((cols, row_ids))
        row_ids, cols, coef = row_ids[order], cols[order], coef[order]
        if total:
            keep = np.ones(total, dtype=bool)
            keep[1:] = (row_ids[1:] != row_ids[:-1]) | (cols[1:] != cols[:-1])
            group = np.cumsum(keep) - 1
            coef = np.bincount(group, weights=coef).astype(np.float64)
            row_ids, cols = row_ids[keep], cols[keep]
        return row_ids, cols, coef


@dataclass(frozen=True, slots=True)
class SmallMip:
    """``min cost·x  s.t.  row_lo ≤ Ax ≤ row_hi,  lb ≤ x ≤ ub,  x[integer] integral``.

    ``A`` is row-wise (``start``/``index``/``value``, HiGHS' CSR layout). Solved by
    :func:`allocator.model.branch.branch_and_bound`, or through MathOpt
    (:func:`allocator.model.mathopt.sub_proto`)."""

    cost: NDArray[np.float64]
    lb: NDArray[np.float64]
    ub: NDArray[np.float64]
    row_lo: NDArray[np.float64]
    row_hi: NDArray[np.float64]
    start: NDArray[np.int32]
    index: NDArray[np.int32]
    value: NDArray[np.float64]
    integer: NDArray[np.bool_]


def sub_mip(
    lp: LinearProgram,
    vs: NDArray[np.int64],
    rows: Sequence[int],
    cost: NDArray[np.float64],
    lb: NDArray[np.float64],
    ub: NDArray[np.float64],
    at: NDArray[np.float64] | None = None,
) -> SmallMip:
    """The part of ``lp`` over variables ``vs`` (sorted) and ``rows``, priced by ``cost``.

    Variables of a row that are not in ``vs`` are held at ``at`` and moved into the row's
    bounds (a neighbourhood of a plan); without ``at`` every row must lie within ``vs``. The
    Lagrangian blocks and the neighbourhoods of a plan are such parts.
    """
    rows = list(rows)
    row_ids, cols, coef = lp.triplets(sorted(rows))
    order = np.asarray(sorted(rows), dtype=np.int64)
    pos = np.searchsorted(vs, cols)
    pos_ok = pos < len(vs)
    inside = np.zeros(len(cols), dtype=bool)
    inside[pos_ok] = vs[pos[pos_ok]] == cols[pos_ok]
    r_pos = np.searchsorted(order, row_ids)
    held = np.zeros(len(order))
    if not np.all(inside):
        if at is None:
            raise ValueError("a row reaches outside the sub-model and nothing holds it")
        np.add.at(held, r_pos[~inside], coef[~inside] * at[cols[~inside]])
    lo = np.asarray([lp.row_lo[r] for r in order], dtype=np.float64) - held
    hi = np.asarray([lp.row_hi[r] for r in order], dtype=np.float64) - held
    counts = np.bincount(r_pos[inside], minlength=len(order))
    return SmallMip(
        cost=np.asarray(cost[vs], dtype=np.float64),
        lb=np.asarray(lb[vs], dtype=np.float64),
        ub=np.asarray(ub[vs], dtype=np.float64),
        row_lo=lo,
        row_hi=hi,
        start=np.concatenate(([0], np.cumsum(counts))).astype(np.int32),
        index=pos[inside].astype(np.int32),
        value=coef[inside],
        integer=np.fromiter((lp.integer[v] for v in vs.tolist()), dtype=bool, count=len(vs)),
    )
