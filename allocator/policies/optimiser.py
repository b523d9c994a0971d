"""The optimiser as an allocation policy: a thin wrapper over :func:`allocator.model.solve`.

Why a wrapper: callers (services, bench, tests) hold a list of policies and call ``plan`` on
each; the optimiser's solver options (back-end, gap, time limit, seed) become the policy's
configuration instead of an extra argument only one policy understands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from allocator.domain import AllocationProblem, SolverOptions
from allocator.model.solve import solve
from allocator.plan import Plan


@dataclass(frozen=True, slots=True)
class OptimiserPolicy:
    """Contract-aware MIP optimisation with the given :class:`SolverOptions`."""

    options: SolverOptions = field(default_factory=SolverOptions)

    @property
    def name(self) -> str:
        """``optimiser:<backend>``, the same as the plans it returns."""
        return f"optimiser:{self.options.backend}"

    def plan(self, problem: AllocationProblem) -> Plan:
        """The optimal plan (to the configured relative gap) for ``problem``."""
        return solve(problem, self.options)
