"""The reactive autoscaler: metric, cheapest eligible provider, stabilisation, rate limits,
contract rules (blocks, min, lead time, notice, suspension, compliance), backoff."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from allocator.domain import Contract, Provider, RateTier, SkillRate, Sla, Team, WorkStream
from allocator.policies import ReactivePolicy
from allocator.policies.reactive import QueueObservation, ReactiveConfig, ReactiveState

T = datetime(2026, 3, 3, 8, tzinfo=UTC)
Q = WorkStream("q", "project", "sd", Sla.resolve_within(8.0))


def provider(
    pid: str,
    rate: float,
    *,
    block: float = 1.0,
    lead: float = 2.0,
    notice: float = 4.0,
    min_fte: float = 0.0,
    max_fte: float = 50.0,
    **kw: object,
) -> Provider:
    contract = Contract(
        (SkillRate("sd", (RateTier(0, rate),)),), min_fte, max_fte, block, lead, notice
    )
    return Provider(pid, contract, frozenset({"eu"}), **kw)  # type: ignore[arg-type]


def obs(fte: float, stream: WorkStream = Q) -> QueueObservation:
    """An hour whose work needs ``fte`` FTE at 100 % utilisation."""
    return QueueObservation(stream, fte, 3600.0, 0.0, 60)


POLICY = ReactivePolicy(ReactiveConfig(target_utilisation=1.0, scale_up_max_fte=100.0))


def run(
    policy: ReactivePolicy,
    loads: list[float],
    providers: list[Provider],
    teams: tuple[Team, ...] = (),
) -> list[list[tuple[str, float, datetime]]]:
    state = ReactiveState()
    out = []
    for i, load in enumerate(loads):
        now = T + timedelta(hours=i)
        actions, state = policy.decide(now, [obs(load)], teams, providers, state)
        for a in actions:  # providers accept at once
            state = policy.on_answer(
                state,
                (a.provider_id, a.skill),
                confirmed=a.to_fte,
                before=a.from_fte,
                now=now,
                requested=a.to_fte,
            )
        out.append([(a.provider_id, a.to_fte, a.effective_at) for a in actions])
    return out


def test_cheapest_eligible_provider_first_in_blocks_after_lead_time() -> None:
    cert = provider("cert", 40.0, certifications=frozenset({"x"}))
    cheap = provider("cheap", 20.0, block=5.0, lead=3.0)
    (first,) = run(POLICY, [7.0], [cert, cheap])
    assert first == [("cheap", 10.0, T + timedelta(hours=3))]


def test_compliance_restricted_certified_only() -> None:
    restricted = replace(Q, id="r", required_certifications=frozenset({"x"}))
    cert = provider("cert", 40.0, certifications=frozenset({"x"}))
    cheap = provider("cheap", 20.0)
    actions, _ = POLICY.decide(T, [obs(3.0, restricted)], (), [cert, cheap], ReactiveState())
    assert [(a.provider_id, a.to_fte) for a in actions] == [("cert", 3.0)]


def test_internal_team_covers_first() -> None:
    team = Team("t", frozenset({"sd"}), (5.0,), 0.2, 30.0, "eu")  # 4 productive FTE
    (first,) = run(POLICY, [6.0], [provider("p", 20.0)], (team,))
    assert [(p, f) for p, f, _ in first] == [("p", 2.0)]


def test_minimum_commitment_when_engaged() -> None:
    (first,) = run(POLICY, [2.0], [provider("p", 20.0, min_fte=6.0)])
    assert [(p, f) for p, f, _ in first] == [("p", 6.0)]


def test_scale_down_waits_for_the_stabilisation_window_and_notice() -> None:
    cfg = ReactiveConfig(
        target_utilisation=1.0,
        scale_down_stabilisation_minutes=180,
        scale_down_max_percent=100,
        scale_down_max_fte=100,
    )
    steps = run(ReactivePolicy(cfg), [10, 2, 2, 2, 2], [provider("p", 20.0, notice=4.0)])
    assert [(p, f) for p, f, _ in steps[0]] == [("p", 10.0)]
    assert steps[1] == steps[2] == []  # the 10 is still in the 3-hour window
    ((_pid, level, effective),) = steps[3]
    assert level == 2.0 and effective == T + timedelta(hours=3 + 4)  # + notice


def test_scale_down_rate_limited() -> None:
    cfg = ReactiveConfig(
        target_utilisation=1.0,
        scale_down_stabilisation_minutes=0,
        scale_down_max_percent=20,
        scale_down_max_fte=2,
        scale_up_max_fte=100,
    )
    steps = run(ReactivePolicy(cfg), [20, 0, 0], [provider("p", 20.0)])
    assert [f for _, f, _ in steps[1]] == [16.0]  # max(2, 20 %) of 20 = 4 per hour
    assert [f for _, f, _ in steps[2]] == [13.0]  # 16 - 3.2, rounded up to whole blocks


def test_scale_up_rate_limited() -> None:
    cfg = ReactiveConfig(target_utilisation=1.0, scale_up_max_fte=4, scale_up_max_percent=50)
    steps = run(ReactivePolicy(cfg), [2, 30], [provider("p", 20.0)])
    assert [f for _, f, _ in steps[1]] == [6.0]  # max(2 + 4, 2 * 1.5)


def test_tolerance_holds_small_changes() -> None:
    steps = run(POLICY, [20, 21], [provider("p", 20.0)])
    assert steps[1] == []


def test_suspended_provider_released_at_once() -> None:
    p = provider("p", 20.0, notice=48.0)
    state = ReactiveState()
    actions, state = POLICY.decide(T, [obs(5)], (), [p], state)
    state = POLICY.on_answer(state, ("p", "sd"), confirmed=5.0, before=0.0, now=T, requested=5.0)
    later = T + timedelta(hours=1)
    actions, state = POLICY.decide(later, [obs(5)], (), [replace(p, status="suspended")], state)
    assert [(a.to_fte, a.effective_at) for a in actions] == [(0.0, later)] or [
        (a.to_fte, a.effective_at) for a in actions
    ] == [(0.0, later + timedelta(hours=1))]


def test_rejection_backs_off_increases() -> None:
    p = provider("p", 20.0)
    q = provider("q", 30.0)
    actions, state = POLICY.decide(T, [obs(5)], (), [p, q], ReactiveState())
    state = POLICY.on_answer(state, ("p", "sd"), confirmed=None, before=0.0, now=T, requested=5.0)
    actions, state = POLICY.decide(T + timedelta(hours=1), [obs(5)], (), [p, q], state)
    assert [(a.provider_id, a.to_fte) for a in actions] == [("q", 5.0)]


def test_deterministic() -> None:
    loads: list[float] = [3, 9, 14, 2, 0, 7, 22, 5]
    providers = [provider("a", 20.0, block=2.0), provider("b", 25.0)]
    assert run(POLICY, loads, providers) == run(POLICY, loads, providers)


def test_config_validated() -> None:
    with pytest.raises(ValueError):
        ReactiveConfig(target_utilisation=0)
