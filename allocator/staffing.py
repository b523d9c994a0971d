"""Queueing-based staffing: Erlang B, Erlang C (M/M/c) and Erlang A (M/M/c+M), vectorised.

Why this module exists
----------------------
The allocator has to turn forecast contact volumes into *agent requirements* (and, for the
optimiser, into service-level-versus-agents curves) for thousands of queue x period cells per
solve.  Everything here is therefore numpy-vectorised over arrays of cases and free of I/O,
clocks and global state, so the optimiser can call it inside a solve loop.

Conventions (all functions)
---------------------------
* ``arrivals`` are contacts offered per interval of ``interval_s`` seconds, ``aht_s`` is the mean
  handle time in seconds, so the offered load is ``a = arrivals * aht_s / interval_s`` Erlangs.
* ``agents`` are *productive* agents (on the phones).  Rostered FTE = agents / (1 - shrinkage),
  see :func:`rostered_fte`.
* Service level ("SL") = fraction of *arriving* contacts answered within ``target_s`` seconds.
* Occupancy is the *offered-load* occupancy ``a / agents``.  For Erlang C this is the exact
  long-run utilisation; for Erlang A the true utilisation is lower (abandoned contacts are not
  handled), so ``a / agents`` is a deliberately conservative upper bound.
* Zero arrivals give SL = 1.0 and a requirement of 0 agents.
* All array arguments broadcast against each other (numpy rules).

Numerics
--------
* Erlang B uses the classical stable recursion ``B(n) = a B(n-1) / (n + a B(n-1))`` (no
  factorials, no overflow).  To get ``B(n)`` the recursion is *warm-started* at
  ``n0 = floor(min(n, a) - 9 sqrt(a))`` (or exactly from ``B(0) = 1`` if that is < 0) from the
  crude value ``B(n0) := 1``.  This is rigorous, not a heuristic: in terms of ``I = 1/B`` the
  recursion ``I(k) = 1 + (k/a) I(k-1)`` is linear, so a relative error in ``I`` is multiplied
  by exactly ``1 - B(k)`` per step, and since the carried load ``a (1 - B(k))`` is below ``k``,
  ``1 - B(k) < k/a``.  The start error is below 1 in relative terms and the product of ``k/a``
  over the ``>= 9 sqrt(a)`` steps up to ``min(n, a)`` is below ``exp(-39)``, i.e. far under
  double precision.  One evaluation thus costs ``O(sqrt(a) + max(n - a, 0))`` steps instead of
  ``O(n)``.
* Erlang C: ``C = n B / (n - a (1 - B))`` for ``n > a``; ``P(W > t) = C exp(-(n - a) t / aht)``.
* Erlang A: see :func:`service_level` -- exact closed form reduced to a one-dimensional integral
  of a log-concave function, evaluated with Gauss-Legendre quadrature on the window where the
  integrand is within ``exp(-45)`` of its maximum.  Accuracy ~1e-12 absolute (tested against an
  independent birth-death/ODE computation and high-precision incomplete-gamma values).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "abandonment_probability",
    "concave_envelope",
    "erlang_b",
    "erlang_c_wait_probability",
    "offered_load",
    "required_agents",
    "rostered_fte",
    "service_level",
    "service_level_curve",
    "upper_hull_indices",
    "workload_fte",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Warm-start width (in standard deviations sqrt(a)) for the Erlang B recursion; see module doc.
_WARM_START_SIGMAS = 9.0
# Erlang A quadrature: integrate where log-integrand >= max - _LOG_WINDOW.
_LOG_WINDOW = 45.0
_GL_PANELS = 2
_GL_NODES = 24
_NEWTON_STEPS = 6


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _as_float_array(name: str, value: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not contain NaN")
    return arr


def _check_nonneg_finite(name: str, arr: FloatArray) -> None:
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    if (arr < 0).any():
        raise ValueError(f"{name} must be >= 0 (got min {float(arr.min())!r})")


def _check_positive_finite(name: str, arr: FloatArray) -> None:
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    if (arr <= 0).any():
        raise ValueError(f"{name} must be > 0 (got min {float(arr.min())!r})")


def _check_scalar_positive(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    return v


def _check_scalar_nonneg(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})")
    return v


def _check_patience(patience_s: float | None) -> float | None:
    """None or +inf mean 'infinitely patient' (Erlang C); otherwise a finite mean > 0."""
    if patience_s is None:
        return None
    p = float(patience_s)
    if math.isnan(p) or p <= 0:
        raise ValueError(f"patience_s must be > 0 or None (got {patience_s!r})")
    return None if math.isinf(p) else p


def _integral_agents(name: str, agents: npt.ArrayLike) -> IntArray:
    arr = _as_float_array(name, agents)
    _check_nonneg_finite(name, arr)
    if (arr != np.floor(arr)).any():
        raise ValueError(f"{name} must be whole numbers of agents")
    return arr.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Basic quantities
# --------------------------------------------------------------------------------------------


def offered_load(arrivals: npt.ArrayLike, aht_s: npt.ArrayLike, interval_s: float) -> FloatArray:
    """Offered load in Erlangs, ``arrivals * aht_s / interval_s`` (validated, broadcast)."""
    arr = _as_float_array("arrivals", arrivals)
    _check_nonneg_finite("arrivals", arr)
    aht = _as_float_array("aht_s", aht_s)
    _check_positive_finite("aht_s", aht)
    interval = _check_scalar_positive("interval_s", interval_s)
    out: FloatArray = arr * aht / interval
    return out


def workload_fte(
    arrivals: npt.ArrayLike,
    aht_s: npt.ArrayLike,
    interval_s: float,
    max_occupancy: float = 1.0,
) -> FloatArray:
    """Plain workload in agent units: ``arrivals * aht_s / interval_s / max_occupancy``.

    Used where queueing does not drive the requirement: IT incidents with resolution-time SLAs
    measured in hours, and project work, where the only question is how much effort fits in the
    period.  ``max_occupancy`` (in (0, 1]) leaves headroom for context switching.
    """
    occ = _check_max_occupancy(max_occupancy)
    out: FloatArray = offered_load(arrivals, aht_s, interval_s) / occ
    return out


def rostered_fte(agents: npt.ArrayLike, shrinkage: npt.ArrayLike) -> FloatArray:
    """Rostered FTE needed so that ``agents`` are productive: ``agents / (1 - shrinkage)``.

    Shrinkage (breaks, training, absence, meetings) must satisfy ``0 <= shrinkage < 1``.  The
    result is fractional on purpose; rounding to whole people is a rostering decision.
    """
    ag = _as_float_array("agents", agents)
    _check_nonneg_finite("agents", ag)
    sh = _as_float_array("shrinkage", shrinkage)
    if not np.isfinite(sh).all() or (sh < 0).any() or (sh >= 1).any():
        raise ValueError("shrinkage must satisfy 0 <= shrinkage < 1")
    out: FloatArray = ag / (1.0 - sh)
    return out


def _check_max_occupancy(max_occupancy: float) -> float:
    occ = float(max_occupancy)
    if not (0.0 < occ <= 1.0):
        raise ValueError(f"max_occupancy must be in (0, 1] (got {max_occupancy!r})")
    return occ


# --------------------------------------------------------------------------------------------
# Erlang B / C
# --------------------------------------------------------------------------------------------


def _erlang_b_int(a: FloatArray, n: IntArray) -> FloatArray:
    """Erlang B blocking probability for load ``a`` >= 0 and integer ``n`` >= 0 (broadcast).

    Vectorised recursion with the warm start described in the module docstring.  Cases are
    sorted by the number of steps they need, so step ``j`` touches only a contiguous prefix
    (a view, no fancy indexing) of the still-running cases.
    """
    a_b, n_b = np.broadcast_arrays(a, n)
    shape = a_b.shape
    af = a_b.ravel().astype(np.float64)
    nf = n_b.ravel().astype(np.int64)
    out = np.empty(af.shape, dtype=np.float64)
    # a == 0: nobody arrives, so nobody is blocked unless there are no servers at all.
    zero = af <= 0.0
    out[zero] = (nf[zero] == 0).astype(np.float64)
    pos = ~zero
    if pos.any():
        ap = af[pos]
        npos = nf[pos]
        # Start 9 sqrt(a) below min(n, a) (see module docstring); from 0 (exact) if that is < 0.
        n0 = np.maximum(
            np.floor(np.minimum(npos, ap) - _WARM_START_SIGMAS * np.sqrt(ap)), 0.0
        ).astype(np.int64)
        steps = npos - n0
        order = np.argsort(-steps, kind="stable")
        a_s = ap[order]
        n0_s = n0[order].astype(np.float64)
        steps_s = steps[order]
        b = np.ones(a_s.shape, dtype=np.float64)
        max_steps = int(steps_s[0]) if steps_s.size else 0
        # count_ge[j] = number of cases needing at least j steps (prefix length at step j).
        counts = np.bincount(steps_s, minlength=max_steps + 1)
        count_ge = np.cumsum(counts[::-1])[::-1]
        for j in range(1, max_steps + 1):
            k = int(count_ge[j])
            ab = a_s[:k] * b[:k]
            b[:k] = ab / (n0_s[:k] + j + ab)
        res = np.empty_like(b)
        res[order] = b
        out[pos] = res
    return out.reshape(shape)


def erlang_b(traffic: npt.ArrayLike, agents: npt.ArrayLike) -> FloatArray:
    """Erlang B (M/M/c/c loss) blocking probability; ``agents`` must be whole numbers >= 0.

    Exposed because Erlang C and Erlang A are both built on it and tests pin it independently.
    """
    a = _as_float_array("traffic", traffic)
    _check_nonneg_finite("traffic", a)
    n = _integral_agents("agents", agents)
    return _erlang_b_int(a, n)


def _erlang_c_from_b(a: FloatArray, n: FloatArray, b: FloatArray) -> FloatArray:
    """P(wait > 0) from Erlang B; 1.0 where ``n <= a`` (unstable queue: everybody waits)."""
    stable = n > a
    with np.errstate(divide="ignore", invalid="ignore"):
        c = n * b / (n - a * (1.0 - b))
    out: FloatArray = np.where(stable, np.clip(c, 0.0, 1.0), 1.0)
    return out


def erlang_c_wait_probability(traffic: npt.ArrayLike, agents: npt.ArrayLike) -> FloatArray:
    """Erlang C: probability that a contact has to wait (M/M/c, infinite patience).

    ``agents`` must be whole numbers (float arrays holding whole numbers are fine).  Returns 1.0
    where ``agents <= traffic``: the queue is then unstable and, in steady state, every contact
    waits.  Fractional agents are handled by :func:`service_level` (interpolation), not here,
    so that this function stays the textbook quantity.
    """
    a = _as_float_array("traffic", traffic)
    _check_nonneg_finite("traffic", a)
    n = _integral_agents("agents", agents)
    b = _erlang_b_int(a, n)
    a_b, n_b = np.broadcast_arrays(a, n.astype(np.float64))
    return _erlang_c_from_b(a_b, n_b, b)


def _sl_erlang_c(
    a: FloatArray, aht: FloatArray, n: FloatArray, b: FloatArray, t: float
) -> FloatArray:
    """Erlang C service level at integer ``n`` given Erlang B value ``b`` (all same shape)."""
    c = _erlang_c_from_b(a, n, b)
    with np.errstate(over="ignore"):
        sl = 1.0 - c * np.exp(-(n - a) * t / aht)
    out: FloatArray = np.where(a <= 0.0, 1.0, np.where(n > a, np.clip(sl, 0.0, 1.0), 0.0))
    return out


# --------------------------------------------------------------------------------------------
# Erlang A (M/M/n+M, "Palm" model)
# --------------------------------------------------------------------------------------------
#
# Derivation (kept here because the optimiser's SLA penalties rest on it).  Arrival rate lam,
# service rate mu = 1/aht, abandonment rate theta = 1/patience (exponential patience), n agents.
# The number in system is a birth-death process; an arrival (PASTA) finding j < n is answered at
# once.  One finding k others queued ahead moves up at rate n mu + m theta (m ahead) and leaves
# itself at rate theta; so it is served with probability n mu / (n mu + (k+1) theta), and its
# time to leave the queue is a sum of Exp(n mu + i theta), i = 1..k+1, independent of how it
# leaves.  Summing over the stationary distribution and exchanging sum and integral (the sum of
# such exponentials has e^{-theta S} ~ Beta(n mu/theta + 1, k + 1)) gives, with
#
#     g(s) = -(n mu + theta) s + (lam / theta) (1 - e^{-theta s}),   I(T) = int_0^T e^{g(s)} ds,
#     B    = Erlang B(n, lam / mu),
#
#     SL(t)    = [(1 - B) + B n mu I(t)] / [1 + B lam I(inf)]          (answered within t)
#     P(wait)  =  B (1 + lam I(inf))      / [1 + B lam I(inf)]
#     P(aband) =  B (1 + (lam - n mu) I(inf)) / [1 + B lam I(inf)].
#
# 1 + lam I(inf) is Mandelbaum & Zeltyn's A(n mu/theta, lam/theta) (= x e^y y^-x gamma(x, y)),
# so P(wait) is their formula A E / (1 + (A - 1) E); as theta -> 0 every expression tends to
# its Erlang C counterpart (n mu I(t) -> n/(n-a) (1 - e^{-(n mu - lam) t}), etc.).  No
# approximation is made in the model; the only numerical step is the quadrature of I.


def _log_integral(
    lam: FloatArray, nmu: FloatArray, theta: float, upper: float | None
) -> FloatArray:
    """``log I(upper)`` for 1-D arrays ``lam > 0``, ``nmu >= 0``; ``upper=None`` = infinity.

    ``g`` is strictly concave (``g'' = -lam theta e^{-theta s} < 0``), so the integrand is
    unimodal and log-concave.  We locate the mode, then the window ``[L, R]`` where
    ``g >= max g - 45`` by Newton's method (for a concave function, Newton iterates started
    outside that window stay outside it, so every iterate is a safe bound), and integrate with
    composite Gauss-Legendre on the window in log space -- no overflow even when ``max g`` is in
    the tens of thousands (overloaded queue, very patient callers).
    """
    rate = nmu + theta
    lam_c = lam[:, None]
    rate_c = rate[:, None]

    def g(s: FloatArray) -> FloatArray:
        r: FloatArray = -rate * s - lam * np.expm1(-theta * s) / theta
        return r

    def dg(s: FloatArray) -> FloatArray:
        r: FloatArray = -rate + lam * np.exp(-theta * s)
        return r

    ratio = lam / rate
    free_mode = np.where(ratio > 1.0, np.log(np.maximum(ratio, 1.0)) / theta, 0.0)
    mode = free_mode if upper is None else np.minimum(free_mode, upper)
    g_max = g(mode)  # maximum of g over [0, upper]
    level = g_max - _LOG_WINDOW
    tiny = np.finfo(np.float64).tiny

    def scale(s: FloatArray) -> FloatArray:
        """Local length scale of g at s: 1 / max(sqrt|g''|, |g'|)."""
        r: FloatArray = 1.0 / np.maximum(np.sqrt(lam * theta * np.exp(-theta * s)), np.abs(dg(s)))
        return r

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # Right end: g decreases right of the unconstrained mode.  Tangent at one local scale
        # past it, then Newton, which approaches the level crossing monotonically from the right.
        s1 = free_mode + scale(free_mode)
        right = np.maximum(s1 + (g(s1) - level) / np.maximum(-dg(s1), tiny), s1)
        for _ in range(_NEWTON_STEPS):
            right = right + (g(right) - level) / np.maximum(-dg(right), tiny)
        if upper is not None:
            right = np.minimum(right, upper)
        right = np.maximum(right, mode)

        # Left end: only when the (clipped) mode is away from 0; g increases left of it, and
        # Newton from the left approaches the level crossing monotonically.
        has_left = mode > 0.0
        s1 = np.where(has_left, np.maximum(mode - scale(mode), 0.0), 0.0)
        d1 = np.where(has_left, dg(s1), 1.0)
        left = np.minimum(s1 - (g(s1) - level) / np.maximum(d1, tiny), s1)
        for _ in range(_NEWTON_STEPS):
            left_pos = np.maximum(left, 0.0)
            d1 = np.where(has_left & (left > 0.0), dg(left_pos), 1.0)
            step = (g(left_pos) - level) / np.maximum(d1, tiny)
            left = np.where(has_left & (left > 0.0), left - step, left)
        left = np.where(has_left, np.clip(left, 0.0, mode), 0.0)

    width = right - left
    nodes = left[:, None] + width[:, None] * _GL_UNIT[None, :]
    vals = -rate_c * nodes - lam_c * np.expm1(-theta * nodes) / theta - g_max[:, None]
    total = np.exp(vals) @ _GL_WEIGHTS
    with np.errstate(divide="ignore"):
        out: FloatArray = g_max + np.log(total * width)
    return out


def _gl_rule() -> tuple[FloatArray, FloatArray]:
    """Composite Gauss-Legendre nodes on [0, 1] and weights summing to 1."""
    x, w = np.polynomial.legendre.leggauss(_GL_NODES)
    p = np.arange(_GL_PANELS, dtype=np.float64)[:, None]
    unit: FloatArray = ((p + (x[None, :] + 1.0) / 2.0) / _GL_PANELS).ravel()
    weights: FloatArray = np.tile(w, _GL_PANELS) / (2.0 * _GL_PANELS)
    return unit, weights


_GL_UNIT, _GL_WEIGHTS = _gl_rule()


def _erlang_a_parts(
    lam: FloatArray, aht: FloatArray, n: FloatArray, b: FloatArray, patience: float, t: float | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """For 1-D arrays with ``lam > 0``: (log SL numerator, log denominator, log P(aband) num).

    ``t=None`` skips the SL numerator (returns zeros there).
    """
    theta = 1.0 / patience
    nmu = n / aht
    log_i_inf = _log_integral(lam, nmu, theta, None)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_b = np.log(b)
        log_den = np.logaddexp(0.0, log_b + np.log(lam) + log_i_inf)
        if t is None:
            log_num = np.zeros_like(log_den)
        else:
            log_i_t = _log_integral(lam, nmu, theta, t)
            log_num = np.logaddexp(np.log1p(-b), log_b + np.log(nmu) + log_i_t)
        # 1 + (lam - n mu) I(inf) >= 0 (it equals theta I + lam int (1 - e^{-theta s}) e^g).
        over = lam >= nmu
        log_ab_over = np.logaddexp(0.0, np.log(np.maximum(lam - nmu, 0.0)) + log_i_inf)
        under = 1.0 - (nmu - lam) * np.exp(np.where(over, 0.0, log_i_inf))
        log_ab_under = np.log(np.maximum(under, 0.0))
        log_ab = log_b + np.where(over, log_ab_over, log_ab_under)
    return log_num, log_den, log_ab


def _sl_erlang_a(
    lam: FloatArray, aht: FloatArray, n: FloatArray, b: FloatArray, patience: float, t: float
) -> FloatArray:
    """Erlang A service level at integer ``n`` (1-D arrays of equal length)."""
    out = np.ones(lam.shape, dtype=np.float64)
    pos = lam > 0.0
    if pos.any():
        log_num, log_den, _ = _erlang_a_parts(lam[pos], aht[pos], n[pos], b[pos], patience, t)
        out[pos] = np.clip(np.exp(log_num - log_den), 0.0, 1.0)
    return out


# --------------------------------------------------------------------------------------------
# Public service level / requirement API
# --------------------------------------------------------------------------------------------

_IntSL = Callable[[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray], FloatArray]


def _sl_kernel(interval_s: float, target_s: float, patience: float | None) -> _IntSL:
    """SL at integer agents as f(a, aht, lam, n, erlang_b) on flat arrays, for one model."""
    if patience is None:

        def kernel_c(
            a: FloatArray, aht: FloatArray, lam: FloatArray, n: FloatArray, b: FloatArray
        ) -> FloatArray:
            return _sl_erlang_c(a, aht, n, b, target_s)

        return kernel_c

    p = patience

    def kernel_a(
        a: FloatArray, aht: FloatArray, lam: FloatArray, n: FloatArray, b: FloatArray
    ) -> FloatArray:
        return _sl_erlang_a(lam, aht, n, b, p, target_s)

    return kernel_a


def _interpolated(
    arrivals: npt.ArrayLike,
    aht_s: npt.ArrayLike,
    interval_s: float,
    agents: npt.ArrayLike,
    at_integer: Callable[[FloatArray, FloatArray, FloatArray, FloatArray], FloatArray],
) -> FloatArray:
    """Evaluate ``at_integer(a, aht, lam, n)`` at floor/ceil of agents and interpolate linearly."""
    interval = _check_scalar_positive("interval_s", interval_s)
    a = offered_load(arrivals, aht_s, interval)
    aht = _as_float_array("aht_s", aht_s)
    ag = _as_float_array("agents", agents)
    _check_nonneg_finite("agents", ag)
    a_b, aht_b, ag_b = np.broadcast_arrays(a, aht, ag)
    shape = a_b.shape
    af = a_b.ravel().astype(np.float64)
    ahtf = aht_b.ravel().astype(np.float64)
    agf = ag_b.ravel().astype(np.float64)
    lam = af / ahtf
    lo = np.floor(agf)
    w = agf - lo
    frac = w > 0.0
    # Evaluate floor for every case and ceil only where agents are fractional, in one batch.
    a2 = np.concatenate([af, af[frac]])
    aht2 = np.concatenate([ahtf, ahtf[frac]])
    lam2 = np.concatenate([lam, lam[frac]])
    n2 = np.concatenate([lo, lo[frac] + 1.0])
    vals = at_integer(a2, aht2, lam2, n2)
    out = vals[: af.size].copy()
    out[frac] = (1.0 - w[frac]) * out[frac] + w[frac] * vals[af.size :]
    return out.reshape(shape)


def service_level(
    arrivals: npt.ArrayLike,
    aht_s: npt.ArrayLike,
    interval_s: float,
    agents: npt.ArrayLike,
    target_s: float,
    patience_s: float | None = None,
) -> FloatArray:
    """Fraction of arriving contacts answered within ``target_s`` seconds.

    Model:
      * ``patience_s is None`` (or inf): Erlang C (M/M/c, nobody abandons):
        ``SL = 1 - C exp(-(c - a) target_s / aht_s)`` for ``c > a`` and 0 for ``c <= a`` (an
        unstable queue answers nobody within a finite target in steady state).
      * ``patience_s`` given: Erlang A (M/M/c+M, Palm / Garnett-Mandelbaum-Reiman) with
        exponentially distributed patience of that mean.  SL is "answered within target_s
        *among all arrivals*": contacts that abandon, at any time, count as not answered.  The
        closed form is exact (see the derivation comment above); it is evaluated by quadrature
        to ~1e-12.

    Zero arrivals give 1.0.  Fractional ``agents`` are *linearly interpolated* between the SL at
    floor and ceil: the SL at whole agents is non-decreasing in agents, so the interpolated
    curve is continuous, piecewise linear and non-decreasing, which is what an optimiser with
    continuous agent variables needs.  Broadcasts over ``arrivals``, ``aht_s`` and ``agents``.
    """
    target = _check_scalar_nonneg("target_s", target_s)
    patience = _check_patience(patience_s)
    kernel = _sl_kernel(interval_s, target, patience)

    def at_integer(a: FloatArray, aht: FloatArray, lam: FloatArray, n: FloatArray) -> FloatArray:
        b = _erlang_b_int(a, n.astype(np.int64))
        return kernel(a, aht, lam, n, b)

    return _interpolated(arrivals, aht_s, interval_s, agents, at_integer)


def abandonment_probability(
    arrivals: npt.ArrayLike,
    aht_s: npt.ArrayLike,
    interval_s: float,
    agents: npt.ArrayLike,
    patience_s: float,
) -> FloatArray:
    """Erlang A probability that an arriving contact abandons (same interpolation as SL).

    For contracts that put a ceiling on the abandonment rate.  Zero arrivals give 0.0.
    """
    patience = _check_patience(patience_s)
    if patience is None:
        raise ValueError("abandonment_probability needs a finite patience_s")
    p = patience

    def at_integer(a: FloatArray, aht: FloatArray, lam: FloatArray, n: FloatArray) -> FloatArray:
        out = np.zeros(a.shape, dtype=np.float64)
        pos = lam > 0.0
        if pos.any():
            b = _erlang_b_int(a[pos], n[pos].astype(np.int64))
            _, log_den, log_ab = _erlang_a_parts(lam[pos], aht[pos], n[pos], b, p, None)
            out[pos] = np.clip(np.exp(log_ab - log_den), 0.0, 1.0)
        return out

    return _interpolated(arrivals, aht_s, interval_s, agents, at_integer)


def _min_agents_for_occupancy(a: FloatArray, max_occupancy: float) -> FloatArray:
    """Smallest whole n >= 1 with ``a / n <= max_occupancy`` evaluated in floating point.

    ``ceil(a / occ)`` alone can be off by one through rounding (8.5 / 0.85 = 10.000000000000002),
    so the candidate is nudged to agree exactly with the ``a / n <= occ`` test that callers and
    tests apply.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.maximum(np.ceil(a / max_occupancy), 1.0)
        down = (n > 1.0) & (a / np.maximum(n - 1.0, 1.0) <= max_occupancy)
        n = np.where(down, n - 1.0, n)
        up = a / n > max_occupancy
        n = np.where(up, n + 1.0, n)
    out: FloatArray = n
    return out


def required_agents(
    arrivals: npt.ArrayLike,
    aht_s: npt.ArrayLike,
    interval_s: float,
    target_sl: float,
    target_s: float,
    max_occupancy: float = 0.85,
    patience_s: float | None = None,
) -> IntArray:
    """Smallest whole number of productive agents with ``SL >= target_sl`` and ``a/n <= occ``.

    ``SL`` is :func:`service_level` (Erlang C, or Erlang A when ``patience_s`` is given) and
    ``a/n`` the offered-load occupancy.  Zero load needs 0 agents.  Shrinkage is *not* applied;
    see :func:`rostered_fte`.

    Algorithm: start every case at the occupancy bound (and, for Erlang C, just above the load,
    since SL is 0 below it), get Erlang B there with one vectorised warm-started recursion, then
    walk upwards one agent at a time with ``B(n+1) = a B(n) / (n + 1 + a B(n))``, dropping cases
    as they meet the target.  SL is non-decreasing in agents, so the first hit is the minimum.
    The walk is short (the answer is typically within a few sqrt(a) of the start), and every
    step is one numpy operation over the still-open cases.
    """
    sl_target = float(target_sl)
    if not (0.0 < sl_target < 1.0):
        raise ValueError(f"target_sl must be in (0, 1) (got {target_sl!r})")
    occ = _check_max_occupancy(max_occupancy)
    target = _check_scalar_nonneg("target_s", target_s)
    patience = _check_patience(patience_s)
    interval = _check_scalar_positive("interval_s", interval_s)
    a = offered_load(arrivals, aht_s, interval)
    aht = _as_float_array("aht_s", aht_s)
    a_b, aht_b = np.broadcast_arrays(a, aht)
    shape = a_b.shape
    af = a_b.ravel().astype(np.float64)
    ahtf = aht_b.ravel().astype(np.float64)
    result = np.zeros(af.shape, dtype=np.int64)
    kernel = _sl_kernel(interval, target, patience)

    idx = np.flatnonzero(af > 0.0)
    if idx.size == 0:
        return result.reshape(shape)
    a_i = af[idx]
    n = _min_agents_for_occupancy(a_i, occ)
    if patience is None:
        n = np.maximum(n, np.floor(a_i) + 1.0)  # Erlang C: SL = 0 unless n > a
    b = _erlang_b_int(a_i, n.astype(np.int64))
    aht_i = ahtf[idx]
    lam_i = a_i / aht_i
    while idx.size:
        ok = kernel(a_i, aht_i, lam_i, n, b) >= sl_target
        result[idx[ok]] = n[ok].astype(np.int64)
        keep = ~ok
        idx = idx[keep]
        a_i, aht_i, lam_i, n, b = (x[keep] for x in (a_i, aht_i, lam_i, n, b))
        n = n + 1.0
        ab = a_i * b
        b = ab / (n + ab)
    return result.reshape(shape)


def service_level_curve(
    arrivals: float,
    aht_s: float,
    interval_s: float,
    target_s: float,
    max_agents: int,
    patience_s: float | None = None,
) -> FloatArray:
    """Service level at ``agents = 0, 1, ..., max_agents`` for one queue and period.

    For the optimiser's piecewise-linear SLA penalty; feed it to :func:`concave_envelope` to get
    breakpoints a maximising LP can use.  The curve is non-decreasing in theory; a running
    maximum removes floating-point wiggles (~1e-16) so callers can rely on monotonicity.
    """
    if isinstance(max_agents, bool) or int(max_agents) != max_agents or max_agents < 0:
        raise ValueError(f"max_agents must be a whole number >= 0 (got {max_agents!r})")
    for name, v in (("arrivals", arrivals), ("aht_s", aht_s)):
        if np.ndim(v) != 0:
            raise ValueError(f"{name} must be a scalar for service_level_curve")
    target = _check_scalar_nonneg("target_s", target_s)
    patience = _check_patience(patience_s)
    interval = _check_scalar_positive("interval_s", interval_s)
    a = float(offered_load(arrivals, aht_s, interval))
    aht = float(aht_s)
    m = int(max_agents)
    # One sequential Erlang B pass gives B at every n (cheaper than m warm starts).
    b = np.empty(m + 1, dtype=np.float64)
    b[0] = 1.0
    if a <= 0.0:
        b[1:] = 0.0
    else:
        prev = 1.0
        for k in range(1, m + 1):
            prev = a * prev / (k + a * prev)
            b[k] = prev
    n = np.arange(m + 1, dtype=np.float64)
    a_v = np.full(m + 1, a)
    aht_v = np.full(m + 1, aht)
    lam_v = a_v / aht_v
    sl = _sl_kernel(interval, target, patience)(a_v, aht_v, lam_v, n, b)
    out: FloatArray = np.maximum.accumulate(sl)
    return out


def upper_hull_indices(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of the upper concave hull's vertices of points with strictly increasing ``xs``.

    Plain floats, no checks: the SL curves call it once per queue and period (7,000 times at
    M) on six points, where NumPy's per-call overhead was most of the curve build's 0.4 s.
    """
    hull: list[int] = []
    for i in range(len(xs)):
        # Pop the last vertex while it lies on or below the chord from its predecessor to i.
        while len(hull) >= 2:
            j, k = hull[-2], hull[-1]
            cross = (xs[k] - xs[j]) * (ys[i] - ys[j]) - (ys[k] - ys[j]) * (xs[i] - xs[j])
            if cross >= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def concave_envelope(xs: npt.ArrayLike, ys: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Upper concave hull of the points ``(xs, ys)``; returns its vertices (a subset of them).

    A maximising LP can only represent a concave piecewise-linear function exactly (as the
    minimum of its pieces, or with lambda-weights and no binaries).  The Erlang SL curve is
    S-shaped (0 up to the load, then concave), so the hull over-states SL on the convex part --
    i.e. the LP treats a partly staffed period as linearly "on the way" to the first point of
    the concave part.  The hull touches the curve at both endpoints and at every vertex.

    ``xs`` must be strictly increasing and finite; at least one point.
    """
    x = _as_float_array("xs", xs).ravel()
    y = _as_float_array("ys", ys).ravel()
    if x.shape != y.shape:
        raise ValueError("xs and ys must have the same length")
    if x.size == 0:
        raise ValueError("concave_envelope needs at least one point")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("xs and ys must be finite")
    if x.size > 1 and not (np.diff(x) > 0).all():
        raise ValueError("xs must be strictly increasing")
    hull = upper_hull_indices(x.tolist(), y.tolist())
    sel = np.asarray(hull, dtype=np.int64)
    return x[sel], y[sel]
