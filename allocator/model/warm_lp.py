"""The model's LP relaxation in one HiGHS instance, re-solved warm as bounds change.

Why not MathOpt here: the solve's LP stages are one LP solved again and again with different
variable bounds — the relaxation, then the same LP with every integer fixed at a rounding (the
plan), with the tier switches fixed (re-tiering), and with the plan's integers fixed once more
for the shadow prices. Through MathOpt each of these is a fresh model (a proto built, HiGHS
presolving from scratch; MathOpt's HiGHS interface takes no starting basis), so the fixed LP
cost as much as the relaxation (M: 0.42 s vs 0.47 s, and 0.2 s more for the dual LP with
GLOP). Kept in one ``highspy.Highs`` the basis survives a bounds change and dual simplex moves
from it: the fixed LP takes 0.03-0.05 s at M. The MIPs (Lagrangian blocks, neighbourhoods, the
full model) still go through MathOpt, so the back-end comparison (HiGHS vs SCIP) is unchanged.

Rows only ever join (lazy rows become active); a solve names the rows it wants and any not yet
in the instance are appended, so row positions here follow the order rows were added.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import highspy
import numpy as np
from highspy._core import _Highs
from numpy.typing import NDArray

from allocator.model.lp import LinearProgram, LpResult

_FEASIBLE = highspy.kSolutionStatusFeasible


class WarmLp:
    """``lp`` relaxed (integrality dropped) over a growing set of rows, solved warm."""

    def __init__(self, lp: LinearProgram) -> None:
        self._lp = lp
        self._rows: list[int] = []
        # highspy.Highs is this class plus Python callbacks, whose logging hook prints HiGHS'
        # banner on stdout at construction (a worker's stdout carries its JSON log lines).
        self._highs = _Highs()
        self._highs.setOptionValue("output_flag", False)
        self._highs.setOptionValue("random_seed", 0)
        # Measured on the M bench LP: presolve off 0.33 s vs 0.43 s and 24 MB less peak memory
        # (the presolved copy); L the same speed either way. The later solves start from a
        # basis, which skips presolve anyway.
        self._highs.setOptionValue("presolve", "off")
        model = highspy.HighsLp()
        model.num_col_ = lp.num_vars
        model.num_row_ = 0
        model.col_cost_ = np.asarray(lp.obj, dtype=np.float64)
        model.offset_ = lp.offset
        model.col_lower_ = np.asarray(lp.lb, dtype=np.float64)
        model.col_upper_ = np.asarray(lp.ub, dtype=np.float64)
        model.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        model.a_matrix_.start_ = np.zeros(1, dtype=np.int32)
        self._highs.passModel(model)

    def _add_rows(self, rows: Sequence[int]) -> None:
        new = sorted(set(rows).difference(self._rows))
        if not new:
            return
        lp = self._lp
        row_ids, cols, coef = lp.triplets(new)
        starts = np.searchsorted(row_ids, np.asarray(new, dtype=np.int64)).astype(np.int32)
        self._highs.addRows(
            len(new),
            np.asarray([lp.row_lo[r] for r in new], dtype=np.float64),
            np.asarray([lp.row_hi[r] for r in new], dtype=np.float64),
            len(cols),
            starts,
            cols.astype(np.int32),
            coef,
        )
        self._rows.extend(new)

    def solve(
        self,
        rows: Sequence[int],
        *,
        time_limit_s: float,
        lb: NDArray[np.float64] | None = None,
        ub: NDArray[np.float64] | None = None,
    ) -> LpResult:
        """The LP over ``rows`` with variable bounds ``lb``/``ub`` (default: the model's), from
        the last solve's basis. Values by variable index, duals by row index (0 elsewhere)."""
        lp = self._lp
        start = time.perf_counter()
        self._add_rows(rows)
        n = lp.num_vars
        h = self._highs
        h.changeColsBounds(
            n,
            np.arange(n, dtype=np.int32),
            np.asarray(lp.lb if lb is None else lb, dtype=np.float64),
            np.asarray(lp.ub if ub is None else ub, dtype=np.float64),
        )
        h.setOptionValue("time_limit", max(1e-3, float(time_limit_s)))
        h.run()
        elapsed = time.perf_counter() - start
        status = h.getModelStatus()
        info = h.getInfo()
        values = np.zeros(n)
        duals = np.zeros(lp.num_rows)
        has = info.primal_solution_status == _FEASIBLE
        objective = math.inf
        if has:
            sol = h.getSolution()
            values[:] = sol.col_value
            objective = float(info.objective_function_value)
            if info.dual_solution_status == _FEASIBLE:
                duals[np.asarray(self._rows, dtype=np.int64)] = sol.row_dual
        if status == highspy.HighsModelStatus.kOptimal:
            name = "optimal"
        elif status == highspy.HighsModelStatus.kInfeasible:
            name = "infeasible"
        elif has:
            name = "feasible"
        else:
            name = "no_solution_found"
        return LpResult(
            status=name,
            has_solution=has,
            values=values,
            duals=duals,
            objective=objective,
            best_bound=objective if name == "optimal" else -math.inf,
            wall_time_s=elapsed,
        )
