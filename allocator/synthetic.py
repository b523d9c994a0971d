"""Deterministic synthetic allocation problems for benchmarks and property tests.

Why synthetic: the benchmark sizes of the issue (S, M, L) need many streams, providers and
teams with realistic contract terms, which no public data set has. Everything is drawn from one
``numpy`` generator seeded by ``seed``, in a fixed order, so the same arguments always give the
same :class:`~allocator.domain.AllocationProblem` (the bench and the tests rely on this).

Realism, in short: hourly periods from a Monday 00:00 UTC with a two-hump daily arrival profile
and quieter weekends; AHT 3-15 min; queues with answer-within SLAs (some with patience, i.e.
Erlang A), projects with resolve-within SLAs and business-hours work; restricted and core
streams, allowed regions and certifications; internal teams on day-heavy rosters covering
roughly half of the peak; providers offshore (cheap) and onshore (certified, dearer) with
tiered rates, min/max FTE, blocks, lead times and notice; committed levels with pending
changes; one suspended provider; a vendor-concentration cap and a budget; in-house hours priced
as assigned (``Policy.internal_cost="assigned"``: idle staff have other paid work).

``binding_contracts=True`` makes the contract terms shape the answer: big blocks, real minimums,
volume-discount tiers and day-long lead times, so a planner that ignores them pays for it.
``binding_contracts=False`` gives loose terms (1-FTE blocks, no minimums, short lead times).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from allocator.domain import (
    AllocationProblem,
    Contract,
    Demand,
    PendingChange,
    PlanningRequest,
    Policy,
    Provider,
    ProviderLevel,
    RateTier,
    SkillRate,
    Sla,
    Team,
    WorkStream,
)

AS_OF = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
"""A Monday, so period 0 is midnight and the daily and weekly profiles line up."""

SizeName = Literal["S", "M", "L"]
REGIONS = ("EU", "US", "IN", "PH")
ONSHORE = ("EU", "US")
CERT = "iso27001"


@dataclass(frozen=True, slots=True)
class Size:
    """Counts of an instance: streams, providers, teams, hourly periods."""

    streams: int
    providers: int
    teams: int
    periods: int

    def __post_init__(self) -> None:
        if min(self.streams, self.providers, self.teams, self.periods) < 1:
            raise ValueError(f"every count must be >= 1, got {self}")


SIZES: dict[SizeName, Size] = {
    "S": Size(10, 3, 4, 24),
    "M": Size(50, 12, 8, 168),
    "L": Size(200, 40, 30, 168),
}


def _daily_profile(periods: int) -> np.ndarray:
    """Arrival intensity per hourly period: two daytime humps, low nights, quieter weekends."""
    hours = np.arange(periods)
    hod = hours % 24
    dow = (hours // 24) % 7
    shape = (
        0.08
        + 1.0 * np.exp(-0.5 * ((hod - 10.5) / 1.8) ** 2)
        + 0.8 * np.exp(-0.5 * ((hod - 15.0) / 2.0) ** 2)
        + 0.25 * np.exp(-0.5 * ((hod - 20.0) / 1.5) ** 2)
    )
    weekend = np.where(dow >= 5, 0.45, 1.0)
    return np.asarray(shape * weekend / shape.max(), dtype=np.float64)


def _roster_profile(periods: int) -> np.ndarray:
    """Share of a team on shift per hour: weekday days full, evenings thin, nights a skeleton."""
    hours = np.arange(periods)
    hod = hours % 24
    dow = (hours // 24) % 7
    day = np.where((hod >= 8) & (hod < 18), 1.0, np.where((hod >= 6) & (hod < 22), 0.45, 0.1))
    weekend = np.where(dow >= 5, 0.35, 1.0)
    return np.asarray(day * weekend, dtype=np.float64)


def _round(x: float, step: float = 0.5) -> float:
    return float(round(x / step) * step)


def generate(
    size: SizeName | Size = "S",
    seed: int = 0,
    binding_contracts: bool = True,
) -> AllocationProblem:
    """A seeded, realistic allocation problem of the given size (see the module docstring)."""
    dims = SIZES[size] if isinstance(size, str) else size
    rng = np.random.default_rng(seed)
    n_periods = dims.periods
    n_skills = max(2, min(dims.streams, round(dims.streams / 7) + 2))
    skills = [f"sk{k:02d}" for k in range(n_skills)]
    profile = _daily_profile(n_periods)
    roster = _roster_profile(n_periods)

    # -- streams and demand -------------------------------------------------------------------
    streams: list[WorkStream] = []
    demand: list[Demand] = []
    load_by_skill = np.zeros((n_skills, n_periods))
    restricted_skills: set[str] = set()
    for i in range(dims.streams):
        k = i % n_skills if i < n_skills else int(rng.integers(n_skills))
        skill = skills[k]
        project = rng.random() < 0.2
        u = rng.random()
        sensitivity: Literal["public", "internal", "restricted"] = (
            "restricted" if u < 0.15 else "internal" if u < 0.65 else "public"
        )
        regions = (
            frozenset(ONSHORE)
            if sensitivity == "restricted" or rng.random() < 0.15
            else frozenset[str]()
        )
        certs = frozenset({CERT}) if sensitivity == "restricted" else frozenset()
        if sensitivity == "restricted":
            restricted_skills.add(skill)
        core = bool(rng.random() < 0.15)
        jitter = 1.0 + 0.15 * rng.standard_normal(n_periods)
        if project:
            sid = f"p{i:03d}"
            hours_per_h = float(rng.uniform(1.0, 6.0))
            business = (roster >= 1.0).astype(np.float64)
            work = np.maximum(0.0, hours_per_h * business * jitter)
            streams.append(
                WorkStream(
                    sid,
                    "project",
                    skill,
                    Sla.resolve_within(float(rng.choice([24.0, 40.0, 80.0]))),
                    sensitivity,
                    regions,
                    core,
                    certs,
                )
            )
            demand.append(Demand(sid, work_hours=tuple(_round(w, 0.25) for w in work)))
            load_by_skill[k] += work
        else:
            sid = f"q{i:03d}"
            aht = float(rng.uniform(180.0, 900.0))
            peak_agents = float(rng.uniform(2.0, 14.0))
            peak_rate = peak_agents * 3600.0 / aht
            arrivals = np.maximum(0.0, np.round(peak_rate * profile * jitter))
            sla = Sla.answer_within(
                float(rng.choice([0.8, 0.8, 0.9])), float(rng.choice([20.0, 30.0, 60.0]))
            )
            patience = float(rng.uniform(60.0, 300.0)) if rng.random() < 0.2 else None
            streams.append(
                WorkStream(
                    sid,
                    "queue",
                    skill,
                    sla,
                    sensitivity,
                    regions,
                    core,
                    certs,
                    patience,
                )
            )
            demand.append(Demand(sid, arrivals=tuple(float(a) for a in arrivals), aht_s=(aht,)))
            load_by_skill[k] += arrivals * aht / 3600.0 / 0.8

    # -- internal teams -----------------------------------------------------------------------
    peak_load = load_by_skill.max(axis=1)
    teams: list[Team] = []
    team_skills: set[str] = set()
    cleared_skills: set[str] = set()
    for j in range(dims.teams):
        n_sk = int(rng.integers(2, min(4, n_skills) + 1))
        own = {skills[j % n_skills]} | {
            skills[int(s)] for s in rng.choice(n_skills, n_sk, replace=False)
        }
        shrink = float(rng.uniform(0.25, 0.35))
        share = float(np.mean([peak_load[skills.index(s)] for s in own]))
        size_fte = max(1.0, 0.5 * share * len(own) / max(1.0, dims.teams / n_skills * 2.0))
        size_fte /= 1.0 - shrink
        fte = tuple(_round(size_fte * r) for r in roster)
        clear = frozenset({"restricted"}) if rng.random() < 0.5 else frozenset()
        region = str(rng.choice(ONSHORE))
        teams.append(
            Team(
                f"t{j:02d}",
                frozenset(own),
                fte,
                shrink,
                float(rng.uniform(28.0, 40.0)),
                region,
                clear,
            )
        )
        team_skills |= own
        if clear:
            cleared_skills |= own

    # -- providers ----------------------------------------------------------------------------
    providers: list[Provider] = []
    levels: list[ProviderLevel] = []
    suspended = int(rng.integers(dims.providers - 1)) if dims.providers >= 2 else -1
    offered: set[str] = set()
    certified_offered: set[str] = set()
    for j in range(dims.providers):
        pid = f"v{j:02d}"
        offshore = rng.random() < 0.5
        region = str(rng.choice(("IN", "PH"))) if offshore else str(rng.choice(ONSHORE))
        certified = not offshore and rng.random() < 0.7
        n_sk = int(rng.integers(2, min(6, n_skills) + 1))
        own = {skills[(j * 3) % n_skills]} | {
            skills[int(s)] for s in rng.choice(n_skills, n_sk, replace=False)
        }
        if j == dims.providers - 1:
            # Make sure every skill is offered by someone outside, certified where restricted.
            own |= set(skills) - offered
            region, offshore, certified = "EU", False, True
        base_rate = float(rng.uniform(18.0, 26.0) if offshore else rng.uniform(34.0, 52.0))
        rates: list[SkillRate] = []
        for sk in sorted(own):
            r0 = round(base_rate * float(rng.uniform(0.9, 1.15)), 2)
            if binding_contracts and rng.random() < 0.7:
                cut = float(rng.choice([4.0, 6.0, 10.0]))
                factor = float(rng.uniform(0.75, 0.9)) if rng.random() < 0.75 else 1.15
                rates.append(
                    SkillRate(sk, (RateTier(0.0, r0), RateTier(cut, round(r0 * factor, 2))))
                )
            else:
                rates.append(SkillRate(sk, (RateTier(0.0, r0),)))
        if binding_contracts:
            block = float(rng.choice([2.0, 3.0, 5.0]) if offshore else rng.choice([1.0, 2.0]))
            min_fte = float(rng.choice([4.0, 6.0, 10.0]) if offshore else rng.choice([0.0, 2.0]))
            ramp = float(rng.choice([24.0, 48.0, 72.0]) if offshore else rng.choice([4.0, 12.0]))
            notice = float(rng.choice([24.0, 48.0]) if offshore else rng.choice([8.0, 24.0]))
        else:
            block, min_fte = 1.0, 0.0
            ramp = float(rng.choice([0.0, 1.0, 2.0]))
            notice = float(rng.choice([0.0, 1.0, 2.0]))
        max_fte = float(block * math.ceil(rng.uniform(20.0, 80.0) / block))
        min_fte = float(block * math.ceil(min_fte / block))
        contract = Contract(tuple(rates), min_fte, max_fte, block, ramp, notice)
        status: Literal["active", "suspended"] = "suspended" if j == suspended else "active"
        providers.append(
            Provider(
                pid,
                contract,
                frozenset({region}),
                frozenset({CERT}) if certified else frozenset(),
                round(float(rng.uniform(0.7, 1.0)), 3),
                status,
            )
        )
        if status == "active":
            offered |= own
            if certified and region in ONSHORE:
                certified_offered |= own
        # Committed levels on up to two lines, some with a pending change; the baseline of the
        # provider stays within its maximum (the domain rejects anything else).
        room = max_fte
        for sk in sorted(own)[: int(rng.integers(0, 3))]:
            top = int(min(room, 12.0) // block)
            committed = block * int(rng.integers(0, top + 1))
            if j == suspended and top >= 1:
                committed = max(committed, block)
            pending: tuple[PendingChange, ...] = ()
            peak = committed
            if rng.random() < 0.5 and n_periods > 2:
                at = int(rng.integers(1, max(2, min(n_periods, 30))))
                to = block * int(rng.integers(0, top + 1))
                pending = (PendingChange(at, float(to)),)
                peak = max(peak, to)
            room -= peak
            levels.append(ProviderLevel(pid, sk, float(committed), pending))

    # -- policy ---------------------------------------------------------------------------------
    active = sum(p.active for p in providers)
    cap = 1.0 if active <= 1 else min(1.0, max(0.35, 2.5 / active))
    total_fte_hours = float(load_by_skill.sum())
    # In-house hours have other paid work to go to (Policy.internal_cost "assigned"): each one
    # used here costs its wage, so in-house vs outsourced is a real trade-off in every period
    # and the contract terms bind (the benchmark's point). Under "rostered" the teams' idle
    # time is free, providers only fill what the teams cannot, and the instance is another one.
    policy = Policy(
        internal_cost="assigned",
        core_in_house_share=0.6,
        vendor_concentration_cap=round(cap, 3),
        budget_cap=round(total_fte_hours * 60.0, 0),
        churn_cost_per_fte=25.0,
        sla_penalty_per_contact=150.0,
        unmet_work_penalty_per_hour=150.0,
        budget_overrun_penalty=1.5,
        quality_penalty_per_fte_hour=4.0,
        max_occupancy=0.85,
    )
    return AllocationProblem(
        PlanningRequest(AS_OF, 60, n_periods),
        tuple(streams),
        tuple(teams),
        tuple(providers),
        tuple(demand),
        policy,
        tuple(levels),
    )
