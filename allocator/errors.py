"""Errors raised by the allocator.

The allocator must never be silently wrong: data it cannot plan with is rejected with an
error that names the offending object and field, so an operator can fix the input rather
than receive a plan built on a misunderstanding.
"""

from __future__ import annotations


class AllocatorError(Exception):
    """Base class of every error the allocator raises on purpose."""


class InvalidInput(AllocatorError, ValueError):
    """An input object or the problem as a whole is inconsistent.

    Examples: a contract whose minimum FTE exceeds its maximum, a queue whose skill no
    internal team or provider contract offers, demand series of the wrong length.
    """


class SolverFailure(AllocatorError, RuntimeError):
    """The back-end solver returned no usable solution (not even a feasible one).

    The model is built so that every instance is feasible (shortfalls become priced
    slack), so this signals a solver error or a time limit too short to find any plan.
    """
