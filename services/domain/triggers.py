"""When to plan: triggers recorded in event time, debounced in event time.

Triggers: an interval closed (optional, ``replan_on_interval_close``), a queue's forecast moved
more than ``forecast_change_threshold`` (relative, over the next ``forecast_check_periods``)
from the demand the last plan used, a provider response or request timeout, a contract,
roster, queue or project change, and staleness (``max_staleness_minutes`` since the last plan).

Debounce: a plan is due at most once per ``min_replan_minutes`` of event time after the last
plan, except when an **urgent** trigger is pending — a rejection, partial confirmation or
timeout (capacity we counted on will not come) or a contract change (including a suspension:
the provider's capacity must go now). Urgent triggers plan at the point of the timeline where
they are marked.

All of it reads the domain **clock** (the canonical timeline applied so far), never the
watermark: the processor evaluates ``pending`` after every step of the timeline, and the ends
of the debounce and of the staleness window are steps of their own (:meth:`TriggerBook.wake`),
so a plan happens at the same point of event time however the input was batched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.domain.config import PlannerConfig
from services.domain.ids import iso, parse_time


class TriggerKind(StrEnum):
    INTERVAL_CLOSED = "interval_closed"
    FORECAST_CHANGED = "forecast_changed"
    PROVIDER_RESPONSE = "provider_response"
    REQUEST_TIMEOUT = "request_timeout"
    CONTRACT_CHANGED = "contract_changed"
    ROSTER_CHANGED = "roster_changed"
    QUEUE_CHANGED = "queue_changed"
    PROJECT_CHANGED = "project_changed"
    STALENESS = "staleness"


@dataclass(frozen=True, slots=True)
class Trigger:
    """A plan that is due: why, when (watermark ``at``), for which ``as_of``, and its id.

    ``seq`` is the last trigger mark it covers; marks recorded after it stay pending.
    """

    kind: TriggerKind
    reasons: tuple[TriggerKind, ...]
    urgent: bool
    at: datetime
    as_of: datetime
    plan_id: str
    seq: int


@dataclass(slots=True)
class Mark:
    first_at: datetime
    urgent: bool
    seq: int


@dataclass(slots=True)
class TriggerBook:
    """Pending trigger marks (one per kind, so bounded) and what the last plan was."""

    marks: dict[TriggerKind, Mark] = field(default_factory=dict)
    seq: int = 0
    last_plan_at: datetime | None = None
    last_plan_id: str | None = None
    last_demand_as_of: datetime | None = None
    last_demand: dict[str, list[float]] = field(default_factory=dict)

    def mark(self, kind: TriggerKind, at: datetime, *, urgent: bool = False) -> None:
        self.seq += 1
        current = self.marks.get(kind)
        if current is None:
            self.marks[kind] = Mark(at, urgent, self.seq)
        else:
            current.urgent = current.urgent or urgent
            current.seq = self.seq

    def pending(
        self, clock: datetime, cfg: PlannerConfig
    ) -> tuple[tuple[TriggerKind, ...], bool] | None:
        """Reasons to plan now and whether one is urgent, or None (nothing due yet)."""
        last = self.last_plan_at
        stale = last is not None and clock >= last + cfg.max_staleness
        if not self.marks and not stale:
            return None  # the per-step fast path
        kinds = sorted(self.marks)
        urgent = any(m.urgent for m in self.marks.values())
        if stale:
            kinds = sorted({*kinds, TriggerKind.STALENESS})
        debounced = last is None or clock >= last + cfg.min_replan
        if urgent or debounced or stale:
            return tuple(kinds), urgent
        return None

    def wake(self, clock: datetime, cfg: PlannerConfig) -> datetime | None:
        """The next clock time after ``clock`` at which ``pending`` may change by itself: the
        end of the debounce (when marks wait for it) or of the staleness window."""
        last = self.last_plan_at
        if last is None:
            return None
        times = [last + cfg.max_staleness]
        if self.marks:
            times.append(last + cfg.min_replan)
        future = [t for t in times if t > clock]
        return min(future) if future else None

    def primary(self, reasons: tuple[TriggerKind, ...]) -> TriggerKind:
        """The reason to name first: the earliest urgent mark, else the earliest mark."""
        marked = [(m.first_at, k) for k, m in self.marks.items() if k in reasons]
        urgent = [(t, k) for t, k in marked if self.marks[k].urgent]
        pool = urgent or marked
        return min(pool)[1] if pool else reasons[0]

    def consume(self, trigger: Trigger) -> None:
        """The plan (or its fallback) for ``trigger`` is out: clear what it covered."""
        self.marks = {k: m for k, m in self.marks.items() if m.seq > trigger.seq}
        self.last_plan_at = trigger.at
        self.last_plan_id = trigger.plan_id

    def forecast_moved(
        self, queue_id: str, as_of: datetime, values: list[float], cfg: PlannerConfig
    ) -> bool:
        """True when ``values`` (arrivals per period from ``as_of``) differ from what the last
        plan used over the same periods by more than the threshold (relative to the old)."""
        old = self.last_demand.get(queue_id)
        if old is None or self.last_demand_as_of is None:
            return self.last_plan_at is not None  # a queue the last plan did not know
        offset = int((as_of - self.last_demand_as_of) / cfg.period)
        window = old[offset : offset + len(values)]
        if not window:
            return False
        before = sum(window)
        after = sum(values[: len(window)])
        return abs(after - before) > cfg.forecast_change_threshold * max(before, 1.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "marks": [
                [k.value, iso(m.first_at), m.urgent, m.seq] for k, m in sorted(self.marks.items())
            ],
            "seq": self.seq,
            "last_plan_at": None if self.last_plan_at is None else iso(self.last_plan_at),
            "last_plan_id": self.last_plan_id,
            "last_demand_as_of": (
                None if self.last_demand_as_of is None else iso(self.last_demand_as_of)
            ),
            "last_demand": {k: v for k, v in sorted(self.last_demand.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TriggerBook:
        def time(value: Any) -> datetime | None:
            return None if value is None else parse_time(value)

        return cls(
            marks={
                TriggerKind(k): Mark(parse_time(t), bool(u), int(s)) for k, t, u, s in data["marks"]
            },
            seq=int(data["seq"]),
            last_plan_at=time(data["last_plan_at"]),
            last_plan_id=data["last_plan_id"],
            last_demand_as_of=time(data["last_demand_as_of"]),
            last_demand={k: [float(x) for x in v] for k, v in data["last_demand"].items()},
        )
