"""flexforce allocator: the pure optimisation core (no Kafka, no clocks, no files).

Public API: build an :class:`AllocationProblem` from the domain objects and call
:func:`solve` to get a :class:`Plan`. Everything else is internal.

:func:`solve` is loaded on first use: it brings the solvers (HiGHS; OR-Tools once a MIP stage
runs), and processes that only build problems and read plans — the worker's main process,
which solves in a child process — should not pay for it.
"""

from typing import TYPE_CHECKING, Any

from allocator.domain import (
    AllocationProblem,
    Contract,
    Demand,
    PendingChange,
    PlanningRequest,
    Policy,
    Provider,
    ProviderLevel,
    RateTier,
    SkillRate,
    Sla,
    SolverOptions,
    Team,
    WorkStream,
)
from allocator.errors import AllocatorError, InvalidInput, SolverFailure
from allocator.plan import (
    Assignment,
    BindingConstraint,
    CapacityChange,
    CostBreakdown,
    Explanation,
    MarginalValue,
    Plan,
    ProviderLineLevels,
    ReasonCode,
    Relaxation,
    SolverStats,
    StreamService,
)

if TYPE_CHECKING:
    from allocator.model.solve import solve


def __getattr__(name: str) -> Any:
    if name == "solve":
        from allocator.model.solve import solve

        return solve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AllocationProblem",
    "AllocatorError",
    "Assignment",
    "BindingConstraint",
    "CapacityChange",
    "Contract",
    "CostBreakdown",
    "Demand",
    "Explanation",
    "InvalidInput",
    "MarginalValue",
    "PendingChange",
    "Plan",
    "PlanningRequest",
    "Policy",
    "Provider",
    "ProviderLevel",
    "ProviderLineLevels",
    "RateTier",
    "ReasonCode",
    "Relaxation",
    "SkillRate",
    "Sla",
    "SolverFailure",
    "SolverOptions",
    "SolverStats",
    "StreamService",
    "Team",
    "WorkStream",
    "solve",
]
