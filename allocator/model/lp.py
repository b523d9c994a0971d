"""A small backend-neutral sparse MIP container, solved through OR-Tools' MPModelProto.

Why not pywraplp/MathOpt objects: building a model with hundreds of thousands of variables one
SWIG call at a time dominates the run time at the L size. Variables and rows are collected in
plain Python lists, turned into one ``MPModelProto`` and handed to the chosen back-end (HiGHS,
SCIP or CP-SAT) in a single call; the same proto serves every back-end, which keeps the solver
comparison honest.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from ortools.linear_solver import linear_solver_pb2 as pb
from ortools.linear_solver import pywraplp

from allocator.domain import Backend

INF = math.inf

_SOLVER_TYPES: dict[Backend, int] = {
    "highs": pb.MPModelRequest.HIGHS_MIXED_INTEGER_PROGRAMMING,
    "scip": pb.MPModelRequest.SCIP_MIXED_INTEGER_PROGRAMMING,
    "cp_sat": pb.MPModelRequest.SAT_INTEGER_PROGRAMMING,
}
_LP_SOLVER = pb.MPModelRequest.GLOP_LINEAR_PROGRAMMING


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
    ) -> int:
        """Add ``lo <= Σ coef·x[idx] <= hi`` and return its row index."""
        self.row_idx.append(list(idx))
        self.row_coef.append(list(coef))
        self.row_lo.append(lo)
        self.row_hi.append(hi)
        self.row_name.append(name)
        return len(self.row_lo) - 1

    def to_proto(
        self,
        *,
        fixed: dict[int, float] | None = None,
        relax: bool = False,
    ) -> pb.MPModelProto:
        """The model as a proto; ``fixed`` pins variables, ``relax`` drops integrality."""
        model = pb.MPModelProto()
        fixed = fixed or {}
        for j in range(self.num_vars):
            v = model.variable.add()
            if j in fixed:
                v.lower_bound = v.upper_bound = fixed[j]
            else:
                v.lower_bound = self.lb[j]
                v.upper_bound = self.ub[j]
            v.objective_coefficient = self.obj[j]
            v.is_integer = self.integer[j] and not relax
        for r in range(self.num_rows):
            c = model.constraint.add()
            c.var_index.extend(self.row_idx[r])
            c.coefficient.extend(self.row_coef[r])
            c.lower_bound = self.row_lo[r]
            c.upper_bound = self.row_hi[r]
        model.objective_offset = self.offset
        return model

    def solve(
        self,
        backend: Backend,
        *,
        time_limit_s: float,
        relative_gap: float,
        threads: int,
        seed: int,
    ) -> LpResult:
        """Solve the MIP with ``backend``; deterministic for fixed threads and seed."""
        params = _params(backend, relative_gap=relative_gap, threads=threads, seed=seed)
        request = pb.MPModelRequest(
            model=self.to_proto(),
            solver_type=_SOLVER_TYPES[backend],
            solver_time_limit_seconds=time_limit_s,
            solver_specific_parameters=params,
        )
        return _run(request, self.num_vars, self.num_rows)

    def solve_lp_fixed(self, fixed: dict[int, float], time_limit_s: float) -> LpResult:
        """Solve the LP with ``fixed`` variables pinned (integrality dropped): duals = prices."""
        request = pb.MPModelRequest(
            model=self.to_proto(fixed=fixed, relax=True),
            solver_type=_LP_SOLVER,
            solver_time_limit_seconds=time_limit_s,
        )
        return _run(request, self.num_vars, self.num_rows)


def _params(backend: Backend, *, relative_gap: float, threads: int, seed: int) -> str:
    if backend == "highs":
        return (
            f"output_flag=false\nmip_rel_gap={relative_gap}\nthreads={threads}\n"
            f"random_seed={seed}\n"
        )
    if backend == "scip":
        return (
            f"limits/gap = {relative_gap}\nrandomization/randomseedshift = {seed}\n"
            "display/verblevel = 0\n"
        )
    return (
        f"relative_gap_limit: {relative_gap} num_workers: {threads} random_seed: {seed} "
        "log_search_progress: false"
    )


def _run(request: pb.MPModelRequest, n_vars: int, n_rows: int) -> LpResult:
    response = pb.MPSolutionResponse()
    start = time.perf_counter()
    pywraplp.Solver.SolveWithProto(request, response)
    elapsed = time.perf_counter() - start
    status = pb.MPSolverResponseStatus.Name(response.status)
    has = response.status in (pb.MPSOLVER_OPTIMAL, pb.MPSOLVER_FEASIBLE) and (
        len(response.variable_value) == n_vars
    )
    values = np.asarray(response.variable_value, dtype=np.float64) if has else np.zeros(n_vars)
    duals = (
        np.asarray(response.dual_value, dtype=np.float64)
        if len(response.dual_value) == n_rows
        else np.zeros(n_rows)
    )
    bound = response.best_objective_bound if has else -INF
    return LpResult(
        status=status,
        has_solution=has,
        values=values,
        duals=duals,
        objective=response.objective_value if has else INF,
        best_bound=bound,
        wall_time_s=elapsed,
    )
