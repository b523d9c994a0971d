"""Simulated operations systems: the catalogue at the start, then ticket volumes per queue and
interval, replayed at event time.

Why events and not direct state: the planner must learn everything through the contract
(``ops.queues``, ``ops.workforce``, ``providers.contracts``, ``ops.project-demand``,
``ops.ticket-volume``), so the in-process loop exercises the same validation, ordering and
forecasting as the Kafka worker — and these exact events can be published instead.

Each ``TicketVolumeObserved`` is reported at its interval's end with the arrivals from the
demand trace, the measured handle time, and the backlog the service-outcome model left at
that end — the closed loop: under-staffing shows up as backlog, which the planner plans for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from allocator.domain import Provider, Team, WorkStream
from schemas import (
    AnswerWithinSla,
    Event,
    ProjectDemandChanged,
    ProjectStatus,
    ProviderContractUpdated,
    QueueDefined,
    RateTier,
    ResolveWithinSla,
    Sensitivity,
    SkillRate,
    TeamCapacityUpdated,
    TicketVolumeObserved,
)
from services.domain.catalogue import provider_of, queue_stream, team_of
from services.sim.demand import DemandTrace
from services.sim.scenario import Scenario

__all__ = ["Catalogue", "OperationsSimulator", "build_catalogue"]

SOURCE = "urn:flexforce:sim:operations"


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The scenario's catalogue as events and as the allocator's domain objects."""

    queues: dict[str, QueueDefined]
    teams: dict[str, TeamCapacityUpdated]
    contracts: dict[str, ProviderContractUpdated]
    streams: tuple[WorkStream, ...]
    team_objects: tuple[Team, ...]
    providers: dict[str, Provider]

    def in_house(self) -> list[Event]:
        """Queues and rosters: what the history is planned with."""
        return [*self.queues.values(), *self.teams.values()]

    def contracts_at(self, at: datetime) -> list[ProviderContractUpdated]:
        """The provider contracts, published at ``at`` (the lead-in's start in the loops).

        Why not with the history: a plan made with the providers known would ask them for
        capacity in the past. Both loops (in process and through Kafka) publish them at the
        same event time, so both make their first provider-aware plan at the same step.
        """
        return [c.model_copy(update={"time": at}) for c in self.contracts.values()]


def build_catalogue(scenario: Scenario, at: datetime, interval_minutes: int) -> Catalogue:
    """Catalogue events at ``at`` (also every roster's and contract's ``valid_from``)."""
    common = {"source": SOURCE, "time": at, "domain": scenario.domain}
    queues: dict[str, QueueDefined] = {}
    for q in scenario.queues:
        sla: AnswerWithinSla | ResolveWithinSla
        if q.sla.kind == "answer_within":
            assert q.sla.seconds is not None
            sla = AnswerWithinSla(target_fraction=q.sla.target, within_seconds=q.sla.seconds)
        else:
            assert q.sla.hours is not None
            sla = ResolveWithinSla(target_fraction=q.sla.target, within_hours=q.sla.hours)
        queues[q.id] = QueueDefined(
            id=f"{scenario.name}-queue-{q.id}",
            queue_id=q.id,
            skill=q.skill,
            sla=sla,
            sensitivity=Sensitivity(q.sensitivity),
            allowed_regions=q.allowed_regions,
            required_certifications=q.certifications,
            core=q.core,
            default_handle_time_s=q.default_handle_time_s,
            patience_s=q.patience_s,
            interval_minutes=interval_minutes,
            **common,
        )
    teams = {
        t.id: TeamCapacityUpdated(
            id=f"{scenario.name}-team-{t.id}",
            team_id=t.id,
            skills=t.skills,
            fte=t.fte,
            shrinkage=t.shrinkage,
            cost_per_hour=t.cost_per_hour,
            region=t.region,
            clearances=t.clearances,
            valid_from=at,
            **common,
        )
        for t in scenario.teams
    }
    contracts = {
        p.id: ProviderContractUpdated(
            id=f"{scenario.name}-contract-{p.id}",
            provider_id=p.id,
            name=p.name,
            contract_id=f"K-{p.id}",
            rates=[
                SkillRate(
                    skill=skill,
                    tiers=[RateTier(from_fte=f, rate_per_hour=r) for f, r in p.tiers(skill)],
                )
                for skill in sorted(p.rates)
            ],
            min_fte=p.min_fte,
            max_fte=p.max_fte,
            fte_block=p.fte_block,
            ramp_up_lead_time_hours=p.lead_time_hours,
            ramp_down_notice_hours=p.notice_hours,
            regions=p.regions,
            certifications=p.certifications,
            quality_score=p.quality,
            valid_from=at,
            **common,
        )
        for p in scenario.providers
    }
    return Catalogue(
        queues=queues,
        teams=teams,
        contracts=contracts,
        streams=tuple(queue_stream(q) for q in queues.values()),
        team_objects=tuple(team_of(t, (t.fte,)) for t in teams.values()),
        providers={pid: provider_of(c) for pid, c in contracts.items()},
    )


@dataclass(slots=True)
class OperationsSimulator:
    """Replays a demand trace as contract events (see the module docstring)."""

    scenario: Scenario
    trace: DemandTrace
    catalogue: Catalogue

    def projects(self, start: datetime, end: datetime) -> list[ProjectDemandChanged]:
        """Project approvals with event time in [start, end) — the project pipeline."""
        out = []
        for p in self.scenario.projects:
            if start <= p.approved_at < end:
                out.append(
                    ProjectDemandChanged(
                        id=f"{self.scenario.name}-project-{p.id}",
                        source=SOURCE,
                        time=p.approved_at,
                        domain=self.scenario.domain,
                        project_id=p.id,
                        skill=p.skill,
                        hours_per_week=p.hours_per_week,
                        start=p.start.astimezone(UTC).date(),
                        end=(p.end.astimezone(UTC) - timedelta(seconds=1)).date(),
                        sensitivity=Sensitivity(p.sensitivity),
                        allowed_regions=p.allowed_regions,
                        status=ProjectStatus.APPROVED,
                    )
                )
        return out

    def volumes(self, index: int, backlog: Mapping[str, int]) -> list[TicketVolumeObserved]:
        """One report per queue for interval ``index``, made at the interval's end."""
        start = self.trace.start + index * self.trace.interval
        end = start + self.trace.interval
        out = []
        for queue_id in sorted(self.catalogue.queues):
            item = self.trace.at(queue_id, index)
            out.append(
                TicketVolumeObserved(
                    id=f"{self.scenario.name}-vol-{queue_id}-{start.isoformat()}",
                    source=SOURCE,
                    time=end,
                    domain=self.scenario.domain,
                    queue_id=queue_id,
                    interval_start=start,
                    interval_minutes=self.trace.interval_minutes,
                    arrivals=item.arrivals,
                    backlog=backlog.get(queue_id, 0),
                    mean_handle_time_s=item.aht_s,
                )
            )
        return out

    def interval_start(self, index: int) -> datetime:
        return self.trace.start + index * timedelta(minutes=self.trace.interval_minutes)
