"""Closed-loop behaviour of the domain processor: spikes, responses, caps, fallbacks.

Driven like the shell drives it (ingest → due → problem → policy → apply_plan), with the greedy
policy for speed and the optimiser where the choice of provider matters.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from allocator import SolverOptions
from allocator.policies import OptimiserPolicy
from schemas import (
    AllocationPlanned,
    DeadLetterStage,
    Direction,
    LogLevel,
    ResponseStatus,
    SourceKind,
)
from tests.test_domain_support import (
    SKILL,
    T0,
    Driver,
    contract,
    decisions,
    hours,
    logs,
    plans,
    queue,
    requests,
    respond,
    team,
)

LEAD_H = 6.0
NOTICE_H = 12.0


def spiked(**contract_kw: float) -> Driver:
    """A day of quiet demand, then a spike; two providers, the cheap one at 25/h."""
    d = Driver.new()
    terms: dict[str, Any] = {"lead_h": LEAD_H, "notice_h": NOTICE_H} | contract_kw
    d.feed([queue(), team(), contract("cheap", 25.0, **terms), contract("pricey", 35.0, **terms)])
    d.feed_each(hours(0, 24, 10))
    assert requests(d.outputs) == [], "quiet demand is covered by the team"
    d.feed_each(hours(24, 27, 200))
    return d


def test_spike_requests_the_cheapest_eligible_provider_no_earlier_than_its_lead_time() -> None:
    d = spiked()
    sent = requests(d.outputs)
    assert sent, "a spike must produce a capacity request"
    first = sent[0]
    assert first.provider_id == "cheap"
    assert first.skill == SKILL
    assert first.target_fte > first.current_fte == 0.0
    assert first.effective_at >= first.time + timedelta(hours=LEAD_H)
    assert first.respond_by <= first.effective_at
    ups = [x for x in decisions(d.outputs) if x.direction is Direction.UP]
    assert ups and all(x.target_kind is SourceKind.PROVIDER for x in ups)
    assert any(x.decision_id and "demand_increase" in x.reason_codes for x in ups)
    # every request answers a published plan, and its decision is published too
    plan_ids = {p.plan_id for p in plans(d.outputs)}
    assert {r.plan_id for r in sent} <= plan_ids
    assert all(
        r.effective_at >= r.time + timedelta(hours=LEAD_H)
        for r in sent
        if r.target_fte > r.current_fte
    )


def test_the_optimiser_also_picks_the_cheapest_provider() -> None:
    d = Driver.new(policy=OptimiserPolicy(SolverOptions(time_limit_s=10, compute_marginals=False)))
    terms: dict[str, Any] = {"lead_h": LEAD_H, "notice_h": NOTICE_H}
    d.feed([queue(), team(), contract("cheap", 25.0, **terms), contract("pricey", 35.0, **terms)])
    d.feed_each(hours(0, 24, 10))
    d.feed_each(hours(24, 27, 200))
    ups = [r for r in requests(d.outputs) if r.target_fte > r.current_fte]
    assert ups and ups[0].provider_id == "cheap"
    assert all(r.effective_at >= r.time + timedelta(hours=LEAD_H) for r in ups)
    # the pricier provider is only asked once the cheap one let a request time out
    first_timeout = next(
        (i for i, e in enumerate(d.outputs) if e in logs(d.outputs, "request.timeout")), None
    )
    for r in ups:
        if r.provider_id == "pricey":
            assert first_timeout is not None and d.outputs.index(r) > first_timeout


def test_a_rejection_makes_the_next_plan_ask_another_provider() -> None:
    d = spiked()
    first = requests(d.outputs)[0]
    before = len(d.outputs)
    out = d.feed([respond(first, ResponseStatus.REJECTED)])
    assert logs(out, "request.rejected")[0].level is LogLevel.WARNING
    assert plans(out), "a rejection is urgent: the next ingest re-plans at once"
    new_ups = [r for r in requests(d.outputs[before:]) if r.target_fte > r.current_fte]
    assert new_ups and {r.provider_id for r in new_ups} == {"pricey"}
    assert all(r.effective_at >= r.time + timedelta(hours=LEAD_H) for r in new_ups)


def test_no_request_is_sent_twice_while_pending() -> None:
    d = spiked()
    d.feed_each(hours(27, 36, 200))
    keys = [(r.provider_id, r.skill, r.effective_at, r.target_fte) for r in requests(d.outputs)]
    assert len(keys) == len(set(keys))
    assert len({r.request_id for r in requests(d.outputs)}) == len(requests(d.outputs))


def test_accepted_capacity_is_committed_from_its_effective_time_and_scaled_down_after_notice() -> (
    None
):
    d = spiked()
    for r in requests(d.outputs):
        d.feed([respond(r, ResponseStatus.ACCEPTED)])
    line = d.proc.state.providers.lines[("cheap", SKILL)]
    assert line.changes and all(c.accepted for c in line.changes)
    # demand falls back: a day of quiet intervals
    before = len(d.outputs)
    d.feed_each(hours(27, 60, 5))
    committed = d.proc.state.providers.lines[("cheap", SKILL)].committed
    downs = [r for r in requests(d.outputs[before:]) if r.target_fte < r.current_fte]
    assert downs, "falling demand releases provider capacity"
    for r in downs:
        assert r.effective_at >= r.time + timedelta(hours=NOTICE_H), r
    assert all(
        x.direction is Direction.DOWN
        for x in decisions(d.outputs[before:])
        if x.to_fte < x.from_fte
    )
    assert committed >= 0


def test_a_restricted_queue_never_goes_to_an_uncertified_or_out_of_region_provider() -> None:
    d = Driver.new()
    terms: dict[str, Any] = {"lead_h": LEAD_H, "notice_h": NOTICE_H}
    d.feed(
        [
            queue("secure", restricted=True, certifications=["iso27001"]),
            team(),
            contract("offshore", 10.0, regions=["in"], certifications=["iso27001"], **terms),
            contract("nocert", 12.0, **terms),
            contract("certified", 30.0, certifications=["iso27001"], **terms),
        ]
    )
    d.feed_each(hours(0, 24, 10, queue_id="secure"))
    d.feed_each(hours(24, 27, 200, queue_id="secure"))
    sent = requests(d.outputs)
    assert sent and {r.provider_id for r in sent} == {"certified"}
    for plan in plans(d.outputs):
        sources = {a.source_id for a in plan.allocations if a.stream_id == "secure"}
        assert not sources & {"offshore", "nocert"}


def test_a_forged_response_is_refused_logged_as_security_and_never_applied() -> None:
    d = spiked()
    first = requests(d.outputs)[0]
    forged = respond(first, ResponseStatus.ACCEPTED, provider_id="pricey", event_id="forged-1")
    unknown = respond(first, ResponseStatus.ACCEPTED, event_id="forged-2").model_copy(
        update={"request_id": "no-such-request"}
    )
    out = d.feed([forged, unknown])
    step = d.steps[-1]
    assert [(r[1], r[2]) for r in step.refused] == [
        (DeadLetterStage.SECURITY, "ForgedResponse"),
        (DeadLetterStage.SECURITY, "ForgedResponse"),
    ]
    assert "pricey" in step.refused[0][3] and "cheap" in step.refused[0][3]
    security = [e for e in logs(out) if e.level is LogLevel.SECURITY]
    assert len(security) == 2 and all(e.kind == "response.forged" for e in security)
    request = d.proc.state.providers.requests[first.request_id]
    assert request.status.value == "outstanding"
    line = d.proc.state.providers.lines[("cheap", SKILL)]
    assert not any(c.accepted for c in line.changes)
    assert ("cheap", SKILL) not in d.proc.state.providers.caps


def test_no_answer_by_respond_by_is_treated_as_rejected() -> None:
    d = spiked()
    first = requests(d.outputs)[0]
    hour = int((first.respond_by - T0) / timedelta(hours=1))
    before = len(d.outputs)
    d.feed_each(hours(27, hour + 1, 200))
    timeouts = logs(d.outputs[before:], "request.timeout")
    assert any(t.request_id == first.request_id for t in timeouts)
    assert d.proc.state.providers.requests[first.request_id].status.value == "timeout"
    later = [r for r in requests(d.outputs[before:]) if r.time >= first.respond_by]
    assert later and all(r.provider_id == "pricey" for r in later if r.target_fte > r.current_fte)


def test_a_partial_confirmation_commits_the_confirmed_level_and_caps_the_line() -> None:
    d = spiked()
    ups = [r for r in requests(d.outputs) if r.provider_id == "cheap" and r.target_fte >= 2]
    request = ups[0]
    confirmed = request.current_fte + 1.0
    out = d.feed([respond(request, ResponseStatus.PARTIAL, confirmed=confirmed)])
    assert logs(out, "request.partial")
    line = d.proc.state.providers.lines[("cheap", SKILL)]
    assert any(c.accepted and c.fte == confirmed for c in line.changes)
    assert ("cheap", SKILL) in d.proc.state.providers.caps
    assert not [
        r for r in requests(out) if r.provider_id == "cheap" and r.target_fte > r.current_fte
    ]
    # a newer contract lifts the cap
    d.feed([contract("cheap", 24.0, at=request.time + timedelta(hours=1), lead_h=LEAD_H)])
    assert ("cheap", SKILL) not in d.proc.state.providers.caps


def test_a_stale_second_answer_is_refused_as_late() -> None:
    d = spiked()
    first = requests(d.outputs)[0]
    d.feed([respond(first, ResponseStatus.ACCEPTED)])
    d.feed([respond(first, ResponseStatus.REJECTED)])
    (refusal,) = d.steps[-1].refused
    assert refusal[1] is DeadLetterStage.LATE and "already accepted" in refusal[3]


def test_solver_failure_holds_every_engaged_line() -> None:
    d = spiked()
    for r in requests(d.outputs):
        d.feed([respond(r, ResponseStatus.ACCEPTED)], plan=False)
    d.feed(hours(27, 30, 200), plan=False)
    trigger = d.proc.due()
    assert trigger is not None
    out = d.proc.apply_failure("SolverFailure: time limit", trigger)
    holds = decisions(out)
    assert holds and all(h.direction is Direction.HOLD and h.from_fte == h.to_fte for h in holds)
    assert {h.target_id for h in holds} == {"cheap"}
    assert all("time limit" in h.reason for h in holds)
    (error,) = logs(out, "plan.failed")
    assert error.level is LogLevel.ERROR
    assert not requests(out) and not [e for e in out if isinstance(e, AllocationPlanned)]
    assert d.proc.due() is None, "the failed trigger is consumed (debounced retry)"


def test_a_suspension_releases_the_provider_at_once() -> None:
    d = spiked()
    for r in requests(d.outputs):
        d.feed([respond(r, ResponseStatus.ACCEPTED)])
    line = d.proc.state.providers.lines[("cheap", SKILL)]
    effective = next(c.effective_at for c in line.changes if c.accepted and c.fte > 0)
    hour = int((effective - T0) / timedelta(hours=1))
    d.feed(hours(27, hour + 1, 200), plan=False)
    assert d.proc.state.providers.lines[("cheap", SKILL)].committed > 0
    at = T0 + timedelta(hours=hour + 1, minutes=30)
    out = d.feed([contract("cheap", 25.0, at=at, lead_h=LEAD_H, notice_h=NOTICE_H, suspended=True)])
    assert plans(out), "a contract change is urgent"
    downs = [r for r in requests(out) if r.provider_id == "cheap"]
    assert downs and downs[0].target_fte == 0.0
    assert "suspended" in downs[0].reasons
