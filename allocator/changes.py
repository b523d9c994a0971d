"""Which level changes a plan must tell a provider about: one rule for every policy and the
checker.

A contract line has a **baseline** (committed level, then the pending changes already asked
for) and the plan's **levels**. The provider will deliver the baseline unless told otherwise,
so a change is listed

* where the plan's level steps (``from_fte`` = the plan's level before): *pending* when it
  reproduces a baseline step (already asked), else new;
* where the baseline steps but the plan keeps its level, different from the baseline's
  (a **revision**: ``from_fte`` = the baseline's level, what would otherwise come into force).
  Without it a plan that cancels a pending ramp-down would never say so, and the ramp-down
  would happen anyway while the plan counted on the capacity.

A change inside its window (the ramp-up lead time for an increase, the notice for a decrease,
counted against ``from_fte``) cannot be a new request; the model only lets the levels step
there as the baseline does, so it is the effect of a pending one and is marked pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from allocator.domain import AllocationProblem, PlanningRequest, Provider
from allocator.plan import CapacityChange, Direction, ReasonCode

EPS = 1e-9


@dataclass(frozen=True, slots=True)
class LineStep:
    """One change of a contract line at ``period``: ``from_fte`` → ``to_fte``."""

    period: int
    from_fte: float
    to_fte: float
    honoured: bool
    """It reproduces a step of the baseline: a pending change being honoured."""
    in_window: bool
    """Inside the lead time (up) or notice (down) of ``period`` 0."""
    revision: bool

    @property
    def direction(self) -> Direction:
        return "up" if self.to_fte > self.from_fte else "down"

    @property
    def pending(self) -> bool:
        """Not to be requested anew: honoured, or inside its window."""
        return self.honoured or self.in_window

    def change(
        self,
        provider: Provider,
        skill: str,
        request: PlanningRequest,
        reasons: tuple[ReasonCode, ...],
        pending: bool,
    ) -> CapacityChange:
        """This step as the plan's :class:`CapacityChange`: a new one must be requested by
        its window's length before it takes effect (at once when pending or suspended)."""
        c = provider.contract
        window = request.hours_to_periods(
            c.ramp_up_hours if self.direction == "up" else c.ramp_down_notice_hours
        )
        return CapacityChange(
            provider_id=provider.id,
            skill=skill,
            direction=self.direction,
            from_fte=self.from_fte,
            to_fte=self.to_fte,
            effective_period=self.period,
            effective_at=request.period_start(self.period),
            request_by_period=0 if pending or not provider.active else max(0, self.period - window),
            reasons=reasons,
            pending=pending,
        )


def line_steps(
    committed: float,
    baseline: Sequence[float],
    levels: Sequence[float],
    up_lead: int,
    notice: int,
) -> list[LineStep]:
    """The changes of one line (see the module docstring); ``up_lead`` and ``notice`` in
    periods."""
    out: list[LineStep] = []
    prev = prev_base = committed
    for t, cur in enumerate(levels):
        base = baseline[t]
        if abs(cur - prev) > EPS:
            window = up_lead if cur > prev else notice
            honoured = (
                abs(cur - base) < EPS
                and abs(prev - prev_base) < EPS
                and abs(base - prev_base) > EPS
            )
            out.append(LineStep(t, prev, cur, honoured, t < window, revision=False))
        elif abs(base - prev_base) > EPS and abs(cur - base) > EPS:
            window = up_lead if cur > base else notice
            out.append(LineStep(t, base, cur, False, t < window, revision=True))
        prev, prev_base = cur, base
    return out


def problem_line_steps(
    problem: AllocationProblem, provider: Provider, skill: str, levels: Sequence[float]
) -> list[LineStep]:
    """:func:`line_steps` of the line ``(provider, skill)`` of ``problem`` at ``levels``: from
    its committed level and baseline, with its contract's lead time and notice."""
    req, c = problem.request, provider.contract
    return line_steps(
        problem.committed_level(provider.id, skill),
        problem.baseline_level(provider.id, skill),
        levels,
        req.hours_to_periods(c.ramp_up_hours),
        req.hours_to_periods(c.ramp_down_notice_hours),
    )
