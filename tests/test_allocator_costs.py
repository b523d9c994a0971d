"""How in-house time is paid (Policy.internal_cost), demand uncertainty (Policy.demand_cv), the
SLA target as a staffing floor (Policy.understaffing_penalty_per_fte_hour) and the price of
asking providers (Policy.request_cost_per_fte)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from allocator import (
    AllocationProblem,
    Contract,
    Demand,
    InvalidInput,
    PendingChange,
    Plan,
    PlanningRequest,
    Policy,
    Provider,
    ProviderLevel,
    RateTier,
    SkillRate,
    Sla,
    SolverOptions,
    Team,
    WorkStream,
    solve,
)
from allocator.checks import check_plan
from allocator.demand import stream_requirements
from allocator.policies import GreedyPolicy

AS_OF = datetime(2025, 2, 3, 8, tzinfo=UTC)


def _problem(policy: Policy, team_cost: float = 60.0, fte: float = 6.0) -> AllocationProblem:
    """One queue, a team dearer per hour than a flexible provider, six hours."""
    n = 6
    return AllocationProblem(
        PlanningRequest(AS_OF, 60, n),
        (WorkStream("q", "queue", "net", Sla.answer_within(0.8, 30)),),
        (Team("t", frozenset({"net"}), (fte,), 0.25, team_cost, "EU"),),
        (
            Provider(
                "v",
                Contract((SkillRate("net", (RateTier(0, 20.0),)),), max_fte=30),
                frozenset({"EU"}),
            ),
        ),
        (Demand("q", arrivals=(120.0, 180.0, 240.0, 240.0, 180.0, 120.0), aht_s=(300.0,)),),
        policy,
    )


def test_rostered_team_is_used_before_a_cheaper_provider() -> None:
    # Hourly provider levels, so paid provider capacity never sits idle beside the team.
    hourly = Policy(sla_penalty_per_contact=50.0, level_change_hours=1.0)
    rostered = solve(_problem(hourly), SolverOptions())
    assigned = solve(
        _problem(dataclasses.replace(hourly, internal_cost="assigned")), SolverOptions()
    )
    in_house = sum(a.fte for a in rostered.assignments if a.source_kind == "team")
    productive = 6.0 * 0.75 * 6
    # The roster is paid anyway: every productive in-house hour that can serve is used first.
    assert in_house == pytest.approx(productive, rel=1e-6)
    assert rostered.costs.internal == pytest.approx(6.0 * 60.0 * 6)
    # Paid per assigned hour (80/h per productive FTE), the provider at 20/h is preferred.
    assert sum(a.fte for a in assigned.assignments if a.source_kind == "team") < in_house
    assert rostered.costs.providers < assigned.costs.providers


def test_rostered_internal_cost_is_the_same_for_every_policy() -> None:
    problem = _problem(Policy(sla_penalty_per_contact=50.0))
    greedy = GreedyPolicy().plan(problem)
    optimal = solve(problem, SolverOptions())
    assert greedy.costs.internal == pytest.approx(optimal.costs.internal)
    assert optimal.costs.total <= greedy.costs.total + 1e-6


def test_unknown_internal_cost_basis_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="internal_cost"):
        Policy(internal_cost="hourly")  # type: ignore[arg-type]


def test_certain_demand_curve_is_unchanged_by_a_zero_cv() -> None:
    base = _problem(Policy())
    same = _problem(Policy(demand_cv=0.0))
    a, b = stream_requirements(base)[0], stream_requirements(same)[0]
    assert a.curves == b.curves
    assert a.cap(2) == a.required_fte[2]


@pytest.mark.parametrize("cv", [0.1, 0.3, 0.6])
def test_uncertain_demand_prices_the_expected_shortfall(cv: float) -> None:
    certain = stream_requirements(_problem(Policy()))[0]
    risky = stream_requirements(_problem(Policy(demand_cv=cv)))[0]
    for t in range(6):
        need = certain.required_fte[t]
        assert risky.required_fte[t] == need, "Erlang requirements stay the certain ones"
        assert risky.cap(t) >= need
        xs = np.asarray(risky.curves[t].xs)
        ys = np.asarray(risky.curves[t].ys)
        assert np.all(np.diff(xs) > 0) and np.all(np.diff(ys) >= -1e-12)
        assert ys.max() <= certain.target_sl + 1e-9, "never more than the target on average"
        # At the certain requirement some of the spread still misses the target.
        assert risky.curves[t].value(need) < certain.curves[t].value(need) + 1e-12
        assert risky.curves[t].value(need) < certain.target_sl


def test_uncertain_demand_buys_at_least_the_certain_cover() -> None:
    policy = Policy(sla_penalty_per_contact=50.0)
    certain = solve(_problem(policy, fte=2.0), SolverOptions())
    risky = solve(_problem(dataclasses.replace(policy, demand_cv=0.3), fte=2.0), SolverOptions())
    covered = [sum(a.fte for a in p.assignments) for p in (certain, risky)]
    assert covered[1] >= covered[0] - 1e-6
    assert covered[1] > covered[0], "the risk of a busier hour is worth some cover here"
    risky_problem = _problem(dataclasses.replace(policy, demand_cv=0.3), fte=2.0)
    assert check_plan(risky_problem, risky) == []


def _staffed(plan: Plan, n: int = 6) -> list[float]:
    return [plan.staffed(t, "q") for t in range(n)]


def test_understaffing_price_makes_the_sla_target_a_floor() -> None:
    # A late contact is cheap here (1.0): on the curve alone the plan staffs below target.
    cheap = Policy(sla_penalty_per_contact=1.0, level_change_hours=1.0)
    problem = _problem(cheap, fte=2.0)
    curve_only = solve(problem, SolverOptions())
    need = stream_requirements(problem)[0].required_fte
    assert any(s < r - 1e-6 for s, r in zip(_staffed(curve_only), need, strict=True))
    floored_problem = _problem(
        dataclasses.replace(cheap, understaffing_penalty_per_fte_hour=100.0), fte=2.0
    )
    floored = solve(floored_problem, SolverOptions())
    # Above the provider's 20/h the requirement is met in every period, at the least cost.
    assert all(s >= r - 1e-6 for s, r in zip(_staffed(floored), need, strict=True))
    assert floored.costs.unmet_penalty == pytest.approx(0.0, abs=1e-6)
    assert check_plan(floored_problem, floored) == []
    greedy = GreedyPolicy().plan(floored_problem)
    assert floored.costs.total <= greedy.costs.total + 1e-6


def test_understaffing_is_priced_per_fte_hour_short_of_the_requirement() -> None:
    # The provider can add only 2 FTE: some periods stay short whatever the price.
    problem = AllocationProblem(
        PlanningRequest(AS_OF, 60, 3),
        (WorkStream("q", "queue", "net", Sla.answer_within(0.8, 30)),),
        (Team("t", frozenset({"net"}), (2.0,), 0.0, 60.0, "EU"),),
        (
            Provider(
                "v",
                Contract((SkillRate("net", (RateTier(0, 20.0),)),), max_fte=2),
                frozenset({"EU"}),
            ),
        ),
        (Demand("q", arrivals=(60.0, 240.0, 60.0), aht_s=(300.0,)),),
        Policy(
            sla_penalty_per_contact=0.0,
            understaffing_penalty_per_fte_hour=50.0,
            level_change_hours=1.0,
        ),
    )
    need = stream_requirements(problem)[0].required_fte
    for plan in (solve(problem, SolverOptions()), GreedyPolicy().plan(problem)):
        short = sum(max(0.0, r - s) for r, s in zip(need, _staffed(plan, 3), strict=True))
        assert short > 0
        assert plan.costs.unmet_penalty == pytest.approx(50.0 * short, rel=1e-6)
        assert check_plan(problem, plan) == []


def _pending_problem(policy: Policy, arrivals: float) -> AllocationProblem:
    """A provider line with a pending step 0 → 4 FTE from period 2, hourly levels."""
    n = 6
    return AllocationProblem(
        PlanningRequest(AS_OF, 60, n),
        (WorkStream("q", "queue", "net", Sla.answer_within(0.8, 30)),),
        (Team("t", frozenset({"net"}), (1.0,), 0.0, 60.0, "EU"),),
        (
            Provider(
                "v",
                Contract((SkillRate("net", (RateTier(0, 20.0),)),), max_fte=30),
                frozenset({"EU"}),
            ),
        ),
        (Demand("q", arrivals=(arrivals,) * n, aht_s=(300.0,)),),
        policy,
        (ProviderLevel("v", "net", 0.0, (PendingChange(2, 4.0),)),),
    )


def test_a_plan_pays_for_what_it_asks_beyond_the_pending_changes() -> None:
    base = Policy(sla_penalty_per_contact=5.0, level_change_hours=1.0, churn_cost_per_fte=1.0)
    # Demand needs ~4 agents: keeping the pending step costs no request; cancelling it would.
    steady = _pending_problem(dataclasses.replace(base, request_cost_per_fte=50.0), 40.0)
    plan = solve(steady, SolverOptions())
    assert check_plan(steady, plan) == []
    free = solve(_pending_problem(base, 40.0), SolverOptions())
    assert plan.costs.churn == pytest.approx(free.costs.churn + _asked(steady, plan) * 50.0)
    # Quiet demand: without a request price the pending step is cancelled (it saves churn and
    # provider hours); priced above what it saves, the pending step is kept as told.
    quiet_free = solve(_pending_problem(base, 1.0), SolverOptions())
    quiet_priced_problem = _pending_problem(
        dataclasses.replace(base, request_cost_per_fte=1000.0), 1.0
    )
    quiet_priced = solve(quiet_priced_problem, SolverOptions())
    assert quiet_free.level("v", "net", 3) < 4.0
    assert quiet_priced.level("v", "net", 3) == pytest.approx(4.0)
    assert check_plan(quiet_priced_problem, quiet_priced) == []


def _asked(problem: AllocationProblem, plan: Plan) -> float:
    """FTE by which the plan's level steps differ from the baseline's steps."""
    base = problem.baseline_level("v", "net")
    prev = prev_base = problem.committed_level("v", "net")
    out = 0.0
    for t in range(problem.request.horizon_periods):
        lv = plan.level("v", "net", t)
        out += abs(lv - prev - (base[t] - prev_base))
        prev, prev_base = lv, base[t]
    return out
