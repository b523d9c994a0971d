"""The domain's catalogue (queues, projects, team rosters, provider contracts) and its mapping
to allocator domain objects.

Ordering rule, the same for every key: **the newest event time wins** (ties broken by event id,
so the result never depends on arrival order). An older update that arrives later is kept out:

* queues and projects hold one record per id; a retired queue or a cancelled project stays as a
  tombstone, so an older "active" update arriving late cannot resurrect it;
* rosters and contracts carry ``valid_from``, so they are *versioned*: at instant ``x`` the
  record in force is the newest (by event time) version with ``valid_from <= x``. A version is
  dropped once a newer one with an earlier or equal ``valid_from`` shadows it for good, which
  bounds memory. A contract past its ``valid_until`` at ``x`` means no contract at ``x`` (the
  newest statement wins; older versions are not resurrected).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from allocator import (
    Contract,
    InvalidInput,
    Provider,
    RateTier,
    SkillRate,
    Sla,
    Team,
    WorkStream,
)
from schemas import (
    AnswerWithinSla,
    ContractStatus,
    Event,
    ProjectDemandChanged,
    ProjectStatus,
    ProviderContractUpdated,
    QueueDefined,
    QueueStatus,
    TeamCapacityUpdated,
)

E = TypeVar("E", bound=Event)


class CatalogueRejected(ValueError):
    """A catalogue event the allocator could never plan with (e.g. ``max_fte`` 0)."""


def newer(a: Event, b: Event) -> bool:
    """True when ``a`` is newer than ``b``: later event time, then larger id (total order)."""
    return (a.time, a.id) > (b.time, b.id)


def _prune(versions: list[E], valid_from: Callable[[E], datetime]) -> list[E]:
    """Drop versions that can never be in force again; keep order by valid_from."""
    kept = [
        v
        for v in versions
        if not any(w is not v and newer(w, v) and valid_from(w) <= valid_from(v) for w in versions)
    ]
    return sorted(kept, key=lambda v: (valid_from(v), v.time, v.id))


def _in_force(
    versions: Iterable[E], moment: datetime, valid_from: Callable[[E], datetime]
) -> E | None:
    best: E | None = None
    for v in versions:
        if valid_from(v) <= moment and (best is None or newer(v, best)):
            best = v
    return best


def queue_stream(queue: QueueDefined) -> WorkStream:
    """A queue as a work stream. Answer-within SLAs are Erlang-staffed queues; resolve-within
    queues (IT incidents) are planned as work hours (kind ``project``) since Erlang C does not
    model resolution times."""
    common: dict[str, Any] = {
        "skill": queue.skill,
        "sensitivity": queue.sensitivity.value,
        "allowed_regions": frozenset(queue.allowed_regions),
        "core": queue.core,
        "required_certifications": frozenset(queue.required_certifications),
    }
    if isinstance(queue.sla, AnswerWithinSla):
        return WorkStream(
            id=queue.queue_id,
            kind="queue",
            sla=Sla.answer_within(queue.sla.target_fraction, queue.sla.within_seconds),
            patience_s=queue.patience_s,
            **common,
        )
    return WorkStream(
        id=queue.queue_id,
        kind="project",
        sla=Sla.resolve_within(queue.sla.within_hours, queue.sla.target_fraction),
        **common,
    )


def project_stream(
    project: ProjectDemandChanged, stream_id: str, resolve_hours: float
) -> WorkStream:
    return WorkStream(
        id=stream_id,
        kind="project",
        skill=project.skill,
        sla=Sla.resolve_within(resolve_hours),
        sensitivity=project.sensitivity.value,
        allowed_regions=frozenset(project.allowed_regions),
        core=project.core,
        required_certifications=frozenset(project.required_certifications),
    )


def provider_of(contract: ProviderContractUpdated) -> Provider:
    """The allocator's view of a contract (raises InvalidInput when it cannot be planned)."""
    return Provider(
        id=contract.provider_id,
        contract=Contract(
            rates=tuple(
                SkillRate(r.skill, tuple(RateTier(t.from_fte, t.rate_per_hour) for t in r.tiers))
                for r in contract.rates
            ),
            min_fte=contract.min_fte,
            max_fte=contract.max_fte,
            block_fte=contract.fte_block,
            ramp_up_hours=contract.ramp_up_lead_time_hours,
            ramp_down_notice_hours=contract.ramp_down_notice_hours,
        ),
        regions=frozenset(contract.regions),
        certifications=frozenset(contract.certifications),
        quality_score=contract.quality_score,
        status="suspended" if contract.status is ContractStatus.SUSPENDED else "active",
    )


def team_of(roster: TeamCapacityUpdated, fte: tuple[float, ...]) -> Team:
    return Team(
        id=roster.team_id,
        skills=frozenset(roster.skills),
        fte_available=fte,
        shrinkage=roster.shrinkage,
        cost_per_hour=roster.cost_per_hour,
        region=roster.region,
        clearances=frozenset(roster.clearances),
    )


def _team_from(v: TeamCapacityUpdated) -> datetime:
    return v.valid_from


def _contract_from(v: ProviderContractUpdated) -> datetime:
    return v.valid_from


@dataclass(slots=True)
class Catalogue:
    """Latest-wins catalogue state; JSON-able through :meth:`to_json` / :meth:`from_json`."""

    queues: dict[str, QueueDefined] = field(default_factory=dict)
    projects: dict[str, ProjectDemandChanged] = field(default_factory=dict)
    teams: dict[str, list[TeamCapacityUpdated]] = field(default_factory=dict)
    contracts: dict[str, list[ProviderContractUpdated]] = field(default_factory=dict)

    # ---- updates ---------------------------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Apply one catalogue event; True when it changed what is in force (or may later).

        Raises :class:`CatalogueRejected` for data the allocator rejects, so it is
        dead-lettered with the reason instead of breaking every later plan of the domain.
        """
        if isinstance(event, QueueDefined):
            self._check(lambda: queue_stream(event))
            return self._upsert(self.queues, event.queue_id, event)
        if isinstance(event, ProjectDemandChanged):
            return self._upsert(self.projects, event.project_id, event)
        if isinstance(event, TeamCapacityUpdated):
            self._check(lambda: team_of(event, (event.fte,)))
            return self._version(self.teams, event.team_id, event, _team_from)
        if isinstance(event, ProviderContractUpdated):
            self._check(lambda: provider_of(event))
            return self._version(self.contracts, event.provider_id, event, _contract_from)
        raise TypeError(f"not a catalogue event: {type(event).__name__}")

    @staticmethod
    def _check(build: Callable[[], object]) -> None:
        try:
            build()
        except InvalidInput as exc:
            raise CatalogueRejected(str(exc)) from exc

    @staticmethod
    def _upsert(table: dict[str, E], key: str, event: E) -> bool:
        current = table.get(key)
        if current is not None and not newer(event, current):
            return False
        table[key] = event
        return True

    @staticmethod
    def _version(
        table: dict[str, list[E]], key: str, event: E, valid_from: Callable[[E], datetime]
    ) -> bool:
        versions = table.get(key, [])
        if any(v.id == event.id for v in versions):
            return False
        pruned = _prune([*versions, event], valid_from)
        table[key] = pruned
        return any(v is event for v in pruned)

    # ---- what is in force ------------------------------------------------------------------

    def active_queues(self) -> list[QueueDefined]:
        return [q for _, q in sorted(self.queues.items()) if q.status is QueueStatus.ACTIVE]

    def approved_projects(self) -> list[ProjectDemandChanged]:
        return [p for _, p in sorted(self.projects.items()) if p.status is ProjectStatus.APPROVED]

    def roster_at(self, team_id: str, moment: datetime) -> TeamCapacityUpdated | None:
        return _in_force(self.teams.get(team_id, []), moment, _team_from)

    def contract_at(self, provider_id: str, moment: datetime) -> ProviderContractUpdated | None:
        """The contract in force at ``moment``, or None (not yet valid, expired, or unknown)."""
        found = _in_force(self.contracts.get(provider_id, []), moment, _contract_from)
        if found is None or (found.valid_until is not None and moment >= found.valid_until):
            return None
        return found

    def last_contract(self, provider_id: str) -> ProviderContractUpdated | None:
        """The newest contract version known, in force or not (to release expired lines)."""
        versions = self.contracts.get(provider_id, [])
        best: ProviderContractUpdated | None = None
        for v in versions:
            if best is None or newer(v, best):
                best = v
        return best

    def stream_skill(self, stream_id: str) -> str | None:
        """Skill of a stream id as produced by :mod:`services.domain.problem`."""
        if stream_id in self.queues:
            return self.queues[stream_id].skill
        project_id = stream_id.removeprefix("project:")
        if project_id in self.projects:
            return self.projects[project_id].skill
        return None

    # ---- state -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "queues": [q.model_dump(mode="json") for _, q in sorted(self.queues.items())],
            "projects": [p.model_dump(mode="json") for _, p in sorted(self.projects.items())],
            "teams": [
                v.model_dump(mode="json") for _, vs in sorted(self.teams.items()) for v in vs
            ],
            "contracts": [
                v.model_dump(mode="json") for _, vs in sorted(self.contracts.items()) for v in vs
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalogue:
        out = cls()
        for raw in data["queues"]:
            q = QueueDefined.model_validate(raw)
            out.queues[q.queue_id] = q
        for raw in data["projects"]:
            p = ProjectDemandChanged.model_validate(raw)
            out.projects[p.project_id] = p
        for raw in data["teams"]:
            t = TeamCapacityUpdated.model_validate(raw)
            out.teams.setdefault(t.team_id, []).append(t)
        for raw in data["contracts"]:
            c = ProviderContractUpdated.model_validate(raw)
            out.contracts.setdefault(c.provider_id, []).append(c)
        return out
