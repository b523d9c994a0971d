"""Tests of the allocation model: hard constraints, optimality, relaxations, errors, determinism."""

from __future__ import annotations

import dataclasses
import itertools
import math
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    SolverFailure,
    SolverOptions,
    Team,
    WorkStream,
    solve,
)

AS_OF = datetime(2025, 2, 3, 8, tzinfo=UTC)
TOL = 1e-5


def request(periods: int) -> PlanningRequest:
    return PlanningRequest(AS_OF, 60, periods)


# ---------------------------------------------------------------------------------------------
# Focused checks of every hard constraint (allocator/checks.py will generalise these)
# ---------------------------------------------------------------------------------------------


def check_plan(problem: AllocationProblem, plan: Plan) -> None:
    """Assert every hard constraint of the issue holds in ``plan``."""
    req = problem.request
    teams = {t.id: t for t in problem.teams}
    provs = {p.id: p for p in problem.providers}
    streams = {s.id: s for s in problem.streams}
    for a in plan.assignments:
        s = streams[a.stream_id]
        assert a.fte >= -TOL
        if a.source_kind == "team":
            assert teams[a.source_id].can_take(s), f"team {a.source_id} not eligible for {s.id}"
        else:
            assert provs[a.source_id].can_take(s), f"provider {a.source_id} not eligible {s.id}"
            assert provs[a.source_id].active
    for t in range(req.horizon_periods):
        for team in problem.teams:
            assert plan.source_fte(t, team.id) <= team.productive_fte(t) + TOL
        for s in problem.streams:
            svc = next(x for x in plan.service if x.period == t and x.stream_id == s.id)
            assert plan.staffed(t, s.id) == pytest.approx(svc.staffed_fte, abs=TOL)
            assert svc.staffed_fte <= svc.required_fte + TOL
            if s.core and problem.policy.core_in_house_share > 0:
                internal = sum(
                    a.fte
                    for a in plan.assignments
                    if a.period == t and a.stream_id == s.id and a.source_kind == "team"
                )
                assert internal >= problem.policy.core_in_house_share * svc.staffed_fte - TOL
        for prov in problem.providers:
            total = plan.provider_total(prov.id, t)
            if not prov.active:
                assert total == 0
                continue
            c = prov.contract
            lines = [ln for ln in plan.provider_levels if ln.provider_id == prov.id]
            frozen = t < req.hours_to_periods(c.ramp_up_hours) and t < req.hours_to_periods(
                c.ramp_down_notice_hours
            )
            if total > TOL and not frozen:
                assert total >= c.min_fte - TOL, f"{prov.id} below min at {t}"
                assert total <= c.max_fte + TOL, f"{prov.id} above max at {t}"
            for ln in lines:
                level = ln.levels[t]
                base = problem.baseline_level(prov.id, ln.skill)[t]
                if not frozen and abs(level - base) > TOL:
                    blocks = level / c.block_fte
                    assert abs(blocks - round(blocks)) < 1e-6, "level not whole blocks"
                used = sum(
                    a.fte
                    for a in plan.assignments
                    if a.period == t
                    and a.source_id == prov.id
                    and streams[a.stream_id].skill == ln.skill
                )
                assert used <= level + TOL
            for sk in c.skills:
                if not any(ln.skill == sk for ln in lines):
                    used = sum(
                        a.fte
                        for a in plan.assignments
                        if a.period == t
                        and a.source_id == prov.id
                        and streams[a.stream_id].skill == sk
                    )
                    assert used <= TOL
    # Levels change only at segment starts (block of level_change_hours, windows, pending).
    for ln in plan.provider_levels:
        for start, end in problem.level_segments(ln.provider_id):
            assert len(set(ln.levels[start:end])) == 1, f"{ln.provider_id} level varies in block"
    # Lead time and notice: inside windows, levels only step as committed + pending step.
    for ln in plan.provider_levels:
        prov = provs[ln.provider_id]
        up = req.hours_to_periods(prov.contract.ramp_up_hours)
        down = req.hours_to_periods(prov.contract.ramp_down_notice_hours)
        base = problem.baseline_level(prov.id, ln.skill)
        prev, prev_base = ln.committed_fte, ln.committed_fte
        for t, level in enumerate(ln.levels):
            if prov.active:
                if t < up:
                    assert level - prev <= max(0.0, base[t] - prev_base) + TOL
                    assert level <= base[t] + TOL
                if t < down:
                    assert prev - level <= max(0.0, prev_base - base[t]) + TOL
                    assert level >= base[t] - TOL
            prev, prev_base = level, base[t]
    for ch in plan.changes:
        prov = provs[ch.provider_id]
        if ch.pending or not prov.active:
            continue
        lead = (
            prov.contract.ramp_up_hours
            if ch.direction == "up"
            else prov.contract.ramp_down_notice_hours
        )
        assert ch.effective_period >= req.hours_to_periods(lead)
    # Concentration cap over the horizon.
    cap = problem.policy.vendor_concentration_cap
    outsourced = sum(a.fte for a in plan.assignments if a.source_kind == "provider")
    for prov in problem.providers:
        mine = sum(a.fte for a in plan.assignments if a.source_id == prov.id)
        assert mine <= cap * outsourced + TOL * max(1.0, outsourced)
    # Budget: spend within cap unless the overrun is priced and reported.
    if problem.policy.budget_cap is not None:
        over = max(0.0, plan.costs.spend - problem.policy.budget_cap)
        assert plan.costs.budget_overrun == pytest.approx(over, abs=1e-3)
        if over > 1e-3:
            assert any(r.slack == "budget_overrun" for r in plan.explanation.relaxations)
    # Unmet demand is always named.
    for s in problem.streams:
        unmet = sum(x.unmet_fte for x in plan.service if x.stream_id == s.id)
        if unmet > 1e-4:
            assert any(r.subject == s.id for r in plan.explanation.relaxations)
    # Cost breakdown adds up to the objective.
    assert plan.costs.total == pytest.approx(plan.stats.objective, rel=1e-6, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# Random small instances
# ---------------------------------------------------------------------------------------------

SKILLS = ("net", "db", "app")
REGIONS = ("EU", "IN")


@st.composite
def problems(draw: st.DrawFn) -> AllocationProblem:
    periods = draw(st.integers(2, 6))
    n_streams = draw(st.integers(1, 4))
    streams: list[WorkStream] = []
    demand: list[Demand] = []
    for i in range(n_streams):
        skill = draw(st.sampled_from(SKILLS[:2]))
        sens = draw(st.sampled_from(("public", "internal", "restricted")))
        regions = draw(st.sampled_from((frozenset(), frozenset({"EU"}))))
        certs = draw(st.sampled_from((frozenset(), frozenset({"iso"}))))
        core = draw(st.booleans())
        if draw(st.booleans()):
            streams.append(
                WorkStream(
                    f"q{i}", "queue", skill, Sla.answer_within(0.8, 30), sens, regions, core, certs
                )
            )
            arr = tuple(float(draw(st.integers(0, 80))) for _ in range(periods))
            demand.append(
                Demand(f"q{i}", arrivals=arr, aht_s=(float(draw(st.integers(120, 600))),))
            )
        else:
            streams.append(
                WorkStream(
                    f"p{i}", "project", skill, Sla.resolve_within(40), sens, regions, core, certs
                )
            )
            hrs = tuple(float(draw(st.integers(0, 8))) for _ in range(periods))
            demand.append(Demand(f"p{i}", work_hours=hrs))
    teams = [
        Team(
            f"t{j}",
            frozenset(draw(st.sets(st.sampled_from(SKILLS), min_size=1))),
            (float(draw(st.integers(0, 6))),),
            draw(st.sampled_from((0.0, 0.3))),
            float(draw(st.integers(20, 80))),
            draw(st.sampled_from(REGIONS)),
            draw(st.sampled_from((frozenset(), frozenset({"restricted"})))),
        )
        for j in range(draw(st.integers(1, 2)))
    ]
    providers: list[Provider] = []
    levels: list[ProviderLevel] = []
    for j in range(draw(st.integers(0, 3))):
        skills = sorted(draw(st.sets(st.sampled_from(SKILLS), min_size=1)))
        rates = []
        for sk in skills:
            r0 = float(draw(st.integers(15, 60)))
            if draw(st.booleans()):
                r1 = float(draw(st.integers(10, 70)))
                rates.append(SkillRate(sk, (RateTier(0, r0), RateTier(4, r1))))
            else:
                rates.append(SkillRate(sk, (RateTier(0, r0),)))
        mn = float(draw(st.integers(0, 4)))
        mx = mn + float(draw(st.integers(2, 20)))
        contract = Contract(
            tuple(rates),
            min_fte=mn,
            max_fte=mx,
            block_fte=float(draw(st.sampled_from((1, 2)))),
            ramp_up_hours=float(draw(st.integers(0, 3))),
            ramp_down_notice_hours=float(draw(st.integers(0, 3))),
        )
        pid = f"v{j}"
        providers.append(
            Provider(
                pid,
                contract,
                frozenset({draw(st.sampled_from(REGIONS))}),
                draw(st.sampled_from((frozenset(), frozenset({"iso"})))),
                draw(st.floats(0.5, 1.0)),
                draw(st.sampled_from(("active", "active", "suspended"))),
            )
        )
        if draw(st.booleans()):
            sk = skills[0]
            blk = contract.block_fte
            kmax = int(min(mx, 6) // blk)
            committed = blk * draw(st.integers(0, kmax))
            pend: tuple[PendingChange, ...] = ()
            if draw(st.booleans()) and periods > 1:
                pend = (PendingChange(1, blk * draw(st.integers(0, kmax))),)
            levels.append(ProviderLevel(pid, sk, committed, pend))
    offered = {s for t in teams for s in t.skills} | {
        s for p in providers for s in p.contract.skills
    }
    streams_ok = [s for s in streams if s.skill in offered]
    if not streams_ok:
        streams_ok = [dataclasses.replace(streams[0], skill=sorted(offered)[0])]
    keep = {s.id for s in streams_ok}
    policy = Policy(
        core_in_house_share=draw(st.sampled_from((0.0, 0.5))),
        vendor_concentration_cap=draw(st.sampled_from((1.0, 0.6))),
        budget_cap=draw(st.sampled_from((None, 500.0, 5000.0))),
        churn_cost_per_fte=float(draw(st.integers(0, 50))),
        quality_penalty_per_fte_hour=float(draw(st.integers(0, 5))),
        level_change_hours=draw(st.sampled_from((1.0, 2.0, 8.0))),
    )
    return AllocationProblem(
        request(periods),
        tuple(streams_ok),
        tuple(teams),
        tuple(providers),
        tuple(d for d in demand if d.stream_id in keep),
        policy,
        tuple(levels),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_every_plan_satisfies_every_hard_constraint(problem: AllocationProblem) -> None:
    plan = solve(problem, SolverOptions(relative_gap=0.0, time_limit_s=20))
    check_plan(problem, plan)
    assert plan.stats.gap <= 1e-6 or plan.stats.status == "optimal"


# ---------------------------------------------------------------------------------------------
# Brute-force optimality on tiny instances
# ---------------------------------------------------------------------------------------------


def brute_force(
    work: tuple[float, ...],
    team_fte: float,
    team_cost: float,
    tiers: tuple[RateTier, ...],
    mn: float,
    mx: float,
    block: float,
    committed: float,
    churn: float,
    penalty: float,
    change_every: int = 1,
    rostered: bool = False,
) -> float:
    """Optimal cost of one project stream, one team, one provider line, by enumeration.

    Levels are held for ``change_every`` periods (``Policy.level_change_hours`` on hourly
    periods, no lead time, no pending change). With the provider level fixed, the rest is
    trivial: provider capacity is already paid for, so use it first, then the team — always
    when its roster is paid anyway (``rostered``), else where its hourly cost beats the
    unmet-work penalty.
    """
    line = SkillRate("net", tiers)
    choices = [k * block for k in range(int(mx // block) + 1)]
    choices = [c for c in choices if c == 0 or mn <= c <= mx]
    best = math.inf
    n_seg = -(-len(work) // change_every)
    for per_segment in itertools.product(choices, repeat=n_seg):
        levels = [per_segment[t // change_every] for t in range(len(work))]
        cost = 0.0
        prev = committed
        for t, level in enumerate(levels):
            need = work[t]
            cost += line.cost_per_hour(level) + churn * abs(level - prev)
            rest = max(0.0, need - level)
            if rostered:
                cost += team_fte * team_cost
                rest -= min(team_fte, rest)
            elif team_cost < penalty:
                use = min(team_fte, rest)
                cost += use * team_cost
                rest -= use
            cost += rest * penalty
            prev = level
        best = min(best, cost)
    return best


@settings(max_examples=40, deadline=None)
@given(
    work=st.lists(st.integers(0, 12), min_size=1, max_size=4),
    team_fte=st.integers(0, 5),
    team_cost=st.integers(10, 90),
    r0=st.integers(10, 80),
    r1=st.integers(5, 80),
    mn=st.integers(0, 4),
    span=st.integers(1, 8),
    block=st.sampled_from((1, 2, 3)),
    committed=st.integers(0, 3),
    churn=st.integers(0, 40),
    change_every=st.sampled_from((1, 2, 8)),
    rostered=st.booleans(),
)
def test_brute_force_optimality(
    work: list[int],
    team_fte: int,
    team_cost: int,
    r0: int,
    r1: int,
    mn: int,
    span: int,
    block: int,
    committed: int,
    churn: int,
    change_every: int,
    rostered: bool,
) -> None:
    mx = mn + span
    if block > mx:
        block = 1
    committed = block * min(committed, mx // block)
    tiers = (RateTier(0, float(r0)), RateTier(3, float(r1)))
    penalty = 100.0
    hours = tuple(float(w) for w in work)
    problem = AllocationProblem(
        request(len(work)),
        (WorkStream("p", "project", "net", Sla.resolve_within(8)),),
        (Team("t", {"net"}, (float(team_fte),), 0.0, float(team_cost), "EU"),),
        (
            Provider(
                "v",
                Contract(
                    (SkillRate("net", tiers),),
                    min_fte=float(mn),
                    max_fte=float(mx),
                    block_fte=float(block),
                ),
                {"EU"},
            ),
        ),
        (Demand("p", work_hours=hours),),
        Policy(
            churn_cost_per_fte=float(churn),
            unmet_work_penalty_per_hour=penalty,
            level_change_hours=float(change_every),
            internal_cost="rostered" if rostered else "assigned",
        ),
        (ProviderLevel("v", "net", float(committed)),) if committed else (),
    )
    plan = solve(problem, SolverOptions(relative_gap=0.0))
    expected = brute_force(
        hours,
        float(team_fte),
        float(team_cost),
        tiers,
        float(mn),
        float(mx),
        float(block),
        float(committed),
        float(churn),
        penalty,
        change_every,
        rostered,
    )
    assert plan.stats.objective == pytest.approx(expected, rel=1e-6, abs=1e-4)
    check_plan(problem, plan)


# ---------------------------------------------------------------------------------------------
# Relaxations, errors, determinism, trade-offs
# ---------------------------------------------------------------------------------------------


def small_problem(**policy: float | None) -> AllocationProblem:
    streams = (
        WorkStream("q1", "queue", "net", Sla.answer_within(0.8, 20)),
        WorkStream(
            "q2",
            "queue",
            "db",
            Sla.answer_within(0.8, 60),
            sensitivity="restricted",
            required_certifications=frozenset({"iso"}),
        ),
        WorkStream("p1", "project", "net", Sla.resolve_within(40), core=True),
    )
    teams = (Team("t1", frozenset({"net", "db"}), (4.0,), 0.3, 45.0, "EU"),)
    providers = (
        Provider(
            "pa",
            Contract(
                (
                    SkillRate("net", (RateTier(0, 30), RateTier(5, 25))),
                    SkillRate("db", (RateTier(0, 35),)),
                ),
                min_fte=2,
                max_fte=20,
                ramp_up_hours=4,
                ramp_down_notice_hours=8,
            ),
            frozenset({"EU"}),
        ),
        Provider(
            "pb",
            Contract((SkillRate("net", (RateTier(0, 20),)),), max_fte=6, block_fte=2),
            frozenset({"IN"}),
        ),
    )
    n = 12
    demand = (
        Demand("q1", arrivals=tuple(100 + 60 * math.sin(t / 3) for t in range(n)), aht_s=(300,)),
        Demand("q2", arrivals=(40.0,) * n, aht_s=(400,)),
        Demand("p1", work_hours=(3.0,) * n),
    )
    return AllocationProblem(
        request(n),
        streams,
        teams,
        providers,
        demand,
        Policy(churn_cost_per_fte=20, **policy),  # type: ignore[arg-type]
        (ProviderLevel("pa", "net", 3, (PendingChange(2, 4),)),),
    )


def test_compliance_shortfall_is_priced_and_named() -> None:
    problem = small_problem()
    plan = solve(problem)
    check_plan(problem, plan)
    # q2 is restricted: the team has no clearance, no provider holds "iso".
    rel = [r for r in plan.explanation.relaxations if r.subject == "q2"]
    assert rel and "compliance" in rel[0].forced_by
    assert all(s.staffed_fte == 0 for s in plan.service if s.stream_id == "q2")
    assert plan.costs.sla_penalty > 0


def test_budget_overrun_is_priced_and_named() -> None:
    problem = small_problem(budget_cap=100.0, budget_overrun_penalty=2.0)
    plan = solve(problem)
    check_plan(problem, plan)
    assert plan.costs.budget_overrun > 0
    assert any(r.slack == "budget_overrun" for r in plan.explanation.relaxations)
    assert any(b.name == "budget_cap" for b in plan.explanation.binding)


def test_pending_change_is_honoured_and_lead_time_respected() -> None:
    problem = small_problem()
    plan = solve(problem)
    levels = next(ln for ln in plan.provider_levels if ln.provider_id == "pa" and ln.skill == "net")
    assert levels.levels[:2] == (3.0, 3.0)
    assert levels.levels[2] == 4.0  # pending up honoured; notice (8 h) stops any early cut
    pending = [c for c in plan.changes if c.pending]
    assert pending and pending[0].effective_period == 2


def test_core_share_and_concentration() -> None:
    problem = small_problem(core_in_house_share=0.9, vendor_concentration_cap=0.7)
    plan = solve(problem)
    check_plan(problem, plan)


def test_suspended_provider_gets_nothing() -> None:
    base = small_problem()
    pa = dataclasses.replace(base.provider("pa"), status="suspended")
    problem = dataclasses.replace(base, providers=(pa, base.provider("pb")))
    plan = solve(problem)
    check_plan(problem, plan)
    assert all(a.source_id != "pa" for a in plan.assignments)
    cut = [c for c in plan.changes if c.provider_id == "pa"]
    assert cut and cut[0].effective_period == 0 and cut[0].to_fte == 0


def test_same_input_same_plan() -> None:
    a = solve(small_problem())
    b = solve(small_problem())
    strip = {"stats": None}
    assert dataclasses.replace(a, **strip) == dataclasses.replace(b, **strip)  # type: ignore[arg-type]
    assert a.stats.objective == b.stats.objective


def test_sla_weight_trades_cover_against_cost() -> None:
    cheap = solve(small_problem(sla_penalty_per_contact=0.5))
    dear = solve(small_problem(sla_penalty_per_contact=50.0))
    staffed = lambda p: sum(s.staffed_fte for s in p.service if s.stream_id == "q1")  # noqa: E731
    assert staffed(cheap) < staffed(dear)
    assert cheap.costs.spend < dear.costs.spend


def test_marginal_values_and_reasons_present() -> None:
    plan = solve(small_problem())
    kinds = {(m.kind, m.key) for m in plan.explanation.marginal_values}
    assert ("internal_skill", "net") in kinds and ("provider", "pb") in kinds
    assert all(c.reasons for c in plan.changes)


def test_skill_nobody_has_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="offered by no team"):
        AllocationProblem(
            request(2),
            (WorkStream("q", "queue", "mainframe", Sla.answer_within(0.8, 20)),),
            (Team("t", {"net"}, (1.0,), 0.0, 10.0, "EU"),),
            (),
            (Demand("q", arrivals=(1.0, 1.0), aht_s=(60.0,)),),
        )


def test_contract_min_above_max_is_an_error() -> None:
    with pytest.raises(InvalidInput, match=r"min_fte 5\.0 > max_fte 2\.0"):
        Contract((SkillRate("net", (RateTier(0, 1),)),), min_fte=5.0, max_fte=2.0)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Demand("q", arrivals=(1.0,), aht_s=None),
        lambda: SkillRate("net", (RateTier(1, 10),)),
        lambda: Team("t", {"net"}, (1.0,), 1.0, 10.0, "EU"),
        lambda: PlanningRequest(datetime(2025, 1, 1), 60, 2),
        lambda: Sla.answer_within(1.5, 20),
        lambda: WorkStream("q", "queue", "net", Sla.resolve_within(4)),
    ],
)
def test_bad_objects_are_errors(build: object) -> None:
    with pytest.raises(InvalidInput):
        build()  # type: ignore[operator]


def test_level_not_in_blocks_is_an_error() -> None:
    base = small_problem()
    with pytest.raises(InvalidInput, match="whole number"):
        dataclasses.replace(base, levels=(ProviderLevel("pb", "net", 3.0),))


def test_demand_length_must_match_horizon() -> None:
    with pytest.raises(InvalidInput, match="horizon is 3"):
        AllocationProblem(
            request(3),
            (WorkStream("p", "project", "net", Sla.resolve_within(4)),),
            (Team("t", {"net"}, (1.0,), 0.0, 10.0, "EU"),),
            (),
            (Demand("p", work_hours=(1.0, 1.0)),),
        )


def test_level_segments_split_at_blocks_windows_and_pending() -> None:
    base = small_problem()
    # pa: ramp-up 4 h, notice 8 h, pending change at period 2; blocks of 8 h on 12 periods.
    assert base.level_segments("pa") == ((0, 2), (2, 4), (4, 8), (8, 12))
    assert base.level_segments("pb") == ((0, 8), (8, 12))
    hourly = dataclasses.replace(base, policy=Policy(level_change_hours=1.0))
    assert len(hourly.level_segments("pb")) == 12


def test_cp_sat_is_refused_not_silently_wrong() -> None:
    with pytest.raises(SolverFailure, match="cp_sat"):
        solve(small_problem(), SolverOptions(backend="cp_sat"))


def test_sl_curve_is_exact_on_the_last_agent_and_reported_sl_is_staffing() -> None:
    """The model's SL curve equals the exact Erlang line on [n−1, n] and never exceeds the
    hull; the plan's expected SL is :func:`allocator.staffing.service_level` at its cover."""
    import numpy as np

    from allocator import staffing
    from allocator.demand import stream_requirements
    from allocator.synthetic import generate

    problem = generate("S", 1, binding_contracts=True)
    reqs = stream_requirements(problem)
    checked = 0
    for req in reqs:
        if req.queue is None:
            continue
        q = req.queue
        for t, n in enumerate(req.required_fte):
            if n < 1:
                continue
            ks = np.asarray([n - 1, n - 0.5, n])
            exact = staffing.service_level(
                q.arrivals[t], q.aht_s[t], q.interval_s, ks, q.target_s, q.patience_s
            )
            exact[-1] = max(exact[-1], req.target_sl)
            exact[1] = 0.5 * (exact[0] + exact[2])
            got = [req.curves[t].value(float(k)) for k in ks]
            np.testing.assert_allclose(got, exact, atol=1e-9)
            checked += 1
    assert checked > 0
    plan = solve(problem, SolverOptions(time_limit_s=10))
    by_id = {r.stream_id: r for r in reqs}
    for row in plan.service:
        req = by_id[row.stream_id]
        if req.queue is None or row.required_fte <= 0:
            continue
        q = req.queue
        want = staffing.service_level(
            q.arrivals[row.period],
            q.aht_s[row.period],
            q.interval_s,
            min(row.staffed_fte, row.required_fte),
            q.target_s,
            q.patience_s,
        )
        assert row.expected_sl == pytest.approx(float(np.clip(want, 0, 1)), abs=1e-12)
