"""A small backend-neutral sparse MIP container, solved through OR-Tools MathOpt.

Why not pywraplp/MathOpt model objects: building a model with hundreds of thousands of variables
one call at a time dominates the run time at the L size. Variables and rows are collected in
plain Python lists, turned into one MathOpt ``ModelProto`` with numpy and handed to the chosen
back-end (HiGHS or SCIP) in a single call; the same proto serves every back-end, which keeps the
solver comparison honest.

Why MathOpt and not ``pywraplp.Solver.SolveWithProto``: through the MPModelRequest path HiGHS
reports a time-limited solve as UNKNOWN and drops the feasible solution it found, and its time
limit is only checked between root separation rounds. MathOpt returns the incumbent with its
bound, takes the relative gap and seed as first-class parameters, and accepts an interrupter,
which a watchdog timer triggers shortly after the time limit so a limit is a limit.

Rows can be *lazy*: dense horizon-wide rows (vendor concentration, budget) slow every simplex
pivot several-fold and rarely bind. They are left out of the solve until a solution violates
them (see :mod:`allocator.model.solve`); dropping rows only relaxes the model, so bounds found
without them stay valid bounds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from ortools.math_opt import (
    callback_pb2,
    model_parameters_pb2,
    model_pb2,
    parameters_pb2,
    result_pb2,
)
from ortools.math_opt.core.python import solver as mathopt_solver
from ortools.util.python import solve_interrupter
from pybind11_abseil.status import StatusNotOk

from allocator.domain import Backend

INF = math.inf

LpBackend = Backend | str
"""A MIP back-end, or ``"glop"``/``"highs_lp"`` for pure LPs."""

_SOLVER_TYPES: dict[str, int] = {
    "highs": parameters_pb2.SOLVER_TYPE_HIGHS,
    "scip": parameters_pb2.SOLVER_TYPE_GSCIP,
    "glop": parameters_pb2.SOLVER_TYPE_GLOP,
    "highs_lp": parameters_pb2.SOLVER_TYPE_HIGHS,
}
HIGHS_ROOT_HEURISTICS = (
    "mip_heuristic_run_rens",
    "mip_heuristic_run_rins",
    "mip_heuristic_run_root_reduced_cost",
)
"""HiGHS root sub-MIP heuristics that its heuristic effort 0 (``EMPHASIS_OFF``) leaves on."""
WATCHDOG_GRACE_S = 1.0
"""Seconds past the time limit after which the watchdog interrupts the back-end."""


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

    def to_proto(
        self,
        rows: Sequence[int],
        *,
        relax: bool = False,
        lb: NDArray[np.float64] | None = None,
        ub: NDArray[np.float64] | None = None,
    ) -> model_pb2.ModelProto:
        """The model over ``rows`` as a MathOpt proto; ``relax`` drops integrality.

        ``lb``/``ub`` override the variable bounds (fixing integers for the dual LP, or the
        bounded sub-MIP of the rounding heuristic). Variable and row ids are the indices used
        here, so solutions and duals map straight back.
        """
        n = self.num_vars
        model = model_pb2.ModelProto()
        v = model.variables
        v.ids.extend(range(n))
        v.lower_bounds.extend(self.lb if lb is None else lb.tolist())
        v.upper_bounds.extend(self.ub if ub is None else ub.tolist())
        v.integers.extend([False] * n if relax else self.integer)
        obj = np.asarray(self.obj, dtype=np.float64)
        nz = np.flatnonzero(obj)
        model.objective.offset = self.offset
        model.objective.linear_coefficients.ids.extend(nz.tolist())
        model.objective.linear_coefficients.values.extend(obj[nz].tolist())
        rows = sorted(rows)
        cons = model.linear_constraints
        cons.ids.extend(rows)
        cons.lower_bounds.extend(self.row_lo[r] for r in rows)
        cons.upper_bounds.extend(self.row_hi[r] for r in rows)
        row_ids, cols, coef = self.triplets(rows)
        mat = model.linear_constraint_matrix
        mat.row_ids.extend(row_ids.tolist())
        mat.column_ids.extend(cols.tolist())
        mat.coefficients.extend(coef.tolist())
        return model

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

    def sub_proto(
        self,
        vs: NDArray[np.int64],
        rows: Sequence[int],
        cost: NDArray[np.float64],
        lb: NDArray[np.float64],
        ub: NDArray[np.float64],
        at: NDArray[np.float64] | None = None,
    ) -> model_pb2.ModelProto:
        """The model over variables ``vs`` (ids ``0..len-1``) and ``rows`` (ids ``0..``).

        Variables of a row that are not in ``vs`` are held at ``at`` and moved into the row's
        bounds (a neighbourhood of a plan); without ``at`` every row must lie within ``vs``
        (a decomposition block).
        """
        pos = {int(v): i for i, v in enumerate(vs)}
        model = model_pb2.ModelProto()
        var = model.variables
        var.ids.extend(range(len(vs)))
        var.lower_bounds.extend(lb[vs].tolist())
        var.upper_bounds.extend(ub[vs].tolist())
        var.integers.extend([self.integer[int(v)] for v in vs])
        c = cost[vs]
        nz = np.flatnonzero(c)
        model.objective.linear_coefficients.ids.extend(nz.tolist())
        model.objective.linear_coefficients.values.extend(c[nz].tolist())
        cons = model.linear_constraints
        cons.ids.extend(range(len(rows)))
        mat = model.linear_constraint_matrix
        for i, r in enumerate(rows):
            merged: dict[int, float] = {}
            held = 0.0
            for v, a in zip(self.row_idx[r], self.row_coef[r], strict=True):
                j = pos.get(v)
                if j is not None:
                    merged[j] = merged.get(j, 0.0) + a
                elif at is None:
                    raise ValueError(f"row {r} reaches outside the sub-model and nothing holds it")
                else:
                    held += a * float(at[v])
            cons.lower_bounds.append(self.row_lo[r] - held)
            cons.upper_bounds.append(self.row_hi[r] - held)
            for j in sorted(merged):
                mat.row_ids.append(i)
                mat.column_ids.append(j)
                mat.coefficients.append(merged[j])
        return model

    def solve(
        self,
        backend: LpBackend,
        rows: Sequence[int],
        *,
        time_limit_s: float,
        relative_gap: float = 0.0,
        threads: int = 1,
        seed: int = 0,
        relax: bool = False,
        lb: NDArray[np.float64] | None = None,
        ub: NDArray[np.float64] | None = None,
        hint: NDArray[np.float64] | None = None,
    ) -> LpResult:
        """Solve over ``rows`` with ``backend``; deterministic for fixed threads and seed."""
        model = self.to_proto(rows, relax=relax, lb=lb, ub=ub)
        params = _params(backend, time_limit_s, relative_gap, threads, seed)
        model_params = model_parameters_pb2.ModelSolveParametersProto()
        if hint is not None:
            h = model_params.solution_hints.add()
            h.variable_values.ids.extend(range(self.num_vars))
            h.variable_values.values.extend(hint.tolist())
        return _run(
            model, backend, params, model_params, time_limit_s, self.num_vars, self.num_rows
        )


def solve_model(
    model: model_pb2.ModelProto,
    backend: LpBackend,
    *,
    time_limit_s: float,
    relative_gap: float = 0.0,
    absolute_gap: float = 1e-6,
    seed: int = 0,
    hint: NDArray[np.float64] | None = None,
    root_bound: bool = False,
    restarts: bool = True,
) -> LpResult:
    """Solve a ready-made proto (e.g. :meth:`LinearProgram.sub_proto`) with the usual guards.

    Variable and row ids must be ``0..n-1`` and ``0..m-1``: values and duals come back by them;
    ``hint`` (by variable id) is a starting solution.

    ``root_bound`` asks only for the dual bound after the root node: one node, no primal
    heuristics (any solution returned is whatever came for free and may be poor). Why: the
    Lagrangian blocks need bounds, not plans; on M the root cuts give 97 % of the blocks' full
    MIP gain (20.4k of 20.9k) for a third of the CPU (HiGHS spent most of its block time in
    RENS/RINS sub-MIPs and restarts), and a node limit stops at the same point on every run,
    where a time limit would not. ``restarts=False`` keeps HiGHS from restarting its root
    after presolve reductions (each restart redoes the cut rounds).
    """
    params = _params(backend, time_limit_s, relative_gap, 1, seed, absolute_gap)
    if root_bound:
        params.node_limit = 1
        params.heuristics = parameters_pb2.EMPHASIS_OFF
        if backend == "highs":
            for name in HIGHS_ROOT_HEURISTICS:
                params.highs.bool_options[name] = False
    if not restarts and backend == "highs":
        params.highs.bool_options["mip_allow_restart"] = False
    model_params = model_parameters_pb2.ModelSolveParametersProto()
    if hint is not None:
        h = model_params.solution_hints.add()
        h.variable_values.ids.extend(range(len(hint)))
        h.variable_values.values.extend(hint.tolist())
    return _run(
        model,
        backend,
        params,
        model_params,
        time_limit_s,
        len(model.variables.ids),
        len(model.linear_constraints.ids),
    )


def _params(
    backend: LpBackend,
    time_limit_s: float,
    gap: float,
    threads: int,
    seed: int,
    absolute_gap: float = 1e-6,
) -> parameters_pb2.SolveParametersProto:
    params = parameters_pb2.SolveParametersProto()
    params.time_limit.FromNanoseconds(int(time_limit_s * 1e9))
    params.enable_output = False
    if backend in ("highs", "scip"):
        params.relative_gap_tolerance = gap
        params.absolute_gap_tolerance = absolute_gap
        params.random_seed = seed
    if backend == "scip":
        params.threads = threads
    # HiGHS takes its thread count from its globals (MathOpt refuses ``threads``); its MIP
    # search runs on one thread, so it is deterministic for a fixed seed regardless.
    return params


def _run(
    model: model_pb2.ModelProto,
    backend: LpBackend,
    params: parameters_pb2.SolveParametersProto,
    model_params: model_parameters_pb2.ModelSolveParametersProto,
    time_limit_s: float,
    n_vars: int,
    n_rows: int,
) -> LpResult:
    interrupter = solve_interrupter.SolveInterrupter()
    # Only HiGHS needs the watchdog (SCIP and GLOP keep their limits; gSCIP's interrupt hook
    # also logs spurious event-handler errors).
    use_watchdog = backend in ("highs", "highs_lp")
    watchdog = threading.Timer(time_limit_s + WATCHDOG_GRACE_S, interrupter.interrupt)
    watchdog.daemon = True
    start = time.perf_counter()
    if use_watchdog:
        watchdog.start()
    try:
        res: result_pb2.SolveResultProto = mathopt_solver.solve(
            model,
            _SOLVER_TYPES[backend],
            parameters_pb2.SolverInitializerProto(),
            params,
            model_params,
            None,
            callback_pb2.CallbackRegistrationProto(),
            None,
            interrupter.pybind_interrupter if use_watchdog else None,
        )
    except StatusNotOk as exc:
        # A back-end error (e.g. a rejected hint) is "no solution" for the caller, who then
        # falls back to the next stage or reports a SolverFailure naming it.
        res = result_pb2.SolveResultProto()
        res.termination.reason = result_pb2.TERMINATION_REASON_OTHER_ERROR
        res.termination.detail = str(exc)
    finally:
        watchdog.cancel()
    elapsed = time.perf_counter() - start
    reason = result_pb2.TerminationReasonProto.Name(res.termination.reason)
    status = reason.removeprefix("TERMINATION_REASON_").lower()
    if res.termination.reason == result_pb2.TERMINATION_REASON_OTHER_ERROR:
        status += f" ({res.termination.detail})"
    values = np.zeros(n_vars)
    duals = np.zeros(n_rows)
    has = False
    objective = INF
    for sol in res.solutions:
        if not sol.HasField("primal_solution"):
            continue
        primal = sol.primal_solution
        if primal.feasibility_status != 2:  # SOLUTION_STATUS_FEASIBLE
            continue
        ids = np.asarray(primal.variable_values.ids, dtype=np.int64)
        values[ids] = np.asarray(primal.variable_values.values, dtype=np.float64)
        objective = primal.objective_value
        has = True
        if sol.HasField("dual_solution"):
            d_ids = np.asarray(sol.dual_solution.dual_values.ids, dtype=np.int64)
            duals[d_ids] = np.asarray(sol.dual_solution.dual_values.values, dtype=np.float64)
        break
    bound = res.termination.objective_bounds.dual_bound if has else -INF
    if not math.isfinite(bound):
        bound = -INF
    return LpResult(
        status=status,
        has_solution=has,
        values=values,
        duals=duals,
        objective=objective,
        best_bound=bound,
        wall_time_s=elapsed,
    )
