"""The time decomposition: Lagrangian bound validity and the block neighbourhood search."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator import SolverOptions, solve
from allocator.demand import stream_requirements
from allocator.model import mathopt
from allocator.model.build import Built, build_model
from allocator.model.lagrange import (
    BOUND_LINK_ROWS,
    LINK_ROWS,
    Decomposition,
    decompose,
    lagrangian_bound,
)
from allocator.model.lp import LinearProgram, LpResult
from allocator.model.neighbourhood import clashes, improve, links, neighbourhood
from allocator.model.solve import _rounded_bounds
from allocator.synthetic import Size, generate

SMALL = Size(streams=8, providers=4, teams=3, periods=48)
"""Six level segments of 8 h: six blocks, small enough to solve exactly in a test."""


def _built(seed: int) -> tuple[Built, list[int], LpResult]:
    problem = generate(SMALL, seed, binding_contracts=True)
    built = build_model(problem, stream_requirements(problem))
    rows = [r for r in range(built.lp.num_rows) if not built.lp.lazy[r]]
    relaxed = mathopt.solve(built.lp, "highs_lp", rows, time_limit_s=30, relax=True)
    assert relaxed.status == "optimal"
    return built, rows, relaxed


def _rounded_plan(seed: int) -> tuple[LinearProgram, list[int], LpResult]:
    """The instance's model, rows and the solver's own first plan (its LP rounded)."""
    built, rows, relaxed = _built(seed)
    lb, ub = _rounded_bounds(built, relaxed.values)
    lp = built.lp
    plan = mathopt.solve(lp, "highs", rows, time_limit_s=30, lb=lb, ub=ub, relative_gap=0.05)
    assert plan.has_solution
    return lp, rows, plan


def test_blocks_and_loose_variables_partition_the_model() -> None:
    built, rows, _ = _built(3)
    lp = built.lp
    dec = decompose(lp, rows)
    owner = np.full(lp.num_vars, -1)
    for k, block in enumerate(dec.blocks):
        assert np.all(owner[block.vars] == -1)
        owner[block.vars] = k
    assert np.all(owner[dec.loose] == -1)
    owner[dec.loose] = len(dec.blocks)
    assert np.all(owner >= 0), "every variable is in a block or loose"
    assert len(dec.blocks) >= 2, "an 8 h level step over 48 h must split the model"
    kept = {int(r) for b in dec.blocks for r in b.rows}
    assert kept | {int(r) for r in dec.link} == set(rows)
    for k, block in enumerate(dec.blocks):
        for r in block.rows.tolist():
            assert set(owner[lp.row_idx[r]]) == {k}, "a kept row never spans two blocks"
    assert {lp.row_name[r] for r in dec.link.tolist()} <= LINK_ROWS


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_lagrangian_bound_lies_between_lp_and_optimum(seed: int) -> None:
    built, rows, relaxed = _built(seed)
    dec = decompose(built.lp, rows)
    lag = lagrangian_bound(
        built.lp,
        dec,
        relaxed,
        backend="highs",
        deadline=time.perf_counter() + 30,
        absolute_gap=1e-6 * abs(relaxed.objective),
    )
    optimum = solve(
        generate(SMALL, seed, binding_contracts=True),
        SolverOptions(relative_gap=0.0, time_limit_s=60, compute_marginals=False),
    )
    assert optimum.stats.status == "optimal"
    tol = 1e-6 * abs(optimum.stats.objective) + 1e-6
    assert relaxed.objective - tol <= lag.bound <= optimum.stats.objective + tol
    assert lag.closed == lag.blocks


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_root_only_lagrangian_bound_lies_between_lp_and_optimum(seed: int) -> None:
    """The solver's own setting: each block stopped at its root, heuristics off."""
    built, rows, relaxed = _built(seed)
    dec = decompose(built.lp, rows)
    lag = lagrangian_bound(
        built.lp,
        dec,
        relaxed,
        backend="highs",
        deadline=time.perf_counter() + 30,
        absolute_gap=1e-6 * abs(relaxed.objective),
        root_only=True,
    )
    optimum = solve(
        generate(SMALL, seed, binding_contracts=True),
        SolverOptions(relative_gap=0.0, time_limit_s=60, compute_marginals=False),
    )
    assert optimum.stats.status == "optimal"
    tol = 1e-6 * abs(optimum.stats.objective) + 1e-6
    assert relaxed.objective - tol <= lag.bound <= optimum.stats.objective + tol
    full = lagrangian_bound(
        built.lp,
        dec,
        relaxed,
        backend="highs",
        deadline=time.perf_counter() + 30,
        absolute_gap=1e-6 * abs(relaxed.objective),
    )
    assert lag.bound <= full.bound + tol, "a root bound never beats the closed blocks"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_skill_block_bound_lies_between_lp_and_optimum(seed: int) -> None:
    """The solver's bound: (skill, segment) blocks, each MIP run to its end (``block_limit_s``)."""
    built, rows, relaxed = _built(seed)
    fine = decompose(built.lp, rows, BOUND_LINK_ROWS)
    lag = lagrangian_bound(
        built.lp,
        fine,
        relaxed,
        backend="highs",
        deadline=time.perf_counter() + 30,
        absolute_gap=1e-6 * abs(relaxed.objective),
        block_limit_s=5.0,
    )
    optimum = solve(
        generate(SMALL, seed, binding_contracts=True),
        SolverOptions(relative_gap=0.0, time_limit_s=60, compute_marginals=False),
    )
    assert optimum.stats.status == "optimal"
    tol = 1e-6 * abs(optimum.stats.objective) + 1e-6
    assert relaxed.objective - tol <= lag.bound <= optimum.stats.objective + tol
    assert lag.closed == lag.blocks


def test_root_only_blocks_past_the_deadline_add_nothing() -> None:
    built, rows, relaxed = _built(5)
    dec = decompose(built.lp, rows)
    lag = lagrangian_bound(
        built.lp,
        dec,
        relaxed,
        backend="highs",
        deadline=time.perf_counter() - 1.0,
        absolute_gap=1e-6 * abs(relaxed.objective),
        root_only=True,
    )
    assert lag.bound == pytest.approx(relaxed.objective, rel=1e-12)
    assert not lag.has_values


def test_lagrangian_bound_does_not_depend_on_threads() -> None:
    built, rows, relaxed = _built(11)
    dec = decompose(built.lp, rows)
    bounds = [
        lagrangian_bound(
            built.lp,
            dec,
            relaxed,
            backend="highs",
            deadline=time.perf_counter() + 30,
            absolute_gap=1e-6 * abs(relaxed.objective),
            threads=threads,
        ).bound
        for threads in (1, 2)
    ]
    assert bounds[0] == pytest.approx(bounds[1], rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("link_rows", [LINK_ROWS, BOUND_LINK_ROWS])
@pytest.mark.parametrize("seed", [1, 7])
def test_block_search_keeps_every_row_and_never_costs_more(
    seed: int, link_rows: frozenset[str]
) -> None:
    """Segment blocks, and the solver's (skill, segment) blocks (rows across skills held)."""
    lp, rows, plan = _rounded_plan(seed)
    ints = np.asarray(lp.integer, dtype=bool)
    dec = decompose(lp, rows, link_rows)
    res = improve(
        lp,
        dec,
        plan.values,
        backend="highs",
        deadline=time.perf_counter() + 30,
        absolute_gap=1e-3,
        threads=2,
    )
    assert lp.violated(res.values, rows, 1e-6) == []
    v = res.values[ints]
    assert np.all(np.abs(v - np.round(v)) < 1e-6)
    assert np.all(res.values >= np.asarray(lp.lb) - 1e-6)
    assert np.all(res.values <= np.asarray(lp.ub) + 1e-6)
    before, after = lp.objective_at(plan.values), lp.objective_at(res.values)
    assert after == pytest.approx(before - res.saved, rel=1e-6, abs=1e-3)
    assert after <= before + 1e-6
    assert res.solved > 0
    assert res.improved > 0 and res.saved > 0, "the rounded plan of these instances can be improved"


def test_block_search_stops_once_the_plan_meets_its_target() -> None:
    lp, rows, plan = _rounded_plan(1)
    dec = decompose(lp, rows, BOUND_LINK_ROWS)
    kw = {"backend": "highs", "absolute_gap": 1e-3, "deadline": time.perf_counter() + 30}
    met = improve(lp, dec, plan.values, target=lp.objective_at(plan.values), **kw)  # type: ignore[arg-type]
    assert met.solved == 0 and met.saved == 0
    free = improve(lp, dec, plan.values, **kw)  # type: ignore[arg-type]
    assert free.solved > 0


def test_block_search_through_mathopt_keeps_every_row() -> None:
    """Other back-ends solve the same neighbourhoods through MathOpt (here SCIP)."""
    lp, rows, plan = _rounded_plan(7)
    dec = decompose(lp, rows, BOUND_LINK_ROWS)
    res = improve(
        lp, dec, plan.values, backend="scip", deadline=time.perf_counter() + 30, absolute_gap=1e-3
    )
    assert lp.violated(res.values, rows, 1e-6) == []
    assert lp.objective_at(res.values) <= lp.objective_at(plan.values) + 1e-6
    assert res.solved > 0


def _reference_hood(lp: LinearProgram, dec: Decomposition, k: int) -> tuple[set[int], set[int]]:
    """A block's neighbourhood by walking variables and rows one at a time (the definition)."""
    loose = set(dec.loose.tolist())
    link = set(dec.link.tolist())
    link_of: dict[int, list[int]] = {}
    for r in link:
        for v in lp.row_idx[r]:
            link_of.setdefault(v, []).append(r)
    free = set(dec.blocks[k].vars.tolist())
    rows = set(dec.blocks[k].rows.tolist())
    todo = list(free)
    while todo:
        v = todo.pop()
        for r in link_of.get(v, ()):
            if r not in rows:
                rows.add(r)
                fresh = [u for u in lp.row_idx[r] if u in loose and u not in free]
                free.update(fresh)
                todo.extend(fresh)
    return free, rows


@pytest.mark.parametrize("link_rows", [LINK_ROWS, BOUND_LINK_ROWS])
def test_neighbourhoods_and_clashes_match_their_definition(link_rows: frozenset[str]) -> None:
    """With the horizon rows in (so loose sums join components): each neighbourhood frees
    what the walk frees, and two clash exactly when a row of one mentions a variable the
    other frees (also for unions of blocks)."""
    built, _, _ = _built(3)
    lp = built.lp
    rows = list(range(lp.num_rows))
    dec = decompose(lp, rows, link_rows)
    lk = links(lp, dec)
    members = [[k] for k in range(len(dec.blocks))] + [[0, 1], [1, 2]]
    made = [neighbourhood(dec, lk, ks) for ks in members]
    for ks, (hood, _held) in zip(members, made, strict=True):
        walks = [_reference_hood(lp, dec, k) for k in ks]
        assert set(hood.vars.tolist()) == set().union(*(w[0] for w in walks))
        assert set(hood.rows.tolist()) == set().union(*(w[1] for w in walks))
    clash = clashes([held for _hood, held in made])
    for a, (ha, _) in enumerate(made):
        for b, (hb, _) in enumerate(made):
            if a == b:
                continue
            frees_b = set(hb.vars.tolist())
            touches = any(set(lp.row_idx[r]) & frees_b for r in ha.rows.tolist())
            assert (b in clash[a]) == touches, (members[a], members[b])
