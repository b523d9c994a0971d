"""From stream demand and SLA to required productive FTE and a service-level curve per period.

The optimiser does not take a fixed staffing target as a hard constraint: it gets, for every
stream and period, the productive FTE that meets the SLA target (``required_fte``) *and* a
concave piecewise-linear service-level curve SL(cover) on ``[0, required_fte]``, so it can trade
cover against a priced SLA shortfall. Queues use Erlang C (Erlang A with a patience) from
:mod:`allocator.staffing`; the curve is the upper concave envelope of the exact SL at a few
whole agent counts (0, up to four between the load and n−1, and n−1, n), cut by the exact line
through n−1 and n so that the last agent is priced exactly (the envelope over-states SL between
whole agents where the curve is convex, and the optimiser then stopped at covers that left
contacts late). Projects are linear: the share of the period's work hours that gets done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from allocator import staffing
from allocator.domain import AllocationProblem, Demand, WorkStream

MAX_BREAKPOINTS = 6
"""Exact SL points per queue curve (0, interior points, n−1, n): LP size vs fidelity."""

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Curve:
    """Concave piecewise-linear SL(cover): ``xs`` FTE ascending from 0, ``ys`` service level.

    ``ys`` may be negative at small cover (see :func:`_tail_exact_curve`): the model then prices
    a nearly empty queue above its true shortfall rather than promising service it never gets.
    """

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def value(self, cover: float) -> float:
        """SL at ``cover`` (linear between breakpoints, flat beyond the last)."""
        return float(np.interp(cover, self.xs, self.ys))


@dataclass(frozen=True, slots=True)
class QueueParams:
    """What :mod:`allocator.staffing` needs to evaluate a queue's exact SL at any cover."""

    arrivals: tuple[float, ...]
    aht_s: tuple[float, ...]
    interval_s: float
    target_s: float
    patience_s: float | None


@dataclass(frozen=True, slots=True)
class StreamRequirement:
    """What one stream needs over the horizon, in the units the model uses.

    ``volume[t]`` multiplies the penalty weight: contacts (queue, per unit SL shortfall) or work
    hours (project, per unit share of work undone). ``queue`` (queues only) lets the reported
    service level be the exact Erlang value from :func:`allocator.staffing.service_level`, so the
    plan, the bench's late contacts and the staffing module always agree.
    """

    stream_id: str
    kind: str
    required_fte: tuple[float, ...]
    target_sl: float
    volume: tuple[float, ...]
    curves: tuple[Curve, ...]
    queue: QueueParams | None = None
    cover_cap: tuple[float, ...] = ()
    """Most cover the SLA curve can use per period: ``required_fte`` when demand is certain;
    with ``Policy.demand_cv`` > 0 the requirement at the high arrival scenario (cover above
    the certain requirement still lowers the *expected* shortfall)."""

    def cap(self, period: int) -> float:
        """``cover_cap[period]``, or ``required_fte[period]`` when no cap was set."""
        return self.cover_cap[period] if self.cover_cap else self.required_fte[period]

    def expected_sl(self, period: int, cover: float) -> float:
        """Expected service level at ``cover`` FTE (exact curve, linear between whole agents)."""
        return float(self.expected_sl_all(np.asarray([period]), np.asarray([cover]))[0])

    def expected_sl_all(
        self, periods: NDArray[np.int64], covers: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Vectorised :meth:`expected_sl` (one staffing call per stream, not per cell).

        Cover is capped at the requirement (what the model may staff) and the SL clipped to
        [0, 1]; periods without demand report 1.0.
        """
        periods = np.asarray(periods, dtype=np.int64)
        covers = np.asarray(covers, dtype=np.float64)
        need = np.asarray(self.required_fte, dtype=np.float64)[periods]
        out = np.ones(len(periods), dtype=np.float64)
        live = need > 0
        if not live.any():
            return out
        got = np.clip(covers[live], 0.0, need[live])
        if self.queue is None:
            out[live] = np.minimum(1.0, got / need[live])
            return out
        q = self.queue
        sl = staffing.service_level(
            np.asarray(q.arrivals, dtype=np.float64)[periods[live]],
            np.asarray(q.aht_s, dtype=np.float64)[periods[live]],
            q.interval_s,
            got,
            q.target_s,
            patience_s=q.patience_s,
        )
        out[live] = np.clip(sl, 0.0, 1.0)
        return out


def _candidates(load: float, n: int) -> list[int]:
    """Whole agent counts whose exact SL the curve is built from: 0, a few up to n−1, n−1, n.

    Interior points sit between the load (below it Erlang C gives SL 0 and the hull bridges
    the convex part with one chord anyway) and n−1, where the curve bends.
    """
    lo = min(max(math.floor(load), 1), n - 1)
    # np.linspace(lo, n - 1, MAX_BREAKPOINTS - 2) rounded, in plain floats (same arithmetic:
    # start + i * step, the last point exactly the stop); NumPy per call cost 20 µs × 7,000.
    count = MAX_BREAKPOINTS - 2
    step = (n - 1 - lo) / (count - 1)
    inner = [round(lo + i * step) for i in range(count - 1)]
    return sorted({0, *inner, n - 1, n})


def _tail_exact_curve(xs: list[float], ys: list[float]) -> Curve:
    """Concave curve through the exact points, exact on its last unit ``[n−1, n]``.

    The upper concave envelope ``g`` of the points over-states SL where the exact curve is
    convex; when that part reaches the last agent (small queues: SL(n−1) far below SL(n)), the
    model would stop at a fractional cover that the exact curve (linear between whole agents)
    says misses the target, i.e. late contacts the plan claims not to have. The curve used is
    ``min(g, ℓ)`` with ``ℓ`` the exact line through ``(n−1, SL(n−1))`` and ``(n, SL(n))``:
    still concave (a minimum of concave functions), equal to the exact curve on ``[n−1, n]``
    (``g ≥ ℓ`` there), never above ``g`` elsewhere. Where ``n−1`` is already a hull vertex,
    ``ℓ`` is ``g``'s last piece and ``min(g, ℓ) = g``.
    """
    vertices = staffing.upper_hull_indices(xs, ys)
    hx = [xs[k] for k in vertices]
    hy = [ys[k] for k in vertices]
    if len(xs) < 2:
        return Curve(tuple(hx), tuple(hy))
    x1, y1, x0, y0 = xs[-1], ys[-1], xs[-2], ys[-2]
    slope = (y1 - y0) / (x1 - x0)

    def line(x: float) -> float:
        return y1 + slope * (x - x1)

    out_x: list[float] = []
    out_y: list[float] = []
    for k in range(len(hx)):
        gx, gy = hx[k], hy[k]
        ly = line(gx)
        if k > 0:
            py = hy[k - 1]
            lp = line(hx[k - 1])
            # g − ℓ changes sign inside this hull piece: add the crossing point.
            if (py - lp) * (gy - ly) < 0:
                w = (py - lp) / ((py - lp) - (gy - ly))
                cx = hx[k - 1] + w * (gx - hx[k - 1])
                out_x.append(cx)
                out_y.append(line(cx))
        if not out_x or gx > out_x[-1] + 1e-12:
            out_x.append(gx)
            out_y.append(min(gy, ly))
    # Drop collinear interior points (the ℓ part) to keep the LP small.
    keep_x, keep_y = [out_x[0]], [out_y[0]]
    for k in range(1, len(out_x) - 1):
        s0 = (out_y[k] - keep_y[-1]) / (out_x[k] - keep_x[-1])
        s1 = (out_y[k + 1] - out_y[k]) / (out_x[k + 1] - out_x[k])
        if abs(s0 - s1) > 1e-12:
            keep_x.append(out_x[k])
            keep_y.append(out_y[k])
    keep_x.append(out_x[-1])
    keep_y.append(out_y[-1])
    return Curve(tuple(keep_x), tuple(keep_y))


def _scenarios(cv: float) -> tuple[FloatArray, FloatArray]:
    """Arrival factors and weights: 3-point Gauss–Hermite on a lognormal of mean 1, CV ``cv``.

    Why lognormal: arrivals are positive and their forecast error is multiplicative; three
    points integrate the expected shortfall of a smooth SL curve well and keep the staffing
    calls at 3× (measured: the curve build stays a few ms per queue).
    """
    if cv <= 0:
        return np.ones(1), np.ones(1)
    sigma = math.sqrt(math.log1p(cv * cv))
    nodes = np.asarray([-math.sqrt(3.0), 0.0, math.sqrt(3.0)])
    weights = np.asarray([1.0, 4.0, 1.0]) / 6.0
    return np.exp(-0.5 * sigma * sigma + sigma * nodes), weights


def _queue_requirement(
    stream: WorkStream, demand: Demand, interval_s: float, max_occupancy: float, cv: float = 0.0
) -> StreamRequirement:
    """Erlang requirement and SL curve per period, exact SL values from one vectorised call.

    Why vectorised: a curve per queue × period (33,600 at L) built point by point took 1.2–1.9 s
    of every L solve. Here all candidate agent counts of all periods go to
    :func:`allocator.staffing.service_level` at once; only the ≤ 6-point hull is per period.
    """
    assert demand.arrivals is not None and stream.sla.target_seconds is not None
    horizon = len(demand.arrivals)
    arrivals = np.asarray(demand.arrivals, dtype=np.float64)
    aht = np.asarray([demand.aht_at(t) for t in range(horizon)], dtype=np.float64)
    target = stream.sla.target_fraction
    target_s = stream.sla.target_seconds
    required = staffing.required_agents(
        arrivals,
        aht,
        interval_s,
        target,
        target_s,
        max_occupancy=max_occupancy,
        patience_s=stream.patience_s,
    )
    load = staffing.offered_load(arrivals, aht, interval_s)
    factors, weights = _scenarios(cv)
    uncertain = len(factors) > 1
    cap = required
    if uncertain:
        cap = np.maximum(
            required,
            staffing.required_agents(
                arrivals * factors[-1],
                aht,
                interval_s,
                target,
                target_s,
                max_occupancy=max_occupancy,
                patience_s=stream.patience_s,
            ),
        )
    live = [t for t in range(horizon) if int(cap[t]) > 0 and arrivals[t] > 0]
    cands = {t: _candidates(float(load[t]), int(cap[t])) for t in live}
    flat_t = np.asarray([t for t in live for _ in cands[t]], dtype=np.int64)
    flat_n = np.asarray([k for t in live for k in cands[t]], dtype=np.float64)
    # Expected on-target share of the period's contacts, E[λ·min(target, SL(k, λ))] / E[λ],
    # over the arrival scenarios (one scenario, the forecast itself, when demand is certain).
    sl_flat = np.zeros(len(flat_t))
    share = weights * factors / float(np.dot(weights, factors))
    for f, w in zip(factors.tolist(), share.tolist(), strict=True):
        if len(flat_t):
            sl = staffing.service_level(
                arrivals[flat_t] * f, aht[flat_t], interval_s, flat_n, target_s, stream.patience_s
            )
            sl_flat += w * (np.minimum(target, np.clip(sl, 0.0, 1.0)) if uncertain else sl)
    curves: list[Curve] = [Curve((0.0,), (1.0,))] * horizon
    cache: dict[tuple[float, float, int], Curve] = {}
    pos = 0
    for t in live:
        ks = cands[t]
        key = (float(arrivals[t]), float(aht[t]), int(cap[t]))
        if key not in cache:
            sl = np.maximum.accumulate(np.clip(sl_flat[pos : pos + len(ks)], 0.0, 1.0))
            if not uncertain:
                sl[-1] = max(sl[-1], target)
            cache[key] = _tail_exact_curve([float(k) for k in ks], [float(v) for v in sl])
        curves[t] = cache[key]
        pos += len(ks)
    return StreamRequirement(
        stream_id=stream.id,
        kind="queue",
        required_fte=tuple(float(r) for r in required),
        target_sl=target,
        volume=tuple(float(a) for a in arrivals),
        curves=tuple(curves),
        queue=QueueParams(
            arrivals=tuple(float(a) for a in arrivals),
            aht_s=tuple(float(a) for a in aht),
            interval_s=interval_s,
            target_s=float(target_s),
            patience_s=stream.patience_s,
        ),
        cover_cap=tuple(float(c) for c in cap),
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
    )


def stream_requirements(problem: AllocationProblem) -> tuple[StreamRequirement, ...]:
    """Requirements of every stream, in the problem's (sorted) stream order."""
    req = problem.request
    out: list[StreamRequirement] = []
    for stream in problem.streams:
        demand = problem.demand_for(stream.id)
        if stream.kind == "queue":
            out.append(
                _queue_requirement(
                    stream,
                    demand,
                    req.period_seconds,
                    problem.policy.max_occupancy,
                    problem.policy.demand_cv,
                )
            )
        else:
            out.append(_project_requirement(stream, demand, req.period_hours))
    return tuple(out)
