"""Ingest rules of the domain processor: dedupe, lateness, windows, catalogue ordering, problem.

No planning policy involved: these pin down what the state looks like after events.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator import InvalidInput
from schemas import DeadLetterStage, Event
from services.domain import DomainProcessor, Inbound, PlannerConfig, TriggerKind
from tests.test_domain_support import (
    DOMAIN,
    T0,
    Driver,
    config,
    contract,
    hours,
    project,
    queue,
    team,
    volume,
)


def ingest(
    proc: DomainProcessor, events: Sequence[Event]
) -> list[tuple[DeadLetterStage, str, str]]:
    step = proc.ingest([Inbound(e, type(e).topic, 0, i) for i, e in enumerate(events)])
    return [(stage, cls, reason) for _, stage, cls, reason in step.refused]


def fresh(**kw: object) -> DomainProcessor:
    return DomainProcessor(DOMAIN, config(**kw))


# ---- dedupe ---------------------------------------------------------------------------------


def test_duplicates_are_dropped_within_and_across_batches() -> None:
    proc = fresh()
    events = [queue(), volume(0, 10), volume(0, 10)]
    step = proc.ingest([Inbound(e, "t", 0, i) for i, e in enumerate(events)])
    assert (step.applied, step.duplicates) == (2, 1)
    again = proc.ingest([Inbound(volume(0, 10), "t", 0, 9)])
    assert (again.applied, again.duplicates, again.refused) == (0, 1, [])
    assert [o.arrivals for o in proc.state.demand.queues["sd"].open.values()] == [10]


def test_dedupe_memory_expires_in_event_time() -> None:
    proc = fresh(dedupe_window_minutes=120)
    ingest(proc, [queue()])
    ingest(proc, hours(0, 10, 5))
    assert "queue-sd-" + T0.isoformat() not in proc.state.dedupe.seen
    assert len(proc.state.dedupe.seen) <= 4  # ids of the last 2 h (+ one prune period)


# ---- lateness and windows ---------------------------------------------------------------------


def test_late_observation_is_refused_with_watermark_and_lateness() -> None:
    proc = fresh(allowed_lateness_minutes=30)
    ingest(proc, [queue(), volume(0, 10), volume(5, 10)])  # watermark 06:00
    watermark = proc.state.watermark
    refused = ingest(proc, [volume(2, 99, delay=timedelta(hours=5))])
    ((stage, cls, reason),) = refused
    assert stage is DeadLetterStage.LATE and cls == "LateEvent"
    assert "30 min" in reason and watermark is not None and watermark.isoformat() in reason
    assert proc.state.watermark == watermark, "refused events never move the watermark"


def test_an_observation_within_lateness_is_accepted_and_corrections_win_by_event_time() -> None:
    proc = fresh(allowed_lateness_minutes=60)
    ingest(proc, [queue(), volume(0, 10)])
    ingest(proc, [volume(0, 12, delay=timedelta(minutes=90), event_id="fix")])
    ingest(proc, [volume(0, 11, delay=timedelta(minutes=70), event_id="older")])
    q = proc.state.demand.queues["sd"]
    assert [o.arrivals for o in q.open.values()] == [12]


def test_closed_intervals_feed_the_forecaster_with_gaps_as_zero() -> None:
    proc = fresh(allowed_lateness_minutes=0)
    ingest(proc, [queue(), volume(0, 10), volume(3, 30)])
    q = proc.state.demand.queues["sd"]
    assert q.forecaster.n_seen == 4  # hours 0, 1 (zero), 2 (zero), 3
    assert q.forecaster.total == 40.0
    assert q.last_closed is not None and not q.open


def test_aht_is_smoothed_and_backlog_adds_to_the_first_period() -> None:
    proc = fresh(allowed_lateness_minutes=0, aht_alpha=0.5, backlog_periods=2)
    ingest(proc, [queue(aht_s=300), team()])
    ingest(proc, [volume(0, 10, aht_s=200), volume(1, 10, aht_s=400, backlog=8)])
    assert proc.state.demand.aht_s("sd", 300) == pytest.approx(300.0)
    problem = proc.problem()
    (demand,) = problem.demand
    assert demand.aht_s is not None and demand.aht_s[0] == pytest.approx(300.0)
    assert demand.arrivals is not None
    without = proc.state.demand.arrivals(
        "sd", problem.request.as_of, proc.config, with_backlog=False
    )
    assert demand.arrivals[0] - without[0] == pytest.approx(4.0)
    assert demand.arrivals[1] - without[1] == pytest.approx(4.0)
    assert demand.arrivals[2] == pytest.approx(without[2])


def test_interval_mismatch_is_refused() -> None:
    proc = fresh()
    ingest(proc, [queue(), volume(0, 10)])
    odd = volume(1, 10).model_copy(update={"interval_minutes": 30, "id": "odd"})
    ((stage, cls, _),) = ingest(proc, [odd])
    assert (stage, cls) == (DeadLetterStage.PROCESS, "IntervalMismatch")


def test_wrong_domain_and_output_events_are_refused() -> None:
    proc = fresh()
    other = queue().model_copy(update={"domain": "us", "id": "x"})
    from tests.samples import sample_events

    plan_event = next(e for e in sample_events(DOMAIN) if type(e).__name__ == "AllocationPlanned")
    refused = ingest(proc, [other, plan_event])
    assert [(s, c) for s, c, _ in refused] == [
        (DeadLetterStage.PROCESS, "WrongDomain"),
        (DeadLetterStage.PROCESS, "NotAnInput"),
    ]


# ---- catalogue ordering ----------------------------------------------------------------------


def test_an_older_queue_update_arriving_later_does_not_resurrect_a_retired_queue() -> None:
    proc = fresh()
    ingest(proc, [team(), queue(at=T0 + timedelta(hours=2), status="retired")])
    ingest(proc, [queue(at=T0 + timedelta(hours=1))])
    assert proc.state.catalogue.active_queues() == []
    assert not proc.ready() and proc.due() is None
    with pytest.raises(InvalidInput, match="nothing to plan"):
        proc.problem()


def test_an_older_contract_arriving_later_does_not_overwrite_a_newer_one() -> None:
    proc = fresh()
    ingest(proc, [queue(), contract("acme", 20.0, at=T0 + timedelta(hours=2))])
    ingest(proc, [contract("acme", 99.0, at=T0 + timedelta(hours=1))])
    (provider,) = proc.problem().providers
    assert provider.contract.rates[0].tiers[0].rate_per_hour == 20.0


def test_a_future_roster_changes_team_fte_from_its_valid_from() -> None:
    proc = fresh()
    ingest(proc, [queue(), team(fte=5), team(fte=9, valid_from=T0 + timedelta(hours=10))])
    ingest(proc, [volume(0, 10)])
    problem = proc.problem()
    (t,) = problem.teams
    first_new = problem.request.period_of(T0 + timedelta(hours=10))
    assert t.rostered_fte(0) == 5 and t.rostered_fte(first_new) == 9
    assert t.rostered_fte(first_new - 1) == 5


def test_suspended_or_expired_contracts_take_no_work() -> None:
    proc = fresh()
    ingest(proc, [queue(), team(), contract("acme", 20.0, suspended=True)])
    (provider,) = proc.problem().providers
    assert provider.status == "suspended"
    expired = contract("old", 5.0).model_copy(
        update={"valid_until": T0 - timedelta(days=1), "id": "old-1"}
    )
    ingest(proc, [expired])
    assert "old" not in {p.id for p in proc.problem().providers}


def test_projects_approved_only_spread_over_their_days_and_cancel_removes() -> None:
    proc = fresh()
    ingest(proc, [queue(), team(), project(hours_per_week=168.0, status="proposed")])
    assert [s.id for s in proc.problem().streams] == ["sd"]
    ingest(proc, [project(hours_per_week=168.0, at=T0 + timedelta(minutes=1))])
    problem = proc.problem()
    demand = problem.demand_for("erp")
    assert demand.work_hours is not None and set(demand.work_hours) == {1.0}
    ingest(proc, [project(at=T0 + timedelta(minutes=2), status="cancelled")])
    assert [s.id for s in proc.problem().streams] == ["sd"]


_CATALOGUE = [
    queue(at=T0),
    queue(at=T0 + timedelta(hours=1), aht_s=600),
    team(fte=5, at=T0),
    team(fte=7, at=T0 + timedelta(hours=1)),
    team(fte=11, at=T0 + timedelta(hours=2), valid_from=T0 + timedelta(hours=20)),
    contract("acme", 30.0, at=T0),
    contract("acme", 20.0, at=T0 + timedelta(hours=3)),
    contract("beta", 25.0, at=T0 + timedelta(hours=1)),
    project(at=T0),
    project(at=T0 + timedelta(hours=1), status="cancelled"),
]


@settings(max_examples=40, deadline=None)
@given(st.permutations(_CATALOGUE))
def test_catalogue_is_order_independent(order: list[Event]) -> None:
    """Whatever order catalogue events arrive in, the same problem comes out."""
    anchor = volume(0, 10)
    a, b = fresh(), fresh()
    ingest(a, [*_CATALOGUE, anchor])
    ingest(b, [*order, anchor])
    assert a.problem() == b.problem()


# ---- planning request and triggers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("watermark", "expected"),
    [
        (T0, T0),
        (T0 + timedelta(seconds=1), T0 + timedelta(hours=1)),
        (T0 + timedelta(minutes=59), T0 + timedelta(hours=1)),
        (datetime(2026, 11, 30, 3, 0, tzinfo=UTC), datetime(2026, 11, 30, 3, 0, tzinfo=UTC)),
    ],
)
def test_as_of_is_the_watermark_rounded_up_to_a_period(
    watermark: datetime, expected: datetime
) -> None:
    assert PlannerConfig().as_of(watermark) == expected
    assert PlannerConfig(period_minutes=15).as_of(T0 + timedelta(minutes=1)) == T0 + timedelta(
        minutes=15
    )


def test_non_urgent_triggers_are_debounced_in_event_time_and_urgent_ones_are_not() -> None:
    d = Driver.new(config(min_replan_minutes=180, replan_on_interval_close=True))
    d.feed([queue(), team(), contract("acme", 20.0)])
    first = d.proc.state.triggers.last_plan_at
    assert first is not None  # the catalogue planned once
    d.feed(hours(0, 2, 10))
    assert d.proc.state.triggers.last_plan_at == first, "interval closes inside the debounce"
    assert TriggerKind.INTERVAL_CLOSED in d.proc.state.triggers.marks
    d.feed([contract("acme", 21.0, at=T0 + timedelta(hours=2, minutes=5))])
    assert d.proc.state.triggers.last_plan_at == T0 + timedelta(hours=2, minutes=5)
    assert not d.proc.state.triggers.marks


def test_staleness_triggers_a_plan_without_other_triggers() -> None:
    d = Driver.new(config(replan_on_interval_close=False, max_staleness_minutes=240))
    d.feed([queue(), team(), contract("acme", 20.0)])
    planned = [d.proc.state.triggers.last_plan_at]
    for event in hours(0, 12, 10):
        d.feed([event])
        planned.append(d.proc.state.triggers.last_plan_at)
    times = sorted({t for t in planned if t is not None})
    assert len(times) >= 3
    assert all(b - a >= timedelta(minutes=240) for a, b in itertools.pairwise(times[1:]))
