"""Incremental demand forecasts per queue with daily and weekly seasonality.

Why this shape
--------------
The stream processor keeps one forecaster per queue in a changelog-backed table and calls
:meth:`Forecaster.update` each time an interval closes, then :meth:`Forecaster.forecast` for the
planning horizon. So every method here is

* **incremental** -- an update touches O(1) state (a handful of slots), never the history;
* **serialisable** -- :meth:`Forecaster.to_state` gives a plain JSON-able ``dict`` and
  :func:`forecaster_from_state` rebuilds an object that continues *identically*;
* **pure** -- no I/O, no clocks. Time is an integer *interval index* counted from an origin the
  caller chooses (:func:`interval_index` maps an aware datetime to it). The seasonal slot of an
  index is ``index % intervals_per_day`` / ``index % (7 * intervals_per_day)``, so the origin
  should sit on a local midnight; any origin works, the models just learn the slots as they are.

Data conventions (real data is messy)
-------------------------------------
* The caller reports *closed* intervals in increasing index order. An index skipped between two
  updates is a closed interval with **zero** arrivals (the ingest emits nothing for a quiet
  interval), so the gap is filled with explicit zeros. Nothing is assumed before the first update.
* Observations must be finite and >= 0. Forecasts are always finite and >= 0.
* Short history degrades gracefully: less than a week -> the daily pattern; less than a day ->
  the mean so far; nothing -> 0.

Methods
-------
* :class:`SeasonalNaive` -- the baseline: the same slot last week (last day while history is
  shorter than a week).
* :class:`SeasonalProfile` -- an hour-of-week profile (exponentially weighted mean of the same slot
  over recent weeks; the time-of-day profile until a slot has been seen; lightly smoothed across
  neighbouring slots) times a level factor (ratio of recent actuals to what the profile
  expected) that decays back to 1 over the horizon. The default, chosen by
  ``bench/forecast_backtest.py``: 0.79-0.83 x the baseline's WAPE one hour ahead and
  0.85-0.89 x over the next 24 h on the bank (15-min and hourly) and ServiceNow data.
* :class:`DoubleSeasonalHoltWinters` -- Taylor (2003) double-seasonal exponential smoothing,
  additive (counts reach zero at night, so multiplicative seasonals are ill-defined), with the
  AR(1) adjustment of the one-step error; initialised from the first full week.

Metrics (:func:`wape`, :func:`mape`) live here too because tests and the backtest share them:
WAPE is primary since per-interval MAPE is undefined at zero actuals (nights, weekends); MAPE is
only computed over intervals whose actual reaches a threshold.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from allocator.errors import InvalidInput

FloatArray = NDArray[np.float64]

DAYS_PER_WEEK: Final = 7
_INDEX_TYPES: Final = (int, np.integer)
STATE_VERSION: Final = 1
"""Bumped when a state layout changes; :func:`forecaster_from_state` refuses other versions."""


# --------------------------------------------------------------------------------------------
# Time helpers
# --------------------------------------------------------------------------------------------


def interval_index(ts: datetime, origin: datetime, interval_seconds: int) -> int:
    """Index of the interval containing ``ts``: ``floor((ts - origin) / interval)``.

    Both datetimes must be timezone-aware, so a naive local time can never be silently taken as
    UTC. Exact integer arithmetic on microseconds (no float rounding at interval edges).
    Timestamps before the origin get negative indices.
    """
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise InvalidInput(f"interval_index: ts {ts.isoformat()} must be timezone-aware")
    if origin.tzinfo is None or origin.utcoffset() is None:
        raise InvalidInput(f"interval_index: origin {origin.isoformat()} must be timezone-aware")
    if interval_seconds <= 0:
        raise InvalidInput(f"interval_index: interval_seconds must be > 0, got {interval_seconds}")
    delta = ts - origin
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros // (interval_seconds * 1_000_000)


def interval_start(index: int, origin: datetime, interval_seconds: int) -> datetime:
    """Start of interval ``index`` (inverse of :func:`interval_index` on interval starts)."""
    if origin.tzinfo is None or origin.utcoffset() is None:
        raise InvalidInput(f"interval_start: origin {origin.isoformat()} must be timezone-aware")
    if interval_seconds <= 0:
        raise InvalidInput(f"interval_start: interval_seconds must be > 0, got {interval_seconds}")
    return origin + timedelta(seconds=index * interval_seconds)


def intervals_per_day(interval_seconds: int) -> int:
    """Intervals in a day; the interval must divide a day so seasonal slots line up."""
    if interval_seconds <= 0 or 86_400 % interval_seconds:
        raise InvalidInput(f"interval of {interval_seconds} s does not divide a day evenly")
    return 86_400 // interval_seconds


def aggregate(counts: ArrayLike, factor: int) -> FloatArray:
    """Sum consecutive blocks of ``factor`` intervals (e.g. 15-min -> hourly with ``factor=4``).

    Works on the last axis, so a (queues, intervals) matrix aggregates per queue. The length
    must be a multiple of ``factor``: a trailing partial block would be an under-count that looks
    like a real dip in demand, so the caller has to trim or pad it explicitly.
    """
    arr = np.asarray(counts, dtype=np.float64)
    if factor < 1:
        raise InvalidInput(f"aggregate: factor must be >= 1, got {factor}")
    n = arr.shape[-1] if arr.ndim else 0
    if arr.ndim == 0 or n % factor:
        raise InvalidInput(f"aggregate: length {n} is not a multiple of factor {factor}")
    out: FloatArray = arr.reshape(*arr.shape[:-1], n // factor, factor).sum(axis=-1)
    return out


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def wape(actual: ArrayLike, forecast: ArrayLike) -> float:
    """Weighted absolute percentage error ``sum|f - a| / sum a`` (nan if all actuals are 0).

    Primary metric: defined at zero actuals and weights errors by volume, which is what
    staffing cost follows.
    """
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    total = float(a.sum())
    return float(np.abs(f - a).sum()) / total if total > 0 else math.nan


def mape(actual: ArrayLike, forecast: ArrayLike, threshold: float = 1.0) -> float:
    """Mean absolute percentage error over intervals with ``actual >= threshold`` (else nan).

    MAPE divides by each actual, so it is undefined at 0 and explodes near it; the threshold
    keeps nights and weekends out and must be reported with the figure.
    """
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    keep = a >= max(threshold, np.finfo(np.float64).tiny)
    if not keep.any():
        return math.nan
    return float(np.mean(np.abs(f[keep] - a[keep]) / a[keep]))


# --------------------------------------------------------------------------------------------
# Interface
# --------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a positive int, got {value!r}")


def _check_unit(name: str, value: float, *, low: float = 0.0, high: float = 1.0) -> None:
    if not (low <= value <= high):
        raise InvalidInput(f"{name} must be in [{low}, {high}], got {value!r}")


def _floats(values: FloatArray | list[float]) -> list[float]:
    return [float(v) for v in values]


def _array(state: dict[str, Any], key: str, size: int) -> FloatArray:
    arr = np.asarray(state[key], dtype=np.float64)
    if arr.shape != (size,):
        raise InvalidInput(f"state field {key!r} has shape {arr.shape}, expected ({size},)")
    return arr


class Forecaster(ABC):
    """One queue's incremental forecaster.

    Subclasses implement :meth:`_step` (absorb one observation at the next index) and
    :meth:`_predict` (forecast absolute indices after the last one); this base class owns the
    index bookkeeping, gap filling, validation and the common state fields, so every method
    treats messy input the same way.
    """

    method: ClassVar[str]
    _registry: ClassVar[dict[str, type[Forecaster]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Forecaster._registry[cls.method] = cls

    def __init__(self, intervals_per_day: int) -> None:
        _check_positive_int("intervals_per_day", intervals_per_day)
        self.day: Final[int] = intervals_per_day
        self.week: Final[int] = intervals_per_day * DAYS_PER_WEEK
        self.last_index: int | None = None
        self.n_seen = 0
        self.total = 0.0

    # ---- public API ------------------------------------------------------------------------

    def update(self, index: int, observed: float) -> None:
        """Absorb the closed interval ``index`` with ``observed`` arrivals.

        Indices must increase; skipped indices are closed intervals with zero arrivals and are
        absorbed as zeros first. A gap longer than a week is filled with one week of zeros
        (state holds at most a week per slot, so further zeros would only repeat the same
        slots -- this bounds the work of a long outage).
        """
        if type(index) is not int:  # the common case skips the slower checks
            if isinstance(index, bool) or not isinstance(index, _INDEX_TYPES):
                raise InvalidInput(f"index must be an int, got {index!r}")
            index = int(index)
        value = float(observed)
        if not math.isfinite(value) or value < 0:
            raise InvalidInput(f"observed arrivals must be finite and >= 0, got {observed!r}")
        if self.last_index is not None:
            if index <= self.last_index:
                raise InvalidInput(
                    f"index {index} is not after the last closed interval {self.last_index}"
                )
            first_gap = max(self.last_index + 1, index - self.week)
            if first_gap > self.last_index + 1:
                # skip ahead without touching state; the zeros below still cover a full week
                self.n_seen += first_gap - self.last_index - 1
                self.last_index = first_gap - 1
            for gap in range(first_gap, index):
                self._absorb(gap, 0.0)
        self._absorb(index, value)

    def forecast(self, from_index: int, horizon: int) -> FloatArray:
        """Forecast arrivals for indices ``from_index .. from_index + horizon - 1``.

        ``from_index`` must be after the last closed interval (normally ``last_index + 1``; a
        later start forecasts further out without assuming anything about the intervals in
        between). Always finite and >= 0.
        """
        if horizon < 0:
            raise InvalidInput(f"horizon must be >= 0, got {horizon}")
        if self.last_index is not None and from_index <= self.last_index:
            raise InvalidInput(
                f"from_index {from_index} is not after the last closed interval {self.last_index}"
            )
        if horizon == 0:
            return np.zeros(0, dtype=np.float64)
        targets = np.arange(from_index, from_index + horizon, dtype=np.int64)
        if self.n_seen == 0 or self.last_index is None:
            return np.zeros(horizon, dtype=np.float64)
        out = self._predict(targets)
        return np.maximum(np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), 0.0)

    def to_state(self) -> dict[str, Any]:
        """Plain JSON-able dict of the whole state (floats survive JSON exactly)."""
        return {
            "version": STATE_VERSION,
            "method": self.method,
            "intervals_per_day": self.day,
            "params": self._params(),
            "last_index": self.last_index,
            "n_seen": self.n_seen,
            "total": self.total,
            "data": self._data(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Forecaster:
        """Rebuild from :meth:`to_state`; the object continues exactly where it left off."""
        if state.get("version") != STATE_VERSION:
            raise InvalidInput(f"unsupported forecaster state version {state.get('version')!r}")
        sub = Forecaster._registry.get(str(state.get("method")))
        if sub is None:
            raise InvalidInput(f"unknown forecast method {state.get('method')!r}")
        if cls is not Forecaster and sub is not cls:
            raise InvalidInput(f"state is for {sub.method!r}, not {cls.method!r}")
        obj = sub(int(state["intervals_per_day"]), **state["params"])
        last = state["last_index"]
        obj.last_index = None if last is None else int(last)
        obj.n_seen = int(state["n_seen"])
        obj.total = float(state["total"])
        obj._load(state["data"])
        return obj

    # ---- subclass hooks --------------------------------------------------------------------

    def _absorb(self, index: int, value: float) -> None:
        self._step(index, value)
        self.last_index = index
        self.n_seen += 1
        self.total += value

    @abstractmethod
    def _step(self, index: int, value: float) -> None:
        """Absorb ``value`` at ``index`` (= last_index + 1, or the first index)."""

    @abstractmethod
    def _predict(self, targets: NDArray[np.int64]) -> FloatArray:
        """Raw forecast for absolute indices after ``last_index`` (n_seen >= 1)."""

    @abstractmethod
    def _params(self) -> dict[str, Any]:
        """Constructor keyword arguments (besides intervals_per_day)."""

    @abstractmethod
    def _data(self) -> dict[str, Any]:
        """Method-specific state, JSON-able."""

    @abstractmethod
    def _load(self, data: dict[str, Any]) -> None:
        """Inverse of :meth:`_data`."""


def forecaster_from_state(state: dict[str, Any]) -> Forecaster:
    """Rebuild any forecaster from its :meth:`Forecaster.to_state` dict."""
    return Forecaster.from_state(state)


# --------------------------------------------------------------------------------------------
# Seasonal naive (baseline)
# --------------------------------------------------------------------------------------------


class SeasonalNaive(Forecaster):
    """Same slot last week; same slot yesterday while history is under a week; else the mean.

    The standard baseline for seasonal series: anything worth deploying must beat it. Keeps a
    ring buffer of the last week (value of index ``i`` at ``i % week``).
    """

    method = "seasonal_naive"

    def __init__(self, intervals_per_day: int) -> None:
        super().__init__(intervals_per_day)
        self.buf: FloatArray = np.zeros(self.week, dtype=np.float64)

    def _step(self, index: int, value: float) -> None:
        self.buf[index % self.week] = value

    def _predict(self, targets: NDArray[np.int64]) -> FloatArray:
        assert self.last_index is not None
        if self.n_seen >= self.week:
            period = self.week
        elif self.n_seen >= self.day:
            period = self.day
        else:
            return np.full(len(targets), self.total / self.n_seen, dtype=np.float64)
        # latest observed index congruent to the target modulo the period
        source = self.last_index - ((self.last_index - targets) % period)
        return self.buf[source % self.week].copy()

    def _params(self) -> dict[str, Any]:
        return {}

    def _data(self) -> dict[str, Any]:
        return {"buf": _floats(self.buf)}

    def _load(self, data: dict[str, Any]) -> None:
        self.buf = _array(data, "buf", self.week)


# --------------------------------------------------------------------------------------------
# Seasonal profile x level
# --------------------------------------------------------------------------------------------


class SeasonalProfile(Forecaster):
    """Hour-of-week profile times a decaying level factor.

    * Weekly profile ``W[s]``: exponentially weighted mean of slot ``s`` (of the week) over the
      weeks seen, with weight ``max(week_alpha, 1/n)`` on the n-th visit -- a plain mean while
      few weeks are seen, then an EWMA with memory ~``1/week_alpha`` weeks.
    * Daily profile ``D[s]``: the same over slots of the day, with ``day_alpha``.
    * Base: ``(n_w W + shrink D) / (n_w + shrink)`` -- with no weekly history the daily profile,
      moving to the weekly one as weeks accumulate. ``shrink`` defaults to 0 (weekly profile as
      soon as the slot was seen once): the backtest found shrinking towards the daily shape hurts
      where weekdays differ in shape (the bank's Friday/Saturday) and is neutral elsewhere.
      Then smoothed with a [1, 2, 1] / 4 kernel over neighbouring slots (``smooth=True``),
      since per-slot counts are Poisson-noisy, demand curves are not.
    * Level: ``L = EWMA(actual) / EWMA(base expected for it)`` with half-life
      ``level_halflife_hours`` -- today's volume relative to the usual; the forecast at
      ``h`` hours ahead uses ``1 + (L - 1) * level_decay ** h`` so a surge is trusted for the
      next hours, less so for tomorrow. Clamped to [0.2, 5].
    """

    method = "seasonal_profile"

    def __init__(
        self,
        intervals_per_day: int,
        *,
        week_alpha: float = 0.5,
        day_alpha: float = 0.2,
        shrink: float = 0.0,
        smooth: bool = True,
        level_halflife_hours: float = 3.0,
        level_decay: float = 0.9,
    ) -> None:
        super().__init__(intervals_per_day)
        _check_unit("week_alpha", week_alpha)
        _check_unit("day_alpha", day_alpha)
        _check_unit("level_decay", level_decay)
        if not (shrink >= 0 and math.isfinite(shrink)):
            raise InvalidInput(f"shrink must be finite and >= 0, got {shrink!r}")
        if not (level_halflife_hours > 0 and math.isfinite(level_halflife_hours)):
            raise InvalidInput(f"level_halflife_hours must be > 0, got {level_halflife_hours!r}")
        self.week_alpha = float(week_alpha)
        self.day_alpha = float(day_alpha)
        self.shrink = float(shrink)
        self.smooth = bool(smooth)
        self.level_halflife_hours = float(level_halflife_hours)
        self.level_decay = float(level_decay)
        per_hour = intervals_per_day / 24.0
        self._level_a = 1.0 - 0.5 ** (1.0 / (level_halflife_hours * per_hour))
        self._decay_step = level_decay ** (1.0 / per_hour)
        # Plain lists, not arrays: every closed interval updates a handful of slots one at a
        # time (the stream's hot path), where a list element costs a fraction of a numpy
        # scalar; the vectorised forecast converts them once per call. Same IEEE arithmetic.
        self.wprof: list[float] = [0.0] * self.week
        self.wn: list[float] = [0.0] * self.week
        self.dprof: list[float] = [0.0] * self.day
        self.dn: list[float] = [0.0] * self.day
        self.lvl_num = 0.0
        self.lvl_den = 0.0

    def _raw(self, slots_w: NDArray[np.int64]) -> FloatArray:
        """Shrunk profile at week slots (no smoothing); daily profile, then mean, as fallbacks."""
        wn = np.asarray(self.wn, dtype=np.float64)[slots_w]
        slots_d = slots_w % self.day
        mean = self.total / self.n_seen if self.n_seen else 0.0
        dn = np.asarray(self.dn, dtype=np.float64)[slots_d]
        daily = np.where(dn > 0, np.asarray(self.dprof, dtype=np.float64)[slots_d], mean)
        wprof = np.asarray(self.wprof, dtype=np.float64)[slots_w]
        with np.errstate(invalid="ignore", divide="ignore"):
            mixed = (wn * wprof + self.shrink * daily) / (wn + self.shrink)
        out: FloatArray = np.where(wn > 0, mixed, daily)
        return out

    def _raw_at(self, slot_w: int) -> float:
        """Scalar :meth:`_raw` for the update path."""
        d = slot_w % self.day
        if self.dn[d] > 0:
            daily = self.dprof[d]
        else:
            daily = self.total / self.n_seen if self.n_seen else 0.0
        wn = self.wn[slot_w]
        if wn <= 0:
            return daily
        return (wn * self.wprof[slot_w] + self.shrink * daily) / (wn + self.shrink)

    def _base(self, targets: NDArray[np.int64]) -> FloatArray:
        slots = targets % self.week
        mid = self._raw(slots)
        if not self.smooth:
            return mid
        prev = self._raw((slots - 1) % self.week)
        nxt = self._raw((slots + 1) % self.week)
        base: FloatArray = 0.25 * prev + 0.5 * mid + 0.25 * nxt
        return base

    def _base_at(self, index: int) -> float:
        slot = index % self.week
        raw = self._raw_at
        if not self.smooth:
            return raw(slot)
        week = self.week
        return 0.25 * raw((slot - 1) % week) + 0.5 * raw(slot) + 0.25 * raw((slot + 1) % week)

    def _level(self) -> float:
        if self.lvl_den <= 1e-9:
            return 1.0
        return min(5.0, max(0.2, self.lvl_num / self.lvl_den))

    def _step(self, index: int, value: float) -> None:
        if self.n_seen:
            expected = self._base_at(index)
            a = self._level_a
            self.lvl_num += a * (value - self.lvl_num)
            self.lvl_den += a * (expected - self.lvl_den)
        s = index % self.week
        self.wn[s] += 1.0
        self.wprof[s] += max(self.week_alpha, 1.0 / self.wn[s]) * (value - self.wprof[s])
        d = index % self.day
        self.dn[d] += 1.0
        self.dprof[d] += max(self.day_alpha, 1.0 / self.dn[d]) * (value - self.dprof[d])

    def _predict(self, targets: NDArray[np.int64]) -> FloatArray:
        assert self.last_index is not None
        steps = (targets - self.last_index).astype(np.float64)
        factor = 1.0 + (self._level() - 1.0) * self._decay_step**steps
        out: FloatArray = self._base(targets) * factor
        return out

    def _params(self) -> dict[str, Any]:
        return {
            "week_alpha": self.week_alpha,
            "day_alpha": self.day_alpha,
            "shrink": self.shrink,
            "smooth": self.smooth,
            "level_halflife_hours": self.level_halflife_hours,
            "level_decay": self.level_decay,
        }

    def _data(self) -> dict[str, Any]:
        return {
            "wprof": _floats(self.wprof),
            "wn": _floats(self.wn),
            "dprof": _floats(self.dprof),
            "dn": _floats(self.dn),
            "lvl_num": self.lvl_num,
            "lvl_den": self.lvl_den,
        }

    def _load(self, data: dict[str, Any]) -> None:
        self.wprof = _floats(_array(data, "wprof", self.week))
        self.wn = _floats(_array(data, "wn", self.week))
        self.dprof = _floats(_array(data, "dprof", self.day))
        self.dn = _floats(_array(data, "dn", self.day))
        self.lvl_num = float(data["lvl_num"])
        self.lvl_den = float(data["lvl_den"])


# --------------------------------------------------------------------------------------------
# Double-seasonal Holt-Winters (Taylor 2003), additive
# --------------------------------------------------------------------------------------------


class DoubleSeasonalHoltWinters(Forecaster):
    """Taylor's double-seasonal Holt-Winters, additive, with AR(1) error adjustment.

    ``yhat(t+k) = l + d[(t+k) % day] + w[(t+k) % week] + phi**k * e_t`` where, with the one-step
    error ``e = y - (l + d + w)``: ``l += alpha e``, ``d += delta (1 - alpha) e``,
    ``w += omega (1 - alpha) e`` (the error-correction form of Taylor's recursions). Additive
    because arrivals reach zero at night, where multiplicative indices are undefined; the
    output is clipped at 0. ``alpha`` and ``phi`` are given per hour (half-life / decay) so one
    setting fits 15-min and hourly data. Until a full week is seen it forecasts like
    :class:`SeasonalNaive` from a buffer; at the end of the first week it initialises ``l`` to
    the week's mean, ``d`` to the mean daily shape and ``w`` to the rest.
    """

    method = "double_seasonal_hw"

    def __init__(
        self,
        intervals_per_day: int,
        *,
        level_halflife_hours: float = 48.0,
        delta: float = 0.05,
        omega: float = 0.3,
        phi_per_hour: float = 0.6,
    ) -> None:
        super().__init__(intervals_per_day)
        _check_unit("delta", delta)
        _check_unit("omega", omega)
        _check_unit("phi_per_hour", phi_per_hour)
        if not (level_halflife_hours > 0 and math.isfinite(level_halflife_hours)):
            raise InvalidInput(f"level_halflife_hours must be > 0, got {level_halflife_hours!r}")
        self.level_halflife_hours = float(level_halflife_hours)
        self.delta = float(delta)
        self.omega = float(omega)
        self.phi_per_hour = float(phi_per_hour)
        per_hour = intervals_per_day / 24.0
        self._alpha = 1.0 - 0.5 ** (1.0 / (level_halflife_hours * per_hour))
        self._phi = phi_per_hour ** (1.0 / per_hour)
        self.warm = SeasonalNaive(intervals_per_day)
        self.ready = False
        self.level = 0.0
        self.d: FloatArray = np.zeros(self.day, dtype=np.float64)
        self.w: FloatArray = np.zeros(self.week, dtype=np.float64)
        self.err = 0.0

    def _initialise(self) -> None:
        assert self.last_index is not None
        first = self.last_index - self.week + 1
        idx = np.arange(first, self.last_index + 1, dtype=np.int64)
        y = self.warm.buf[idx % self.week]
        self.level = float(y.mean())
        by_day = np.zeros(self.day, dtype=np.float64)
        np.add.at(by_day, idx % self.day, y)
        self.d = by_day / DAYS_PER_WEEK - self.level
        w = np.zeros(self.week, dtype=np.float64)
        w[idx % self.week] = y - self.level - self.d[idx % self.day]
        self.w = w
        self.err = 0.0
        self.ready = True

    def _step(self, index: int, value: float) -> None:
        if not self.ready:
            self.warm._absorb(index, value)
            if self.n_seen + 1 >= self.week:
                self.last_index = index  # _initialise reads the window ending here
                self._initialise()
            return
        i, j = index % self.day, index % self.week
        e = value - (self.level + self.d[i] + self.w[j])
        self.level += self._alpha * e
        self.d[i] += self.delta * (1.0 - self._alpha) * e
        self.w[j] += self.omega * (1.0 - self._alpha) * e
        self.err = e

    def _predict(self, targets: NDArray[np.int64]) -> FloatArray:
        assert self.last_index is not None
        if not self.ready:
            return self.warm._predict(targets)
        steps = (targets - self.last_index).astype(np.float64)
        out: FloatArray = (
            self.level
            + self.d[targets % self.day]
            + self.w[targets % self.week]
            + self._phi**steps * self.err
        )
        return out

    def _params(self) -> dict[str, Any]:
        return {
            "level_halflife_hours": self.level_halflife_hours,
            "delta": self.delta,
            "omega": self.omega,
            "phi_per_hour": self.phi_per_hour,
        }

    def _data(self) -> dict[str, Any]:
        return {
            "warm": self.warm.to_state(),
            "ready": self.ready,
            "level": self.level,
            "d": _floats(self.d),
            "w": _floats(self.w),
            "err": self.err,
        }

    def _load(self, data: dict[str, Any]) -> None:
        warm = Forecaster.from_state(data["warm"])
        assert isinstance(warm, SeasonalNaive)
        self.warm = warm
        self.ready = bool(data["ready"])
        self.level = float(data["level"])
        self.d = _array(data, "d", self.day)
        self.w = _array(data, "w", self.week)
        self.err = float(data["err"])


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------

DEFAULT_METHOD: Final = SeasonalProfile.method
"""Chosen by ``bench/forecast_backtest.py`` (see its docstring for the figures)."""

METHODS: Final = (SeasonalNaive.method, SeasonalProfile.method, DoubleSeasonalHoltWinters.method)


def make_forecaster(
    intervals_per_day: int, method: str = DEFAULT_METHOD, **params: Any
) -> Forecaster:
    """A fresh forecaster of ``method`` for data with ``intervals_per_day`` intervals a day."""
    cls = Forecaster._registry.get(method)
    if cls is None:
        raise InvalidInput(f"unknown forecast method {method!r}; known: {', '.join(METHODS)}")
    return cls(intervals_per_day, **params)
