"""Allocation policies behind one interface: the optimiser and the baselines it is measured by.

``AllocationPolicy.plan(problem) -> Plan`` is all a caller needs; each implementation lives in
its own module (like KEDA's scalers), so adding a policy touches no caller.
"""

from allocator.policies.base import AllocationPolicy, assemble_plan
from allocator.policies.greedy import GreedyPolicy
from allocator.policies.optimiser import OptimiserPolicy
from allocator.policies.reactive import ReactivePolicy as ReactivePolicy
from allocator.policies.static import StaticMode, StaticPolicy

__all__ = [
    "AllocationPolicy",
    "GreedyPolicy",
    "OptimiserPolicy",
    "StaticMode",
    "StaticPolicy",
    "assemble_plan",
]
