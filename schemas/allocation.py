"""Decision events: allocation plans, scaling decisions and the allocation log.

Plans are large (periods × streams × sources), so time series are columns: one list of values per
(stream, source) over the horizon rather than one object per cell. That keeps an M-size plan
(50 streams, 168 periods) a few hundred kilobytes of JSON.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.base import Event, Identifier, Money, ProviderId, Text

Series = list[Annotated[float, Field(allow_inf_nan=False)]]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceKind(StrEnum):
    TEAM = "team"
    PROVIDER = "provider"


class StreamAllocation(_Part):
    """FTE one source puts on one work stream, per period."""

    stream_id: Identifier
    source_kind: SourceKind
    source_id: Identifier
    skill: Identifier
    fte: Series


class ProviderLevel(_Part):
    """Contracted FTE of one provider and skill, per period."""

    provider_id: ProviderId
    skill: Identifier
    fte: Series


class StreamService(_Part):
    """What the plan expects for one work stream, per period."""

    stream_id: Identifier
    required_fte: Series
    staffed_fte: Series
    unmet_fte: Series
    expected_service_level: Series


class CostBreakdown(_Part):
    internal: Money
    providers: Money
    penalties: float = Field(ge=0, allow_inf_nan=False)
    churn: Money = 0.0
    total: float = Field(allow_inf_nan=False)
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"


class SolverStatus(StrEnum):
    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    TIMEOUT = "timeout"
    ERROR = "error"


class SolverStats(_Part):
    backend: Identifier
    status: SolverStatus
    objective: float | None = None
    best_bound: float | None = None
    gap: float | None = Field(None, ge=0)
    solve_seconds: float = Field(ge=0)
    build_seconds: float = Field(0.0, ge=0)


class WatermarkEntry(_Part):
    """The last input offset a plan saw, per input partition (for replay and audit)."""

    topic: Annotated[str, Field(min_length=1, max_length=249)]
    partition: int = Field(ge=0)
    offset: int = Field(ge=-1)


class MarginalValue(_Part):
    """What one more unit of a resource would save over the horizon (a shadow price)."""

    resource: Text
    saving_per_fte: float = Field(allow_inf_nan=False)


class Explanation(_Part):
    binding_constraints: list[Text] = Field(default_factory=list)
    marginal_values: list[MarginalValue] = Field(default_factory=list)
    relaxations: list[Text] = Field(
        default_factory=list, description="Constraints relaxed with priced slack, and why."
    )
    summary: Text = ""


class AllocationPlanned(Event):
    """One solved plan for a planning domain over the rolling horizon."""

    event_type: ClassVar[str] = "flexforce.allocation.plan.v1"
    key_field: ClassVar[str] = "domain"
    topic: ClassVar[str] = "allocation.plans"

    plan_id: Annotated[str, Field(min_length=1, max_length=100)]
    as_of: AwareDatetime
    period_minutes: int = Field(gt=0, le=7 * 1440)
    horizon_periods: int = Field(gt=0, le=24 * 366)
    policy: Identifier = "optimiser"
    allocations: list[StreamAllocation] = Field(default_factory=list)
    provider_levels: list[ProviderLevel] = Field(default_factory=list)
    service: list[StreamService] = Field(default_factory=list)
    cost: CostBreakdown
    solver: SolverStats
    explanation: Explanation = Field(default_factory=Explanation)
    watermark: list[WatermarkEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> AllocationPlanned:
        series: list[Series] = [a.fte for a in self.allocations]
        series += [level.fte for level in self.provider_levels]
        for s in self.service:
            series += [s.required_fte, s.staffed_fte, s.unmet_fte, s.expected_service_level]
        if any(len(values) != self.horizon_periods for values in series):
            n = self.horizon_periods
            raise ValueError(f"every series must have horizon_periods={n} values")
        return self


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    HOLD = "hold"


class ScalingDecided(Event):
    """A decision to change (or hold) the capacity of one provider or team for one skill."""

    event_type: ClassVar[str] = "flexforce.allocation.scaling_decided.v1"
    key_field: ClassVar[str] = "domain"
    topic: ClassVar[str] = "allocation.decisions"

    decision_id: Annotated[str, Field(min_length=1, max_length=100)]
    plan_id: Annotated[str, Field(min_length=1, max_length=100)]
    target_kind: SourceKind
    target_id: Identifier
    skill: Identifier
    direction: Direction
    from_fte: float = Field(ge=0, allow_inf_nan=False)
    to_fte: float = Field(ge=0, allow_inf_nan=False)
    effective_at: AwareDatetime
    reason_codes: list[Identifier] = Field(default_factory=list, max_length=50)
    reason: Text = ""

    @model_validator(mode="after")
    def _check(self) -> ScalingDecided:
        expected = (
            Direction.UP
            if self.to_fte > self.from_fte
            else Direction.DOWN
            if self.to_fte < self.from_fte
            else Direction.HOLD
        )
        if self.direction is not expected:
            raise ValueError(
                f"direction {self.direction.value} contradicts {self.from_fte} → {self.to_fte}"
            )
        return self

    @property
    def delta_fte(self) -> float:
        return self.to_fte - self.from_fte


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    SECURITY = "security"


LogValue = str | int | float | bool | None


class AllocationLogged(Event):
    """An audit record: one notable step of the service, for SREs and the decision trail."""

    event_type: ClassVar[str] = "flexforce.allocation.log.v1"
    key_field: ClassVar[str] = "domain"
    topic: ClassVar[str] = "allocation.log"

    level: LogLevel = LogLevel.INFO
    kind: Identifier = Field(description="Machine-readable step, e.g. plan.solved.")
    message: Text
    plan_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    request_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    attrs: dict[Identifier, LogValue] = Field(default_factory=dict, max_length=100)
