"""Provider simulator: behaviours, void late answers, outage, delivery after the lead time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import CapacityRequested, ContractStatus, ResponseStatus
from services.sim.operations import build_catalogue
from services.sim.providers import ProviderSimulator
from services.sim.scenario import ProviderSpec
from tests.test_sim_support import small

T = datetime(2026, 3, 3, 8, tzinfo=UTC)


def sim(**behaviour: Any) -> ProviderSimulator:
    sc = small()
    raw = sc.providers[0].model_dump()
    raw["behaviour"] |= behaviour
    cheap = ProviderSpec.model_validate(raw)
    sc = sc.model_copy(update={"providers": [cheap]})
    cat = build_catalogue(sc, T - timedelta(days=1), 60)
    return ProviderSimulator(sc.providers, "t", cat.contracts)


def request(
    current: float,
    target: float,
    *,
    effective: datetime | None = None,
    respond_by: datetime | None = None,
    rid: str = "r1",
) -> CapacityRequested:
    effective = effective or T + timedelta(hours=6)
    return CapacityRequested(
        id=f"e-{rid}",
        source="urn:test",
        time=T,
        domain="t",
        request_id=rid,
        provider_id="cheap",
        skill="sd",
        current_fte=current,
        target_fte=target,
        effective_at=effective,
        respond_by=respond_by or effective,
        plan_id="p",
    )


def test_accept_answers_after_delay_and_delivers_at_effective_time() -> None:
    s = sim()
    s.request(request(0, 10))
    assert s.due(T + timedelta(minutes=9)) == []
    (answer,) = s.due(T + timedelta(minutes=10))
    assert answer.status is ResponseStatus.ACCEPTED and answer.confirmed_fte == 10
    assert s.in_place(T + timedelta(hours=5, minutes=59)).get(("cheap", "sd"), 0) == 0
    assert s.in_place(T + timedelta(hours=6))[("cheap", "sd")] == 10


def test_capacity_only_after_the_actual_lead_time() -> None:
    s = sim(lead_time_hours=9)  # slower than the contract says
    s.request(request(0, 10))
    s.due(T + timedelta(hours=1))
    assert s.in_place(T + timedelta(hours=8))[("cheap", "sd")] == 0
    assert s.in_place(T + timedelta(hours=9))[("cheap", "sd")] == 10


def test_partial_fill_rounds_down_to_blocks() -> None:
    s = sim(mode="partial", fill_fraction=0.5)
    s.request(request(2, 12))
    (answer,) = s.due(T + timedelta(hours=1))
    assert answer.status is ResponseStatus.PARTIAL
    assert answer.confirmed_fte == 6  # 2 + floor(10 * 0.5 / 2) * 2


def test_reject_increases_but_accept_decreases() -> None:
    s = sim(mode="reject")
    s.request(request(0, 10))
    s.request(request(10, 4, rid="r2"))
    up, down = s.due(T + timedelta(hours=1))
    assert up.status is ResponseStatus.REJECTED
    assert down.status is ResponseStatus.ACCEPTED


def test_slow_answer_after_respond_by_is_void() -> None:
    s = sim(answer_delay_minutes=90)
    s.request(request(0, 10, respond_by=T + timedelta(hours=1)))
    (answer,) = s.due(T + timedelta(hours=2))
    assert answer.time > T + timedelta(hours=1)
    assert s.in_place(T + timedelta(hours=12)).get(("cheap", "sd"), 0) == 0


def test_outage_silence_no_capacity_and_announced_suspension() -> None:
    outage = {"start": T + timedelta(hours=10), "end": T + timedelta(hours=14)}
    s = sim(outage=outage)
    s.request(request(0, 10))
    s.due(T + timedelta(hours=1))
    assert s.in_place(T + timedelta(hours=9))[("cheap", "sd")] == 10
    assert s.in_place(T + timedelta(hours=11))[("cheap", "sd")] == 0
    assert s.in_place(T + timedelta(hours=14))[("cheap", "sd")] == 10
    late = request(10, 12, rid="r3").model_copy(update={"time": T + timedelta(hours=11)})
    s.request(late, received_at=T + timedelta(hours=11))
    assert s.due(T + timedelta(hours=20)) == []  # silence: the planner times it out
    events = s.contract_events(T, T + timedelta(days=1))
    assert [e.status for e in events] == [ContractStatus.SUSPENDED, ContractStatus.ACTIVE]


def test_duplicate_requests_are_answered_once() -> None:
    s = sim()
    s.request(request(0, 10))
    s.request(request(0, 10))
    assert len(s.due(T + timedelta(hours=1))) == 1
