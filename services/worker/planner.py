"""Solving off the event loop, in a separate process, with a hard deadline.

OR-Tools holds the GIL through most of a solve (measured: a 0.75 s solve stalled a Python thread
for 0.62 s), so a solve in a thread would starve the event loop — and with it Kafka heartbeats,
which would make the group think the worker died. A one-process pool keeps the loop free; a
deadline past the solver's own time limit catches a solver that ignores it, and a pool that
stopped answering is replaced.
"""

from __future__ import annotations

import asyncio
import copyreg
import multiprocessing
import time
import types
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import structlog

from allocator import AllocationProblem, Plan, SolverOptions
from allocator.policies import GreedyPolicy, OptimiserPolicy, StaticPolicy
from allocator.policies.base import AllocationPolicy
from services.worker.gc_tuning import tune_gc

log = structlog.get_logger(__name__)

POLICIES = ("optimiser", "greedy", "static")


# Domain objects freeze their mappings as MappingProxyType, which pickle refuses; they cross to
# the solver process as plain dicts and are frozen again on the other side.
def _frozen_mapping(items: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(items)


copyreg.pickle(types.MappingProxyType, lambda proxy: (_frozen_mapping, (dict(proxy),)))


def make_policy(name: str, time_limit_s: float) -> AllocationPolicy:
    """The allocation policy a worker plans with (the baselines serve comparisons and tests)."""
    if name == "optimiser":
        return OptimiserPolicy(SolverOptions(time_limit_s=time_limit_s))
    if name == "greedy":
        return GreedyPolicy()
    if name == "static":
        return StaticPolicy("once")
    raise ValueError(f"unknown planning policy {name!r}; choose one of {POLICIES}")


def _plan_in_child(policy_name: str, time_limit_s: float, problem: AllocationProblem) -> Plan:
    return make_policy(policy_name, time_limit_s).plan(problem)


def _warm_in_child(policy_name: str, time_limit_s: float) -> None:
    """Import what the policy will plan with, once, before the first plan; then collect
    garbage as the worker's other processes do (a plan allocates ~10^5 short-lived objects,
    nearly none in cycles: with CPython's default thresholds collections cost ~5 % of a
    re-plan of the bench's M domain and its hand-over)."""
    make_policy(policy_name, time_limit_s)
    if policy_name == "optimiser":
        import allocator.model.solve  # noqa: F401  (the policy imports it late)
    tune_gc()


class PlanningTimeout(TimeoutError):
    """The solver did not return within its deadline."""


class Planner:
    """Runs one plan at a time in a child process."""

    def __init__(self, policy: str, time_limit_s: float) -> None:
        make_policy(policy, time_limit_s)  # fail fast on a bad name
        self._policy = policy
        self._time_limit_s = time_limit_s
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a forked child would inherit Kafka sockets and the event loop's threads.
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    async def warm(self) -> None:
        """Start the child process and import the allocator in it now, so that the first plan
        does not pay for it (measured 1-3 s on a loaded 2-core machine: spawn, imports)."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            await loop.run_in_executor(
                self._executor(), _warm_in_child, self._policy, self._time_limit_s
            )
        except Exception:  # best effort: the first plan starts (and reports) a broken pool
            self._restart()
            return
        log.info(
            "planner.warm", policy=self._policy, seconds=round(time.perf_counter() - started, 2)
        )

    async def plan(self, problem: AllocationProblem) -> Plan:
        """Solve ``problem``; raise :class:`PlanningTimeout` past the deadline."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._executor(), _plan_in_child, self._policy, self._time_limit_s, problem
        )
        deadline = self._time_limit_s * 1.5 + 10.0
        try:
            return await asyncio.wait_for(future, timeout=deadline)
        except TimeoutError as exc:
            self._restart()  # the child may be stuck in native code: replace it
            raise PlanningTimeout(f"no plan within {deadline:.0f} s") from exc
        except BrokenProcessPool:
            self._restart()
            raise

    def _restart(self) -> None:
        if self._pool is not None:
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        self._restart()
