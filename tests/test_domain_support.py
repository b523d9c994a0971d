"""Builders for the domain-processor tests: a small domain, events, and a driver.

Kept in a ``test_domain_*`` module (the tests' own files) so every domain test builds events
the same way, with the contract's pydantic models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from allocator.policies import AllocationPolicy, GreedyPolicy
from schemas import (
    AllocationLogged,
    AllocationPlanned,
    AnswerWithinSla,
    CapacityRequested,
    CapacityResponded,
    ContractStatus,
    Event,
    ProjectDemandChanged,
    ProviderContractUpdated,
    QueueDefined,
    RateTier,
    ResponseStatus,
    ScalingDecided,
    Sensitivity,
    SkillRate,
    TeamCapacityUpdated,
    TicketVolumeObserved,
)
from services.domain import (
    DomainProcessor,
    Inbound,
    PlannerConfig,
    StepResult,
    dump_state,
    load_state,
)

#: A Monday midnight, so intervals line up with the forecasters' week slots.
T0 = datetime(2026, 11, 30, tzinfo=UTC)
DOMAIN = "eu"
COMMON: dict[str, Any] = {"source": "urn:flexforce:test", "domain": DOMAIN}
SKILL = "service-desk"


def queue(
    queue_id: str = "sd",
    *,
    at: datetime = T0,
    event_id: str | None = None,
    skill: str = SKILL,
    restricted: bool = False,
    status: str = "active",
    aht_s: float = 300.0,
    certifications: Sequence[str] = (),
) -> QueueDefined:
    return QueueDefined(
        id=event_id or f"queue-{queue_id}-{at.isoformat()}",
        time=at,
        queue_id=queue_id,
        skill=skill,
        sla=AnswerWithinSla(target_fraction=0.8, within_seconds=60),
        default_handle_time_s=aht_s,
        sensitivity=Sensitivity.RESTRICTED if restricted else Sensitivity.INTERNAL,
        allowed_regions=["eu"] if restricted else [],
        required_certifications=list(certifications),
        interval_minutes=60,
        status=status,
        **COMMON,
    )


def team(
    team_id: str = "t1",
    fte: float = 5.0,
    *,
    at: datetime = T0,
    valid_from: datetime | None = None,
    event_id: str | None = None,
    skills: Sequence[str] = (SKILL,),
) -> TeamCapacityUpdated:
    return TeamCapacityUpdated(
        id=event_id or f"team-{team_id}-{at.isoformat()}-{fte}",
        time=at,
        team_id=team_id,
        skills=list(skills),
        fte=fte,
        shrinkage=0.3,
        cost_per_hour=40.0,
        region="eu",
        valid_from=valid_from or at,
        **COMMON,
    )


def contract(
    provider_id: str,
    rate: float,
    *,
    at: datetime = T0,
    lead_h: float = 24.0,
    notice_h: float = 48.0,
    regions: Sequence[str] = ("eu",),
    certifications: Sequence[str] = (),
    max_fte: float = 60.0,
    block: float = 1.0,
    suspended: bool = False,
    event_id: str | None = None,
    skills: Sequence[str] = (SKILL,),
) -> ProviderContractUpdated:
    return ProviderContractUpdated(
        id=event_id or f"contract-{provider_id}-{at.isoformat()}-{rate}",
        time=at,
        provider_id=provider_id,
        contract_id=f"K-{provider_id}",
        rates=[
            SkillRate(skill=s, tiers=[RateTier(from_fte=0, rate_per_hour=rate)]) for s in skills
        ],
        max_fte=max_fte,
        fte_block=block,
        ramp_up_lead_time_hours=lead_h,
        ramp_down_notice_hours=notice_h,
        regions=list(regions),
        certifications=list(certifications),
        status=ContractStatus.SUSPENDED if suspended else ContractStatus.ACTIVE,
        valid_from=T0 - timedelta(days=30),
        **COMMON,
    )


def volume(
    hour: int,
    arrivals: int,
    *,
    queue_id: str = "sd",
    delay: timedelta = timedelta(hours=1),
    event_id: str | None = None,
    backlog: int = 0,
    aht_s: float | None = 300.0,
) -> TicketVolumeObserved:
    """Arrivals in the hour ``hour`` after T0, reported ``delay`` after the interval start."""
    start = T0 + timedelta(hours=hour)
    return TicketVolumeObserved(
        id=event_id or f"vol-{queue_id}-{hour}-{arrivals}",
        time=start + delay,
        queue_id=queue_id,
        interval_start=start,
        interval_minutes=60,
        arrivals=arrivals,
        backlog=backlog,
        mean_handle_time_s=aht_s,
        **COMMON,
    )


def project(
    project_id: str = "erp",
    hours_per_week: float = 168.0,
    *,
    at: datetime = T0,
    status: str = "approved",
    days: int = 30,
) -> ProjectDemandChanged:
    return ProjectDemandChanged(
        id=f"project-{project_id}-{at.isoformat()}-{status}",
        time=at,
        project_id=project_id,
        skill=SKILL,
        hours_per_week=hours_per_week,
        start=T0.date(),
        end=(T0 + timedelta(days=days)).date(),
        status=status,
        **COMMON,
    )


def respond(
    request: CapacityRequested,
    status: ResponseStatus,
    *,
    at: datetime | None = None,
    confirmed: float | None = None,
    provider_id: str | None = None,
    event_id: str | None = None,
) -> CapacityResponded:
    if confirmed is None:
        confirmed = request.target_fte if status is ResponseStatus.ACCEPTED else 0.0
    return CapacityResponded(
        id=event_id or f"resp-{request.request_id}-{status.value}",
        time=at or request.time + timedelta(minutes=10),
        request_id=request.request_id,
        provider_id=provider_id or request.provider_id,
        status=status,
        confirmed_fte=confirmed,
        effective_at=request.effective_at,
        **COMMON,
    )


def tick(watermark: datetime | None, cfg: PlannerConfig) -> TicketVolumeObserved:
    """A zero report of a queue no catalogue knows, just late enough to make everything up to
    ``watermark`` final: "event time passed", as the next report of any busy queue would say.
    It moves the watermark by the lateness, so events older than ``watermark`` are late after
    it."""
    base = watermark or T0
    at = base + cfg.max_lateness + timedelta(seconds=1)
    start = at.replace(minute=0, second=0, microsecond=0)
    return TicketVolumeObserved(
        id=f"tick-{at.isoformat()}",
        time=at,
        queue_id="zz-clock",
        interval_start=start,
        interval_minutes=60,
        arrivals=0,
        **COMMON,
    )


def config(**overrides: Any) -> PlannerConfig:
    """Small, fast planning: 48 hourly periods, no solver timings (byte-stable outputs)."""
    base: dict[str, Any] = {"horizon_periods": 48, "report_solver_times": False}
    return PlannerConfig(**(base | overrides))


def baseline_catalogue() -> list[Event]:
    """One queue, a 5-FTE team, a cheap and a pricey provider (same lead time)."""
    return [
        queue(),
        team(),
        contract("cheap", 25.0),
        contract("pricey", 35.0),
    ]


@dataclass
class Driver:
    """Feeds events to a processor as the shell would and plans whenever a plan is due."""

    proc: DomainProcessor
    policy: AllocationPolicy = field(default_factory=GreedyPolicy)
    offset: int = 0
    outputs: list[Event] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)

    @classmethod
    def new(cls, cfg: PlannerConfig | None = None, **kw: Any) -> Driver:
        return cls(DomainProcessor(DOMAIN, cfg or config()), **kw)

    def feed(self, events: Iterable[Event], *, plan: bool = True) -> list[Event]:
        """One input batch through the shell's loop (ingest, plan at each stop, continue
        while ``more``); ``steps`` gets one merged result per batch. Without ``plan`` the
        stops are passed over (nothing planned), as a shell that lost its solver would."""
        items = []
        for event in events:
            self.offset += 1
            items.append(Inbound(event, type(event).topic, 0, self.offset))
        return self.deliver(items, plan=plan)

    def deliver(self, items: Sequence[Inbound], *, plan: bool = True) -> list[Event]:
        """Like :meth:`feed` for items whose coordinates the caller chose."""
        merged = StepResult()
        out: list[Event] = []
        step = self.proc.ingest(items)
        while True:
            merged.refused += step.refused
            merged.duplicates += step.duplicates
            merged.accepted += step.accepted
            merged.applied += step.applied
            merged.log += step.log
            merged.intervals_closed += step.intervals_closed
            merged.pending = step.pending
            out += step.log
            if plan:
                out += self.proc.run_due(self.policy)
            if not step.more:
                break
            step = self.proc.ingest(())
        self.steps.append(merged)
        self.outputs += out
        return out

    def settle(self, *, plan: bool = True) -> list[Event]:
        """Make everything fed so far final (see :func:`tick`) and plan where due."""
        return self.feed([tick(self.proc.state.watermark, self.proc.config)], plan=plan)

    def feed_each(self, events: Iterable[Event]) -> list[Event]:
        """One ingest batch per event, planning after each (what a replay of singles does)."""
        out: list[Event] = []
        for event in events:
            out += self.feed([event])
        return out

    def restore(self) -> Driver:
        """A new driver on a processor rebuilt from this one's state, through the bytes the
        worker's table stores."""
        state = load_state(dump_state(self.proc.to_state()))
        proc = DomainProcessor(DOMAIN, self.proc.config, state)
        return Driver(proc, self.policy, self.offset)


def of_type(events: Iterable[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def requests(events: Iterable[Event]) -> list[CapacityRequested]:
    return of_type(events, CapacityRequested)


def decisions(events: Iterable[Event]) -> list[ScalingDecided]:
    return of_type(events, ScalingDecided)


def plans(events: Iterable[Event]) -> list[AllocationPlanned]:
    return of_type(events, AllocationPlanned)


def logs(events: Iterable[Event], kind: str | None = None) -> list[AllocationLogged]:
    found: list[AllocationLogged] = of_type(events, AllocationLogged)
    return [e for e in found if kind is None or e.kind == kind]


def hours(start: int, stop: int, arrivals: int, **kw: Any) -> list[Event]:
    return [volume(h, arrivals, **kw) for h in range(start, stop)]
