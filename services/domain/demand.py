"""Demand: event-time interval windows per queue, interval close, forecasts, AHT, backlog, and
project work spread over the horizon.

Rules (event time only; observations reach this module in the processor's canonical order):

* an observation upserts its (queue, interval): the newest event time wins;
* a report made more than ``interval_grace`` after its interval's end is **late** and refused
  with that reason (so is one for an interval before the queue's last closed one) — decided by
  the report's own time, never by when it arrived;
* an interval **closes** when the domain clock reaches ``interval_end + close_delay`` (grace +
  allowed lateness: the moment every report within the grace is final); closed intervals are
  fed, in order, to the queue's forecaster (intervals never observed between two closed ones
  are zero arrivals — the forecaster fills them);
* AHT is an exponentially smoothed mean of the observed mean handle times (the queue's default
  until one is seen); the backlog is the one reported for the last closed interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from allocator.forecast import (
    Forecaster,
    forecaster_from_state,
    intervals_per_day,
    make_forecaster,
)
from schemas import ProjectDemandChanged, TicketVolumeObserved
from services.domain.config import PlannerConfig
from services.domain.ids import iso, parse_time

#: Intervals whose window arithmetic :class:`DemandBook` keeps (a week of 5-minute ones).
_WINDOWS_KEPT = 4096


class LateEvent(ValueError):
    """The report came after its interval's grace; ``reason`` says by how much."""


class IntervalMismatch(ValueError):
    """The queue already reports in intervals of another length."""


@dataclass(slots=True)
class Observation:
    arrivals: int
    backlog: int
    aht_s: float | None
    time: datetime
    event_id: str

    def newer_than(self, other: Observation) -> bool:
        return (self.time, self.event_id) > (other.time, other.event_id)


@dataclass(slots=True)
class QueueDemand:
    """One queue's open windows, forecaster and smoothed statistics."""

    interval_minutes: int
    forecaster: Forecaster
    open: dict[int, Observation] = field(default_factory=dict)
    last_closed: int | None = None
    aht_s: float | None = None
    backlog: int = 0

    @property
    def interval(self) -> timedelta:
        return timedelta(minutes=self.interval_minutes)


@dataclass(slots=True)
class DemandBook:
    """All queues of a domain. ``next_close`` lets the per-event path skip close scans."""

    queues: dict[str, QueueDemand] = field(default_factory=dict)
    next_close: datetime | None = None
    #: Not state: (UTC interval start, minutes) → (latest on-time report time, interval index,
    #: close time) under the config ``_windows_of``. Every queue reports the same intervals and
    #: this datetime arithmetic was the largest part of a report's cost, so each interval's is
    #: worked out once (bounded; dropped on a config change and on restore).
    _windows: dict[tuple[datetime, int], tuple[datetime, int, datetime]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _windows_of: PlannerConfig | None = field(default=None, repr=False, compare=False)

    # ---- ingest ----------------------------------------------------------------------------

    def observe(self, event: TicketVolumeObserved, cfg: PlannerConfig) -> None:
        """Upsert one observation; raises :class:`LateEvent` or :class:`IntervalMismatch`.

        Lateness depends on the event alone (report time vs interval end + grace), so the same
        report is accepted or refused whatever else arrived around it.
        """
        start = event.interval_start
        minutes = event.interval_minutes
        on_time_until, index, close_at = self._window(start, minutes, cfg)
        if event.time > on_time_until:
            end = start + _MINUTE * minutes  # = event.interval_end
            grace = cfg.interval_grace
            raise LateEvent(
                f"report at {iso(event.time)} of interval {iso(start)}..{iso(end)} "
                f"of queue {event.queue_id} is more than the interval grace "
                f"({_minutes(grace)} min) after the interval end; the interval closed when "
                f"{iso(end + grace)} became final"
            )
        queue = self.queues.get(event.queue_id)
        if queue is None:
            per_day = intervals_per_day(minutes * 60)
            queue = QueueDemand(minutes, make_forecaster(per_day, cfg.forecast_method))
            self.queues[event.queue_id] = queue
        elif queue.interval_minutes != minutes:
            raise IntervalMismatch(
                f"queue {event.queue_id} reports {queue.interval_minutes}-minute intervals; "
                f"got a {minutes}-minute one"
            )
        if queue.last_closed is not None and index <= queue.last_closed:
            raise LateEvent(
                f"interval {iso(start)} of queue {event.queue_id} is before the last closed "
                f"interval of the queue (interval grace {_minutes(cfg.interval_grace)} min)"
            )
        current = queue.open.get(index)
        if current is None or (event.time, event.id) > (current.time, current.event_id):
            queue.open[index] = Observation(
                event.arrivals, event.backlog, event.mean_handle_time_s, event.time, event.id
            )
        if self.next_close is None or close_at < self.next_close:
            self.next_close = close_at

    def _window(
        self, start: datetime, minutes: int, cfg: PlannerConfig
    ) -> tuple[datetime, int, datetime]:
        """(latest on-time report time, interval index, close time) of an interval."""
        if cfg is not self._windows_of:
            self._windows.clear()
            self._windows_of = cfg
        key = (start, minutes)
        # equal starts in other offsets would share another's tzinfo: only UTC ones are kept
        kept = start.tzinfo is UTC
        window = self._windows.get(key) if kept else None
        if window is not None:
            return window
        end = start + _MINUTE * minutes
        # = interval_index(start, cfg.origin, minutes * 60): exact floor on microseconds
        index = ((start - cfg.origin) // _MICROSECOND) // (minutes * 60_000_000)
        window = (end + cfg.interval_grace, index, end + cfg.close_delay)
        if kept:
            if len(self._windows) >= _WINDOWS_KEPT:
                self._windows.clear()
            self._windows[key] = window
        return window

    def close(self, clock: datetime, cfg: PlannerConfig) -> list[str]:
        """Close every interval whose end + close delay <= clock; the queues that closed one."""
        if self.next_close is None or clock < self.next_close:
            return []
        closed: list[str] = []
        # Compared in integer µs (exact); the datetime of the earliest one left is built at
        # the end, as ``origin + (index + 1) * interval + delay`` (its offset is the origin's).
        origin_us = (cfg.origin - _EPOCH) // _MICROSECOND
        delay_us = cfg.close_delay // _MICROSECOND
        clock_us = (clock - _EPOCH) // _MICROSECOND
        next_us: int | None = None
        next_at: tuple[int, int] = (0, 0)
        for queue_id in sorted(self.queues):
            queue = self.queues[queue_id]
            if not queue.open:
                continue
            seconds = queue.interval_minutes * 60
            size_us = seconds * 1_000_000
            did = False
            for index in sorted(queue.open):
                close_us = origin_us + (index + 1) * size_us + delay_us
                if close_us > clock_us:
                    if next_us is None or close_us < next_us:
                        next_us, next_at = close_us, (index, seconds)
                    break
                self._close_one(queue, index, queue.open.pop(index), cfg)
                did = True
            if did:
                closed.append(queue_id)
        if next_us is None:
            self.next_close = None
        else:
            index, seconds = next_at
            step = (index + 1) * timedelta(seconds=seconds)
            self.next_close = cfg.origin + step + cfg.close_delay
        return closed

    @staticmethod
    def _close_one(queue: QueueDemand, index: int, obs: Observation, cfg: PlannerConfig) -> None:
        queue.forecaster.update(index, float(obs.arrivals))
        queue.last_closed = index
        queue.backlog = obs.backlog
        if obs.aht_s is not None:
            if queue.aht_s is None:
                queue.aht_s = obs.aht_s
            else:
                queue.aht_s += cfg.aht_alpha * (obs.aht_s - queue.aht_s)

    # ---- planning inputs -------------------------------------------------------------------

    def arrivals(
        self,
        queue_id: str,
        as_of: datetime,
        cfg: PlannerConfig,
        periods: int | None = None,
        *,
        with_backlog: bool = True,
        backlog_periods: int | None = None,
    ) -> list[float]:
        """Forecast arrivals per planning period from ``as_of`` (+ backlog, see the rule).

        Intervals are mapped to periods by overlap (arrivals uniform within an interval), so any
        interval length works with any period length. The backlog at the last closed interval
        is added evenly over the first ``backlog_periods`` periods (default
        ``cfg.backlog_periods``): those tickets are open work on top of new arrivals.
        """
        n = cfg.horizon_periods if periods is None else periods
        queue = self.queues.get(queue_id)
        if queue is None or queue.last_closed is None:
            return [0.0] * n
        size = queue.interval_minutes
        start = _minutes(as_of - cfg.origin)
        end = start + n * cfg.period_minutes
        first = max(start // size, queue.last_closed + 1)
        last = -(-end // size)
        values = queue.forecaster.forecast(first, max(0, last - first))
        edges = np.arange(first, last + 1, dtype=np.float64) * size
        cumulative = np.concatenate(([0.0], np.cumsum(values)))
        bounds = start + np.arange(n + 1, dtype=np.float64) * cfg.period_minutes
        out = np.maximum(np.diff(np.interp(bounds, edges, cumulative)), 0.0)
        if with_backlog and queue.backlog > 0:
            k = max(1, min(backlog_periods or cfg.backlog_periods, n))
            out[:k] += queue.backlog / k
        return [float(v) for v in out]

    def aht_s(self, queue_id: str, default: float) -> float:
        queue = self.queues.get(queue_id)
        return default if queue is None or queue.aht_s is None else queue.aht_s

    # ---- state -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "next_close": None if self.next_close is None else iso(self.next_close),
            "queues": {
                qid: {
                    "interval_minutes": q.interval_minutes,
                    "forecaster": q.forecaster.to_state(),
                    "open": [
                        [i, o.arrivals, o.backlog, o.aht_s, iso(o.time), o.event_id]
                        for i, o in sorted(q.open.items())
                    ],
                    "last_closed": q.last_closed,
                    "aht_s": q.aht_s,
                    "backlog": q.backlog,
                }
                for qid, q in sorted(self.queues.items())
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DemandBook:
        book = cls(
            next_close=None if data["next_close"] is None else parse_time(data["next_close"])
        )
        for qid, raw in data["queues"].items():
            book.queues[qid] = QueueDemand(
                interval_minutes=int(raw["interval_minutes"]),
                forecaster=forecaster_from_state(raw["forecaster"]),
                open={
                    int(i): Observation(
                        int(a), int(b), None if h is None else float(h), parse_time(t), str(e)
                    )
                    for i, a, b, h, t, e in raw["open"]
                },
                last_closed=None if raw["last_closed"] is None else int(raw["last_closed"]),
                aht_s=None if raw["aht_s"] is None else float(raw["aht_s"]),
                backlog=int(raw["backlog"]),
            )
        return book


_MINUTE = timedelta(minutes=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds()) // 60


def project_hours(
    project: ProjectDemandChanged, as_of: datetime, cfg: PlannerConfig
) -> list[float]:
    """Work hours per period: ``hours_per_week`` spread evenly over every hour from the start
    day's midnight to the end of the (inclusive) end day, in UTC, cut to the horizon."""
    begin = datetime(project.start.year, project.start.month, project.start.day, tzinfo=UTC)
    finish = datetime(project.end.year, project.end.month, project.end.day, tzinfo=UTC)
    finish += timedelta(days=1)
    per_hour = project.hours_per_week / 168.0
    out: list[float] = []
    for t in range(cfg.horizon_periods):
        lo = max(begin, as_of + t * cfg.period)
        hi = min(finish, as_of + (t + 1) * cfg.period)
        hours = max(0.0, (hi - lo).total_seconds() / 3600.0)
        out.append(per_hour * hours)
    return out
