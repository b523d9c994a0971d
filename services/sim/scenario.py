"""Scenario files: one validated YAML document describing a closed-loop evaluation.

Why a pydantic model: a scenario is user input (written by hand, copied, edited), so a typo must
fail early with the field's path and a readable reason, not as a ``KeyError`` half-way through a
simulated week. The model is also the single place that says what each knob means; the
simulators read it and nothing else.

A scenario names one planning domain and lists, in the contract's vocabulary, the queues, the
internal teams, the providers with their contracts and *behaviour* (how the simulated provider
answers requests), the policy weights, the demand source (real bank calls, the real ServiceNow
incident log, or synthetic demand) and the time window to evaluate.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.base import IDENTIFIER_PATTERN, PROVIDER_ID_PATTERN

__all__ = [
    "BankCallsDemand",
    "DemandSpec",
    "PlanningSpec",
    "PolicyWeights",
    "ProviderBehaviour",
    "ProviderSpec",
    "QueueSpec",
    "Scenario",
    "ScenarioError",
    "ServiceNowDemand",
    "StormSpec",
    "SyntheticDemand",
    "SyntheticQueue",
    "TeamSpec",
    "data_dir",
    "load_scenario",
]

Ident = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
ProvId = Annotated[str, Field(pattern=PROVIDER_ID_PATTERN)]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def data_dir(repo_root: Path | None = None) -> Path:
    """Where the real data lives: ``$FLEXFORCE_DATA_DIR``, else ``../shared/data`` next to the
    repository root when it exists (the layout ``/work/shared/data/README.md`` documents), else
    the repository's own ``data/`` (copies of the files the scenarios read, with provenance)."""
    env = os.environ.get("FLEXFORCE_DATA_DIR")
    if env:
        return Path(env)
    root = repo_root or Path(__file__).resolve().parents[2]
    shared = root.parent / "shared" / "data"
    return shared if shared.is_dir() else root / "data"


class SlaSpec(_Strict):
    """``answer_within`` (contacts answered within ``seconds``) or ``resolve_within`` (tickets
    resolved within ``hours``); ``target`` is the fraction that must meet it."""

    kind: Literal["answer_within", "resolve_within"] = "answer_within"
    target: float = Field(0.8, gt=0, lt=1)
    seconds: float | None = Field(None, gt=0)
    hours: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SlaSpec:
        if self.kind == "answer_within" and self.seconds is None:
            raise ValueError("answer_within needs 'seconds'")
        if self.kind == "resolve_within" and self.hours is None:
            raise ValueError("resolve_within needs 'hours'")
        return self


class QueueSpec(_Strict):
    id: Ident
    skill: Ident
    sla: SlaSpec
    sensitivity: Literal["public", "internal", "restricted"] = "internal"
    allowed_regions: list[Ident] = Field(default_factory=list)
    certifications: list[Ident] = Field(default_factory=list)
    core: bool = False
    default_handle_time_s: float = Field(gt=0)
    patience_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> QueueSpec:
        if self.sensitivity == "restricted" and not self.allowed_regions:
            raise ValueError(f"queue {self.id}: restricted queues must list allowed_regions")
        return self


class TeamSpec(_Strict):
    id: Ident
    skills: list[Ident] = Field(min_length=1)
    fte: float = Field(ge=0)
    shrinkage: float = Field(0.3, ge=0, lt=1)
    cost_per_hour: float = Field(ge=0)
    region: Ident
    clearances: list[Ident] = Field(default_factory=list)


class OutageSpec(_Strict):
    """A window in which the provider delivers nothing and answers nothing."""

    start: AwareDatetime
    end: AwareDatetime
    announce: bool = Field(
        True,
        description="The vendor manager suspends the contract at the start and restores it at "
        "the end (contract events); off = flexforce only sees the silence.",
    )

    @model_validator(mode="after")
    def _check(self) -> OutageSpec:
        if self.end <= self.start:
            raise ValueError("outage end must be after its start")
        return self


class ProviderBehaviour(_Strict):
    """How the simulated provider answers ``CapacityRequested``.

    * ``accept``: confirms the target; ``partial``: confirms the current level plus
      ``fill_fraction`` of an increase (rounded down to blocks; decreases are accepted);
      ``reject``: rejects every increase (decreases are accepted: nobody refuses less work).
    * ``answer_delay_minutes``: event time between request and answer; an answer later than the
      request's ``respond_by`` is void (the planner treats the request as rejected) and the
      provider does not deliver.
    * ``lead_time_hours``: actual ramp-up time; None = the contract's. Capacity is in place only
      from max(effective_at, request time + lead time).
    * ``outage``: see :class:`OutageSpec`.
    """

    mode: Literal["accept", "partial", "reject"] = "accept"
    fill_fraction: float = Field(0.5, ge=0, le=1)
    answer_delay_minutes: float = Field(10.0, ge=0)
    lead_time_hours: float | None = Field(None, ge=0)
    outage: OutageSpec | None = None


class ProviderSpec(_Strict):
    id: ProvId
    name: str = ""
    rates: dict[Ident, float | list[tuple[float, float]]] = Field(
        min_length=1,
        description="skill -> rate per hour, or a list of [from_fte, rate] volume tiers",
    )
    min_fte: float = Field(0.0, ge=0)
    max_fte: float = Field(gt=0)
    fte_block: float = Field(1.0, gt=0)
    lead_time_hours: float = Field(ge=0)
    notice_hours: float = Field(ge=0)
    regions: list[Ident] = Field(min_length=1)
    certifications: list[Ident] = Field(default_factory=list)
    quality: float = Field(1.0, ge=0, le=1)
    behaviour: ProviderBehaviour = Field(default_factory=ProviderBehaviour)

    @model_validator(mode="after")
    def _check(self) -> ProviderSpec:
        if self.min_fte > self.max_fte:
            raise ValueError(f"provider {self.id}: min_fte above max_fte")
        for skill, rate in self.rates.items():
            if isinstance(rate, list):
                if not rate or rate[0][0] != 0:
                    raise ValueError(f"provider {self.id}: tiers of {skill} must start at 0")
                if any(b[0] <= a[0] for a, b in itertools.pairwise(rate)):
                    raise ValueError(f"provider {self.id}: tiers of {skill} must increase")
        return self

    def tiers(self, skill: str) -> list[tuple[float, float]]:
        rate = self.rates[skill]
        return [(0.0, float(rate))] if isinstance(rate, int | float) else list(rate)


class PolicyWeights(_Strict):
    """The allocator's :class:`allocator.Policy` knobs; the same prices score every policy."""

    sla_penalty_per_contact: float = Field(10.0, ge=0)
    unmet_work_penalty_per_hour: float = Field(200.0, ge=0)
    churn_cost_per_fte: float = Field(0.0, ge=0)
    quality_penalty_per_fte_hour: float = Field(0.0, ge=0)
    core_in_house_share: float = Field(0.0, ge=0, le=1)
    vendor_concentration_cap: float = Field(1.0, gt=0, le=1)
    max_occupancy: float = Field(0.85, gt=0, le=1)
    level_change_hours: float = Field(8.0, ge=0)
    demand_cv: float = Field(
        0.3,
        ge=0,
        le=2,
        description="Relative spread of arrivals around the forecast that the optimiser "
        "prices (allocator Policy.demand_cv); 0 plans for the forecast as certain. Default "
        "0.3: the default forecaster's hourly WAPE is 0.34-0.38 on the bank and 0.67-0.69 on "
        "the incident log (bench/forecast_backtest.py), i.e. a spread of at least 0.3.",
    )
    understaffing_penalty_per_fte_hour: float = Field(
        0.0,
        ge=0,
        description="Planner's price of each productive FTE-hour a queue is staffed below its "
        "Erlang requirement at the SLA target (allocator Policy.understaffing_penalty_per_fte_"
        "hour); above the dearest source's rate it makes the target a floor (staff to target). "
        "Only the planner sees it: outcomes are scored on service achieved.",
    )
    request_cost_per_fte: float = Field(
        0.0,
        ge=0,
        description="Price of each FTE asked of a provider beyond its committed + pending "
        "level (allocator Policy.request_cost_per_fte): damps plans that re-ask providers "
        "hour after hour. Only the planner sees it: the outcome counts churn on the capacity "
        "really in place, for every policy alike.",
    )


class PlanningSpec(_Strict):
    """How the planner runs inside the loop (kept small so evaluations stay fast)."""

    period_minutes: int = 60
    horizon_periods: int = Field(48, ge=1)
    min_replan_minutes: int = Field(60, ge=0)
    max_staleness_minutes: int = Field(360, ge=1)
    allowed_lateness_minutes: int = Field(0, ge=0)
    control_lateness_minutes: int = Field(
        15,
        ge=0,
        description="Lateness of provider answers and contract events; > 0 keeps a request "
        "whose respond_by is already reached from timing out at the very step it was made.",
    )
    solver_time_limit_s: float = Field(2.0, gt=0)
    solver_backend: Literal["highs", "scip"] = "highs"
    relative_gap: float = Field(0.02, ge=0, lt=1)
    forecast_method: str | None = None
    service_target_margin: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Planning target of the planner policies: each queue planned to target + "
        "margin x (1 - target) (services PlannerConfig.service_target_margin).",
    )


class BankCallsDemand(_Strict):
    """The Anonymous Bank's 15-minute arrivals; ``queues`` maps data queue → scenario queue
    (unmapped data queues are dropped)."""

    kind: Literal["bank_calls"] = "bank_calls"
    file: str = "anonymous_bank_feb1999_arrivals_15min.csv"
    queues: dict[str, Ident] = Field(min_length=1)
    scale: float = Field(1.0, gt=0)


class ServiceNowDemand(_Strict):
    """The ServiceNow incident log's hourly arrivals per first assignment group.

    The log has no effort times: every incident costs ``handle_time_hours`` of work (the stated
    assumption, also the queues' default handle time). ``groups`` maps assignment group →
    scenario queue; unmapped groups go to ``other_queue`` (None = dropped).
    """

    kind: Literal["servicenow"] = "servicenow"
    file: str = "servicenow_incidents_2016_arrivals_hourly.csv"
    groups: dict[str, Ident] = Field(min_length=1)
    other_queue: Ident | None = None
    handle_time_hours: float = Field(gt=0)
    scale: float = Field(1.0, gt=0)


class StormSpec(_Strict):
    """An incident storm: arrivals of ``queues`` multiplied by ``factor`` in a window."""

    start: AwareDatetime
    hours: float = Field(gt=0)
    factor: float = Field(gt=0)
    queues: list[Ident] = Field(default_factory=list, description="Empty = every queue.")


class SyntheticQueue(_Strict):
    queue: Ident
    peak_per_hour: float = Field(ge=0)
    handle_time_s: float = Field(gt=0)
    weekend_factor: float = Field(0.4, ge=0)
    night_factor: float = Field(0.1, ge=0)


class ProjectSpec(_Strict):
    """A project in the pipeline: approved at ``approved_at`` (event time)."""

    id: Ident
    skill: Ident
    hours_per_week: float = Field(ge=0)
    start: AwareDatetime
    end: AwareDatetime
    approved_at: AwareDatetime
    sensitivity: Literal["public", "internal", "restricted"] = "internal"
    allowed_regions: list[Ident] = Field(default_factory=list)


class SyntheticDemand(_Strict):
    """Seeded synthetic demand: a daily two-hump profile, quieter nights and weekends, Poisson
    noise, incident storms; plus a project pipeline (projects approved during the run)."""

    kind: Literal["synthetic"] = "synthetic"
    interval_minutes: Literal[15, 30, 60] = 60
    seed: int = 0
    queues: list[SyntheticQueue] = Field(min_length=1)
    storms: list[StormSpec] = Field(default_factory=list)


DemandSpec = Annotated[
    BankCallsDemand | ServiceNowDemand | SyntheticDemand, Field(discriminator="kind")
]


class Scenario(_Strict):
    """One closed-loop evaluation (see the module docstring)."""

    name: Ident
    description: str = ""
    domain: Ident = "default"
    start: AwareDatetime = Field(description="First measured instant (data time).")
    duration_hours: float = Field(gt=0)
    history_days: int = Field(
        7, ge=0, description="Demand replayed before the run only to train the forecasts."
    )
    lead_in_hours: float = Field(
        24.0,
        ge=0,
        description="Closed loop run before ``start`` without measuring, so providers with "
        "lead times are in place when measurement begins.",
    )
    acceleration: float = Field(
        3600.0, gt=0, description="Event seconds per wall second when paced (Kafka mode)."
    )
    planning: PlanningSpec = Field(default_factory=PlanningSpec)
    policy: PolicyWeights = Field(default_factory=PolicyWeights)
    queues: list[QueueSpec] = Field(min_length=1)
    teams: list[TeamSpec] = Field(default_factory=list)
    providers: list[ProviderSpec] = Field(default_factory=list)
    projects: list[ProjectSpec] = Field(default_factory=list)
    demand: DemandSpec

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        ids = [q.id for q in self.queues]
        _unique("queue", ids)
        _unique("team", [t.id for t in self.teams])
        _unique("provider", [p.id for p in self.providers])
        known = set(ids)
        mapped: list[str] = []
        if isinstance(self.demand, BankCallsDemand):
            mapped = list(self.demand.queues.values())
        elif isinstance(self.demand, ServiceNowDemand):
            mapped = list(self.demand.groups.values())
            if self.demand.other_queue is not None:
                mapped.append(self.demand.other_queue)
        else:
            mapped = [q.queue for q in self.demand.queues]
            for storm in self.demand.storms:
                mapped += storm.queues
        if unknown := sorted(set(mapped) - known):
            raise ValueError(f"demand refers to unknown queues {unknown} (queues: {sorted(known)})")
        skills = {s for t in self.teams for s in t.skills} | {
            s for p in self.providers for s in p.rates
        }
        if missing := sorted({q.skill for q in self.queues} - skills):
            raise ValueError(f"skills {missing} are offered by no team and no provider")
        minutes = self.planning.period_minutes
        if 1440 % minutes:
            raise ValueError("planning.period_minutes must divide a day")
        return self

    @property
    def end(self) -> datetime:
        from datetime import timedelta

        return self.start + timedelta(hours=self.duration_hours)


def _unique(label: str, ids: list[str]) -> None:
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"duplicate {label} ids: {dup}")


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; :class:`ScenarioError` names the file and each bad
    field (``providers.1.behaviour.mode: Input should be 'accept', ...``)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping, got {type(raw).__name__}")
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ScenarioError(f"{path}: invalid scenario:\n" + "\n".join(lines)) from exc
