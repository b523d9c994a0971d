"""Service outcome: a hand-computed Erlang C case, backlog carry-over, incident cohorts,
compliant routing of restricted work."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from allocator.domain import Policy, Provider, Sla, Team, WorkStream
from services.sim.demand import Interval
from services.sim.dispatch import dispatch, sources_in_place, violations
from services.sim.outcome import ServiceModel

T = datetime(2026, 3, 3, tzinfo=UTC)


def erlang_c_sl(a: float, n: int, aht: float, t: float) -> float:
    """Textbook Erlang C, written out independently of allocator.staffing."""
    top = a**n / math.factorial(n) * n / (n - a)
    bottom = sum(a**k / math.factorial(k) for k in range(n)) + top
    return 1 - top / bottom * math.exp(-(n - a) * t / aht)


def model(
    stream: WorkStream,
    teams: list[Team],
    providers: dict[str, Provider] | None = None,
    minutes: int = 60,
) -> ServiceModel:
    return ServiceModel(
        streams=[stream],
        teams=teams,
        providers=providers or {},
        team_cost={t.id: 30.0 for t in teams},
        policy=Policy(sla_penalty_per_contact=10.0),
        default_aht={stream.id: 180.0},
        interval_minutes=minutes,
    )


QUEUE = WorkStream("q", "queue", "sd", Sla.answer_within(0.8, 20))


def team(fte: float, **kw: object) -> Team:
    return Team("t", frozenset({"sd"}), (fte,), 0.0, 30.0, "eu", **kw)  # type: ignore[arg-type]


def test_erlang_c_by_hand() -> None:
    m = model(QUEUE, [team(7)])
    m.step(T, {"q": Interval(100, 180.0)}, {}, measure=True)  # a = 100 * 180 / 3600 = 5 Erl
    score = m.scores["q"]
    assert score.met / score.arrivals == pytest.approx(erlang_c_sl(5.0, 7, 180.0, 20.0), 1e-9)
    assert m.backlog["q"] == 0
    assert m.spend.internal == pytest.approx(7 * 30.0)


def test_backlog_carries_over_when_capacity_is_short() -> None:
    m = model(QUEUE, [team(2)])
    m.step(T, {"q": Interval(100, 180.0)}, {}, measure=True)
    # 2 agents handle 2 * 3600 / 180 = 40 calls; 60 are carried, none answered in target
    assert m.backlog["q"] == pytest.approx(60)
    assert m.scores["q"].met == pytest.approx(0)
    m.step(T + timedelta(hours=1), {"q": Interval(0, None)}, {}, measure=True)
    assert m.backlog["q"] == pytest.approx(20)  # 60 offered, 40 handled
    assert m.open_tickets("q") == 20
    assert m.scores["q"].unmet_fte_hours > 0


def test_incident_cohorts_meet_the_deadline_or_not() -> None:
    stream = WorkStream("inc", "project", "sd", Sla.resolve_within(2.0, 0.8))
    m = model(stream, [team(1)])
    m.default_aht["inc"] = 3600.0  # type: ignore[index]
    m.step(T, {"inc": Interval(3, 3600.0)}, {}, measure=True)  # 3 h of work, 1 agent
    for h in (1, 2):
        m.step(T + timedelta(hours=h), {}, {}, measure=True)
    score = m.scores["inc"]
    # 2 of the 3 work hours are done within the 2-hour deadline
    assert score.judged == 3 and score.met == pytest.approx(2.0)


def test_restricted_work_only_to_eligible_sources() -> None:
    restricted = WorkStream(
        "r",
        "queue",
        "sd",
        Sla.answer_within(0.8, 20),
        sensitivity="restricted",
        allowed_regions=frozenset({"eu"}),
    )
    plain = WorkStream("p", "queue", "sd", Sla.answer_within(0.8, 20))
    cleared = Team(
        "cleared", frozenset({"sd"}), (3.0,), 0.0, 30.0, "eu", clearances=frozenset({"restricted"})
    )
    from allocator.domain import Contract, RateTier, SkillRate

    offshore = Provider(
        "off", Contract((SkillRate("sd", (RateTier(0, 10.0),)),)), frozenset({"ph"})
    )
    sources = sources_in_place([cleared], {"off": offshore}, {("off", "sd"): 5.0})
    routed = dispatch([restricted, plain], {"r": 3.0, "p": 4.0}, sources)
    assert routed[("r", "cleared")] == pytest.approx(3.0)
    assert ("r", "off/sd") not in routed
    assert violations([restricted, plain], sources, routed) == []
    bad = dict(routed) | {("r", "off/sd"): 1.0}
    assert any("region" in v for v in violations([restricted, plain], sources, bad))
