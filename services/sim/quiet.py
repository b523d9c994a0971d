"""Keep a native solver's stray prints off the terminal of in-process runs.

HiGHS 1.12, bundled with OR-Tools, prints ``HighsMipSolverData::transformNewIntegerFeasibleSolution
tmpSolver.run();`` straight to the process's C stdout, whatever its output options say
(ERGO-Code/HiGHS#2783, fixed upstream). ``flexforce evaluate`` and ``whatif`` solve in process,
so the line landed in the middle of their tables; the worker solves in a child process whose
output goes to its log, where it does no harm.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from allocator import AllocationProblem, Plan
from allocator.policies import AllocationPolicy

__all__ = ["QuietPolicy", "native_stdout_silenced"]


@contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """File descriptor 1 points at /dev/null inside the block (Python's own prints are flushed
    first and go on as before afterwards)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True, slots=True)
class QuietPolicy:
    """An allocation policy whose solves print nothing to the terminal."""

    inner: AllocationPolicy

    @property
    def name(self) -> str:
        return self.inner.name

    def plan(self, problem: AllocationProblem) -> Plan:
        with native_stdout_silenced():
            return self.inner.plan(problem)
