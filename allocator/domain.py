"""Domain objects the allocator plans with: plain, immutable, validated on construction.

Why frozen dataclasses and not pydantic models: the allocator is a pure package whose inputs are
built by the services layer from events; immutability makes a problem safe to share between the
optimiser, the baselines and the plan checker, and validation in ``__post_init__`` rejects bad
data at the boundary with an :class:`~allocator.errors.InvalidInput` that names the culprit.

Time inside the allocator is *period indices* counted from ``PlanningRequest.as_of``: period
``t`` covers ``[as_of + t*period, as_of + (t+1)*period)``. Lead times and notice periods given in
hours are converted to whole periods, rounded up (a 90-minute lead time on hourly periods means
the earliest change is effective at period 2), so the allocator never reads a clock.

Conventions used throughout:

* FTE of a *team* are rostered FTE; productive FTE = rostered × (1 − shrinkage). Streams need
  productive FTE; a team's cost is paid on the rostered FTE-hours its assignments consume.
* FTE of a *provider* are contracted, productive FTE (the provider carries its own shrinkage).
  The contracted level is held per (provider, skill) contract line and billed whether used or not.
* An empty ``allowed_regions`` means "any region".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Literal

from allocator.errors import InvalidInput

StreamKind = Literal["queue", "project"]
Sensitivity = Literal["public", "internal", "restricted"]
SlaKind = Literal["answer_within", "resolve_within"]
ProviderStatus = Literal["active", "suspended"]
Backend = Literal["highs", "scip", "cp_sat"]
InternalCost = Literal["rostered", "assigned"]

SENSITIVITIES: tuple[Sensitivity, ...] = ("public", "internal", "restricted")
RESTRICTED_CLEARANCE = "restricted"
"""Clearance a team needs to take restricted work."""

_EPS = 1e-9
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Origin of the level-change block grid (``Policy.level_change_hours``)."""


def _fail(obj: str, msg: str) -> InvalidInput:
    return InvalidInput(f"{obj}: {msg}")


def _finite_nonneg(obj: str, name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise _fail(obj, f"{name} must be a finite number >= 0, got {value!r}")


def _fraction(obj: str, name: str, value: float, *, open_top: bool = False) -> None:
    ok = 0.0 <= value < 1.0 if open_top else 0.0 <= value <= 1.0
    if not math.isfinite(value) or not ok:
        top = "1)" if open_top else "1]"
        raise _fail(obj, f"{name} must be in [0, {top}, got {value!r}")


def _series(obj: str, name: str, values: tuple[float, ...]) -> None:
    if len(values) == 0:
        raise _fail(obj, f"{name} must not be empty")
    for i, v in enumerate(values):
        if not math.isfinite(v) or v < 0:
            raise _fail(obj, f"{name}[{i}] must be a finite number >= 0, got {v!r}")


def _freeze_set(self: object, name: str) -> None:
    value = getattr(self, name)
    if isinstance(value, str):
        raise _fail(type(self).__name__, f"{name} must be a collection of strings, not a str")
    object.__setattr__(self, name, frozenset(value))


def _freeze_tuple(self: object, name: str) -> None:
    value = getattr(self, name)
    if value is not None and not isinstance(value, tuple):
        object.__setattr__(self, name, tuple(value))


def _check_id(obj: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _fail(obj, f"id must be a non-empty string, got {value!r}")


@dataclass(frozen=True, slots=True)
class Sla:
    """Service-level agreement of a work stream.

    * ``answer_within`` (queues): ``target_fraction`` of contacts answered within
      ``target_seconds`` — staffed with Erlang C (Erlang A when the stream has a patience).
    * ``resolve_within`` (projects): work resolved within ``resolve_hours``. The allocator treats
      a project's demand as work hours due in each period; the resolve time is informational.
    """

    kind: SlaKind
    target_fraction: float = 0.8
    target_seconds: float | None = None
    resolve_hours: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("answer_within", "resolve_within"):
            raise _fail(
                "Sla", f"kind must be 'answer_within' or 'resolve_within', got {self.kind!r}"
            )
        if not math.isfinite(self.target_fraction) or not 0.0 < self.target_fraction < 1.0:
            raise _fail("Sla", f"target_fraction must be in (0, 1), got {self.target_fraction!r}")
        if self.kind == "answer_within":
            if self.target_seconds is None or not (
                math.isfinite(self.target_seconds) and self.target_seconds > 0
            ):
                raise _fail("Sla", "answer_within needs target_seconds > 0")
        elif self.resolve_hours is None or not (
            math.isfinite(self.resolve_hours) and self.resolve_hours > 0
        ):
            raise _fail("Sla", "resolve_within needs resolve_hours > 0")

    @classmethod
    def answer_within(cls, target_fraction: float, seconds: float) -> Sla:
        """E.g. ``Sla.answer_within(0.8, 20)``: 80 % of contacts answered within 20 s."""
        return cls("answer_within", target_fraction=target_fraction, target_seconds=seconds)

    @classmethod
    def resolve_within(cls, hours: float, target_fraction: float = 0.9) -> Sla:
        """E.g. ``Sla.resolve_within(40)``: project work resolved within 40 hours."""
        return cls("resolve_within", target_fraction=target_fraction, resolve_hours=hours)


@dataclass(frozen=True, slots=True)
class WorkStream:
    """A ticket queue or a project: the unit of demand the plan must cover."""

    id: str
    kind: StreamKind
    skill: str
    sla: Sla
    sensitivity: Sensitivity = "internal"
    allowed_regions: frozenset[str] = frozenset()
    core: bool = False
    required_certifications: frozenset[str] = frozenset()
    patience_s: float | None = None

    def __post_init__(self) -> None:
        _check_id("WorkStream", self.id)
        obj = f"WorkStream {self.id!r}"
        _freeze_set(self, "allowed_regions")
        _freeze_set(self, "required_certifications")
        if self.kind not in ("queue", "project"):
            raise _fail(obj, f"kind must be 'queue' or 'project', got {self.kind!r}")
        if not self.skill:
            raise _fail(obj, "skill must be a non-empty string")
        if self.sensitivity not in SENSITIVITIES:
            raise _fail(
                obj, f"sensitivity must be one of {SENSITIVITIES}, got {self.sensitivity!r}"
            )
        if self.kind == "queue" and self.sla.kind != "answer_within":
            raise _fail(obj, "a queue needs an 'answer_within' SLA")
        if self.kind == "project" and self.sla.kind != "resolve_within":
            raise _fail(obj, "a project needs a 'resolve_within' SLA")
        if self.patience_s is not None and not (
            math.isfinite(self.patience_s) and self.patience_s > 0
        ):
            raise _fail(obj, f"patience_s must be > 0 when given, got {self.patience_s!r}")

    def region_allowed(self, region: str) -> bool:
        """True when work of this stream may be done from ``region``."""
        return not self.allowed_regions or region in self.allowed_regions


@dataclass(frozen=True, slots=True)
class Team:
    """An internal team. ``fte_available`` is rostered FTE per period (length 1 = constant)."""

    id: str
    skills: frozenset[str]
    fte_available: tuple[float, ...]
    shrinkage: float
    cost_per_hour: float
    region: str
    clearances: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _check_id("Team", self.id)
        obj = f"Team {self.id!r}"
        _freeze_set(self, "skills")
        _freeze_set(self, "clearances")
        _freeze_tuple(self, "fte_available")
        if not self.skills:
            raise _fail(obj, "skills must not be empty")
        _series(obj, "fte_available", self.fte_available)
        _fraction(obj, "shrinkage", self.shrinkage, open_top=True)
        _finite_nonneg(obj, "cost_per_hour", self.cost_per_hour)

    def rostered_fte(self, period: int) -> float:
        """Rostered FTE available in ``period`` (a length-1 series is constant)."""
        if len(self.fte_available) == 1:
            return self.fte_available[0]
        return self.fte_available[period]

    @property
    def internal_rate(self) -> float:
        """Wage per productive FTE-hour: ``cost_per_hour / (1 − shrinkage)``."""
        return self.cost_per_hour / (1.0 - self.shrinkage)

    def productive_fte(self, period: int) -> float:
        """Productive FTE in ``period``: rostered × (1 − shrinkage)."""
        return self.rostered_fte(period) * (1.0 - self.shrinkage)

    def can_take(self, stream: WorkStream) -> bool:
        """Skill, region and clearance eligibility of this team for ``stream``."""
        if stream.skill not in self.skills or not stream.region_allowed(self.region):
            return False
        return stream.sensitivity != "restricted" or RESTRICTED_CLEARANCE in self.clearances


@dataclass(frozen=True, slots=True)
class RateTier:
    """Incremental volume tier: FTE of a contract line above ``from_fte`` cost ``rate_per_hour``.

    Tiers of a line are ordered by ``from_fte`` and the first starts at 0; the FTE between two
    consecutive ``from_fte`` values is billed at the lower tier's rate (like income-tax bands).
    Falling rates (volume discounts) make the cost concave and are modelled with tier binaries.
    """

    from_fte: float
    rate_per_hour: float

    def __post_init__(self) -> None:
        _finite_nonneg("RateTier", "from_fte", self.from_fte)
        _finite_nonneg("RateTier", "rate_per_hour", self.rate_per_hour)


@dataclass(frozen=True, slots=True)
class SkillRate:
    """One contract line: the tiered price of a skill at a provider."""

    skill: str
    tiers: tuple[RateTier, ...]

    def __post_init__(self) -> None:
        obj = f"SkillRate {self.skill!r}"
        if not self.skill:
            raise _fail("SkillRate", "skill must be a non-empty string")
        _freeze_tuple(self, "tiers")
        if not self.tiers:
            raise _fail(obj, "needs at least one RateTier")
        if self.tiers[0].from_fte != 0:
            raise _fail(obj, "the first tier must start at from_fte=0")
        for a, b in zip(self.tiers, self.tiers[1:], strict=False):
            if b.from_fte <= a.from_fte:
                raise _fail(obj, "tiers must have strictly increasing from_fte")

    def cost_per_hour(self, fte: float) -> float:
        """Hourly cost of ``fte`` contracted FTE on this line (incremental tiers)."""
        total = 0.0
        for i, tier in enumerate(self.tiers):
            upper = self.tiers[i + 1].from_fte if i + 1 < len(self.tiers) else math.inf
            if fte <= tier.from_fte:
                break
            total += (min(fte, upper) - tier.from_fte) * tier.rate_per_hour
        return total


@dataclass(frozen=True, slots=True)
class Contract:
    """Commercial terms of a provider.

    ``min_fte``/``max_fte`` bound the provider's total contracted FTE (over all lines) in every
    period in which it is engaged (total > 0); each line's level is a whole number of
    ``block_fte`` blocks. Increases take effect no earlier than ``ramp_up_hours`` after as-of,
    decreases no earlier than ``ramp_down_notice_hours`` after as-of.
    """

    rates: tuple[SkillRate, ...]
    min_fte: float = 0.0
    max_fte: float = math.inf
    block_fte: float = 1.0
    ramp_up_hours: float = 0.0
    ramp_down_notice_hours: float = 0.0

    def __post_init__(self) -> None:
        _freeze_tuple(self, "rates")
        object.__setattr__(self, "rates", tuple(sorted(self.rates, key=lambda r: r.skill)))
        if not self.rates:
            raise _fail("Contract", "needs at least one SkillRate")
        skills = [r.skill for r in self.rates]
        if len(set(skills)) != len(skills):
            raise _fail("Contract", f"duplicate skill lines in {skills}")
        _finite_nonneg("Contract", "min_fte", self.min_fte)
        if math.isnan(self.max_fte) or self.max_fte <= 0:
            raise _fail("Contract", f"max_fte must be > 0, got {self.max_fte!r}")
        if self.min_fte > self.max_fte:
            raise _fail("Contract", f"min_fte {self.min_fte} > max_fte {self.max_fte}")
        if not math.isfinite(self.block_fte) or self.block_fte <= 0:
            raise _fail("Contract", f"block_fte must be > 0, got {self.block_fte!r}")
        if self.block_fte > self.max_fte + _EPS:
            raise _fail("Contract", f"block_fte {self.block_fte} > max_fte {self.max_fte}")
        _finite_nonneg("Contract", "ramp_up_hours", self.ramp_up_hours)
        _finite_nonneg("Contract", "ramp_down_notice_hours", self.ramp_down_notice_hours)

    @property
    def skills(self) -> frozenset[str]:
        """Skills the contract offers."""
        return frozenset(r.skill for r in self.rates)

    def rate(self, skill: str) -> SkillRate:
        """The contract line of ``skill`` (KeyError if the contract does not offer it)."""
        for r in self.rates:
            if r.skill == skill:
                return r
        raise KeyError(skill)


@dataclass(frozen=True, slots=True)
class Provider:
    """An external outsourcing provider and its contract."""

    id: str
    contract: Contract
    regions: frozenset[str]
    certifications: frozenset[str] = frozenset()
    quality_score: float = 1.0
    status: ProviderStatus = "active"

    def __post_init__(self) -> None:
        _check_id("Provider", self.id)
        obj = f"Provider {self.id!r}"
        _freeze_set(self, "regions")
        _freeze_set(self, "certifications")
        if not self.regions:
            raise _fail(obj, "regions must not be empty")
        _fraction(obj, "quality_score", self.quality_score)
        if self.status not in ("active", "suspended"):
            raise _fail(obj, f"status must be 'active' or 'suspended', got {self.status!r}")

    @property
    def active(self) -> bool:
        """Suspended providers get nothing, immediately (no notice applies)."""
        return self.status == "active"

    def can_take(self, stream: WorkStream) -> bool:
        """Skill, region, certification and status eligibility of this provider for ``stream``.

        Required certifications apply to any stream that lists them; restricted streams also
        need the provider to deliver from an allowed region (as does every stream that lists
        allowed regions).
        """
        if not self.active or stream.skill not in self.contract.skills:
            return False
        if not stream.required_certifications <= self.certifications:
            return False
        return any(stream.region_allowed(r) for r in self.regions)


@dataclass(frozen=True, slots=True)
class PendingChange:
    """An already-requested change: the line's level becomes ``fte`` from ``effective_period``."""

    effective_period: int
    fte: float

    def __post_init__(self) -> None:
        if self.effective_period < 0:
            raise _fail(
                "PendingChange", f"effective_period must be >= 0, got {self.effective_period}"
            )
        _finite_nonneg("PendingChange", "fte", self.fte)


@dataclass(frozen=True, slots=True)
class ProviderLevel:
    """Committed FTE on one contract line now, plus changes already requested.

    Missing lines are committed at 0 FTE. Pending changes are honoured: they are part of the
    baseline the frozen windows pin the plan to.
    """

    provider_id: str
    skill: str
    committed_fte: float
    pending: tuple[PendingChange, ...] = ()

    def __post_init__(self) -> None:
        obj = f"ProviderLevel {self.provider_id!r}/{self.skill!r}"
        _finite_nonneg(obj, "committed_fte", self.committed_fte)
        _freeze_tuple(self, "pending")
        object.__setattr__(
            self, "pending", tuple(sorted(self.pending, key=lambda c: c.effective_period))
        )
        periods = [c.effective_period for c in self.pending]
        if len(set(periods)) != len(periods):
            raise _fail(obj, "two pending changes with the same effective_period")

    def baseline(self, horizon: int) -> tuple[float, ...]:
        """Level per period if nothing new is requested: committed, then pending changes."""
        out: list[float] = []
        level = self.committed_fte
        changes = list(self.pending)
        for t in range(horizon):
            while changes and changes[0].effective_period <= t:
                level = changes.pop(0).fte
            out.append(level)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Demand:
    """Demand of one stream over the horizon (one value per period; length 1 = constant AHT).

    Queues give ``arrivals`` (contacts per period) and ``aht_s`` (average handle time, seconds);
    projects give ``work_hours`` (hours of work due in each period).
    """

    stream_id: str
    arrivals: tuple[float, ...] | None = None
    aht_s: tuple[float, ...] | None = None
    work_hours: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        obj = f"Demand {self.stream_id!r}"
        for name in ("arrivals", "aht_s", "work_hours"):
            _freeze_tuple(self, name)
        queue = self.arrivals is not None or self.aht_s is not None
        if queue and self.work_hours is not None:
            raise _fail(obj, "give either arrivals+aht_s (queue) or work_hours (project), not both")
        if queue:
            if self.arrivals is None or self.aht_s is None:
                raise _fail(obj, "a queue demand needs both arrivals and aht_s")
            _series(obj, "arrivals", self.arrivals)
            _series(obj, "aht_s", self.aht_s)
            if any(a <= 0 for a in self.aht_s):
                raise _fail(obj, "aht_s must be > 0")
            if len(self.aht_s) not in (1, len(self.arrivals)):
                raise _fail(obj, "aht_s must have length 1 or the length of arrivals")
        elif self.work_hours is None:
            raise _fail(obj, "needs arrivals+aht_s or work_hours")
        else:
            _series(obj, "work_hours", self.work_hours)

    @property
    def periods(self) -> int:
        """Number of periods the series cover."""
        series = self.arrivals if self.arrivals is not None else self.work_hours
        assert series is not None
        return len(series)

    def aht_at(self, period: int) -> float:
        """Average handle time in ``period`` (queues only)."""
        assert self.aht_s is not None
        return self.aht_s[0] if len(self.aht_s) == 1 else self.aht_s[period]


@dataclass(frozen=True, slots=True)
class Policy:
    """Business policy: hard shares and caps, and the prices of soft trade-offs.

    * ``core_in_house_share``: in every period, internal FTE on a core stream ≥ share × its cover.
    * ``vendor_concentration_cap``: each provider's FTE-hours ≤ cap × all outsourced FTE-hours
      over the horizon.
    * ``budget_cap``: internal + provider + churn cost over the horizon; exceeding it is priced
      slack at ``budget_overrun_penalty`` per currency unit and reported.
    * ``churn_cost_per_fte``: paid per FTE of every provider level change (up or down).
    * ``sla_penalty_per_contact``: queues — price of a contact not answered within target.
    * ``unmet_work_penalty_per_hour``: projects — price of an hour of work left undone.
    * ``stream_penalty_weights``: per-stream override of the two above (same unit).
    * ``quality_penalty_per_fte_hour``: × (1 − quality score), steers work to better providers.
    * ``max_occupancy``: Erlang staffing occupancy cap.
    * ``level_change_hours``: provider contract-line levels (and engagement) change only at
      block boundaries this many hours apart on a fixed clock grid (from 1970-01-01 00:00 UTC:
      00:00, 08:00 and 16:00 UTC for the default shift of 8 h), and additionally at period 0,
      where a lead-time/notice window ends or a pending change takes effect. A fixed grid, not
      one counted from as-of: consecutive plans then share their block starts — counted from
      as-of, a plan made an hour later moved every ramp by an hour and re-asked for it.
      Outsourcing contracts are not re-sized hourly; holding a level for a block is also what
      keeps the optimiser's integer decisions few. Assignments stay per period. A value at or
      below the period length means levels may change every period.
    * ``internal_cost``: how in-house time is paid. ``"rostered"`` (default): teams are paid
      for their roster whatever they work on, so the roster's cost is a fixed part of every
      plan and an assigned hour costs nothing extra — outsourcing must beat an idle in-house
      hour at 0, not at its wage. ``"assigned"``: hours not assigned here go to other paid work,
      so each assigned FTE-hour costs ``cost_per_hour / (1 − shrinkage)`` (the wage of the
      rostered hour that yields one productive hour).
    * ``demand_cv``: relative standard deviation of a queue's arrivals around the forecast
      (forecast error and the spread inside a period). 0 plans for the forecast as if it were
      certain; above 0 the SLA shortfall is priced as its *expectation* over arrivals, so the
      optimiser buys the cover that pays for itself against the risk, as the realised service
      (which sees the spread) will. Erlang requirements (what greedy staffs to) are unchanged.
    * ``understaffing_penalty_per_fte_hour``: queues — price of each productive FTE-hour staffed
      below the Erlang requirement at the SLA target (``StreamService.unmet_fte``, what greedy
      staffs to), booked as unmet penalty. 0 (default): service is traded only through the SLA
      curve. A price above the dearest source's hourly rate makes the target a floor, the
      workforce-management "staff to target" rule, while the curve still prices cover above it
      (with ``demand_cv``) — the plan then buys the required cover at the least cost.
    * ``request_cost_per_fte``: price of each FTE a plan asks a provider for beyond what is
      already committed or pending — per FTE by which a level step differs from the step of
      the committed + pending baseline, so reproducing pending changes costs nothing, a new
      change costs its size and revising or cancelling a pending one costs the revision.
      Booked with churn. Without it, cancelling a pending change *saved* churn, and plans
      re-asked providers for the same hours back and forth as forecasts moved (nervousness).
    """

    core_in_house_share: float = 0.0
    vendor_concentration_cap: float = 1.0
    budget_cap: float | None = None
    churn_cost_per_fte: float = 0.0
    sla_penalty_per_contact: float = 10.0
    unmet_work_penalty_per_hour: float = 200.0
    stream_penalty_weights: Mapping[str, float] = field(default_factory=dict)
    budget_overrun_penalty: float = 10.0
    quality_penalty_per_fte_hour: float = 0.0
    max_occupancy: float = 0.85
    level_change_hours: float = 8.0
    internal_cost: InternalCost = "rostered"
    demand_cv: float = 0.0
    understaffing_penalty_per_fte_hour: float = 0.0
    request_cost_per_fte: float = 0.0

    def __post_init__(self) -> None:
        _fraction("Policy", "core_in_house_share", self.core_in_house_share)
        if self.internal_cost not in ("rostered", "assigned"):
            raise _fail(
                "Policy",
                f"internal_cost must be 'rostered' or 'assigned', got {self.internal_cost!r}",
            )
        _fraction("Policy", "vendor_concentration_cap", self.vendor_concentration_cap)
        if self.vendor_concentration_cap <= 0:
            raise _fail("Policy", "vendor_concentration_cap must be > 0")
        if self.budget_cap is not None:
            _finite_nonneg("Policy", "budget_cap", self.budget_cap)
        for name in (
            "churn_cost_per_fte",
            "sla_penalty_per_contact",
            "unmet_work_penalty_per_hour",
            "budget_overrun_penalty",
            "quality_penalty_per_fte_hour",
            "level_change_hours",
            "understaffing_penalty_per_fte_hour",
            "request_cost_per_fte",
        ):
            _finite_nonneg("Policy", name, float(getattr(self, name)))
        for sid, w in self.stream_penalty_weights.items():
            _finite_nonneg("Policy", f"stream_penalty_weights[{sid!r}]", w)
        object.__setattr__(
            self,
            "stream_penalty_weights",
            MappingProxyType(dict(sorted(self.stream_penalty_weights.items()))),
        )
        if not (0.0 < self.max_occupancy <= 1.0):
            raise _fail("Policy", f"max_occupancy must be in (0, 1], got {self.max_occupancy!r}")
        if not (0.0 <= self.demand_cv <= 2.0):
            raise _fail("Policy", f"demand_cv must be in [0, 2], got {self.demand_cv!r}")

    def penalty_weight(self, stream: WorkStream) -> float:
        """SLA penalty weight of ``stream``: per missed contact (queue) or unmet hour (project)."""
        if stream.id in self.stream_penalty_weights:
            return self.stream_penalty_weights[stream.id]
        if stream.kind == "queue":
            return self.sla_penalty_per_contact
        return self.unmet_work_penalty_per_hour


@dataclass(frozen=True, slots=True)
class PlanningRequest:
    """When and how far to plan. ``as_of`` must be timezone-aware."""

    as_of: datetime
    period_minutes: int
    horizon_periods: int

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None or self.as_of.utcoffset() is None:
            raise _fail("PlanningRequest", "as_of must be timezone-aware")
        if self.period_minutes <= 0:
            raise _fail("PlanningRequest", f"period_minutes must be > 0, got {self.period_minutes}")
        if self.horizon_periods <= 0:
            raise _fail(
                "PlanningRequest", f"horizon_periods must be > 0, got {self.horizon_periods}"
            )

    @property
    def period_hours(self) -> float:
        """Length of a period in hours."""
        return self.period_minutes / 60.0

    @property
    def period_seconds(self) -> float:
        """Length of a period in seconds."""
        return self.period_minutes * 60.0

    def hours_to_periods(self, hours: float) -> int:
        """Whole periods covering ``hours``, rounded up (a lead time is never shortened)."""
        return math.ceil(hours * 60.0 / self.period_minutes - 1e-9)

    def period_start(self, period: int) -> datetime:
        """Wall-clock start of ``period``."""
        return self.as_of + timedelta(minutes=self.period_minutes * period)

    def period_of(self, moment: datetime) -> int:
        """Index of the first period starting at or after ``moment`` (effective-time mapping)."""
        minutes = (moment - self.as_of).total_seconds() / 60.0
        return max(0, math.ceil(minutes / self.period_minutes - 1e-9))


@dataclass(frozen=True, slots=True)
class SolverOptions:
    """Back-end and limits. Defaults are deterministic: one thread, fixed seed.

    ``highs`` (default) and ``scip`` are supported; ``cp_sat`` is accepted here for backwards
    compatibility but the solver refuses it (its scaling of continuous variables gave wrong
    optima on this model).
    """

    backend: Backend = "highs"
    time_limit_s: float = 30.0
    relative_gap: float = 0.01
    threads: int = 1
    seed: int = 0
    compute_marginals: bool = True

    def __post_init__(self) -> None:
        if self.backend not in ("highs", "scip", "cp_sat"):
            raise _fail("SolverOptions", f"unknown backend {self.backend!r}")
        if not self.time_limit_s > 0:
            raise _fail("SolverOptions", "time_limit_s must be > 0")
        if not 0 <= self.relative_gap < 1:
            raise _fail("SolverOptions", "relative_gap must be in [0, 1)")
        if self.threads < 1:
            raise _fail("SolverOptions", "threads must be >= 1")


@dataclass(frozen=True, slots=True)
class AllocationProblem:
    """Everything one planning run needs. Collections are stored sorted by id (determinism).

    Cross-object validation happens here: unique ids, one demand per stream with series of the
    horizon's length, levels referring to real contract lines, and every stream's skill offered
    by at least one team or provider contract (otherwise the data is wrong, not the plan).
    """

    request: PlanningRequest
    streams: tuple[WorkStream, ...]
    teams: tuple[Team, ...]
    providers: tuple[Provider, ...]
    demand: tuple[Demand, ...]
    policy: Policy = field(default_factory=Policy)
    levels: tuple[ProviderLevel, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "streams", tuple(sorted(self.streams, key=lambda s: s.id)))
        set_(self, "teams", tuple(sorted(self.teams, key=lambda s: s.id)))
        set_(self, "providers", tuple(sorted(self.providers, key=lambda s: s.id)))
        set_(self, "demand", tuple(sorted(self.demand, key=lambda d: d.stream_id)))
        set_(self, "levels", tuple(sorted(self.levels, key=lambda lv: (lv.provider_id, lv.skill))))
        self._validate()

    def _validate(self) -> None:
        horizon = self.request.horizon_periods
        for label, ids in (
            ("stream", [s.id for s in self.streams]),
            ("team", [t.id for t in self.teams]),
            ("provider", [p.id for p in self.providers]),
            ("demand stream", [d.stream_id for d in self.demand]),
            ("provider level", [f"{lv.provider_id}/{lv.skill}" for lv in self.levels]),
        ):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise InvalidInput(f"duplicate {label} ids: {dup}")
        if not self.streams:
            raise InvalidInput("AllocationProblem: no work streams")
        stream_ids = {s.id for s in self.streams}
        demand_ids = {d.stream_id for d in self.demand}
        if missing := sorted(stream_ids - demand_ids):
            raise InvalidInput(f"no demand for streams {missing}")
        if extra := sorted(demand_ids - stream_ids):
            raise InvalidInput(f"demand for unknown streams {extra}")
        for d in self.demand:
            stream = self.stream(d.stream_id)
            if stream.kind == "queue" and d.arrivals is None:
                raise InvalidInput(f"Demand {d.stream_id!r}: queue needs arrivals and aht_s")
            if stream.kind == "project" and d.work_hours is None:
                raise InvalidInput(f"Demand {d.stream_id!r}: project needs work_hours")
            if d.periods != horizon:
                raise InvalidInput(
                    f"Demand {d.stream_id!r}: {d.periods} periods, horizon is {horizon}"
                )
        for team in self.teams:
            if len(team.fte_available) not in (1, horizon):
                raise InvalidInput(
                    f"Team {team.id!r}: fte_available has {len(team.fte_available)} values, "
                    f"expected 1 or {horizon}"
                )
        providers = {p.id: p for p in self.providers}
        for lv in self.levels:
            prov = providers.get(lv.provider_id)
            if prov is None:
                raise InvalidInput(f"ProviderLevel for unknown provider {lv.provider_id!r}")
            if lv.skill not in prov.contract.skills:
                raise InvalidInput(
                    f"ProviderLevel {lv.provider_id!r}/{lv.skill!r}: contract has no such line"
                )
            block = prov.contract.block_fte
            for value in (lv.committed_fte, *(ch.fte for ch in lv.pending)):
                if value > prov.contract.max_fte + _EPS:
                    raise InvalidInput(
                        f"ProviderLevel {lv.provider_id!r}/{lv.skill!r}: level {value} above "
                        f"the contract max_fte {prov.contract.max_fte}"
                    )
                if abs(value / block - round(value / block)) > 1e-6:
                    raise InvalidInput(
                        f"ProviderLevel {lv.provider_id!r}/{lv.skill!r}: level {value} is not "
                        f"a whole number of {block}-FTE blocks"
                    )
            for ch in lv.pending:
                if ch.effective_period >= horizon:
                    raise InvalidInput(
                        f"ProviderLevel {lv.provider_id!r}/{lv.skill!r}: pending change at "
                        f"period {ch.effective_period} is beyond the horizon ({horizon})"
                    )
        for prov in self.providers:
            lines = [lv for lv in self.levels if lv.provider_id == prov.id]
            if not lines:
                continue
            totals = [sum(v) for v in zip(*(lv.baseline(horizon) for lv in lines), strict=True)]
            if max(totals) > prov.contract.max_fte + _EPS:
                raise InvalidInput(
                    f"Provider {prov.id!r}: committed + pending levels total {max(totals)} FTE, "
                    f"above the contract max_fte {prov.contract.max_fte}"
                )
        offered = {s for t in self.teams for s in t.skills}
        offered |= {s for p in self.providers for s in p.contract.skills}
        for stream in self.streams:
            if stream.skill not in offered:
                raise InvalidInput(
                    f"WorkStream {stream.id!r}: skill {stream.skill!r} is offered by no team "
                    "and no provider contract"
                )

    def stream(self, stream_id: str) -> WorkStream:
        """The stream with ``stream_id`` (KeyError if unknown)."""
        for s in self.streams:
            if s.id == stream_id:
                return s
        raise KeyError(stream_id)

    def demand_for(self, stream_id: str) -> Demand:
        """The demand of ``stream_id`` (KeyError if unknown)."""
        for d in self.demand:
            if d.stream_id == stream_id:
                return d
        raise KeyError(stream_id)

    def provider(self, provider_id: str) -> Provider:
        """The provider with ``provider_id`` (KeyError if unknown)."""
        for p in self.providers:
            if p.id == provider_id:
                return p
        raise KeyError(provider_id)

    def baseline_level(self, provider_id: str, skill: str) -> tuple[float, ...]:
        """Committed + pending level of a contract line per period (0 if none recorded)."""
        for lv in self.levels:
            if lv.provider_id == provider_id and lv.skill == skill:
                return lv.baseline(self.request.horizon_periods)
        return (0.0,) * self.request.horizon_periods

    def level_segments(self, provider_id: str) -> tuple[tuple[int, int], ...]:
        """Half-open period ranges ``[start, end)`` over which a provider's levels are constant.

        Boundaries: period 0, every ``Policy.level_change_hours`` (in whole periods, at least
        1) on the clock grid counted from the Unix epoch (see :class:`Policy`), the end of the
        ramp-up and of the notice window, and every pending change's
        effective period of any of the provider's lines. Inside a segment the baseline and the
        window status are therefore constant, so lead time, notice and pending changes hold
        per period exactly when they hold at the segment's start. Every policy's plan can be
        checked against this: a level that changes inside a segment breaks the rule.
        """
        req = self.request
        horizon = req.horizon_periods
        step = max(1, req.hours_to_periods(self.policy.level_change_hours))
        prov = self.provider(provider_id)
        since_epoch = (req.as_of - _EPOCH) // timedelta(minutes=req.period_minutes)
        cuts = {0, *range(-since_epoch % step, horizon, step)}
        cuts.add(req.hours_to_periods(prov.contract.ramp_up_hours))
        cuts.add(req.hours_to_periods(prov.contract.ramp_down_notice_hours))
        for lv in self.levels:
            if lv.provider_id == provider_id:
                cuts.update(ch.effective_period for ch in lv.pending)
        starts = sorted(c for c in cuts if 0 <= c < horizon)
        return tuple(zip(starts, [*starts[1:], horizon], strict=True))

    def committed_level(self, provider_id: str, skill: str) -> float:
        """Level of a contract line right now (before period 0)."""
        for lv in self.levels:
            if lv.provider_id == provider_id and lv.skill == skill:
                return lv.committed_fte
        return 0.0
