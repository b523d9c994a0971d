"""Plan → output events: the plan itself, scaling decisions, capacity requests, log records.

Requests go out **only for the difference from what is committed or pending**: a change the
plan marks ``pending`` (it reproduces a requested or accepted step) is not requested again, nor
is a change to the level the line already has at its effective time (committed, accepted or
pending, a pending step at that very time included — a plan that keeps the earlier level where
a pending step would lower it asks to keep it, from that level). Of the new
changes, those whose latest request period is within ``request_window_periods`` are requested
now; later ones are decided (``ScalingDecided``) but left for a later plan to request, since
the forecast will have moved by then. ``respond_by`` = min(effective_at, as_of +
``respond_window_hours``), never after ``effective_at``.

Every output id is derived (uuid5) from the plan id, so replays and retries give the same ids.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from allocator import CapacityChange, Plan
from schemas import (
    AllocationLogged,
    AllocationPlanned,
    CapacityRequested,
    CostBreakdown,
    Direction,
    Explanation,
    LogLevel,
    MarginalValue,
    ProviderLevel,
    ScalingDecided,
    SolverStats,
    SolverStatus,
    SourceKind,
    StreamAllocation,
    StreamService,
    WatermarkEntry,
    capacity_request_id,
)
from schemas.allocation import LogValue
from services.domain.config import PlannerConfig
from services.domain.ids import derive_id, iso
from services.domain.responses import Request
from services.domain.state import DomainState
from services.domain.triggers import Trigger

_TEXT = 2000
_LIST = 100
_STATUS = {
    "optimal": SolverStatus.OPTIMAL,
    "feasible": SolverStatus.FEASIBLE,
    "heuristic": SolverStatus.FEASIBLE,
}


def text(value: str) -> str:
    return value if len(value) <= _TEXT else value[: _TEXT - 1] + "…"


def identifier(value: str) -> str:
    """Coerce a free string (backend names) into the contract's identifier pattern."""
    cleaned = re.sub(r"[^A-Za-z0-9._:-]", "-", value)[:128] or "unknown"
    return cleaned if cleaned[0].isalnum() else "x" + cleaned[:127]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class PlanOutput:
    events: list[AllocationLogged | AllocationPlanned | ScalingDecided | CapacityRequested]
    requests: list[Request]


def planned_event(
    plan: Plan, trigger: Trigger, state: DomainState, cfg: PlannerConfig, notes: tuple[str, ...]
) -> AllocationPlanned:
    """The allocator's plan as the contract's column-oriented ``AllocationPlanned``."""
    horizon = plan.horizon_periods
    cells: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0] * horizon)
    for a in plan.assignments:
        cells[(a.stream_id, a.source_kind, a.source_id)][a.period] += a.fte
    allocations = [
        StreamAllocation(
            stream_id=stream,
            source_kind=SourceKind(kind),
            source_id=source,
            skill=state.catalogue.stream_skill(stream) or "unknown",
            fte=series,
        )
        for (stream, kind, source), series in sorted(cells.items())
    ]
    service: dict[str, list[list[float]]] = {}
    for s in plan.service:
        cols = service.setdefault(
            s.stream_id, [[0.0] * horizon, [0.0] * horizon, [0.0] * horizon, [1.0] * horizon]
        )
        cols[0][s.period], cols[1][s.period] = s.required_fte, s.staffed_fte
        cols[2][s.period], cols[3][s.period] = s.unmet_fte, s.expected_sl
    costs = plan.costs
    stats = plan.stats
    timed = cfg.report_solver_times
    ex = plan.explanation
    return AllocationPlanned(
        id=derive_id("event", trigger.plan_id, "plan"),
        source=cfg.source,
        time=trigger.at,
        domain=state.domain,
        plan_id=trigger.plan_id,
        as_of=plan.as_of,
        period_minutes=plan.period_minutes,
        horizon_periods=horizon,
        policy=identifier(plan.policy),
        allocations=allocations,
        provider_levels=[
            ProviderLevel(provider_id=ln.provider_id, skill=ln.skill, fte=list(ln.levels))
            for ln in plan.provider_levels
        ],
        service=[
            StreamService(
                stream_id=sid,
                required_fte=cols[0],
                staffed_fte=cols[1],
                unmet_fte=cols[2],
                expected_service_level=cols[3],
            )
            for sid, cols in sorted(service.items())
        ],
        cost=CostBreakdown(
            internal=max(0.0, costs.internal),
            providers=max(0.0, costs.providers),
            penalties=max(0.0, costs.penalties),
            churn=max(0.0, costs.churn),
            total=costs.total,
            currency=cfg.currency,
        ),
        solver=SolverStats(
            backend=identifier(stats.backend),
            status=_STATUS.get(stats.status, SolverStatus.FEASIBLE),
            objective=_finite(stats.objective),
            best_bound=_finite(stats.best_bound),
            gap=None if not math.isfinite(stats.gap) else max(0.0, stats.gap),
            solve_seconds=max(0.0, stats.solve_time_s) if timed else 0.0,
            build_seconds=max(0.0, stats.build_time_s) if timed else 0.0,
        ),
        explanation=Explanation(
            binding_constraints=[
                text(f"{b.name} {b.subject} periods={_periods(b.periods)} {b.detail}".strip())
                for b in ex.binding[:_LIST]
            ],
            marginal_values=[
                MarginalValue(resource=text(f"{m.kind}:{m.key}"), saving_per_fte=m.per_fte_horizon)
                for m in ex.marginal_values[:_LIST]
                if math.isfinite(m.per_fte_horizon)
            ],
            relaxations=[
                text(
                    f"{r.slack} {r.subject} {r.amount:.6g} forced_by={','.join(r.forced_by)} "
                    f"periods={_periods(r.periods)} {r.detail}".strip()
                )
                for r in ex.relaxations[:_LIST]
            ],
            summary=text("; ".join([*ex.notes, *notes])),
        ),
        watermark=[
            WatermarkEntry(topic=t, partition=p, offset=o)
            for (t, p), o in sorted(state.offsets.items())
        ],
    )


def _periods(periods: tuple[int, ...]) -> str:
    if not periods:
        return "-"
    if len(periods) > 6:
        return f"{periods[0]}..{periods[-1]}({len(periods)})"
    return ",".join(str(p) for p in periods)


def _level_at(state: DomainState, provider_id: str, skill: str, moment: datetime) -> float:
    """The line's level at ``moment`` as things stand: committed, accepted and still pending
    changes, a change effective at ``moment`` included."""
    line = state.providers.lines.get((provider_id, skill))
    return 0.0 if line is None else line.level_at(moment)


def _reason_text(change: CapacityChange, requested: bool, trigger: Trigger) -> str:
    verb = "raise" if change.direction == "up" else "lower"
    codes = ", ".join(r.value for r in change.reasons) or "plan"
    when = (
        f"request now (latest request period {change.request_by_period})"
        if requested
        else f"request deferred to a later plan (latest request period {change.request_by_period})"
    )
    return text(
        f"{verb} {change.provider_id}/{change.skill} {change.from_fte:g} → {change.to_fte:g} "
        f"FTE from {iso(change.effective_at)} ({codes}); {when}; trigger {trigger.kind.value}"
    )


def decision_events(
    plan: Plan, trigger: Trigger, state: DomainState, cfg: PlannerConfig
) -> PlanOutput:
    """``ScalingDecided`` for every new change, ``CapacityRequested`` for those due now.

    Each request is recorded as outstanding in ``state`` as it is made, so a later step of the
    same line in the same plan reports the right ``current_fte``.
    """
    events: list[AllocationLogged | AllocationPlanned | ScalingDecided | CapacityRequested] = []
    requests: list[Request] = []
    for change in plan.changes:
        key = (change.provider_id, change.skill)
        eff = change.effective_at
        # What the provider will deliver at ``eff`` unless asked otherwise — the level at
        # ``eff``, a pending change effective then included: a plan that keeps the level from
        # before ``eff`` where a pending step lowers it must ask to keep it.
        current = _level_at(state, *key, eff)
        if change.pending or abs(current - change.to_fte) <= 1e-9:
            continue  # requested or committed already
        decision_id = derive_id("decision", trigger.plan_id, *key, iso(eff))
        requested = change.request_by_period <= cfg.request_window_periods
        events.append(
            ScalingDecided(
                id=derive_id("event", decision_id),
                source=cfg.source,
                time=trigger.at,
                domain=state.domain,
                decision_id=decision_id,
                plan_id=trigger.plan_id,
                target_kind=SourceKind.PROVIDER,
                target_id=change.provider_id,
                skill=change.skill,
                direction=Direction.UP if change.direction == "up" else Direction.DOWN,
                from_fte=change.from_fte,
                to_fte=change.to_fte,
                effective_at=eff,
                reason_codes=[r.value for r in change.reasons][:50],
                reason=_reason_text(change, requested, trigger),
            )
        )
        if not requested:
            continue
        request_id = capacity_request_id(trigger.plan_id, change.provider_id, change.skill, eff)
        respond_by = min(eff, trigger.as_of + cfg.respond_window)
        events.append(
            CapacityRequested(
                id=derive_id("event", request_id),
                source=cfg.source,
                time=trigger.at,
                domain=state.domain,
                request_id=request_id,
                provider_id=change.provider_id,
                skill=change.skill,
                current_fte=current,
                target_fte=change.to_fte,
                effective_at=eff,
                respond_by=respond_by,
                plan_id=trigger.plan_id,
                reasons=[r.value for r in change.reasons][:50],
                note=text(f"decision {decision_id}; trigger {trigger.kind.value}"),
            )
        )
        request = Request(
            request_id=request_id,
            provider_id=change.provider_id,
            skill=change.skill,
            plan_id=trigger.plan_id,
            current_fte=current,
            target_fte=change.to_fte,
            effective_at=eff,
            respond_by=respond_by,
            sent_at=trigger.at,
        )
        # recorded at once, so the next change of the same line sees it as its current level
        state.providers.record_request(request)
        requests.append(request)
    return PlanOutput(events, requests)


def log_event(
    state: DomainState,
    cfg: PlannerConfig,
    *,
    key: tuple[str, ...],
    at_time: datetime,
    level: LogLevel,
    kind: str,
    message: str,
    plan_id: str | None = None,
    request_id: str | None = None,
    attrs: dict[str, LogValue] | None = None,
) -> AllocationLogged:
    """An ``AllocationLogged`` record with an id derived from ``key``."""
    return AllocationLogged(
        id=derive_id("log", state.domain, kind, *key),
        source=cfg.source,
        time=at_time,
        domain=state.domain,
        level=level,
        kind=kind,
        message=text(message),
        plan_id=plan_id,
        request_id=request_id,
        attrs=dict(sorted((attrs or {}).items())[:100]),
    )
