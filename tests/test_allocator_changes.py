"""Which changes a plan must tell providers about (:mod:`allocator.changes`), and the fixed
clock grid of level blocks that keeps consecutive plans from shifting every ramp."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from allocator.changes import LineStep, line_steps
from allocator.domain import AllocationProblem
from tests.test_allocator_model import small_problem


def test_steps_of_the_plan_are_listed_pending_when_they_follow_the_baseline() -> None:
    # committed 2; the baseline asks 6 from period 3; the plan follows it, then goes to 4 at 6
    steps = line_steps(2.0, [2, 2, 2, 6, 6, 6, 6, 6], [2, 2, 2, 6, 6, 6, 4, 4], 2, 2)
    assert steps == [
        LineStep(3, 2.0, 6.0, honoured=True, in_window=False, revision=False),
        LineStep(6, 6.0, 4.0, honoured=False, in_window=False, revision=False),
    ]
    assert [s.pending for s in steps] == [True, False]


def test_a_pending_step_the_plan_does_not_follow_is_revised_from_its_level() -> None:
    # a pending ramp-down to 2 at period 4; the plan keeps 8: the provider must be told,
    # from the 2 that would otherwise come into force (an increase: lead time 3 applies)
    steps = line_steps(8.0, [8, 8, 8, 8, 2, 2], [8, 8, 8, 8, 8, 8], up_lead=3, notice=6)
    assert steps == [LineStep(4, 2.0, 8.0, honoured=False, in_window=False, revision=True)]
    assert steps[0].direction == "up"
    # inside the window it is not a new request (the model only lets levels step there as
    # the baseline does, so this can only be the effect of a pending request)
    (late,) = line_steps(8.0, [8, 2], [8, 8], up_lead=3, notice=6)
    assert late.revision and late.pending


def test_a_plan_that_follows_the_baseline_lists_no_revision() -> None:
    base = [0, 0, 4, 4, 0, 0]
    assert [s.revision for s in line_steps(0.0, base, base, 1, 1)] == [False, False]


def test_level_blocks_sit_on_a_clock_grid_shared_by_consecutive_plans() -> None:
    """Blocks counted from as-of moved by an hour with every hourly plan, and with them the
    ramp each plan preferred: the plans re-asked providers hour after hour."""
    base = small_problem()  # hourly periods, as-of 08:00 (on the grid), blocks of 8 h
    assert base.level_segments("pb") == ((0, 8), (8, 12))

    def an_hour_later(problem: AllocationProblem) -> AllocationProblem:
        later = problem.request.as_of + timedelta(hours=1)
        return dataclasses.replace(
            problem, request=dataclasses.replace(problem.request, as_of=later)
        )

    # the 16:00 block start is period 7 of a plan made at 09:00; period 0 always starts one
    assert an_hour_later(base).level_segments("pb") == ((0, 7), (7, 12))
