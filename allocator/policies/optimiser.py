"""The optimiser as an allocation policy: a thin wrapper over :func:`allocator.model.solve`.

Why a wrapper: callers (services, bench, tests) hold a list of policies and call ``plan`` on
each; the optimiser's solver options (back-end, gap, time limit, seed) become the policy's
configuration instead of an extra argument only one policy understands.

When the solver finds no plan at all within its limit (a loaded machine, a short limit), the
policy returns the greedy plan instead — labelled as such in its policy name, solver status and
explanation — because a planning service that holds capacity for want of a proof of optimality
serves nobody. Wrong input is different: :class:`~allocator.errors.InvalidInput` still raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from allocator.domain import AllocationProblem, SolverOptions
from allocator.errors import SolverFailure
from allocator.plan import Plan
from allocator.policies.greedy import GreedyPolicy


@dataclass(frozen=True, slots=True)
class OptimiserPolicy:
    """Contract-aware MIP optimisation with the given :class:`SolverOptions`."""

    options: SolverOptions = field(default_factory=SolverOptions)
    fallback_to_greedy: bool = True

    @property
    def name(self) -> str:
        """``optimiser:<backend>``, the same as the plans it returns."""
        return f"optimiser:{self.options.backend}"

    def plan(self, problem: AllocationProblem) -> Plan:
        """The optimal plan (to the configured relative gap) for ``problem``; the greedy plan,
        clearly labelled, if the solver found none in time."""
        # Imported here: the solver brings HiGHS (and OR-Tools), which a process that only
        # holds the policy (the worker's main process; it plans in a child) need not load.
        from allocator.model.solve import solve

        try:
            return solve(problem, self.options)
        except SolverFailure as failure:
            if not self.fallback_to_greedy or self.options.backend == "cp_sat":
                raise  # cp_sat is refused by design: a configuration error, not a bad day
            greedy = GreedyPolicy().plan(problem)
            note = f"optimiser found no plan ({failure}); the greedy plan is used instead"
            return replace(
                greedy,
                policy=f"{self.name}+greedy-fallback",
                explanation=replace(greedy.explanation, notes=(*greedy.explanation.notes, note)),
            )
