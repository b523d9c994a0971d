"""Demand sources for the operations simulator: real bank calls, the real incident log, or
seeded synthetic demand — all reduced to one shape, arrivals per queue and interval.

Why one shape (:class:`DemandTrace`): the operations simulator, the service-outcome model and
the reactive autoscaler must see the *same* demand whatever its origin, so each source is
parsed once into plain per-interval series and nothing downstream knows where it came from.

Real data is messy and handled explicitly: bank intervals with arrivals but no served call
have no measured handle time (``None``: the queue's default applies); the incident log lists
only hours with arrivals (the rest are zeros); timestamps without a zone are read as UTC.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from services.sim.scenario import (
    BankCallsDemand,
    Scenario,
    ScenarioError,
    ServiceNowDemand,
    SyntheticDemand,
    data_dir,
)

__all__ = ["DemandTrace", "Interval", "load_demand"]


@dataclass(frozen=True, slots=True)
class Interval:
    """Arrivals of one queue in one interval, with the measured mean handle time if any."""

    arrivals: int
    aht_s: float | None


@dataclass(frozen=True, slots=True)
class DemandTrace:
    """Arrivals per queue on a regular grid of ``interval_minutes`` from ``start``."""

    start: datetime
    interval_minutes: int
    series: dict[str, tuple[Interval, ...]]

    @property
    def interval(self) -> timedelta:
        return timedelta(minutes=self.interval_minutes)

    @property
    def length(self) -> int:
        return max((len(v) for v in self.series.values()), default=0)

    def index(self, moment: datetime) -> int:
        """Index of the interval that starts at ``moment`` (must be on the grid)."""
        return int((moment - self.start) / self.interval)

    def at(self, queue_id: str, index: int) -> Interval:
        values = self.series.get(queue_id, ())
        return values[index] if 0 <= index < len(values) else Interval(0, None)

    def starts(self) -> Iterator[datetime]:
        for i in range(self.length):
            yield self.start + i * self.interval


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _grid(begin: datetime, end: datetime, minutes: int) -> int:
    return math.ceil((end - begin) / timedelta(minutes=minutes))


def _scaled(count: float, scale: float) -> int:
    return round(count * scale)


def _bank(spec: BankCallsDemand, root: Path, begin: datetime, end: datetime) -> DemandTrace:
    path = root / spec.file
    if not path.exists():
        raise ScenarioError(f"bank data not found at {path} (set FLEXFORCE_DATA_DIR)")
    n = _grid(begin, end, 15)
    arrivals: dict[str, list[int]] = {q: [0] * n for q in set(spec.queues.values())}
    handle: dict[str, list[float]] = {q: [0.0] * n for q in arrivals}
    served: dict[str, list[int]] = {q: [0] * n for q in arrivals}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            queue = spec.queues.get(row["queue"])
            if queue is None:
                continue
            moment = _utc(row["interval_start"])
            if not begin <= moment < end:
                continue
            i = int((moment - begin) / timedelta(minutes=15))
            arrivals[queue][i] += int(row["arrivals"])
            served[queue][i] += int(row["served"] or 0)
            handle[queue][i] += float(row["total_handle_s"] or 0.0)
    series = {
        q: tuple(
            Interval(
                _scaled(arrivals[q][i], spec.scale),
                handle[q][i] / served[q][i] if served[q][i] > 0 and handle[q][i] > 0 else None,
            )
            for i in range(n)
        )
        for q in sorted(arrivals)
    }
    return DemandTrace(begin, 15, series)


def _servicenow(spec: ServiceNowDemand, root: Path, begin: datetime, end: datetime) -> DemandTrace:
    path = root / spec.file
    if not path.exists():
        raise ScenarioError(f"incident data not found at {path} (set FLEXFORCE_DATA_DIR)")
    n = _grid(begin, end, 60)
    queues = set(spec.groups.values())
    if spec.other_queue is not None:
        queues.add(spec.other_queue)
    counts: dict[str, list[int]] = {q: [0] * n for q in queues}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            queue = spec.groups.get(row["queue"], spec.other_queue)
            if queue is None:
                continue
            moment = _utc(row["interval_start"])
            if begin <= moment < end:
                counts[queue][int((moment - begin) / timedelta(hours=1))] += int(row["arrivals"])
    aht = spec.handle_time_hours * 3600.0
    series = {
        q: tuple(Interval(_scaled(c, spec.scale), aht if c else None) for c in counts[q])
        for q in sorted(counts)
    }
    return DemandTrace(begin, 60, series)


def _profile(moment: datetime, night: float, weekend: float) -> float:
    """Two daytime humps (10:30 and 15:00), ``night`` share at night, ``weekend`` share on
    Saturdays and Sundays — the shape of office-hours IT and contact-centre demand."""
    hod = moment.hour + moment.minute / 60.0
    shape = (
        night
        + math.exp(-0.5 * ((hod - 10.5) / 1.8) ** 2)
        + 0.8 * math.exp(-0.5 * ((hod - 15.0) / 2.0) ** 2)
    )
    peak = night + 1.0 + 0.8 * math.exp(-0.5 * (4.5 / 2.0) ** 2)
    return shape / peak * (weekend if moment.weekday() >= 5 else 1.0)


def _synthetic(spec: SyntheticDemand, begin: datetime, end: datetime) -> DemandTrace:
    minutes = spec.interval_minutes
    n = _grid(begin, end, minutes)
    rng = np.random.default_rng(spec.seed)
    series: dict[str, tuple[Interval, ...]] = {}
    for q in sorted(spec.queues, key=lambda q: q.queue):
        values: list[Interval] = []
        for i in range(n):
            moment = begin + timedelta(minutes=minutes * i)
            mean = (
                q.peak_per_hour
                * minutes
                / 60.0
                * _profile(moment, q.night_factor, q.weekend_factor)
            )
            for storm in spec.storms:
                inside = storm.start <= moment < storm.start + timedelta(hours=storm.hours)
                if inside and (not storm.queues or q.queue in storm.queues):
                    mean *= storm.factor
            count = int(rng.poisson(mean))
            values.append(Interval(count, q.handle_time_s if count else None))
        series[q.queue] = tuple(values)
    return DemandTrace(begin, minutes, series)


def load_demand(scenario: Scenario, root: Path | None = None) -> DemandTrace:
    """Demand from ``start - history_days - lead_in`` to the scenario's end (see the module
    docstring). ``root`` overrides the data directory (tests)."""
    begin = scenario.start - timedelta(days=scenario.history_days, hours=scenario.lead_in_hours)
    begin = begin.replace(minute=0, second=0, microsecond=0)
    spec = scenario.demand
    folder = root or data_dir()
    if isinstance(spec, BankCallsDemand):
        return _bank(spec, folder, begin, scenario.end)
    if isinstance(spec, ServiceNowDemand):
        return _servicenow(spec, folder, begin, scenario.end)
    return _synthetic(spec, begin, scenario.end)
