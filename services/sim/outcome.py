"""Service outcome: the service actually achieved per queue and interval from the capacity
really in place — not from any plan's promise.

Why its own model: a plan states what it *expects* (its ``StreamService``); the evaluation must
score what happens when that plan meets late providers, partial fills, outages and forecast
errors. Each interval, the capacity in place is routed (:mod:`services.sim.dispatch`) and then:

* **answer-within queues** (contact centres): offered = new arrivals + backlog carried in;
  service level from Erlang C (Erlang A when the queue has a patience) at the agents routed
  there; fresh arrivals answered within target = SL × arrivals (carried contacts already waited
  a whole interval, so they never count as met); the contacts the agents cannot handle in the
  interval (offered − agents × interval / AHT, minus abandonments under Erlang A) are carried
  over as backlog — an overloaded interval spills into the next.
* **resolve-within queues** (IT incidents): a fluid FIFO of cohorts (one per interval, its
  work = arrivals × AHT, available from the interval start); the agents burn work hours in
  order; a ticket meets the SLA if its cohort's work is done before arrival + target hours
  (partial credit within a cohort, exact for the fluid model). Unfinished work is the backlog.

Scores (only inside the measured window): SLA attainment = met / arrivals per queue; unmet
FTE-hours = max(0, required − routed) × interval hours, with required from Erlang (answer) or
workload (resolve); penalties priced like the allocator does (per contact below target per
interval; per work hour resolved late); costs of the capacity in place (teams' full roster,
providers' tiered rates on the level in place, churn on every change of that level).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from allocator import staffing
from allocator.domain import Policy, Provider, Team, WorkStream
from services.sim.demand import Interval
from services.sim.dispatch import Source, dispatch, sources_in_place, violations

__all__ = ["Cohort", "QueueScore", "ServiceModel", "Spend"]

_EPS = 1e-9


@dataclass(slots=True)
class Cohort:
    """Incident work that arrived in one interval, still (partly) open."""

    arrived: datetime
    deadline: datetime
    tickets: int
    work_h: float
    left_h: float
    met_h: float = 0.0
    measured: bool = True


@dataclass(slots=True)
class QueueScore:
    """Running totals of one queue over the measured window."""

    target: float
    arrivals: int = 0
    judged: float = 0.0
    """Tickets whose outcome is known (all arrivals for answer-within queues)."""
    met: float = 0.0
    abandoned: float = 0.0
    unmet_fte_hours: float = 0.0
    penalty: float = 0.0
    intervals: int = 0
    intervals_on_target: int = 0
    peak_backlog: float = 0.0

    @property
    def attainment(self) -> float:
        return 1.0 if self.judged <= 0 else self.met / self.judged


@dataclass(slots=True)
class Spend:
    internal: float = 0.0
    providers: float = 0.0
    churn: float = 0.0

    @property
    def total(self) -> float:
        return self.internal + self.providers + self.churn


@dataclass(slots=True)
class ServiceModel:
    """Per-interval outcome of the capacity in place (see the module docstring)."""

    streams: Sequence[WorkStream]
    teams: Sequence[Team]
    providers: Mapping[str, Provider]
    team_cost: Mapping[str, float]
    policy: Policy
    default_aht: Mapping[str, float]
    interval_minutes: int
    scores: dict[str, QueueScore] = field(default_factory=dict)
    spend: Spend = field(default_factory=Spend)
    backlog: dict[str, float] = field(default_factory=dict)
    """Answer-within queues: contacts carried over; resolve-within: derived from cohorts."""
    cohorts: dict[str, list[Cohort]] = field(default_factory=dict)
    last_lines: dict[tuple[str, str], float] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    routed_fte_hours: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in self.streams:
            self.scores[s.id] = QueueScore(s.sla.target_fraction)
            self.backlog[s.id] = 0.0
            self.cohorts[s.id] = []

    @property
    def interval_s(self) -> float:
        return self.interval_minutes * 60.0

    def open_tickets(self, stream_id: str) -> int:
        """Backlog the operations system would report at the interval end (whole tickets)."""
        stream = next(s for s in self.streams if s.id == stream_id)
        if stream.sla.kind == "answer_within":
            return math.ceil(self.backlog[stream_id] - 1e-6)
        return math.ceil(
            sum(c.tickets * c.left_h / c.work_h for c in self.cohorts[stream_id]) - 1e-6
        )

    def step(
        self,
        start: datetime,
        demand: Mapping[str, Interval],
        lines: Mapping[tuple[str, str], float],
        *,
        measure: bool,
    ) -> dict[str, float]:
        """Serve one interval from ``start`` with provider ``lines`` in place; returns the
        agents routed to each queue."""
        hours = self.interval_minutes / 60.0
        need: dict[str, float] = {}
        aht: dict[str, float] = {}
        for s in self.streams:
            item = demand.get(s.id, Interval(0, None))
            aht[s.id] = item.aht_s or self.default_aht[s.id]
            if s.sla.kind == "answer_within":
                offered = item.arrivals + self.backlog[s.id]
                need[s.id] = float(
                    self.required_agents(s, offered, aht[s.id]) if offered > _EPS else 0.0
                )
            else:
                open_h = sum(c.left_h for c in self.cohorts[s.id])
                need[s.id] = (open_h + item.arrivals * aht[s.id] / 3600.0) / hours
        sources = sources_in_place(self.teams, self.providers, lines)
        routed = dispatch(self.streams, need, sources)
        if measure:
            self.violations += [
                f"{start.isoformat()}: {v}" for v in violations(self.streams, sources, routed)
            ]
            self._bill(sources, lines, hours)
        agents = {s.id: 0.0 for s in self.streams}
        for (sid, _), fte in routed.items():
            agents[sid] += fte
        for s in self.streams:
            item = demand.get(s.id, Interval(0, None))
            if s.sla.kind == "answer_within":
                self._answer(s, item.arrivals, aht[s.id], agents[s.id], measure)
            else:
                self._resolve(s, start, item.arrivals, aht[s.id], agents[s.id], measure)
            if measure:
                self.routed_fte_hours[s.id] = (
                    self.routed_fte_hours.get(s.id, 0.0) + agents[s.id] * hours
                )
        return agents

    def required_agents(self, s: WorkStream, offered: float, aht: float) -> int:
        """Erlang agents an answer-within queue needs for ``offered`` contacts this interval."""
        assert s.sla.target_seconds is not None
        return int(
            staffing.required_agents(
                offered,
                aht,
                self.interval_s,
                s.sla.target_fraction,
                s.sla.target_seconds,
                max_occupancy=self.policy.max_occupancy,
                patience_s=s.patience_s,
            )
        )

    def _bill(
        self, sources: Sequence[Source], lines: Mapping[tuple[str, str], float], hours: float
    ) -> None:
        for src in sources:
            if src.team is not None:
                self.spend.internal += (
                    src.team.rostered_fte(0) * self.team_cost.get(src.id, 0.0) * hours
                )
        for (pid, skill), fte in sorted(lines.items()):
            prov = self.providers.get(pid)
            if prov is not None and fte > _EPS and skill in prov.contract.skills:
                self.spend.providers += prov.contract.rate(skill).cost_per_hour(fte) * hours
        keys = set(lines) | set(self.last_lines)
        for key in sorted(keys):
            delta = abs(lines.get(key, 0.0) - self.last_lines.get(key, 0.0))
            self.spend.churn += self.policy.churn_cost_per_fte * delta
        self.last_lines = dict(lines)

    def _answer(
        self, s: WorkStream, arrivals: int, aht: float, agents: float, measure: bool
    ) -> None:
        assert s.sla.target_seconds is not None
        carried = self.backlog[s.id]
        offered = arrivals + carried
        score = self.scores[s.id]
        if offered <= _EPS:
            sl, abandoned = 1.0, 0.0
        else:
            sl = float(
                staffing.service_level(
                    offered, aht, self.interval_s, agents, s.sla.target_seconds, s.patience_s
                )
            )
            abandoned = 0.0
            if s.patience_s is not None:
                abandoned = offered * float(
                    staffing.abandonment_probability(
                        offered, aht, self.interval_s, agents, s.patience_s
                    )
                )
        capacity = agents * self.interval_s / aht
        self.backlog[s.id] = max(0.0, offered - abandoned - capacity)
        if not measure:
            return
        required = self.required_agents(s, offered, aht) if offered > _EPS else 0
        hours = self.interval_minutes / 60.0
        score.arrivals += arrivals
        score.judged += arrivals
        score.met += sl * arrivals
        score.abandoned += abandoned
        score.unmet_fte_hours += max(0.0, required - agents) * hours
        score.penalty += (
            self.policy.penalty_weight(s) * arrivals * max(0.0, s.sla.target_fraction - sl)
        )
        score.intervals += 1
        score.intervals_on_target += sl >= s.sla.target_fraction - 1e-9 or arrivals == 0
        score.peak_backlog = max(score.peak_backlog, self.backlog[s.id])

    def _resolve(
        self,
        s: WorkStream,
        start: datetime,
        arrivals: int,
        aht: float,
        agents: float,
        measure: bool,
    ) -> None:
        assert s.sla.resolve_hours is not None
        hours = self.interval_minutes / 60.0
        cohorts = self.cohorts[s.id]
        if arrivals > 0:
            work = arrivals * aht / 3600.0
            deadline = start + timedelta(hours=s.sla.resolve_hours)
            cohorts.append(Cohort(start, deadline, arrivals, work, work, measured=measure))
        score = self.scores[s.id]
        clock = 0.0  # hours into the interval
        while cohorts and agents > _EPS and clock < hours - 1e-12:
            c = cohorts[0]
            span = min(c.left_h / agents, hours - clock)
            t0 = start + timedelta(hours=clock)
            before = (c.deadline - t0).total_seconds() / 3600.0
            c.met_h += agents * max(0.0, min(span, before))
            c.left_h -= agents * span
            clock += span
            if c.left_h <= 1e-9:
                cohorts.pop(0)
                self._judge(s, c)
        end = start + timedelta(hours=hours)
        if measure:
            workload = arrivals * aht / 3600.0 / hours
            score.arrivals += arrivals
            score.unmet_fte_hours += max(0.0, workload - agents) * hours
            score.intervals += 1
            overdue = any(c.deadline <= end for c in cohorts)
            score.intervals_on_target += not overdue
            score.peak_backlog = max(score.peak_backlog, float(self.open_tickets(s.id)))

    def _judge(self, s: WorkStream, c: Cohort) -> None:
        if not c.measured:
            return
        score = self.scores[s.id]
        met_share = min(1.0, c.met_h / c.work_h) if c.work_h > 0 else 1.0
        score.judged += c.tickets
        score.met += c.tickets * met_share
        score.penalty += self.policy.penalty_weight(s) * c.work_h * (1.0 - met_share)

    def finish(self, end: datetime) -> None:
        """Judge open incident cohorts whose deadline has passed by ``end`` (the rest are still
        within their SLA and left out of the attainment)."""
        for s in self.streams:
            for c in self.cohorts[s.id]:
                if c.deadline <= end:
                    self._judge(s, c)
