"""Solving a :class:`~allocator.model.lp.LinearProgram` (or a part of it) through OR-Tools MathOpt.

Why protos and not pywraplp/MathOpt model objects: building a model with hundreds of thousands
of variables one call at a time dominates the run time at the L size. The container's plain
Python lists become one MathOpt ``ModelProto`` with numpy and go to the chosen back-end (HiGHS
or SCIP) in a single call; the same proto serves every back-end, which keeps the solver
comparison honest.

Why MathOpt and not ``pywraplp.Solver.SolveWithProto``: through the MPModelRequest path HiGHS
reports a time-limited solve as UNKNOWN and drops the feasible solution it found, and its time
limit is only checked between root separation rounds. MathOpt returns the incumbent with its
bound, takes the relative gap and seed as first-class parameters, and accepts an interrupter,
which a watchdog timer triggers shortly after the time limit so a limit is a limit.

Its own module so that OR-Tools loads only where a MIP is solved: a live plan whose rounded LP
(:mod:`allocator.model.warm_lp`, HiGHS through highspy) meets the gap never imports it, and the
worker's planner process stays 21 MB smaller (MathOpt's import, measured).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

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

from allocator.model.lp import INF, LinearProgram, LpBackend, LpResult, SmallMip

_SOLVER_TYPES: dict[str, int] = {
    "highs": parameters_pb2.SOLVER_TYPE_HIGHS,
    "scip": parameters_pb2.SOLVER_TYPE_GSCIP,
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


def to_proto(
    lp: LinearProgram,
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
    n = lp.num_vars
    model = model_pb2.ModelProto()
    v = model.variables
    v.ids.extend(range(n))
    v.lower_bounds.extend(lp.lb if lb is None else lb.tolist())
    v.upper_bounds.extend(lp.ub if ub is None else ub.tolist())
    v.integers.extend([False] * n if relax else lp.integer)
    obj = np.asarray(lp.obj, dtype=np.float64)
    nz = np.flatnonzero(obj)
    model.objective.offset = lp.offset
    model.objective.linear_coefficients.ids.extend(nz.tolist())
    model.objective.linear_coefficients.values.extend(obj[nz].tolist())
    rows = sorted(rows)
    cons = model.linear_constraints
    cons.ids.extend(rows)
    cons.lower_bounds.extend(lp.row_lo[r] for r in rows)
    cons.upper_bounds.extend(lp.row_hi[r] for r in rows)
    row_ids, cols, coef = lp.triplets(rows)
    mat = model.linear_constraint_matrix
    mat.row_ids.extend(row_ids.tolist())
    mat.column_ids.extend(cols.tolist())
    mat.coefficients.extend(coef.tolist())
    return model


def sub_proto(mip: SmallMip) -> model_pb2.ModelProto:
    """``mip`` (a part of the model, :func:`allocator.model.lp.sub_mip`) as a MathOpt proto:
    variable and row ids are its positions."""
    model = model_pb2.ModelProto()
    var = model.variables
    var.ids.extend(range(len(mip.cost)))
    var.lower_bounds.extend(mip.lb.tolist())
    var.upper_bounds.extend(mip.ub.tolist())
    var.integers.extend(mip.integer.tolist())
    nz = np.flatnonzero(mip.cost)
    model.objective.linear_coefficients.ids.extend(nz.tolist())
    model.objective.linear_coefficients.values.extend(mip.cost[nz].tolist())
    cons = model.linear_constraints
    cons.ids.extend(range(len(mip.row_lo)))
    cons.lower_bounds.extend(mip.row_lo.tolist())
    cons.upper_bounds.extend(mip.row_hi.tolist())
    mat = model.linear_constraint_matrix
    mat.row_ids.extend(np.repeat(np.arange(len(mip.row_lo)), np.diff(mip.start)).tolist())
    mat.column_ids.extend(mip.index.tolist())
    mat.coefficients.extend(mip.value.tolist())
    return model


def solve(
    lp: LinearProgram,
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
    model = to_proto(lp, rows, relax=relax, lb=lb, ub=ub)
    params = solver_params(backend, time_limit_s, relative_gap, threads, seed)
    model_params = model_parameters_pb2.ModelSolveParametersProto()
    if hint is not None:
        h = model_params.solution_hints.add()
        h.variable_values.ids.extend(range(lp.num_vars))
        h.variable_values.values.extend(hint.tolist())
    return run(model, backend, params, model_params, time_limit_s, lp.num_vars, lp.num_rows)


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
    """Solve a ready-made proto (e.g. :func:`sub_proto`) with the usual guards.

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
    params = solver_params(backend, time_limit_s, relative_gap, 1, seed, absolute_gap)
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
    return run(
        model,
        backend,
        params,
        model_params,
        time_limit_s,
        len(model.variables.ids),
        len(model.linear_constraints.ids),
    )


def solver_params(
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


def run(
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
