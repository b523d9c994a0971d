"""Domain state → :class:`allocator.AllocationProblem` for one ``as_of``.

Rules worth knowing:

* **Streams**: active queues (resolve-within queues as work hours = arrivals × AHT) and
  approved projects that have work inside the horizon. A project whose id collides with a queue
  id becomes ``project:<id>``. A stream whose skill no team and no provider offers is left out
  with a note (one bad queue must not stop a domain's plan).
* **Teams**: rostered FTE per period from the roster version in force at each period start
  (future roster changes inside the horizon count); skills, cost, region and clearances from
  the version in force at the first period that has one.
* **Providers**: the contract in force at ``as_of``. A provider without one but still holding
  capacity is kept as *suspended* with its last contract, so the plan releases that capacity.
* **Levels**: committed = the level in force at ``as_of``; accepted future changes and
  outstanding requests are pending changes (period = first period starting at or after their
  effective time). The allocator plans in whole blocks up to ``max_fte``, so levels are rounded
  *down* to blocks for planning (a provider that confirmed 12 FTE of 5-FTE blocks is planned
  as 10): never plan on capacity that is not there.
* **Caps** (partial, rejected, timed out): see :func:`apply_caps`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from allocator import (
    AllocationProblem,
    Demand,
    InvalidInput,
    PendingChange,
    PlanningRequest,
    Provider,
    ProviderLevel,
    Team,
    WorkStream,
)
from services.domain.catalogue import project_stream, provider_of, queue_stream, team_of
from services.domain.config import PlannerConfig
from services.domain.demand import project_hours
from services.domain.state import DomainState

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class BuiltProblem:
    problem: AllocationProblem
    notes: tuple[str, ...]


def backlog_spread(stream: WorkStream, cfg: PlannerConfig) -> int:
    """Periods a queue's open tickets are spread over as work to do.

    Contacts waiting on an answer-within queue are served now or lost to impatience:
    ``cfg.backlog_periods``. Open incidents of a resolve-within queue are due within the
    resolve target — on average within half of it, for a backlog of evenly aged tickets — so
    their work is spread over that half (at most the horizon). All of it in the first period
    would leave it to the capacity already in place: a provider with a lead time was never
    worth asking for, and the backlog only grew (the it-incidents scenario's security group
    sat at 20 % for every planner).
    """
    if stream.sla.resolve_hours is None:
        return cfg.backlog_periods
    periods = math.ceil(stream.sla.resolve_hours * 30.0 / cfg.period_minutes - 1e-9)
    return max(cfg.backlog_periods, min(cfg.horizon_periods, periods))


def floor_block(value: float, block: float) -> float:
    return math.floor(value / block + 1e-9) * block


def project_stream_id(project_id: str, queue_ids: Mapping[str, object]) -> str:
    return f"project:{project_id}" if project_id in queue_ids else project_id


def apply_caps(
    provider: Provider,
    capped: set[str],
    baselines: Mapping[str, tuple[float, ...]],
    horizon_hours: float,
) -> tuple[Provider, list[str]]:
    """Enforce line caps with what the allocator's contract can express.

    A cap (after a partial confirmation, a rejection or a timeout) is the line's level at that
    moment: the confirmed level, or the level the rejected request would have changed. So a
    capped line may not rise above what is committed or still pending. The allocator bounds a
    provider's *total* FTE, not one line, so:

    * a capped line with nothing committed or pending is removed from the contract (exact);
      if no line is left, the provider is marked suspended so it takes no work;
    * otherwise the provider's ramp-up lead time is set beyond the horizon: no line of it may
      rise above its committed + pending level in this plan, while releases (after notice) stay
      possible. Exact when every remaining line is capped; stricter than needed for uncapped
      lines of the same provider — never looser.
    """
    notes: list[str] = []
    contract = provider.contract
    empty = {s for s in capped if s in contract.skills and max(baselines.get(s, (0.0,))) <= _EPS}
    rates = tuple(r for r in contract.rates if r.skill not in empty)
    if not rates:
        notes.append(f"provider {provider.id} capped at 0 FTE on every line: takes no work")
        return replace(provider, status="suspended"), notes
    if empty:
        notes.append(f"provider {provider.id} capped at 0 FTE for {', '.join(sorted(empty))}")
    held = sorted(s for s in capped if s in contract.skills and s not in empty)
    if not held:
        return replace(provider, contract=replace(contract, rates=rates)), notes
    uncapped = sorted({r.skill for r in rates} - set(held))
    notes.append(
        f"provider {provider.id} capped at its committed + pending level for {', '.join(held)}"
        + (f" (increases of {', '.join(uncapped)} blocked too)" if uncapped else "")
    )
    lead = max(contract.ramp_up_hours, horizon_hours + 1.0)
    return replace(provider, contract=replace(contract, rates=rates, ramp_up_hours=lead)), notes


def _teams(state: DomainState, request: PlanningRequest) -> list[Team]:
    out: list[Team] = []
    for team_id in sorted(state.catalogue.teams):
        series: list[float] = []
        first = None
        for t in range(request.horizon_periods):
            roster = state.catalogue.roster_at(team_id, request.period_start(t))
            series.append(0.0 if roster is None else roster.fte)
            if first is None and roster is not None:
                first = roster
        if first is None:
            continue
        fte = (series[0],) if len(set(series)) == 1 else tuple(series)
        out.append(team_of(first, fte))
    return out


def _levels(
    state: DomainState, request: PlanningRequest, providers: dict[str, Provider], notes: list[str]
) -> dict[tuple[str, str], ProviderLevel]:
    out: dict[tuple[str, str], ProviderLevel] = {}
    as_of = request.as_of
    for (pid, skill), line in sorted(state.providers.lines.items()):
        level = line.committed
        pending: dict[int, float] = {}
        for change in line.changes:
            if change.effective_at <= as_of:
                level = change.fte
            else:
                period = request.period_of(change.effective_at)
                if period < request.horizon_periods:
                    pending[period] = change.fte
        if level <= _EPS and all(v <= _EPS for v in pending.values()):
            continue
        provider = providers.get(pid)
        if provider is None or skill not in provider.contract.skills:
            notes.append(
                f"{pid}/{skill} holds {level:g} FTE but no contract in force offers that line; "
                "left out of the plan"
            )
            continue
        block = provider.contract.block_fte
        top = floor_block(provider.contract.max_fte, block)

        def plan_level(value: float, top: float = top, block: float = block) -> float:
            return floor_block(min(value, top), block)

        out[(pid, skill)] = ProviderLevel(
            pid,
            skill,
            plan_level(level),
            tuple(PendingChange(p, plan_level(v)) for p, v in sorted(pending.items())),
        )
    return out


def _providers(state: DomainState, as_of: datetime, notes: list[str]) -> dict[str, Provider]:
    holding = {
        pid
        for (pid, _), line in state.providers.lines.items()
        if line.committed > _EPS or any(c.fte > _EPS for c in line.changes)
    }
    out: dict[str, Provider] = {}
    for pid in sorted(set(state.catalogue.contracts) | holding):
        contract = state.catalogue.contract_at(pid, as_of)
        if contract is not None:
            out[pid] = provider_of(contract)
        elif pid in holding and (last := state.catalogue.last_contract(pid)) is not None:
            notes.append(
                f"provider {pid} has no contract in force at {as_of.isoformat()}: "
                "its capacity is released"
            )
            out[pid] = replace(provider_of(last), status="suspended")
    return out


def _publication_lag(state: DomainState, cfg: PlannerConfig) -> float:
    """Hours from ``as_of`` until this plan's requests can reach providers, at most.

    A plan starts at ``as_of`` (the clock, rounded up to a period), but the worker publishes
    its requests when its watermark (the newest event time) is up to the allowed lateness
    plus one still-open volume interval ahead. The bound is taken whole: the watermark depends
    on how input was batched and the clock at which a plan is made on how it was delivered,
    and the decisions must depend on neither (only on ``as_of`` and the inputs).
    """
    interval = max((q.interval_minutes for q in state.catalogue.active_queues()), default=0)
    return (cfg.lateness + timedelta(minutes=interval)).total_seconds() / 3600.0


def _from_publication(providers: dict[str, Provider], lag_h: float) -> dict[str, Provider]:
    """Contracts with lead time and notice counted from when the requests reach providers
    (:func:`_publication_lag` after ``as_of``); the contracts themselves are unchanged.

    Counted from ``as_of``, a one-hour lead time gave requests already due when published:
    the provider could not answer in time, the request timed out and the line was capped (the
    storm scenario's agency, for the whole measured week).
    """
    if lag_h <= 0:
        return providers
    return {
        pid: replace(
            p,
            contract=replace(
                p.contract,
                ramp_up_hours=p.contract.ramp_up_hours + lag_h,
                ramp_down_notice_hours=p.contract.ramp_down_notice_hours + lag_h,
            ),
        )
        for pid, p in providers.items()
    }


def _planning_target(stream: WorkStream, margin: float) -> WorkStream:
    """The queue planned to its stricter planning target (``service_target_margin``)."""
    if margin <= 0:
        return stream
    target = stream.sla.target_fraction
    planned = min(0.999, target + margin * (1.0 - target))
    return replace(stream, sla=replace(stream.sla, target_fraction=planned))


def build_problem(state: DomainState, cfg: PlannerConfig, as_of: datetime) -> BuiltProblem:
    """The allocation problem at ``as_of`` and notes on what was left out or constrained.

    Raises :class:`allocator.InvalidInput` when there is nothing to plan (no active queue or
    approved project whose skill some team or provider offers).
    """
    request = PlanningRequest(as_of, cfg.period_minutes, cfg.horizon_periods)
    notes: list[str] = []
    catalogue = state.catalogue

    streams: list[WorkStream] = []
    demand: list[Demand] = []
    for queue in catalogue.active_queues():
        stream = _planning_target(queue_stream(queue), cfg.service_target_margin)
        arrivals = state.demand.arrivals(
            queue.queue_id, as_of, cfg, backlog_periods=backlog_spread(stream, cfg)
        )
        aht = state.demand.aht_s(queue.queue_id, queue.default_handle_time_s)
        streams.append(stream)
        if stream.kind == "queue":
            demand.append(Demand(stream.id, arrivals=tuple(arrivals), aht_s=(aht,)))
        else:
            hours = tuple(a * aht / 3600.0 for a in arrivals)
            demand.append(Demand(stream.id, work_hours=hours))
    for project in catalogue.approved_projects():
        work = project_hours(project, as_of, cfg)
        if sum(work) <= _EPS:
            continue
        sid = project_stream_id(project.project_id, catalogue.queues)
        streams.append(project_stream(project, sid, cfg.project_resolve_hours))
        demand.append(Demand(sid, work_hours=tuple(work)))

    teams = _teams(state, request)
    providers = _providers(state, as_of, notes)
    horizon_hours = cfg.horizon_periods * cfg.period_minutes / 60.0
    for pid, provider in providers.items():
        if provider.active and provider.contract.ramp_up_hours >= horizon_hours:
            notes.append(
                f"provider {pid}: ramp-up lead time {provider.contract.ramp_up_hours:g} h is not "
                f"inside the {horizon_hours:g} h horizon, so no plan can scale it up "
                "(lengthen the horizon to use it)"
            )
    providers = _from_publication(providers, _publication_lag(state, cfg))
    levels = _levels(state, request, providers, notes)

    by_provider: dict[str, set[str]] = {}
    for pid, skill in sorted(state.providers.caps):
        by_provider.setdefault(pid, set()).add(skill)
    for pid, caps in sorted(by_provider.items()):
        if pid not in providers:
            continue
        baselines = {
            s: levels[(pid, s)].baseline(cfg.horizon_periods)
            for s in providers[pid].contract.skills
            if (pid, s) in levels
        }
        providers[pid], cap_notes = apply_caps(providers[pid], caps, baselines, horizon_hours)
        notes.extend(cap_notes)

    for pid, provider in list(providers.items()):
        lines = [lv.baseline(cfg.horizon_periods) for (p, _), lv in levels.items() if p == pid]
        if lines:
            peak = max(sum(v) for v in zip(*lines, strict=True))
            if peak > provider.contract.max_fte + _EPS:
                notes.append(
                    f"provider {pid} holds {peak:g} FTE above its max_fte "
                    f"{provider.contract.max_fte:g}; planned at the held level"
                )
                contract = replace(provider.contract, max_fte=peak)
                providers[pid] = replace(provider, contract=contract)

    offered = {s for team in teams for s in team.skills}
    offered |= {s for p in providers.values() for s in p.contract.skills}
    kept = [s for s in streams if s.skill in offered]
    for s in streams:
        if s.skill not in offered:
            notes.append(f"stream {s.id}: skill {s.skill} is offered by no team or provider")
    if not kept:
        raise InvalidInput(
            f"domain {state.domain}: nothing to plan yet (needs an active queue or approved "
            "project whose skill a team roster or provider contract offers)"
        )
    ids = {s.id for s in kept}
    problem = AllocationProblem(
        request=request,
        streams=tuple(kept),
        teams=tuple(teams),
        providers=tuple(providers.values()),
        demand=tuple(d for d in demand if d.stream_id in ids),
        policy=cfg.policy,
        levels=tuple(lv for (pid, _), lv in levels.items() if pid in providers),
    )
    return BuiltProblem(problem, tuple(notes))
