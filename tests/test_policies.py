"""Policies against the plan checker: every plan sound, every broken plan caught.

Random small instances come from :mod:`allocator.synthetic` (random sizes, seeds and contract
tightness); the optimiser, greedy and static plans must all pass :func:`check_plan`, the
optimiser must never cost more than greedy under the shared cost function, and deliberately
broken plans must be caught with the right constraint named.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator import (
    AllocationProblem,
    Assignment,
    Contract,
    Demand,
    Plan,
    PlanningRequest,
    Policy,
    Provider,
    ProviderLevel,
    ProviderLineLevels,
    RateTier,
    SkillRate,
    Sla,
    SolverOptions,
    Team,
    WorkStream,
)
from allocator.checks import Violation, check_plan
from allocator.costing import plan_costs
from allocator.demand import stream_requirements
from allocator.policies import AllocationPolicy, GreedyPolicy, OptimiserPolicy, StaticPolicy
from allocator.synthetic import SIZES, Size, generate

EXACT = SolverOptions(relative_gap=0.0, time_limit_s=30)


def constraints(violations: list[Violation]) -> set[str]:
    return {v.constraint for v in violations}


def assert_sound(problem: AllocationProblem, plan: Plan) -> None:
    violations = check_plan(problem, plan)
    assert not violations, f"{plan.policy}: " + "; ".join(map(str, violations[:10]))


@st.composite
def small_instances(draw: st.DrawFn) -> AllocationProblem:
    size = Size(
        streams=draw(st.integers(1, 6)),
        providers=draw(st.integers(1, 4)),
        teams=draw(st.integers(1, 3)),
        periods=draw(st.integers(2, 12)),
    )
    problem = generate(
        size, seed=draw(st.integers(0, 2**31 - 1)), binding_contracts=draw(st.booleans())
    )
    # Sometimes the SLA target is (also) a staffing floor: every policy prices it the same.
    floor = draw(st.sampled_from([0.0, 0.0, 30.0, 500.0]))
    ask = draw(st.sampled_from([0.0, 0.0, 5.0, 50.0]))  # and asking providers has a price
    policy = dataclasses.replace(
        problem.policy, understaffing_penalty_per_fte_hour=floor, request_cost_per_fte=ask
    )
    return dataclasses.replace(problem, policy=policy)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_instances())
def test_every_policy_plan_passes_the_checker(problem: AllocationProblem) -> None:
    policies: list[AllocationPolicy] = [
        OptimiserPolicy(EXACT),
        GreedyPolicy(),
        StaticPolicy("peak"),
        StaticPolicy("mean"),
        StaticPolicy("committed"),
        StaticPolicy("once"),
    ]
    plans = [policy.plan(problem) for policy in policies]
    for plan in plans:
        assert_sound(problem, plan)
    optimiser, greedy = plans[0], plans[1]
    assert optimiser.stats.status == "optimal"
    # Same cost function, so the optimum can never be dearer than the heuristic.
    assert optimiser.costs.total <= greedy.costs.total * (1 + 1e-6) + 1e-6
    assert greedy.stats.backend == "greedy" and greedy.stats.status == "heuristic"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_instances())
def test_shared_cost_function_agrees_with_the_optimiser_read_back(
    problem: AllocationProblem,
) -> None:
    plan = OptimiserPolicy(EXACT).plan(problem)
    levels = {(ln.provider_id, ln.skill): ln.levels for ln in plan.provider_levels}
    mine = plan_costs(problem, stream_requirements(problem), plan.assignments, levels)
    assert mine.total == pytest.approx(plan.costs.total, rel=1e-6, abs=1e-3)
    assert mine.spend == pytest.approx(plan.costs.spend, rel=1e-6, abs=1e-3)


@pytest.mark.parametrize("policy", [GreedyPolicy(), StaticPolicy("peak"), OptimiserPolicy()])
def test_same_input_same_plan(policy: AllocationPolicy) -> None:
    a = policy.plan(generate("S", seed=7))
    b = policy.plan(generate("S", seed=7))
    strip = {"stats": None}
    assert dataclasses.replace(a, **strip) == dataclasses.replace(b, **strip)  # type: ignore[arg-type]


def test_static_once_sizes_for_the_peak_then_keeps_what_it_holds() -> None:
    """Stateless "sized once": the peak while no provider line holds capacity, then the
    committed + pending levels (what a worker planning in a fresh process can do)."""
    problem = generate("S", seed=7)
    empty = dataclasses.replace(problem, levels=())
    once, peak = StaticPolicy("once"), StaticPolicy("peak")
    assert once.levels(empty) == peak.levels(empty)
    holding = [lv for lv in problem.levels if lv.committed_fte > 0]
    assert holding, "the generator gives some lines committed capacity"
    assert once.levels(problem) == StaticPolicy("committed").levels(problem)


def test_generator_is_deterministic_and_sized() -> None:
    assert generate("S", seed=3) == generate("S", seed=3)
    assert generate("S", seed=3) != generate("S", seed=4)
    for name in ("S", "M"):
        p = generate(name, seed=1)
        dims = SIZES[name]
        assert (len(p.streams), len(p.providers), len(p.teams)) == (
            dims.streams,
            dims.providers,
            dims.teams,
        )
        assert p.request.horizon_periods == dims.periods
        assert sum(not pr.active for pr in p.providers) == 1
        assert any(s.sensitivity == "restricted" for s in p.streams) or name == "S"


# ---------------------------------------------------------------------------------------------
# The checker catches broken plans
# ---------------------------------------------------------------------------------------------

AS_OF = datetime(2025, 2, 3, 8, tzinfo=UTC)


def handmade() -> AllocationProblem:
    """A restricted and a public queue, one team, a cheap uncertified offshore provider with
    lead time and 2-FTE blocks, a certified onshore one, a suspended one."""
    n = 8
    streams = (
        WorkStream(
            "secure",
            "queue",
            "net",
            Sla.answer_within(0.8, 30),
            sensitivity="restricted",
            allowed_regions=frozenset({"EU"}),
            required_certifications=frozenset({"iso"}),
        ),
        WorkStream("public", "queue", "net", Sla.answer_within(0.8, 30), core=True),
    )
    teams = (Team("team", frozenset({"net"}), (3.0,), 0.2, 40.0, "EU"),)
    providers = (
        Provider(
            "cheap",
            Contract(
                (SkillRate("net", (RateTier(0, 20.0),)),),
                min_fte=2,
                max_fte=20,
                block_fte=2,
                ramp_up_hours=3,
                ramp_down_notice_hours=3,
            ),
            frozenset({"IN"}),
        ),
        Provider(
            "onshore",
            Contract((SkillRate("net", (RateTier(0, 45.0), RateTier(4, 40.0))),), max_fte=10),
            frozenset({"EU"}),
            frozenset({"iso"}),
        ),
        Provider(
            "gone",
            Contract((SkillRate("net", (RateTier(0, 10.0),)),)),
            frozenset({"EU"}),
            frozenset({"iso"}),
            status="suspended",
        ),
    )
    demand = (
        Demand("secure", arrivals=tuple(30.0 + 10 * math.sin(t) for t in range(n)), aht_s=(300,)),
        Demand(
            "public", arrivals=tuple(60.0 + 30 * math.sin(t / 2) for t in range(n)), aht_s=(240,)
        ),
    )
    return AllocationProblem(
        PlanningRequest(AS_OF, 60, n),
        streams,
        teams,
        providers,
        demand,
        Policy(
            churn_cost_per_fte=10,
            core_in_house_share=0.3,
            vendor_concentration_cap=0.8,
            sla_penalty_per_contact=100.0,
        ),
        (ProviderLevel("cheap", "net", 2.0), ProviderLevel("gone", "net", 3.0)),
    )


@pytest.fixture(scope="module", params=["optimiser", "greedy"])
def sound(request: pytest.FixtureRequest) -> tuple[AllocationProblem, Plan]:
    problem = handmade()
    policy: AllocationPolicy = OptimiserPolicy() if request.param == "optimiser" else GreedyPolicy()
    plan = policy.plan(problem)
    assert_sound(problem, plan)
    return problem, plan


def with_levels(plan: Plan, provider: str, skill: str, change: dict[int, float]) -> Plan:
    lines = []
    found = False
    for ln in plan.provider_levels:
        if (ln.provider_id, ln.skill) == (provider, skill):
            found = True
            lv = list(ln.levels)
            for t, v in change.items():
                lv[t] = v
            ln = dataclasses.replace(ln, levels=tuple(lv))
        lines.append(ln)
    assert found
    return dataclasses.replace(plan, provider_levels=tuple(lines))


def test_over_assigned_team_is_caught(sound: tuple[AllocationProblem, Plan]) -> None:
    problem, plan = sound
    extra = Assignment(2, "public", "team", "team", problem.teams[0].productive_fte(2) + 0.5)
    broken = dataclasses.replace(plan, assignments=(*plan.assignments, extra))
    found = check_plan(problem, broken)
    assert any(
        v.constraint == "team_capacity" and v.entity == "team" and v.period == 2 for v in found
    )


def test_restricted_work_on_uncertified_provider_is_caught(
    sound: tuple[AllocationProblem, Plan],
) -> None:
    problem, plan = sound
    moved = [
        dataclasses.replace(a, source_id="cheap", source_kind="provider")
        if a.stream_id == "secure" and a.period == 5
        else a
        for a in plan.assignments
    ]
    assert moved != list(plan.assignments)
    found = check_plan(problem, dataclasses.replace(plan, assignments=tuple(moved)))
    hits = [v for v in found if v.constraint == "compliance" and v.entity == "secure<-cheap"]
    assert hits and all(v.period == 5 for v in hits)


def test_broken_block_multiple_is_caught(sound: tuple[AllocationProblem, Plan]) -> None:
    problem, plan = sound
    t = 6  # outside the 3-period windows
    level = plan.level("cheap", "net", t)
    broken = with_levels(plan, "cheap", "net", {t: level + 1.0})
    found = check_plan(problem, broken)
    assert any(v.constraint == "block" and v.entity == "cheap/net" and v.period == t for v in found)


def test_change_inside_frozen_window_is_caught(sound: tuple[AllocationProblem, Plan]) -> None:
    problem, plan = sound
    assert plan.level("cheap", "net", 1) == 2.0  # committed, frozen for 3 periods
    up = with_levels(plan, "cheap", "net", {1: 4.0})
    assert any(v.constraint == "lead_time" and v.period == 1 for v in check_plan(problem, up))
    down = with_levels(plan, "cheap", "net", {0: 0.0, 1: 0.0})
    assert any(v.constraint == "notice" and v.period == 0 for v in check_plan(problem, down))


def test_suspended_provider_work_is_caught(sound: tuple[AllocationProblem, Plan]) -> None:
    problem, plan = sound
    extra = Assignment(4, "public", "gone", "provider", 1.0)
    found = check_plan(problem, dataclasses.replace(plan, assignments=(*plan.assignments, extra)))
    assert "suspended" in constraints(found)
    relevel = dataclasses.replace(
        plan,
        provider_levels=(
            *[ln for ln in plan.provider_levels if ln.provider_id != "gone"],
            ProviderLineLevels("gone", "net", 3.0, (3.0,) * problem.request.horizon_periods),
        ),
    )
    assert "suspended" in constraints(check_plan(problem, relevel))


def test_tampered_costs_and_core_share_are_caught(sound: tuple[AllocationProblem, Plan]) -> None:
    problem, plan = sound
    cheap = dataclasses.replace(plan.costs, providers=plan.costs.providers * 0.9)
    assert "cost" in constraints(check_plan(problem, dataclasses.replace(plan, costs=cheap)))
    no_team = tuple(
        dataclasses.replace(a, source_id="onshore", source_kind="provider")
        if a.stream_id == "public" and a.source_kind == "team"
        else a
        for a in plan.assignments
    )
    found = check_plan(problem, dataclasses.replace(plan, assignments=no_team))
    assert "core_in_house" in constraints(found)


def test_unreported_shortfall_is_caught(sound: tuple[AllocationProblem, Plan]) -> None:
    problem, plan = sound
    fewer = tuple(a for a in plan.assignments if not (a.stream_id == "public" and a.period == 3))
    broken = dataclasses.replace(
        plan,
        assignments=fewer,
        explanation=dataclasses.replace(plan.explanation, relaxations=()),
    )
    found = check_plan(problem, broken)
    assert {"service", "unmet_demand", "cost"} <= constraints(found)


def test_restricted_never_offshore_in_any_plan(sound: tuple[AllocationProblem, Plan]) -> None:
    _, plan = sound
    assert not any(a.stream_id == "secure" and a.source_id == "cheap" for a in plan.assignments)
    assert not any(a.source_id == "gone" for a in plan.assignments)


def test_level_change_inside_a_block_is_caught(sound: tuple[AllocationProblem, Plan]) -> None:
    problem, plan = sound
    segments = problem.level_segments("cheap")
    start, _end = next((s, e) for s, e in segments if e - s > 1 and s >= 3)
    t = start + 1
    broken = with_levels(plan, "cheap", "net", {t: plan.level("cheap", "net", t) + 2.0})
    found = check_plan(problem, broken)
    assert any(
        v.constraint == "level_segment" and v.entity == "cheap/net" and v.period == t for v in found
    ), found
    # A whole-block change at a block start is allowed.
    assert not any(v.constraint == "level_segment" for v in check_plan(problem, plan))


def test_optimiser_without_a_plan_in_time_falls_back_to_a_labelled_greedy_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A solver that finds nothing in its limit must not leave the service planless: the
    greedy plan is returned, named as a fallback, and it still passes every check."""
    import sys

    import allocator.model.solve  # noqa: F401  (loads the module: the policy imports it late)
    from allocator.errors import SolverFailure

    # the module by name: ``allocator.model.solve`` as an attribute is the function it exports
    solve_module = sys.modules["allocator.model.solve"]

    def no_plan(problem: AllocationProblem, options: SolverOptions) -> Plan:
        raise SolverFailure("highs found no plan after 2.5s (time limit 2.0s)")

    monkeypatch.setattr(solve_module, "solve", no_plan)
    problem = generate("S", seed=3, binding_contracts=True)
    plan = OptimiserPolicy(SolverOptions(time_limit_s=2)).plan(problem)
    assert plan.policy == "optimiser:highs+greedy-fallback"
    assert any("greedy plan is used instead" in note for note in plan.explanation.notes)
    assert check_plan(problem, plan) == []
    assert plan.costs.total == GreedyPolicy().plan(problem).costs.total
    with pytest.raises(SolverFailure):
        OptimiserPolicy(SolverOptions(time_limit_s=2), fallback_to_greedy=False).plan(problem)
