"""flexforce allocator: the pure optimisation core (no Kafka, no clocks, no files).

Public API: build an :class:`AllocationProblem` from the domain objects and call
:func:`solve` to get a :class:`Plan`. Everything else is internal.
"""

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
from allocator.model import solve
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
