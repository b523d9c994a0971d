"""Closed-loop evaluation on a small scenario: the optimiser wins where it should, nothing
breaks a rule, and the same scenario gives the same result."""

from __future__ import annotations

from functools import cache

from services.sim.demand import load_demand
from services.sim.evaluate import EvalResult, evaluate
from tests.test_sim_support import small


@cache
def results() -> dict[str, EvalResult]:
    sc = small(duration_hours=36)
    return {r.policy: r for r in evaluate(sc, ["optimiser", "greedy", "reactive", "static"])}


def test_every_policy_runs_without_violations() -> None:
    for r in results().values():
        assert r.compliance_violations == 0, r.violation_examples
        assert r.plan_failures == 0


def test_optimiser_beats_greedy_and_reactive_on_cost_at_equal_or_better_sla() -> None:
    res = results()
    opt = res["optimiser"]
    for name in ("greedy", "reactive"):
        other = res[name]
        assert opt.total < other.total, (name, opt.total, other.total)
        assert opt.sla["desk"]["attainment"] >= other.sla["desk"]["attainment"] - 0.01


def test_same_scenario_same_result() -> None:
    sc = small(duration_hours=12)
    trace = load_demand(sc)
    a = [r.to_dict() for r in evaluate(sc, ["greedy", "reactive"], trace=trace)]
    b = [r.to_dict() for r in evaluate(sc, ["greedy", "reactive"], trace=trace)]
    for x in a + b:
        x.pop("runtime_s"), x.pop("plan_seconds")
    assert a == b
