"""Reactive baseline: a fair, tuned KEDA/HPA-style autoscaler for provider capacity.

Why it exists: it is what most teams run today — scale on what is observed now, damped so it
does not flap — and so the baseline users know. It is *not* an :class:`AllocationPolicy` (it
makes no plan over a horizon); it turns the latest observations into scale actions per
provider contract line, with memory across calls held in an explicit, immutable
:class:`ReactiveState` (pure and deterministic: same inputs, same actions, same state).

It is tuned and contract-aware, as a real operator's autoscaler would be:

* **metric** per queue from the last observed interval: answer-within queues need the Erlang
  C/A agents that meet the SLA target for arrivals + backlog (KEDA's target value is tuned to
  the SLA); resolve-within queues need workload / ``target_utilisation`` plus the backlog's work
  spread over ``backlog_drain_hours``; internal teams cover what they can first (restricted
  queues get cleared staff first), the rest is outsourced need;
* **cheapest eligible provider first** (marginal tiered price of the next block), honouring
  skills, regions, certifications and status (suspended providers are scaled to 0 at once);
  lines already engaged are refilled first so load does not hop between providers;
* per line, like HPA's ``behavior``: a **tolerance** band, **stabilisation windows** (scale up
  to the *lowest* recommendation in the up-window, down to the *highest* in the down-window),
  and **rate limits** per ``rate_period_minutes`` (the most permissive of an absolute and a
  percentage policy, HPA's ``selectPolicy: Max``);
* **contracts**: whole blocks, the provider's total within [min, max] when engaged, increases
  effective after the lead time and decreases after the notice (both rounded up to the next
  ``rate_period_minutes`` boundary), one outstanding request per line, and increases held off
  for ``rejection_backoff_hours`` after a rejection, timeout or partial fill.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Literal

import numpy as np

from allocator import staffing
from allocator.domain import RESTRICTED_CLEARANCE, Provider, Team, WorkStream

__all__ = [
    "LineState",
    "QueueObservation",
    "ReactiveConfig",
    "ReactivePolicy",
    "ReactiveState",
    "ScaleAction",
]

LineKey = tuple[str, str]
_EPS = 1e-9
_EPOCH = datetime(2000, 1, 3, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ReactiveConfig:
    """The autoscaler's knobs (defaults tuned on the shipped scenarios)."""

    max_occupancy: float = 0.85
    target_utilisation: float = 0.85
    backlog_drain_hours: float = 2.0
    tolerance: float = 0.1
    scale_up_stabilisation_minutes: float = 0.0
    scale_down_stabilisation_minutes: float = 180.0
    rate_period_minutes: int = 60
    scale_up_max_fte: float = 10.0
    scale_up_max_percent: float = 100.0
    scale_down_max_fte: float = 2.0
    scale_down_max_percent: float = 20.0
    rejection_backoff_hours: float = 24.0

    def __post_init__(self) -> None:
        for name in ("max_occupancy", "target_utilisation"):
            value = float(getattr(self, name))
            if not 0 < value <= 1:
                raise ValueError(f"ReactiveConfig.{name} must be in (0, 1], got {value}")
        if self.rate_period_minutes < 1 or 1440 % self.rate_period_minutes:
            raise ValueError("ReactiveConfig.rate_period_minutes must divide a day")
        for name in (
            "backlog_drain_hours",
            "tolerance",
            "scale_up_stabilisation_minutes",
            "scale_down_stabilisation_minutes",
            "scale_up_max_fte",
            "scale_up_max_percent",
            "scale_down_max_fte",
            "scale_down_max_percent",
            "rejection_backoff_hours",
        ):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"ReactiveConfig.{name} must be >= 0")


@dataclass(frozen=True, slots=True)
class QueueObservation:
    """The latest closed interval of one queue: what a scaler's metric source exposes."""

    stream: WorkStream
    arrivals: float
    aht_s: float
    backlog: float
    interval_minutes: int


@dataclass(frozen=True, slots=True)
class ScaleAction:
    """Move one provider line from ``from_fte`` to ``to_fte`` at ``effective_at``."""

    provider_id: str
    skill: str
    from_fte: float
    to_fte: float
    effective_at: datetime
    reason: str

    @property
    def direction(self) -> Literal["up", "down"]:
        return "up" if self.to_fte > self.from_fte else "down"


@dataclass(frozen=True, slots=True)
class LineState:
    """One provider line as the autoscaler knows it."""

    level: float = 0.0
    """Confirmed or requested level (what the line is heading to)."""
    outstanding: bool = False
    blocked_until: datetime | None = None
    recommendations: tuple[tuple[datetime, float], ...] = ()
    moves: tuple[tuple[datetime, float], ...] = ()
    """(time, level before) of the changes made inside the rate period."""


@dataclass(frozen=True, slots=True)
class ReactiveState:
    """Memory across calls; immutable, so a caller can keep any earlier state."""

    lines: Mapping[LineKey, LineState] = field(default_factory=lambda: MappingProxyType({}))

    def line(self, key: LineKey) -> LineState:
        return self.lines.get(key, LineState())

    def with_line(self, key: LineKey, value: LineState) -> ReactiveState:
        lines = dict(self.lines)
        lines[key] = value
        return ReactiveState(MappingProxyType(dict(sorted(lines.items()))))


def _ceil_time(moment: datetime, minutes: int) -> datetime:
    step = timedelta(minutes=minutes)
    periods = -((_EPOCH - moment) // step)
    return _EPOCH + periods * step


def _blocks_up(x: float, block: float) -> float:
    return math.ceil(x / block - 1e-9) * block


def _blocks_down(x: float, block: float) -> float:
    return math.floor(x / block + 1e-9) * block


@dataclass(frozen=True, slots=True)
class ReactivePolicy:
    """KEDA/HPA-style autoscaler over provider lines (see the module docstring)."""

    config: ReactiveConfig = field(default_factory=ReactiveConfig)

    @property
    def name(self) -> str:
        return "reactive"

    # ---- metric ----------------------------------------------------------------------------

    def queue_need(self, obs: QueueObservation) -> float:
        """Productive FTE the queue needs now (see the module docstring)."""
        cfg = self.config
        interval_s = obs.interval_minutes * 60.0
        sla = obs.stream.sla
        if sla.kind == "answer_within":
            offered = obs.arrivals + obs.backlog
            if offered <= _EPS:
                return 0.0
            assert sla.target_seconds is not None
            agents = staffing.required_agents(
                offered,
                obs.aht_s,
                interval_s,
                sla.target_fraction,
                sla.target_seconds,
                max_occupancy=cfg.max_occupancy,
                patience_s=obs.stream.patience_s,
            )
            return float(np.asarray(agents).item())
        work_h = obs.arrivals * obs.aht_s / 3600.0
        backlog_h = obs.backlog * obs.aht_s / 3600.0
        hours = obs.interval_minutes / 60.0
        drain = max(cfg.backlog_drain_hours, hours)
        return work_h / hours / cfg.target_utilisation + backlog_h / drain

    def outsourced_need(
        self, observations: Sequence[QueueObservation], teams: Sequence[Team]
    ) -> dict[str, float]:
        """Need per queue left after internal teams (most constrained queues first)."""
        left = {t.id: t.productive_fte(0) for t in teams}
        out: dict[str, float] = {}

        def constrained(o: QueueObservation) -> tuple[int, bool, str]:
            n = sum(t.can_take(o.stream) for t in teams)
            return (n, o.stream.sensitivity != "restricted", o.stream.id)

        for obs in sorted(observations, key=constrained):
            want = self.queue_need(obs)
            for team in sorted(teams, key=lambda t: t.id):
                if want <= _EPS or not team.can_take(obs.stream):
                    continue
                if obs.stream.sensitivity == "restricted" and (
                    RESTRICTED_CLEARANCE not in team.clearances
                ):
                    continue
                take = min(want, left[team.id])
                left[team.id] -= take
                want -= take
            out[obs.stream.id] = max(0.0, want)
        return out

    # ---- desired levels ----------------------------------------------------------------------

    def desired_levels(
        self,
        need: Mapping[str, float],
        streams: Sequence[WorkStream],
        providers: Sequence[Provider],
        state: ReactiveState,
        now: datetime,
    ) -> dict[LineKey, float]:
        """Raw desired level per line: queue needs filled cheapest eligible provider first."""
        fill: dict[LineKey, float] = {}
        totals: dict[str, float] = {}
        by_id = {s.id: s for s in streams}

        def cap(p: Provider, skill: str) -> float:
            """A backed-off line may keep its level but not grow."""
            line = state.line((p.id, skill))
            if line.blocked_until is not None and now < line.blocked_until:
                return line.level
            return math.inf

        def price(p: Provider, skill: str) -> tuple[float, int, str]:
            level = fill.get((p.id, skill), 0.0)
            rate = p.contract.rate(skill)
            block = p.contract.block_fte
            marginal = (rate.cost_per_hour(level + block) - rate.cost_per_hour(level)) / block
            engaged = state.line((p.id, skill)).level > _EPS
            return (marginal, 0 if engaged else 1, p.id)

        order = sorted(
            (sid for sid in need if sid in by_id),
            key=lambda sid: (sum(p.can_take(by_id[sid]) for p in providers), sid),
        )
        for sid in order:
            stream = by_id[sid]
            want = need[sid]
            while want > _EPS:
                options = [
                    p
                    for p in providers
                    if p.can_take(stream)
                    and totals.get(p.id, 0.0) + _EPS < p.contract.max_fte
                    and fill.get((p.id, stream.skill), 0.0) + _EPS < cap(p, stream.skill)
                ]
                if not options:
                    break
                best = min(options, key=lambda p: price(p, stream.skill))
                key = (best.id, stream.skill)
                room = min(
                    best.contract.max_fte - totals.get(best.id, 0.0),
                    cap(best, stream.skill) - fill.get(key, 0.0),
                )
                take = min(want, room)
                fill[key] = fill.get(key, 0.0) + take
                totals[best.id] = totals.get(best.id, 0.0) + take
                want -= take
        out: dict[LineKey, float] = {}
        for p in providers:
            for rate in p.contract.rates:
                key = (p.id, rate.skill)
                out[key] = fill.get(key, 0.0)
        return out

    # ---- the HPA loop --------------------------------------------------------------------------

    def decide(
        self,
        now: datetime,
        observations: Sequence[QueueObservation],
        teams: Sequence[Team],
        providers: Sequence[Provider],
        state: ReactiveState,
    ) -> tuple[list[ScaleAction], ReactiveState]:
        """Scale actions for ``now`` and the new state (pure)."""
        cfg = self.config
        need = self.outsourced_need(observations, teams)
        streams = [o.stream for o in observations]
        desired = self.desired_levels(need, streams, providers, state, now)
        proposals: dict[LineKey, tuple[float, str]] = {}
        for prov in sorted(providers, key=lambda p: p.id):
            block = prov.contract.block_fte
            for rate in prov.contract.rates:
                key = (prov.id, rate.skill)
                line = state.line(key)
                raw = _blocks_up(desired.get(key, 0.0), block)
                line = self._remember(line, now, raw)
                state = state.with_line(key, line)
                if not prov.active:
                    if line.level > _EPS and not line.outstanding:
                        proposals[key] = (0.0, "suspended")
                    continue
                if line.outstanding:
                    continue
                target, reason = self._behaviour(line, now, raw, block)
                if line.blocked_until is not None and now < line.blocked_until:
                    target = min(target, line.level)
                if abs(target - line.level) > _EPS:
                    proposals[key] = (target, reason)
        actions: list[ScaleAction] = []
        for prov in sorted(providers, key=lambda p: p.id):
            levels = {}
            for r in prov.contract.rates:
                current = state.line((prov.id, r.skill)).level
                levels[r.skill] = proposals.get((prov.id, r.skill), (current, ""))[0]
            levels = self._fit_contract(prov, levels)
            for rate in prov.contract.rates:
                key = (prov.id, rate.skill)
                line = state.line(key)
                target = levels[rate.skill]
                if abs(target - line.level) <= _EPS or line.outstanding:
                    continue
                up = target > line.level
                reason = proposals.get(key, (0.0, "contract_minimum"))[1]
                if not prov.active:
                    effective = _ceil_time(now, cfg.rate_period_minutes)
                else:
                    hours = (
                        prov.contract.ramp_up_hours if up else prov.contract.ramp_down_notice_hours
                    )
                    effective = _ceil_time(now + timedelta(hours=hours), cfg.rate_period_minutes)
                if effective <= now:
                    effective += timedelta(minutes=cfg.rate_period_minutes)
                actions.append(
                    ScaleAction(prov.id, rate.skill, line.level, target, effective, reason)
                )
                moves = (*line.moves, (now, line.level))
                state = state.with_line(
                    key, replace(line, level=target, outstanding=True, moves=moves)
                )
        return actions, state

    def _remember(self, line: LineState, now: datetime, raw: float) -> LineState:
        cfg = self.config
        keep = timedelta(
            minutes=max(cfg.scale_up_stabilisation_minutes, cfg.scale_down_stabilisation_minutes)
        )
        recs = (*(r for r in line.recommendations if r[0] > now - keep), (now, raw))
        period = timedelta(minutes=cfg.rate_period_minutes)
        moves = tuple(m for m in line.moves if m[0] > now - period)
        return replace(line, recommendations=recs, moves=moves)

    def _behaviour(
        self, line: LineState, now: datetime, raw: float, block: float
    ) -> tuple[float, str]:
        """HPA's tolerance, stabilisation windows and rate-limit policies for one line."""
        cfg = self.config
        current = line.level
        if abs(raw - current) <= cfg.tolerance * max(current, block) + _EPS:
            return current, "within_tolerance"

        def window(minutes: float) -> list[float]:
            since = now - timedelta(minutes=minutes)
            return [v for t, v in line.recommendations if t > since or t == now]

        base = line.moves[0][1] if line.moves else current  # level at the start of the period
        if raw > current:
            target = min(window(cfg.scale_up_stabilisation_minutes))
            limit = max(base + cfg.scale_up_max_fte, base * (1 + cfg.scale_up_max_percent / 100.0))
            target = min(target, _blocks_down(limit, block) if limit >= block else block)
            return (target, "demand_increase") if target > current else (current, "held")
        target = max(window(cfg.scale_down_stabilisation_minutes))
        limit = min(base - cfg.scale_down_max_fte, base * (1 - cfg.scale_down_max_percent / 100.0))
        target = max(target, _blocks_up(max(0.0, limit), block))
        return (target, "demand_decrease") if target < current else (current, "stabilised")

    @staticmethod
    def _fit_contract(prov: Provider, levels: dict[str, float]) -> dict[str, float]:
        """Whole blocks, total within [min, max] when engaged (trim the dearest line first,
        top up the cheapest)."""
        if not prov.active:
            return {s: 0.0 for s in levels}
        c = prov.contract
        out = {s: _blocks_up(v, c.block_fte) for s, v in levels.items()}

        def rate(s: str) -> float:
            return c.rate(s).tiers[0].rate_per_hour

        while sum(out.values()) > c.max_fte + _EPS:
            s = max((s for s in out if out[s] > _EPS), key=lambda s: (rate(s), s))
            out[s] = max(0.0, out[s] - c.block_fte)
        total = sum(out.values())
        if _EPS < total < c.min_fte - _EPS:
            s = min(out, key=lambda s: (rate(s), s))
            out[s] += _blocks_up(c.min_fte - total, c.block_fte)
        return out

    # ---- feedback ----------------------------------------------------------------------------

    def on_answer(
        self,
        state: ReactiveState,
        key: LineKey,
        *,
        confirmed: float | None,
        before: float,
        now: datetime,
        requested: float,
    ) -> ReactiveState:
        """A response (``confirmed`` level) or a timeout/rejection (``confirmed`` None, the
        line stays at ``before``). Short of the request → increases backed off."""
        line = state.line(key)
        level = before if confirmed is None else confirmed
        blocked = line.blocked_until
        if level + _EPS < requested:
            blocked = now + timedelta(hours=self.config.rejection_backoff_hours)
        return state.with_line(
            key, replace(line, level=level, outstanding=False, blocked_until=blocked)
        )
