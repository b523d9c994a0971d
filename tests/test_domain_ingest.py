"""Ingest rules of the domain processor: dedupe, lateness, windows, catalogue ordering, problem.

No planning policy involved: these pin down what the state looks like after events.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator import InvalidInput
from schemas import DeadLetterStage, Event, ResolveWithinSla
from services.domain import DomainProcessor, Inbound, PlannerConfig
from services.domain.demand import DemandBook, IntervalMismatch, LateEvent
from services.domain.problem import backlog_spread
from tests.test_domain_support import (
    DOMAIN,
    T0,
    Driver,
    config,
    contract,
    hours,
    logs,
    plans,
    project,
    queue,
    team,
    tick,
    volume,
)


def ingest(
    proc: DomainProcessor, events: Sequence[Event]
) -> list[tuple[DeadLetterStage, str, str]]:
    """Refusals of one batch: on arrival, or on application of what became final."""
    step = proc.ingest([Inbound(e, type(e).topic, 0, i) for i, e in enumerate(events)])
    refused = list(step.refused)
    while step.more:  # nothing plans here: pass over the stops
        step = proc.ingest(())
        refused += step.refused
    return [(stage, cls, reason) for _, stage, cls, reason in refused]


def settle(proc: DomainProcessor) -> list[tuple[DeadLetterStage, str, str]]:
    """Make everything ingested so far final (event time moves on by the lateness)."""
    return ingest(proc, [tick(proc.state.watermark, proc.config)])


def fresh(**kw: object) -> DomainProcessor:
    return DomainProcessor(DOMAIN, config(**kw))


# ---- dedupe ---------------------------------------------------------------------------------


def test_duplicates_are_dropped_within_and_across_batches() -> None:
    proc = fresh()
    events = [queue(), volume(0, 10), volume(0, 10)]
    step = proc.ingest([Inbound(e, "t", 0, i) for i, e in enumerate(events)])
    assert (step.accepted, step.duplicates, step.applied, step.pending) == (2, 1, 0, 2)
    again = proc.ingest([Inbound(volume(0, 10), "t", 0, 9)])
    assert (again.accepted, again.duplicates, again.refused) == (0, 1, [])
    settle(proc)
    assert proc.state.applied == 2  # queue and volume (the tick itself is not final yet)
    assert [o.arrivals for o in proc.state.demand.queues["sd"].open.values()] == [10]


def test_dedupe_memory_expires_in_event_time() -> None:
    proc = fresh(dedupe_window_minutes=120)
    ingest(proc, [queue()])
    ingest(proc, hours(0, 10, 5))
    settle(proc)
    assert "queue-sd-" + T0.isoformat() not in proc.state.dedupe.seen
    assert len(proc.state.dedupe.seen) <= 4  # ids of the last 2 h (+ one prune period)


# ---- lateness and windows ---------------------------------------------------------------------


def test_late_observation_is_refused_with_watermark_and_lateness() -> None:
    proc = fresh(allowed_lateness_minutes=30)
    ingest(proc, [queue(), volume(0, 10), volume(5, 10)])  # watermark 06:00
    watermark = proc.state.watermark
    # made at 04:00, arriving when the watermark is 06:00: more than 30 min of disorder
    refused = ingest(proc, [volume(2, 99, delay=timedelta(hours=2))])
    ((stage, cls, reason),) = refused
    assert stage is DeadLetterStage.LATE and cls == "LateEvent"
    assert "30 min" in reason and watermark is not None and watermark.isoformat() in reason
    assert proc.state.watermark == watermark, "refused events never move the watermark"


def test_a_report_after_its_interval_grace_is_refused_when_applied() -> None:
    """In order on arrival (within the lateness), but made 5 h after its interval ended: the
    grace (default: the lateness, 30 min) decides, by the report's own time."""
    proc = fresh(allowed_lateness_minutes=30)
    ingest(proc, [queue(), volume(0, 10), volume(5, 10)])
    assert ingest(proc, [volume(2, 99, delay=timedelta(hours=6))]) == []  # buffered
    ((stage, cls, reason),) = settle(proc)
    assert stage is DeadLetterStage.LATE and cls == "LateEvent"
    assert "interval grace (30 min)" in reason


def test_an_observation_within_lateness_is_accepted_and_corrections_win_by_event_time() -> None:
    proc = fresh(allowed_lateness_minutes=60)
    ingest(proc, [queue(), volume(0, 10)])
    ingest(proc, [volume(0, 12, delay=timedelta(minutes=90), event_id="fix")])
    ingest(proc, [volume(0, 11, delay=timedelta(minutes=70), event_id="older")])
    settle(proc)
    q = proc.state.demand.queues["sd"]
    assert [o.arrivals for o in q.open.values()] == [12]


def test_closed_intervals_feed_the_forecaster_with_gaps_as_zero() -> None:
    proc = fresh(allowed_lateness_minutes=0)
    ingest(proc, [queue(), volume(0, 10), volume(3, 30)])
    settle(proc)
    q = proc.state.demand.queues["sd"]
    assert q.forecaster.n_seen == 4  # hours 0, 1 (zero), 2 (zero), 3
    assert q.forecaster.total == 40.0
    assert q.last_closed is not None and not q.open


def test_aht_is_smoothed_and_backlog_adds_to_the_first_period() -> None:
    proc = fresh(allowed_lateness_minutes=0, aht_alpha=0.5, backlog_periods=2)
    ingest(proc, [queue(aht_s=300), team()])
    ingest(proc, [volume(0, 10, aht_s=200), volume(1, 10, aht_s=400, backlog=8)])
    settle(proc)
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


def test_open_incidents_are_work_due_over_half_their_resolve_target() -> None:
    # Resolve within 8 h: 12 open tickets of 300 s are 1 h of work due over the next 4 hours
    # (where a provider with a lead time can still take some), not all in the first one.
    proc = fresh(allowed_lateness_minutes=0)
    incidents = queue(aht_s=300).model_copy(
        update={"sla": ResolveWithinSla(target_fraction=0.8, within_hours=8)}
    )
    ingest(proc, [incidents, team()])
    ingest(proc, [volume(0, 0), volume(1, 0, backlog=12)])
    settle(proc)
    problem = proc.problem()
    (demand,) = problem.demand
    assert demand.work_hours is not None
    without = proc.state.demand.arrivals(
        "sd", problem.request.as_of, proc.config, with_backlog=False
    )
    extra = [w - a * 300 / 3600 for w, a in zip(demand.work_hours, without, strict=False)]
    assert extra[:4] == pytest.approx([0.25] * 4)
    assert extra[4:] == pytest.approx([0.0] * (len(extra) - 4))
    assert backlog_spread(problem.streams[0], proc.config) == 4


def test_interval_mismatch_is_refused() -> None:
    proc = fresh()
    ingest(proc, [queue(), volume(0, 10)])
    odd = volume(1, 10).model_copy(update={"interval_minutes": 30, "id": "odd"})
    assert ingest(proc, [odd]) == []
    ((stage, cls, _),) = settle(proc)
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
    settle(proc)
    assert proc.state.catalogue.active_queues() == []
    assert not proc.ready() and proc.due() is None
    with pytest.raises(InvalidInput, match="nothing to plan"):
        proc.problem()


def test_an_older_contract_arriving_later_does_not_overwrite_a_newer_one() -> None:
    proc = fresh()
    ingest(proc, [queue(), contract("acme", 20.0, at=T0 + timedelta(hours=2))])
    ingest(proc, [contract("acme", 99.0, at=T0 + timedelta(hours=1))])
    settle(proc)
    (provider,) = proc.problem().providers
    assert provider.contract.rates[0].tiers[0].rate_per_hour == 20.0


def test_a_future_roster_changes_team_fte_from_its_valid_from() -> None:
    proc = fresh()
    ingest(proc, [queue(), team(fte=5), team(fte=9, valid_from=T0 + timedelta(hours=10))])
    ingest(proc, [volume(0, 10)])
    settle(proc)
    problem = proc.problem()
    (t,) = problem.teams
    first_new = problem.request.period_of(T0 + timedelta(hours=10))
    assert t.rostered_fte(0) == 5 and t.rostered_fte(first_new) == 9
    assert t.rostered_fte(first_new - 1) == 5


def test_suspended_or_expired_contracts_take_no_work() -> None:
    proc = fresh()
    expired = contract("old", 5.0).model_copy(
        update={"valid_until": T0 - timedelta(days=1), "id": "old-1"}
    )
    ingest(proc, [queue(), team(), contract("acme", 20.0, suspended=True), expired])
    settle(proc)
    (provider,) = proc.problem().providers
    assert provider.status == "suspended"
    assert "old" not in {p.id for p in proc.problem().providers}


def test_projects_approved_only_spread_over_their_days_and_cancel_removes() -> None:
    proc = fresh()
    ingest(proc, [queue(), team(), project(hours_per_week=168.0, status="proposed")])
    settle(proc)
    assert [s.id for s in proc.problem().streams] == ["sd"]
    later = proc.state.watermark
    assert later is not None
    ingest(proc, [project(hours_per_week=168.0, at=later + timedelta(minutes=1))])
    settle(proc)
    problem = proc.problem()
    demand = problem.demand_for("erp")
    assert demand.work_hours is not None and set(demand.work_hours) == {1.0}
    ingest(proc, [project(at=later + timedelta(minutes=2), status="cancelled")])
    settle(proc)
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
    settle(a)
    settle(b)
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
    """Catalogue at T0 plans once it is final (clock T0+1h). The interval [0h,1h) closes at
    clock 3h (end + grace 1h + lateness 1h), inside the 3-hour debounce: no plan. An urgent
    contract change made at 2h50 is final at 3h50 and plans right there."""
    cfg = config(min_replan_minutes=180, replan_on_interval_close=True)
    d = Driver.new(cfg)
    d.feed([queue(), team(), contract("acme", 20.0), *hours(0, 3, 10)])
    first = d.proc.state.triggers.last_plan_at
    assert first == T0 + timedelta(hours=1), "the catalogue planned once, when final"
    d.feed([contract("acme", 21.0, at=T0 + timedelta(hours=2, minutes=50))])
    out = d.feed(hours(3, 4, 10))
    (plan,) = plans(out)
    assert plan.time == T0 + timedelta(hours=3, minutes=50)
    (applied,) = logs(out, "plan.applied")
    assert applied.attrs["trigger"] == "contract_changed"
    reasons = str(applied.attrs["reasons"]).split(",")
    assert {"contract_changed", "interval_closed"} <= set(reasons)
    assert not d.proc.state.triggers.marks

    # without the urgent change the debounced close plans when the debounce ends (a step of
    # its own, not the next event)
    quiet = Driver.new(cfg)
    quiet.feed([queue(), team(), contract("acme", 20.0), *hours(0, 3, 10)])
    (later,) = plans(quiet.feed(hours(3, 5, 10)))
    assert later.time == first + timedelta(minutes=180)


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


@pytest.mark.parametrize(("margin", "planned"), [(0.0, 0.8), (0.5, 0.9), (0.75, 0.95)])
def test_queues_are_planned_to_the_planning_target(margin: float, planned: float) -> None:
    """service_target_margin: an 80 % SLA planned to 80 + margin × 20 %; the catalogue (and
    the SLA the outcome is measured against) keeps 80 %."""
    proc = fresh(allowed_lateness_minutes=0, service_target_margin=margin)
    ingest(proc, [queue(aht_s=300), team()])
    ingest(proc, [volume(0, 10), volume(1, 10)])
    settle(proc)
    (stream,) = proc.problem().streams
    assert stream.sla.target_fraction == pytest.approx(planned)
    assert proc.state.catalogue.queues["sd"].sla.target_fraction == 0.8


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 6),  # interval (hour after T0)
            st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]),
            st.integers(-2, 200),  # minutes after the interval's end the report is made
            st.sampled_from(["sd", "l2"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_demand_windows_remembered_per_interval_decide_as_worked_out_each_time(
    reports: list[tuple[int, timezone, int, str]],
) -> None:
    """DemandBook keeps each UTC interval's window arithmetic; the outcome of every report
    (refusal and reason, or the upsert) and the final state are those of working it out for
    each report, in any offset."""
    cfg = config()
    remembered, each_time = DemandBook(), DemandBook()
    for n, (hour, zone, after, queue_id) in enumerate(reports):
        start = (T0 + timedelta(hours=hour)).astimezone(zone)
        event = volume(hour, 10 + n, queue_id=queue_id, event_id=f"r{n}").model_copy(
            update={"interval_start": start, "time": start + timedelta(minutes=60 + after)}
        )
        outcomes = []
        for book in (remembered, each_time):
            if book is each_time:
                book._windows.clear()
            try:
                book.observe(event, cfg)
                outcomes.append("ok")
            except (LateEvent, IntervalMismatch) as exc:
                outcomes.append(f"{type(exc).__name__}: {exc}")
        assert outcomes[0] == outcomes[1]
        if hour == 3 and n % 4 == 0:  # intervals close as event time moves on
            clock = T0 + timedelta(hours=hour + 2)
            assert remembered.close(clock, cfg) == each_time.close(clock, cfg)
    assert remembered.to_json() == each_time.to_json()
    if any(zone is UTC for _, zone, _, _ in reports):
        assert remembered._windows, "the UTC intervals were remembered"
