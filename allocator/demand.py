"""From stream demand and SLA to required productive FTE and a service-level curve per period.

The optimiser does not take a fixed staffing target as a hard constraint: it gets, for every
stream and period, the productive FTE that meets the SLA target (``required_fte``) *and* a
concave piecewise-linear service-level curve SL(cover) on ``[0, required_fte]``, so it can trade
cover against a priced SLA shortfall. Queues use Erlang C (Erlang A with a patience) from
:mod:`allocator.staffing`; the curve is the upper concave envelope of SL at whole agent counts,
thinned to a few breakpoints (a subset of hull vertices is still concave and lies under the
hull, so thinning never promises more service than the hull). Projects are linear: the share of
the period's work hours that gets done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from allocator import staffing
from allocator.domain import AllocationProblem, Demand, WorkStream

MAX_BREAKPOINTS = 6
"""Breakpoints kept per curve (including 0 and the required FTE): LP size vs fidelity."""

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Curve:
    """Concave piecewise-linear SL(cover): ``xs`` FTE ascending from 0, ``ys`` service level."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def value(self, cover: float) -> float:
        """SL at ``cover`` (linear between breakpoints, flat beyond the last)."""
        return float(np.interp(cover, self.xs, self.ys))


@dataclass(frozen=True, slots=True)
class StreamRequirement:
    """What one stream needs over the horizon, in the units the model uses.

    ``volume[t]`` multiplies the penalty weight: contacts (queue, per unit SL shortfall) or work
    hours (project, per unit share of work undone). ``exact[t]`` holds SL at whole agents
    0..required (queues) for honest reporting of fractional cover.
    """

    stream_id: str
    kind: str
    required_fte: tuple[float, ...]
    target_sl: float
    volume: tuple[float, ...]
    curves: tuple[Curve, ...]
    exact: tuple[tuple[float, ...], ...]

    def expected_sl(self, period: int, cover: float) -> float:
        """Expected service level at ``cover`` FTE: exact curve, linear between whole agents."""
        if self.required_fte[period] <= 0:
            return 1.0
        if self.kind == "project":
            return min(1.0, cover / self.required_fte[period])
        ys = self.exact[period]
        return float(np.interp(cover, np.arange(len(ys), dtype=np.float64), ys))


def _thin(xs: FloatArray, ys: FloatArray, keep: int) -> Curve:
    if len(xs) <= keep:
        return Curve(tuple(float(x) for x in xs), tuple(float(y) for y in ys))
    picks = np.unique(np.round(np.linspace(0, len(xs) - 1, keep)).astype(np.int64))
    return Curve(tuple(float(xs[i]) for i in picks), tuple(float(ys[i]) for i in picks))


def _queue_requirement(
    stream: WorkStream, demand: Demand, interval_s: float, max_occupancy: float
) -> StreamRequirement:
    assert demand.arrivals is not None and stream.sla.target_seconds is not None
    horizon = len(demand.arrivals)
    arrivals = np.asarray(demand.arrivals, dtype=np.float64)
    aht = np.asarray([demand.aht_at(t) for t in range(horizon)], dtype=np.float64)
    target = stream.sla.target_fraction
    required = staffing.required_agents(
        arrivals,
        aht,
        interval_s,
        target,
        stream.sla.target_seconds,
        max_occupancy=max_occupancy,
        patience_s=stream.patience_s,
    )
    curves: list[Curve] = []
    exact: list[tuple[float, ...]] = []
    cache: dict[tuple[float, float, int], tuple[Curve, tuple[float, ...]]] = {}
    for t in range(horizon):
        n = int(required[t])
        if n <= 0 or arrivals[t] <= 0:
            curves.append(Curve((0.0,), (1.0,)))
            exact.append((1.0,))
            continue
        key = (float(arrivals[t]), float(aht[t]), n)
        if key not in cache:
            sl = np.asarray(
                staffing.service_level_curve(
                    arrivals[t],
                    aht[t],
                    interval_s,
                    stream.sla.target_seconds,
                    n,
                    patience_s=stream.patience_s,
                ),
                dtype=np.float64,
            )
            sl = np.clip(sl, 0.0, 1.0)
            sl[-1] = max(sl[-1], target)
            hx, hy = staffing.concave_envelope(np.arange(n + 1, dtype=np.float64), sl)
            cache[key] = (
                _thin(np.asarray(hx, np.float64), np.asarray(hy, np.float64), MAX_BREAKPOINTS),
                tuple(float(v) for v in sl),
            )
        curve, ex = cache[key]
        curves.append(curve)
        exact.append(ex)
    return StreamRequirement(
        stream_id=stream.id,
        kind="queue",
        required_fte=tuple(float(r) for r in required),
        target_sl=target,
        volume=tuple(float(a) for a in arrivals),
        curves=tuple(curves),
        exact=tuple(exact),
    )


def _project_requirement(
    stream: WorkStream, demand: Demand, period_hours: float
) -> StreamRequirement:
    assert demand.work_hours is not None
    required = tuple(h / period_hours for h in demand.work_hours)
    curves = tuple(
        Curve((0.0, r), (0.0, 1.0)) if r > 0 else Curve((0.0,), (1.0,)) for r in required
    )
    return StreamRequirement(
        stream_id=stream.id,
        kind="project",
        required_fte=required,
        target_sl=1.0,
        volume=tuple(float(h) for h in demand.work_hours),
        curves=curves,
        exact=tuple((1.0,) for _ in required),
    )


def stream_requirements(problem: AllocationProblem) -> tuple[StreamRequirement, ...]:
    """Requirements of every stream, in the problem's (sorted) stream order."""
    req = problem.request
    out: list[StreamRequirement] = []
    for stream in problem.streams:
        demand = problem.demand_for(stream.id)
        if stream.kind == "queue":
            out.append(
                _queue_requirement(stream, demand, req.period_seconds, problem.policy.max_occupancy)
            )
        else:
            out.append(_project_requirement(stream, demand, req.period_hours))
    return tuple(out)
