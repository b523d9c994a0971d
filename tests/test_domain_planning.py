"""Closed-loop behaviour of the domain processor: spikes, responses, caps, fallbacks.

Driven like the shell drives it (ingest → due → problem → policy → apply_plan), with the greedy
policy for speed and the optimiser where the choice of provider matters.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from allocator import CapacityChange, SolverOptions
from allocator.policies import OptimiserPolicy
from schemas import (
    AllocationLogged,
    AllocationPlanned,
    CapacityRequested,
    DeadLetterStage,
    Direction,
    Event,
    LogLevel,
    ResponseStatus,
    SourceKind,
)
from schemas.signing import sign_response
from services.domain.decisions import decision_events
from services.domain.responses import Line, Request, RequestStatus
from services.domain.state import DomainState
from services.domain.triggers import Trigger, TriggerKind
from tests.test_domain_support import (
    DOMAIN,
    SKILL,
    T0,
    Driver,
    config,
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
    d.feed_each(hours(24, 29, 200))  # two spike intervals final and closed (grace + lateness)
    return d


def now(d: Driver) -> datetime:
    """A live provider's clock: 10 minutes after the newest event time the domain has seen
    (requests go out when the domain is there, about one lateness after their own time)."""
    seen = d.proc.state.watermark
    assert seen is not None
    return seen + timedelta(minutes=10)


def answer(
    d: Driver, request: CapacityRequested, status: ResponseStatus, *, plan: bool = True, **kw: Any
) -> list[Event]:
    """The provider answers (see :func:`now`) and event time moves on until the answer is
    final. Returns the outputs of both batches."""
    out = d.feed([respond(request, status, at=now(d), **kw)], plan=plan)
    return out + d.settle(plan=plan)


def applied_at(log: AllocationLogged) -> datetime:
    """Clock time at which a response logged by the core was applied: its release time."""
    return log.time + timedelta(hours=1)


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
    # greedy names its ups cost_saving since it holds a level per segment (c31c2ae)
    assert all(x.decision_id and x.reason_codes for x in ups)
    assert any({"demand_increase", "cost_saving"} & set(x.reason_codes) for x in ups)
    # every request answers a published plan, and its decision is published too
    plan_ids = {p.plan_id for p in plans(d.outputs)}
    assert {r.plan_id for r in sent} <= plan_ids
    assert all(
        r.effective_at >= r.time + timedelta(hours=LEAD_H)
        for r in sent
        if r.target_fte > r.current_fte
    )


def test_a_provider_whose_lead_time_is_past_the_horizon_is_named_in_the_plan_notes() -> None:
    d = spiked(lead_h=24.0 * 30)  # a month's lead time, a two-day horizon
    noted = [x.message for x in logs(d.outputs) if x.kind == "plan.notes"]
    assert noted and all("ramp-up lead time 720 h is not inside" in m for m in noted)
    assert requests(d.outputs) == [], "neither provider can be scaled up inside the horizon"


def test_the_optimiser_also_picks_the_cheapest_provider() -> None:
    d = Driver.new(policy=OptimiserPolicy(SolverOptions(time_limit_s=10, compute_marginals=False)))
    terms: dict[str, Any] = {"lead_h": LEAD_H, "notice_h": NOTICE_H}
    d.feed([queue(), team(), contract("cheap", 25.0, **terms), contract("pricey", 35.0, **terms)])
    # A day busier than the 5-FTE team (its roster is paid anyway, so the optimiser only buys
    # what the team cannot cover: ~8 agents for 60 calls/h of 5 min against 3.5 productive).
    d.feed_each(hours(0, 24, 60))
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
    out = answer(d, first, ResponseStatus.REJECTED)
    (rejected,) = logs(out, "request.rejected")
    assert rejected.level is LogLevel.WARNING
    # urgent: the plan is made at the very step the rejection is applied (its release time)
    assert applied_at(rejected) in [p.time for p in plans(out)]
    new_ups = [
        r
        for r in requests(d.outputs[before:])
        if r.target_fte > r.current_fte and r.time >= applied_at(rejected)
    ]
    assert new_ups and {r.provider_id for r in new_ups} == {"pricey"}
    assert all(r.effective_at >= r.time + timedelta(hours=LEAD_H) for r in new_ups)


def test_no_request_is_sent_twice_while_pending() -> None:
    d = spiked()
    d.feed_each(hours(29, 36, 200))
    keys = [(r.provider_id, r.skill, r.effective_at, r.target_fte) for r in requests(d.outputs)]
    assert len(keys) == len(set(keys))
    assert len({r.request_id for r in requests(d.outputs)}) == len(requests(d.outputs))


def test_accepted_capacity_is_committed_from_its_effective_time_and_scaled_down_after_notice() -> (
    None
):
    d = spiked()
    sent = requests(d.outputs)
    at = now(d)
    d.feed([respond(r, ResponseStatus.ACCEPTED, at=at) for r in sent])
    d.settle()
    # a re-plan made while the answers were in flight may supersede a request: stale answer
    status = {r.request_id: d.proc.state.providers.requests[r.request_id].status for r in sent}
    assert {s.value for s in status.values()} <= {"accepted", "superseded"}
    accepted = {rid for rid, s in status.items() if s.value == "accepted"}
    line = d.proc.state.providers.lines[("cheap", SKILL)]
    assert any(c.accepted for c in line.changes)
    assert all(c.accepted for c in line.changes if c.request_id in accepted)
    # demand falls back: a day of quiet intervals
    before = len(d.outputs)
    d.feed_each(hours(31, 60, 5))
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
    at = now(d)
    forged = respond(
        first, ResponseStatus.ACCEPTED, provider_id="pricey", event_id="forged-1", at=at
    )
    unknown = respond(first, ResponseStatus.ACCEPTED, event_id="forged-2", at=at).model_copy(
        update={"request_id": "no-such-request"}
    )
    out = d.feed([forged, unknown])
    assert d.steps[-1].refused == [], "refused when applied, not on arrival"
    out += d.settle()
    step = d.steps[-1]
    # applied (and refused) in canonical order: key (provider id) "cheap" before "pricey"
    assert [(r[0].event.id, r[1], r[2]) for r in step.refused] == [
        ("forged-2", DeadLetterStage.SECURITY, "ForgedResponse"),
        ("forged-1", DeadLetterStage.SECURITY, "ForgedResponse"),
    ]
    assert "pricey" in step.refused[1][3] and "cheap" in step.refused[1][3]
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
    d.feed_each(hours(29, hour + 2, 200))  # final once respond_by + lateness has passed
    timeouts = logs(d.outputs[before:], "request.timeout")
    assert any(t.request_id == first.request_id for t in timeouts)
    assert d.proc.state.providers.requests[first.request_id].status.value == "timeout"
    # the timeout is decided once answers up to respond_by are final: one lateness later
    decided = first.respond_by + timedelta(hours=1)
    (timeout,) = [t for t in timeouts if t.request_id == first.request_id]
    assert timeout.time == first.respond_by
    later = [r for r in requests(d.outputs[before:]) if r.time >= decided]
    assert later and all(r.provider_id == "pricey" for r in later if r.target_fte > r.current_fte)


def test_a_partial_confirmation_commits_the_confirmed_level_and_caps_the_line() -> None:
    d = spiked()
    book = d.proc.state.providers.requests
    ups = [
        r
        for r in requests(d.outputs)
        if r.provider_id == "cheap"
        and r.target_fte >= 2
        and book[r.request_id].status.value == "outstanding"  # not revised by a later plan
    ]
    request = ups[0]
    confirmed = request.current_fte + 1.0
    out = answer(d, request, ResponseStatus.PARTIAL, confirmed=confirmed)
    (partial,) = logs(out, "request.partial")
    line = d.proc.state.providers.lines[("cheap", SKILL)]
    assert any(c.accepted and c.fte == confirmed for c in line.changes)
    assert ("cheap", SKILL) in d.proc.state.providers.caps
    assert not [
        r
        for r in requests(out)
        if r.provider_id == "cheap"
        and r.target_fte > r.current_fte
        and r.time >= applied_at(partial)
    ]
    # a newer contract lifts the cap
    d.feed([contract("cheap", 24.0, at=now(d), lead_h=LEAD_H)])
    d.settle()
    assert ("cheap", SKILL) not in d.proc.state.providers.caps


def test_a_stale_second_answer_is_refused_as_late() -> None:
    d = spiked()
    first = requests(d.outputs)[0]
    answer(d, first, ResponseStatus.ACCEPTED)
    answer(d, first, ResponseStatus.REJECTED)
    (refusal,) = d.steps[-1].refused
    assert refusal[1] is DeadLetterStage.LATE and "already accepted" in refusal[3]


def test_solver_failure_holds_every_engaged_line() -> None:
    d = spiked()
    for r in requests(d.outputs):
        answer(d, r, ResponseStatus.ACCEPTED, plan=False)
    d.feed(hours(30, 33, 200), plan=False)
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
        answer(d, r, ResponseStatus.ACCEPTED)
    line = d.proc.state.providers.lines[("cheap", SKILL)]
    effective = next(c.effective_at for c in line.changes if c.accepted and c.fte > 0)
    hour = int((effective - T0) / timedelta(hours=1))
    d.feed(hours(30, hour + 1, 200), plan=False)
    assert d.proc.state.providers.lines[("cheap", SKILL)].committed > 0
    at = T0 + timedelta(hours=hour + 1, minutes=30)
    out = d.feed([contract("cheap", 25.0, at=at, lead_h=LEAD_H, notice_h=NOTICE_H, suspended=True)])
    out += d.settle()
    assert at + timedelta(hours=1) in [p.time for p in plans(out)], "urgent: plans when final"
    out = [e for e in out if e.time >= at + timedelta(hours=1)]
    downs = [r for r in requests(out) if r.provider_id == "cheap"]
    assert downs and downs[0].target_fte == 0.0
    assert "suspended" in downs[0].reasons


def test_a_request_never_times_out_at_the_step_it_was_made() -> None:
    """With zero response lateness, a request due at once (respond_by = as_of = the clock)
    would time out at its own step, and the urgent re-plan at that same clock would make it
    again, forever. Its timeout waits for the next step instead."""
    from services.domain.responses import ProviderBook, Request

    cfg = config(control_lateness_minutes=0)
    now = T0 + timedelta(hours=5)
    book = ProviderBook()
    book.record_request(
        Request("r1", "cheap", SKILL, "p1", 0.0, 2.0, now, respond_by=now, sent_at=now)
    )
    assert book.advance(now, cfg) == []
    assert book.next_timeout(cfg) == now + timedelta(microseconds=1)
    (outcome,) = book.advance(now + timedelta(microseconds=1), cfg)
    assert outcome.status.value == "timeout" and book.next_timeout(cfg) is None


def _spiked_with_keys(keys: dict[str, bytes]) -> Driver:
    d = Driver.new(config(provider_keys=keys))
    terms: dict[str, Any] = {"lead_h": LEAD_H, "notice_h": NOTICE_H}
    d.feed([queue(), team(), contract("cheap", 25.0, **terms), contract("pricey", 35.0, **terms)])
    d.feed_each(hours(0, 24, 10))
    d.feed_each(hours(24, 29, 200))
    return d


def test_a_keyed_provider_must_sign_its_responses() -> None:
    key = b"cheap-secret"
    d = _spiked_with_keys({"cheap": key})
    first = requests(d.outputs)[0]
    assert first.provider_id == "cheap"
    at = now(d)
    unsigned = respond(first, ResponseStatus.ACCEPTED, event_id="unsigned", at=at)
    wrong = respond(first, ResponseStatus.ACCEPTED, event_id="wrong", at=at)
    wrong = wrong.model_copy(update={"signature": sign_response(wrong, b"guessed")})
    # a signature is bound to its response: copied onto another one it does not verify
    donor = respond(first, ResponseStatus.REJECTED, event_id="donor", at=at)
    replayed = respond(first, ResponseStatus.ACCEPTED, event_id="replayed", at=at)
    replayed = replayed.model_copy(update={"signature": sign_response(donor, key)})
    out = d.feed([unsigned, wrong, replayed])
    out += d.settle()
    refused = {r[0].event.id: (r[1], r[2], r[3]) for r in d.steps[-1].refused}
    assert set(refused) == {"unsigned", "wrong", "replayed"}
    assert all(r[:2] == (DeadLetterStage.SECURITY, "ForgedResponse") for r in refused.values())
    assert "unsigned" in refused["unsigned"][2] and "wrongly signed" in refused["wrong"][2]
    assert key.decode() not in " ".join(r[2] for r in refused.values()), "no secret in reasons"
    assert len([e for e in logs(out) if e.level is LogLevel.SECURITY]) == 3
    assert d.proc.state.providers.requests[first.request_id].status.value == "outstanding"
    # the provider's own signed answer is applied
    good = respond(first, ResponseStatus.ACCEPTED, event_id="good", at=now(d))
    good = good.model_copy(update={"signature": sign_response(good, key)})
    answer_out = d.feed([good]) + d.settle()
    assert d.steps[-1].refused == []
    assert d.proc.state.providers.requests[first.request_id].status.value == "accepted"
    assert logs(answer_out, "request.accepted")


@pytest.mark.parametrize(
    ("accepted_first", "plan_from", "wanted", "current"),
    [
        # a pending step lowers the line from 8 to 2 at t; the plan has 8 there (10 before)
        (False, 10.0, 8.0, 2.0),
        # 2 at t was accepted, then 8 at t asked (pending); the plan wants 2 again
        (True, 8.0, 2.0, 8.0),
    ],
)
def test_a_change_is_requested_against_the_level_the_line_has_at_its_time(
    accepted_first: bool, plan_from: float, wanted: float, current: float
) -> None:
    """The level a provider will deliver at ``t`` unless asked otherwise counts a change
    effective at ``t`` itself (the latest made). Compared with the level just before ``t``, or
    with any change ever recorded for ``t``, both cases were dropped as "nothing new" and the
    unwanted level came into force (seen in the closed loop: a queue left at 2 of 8 FTE)."""
    cfg = config()
    t = T0 + timedelta(hours=20)
    state = DomainState(DOMAIN)
    book = state.providers
    book.lines[("cheap", SKILL)] = Line(committed=8.0)

    def ask(rid: str, fte: float) -> None:
        book.record_request(Request(rid, "cheap", SKILL, "p0", 8.0, fte, t, t, T0))

    ask("r1", 2.0)
    if accepted_first:
        book.lines[("cheap", SKILL)].changes[0].accepted = True
        book.requests["r1"].status = RequestStatus.ACCEPTED
        ask("r2", 8.0)
    change = CapacityChange(
        provider_id="cheap",
        skill=SKILL,
        direction="up" if wanted > plan_from else "down",
        from_fte=plan_from,
        to_fte=wanted,
        effective_period=20,
        effective_at=t,
        request_by_period=8,
        reasons=(),
    )
    trigger = Trigger(
        kind=TriggerKind.INTERVAL_CLOSED,
        reasons=(TriggerKind.INTERVAL_CLOSED,),
        urgent=False,
        at=T0,
        as_of=T0,
        plan_id="plan-1",
        seq=1,
    )
    plan: Any = SimpleNamespace(changes=(change,))
    out = decision_events(plan, trigger, state, cfg)
    (sent,) = requests(out.events)
    assert (sent.current_fte, sent.target_fte, sent.effective_at) == (current, wanted, t)
    assert book.lines[("cheap", SKILL)].level_at(t) == wanted
    # asked again, nothing more goes out: the line has that level at t now
    again = decision_events(plan, replace(trigger, plan_id="plan-2"), state, cfg)
    assert requests(again.events) == []
