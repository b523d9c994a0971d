"""Tests for allocator.staffing.

Where the reference numbers come from
-------------------------------------
* pyworkforce 0.5.1 (``pyworkforce.queuing.ErlangC``), run once in a throw-away virtualenv (it is
  *not* a dependency).  ``ErlangC(transactions=100, asa=20/60, aht=3, interval=30,
  shrinkage=0.3).required_positions(service_level=0.8, max_occupancy=0.85)`` returned
  ``raw_positions=14, positions=20, service_level=0.8883500191794669,
  occupancy=0.7142857142857143, waiting_probability=0.1741319335950498``; the per-agent values
  below were printed by its ``waiting_probability`` / ``service_level`` methods.
* The classic "360 calls per 30 minutes, AHT 240 s, 20 s target" example (48 Erlangs).  Note:
  with 55 agents Erlang C gives P(wait) = 0.23870..., not 0.2679; we pin the value against an
  exact rational computation (below) *and* against pyworkforce.
* Exact Erlang C from the factorial formula in ``fractions.Fraction`` arithmetic (independent of
  the recursion used by the module).
* Erlang A: high-precision (50 digits) values from the incomplete-gamma closed form using mpmath
  (run once, offline; mpmath is not a dependency), plus an *in-test* independent computation
  that does not use the module's formula at all: the truncated birth-death stationary
  distribution and an RK4 integration of the tagged customer's position in the queue.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.staffing import (
    abandonment_probability,
    concave_envelope,
    erlang_b,
    erlang_c_wait_probability,
    offered_load,
    required_agents,
    rostered_fte,
    service_level,
    service_level_curve,
    workload_fte,
)

# --------------------------------------------------------------------------------------------
# Exact references
# --------------------------------------------------------------------------------------------


def exact_erlang_b(a: Fraction, n: int) -> Fraction:
    """Erlang B from its definition (a^n/n!) / sum_k a^k/k!, exactly."""
    terms = [a**k / math.factorial(k) for k in range(n + 1)]
    return terms[-1] / sum(terms)


def exact_erlang_c(a: Fraction, n: int) -> Fraction:
    """Erlang C from the textbook factorial formula, exactly (n > a)."""
    top = a**n / math.factorial(n) * Fraction(n) / (n - a)
    return top / (sum(a**k / math.factorial(k) for k in range(n)) + top)


def test_erlang_c_matches_exact_fractions_on_grid() -> None:
    loads = [Fraction(1, 2), Fraction(1), Fraction(3), Fraction(37, 4), Fraction(20), Fraction(48)]
    for a in loads:
        ns = list(range(math.floor(a) + 1, math.floor(a) + 15))
        got = erlang_c_wait_probability(float(a), ns)
        want = [float(exact_erlang_c(a, n)) for n in ns]
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)


def test_erlang_b_matches_exact_fractions_on_grid() -> None:
    for a in [Fraction(1, 3), Fraction(2), Fraction(15, 2), Fraction(40), Fraction(90)]:
        ns = list(range(0, 130, 7))
        got = erlang_b(float(a), ns)
        want = [float(exact_erlang_b(a, n)) for n in ns]
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("a", [1000, 2500])
def test_erlang_b_warm_start_is_exact_for_large_loads(a: int) -> None:
    """Loads above 81 Erlangs use the warm-started recursion; compare with exact arithmetic."""
    ns = [a - 40, a - 5, a, a + 7, a + 30, a + 120]
    af = Fraction(a)
    inv = Fraction(1)  # 1/B(0)
    exact: dict[int, float] = {}
    for k in range(1, max(ns) + 1):
        inv = 1 + k / af * inv
        if k in ns:
            exact[k] = float(1 / inv)
    got = erlang_b(a, ns)
    np.testing.assert_allclose(got, [exact[n] for n in ns], rtol=1e-12)
    c = erlang_c_wait_probability(a, [n for n in ns if n > a])
    assert ((c > 0) & (c <= 1)).all()


def test_textbook_48_erlang_example() -> None:
    # 360 calls / 30 min, AHT 240 s -> 48 Erlangs.
    assert float(offered_load(360, 240, 1800)) == pytest.approx(48.0)
    pw = erlang_c_wait_probability(48, [49, 50, 51, 52, 53, 55, 60])
    pyworkforce = [
        0.8367565744957725,
        0.6944556111968345,
        0.5714403854510917,
        0.466030548906436,
        0.3765419536568787,
        0.23870093637800924,
        0.06339196529509812,
    ]
    np.testing.assert_allclose(pw, pyworkforce, rtol=1e-12)
    assert float(pw[5]) == pytest.approx(float(exact_erlang_c(Fraction(48), 55)), rel=1e-14)
    sl = service_level(360, 240, 1800, [49, 50, 51, 52, 53, 55, 60], 20)
    np.testing.assert_allclose(
        sl,
        [
            0.2301467872307993,
            0.4121560163741378,
            0.5549617803320643,
            0.666074520024649,
            0.751768245174333,
            0.8667964881728509,
            0.9766793992324798,
        ],
        rtol=1e-12,
    )
    # 80/20 without an occupancy cap needs 54 agents (pyworkforce: raw_positions=54, SL 0.8172).
    assert int(required_agents(360, 240, 1800, 0.8, 20, max_occupancy=1.0)) == 54
    assert float(service_level(360, 240, 1800, 54, 20)) == pytest.approx(0.8172475210146837)


def test_pyworkforce_required_positions_example() -> None:
    # ErlangC(transactions=100, asa=20/60 min, aht=3 min, interval=30 min, shrinkage=0.3)
    arrivals, aht_s, interval_s, target_s = 100, 180, 1800, 20
    agents = int(required_agents(arrivals, aht_s, interval_s, 0.8, target_s, max_occupancy=0.85))
    assert agents == 14
    assert math.ceil(float(rostered_fte(agents, 0.3))) == 20
    assert float(service_level(arrivals, aht_s, interval_s, agents, target_s)) == pytest.approx(
        0.8883500191794669, rel=1e-12
    )
    a = float(offered_load(arrivals, aht_s, interval_s))
    assert a / agents == pytest.approx(0.7142857142857143)
    assert float(erlang_c_wait_probability(a, agents)) == pytest.approx(0.1741319335950498)
    np.testing.assert_allclose(
        erlang_c_wait_probability(a, [11, 12, 13, 15]),
        [0.6821182046893323, 0.4493882242982709, 0.285270453036493, 0.10204236700798798],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        service_level(arrivals, aht_s, interval_s, [11, 12, 13, 15], target_s),
        [0.38961381172915344, 0.6401580403740066, 0.7955947884177831, 0.9414528428690223],
        rtol=1e-12,
    )


def test_occupancy_cap_binds() -> None:
    # 10 Erlangs, a lax SL target: occupancy 0.5 forces 20 agents.
    assert int(required_agents(100, 180, 1800, 0.5, 20, max_occupancy=0.5)) == 20
    # Rounding trap: 8.5 / 0.85 is 10.000000000000002 in floating point; 10 agents suffice.
    assert int(required_agents(85, 180, 1800, 0.01, 20, max_occupancy=0.85)) == 10


# --------------------------------------------------------------------------------------------
# Erlang A
# --------------------------------------------------------------------------------------------

# (lam per s, aht_s, agents, patience_s, target_s) -> (SL, P(abandon)), mpmath 50 digits.
ERLANG_A_REFERENCE = [
    ((0.2, 240, 48, 120, 20), (0.7876655954825639, 0.06729370120594354)),
    ((0.2, 240, 54, 120, 20), (0.9365387161270994, 0.02140200996162962)),
    ((0.2, 240, 40, 120, 20), (0.4404113533637032, 0.18216569314621203)),
    ((0.05, 300, 16, 60, 30), (0.8381548865632893, 0.10791804575047544)),
    ((0.0005, 1800, 2, 3600, 600), (0.8401233898225137, 0.062077689742138537)),
    ((2.0, 180, 330, 30, 10), (0.8830428065449363, 0.09087591651115902)),
]


@pytest.mark.parametrize(("case", "expected"), ERLANG_A_REFERENCE)
def test_erlang_a_matches_high_precision_reference(
    case: tuple[float, float, int, float, float], expected: tuple[float, float]
) -> None:
    lam, aht, n, patience, t = case
    sl = float(service_level(lam * 3600, aht, 3600, n, t, patience_s=patience))
    ab = float(abandonment_probability(lam * 3600, aht, 3600, n, patience_s=patience))
    assert sl == pytest.approx(expected[0], abs=1e-12)
    assert ab == pytest.approx(expected[1], abs=1e-12)


def birth_death_erlang_a(
    lam: float, aht: float, n: int, patience: float, t: float, dt: float = 0.02
) -> tuple[float, float]:
    """Independent Erlang A: stationary distribution + RK4 on the tagged customer's queue position.

    f[m](s) = probability the tagged arrival is still queued with m customers ahead at time s.
    With m ahead it advances at rate n mu + m theta and abandons at rate theta.  SL adds the
    no-wait mass and the service flux n mu f[0] integrated over [0, t].
    """
    mu, theta = 1.0 / aht, 1.0 / patience
    kmax = 400
    w = [1.0]
    for j in range(1, n + kmax + 1):
        death = j * mu if j <= n else n * mu + (j - n) * theta
        w.append(w[-1] * lam / death)
    pi = np.array(w) / sum(w)
    no_wait = float(pi[:n].sum())
    k = np.arange(kmax + 1)
    out_rate = n * mu + (k + 1) * theta
    abandon = float((pi[n:] * (k + 1) * theta / out_rate).sum())
    # state: f[0..kmax] and, last, the served mass so far (d/ds = n mu f[0]).
    x = np.append(pi[n:], 0.0)

    def deriv(x: np.ndarray) -> np.ndarray:
        f = x[:-1]
        d = -out_rate * f
        d[:-1] += (out_rate[1:] - theta) * f[1:]  # inflow from m+1 at n mu + (m+1) theta
        return np.append(d, n * mu * f[0])

    for _ in range(round(t / dt)):
        k1 = deriv(x)
        k2 = deriv(x + dt / 2 * k1)
        k3 = deriv(x + dt / 2 * k2)
        k4 = deriv(x + dt * k3)
        x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    served = float(x[-1])
    return no_wait + served, abandon


@pytest.mark.parametrize(
    "case",
    [
        (0.05, 300, 16, 60, 30),
        (0.02, 300, 5, 120, 20),
        (0.1, 120, 10, 30, 15),
        (0.03, 600, 14, 300, 40),
    ],
)
def test_erlang_a_matches_independent_birth_death_model(
    case: tuple[float, float, int, float, float],
) -> None:
    lam, aht, n, patience, t = case
    sl_ref, ab_ref = birth_death_erlang_a(lam, aht, n, patience, t)
    sl = float(service_level(lam * 1800, aht, 1800, n, t, patience_s=patience))
    ab = float(abandonment_probability(lam * 1800, aht, 1800, n, patience_s=patience))
    assert sl == pytest.approx(sl_ref, abs=1e-7)
    assert ab == pytest.approx(ab_ref, abs=1e-10)


def test_erlang_a_extremes() -> None:
    # No agents: nothing answered, everybody abandons.
    assert float(service_level(360, 240, 1800, 0, 20, patience_s=120)) == 0.0
    assert float(abandonment_probability(360, 240, 1800, 0, patience_s=120)) == 1.0
    # Heavily overloaded with very patient callers: no overflow, fluid limit 1 - n/a abandons.
    ab = float(abandonment_probability(3600, 240, 3600, 120, patience_s=1e6))
    assert ab == pytest.approx(1 - 120 / 240, abs=1e-3)
    sl = service_level(3600, 240, 3600, [120, 239, 240, 260], 20, patience_s=1e6)
    assert np.isfinite(sl).all() and ((sl >= 0) & (sl <= 1)).all()
    # target 0 -> P(no wait)
    pw = 1 - float(service_level(360, 240, 1800, 50, 0.0, patience_s=120))
    assert 0 < pw < 1
    # infinite patience is Erlang C
    assert float(service_level(360, 240, 1800, 55, 20, patience_s=math.inf)) == float(
        service_level(360, 240, 1800, 55, 20)
    )


# --------------------------------------------------------------------------------------------
# Behaviour, validation, shapes
# --------------------------------------------------------------------------------------------


def test_zero_arrivals() -> None:
    assert float(service_level(0, 300, 1800, 0, 20)) == 1.0
    assert float(service_level(0, 300, 1800, 3, 20, patience_s=60)) == 1.0
    assert int(required_agents(0, 300, 1800, 0.9, 20)) == 0
    assert int(required_agents(0, 300, 1800, 0.9, 20, patience_s=60)) == 0
    assert float(abandonment_probability(0, 300, 1800, 0, patience_s=60)) == 0.0
    np.testing.assert_array_equal(service_level_curve(0, 300, 1800, 20, 4), np.ones(5))
    assert float(erlang_c_wait_probability(0, 0)) == 1.0  # agents <= traffic convention
    assert float(erlang_c_wait_probability(0, 2)) == 0.0


def test_erlang_c_is_one_when_not_stable() -> None:
    np.testing.assert_array_equal(erlang_c_wait_probability(10.0, [0, 5, 10]), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(service_level(100, 180, 1800, [0, 5, 10], 20), [0, 0, 0])


def test_broadcasting_and_shapes() -> None:
    arrivals = np.array([[0.0], [50.0], [400.0]])
    aht = np.array([120.0, 300.0, 600.0, 900.0])
    req = required_agents(arrivals, aht, 1800, 0.8, 20)
    assert req.shape == (3, 4) and req.dtype == np.int64
    for i in range(3):
        for j in range(4):
            assert req[i, j] == int(required_agents(arrivals[i, 0], aht[j], 1800, 0.8, 20))
    sl = service_level(arrivals, aht, 1800, req, 20)
    assert sl.shape == (3, 4) and (sl >= 0.8).all()
    assert service_level(100, 180, 1800, 14, 20).shape == ()


def test_fractional_agents_interpolate_linearly() -> None:
    lo, hi = service_level(100, 180, 1800, [13, 14], 20)
    mid = float(service_level(100, 180, 1800, 13.25, 20))
    assert mid == pytest.approx(0.75 * lo + 0.25 * hi)
    xs = np.linspace(0, 20, 401)
    for patience in (None, 90.0):
        curve = service_level(100, 180, 1800, xs, 20, patience_s=patience)
        assert (np.diff(curve) >= -1e-15).all()


def test_workload_and_rostered_fte() -> None:
    assert float(workload_fte(100, 180, 1800)) == pytest.approx(10.0)
    assert float(workload_fte(100, 180, 1800, max_occupancy=0.8)) == pytest.approx(12.5)
    np.testing.assert_allclose(rostered_fte([7, 14], 0.3), [10.0, 20.0])
    np.testing.assert_allclose(rostered_fte(10, [0.0, 0.5]), [10.0, 20.0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: service_level(-1, 300, 1800, 3, 20), "arrivals"),
        (lambda: service_level(10, 0, 1800, 3, 20), "aht_s"),
        (lambda: service_level(10, 300, 0, 3, 20), "interval_s"),
        (lambda: service_level(10, 300, 1800, -1, 20), "agents"),
        (lambda: service_level(10, 300, 1800, 3, -5), "target_s"),
        (lambda: service_level(10, 300, 1800, 3, 20, patience_s=0), "patience_s"),
        (lambda: service_level(float("nan"), 300, 1800, 3, 20), "arrivals"),
        (lambda: required_agents(10, 300, 1800, 1.0, 20), "target_sl"),
        (lambda: required_agents(10, 300, 1800, 0.0, 20), "target_sl"),
        (lambda: required_agents(10, 300, 1800, 0.8, 20, max_occupancy=0.0), "max_occupancy"),
        (lambda: required_agents(10, 300, 1800, 0.8, 20, max_occupancy=1.2), "max_occupancy"),
        (lambda: workload_fte(10, 300, 1800, max_occupancy=0), "max_occupancy"),
        (lambda: rostered_fte(10, 1.0), "shrinkage"),
        (lambda: rostered_fte(10, -0.1), "shrinkage"),
        (lambda: erlang_c_wait_probability(5, 6.5), "whole"),
        (lambda: erlang_c_wait_probability(-5, 6), "traffic"),
        (lambda: service_level_curve(10, 300, 1800, 20, -1), "max_agents"),
        (lambda: concave_envelope([0, 0], [1, 2]), "increasing"),
        (lambda: concave_envelope([0, 1], [1]), "same length"),
        (lambda: abandonment_probability(10, 300, 1800, 3, patience_s=math.inf), "patience"),
    ],
)
def test_validation_errors(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=message):
        call()


def test_concave_envelope_on_sl_curve() -> None:
    ys = service_level_curve(360, 240, 1800, 20, 70)
    xs = np.arange(ys.size, dtype=np.float64)
    hx, hy = concave_envelope(xs, ys)
    assert hx[0] == 0 and hx[-1] == 70 and hy[0] == ys[0] and hy[-1] == ys[-1]
    # the S-shaped curve's convex part (0 .. ~48 agents) is bridged by a single chord
    assert hx[1] > 48
    assert np.all(np.interp(xs, hx, hy) >= ys - 1e-12)


# --------------------------------------------------------------------------------------------
# Property tests (hypothesis)
# --------------------------------------------------------------------------------------------

patience_st = st.one_of(st.none(), st.floats(min_value=5.0, max_value=1e5))
queue_st = st.tuples(
    st.floats(min_value=0.0, max_value=3000.0),  # arrivals per 30 min
    st.floats(min_value=30.0, max_value=3600.0),  # aht_s
    st.floats(min_value=0.0, max_value=600.0),  # target_s
    patience_st,
)
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(queue_st)
def test_service_level_monotone_and_bounded(q: tuple[float, float, float, float | None]) -> None:
    arrivals, aht, target, patience = q
    a = arrivals * aht / 1800
    agents = np.arange(0, int(a + 6 * math.sqrt(a) + 12))
    sl = service_level(arrivals, aht, 1800, agents, target, patience_s=patience)
    assert ((sl >= 0) & (sl <= 1)).all()
    assert (np.diff(sl) >= -1e-12).all()
    curve = service_level_curve(arrivals, aht, 1800, target, int(agents[-1]), patience_s=patience)
    assert (np.diff(curve) >= 0).all()
    np.testing.assert_allclose(curve, sl, atol=1e-12)


@PROPS
@given(
    queue_st,
    st.floats(min_value=0.05, max_value=0.99),
    st.floats(min_value=0.5, max_value=1.0),
)
def test_required_agents_minimal_and_sufficient(
    q: tuple[float, float, float, float | None], target_sl: float, max_occ: float
) -> None:
    arrivals, aht, target, patience = q
    n = int(required_agents(arrivals, aht, 1800, target_sl, target, max_occ, patience_s=patience))
    a = arrivals * aht / 1800
    if a == 0:
        assert n == 0
        return
    sl = float(service_level(arrivals, aht, 1800, n, target, patience_s=patience))
    assert sl >= target_sl and a / n <= max_occ
    if n > 1:
        sl_prev = float(service_level(arrivals, aht, 1800, n - 1, target, patience_s=patience))
        assert sl_prev < target_sl + 1e-12 or a / (n - 1) > max_occ


@PROPS
@given(
    st.floats(min_value=1.0, max_value=1000.0),
    st.floats(min_value=30.0, max_value=3600.0),
    st.floats(min_value=0.0, max_value=600.0),
    st.floats(min_value=1.0, max_value=30.0),
)
def test_erlang_a_with_huge_patience_approaches_erlang_c(
    arrivals: float, aht: float, target: float, extra: float
) -> None:
    # "Huge" is relative to the queue's own time scale: right at a = n the Erlang C queue holds
    # thousands of callers for days, and even patience 1e10 s visibly shortens it.  With at
    # least one spare agent, 1e12 s is far beyond every wait, so the models must agree.
    a = arrivals * aht / 1800
    agents = math.ceil(a + extra)
    c = float(service_level(arrivals, aht, 1800, agents, target))
    ea = float(service_level(arrivals, aht, 1800, agents, target, patience_s=1e12))
    assert ea == pytest.approx(c, abs=1e-4)


@PROPS
@given(
    st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=1, max_size=40),
    st.randoms(use_true_random=False),
)
def test_concave_envelope_properties(ys_list: list[float], rnd: object) -> None:
    ys = np.array(ys_list)
    xs = np.cumsum(np.ones(ys.size)) - 1
    hx, hy = concave_envelope(xs, ys)
    assert hx[0] == xs[0] and hx[-1] == xs[-1]
    assert hy[0] == ys[0] and hy[-1] == ys[-1]
    # vertices are original points
    idx = np.searchsorted(xs, hx)
    np.testing.assert_array_equal(ys[idx], hy)
    # on or above every point
    scale = 1e-9 * (1 + np.abs(ys).max())
    assert (np.interp(xs, hx, hy) >= ys - scale).all()
    # concave: slopes strictly decreasing
    if hx.size > 2:
        slopes = np.diff(hy) / np.diff(hx)
        assert (np.diff(slopes) < 0).all()
