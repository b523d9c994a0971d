"""Skill-based routing of the capacity really in place to queues, one interval at a time.

Why a dispatcher of its own: the service outcome must come from the capacity that is actually
there (teams on shift, provider FTE delivered), routed the way a contact-centre or ITSM router
would, and *the same for every policy* — otherwise a policy could win by promising cover in its
plan. Routing never breaks a compliance rule: a source only serves queues it is eligible for
(skill, region, clearance for restricted work, certifications), checked again independently by
:func:`violations`.

Rule: queues with the fewest eligible sources are served first (restricted work gets its
cleared staff before anyone else takes them); each takes from its least flexible eligible
sources up to its need; capacity left over is then shared among eligible queues in proportion
to their need (spare agents still shorten waits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from allocator.domain import RESTRICTED_CLEARANCE, Provider, Team, WorkStream

__all__ = ["Source", "dispatch", "sources_in_place", "violations"]

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Source:
    """Productive FTE of one team, or of one provider contract line, in this interval."""

    id: str
    kind: str  # "team" | "provider"
    skill: str | None  # provider line skill; None for a team (its skills are on the team)
    fte: float
    team: Team | None = None
    provider: Provider | None = None

    @property
    def key(self) -> str:
        return self.id if self.kind == "team" else f"{self.id}/{self.skill}"

    def eligible(self, stream: WorkStream) -> bool:
        if self.team is not None:
            return self.team.can_take(stream)
        assert self.provider is not None
        return self.skill == stream.skill and self.provider.can_take(stream)


def sources_in_place(
    teams: Sequence[Team],
    providers: Mapping[str, Provider],
    lines: Mapping[tuple[str, str], float],
) -> list[Source]:
    """Teams at their productive FTE and every provider line with capacity in place."""
    out = [Source(t.id, "team", None, t.productive_fte(0), team=t) for t in teams]
    for (pid, skill), fte in sorted(lines.items()):
        if fte > _EPS and pid in providers:
            out.append(Source(pid, "provider", skill, fte, provider=providers[pid]))
    return out


def dispatch(
    streams: Sequence[WorkStream], need: Mapping[str, float], sources: Sequence[Source]
) -> dict[tuple[str, str], float]:
    """FTE of each source (by :attr:`Source.key`) on each stream: {(stream id, key): fte}."""
    eligible = {s.id: [src for src in sources if src.eligible(s)] for s in streams}
    flexibility = {src.key: sum(src.eligible(s) for s in streams) for src in sources}
    left = {src.key: src.fte for src in sources}
    out: dict[tuple[str, str], float] = {}
    order = sorted(
        streams, key=lambda s: (len(eligible[s.id]), s.sensitivity != "restricted", s.id)
    )
    for stream in order:
        want = need.get(stream.id, 0.0)
        for src in sorted(eligible[stream.id], key=lambda x: (flexibility[x.key], x.key)):
            if want <= _EPS:
                break
            take = min(want, left[src.key])
            if take > _EPS:
                out[(stream.id, src.key)] = out.get((stream.id, src.key), 0.0) + take
                left[src.key] -= take
                want -= take
    for src in sources:
        spare = left[src.key]
        takers = [s for s in streams if src.eligible(s) and need.get(s.id, 0.0) > _EPS]
        total = sum(need[s.id] for s in takers)
        if spare <= _EPS or total <= _EPS:
            continue
        for s in takers:
            key = (s.id, src.key)
            out[key] = out.get(key, 0.0) + spare * need[s.id] / total
        left[src.key] = 0.0
    return out


def violations(
    streams: Sequence[WorkStream],
    sources: Sequence[Source],
    routed: Mapping[tuple[str, str], float],
) -> list[str]:
    """Independent compliance check of a routing: every assignment's skill, region, clearance
    and certifications, and no source over its capacity. Empty = compliant."""
    by_stream = {s.id: s for s in streams}
    by_key = {src.key: src for src in sources}
    used: dict[str, float] = {}
    out: list[str] = []
    for (sid, key), fte in sorted(routed.items()):
        if fte <= _EPS:
            continue
        stream, src = by_stream[sid], by_key[key]
        used[key] = used.get(key, 0.0) + fte
        if src.team is not None:
            team = src.team
            if stream.skill not in team.skills or not stream.region_allowed(team.region):
                out.append(f"{sid}<-{key}: team lacks skill or region")
            if stream.sensitivity == "restricted" and RESTRICTED_CLEARANCE not in team.clearances:
                out.append(f"{sid}<-{key}: restricted work to a team without clearance")
        else:
            prov = src.provider
            assert prov is not None
            if src.skill != stream.skill:
                out.append(f"{sid}<-{key}: provider line of another skill")
            if not stream.required_certifications <= prov.certifications:
                out.append(f"{sid}<-{key}: provider lacks certifications")
            if not any(stream.region_allowed(r) for r in prov.regions):
                out.append(f"{sid}<-{key}: provider region not allowed")
    for key, total in sorted(used.items()):
        if total > by_key[key].fte + 1e-6:
            out.append(f"{key}: {total:.3f} FTE routed > {by_key[key].fte:.3f} in place")
    return out
