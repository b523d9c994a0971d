"""Tests for allocator.forecast.

The point of these tests is that the forecasters can be trusted inside a stream processor:
they must beat the seasonal-naive baseline where there is seasonality to learn (synthetic
series with a known pattern, and the real bank data), be exact on trivial series, survive a
changelog round-trip bit-for-bit, agree with a from-scratch batch computation, and never emit a
negative or non-finite forecast whatever the (valid) input.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.errors import InvalidInput
from allocator.forecast import (
    DEFAULT_METHOD,
    METHODS,
    DoubleSeasonalHoltWinters,
    Forecaster,
    SeasonalNaive,
    SeasonalProfile,
    aggregate,
    forecaster_from_state,
    interval_index,
    interval_start,
    intervals_per_day,
    make_forecaster,
    mape,
    wape,
)
from services.sim.scenario import data_dir

HOURLY = 24
WEEK_H = 7 * HOURLY


def true_mean(weeks: int, scale: float = 20.0) -> np.ndarray:
    """Known daily curve (quiet nights) times a weekly one (quiet weekend, busier Monday)."""
    t = np.arange(weeks * WEEK_H)
    hour, dow = t % HOURLY, (t // HOURLY) % 7
    daily = np.clip(np.sin((hour - 7) / 11 * math.pi), 0.0, None) + 0.05
    weekly = np.where(dow >= 5, 0.25, 1.0) * (1.0 + 0.1 * (dow == 0))
    mean: np.ndarray = scale * daily * weekly
    return mean


def synthetic(weeks: int, seed: int = 0, scale: float = 20.0) -> np.ndarray:
    """Hourly Poisson arrivals around :func:`true_mean`."""
    rng = np.random.default_rng(seed)
    return rng.poisson(true_mean(weeks, scale)).astype(np.float64)


def rolling_wape(
    y: np.ndarray, make: Callable[[], Forecaster], per_day: int, warmup: int, step: int = 1
) -> float:
    """Pooled 24h-ahead WAPE over rolling origins (every ``step``-th) after ``warmup``."""
    model = make()
    abs_err = total = 0.0
    for t in range(len(y)):
        model.update(t, float(y[t]))
        origin = t + 1
        if origin >= warmup and origin + per_day <= len(y) and (origin - warmup) % step == 0:
            f = model.forecast(origin, per_day)
            a = y[origin : origin + per_day]
            abs_err += float(np.abs(f - a).sum())
            total += float(a.sum())
    return abs_err / total


def feed(model: Forecaster, y: np.ndarray, start: int = 0) -> Forecaster:
    for i, v in enumerate(y):
        model.update(start + i, float(v))
    return model


# --------------------------------------------------------------------------------------------
# Accuracy where the answer is known
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_default_beats_seasonal_naive_on_seasonal_noise(seed: int) -> None:
    """Poisson noise sets a floor no forecaster can beat (the WAPE of the true mean, ~0.27
    here); seasonal naive sits ~0.10 above it. The default must close a good part of that gap
    (it closes ~45-80% from one to four weeks of history; a third is asserted)."""
    weeks = 5
    y = synthetic(weeks, seed=seed)
    mean, tail = true_mean(weeks), slice(WEEK_H, None)
    floor = float(np.abs(y[tail] - mean[tail]).sum() / y[tail].sum())
    naive = rolling_wape(y, lambda: SeasonalNaive(HOURLY), HOURLY, WEEK_H)
    chosen = rolling_wape(y, lambda: make_forecaster(HOURLY), HOURLY, WEEK_H)
    assert DEFAULT_METHOD == "seasonal_profile"
    assert floor < chosen < naive - (naive - floor) / 3, (floor, chosen, naive)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("per_day", [24, 96])
def test_constant_series_forecasts_the_constant(method: str, per_day: int) -> None:
    for n in (1, per_day // 2, per_day + 3, 7 * per_day + 5, 9 * per_day):
        model = feed(make_forecaster(per_day, method), np.full(n, 7.5))
        f = model.forecast(n, 2 * per_day)
        np.testing.assert_allclose(f, 7.5, rtol=1e-12, err_msg=f"{method} after {n}")


@pytest.mark.parametrize(
    "make",
    [
        lambda: SeasonalNaive(HOURLY),
        # smoothing and shrinkage deliberately blur a single noisy week; off, it is exact
        lambda: SeasonalProfile(HOURLY, smooth=False, shrink=0.0),
        lambda: DoubleSeasonalHoltWinters(HOURLY),
    ],
    ids=METHODS,
)
def test_a_pure_weekly_pattern_is_reproduced(make: Callable[[], Forecaster]) -> None:
    week = synthetic(weeks=1, seed=3)
    model = feed(make(), np.tile(week, 3))
    np.testing.assert_allclose(model.forecast(3 * WEEK_H, WEEK_H), week, atol=1e-9)


def test_holt_winters_initialisation_reproduces_the_first_week() -> None:
    """At init ``l + d + w`` equals each observation of the week exactly (zero error)."""
    week = synthetic(weeks=1, seed=4)
    model = feed(DoubleSeasonalHoltWinters(HOURLY), week)
    assert model.to_state()["data"]["ready"]
    np.testing.assert_allclose(model.forecast(WEEK_H, WEEK_H), week, atol=1e-9)


def test_level_factor_follows_a_surge_and_decays() -> None:
    """After a day at double volume, the next hour is forecast well above the profile but
    tomorrow close to it: a surge is trusted short-term only."""
    y = synthetic(weeks=3, seed=5, scale=50)
    calm = feed(SeasonalProfile(HOURLY), y)
    surge = feed(SeasonalProfile(HOURLY), np.concatenate([y[:-HOURLY], 2 * y[-HOURLY:]]))
    # the next 48 h are slots the surge day did not touch, so the ratio is the level factor alone
    ratio = surge.forecast(len(y), 48) / calm.forecast(len(y), 48)
    near, far = ratio[0], ratio[32]
    assert near > 1.5, ratio
    assert 1.0 < far < 1.1, ratio


# --------------------------------------------------------------------------------------------
# Incremental == batch
# --------------------------------------------------------------------------------------------


def batch_profile(y: np.ndarray, p: SeasonalProfile) -> tuple[np.ndarray, np.ndarray]:
    """Weekly and daily profiles from scratch: per slot, running mean then EWMA over visits."""

    def ewma(column: np.ndarray, alpha: float) -> float:
        value = 0.0
        for k, v in enumerate(column, start=1):
            value += max(alpha, 1.0 / k) * (v - value)
        return value

    w = np.array([ewma(y[s :: p.week], p.week_alpha) for s in range(p.week)])
    d = np.array([ewma(y[s :: p.day], p.day_alpha) for s in range(p.day)])
    return w, d


def batch_base(y: np.ndarray, p: SeasonalProfile, target: int) -> float:
    """The smoothed, shrunk profile value for ``target`` built from ``y`` alone."""
    if len(y) == 0:
        return 0.0
    w, d = batch_profile(y, p)
    slots = np.arange(len(y))
    mean = float(y.mean())

    def raw(s: int) -> float:
        wn = int(np.sum(slots % p.week == s))
        dn = int(np.sum(slots % p.day == s % p.day))
        daily = d[s % p.day] if dn else mean
        return daily if wn == 0 else (wn * w[s] + p.shrink * daily) / (wn + p.shrink)

    s = target % p.week
    return 0.25 * raw((s - 1) % p.week) + 0.5 * raw(s) + 0.25 * raw((s + 1) % p.week)


def test_profile_incremental_equals_batch_refit() -> None:
    """The incremental state equals profiles recomputed from the whole history, and the level
    factor equals the ratio built from batch refits on each prefix (O(n^2), small n)."""
    per_day = 6
    y = synthetic(weeks=3, seed=6)[: 3 * 7 * per_day] + 1.0
    model = SeasonalProfile(per_day)
    feed(model, y)
    w, d = batch_profile(y, model)
    np.testing.assert_allclose(model.wprof, w, rtol=1e-12)
    np.testing.assert_allclose(model.dprof, d, rtol=1e-12)

    a = model._level_a
    num = den = 0.0
    for t in range(1, len(y)):
        num += a * (y[t] - num)
        den += a * (batch_base(y[:t], model, t) - den)
    level = min(5.0, max(0.2, num / den))
    n = len(y)
    expected = np.array(
        [
            batch_base(y, model, n + h) * (1 + (level - 1) * model._decay_step ** (h + 1))
            for h in range(10)
        ]
    )
    np.testing.assert_allclose(model.forecast(n, 10), expected, rtol=1e-10)


def test_seasonal_naive_is_last_week_then_yesterday_then_mean() -> None:
    y = synthetic(weeks=2, seed=7)
    week = feed(SeasonalNaive(HOURLY), y[: WEEK_H + 5])
    np.testing.assert_array_equal(
        week.forecast(WEEK_H + 5, WEEK_H + 10), np.tile(y[5 : WEEK_H + 5], 2)[: WEEK_H + 10]
    )
    days = feed(SeasonalNaive(HOURLY), y[:30])
    np.testing.assert_array_equal(days.forecast(30, 48), np.tile(y[6:30], 2))
    hours = feed(SeasonalNaive(HOURLY), y[:10])
    np.testing.assert_allclose(hours.forecast(10, 3), y[:10].mean())


# --------------------------------------------------------------------------------------------
# State round trip, gaps, short history, errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cut", [0, 1, 30, WEEK_H - 1, WEEK_H, 2 * WEEK_H + 7])
def test_state_round_trips_through_json_and_continues_identically(method: str, cut: int) -> None:
    y = synthetic(weeks=3, seed=8)
    original = feed(make_forecaster(HOURLY, method), y[:cut])
    state = json.loads(json.dumps(original.to_state()))
    restored = forecaster_from_state(state)
    assert type(restored) is type(original)
    assert restored.to_state() == original.to_state()
    for t in range(cut, len(y), 13):
        for model in (original, restored):
            for i in range(t, min(t + 13, len(y))):
                model.update(i, float(y[i]))
        end = min(t + 13, len(y))
        np.testing.assert_array_equal(original.forecast(end, 30), restored.forecast(end, 30))
    assert restored.to_state() == original.to_state()


def test_from_state_refuses_foreign_or_bad_states() -> None:
    state = SeasonalNaive(HOURLY).to_state()
    with pytest.raises(InvalidInput, match="not 'seasonal_profile'"):
        SeasonalProfile.from_state(state)
    with pytest.raises(InvalidInput, match="version"):
        forecaster_from_state({**state, "version": 99})
    with pytest.raises(InvalidInput, match="unknown forecast method"):
        forecaster_from_state({**state, "method": "prophet"})
    with pytest.raises(InvalidInput, match="shape"):
        forecaster_from_state({**state, "data": {"buf": [0.0] * 3}})


@pytest.mark.parametrize("method", METHODS)
def test_skipped_intervals_are_zeros(method: str) -> None:
    y = synthetic(weeks=2, seed=9)
    y[40:47] = 0.0
    dense = feed(make_forecaster(HOURLY, method), y)
    sparse = make_forecaster(HOURLY, method)
    for i, v in enumerate(y):
        if v > 0 or i == len(y) - 1:
            sparse.update(i, float(v))
    assert sparse.to_state() == dense.to_state()


@pytest.mark.parametrize("method", METHODS)
def test_a_gap_longer_than_a_week_is_bounded_and_sane(method: str) -> None:
    y = synthetic(weeks=2, seed=10)
    model = feed(make_forecaster(HOURLY, method), y)
    model.update(len(y) + 100 * WEEK_H, 3.0)  # an outage of 100 weeks: bounded work
    f = model.forecast(len(y) + 100 * WEEK_H + 1, WEEK_H)
    assert np.all(np.isfinite(f)) and np.all(f >= 0)
    assert f.sum() < y[-WEEK_H:].sum()  # the zeros were learned


@pytest.mark.parametrize("method", METHODS)
def test_short_history_falls_back_gracefully(method: str) -> None:
    model = make_forecaster(96, method)
    np.testing.assert_array_equal(model.forecast(0, 96), np.zeros(96))
    model.update(1000, 4.0)  # the first index is arbitrary; nothing is assumed before it
    np.testing.assert_allclose(model.forecast(1001, 5), 4.0)
    for i in range(1001, 1100):
        model.update(i, float(i % 3))
    f = model.forecast(1100, 672)
    assert f.shape == (672,) and np.all(np.isfinite(f)) and np.all(f >= 0)


@pytest.mark.parametrize("method", METHODS)
def test_bad_updates_and_forecasts_are_refused(method: str) -> None:
    model = make_forecaster(HOURLY, method)
    model.update(5, 1.0)
    for index, value in [(5, 1.0), (4, 1.0), (6, -1.0), (6, math.nan), (6, math.inf)]:
        with pytest.raises(InvalidInput):
            model.update(index, value)
    with pytest.raises(InvalidInput):
        model.forecast(5, 3)
    with pytest.raises(InvalidInput):
        model.forecast(6, -1)
    assert model.forecast(6, 0).shape == (0,)
    assert model.forecast(20, 3).shape == (3,)  # further out is allowed
    with pytest.raises(InvalidInput):
        make_forecaster(HOURLY, "arima")
    with pytest.raises(InvalidInput):
        make_forecaster(0, method)


def test_parameters_are_validated() -> None:
    with pytest.raises(InvalidInput):
        SeasonalProfile(HOURLY, week_alpha=1.5)
    with pytest.raises(InvalidInput):
        SeasonalProfile(HOURLY, level_halflife_hours=0)
    with pytest.raises(InvalidInput):
        SeasonalProfile(HOURLY, shrink=-1)
    with pytest.raises(InvalidInput):
        DoubleSeasonalHoltWinters(HOURLY, phi_per_hour=2.0)


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

observations = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=40),  # step to the next index (>1 = zero gap)
        st.one_of(
            st.just(0.0),
            st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
        ),
    ),
    max_size=120,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    obs=observations,
    method=st.sampled_from(METHODS),
    horizon=st.integers(min_value=0, max_value=60),
    ahead=st.integers(min_value=1, max_value=50),
)
def test_forecasts_are_finite_and_non_negative(
    obs: list[tuple[int, float]], method: str, horizon: int, ahead: int
) -> None:
    model = make_forecaster(4, method)  # 6-hour intervals: a week is 28 slots, fast to cover
    index = -3
    for step, value in obs:
        index += step
        model.update(index, value)
        f = model.forecast(index + ahead, horizon)
        assert f.shape == (horizon,)
        assert np.all(np.isfinite(f)) and np.all(f >= 0)
        bound = max((v for _, v in obs), default=0.0) * 5 + 1e-9
        assert np.all(f <= bound)  # the level factor is clamped, nothing explodes
    restored = forecaster_from_state(json.loads(json.dumps(model.to_state())))
    np.testing.assert_array_equal(restored.forecast(index + 1, 10), model.forecast(index + 1, 10))


# --------------------------------------------------------------------------------------------
# Time helpers and metrics
# --------------------------------------------------------------------------------------------


def test_interval_index_and_start_are_exact_and_aware_only() -> None:
    origin = datetime(2024, 1, 1, tzinfo=UTC)
    assert interval_index(origin, origin, 900) == 0
    assert interval_index(origin + timedelta(minutes=14, seconds=59.999999), origin, 900) == 0
    assert interval_index(origin + timedelta(minutes=15), origin, 900) == 1
    assert interval_index(origin - timedelta(microseconds=1), origin, 900) == -1
    plus2 = timezone(timedelta(hours=2))
    assert interval_index(datetime(2024, 1, 1, 3, tzinfo=plus2), origin, 3600) == 1
    for k in (-5, 0, 7, 10_000):
        assert interval_index(interval_start(k, origin, 900), origin, 900) == k
    # across a DST change, indices count elapsed time (the wall clock jumps, the index doesn't)
    paris = ZoneInfo("Europe/Paris")
    before = datetime(2024, 3, 31, 1, 0, tzinfo=paris)
    after = datetime(2024, 3, 31, 3, 0, tzinfo=paris)
    assert interval_index(after, origin, 3600) - interval_index(before, origin, 3600) == 1
    with pytest.raises(InvalidInput):
        interval_index(datetime(2024, 1, 1), origin, 900)
    with pytest.raises(InvalidInput):
        interval_start(0, datetime(2024, 1, 1), 900)
    with pytest.raises(InvalidInput):
        interval_index(origin, origin, 0)
    assert intervals_per_day(900) == 96
    with pytest.raises(InvalidInput):
        intervals_per_day(7 * 60)


def test_aggregate_sums_blocks_and_refuses_partial_ones() -> None:
    np.testing.assert_array_equal(aggregate([1, 2, 3, 4, 5, 6, 7, 8], 4), [10, 26])
    np.testing.assert_array_equal(aggregate([[1, 1, 2, 2], [0, 1, 0, 1]], 2), [[2, 4], [1, 1]])
    with pytest.raises(InvalidInput):
        aggregate([1, 2, 3], 2)
    with pytest.raises(InvalidInput):
        aggregate([1, 2], 0)


def test_metrics_handle_zero_actuals() -> None:
    assert wape([0, 10, 10], [1, 9, 12]) == pytest.approx(4 / 20)
    assert math.isnan(wape([0, 0], [1, 1]))
    assert mape([0, 1, 10], [5, 2, 12], threshold=5) == pytest.approx(0.2)
    assert math.isnan(mape([0, 1], [1, 1], threshold=5))


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


BANK = data_dir() / "anonymous_bank_feb1999_arrivals_15min.csv"


@pytest.mark.skipif(
    not BANK.exists(), reason=f"real data absent: {BANK} (set FLEXFORCE_DATA_DIR to run this)"
)
def test_default_beats_seasonal_naive_on_the_real_bank_data() -> None:
    per_queue: dict[str, list[float]] = {}
    with BANK.open(newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: (r["queue"], r["interval_start"]))
    for r in rows:
        per_queue.setdefault(r["queue"], []).append(float(r["arrivals"]))
    assert {len(v) for v in per_queue.values()} == {28 * 96}  # a full grid
    hourly = {q: aggregate(v, 4) for q, v in per_queue.items()}
    y_all = {q: y for q, y in hourly.items() if q in ("PS", "NW", "NE")}  # the busy queues
    for name, y in y_all.items():
        naive = rolling_wape(y, lambda: SeasonalNaive(HOURLY), HOURLY, WEEK_H, step=3)
        chosen = rolling_wape(y, lambda: make_forecaster(HOURLY), HOURLY, WEEK_H, step=3)
        assert chosen < naive, (name, chosen, naive)
