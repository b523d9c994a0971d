"""Events from operations systems: queue catalogue, ticket volumes, project demand, rosters."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, ClassVar, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.base import Event, Fte, Identifier, Money, Sensitivity, Text

#: Interval lengths that tile a day exactly, so intervals from different sources line up.
IntervalMinutes = Literal[5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440]
INTERVAL_MINUTES: tuple[int, ...] = get_args(IntervalMinutes)


class AnswerWithinSla(BaseModel):
    """Contact-centre style SLA: ``target_fraction`` of contacts answered within N seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["answer_within"] = "answer_within"
    target_fraction: float = Field(gt=0, lt=1, description="E.g. 0.8 for 80 %.")
    within_seconds: float = Field(gt=0, le=86_400)


class ResolveWithinSla(BaseModel):
    """IT-incident style SLA: ``target_fraction`` of tickets resolved within N hours."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["resolve_within"] = "resolve_within"
    target_fraction: float = Field(gt=0, lt=1)
    within_hours: float = Field(gt=0, le=24 * 90)


Sla = Annotated[AnswerWithinSla | ResolveWithinSla, Field(discriminator="kind")]


class QueueStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


class QueueDefined(Event):
    """A ticket or contact queue and the rules its work must follow (compacted catalogue)."""

    event_type: ClassVar[str] = "flexforce.ops.queue_defined.v1"
    key_field: ClassVar[str] = "queue_id"
    topic: ClassVar[str] = "ops.queues"

    queue_id: Identifier
    name: Text = ""
    skill: Identifier
    sla: Sla
    sensitivity: Sensitivity = Sensitivity.INTERNAL
    allowed_regions: list[Identifier] = Field(
        default_factory=list,
        description="Regions where the work may be done; empty means anywhere.",
        max_length=100,
    )
    required_certifications: list[Identifier] = Field(default_factory=list, max_length=50)
    core: bool = Field(False, description="Core work counts towards the in-house share.")
    default_handle_time_s: float = Field(gt=0, le=7 * 86_400)
    patience_s: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Mean customer patience; enables Erlang A (abandonment).",
    )
    interval_minutes: IntervalMinutes = Field(
        15, description="Length of the intervals volumes arrive in."
    )
    status: QueueStatus = QueueStatus.ACTIVE

    @model_validator(mode="after")
    def _check(self) -> QueueDefined:
        if self.sensitivity is Sensitivity.RESTRICTED and not self.allowed_regions:
            raise ValueError("restricted queues must list their allowed_regions")
        return self


class TicketVolumeObserved(Event):
    """Arrivals, backlog and handle time of one queue over one interval (event time)."""

    event_type: ClassVar[str] = "flexforce.ops.ticket_volume.v1"
    key_field: ClassVar[str] = "queue_id"
    topic: ClassVar[str] = "ops.ticket-volume"

    queue_id: Identifier
    interval_start: AwareDatetime
    interval_minutes: IntervalMinutes
    arrivals: int = Field(ge=0, le=10_000_000)
    backlog: int = Field(0, ge=0, le=100_000_000, description="Open tickets at interval end.")
    abandoned: int = Field(0, ge=0, le=10_000_000)
    mean_handle_time_s: float | None = Field(
        None, gt=0, le=7 * 86_400, description="None when nothing was handled."
    )

    @model_validator(mode="after")
    def _check(self) -> TicketVolumeObserved:
        # the time of day in the start's own zone, in µs (= start - start's midnight, exactly:
        # both carry the same tzinfo, so the difference is the wall-clock one); plain ints,
        # this runs once per ticket volume validated
        start = self.interval_start
        since_midnight = (
            start.hour * 3600 + start.minute * 60 + start.second
        ) * 1_000_000 + start.microsecond
        if since_midnight % (self.interval_minutes * 60_000_000):
            raise ValueError(
                f"interval_start {self.interval_start.isoformat()} is not aligned to "
                f"{self.interval_minutes}-minute intervals"
            )
        if self.abandoned > self.arrivals:
            raise ValueError("abandoned cannot exceed arrivals")
        if self.time < self.interval_start:
            raise ValueError("event time is before the interval it reports on")
        return self

    @property
    def interval_end(self) -> datetime:
        return self.interval_start + timedelta(minutes=self.interval_minutes)


class ProjectStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    CANCELLED = "cancelled"


class ProjectDemandChanged(Event):
    """Effort a project needs per week of a skill, between two dates."""

    event_type: ClassVar[str] = "flexforce.ops.project_demand.v1"
    key_field: ClassVar[str] = "project_id"
    topic: ClassVar[str] = "ops.project-demand"

    project_id: Identifier
    name: Text = ""
    skill: Identifier
    hours_per_week: float = Field(ge=0, le=100_000)
    start: date
    end: date = Field(description="Last day of the project (inclusive).")
    priority: int = Field(3, ge=1, le=5, description="1 highest … 5 lowest.")
    sensitivity: Sensitivity = Sensitivity.INTERNAL
    allowed_regions: list[Identifier] = Field(default_factory=list, max_length=100)
    required_certifications: list[Identifier] = Field(default_factory=list, max_length=50)
    core: bool = False
    status: ProjectStatus = ProjectStatus.PROPOSED

    @model_validator(mode="after")
    def _check(self) -> ProjectDemandChanged:
        if self.end < self.start:
            raise ValueError("project end is before its start")
        if self.sensitivity is Sensitivity.RESTRICTED and not self.allowed_regions:
            raise ValueError("restricted projects must list their allowed_regions")
        return self


class TeamCapacityUpdated(Event):
    """An internal team's roster: skills, FTE, cost and where it may work (compacted)."""

    event_type: ClassVar[str] = "flexforce.ops.team_capacity.v1"
    key_field: ClassVar[str] = "team_id"
    topic: ClassVar[str] = "ops.workforce"

    team_id: Identifier
    name: Text = ""
    skills: list[Identifier] = Field(min_length=1, max_length=100)
    fte: Fte = Field(le=100_000)
    hours_per_fte_per_week: float = Field(40.0, gt=0, le=80)
    shrinkage: float = Field(
        0.3, ge=0, lt=1, description="Share of paid time not available for work."
    )
    cost_per_hour: Money
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    region: Identifier
    clearances: list[Identifier] = Field(
        default_factory=list, max_length=50, description="Certifications / clearances held."
    )
    valid_from: AwareDatetime

    @model_validator(mode="after")
    def _check(self) -> TeamCapacityUpdated:
        if len(set(self.skills)) != len(self.skills):
            raise ValueError("skills are listed twice")
        return self
