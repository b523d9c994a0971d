"""The small-MIP branch and bound: same optima as HiGHS' MIP solver, valid bounds always."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.model import mathopt
from allocator.model.branch import branch_and_bound
from allocator.model.lagrange import BOUND_LINK_ROWS, decompose
from allocator.model.lp import LinearProgram, SmallMip, sub_mip
from allocator.model.warm_lp import WarmLp
from allocator.synthetic import Size, generate


@st.composite
def small_mips(draw: st.DrawFn) -> LinearProgram:
    """Random bounded MIPs of the blocks' shape: a few general integers, covering and
    capacity rows with mixed signs, continuous slack priced high (so most are feasible)."""
    lp = LinearProgram()
    n_int = draw(st.integers(1, 6))
    n_cont = draw(st.integers(1, 4))
    coef = st.integers(-4, 6).map(float)
    # Integers mostly priced negative, so the LP pushes them against fractional row limits.
    ints = [
        lp.var(0.0, float(draw(st.integers(1, 4))), float(draw(st.integers(-6, 2))), integer=True)
        for _ in range(n_int)
    ]
    conts = [lp.var(0.0, float(draw(st.integers(1, 10))), float(draw(coef))) for _ in range(n_cont)]
    slack = lp.var(0.0, 100.0, 50.0)
    for _ in range(draw(st.integers(1, 6))):
        vs = draw(st.lists(st.sampled_from(ints), min_size=1, max_size=4, unique=True))
        vs += draw(st.lists(st.sampled_from(conts), max_size=2, unique=True))
        cs = [float(draw(st.integers(-3, 5).filter(bool))) for _ in vs]
        rhs = float(draw(st.integers(-3, 12))) + draw(st.sampled_from([0.0, 0.3, 0.5, 0.7]))
        if draw(st.booleans()):
            lp.row([*vs, slack], [*cs, 1.0], lo=rhs, hi=float("inf"), name="cover")
        else:
            lp.row(vs, cs, lo=-float("inf"), hi=rhs, name="cap")
    return lp


def _whole(lp: LinearProgram) -> SmallMip:
    vs = np.arange(lp.num_vars, dtype=np.int64)
    return sub_mip(
        lp,
        vs,
        range(lp.num_rows),
        np.asarray(lp.obj, dtype=np.float64),
        np.asarray(lp.lb, dtype=np.float64),
        np.asarray(lp.ub, dtype=np.float64),
    )


def _feasible(lp: LinearProgram, x: np.ndarray) -> bool:
    ints = np.asarray(lp.integer, dtype=bool)
    return (
        lp.violated(x, list(range(lp.num_rows)), 1e-6) == []
        and bool(np.all(x >= np.asarray(lp.lb) - 1e-6))
        and bool(np.all(x <= np.asarray(lp.ub) + 1e-6))
        and bool(np.all(np.abs(x[ints] - np.round(x[ints])) < 1e-6))
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_mips())
def test_branch_and_bound_finds_the_optimum_highs_finds(lp: LinearProgram) -> None:
    ref = mathopt.solve(lp, "highs", list(range(lp.num_rows)), time_limit_s=30)
    res = branch_and_bound(_whole(lp), time_limit_s=30, absolute_gap=1e-6)
    if ref.status == "infeasible":
        assert res.status == "infeasible" and not res.has_solution
        return
    assert ref.status == "optimal"
    assert res.status == "optimal"
    tol = 1e-6 * max(1.0, abs(ref.objective))
    assert res.objective == pytest.approx(ref.objective, abs=tol)
    assert res.best_bound <= ref.objective + tol
    assert _feasible(lp, res.values)
    assert float(np.dot(lp.obj, res.values)) == pytest.approx(res.objective, abs=tol)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_mips(), st.integers(0, 3))
def test_a_search_cut_short_returns_a_valid_bound(lp: LinearProgram, lps: int) -> None:
    """Whenever it stops, the bound is under the optimum (here: stopped after a few LPs)."""
    ref = mathopt.solve(lp, "highs", list(range(lp.num_rows)), time_limit_s=30)
    if ref.status != "optimal":
        return
    res = branch_and_bound(_whole(lp), time_limit_s=30, absolute_gap=1e-6, lp_limit=lps)
    assert res.best_bound <= ref.objective + 1e-6 * max(1.0, abs(ref.objective))
    if res.has_solution:
        assert _feasible(lp, res.values)
        assert res.objective >= ref.objective - 1e-6 * max(1.0, abs(ref.objective))


def test_a_feasible_hint_is_the_first_incumbent_and_an_infeasible_one_is_ignored() -> None:
    lp = LinearProgram()
    x = lp.var(0, 5, -3.0, integer=True)
    y = lp.var(0, 5, -2.0, integer=True)
    lp.row([x, y], [2.0, 3.0], lo=-float("inf"), hi=7.5, name="cap")
    mip = _whole(lp)
    best = branch_and_bound(mip, time_limit_s=10)
    assert best.objective == pytest.approx(-9.0)  # x=3, y=0 (6 ≤ 7.5) beats x=2, y=1 (-8)
    hinted = branch_and_bound(mip, time_limit_s=10, hint=np.array([0.0, 1.0]))
    assert hinted.objective == pytest.approx(-9.0)
    # Stopped before its first LP: only the hint is known.
    stopped = branch_and_bound(mip, time_limit_s=10, hint=np.array([1.0, 1.0]), lp_limit=0)
    assert stopped.has_solution and stopped.objective == pytest.approx(-5.0)
    assert stopped.best_bound == -float("inf")
    broken = branch_and_bound(mip, time_limit_s=10, hint=np.array([5.0, 5.0]), lp_limit=0)
    assert not broken.has_solution


def test_sub_mip_holds_outside_variables_at_the_plan() -> None:
    """A neighbourhood: variables outside ``vs`` move into the row bounds at ``at``."""
    lp = LinearProgram()
    a = lp.var(0, 4, 1.0, integer=True)
    b = lp.var(0, 4, 1.0)
    c = lp.var(0, 4, 1.0, integer=True)
    lp.row([a, b, c], [1.0, 1.0, 2.0], lo=5.0, hi=float("inf"), name="cover")
    at = np.array([0.0, 0.0, 2.0])
    vs = np.array([a, b], dtype=np.int64)
    obj = np.asarray(lp.obj, dtype=np.float64)
    lb, ub = np.asarray(lp.lb, dtype=np.float64), np.asarray(lp.ub, dtype=np.float64)
    mip = sub_mip(lp, vs, [0], obj, lb, ub, at=at)
    assert mip.row_lo.tolist() == [1.0] and mip.integer.tolist() == [True, False]
    res = branch_and_bound(mip, time_limit_s=10)
    assert res.objective == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside the sub-model"):
        sub_mip(lp, vs, [0], obj, lb, ub)


def test_lagrangian_blocks_close_as_highs_closes_them() -> None:
    """On the solver's own (skill, segment) blocks: the same optimum per block as HiGHS."""
    problem = generate(Size(streams=8, providers=4, teams=3, periods=48), 4, binding_contracts=True)
    from allocator.demand import stream_requirements
    from allocator.model.build import build_model
    from allocator.model.lagrange import _signed_duals

    built = build_model(problem, stream_requirements(problem))
    lp = built.lp
    rows = [r for r in range(lp.num_rows) if not lp.lazy[r]]
    relaxed = WarmLp(lp).solve(rows, time_limit_s=30)
    dec = decompose(lp, rows, BOUND_LINK_ROWS)
    y, _ = _signed_duals(lp, dec.link, relaxed.duals)
    cost = np.asarray(lp.obj, dtype=np.float64).copy()
    for r, yr in zip(dec.link.tolist(), y.tolist(), strict=True):
        cost[lp.row_idx[r]] -= yr * np.asarray(lp.row_coef[r])
    lb, ub = np.asarray(lp.lb, dtype=np.float64), np.asarray(lp.ub, dtype=np.float64)
    checked = 0
    for block in dec.blocks:
        if block.integers == 0:
            continue
        ours = branch_and_bound(
            sub_mip(lp, block.vars, block.rows.tolist(), cost, lb, ub), time_limit_s=30
        )
        mip = sub_mip(lp, block.vars, block.rows.tolist(), cost, lb, ub)
        ref = mathopt.solve_model(mathopt.sub_proto(mip), "highs", time_limit_s=30)
        assert ref.status == "optimal" and ours.status == "optimal"
        tol = 1e-6 * max(1.0, abs(ref.objective))
        assert ours.objective == pytest.approx(ref.objective, abs=tol)
        checked += 1
    assert checked >= 6
