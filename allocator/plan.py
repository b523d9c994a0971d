"""The allocator's output: a plan, as plain immutable objects.

Every policy (the optimiser and the baselines) returns a :class:`Plan`, so one checker, one
report and one event mapping serve them all. Quantities are FTE per period unless named
otherwise; money is in the currency of the contracts; periods are indices from the request's
as-of (``effective_at`` gives the wall-clock time where an operator needs it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

SourceKind = Literal["team", "provider"]
Direction = Literal["up", "down"]
SolveStatus = Literal["optimal", "feasible", "heuristic"]


class ReasonCode(StrEnum):
    """Why a capacity change is in the plan (a change may carry several)."""

    DEMAND_INCREASE = "demand_increase"
    """Required FTE rose beyond what internal teams and current levels cover."""
    DEMAND_DECREASE = "demand_decrease"
    """Less outsourced capacity is needed; releasing it saves cost."""
    COST_SAVING = "cost_saving"
    """Shifting volume between sources (e.g. into a cheaper tier or provider) lowers cost."""
    PENDING_CHANGE = "pending_change"
    """A change requested earlier that the plan honours."""
    PENDING_REVISED = "pending_revised"
    """A change requested earlier no longer fits: the plan keeps another level from then."""
    CONTRACT_MINIMUM = "contract_minimum"
    """The level is held at the contract's minimum while the provider is engaged."""
    CONTRACT_MAXIMUM = "contract_maximum"
    """The level hit the contract's maximum."""
    SUSPENDED = "suspended"
    """The provider is suspended: its level goes to zero immediately."""
    CONCENTRATION_CAP = "concentration_cap"
    """Volume moved because a provider reached the vendor-concentration cap."""
    BUDGET_CAP = "budget_cap"
    """Volume released because the horizon budget is binding."""
    CORE_IN_HOUSE = "core_in_house"
    """The core-work in-house share pushed work away from providers."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """``fte`` productive FTE of ``source_id`` work on ``stream_id`` in ``period``."""

    period: int
    stream_id: str
    source_id: str
    source_kind: SourceKind
    fte: float


@dataclass(frozen=True, slots=True)
class ProviderLineLevels:
    """Contracted FTE of one (provider, skill) contract line in every period of the horizon."""

    provider_id: str
    skill: str
    committed_fte: float
    levels: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class CapacityChange:
    """A change to request from a provider: the line's level goes ``from_fte`` → ``to_fte``.

    ``effective_period`` respects the contract's lead time (ups) or notice (downs);
    ``request_by_period`` is the latest period in which the request can still be placed.
    """

    provider_id: str
    skill: str
    direction: Direction
    from_fte: float
    to_fte: float
    effective_period: int
    effective_at: datetime
    request_by_period: int
    reasons: tuple[ReasonCode, ...]
    pending: bool = False
    """True when this is a change already requested (it is honoured, not newly requested)."""


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Money over the horizon, and the prices of soft trade-offs kept apart from it."""

    internal: float
    providers: float
    churn: float
    sla_penalty: float
    unmet_penalty: float
    quality_penalty: float
    budget_overrun: float
    """Currency units above the budget cap (0 when within budget or no cap)."""
    budget_overrun_penalty: float

    @property
    def spend(self) -> float:
        """Money actually paid: internal + providers + churn."""
        return self.internal + self.providers + self.churn

    @property
    def penalties(self) -> float:
        """Priced shortfalls: SLA, unmet work, quality and budget overrun penalties."""
        return (
            self.sla_penalty
            + self.unmet_penalty
            + self.quality_penalty
            + self.budget_overrun_penalty
        )

    @property
    def total(self) -> float:
        """The objective the optimiser minimises: spend + penalties."""
        return self.spend + self.penalties


@dataclass(frozen=True, slots=True)
class StreamService:
    """Cover and expected service of one stream in one period.

    ``required_fte`` is the productive FTE that meets the SLA target (Erlang C/A for queues,
    work hours / period hours for projects); ``unmet_fte`` = max(0, required − staffed).
    ``expected_sl`` is the fraction answered within target (queues) or of work done (projects).
    """

    period: int
    stream_id: str
    required_fte: float
    staffed_fte: float
    unmet_fte: float
    expected_sl: float
    target_sl: float


@dataclass(frozen=True, slots=True)
class SolverStats:
    """How the plan was found. ``gap`` is relative to the cost the plan can change:
    (objective − bound) / |objective − fixed roster cost| (``Policy.internal_cost``)."""

    backend: str
    status: SolveStatus
    objective: float
    best_bound: float
    gap: float
    solve_time_s: float
    build_time_s: float = 0.0
    num_variables: int = 0
    num_constraints: int = 0
    num_integer_variables: int = 0
    stages: tuple[str, ...] = ()
    """The solve's stages in order (``name:status:objective:time``), for logs and the bench."""


@dataclass(frozen=True, slots=True)
class BindingConstraint:
    """A constraint at its limit in the plan, with its shadow price where one is known.

    ``name`` is a stable family name (``team_capacity``, ``provider_max``, ``budget_cap``,
    ``concentration_cap``, ``core_in_house``, ``frozen_window``, ``compliance``, ...);
    ``subject`` the object it concerns; ``periods`` where it binds.
    """

    name: str
    subject: str
    periods: tuple[int, ...] = ()
    shadow_price: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MarginalValue:
    """What one more FTE (for one period, and for the whole horizon) would save.

    ``kind`` is ``internal_skill`` (one more internal FTE of ``key`` = a skill) or ``provider``
    (one more FTE of capacity at provider ``key``). Values are objective savings ≥ 0, from the
    duals of the LP with the integer decisions fixed at their optimum.
    """

    kind: Literal["internal_skill", "provider"]
    key: str
    per_fte_period: float
    per_fte_horizon: float
    best_period: int | None = None


@dataclass(frozen=True, slots=True)
class Relaxation:
    """A hard requirement that could not be met, the slack that absorbed it, and why.

    ``slack`` is ``unmet_demand`` (FTE-hours) or ``budget_overrun`` (currency); ``forced_by``
    names the constraint family that made it unavoidable or cheapest (e.g. ``compliance`` when no
    eligible source exists, ``team_capacity``/``provider_max`` when all capacity is used).
    """

    slack: Literal["unmet_demand", "budget_overrun"]
    subject: str
    amount: float
    forced_by: tuple[str, ...]
    periods: tuple[int, ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the plan looks as it does."""

    binding: tuple[BindingConstraint, ...] = ()
    marginal_values: tuple[MarginalValue, ...] = ()
    relaxations: tuple[Relaxation, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """A complete allocation plan over the horizon, produced by ``policy``."""

    policy: str
    as_of: datetime
    period_minutes: int
    horizon_periods: int
    assignments: tuple[Assignment, ...]
    provider_levels: tuple[ProviderLineLevels, ...]
    changes: tuple[CapacityChange, ...]
    costs: CostBreakdown
    service: tuple[StreamService, ...]
    stats: SolverStats
    explanation: Explanation = field(default_factory=Explanation)

    def staffed(self, period: int, stream_id: str) -> float:
        """Total productive FTE on ``stream_id`` in ``period``."""
        return sum(
            a.fte for a in self.assignments if a.period == period and a.stream_id == stream_id
        )

    def source_fte(self, period: int, source_id: str) -> float:
        """Total FTE ``source_id`` works in ``period`` across streams."""
        return sum(
            a.fte for a in self.assignments if a.period == period and a.source_id == source_id
        )

    def level(self, provider_id: str, skill: str, period: int) -> float:
        """Contracted FTE of a provider's contract line in ``period`` (0 if absent)."""
        for line in self.provider_levels:
            if line.provider_id == provider_id and line.skill == skill:
                return line.levels[period]
        return 0.0

    def provider_total(self, provider_id: str, period: int) -> float:
        """Contracted FTE of a provider over all its lines in ``period``."""
        return sum(
            line.levels[period] for line in self.provider_levels if line.provider_id == provider_id
        )

    @property
    def unmet_fte_hours(self) -> float:
        """Total unmet demand over the horizon, in FTE-hours."""
        return sum(s.unmet_fte for s in self.service) * self.period_minutes / 60.0


def sorted_assignments(items: Iterable[Assignment]) -> tuple[Assignment, ...]:
    """Canonical order (period, stream, source) so equal plans compare equal."""
    return tuple(sorted(items, key=lambda a: (a.period, a.stream_id, a.source_id)))
