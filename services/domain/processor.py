"""``DomainProcessor``: the functional core of one planning domain behind five calls.

The Faust shell owns all I/O: it feeds validated events (``ingest``), asks whether to plan
(``due``), builds the problem (``problem``), solves it off the event loop with any
:class:`allocator.policies.AllocationPolicy`, and publishes what ``apply_plan`` (or
``apply_failure``) returns; it dead-letters ``StepResult.refused`` and publishes
``StepResult.log``; it stores ``to_state()`` in its table. Nothing here reads a clock.

**Determinism under any batching or interleaving.** ``ingest`` does not apply events in arrival
order. It *accepts* them into a reorder buffer (after the domain check, dedupe by id, and the
lateness check against the watermark = newest accepted event time), then walks the canonical
timeline as far as it is final: an event is final once the watermark has passed its release
time (event time + the lateness of its kind); timers (interval closes, request timeouts, the
end of a debounce or staleness window) are points of the same timeline. Each distinct point is
one **step**: apply the events released there (in the buffer's canonical order), then fire the
timers due by then, then check the triggers. When a plan is due after a step, ``ingest`` stops
there — ``StepResult.more`` says whether final steps remain — so the shell plans at exactly
that point and calls ``ingest(())`` again::

    result = proc.ingest(items)
    while True:
        publish(result.refused, result.log)
        if (trigger := proc.due()) is not None:
            publish(plan_or_fallback(trigger))       # apply_plan / apply_failure
        if not result.more:
            break
        result = proc.ingest(())

The steps, the state at each step and therefore every plan and output are the same for any
cut into batches and any interleaving of the inputs that keeps each event's disorder (how far
the watermark was past its time when it arrived) below its kind's lateness.

``problem()`` raises :class:`allocator.InvalidInput` when there is nothing to plan; ``due()``
only returns a trigger when :meth:`DomainProcessor.ready` holds, so that is rare (e.g. every
stream's only provider was removed meanwhile) — the shell then calls ``apply_failure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from allocator import AllocationProblem, AllocatorError, Plan
from allocator.policies import AllocationPolicy
from schemas import (
    AllocationLogged,
    CapacityResponded,
    DeadLetterStage,
    Direction,
    Event,
    LogLevel,
    ProjectDemandChanged,
    ProviderContractUpdated,
    QueueDefined,
    ScalingDecided,
    SourceKind,
    TeamCapacityUpdated,
    TicketVolumeObserved,
)
from schemas.signing import verify_response
from services.domain.buffer import Inbound, InboundLike, from_us, to_us
from services.domain.catalogue import CatalogueRejected
from services.domain.config import PlannerConfig
from services.domain.decisions import decision_events, log_event, planned_event, text
from services.domain.demand import IntervalMismatch, LateEvent
from services.domain.ids import chain_digest, derive_id, iso
from services.domain.problem import build_problem
from services.domain.responses import ForgedResponse, Outcome, StaleResponse
from services.domain.state import DomainState
from services.domain.triggers import Trigger, TriggerKind

__all__ = ["DomainProcessor", "Inbound", "InboundLike", "Refusal", "StepResult"]

Refusal = tuple[InboundLike, DeadLetterStage, str, str]
"""(input, stage, error class, reason): the shell turns it into a dead letter. The input is the
caller's own object, or an :class:`Inbound` when it was buffered across a state restore."""


@dataclass(slots=True)
class StepResult:
    """What one ``ingest`` call did.

    Refusals come at arrival (wrong domain, not an input, late) or when the event is applied
    (forged or stale response, report after its interval's grace, invalid catalogue data), so
    a call may refuse events that arrived in earlier calls.
    """

    refused: list[Refusal] = field(default_factory=list)
    duplicates: int = 0
    accepted: int = 0
    """Events of this call taken into the reorder buffer."""
    applied: int = 0
    """Events applied to the state in this call (from this call's input or earlier ones)."""
    log: list[AllocationLogged] = field(default_factory=list)
    intervals_closed: int = 0
    more: bool = False
    """Stopped at a step where a plan is due while later steps are already final: plan, then
    call ``ingest(())`` to continue."""
    pending: int = 0
    """Events left in the reorder buffer (waiting for the watermark)."""
    late_catalogue: int = 0
    """Catalogue events of this call that arrived after their place in the timeline was final
    and are applied at the current clock instead (see :meth:`DomainProcessor._accept`)."""


_CATALOGUE_TRIGGER: dict[type[Event], TriggerKind] = {
    QueueDefined: TriggerKind.QUEUE_CHANGED,
    ProjectDemandChanged: TriggerKind.PROJECT_CHANGED,
    TeamCapacityUpdated: TriggerKind.ROSTER_CHANGED,
    ProviderContractUpdated: TriggerKind.CONTRACT_CHANGED,
}


_MICROSECOND = timedelta(microseconds=1)


def _late(item: InboundLike, event: Event, lateness: timedelta, watermark: datetime) -> Refusal:
    """The refusal of an event that arrived after its place in event order was final."""
    minutes = int(lateness.total_seconds()) // 60
    return (
        item,
        DeadLetterStage.LATE,
        "LateEvent",
        f"{type(event).__name__} at {iso(event.time)} arrived after the domain "
        f"watermark {iso(watermark)} was more than the allowed lateness "
        f"({minutes} min) past it: its place in event order was already final",
    )


class DomainProcessor:
    """One domain's state and the pure transitions on it (see the module docstring)."""

    def __init__(
        self, domain: str, config: PlannerConfig, state: dict[str, Any] | None = None
    ) -> None:
        self.domain = domain
        self.config = config
        self.state = DomainState(domain) if state is None else DomainState.from_json(state)
        self._reforecast: set[str] = set()
        self._ready: bool | None = None  # derived from the catalogue; None = recompute
        control = config.control_lateness
        self._lateness: dict[type[Event], timedelta] = {
            TicketVolumeObserved: config.lateness,
            CapacityResponded: control,
            **dict.fromkeys(_CATALOGUE_TRIGGER, control),
        }
        if self.state.domain != domain:
            raise ValueError(f"state is for domain {self.state.domain!r}, not {domain!r}")

    # ---- ingest ----------------------------------------------------------------------------

    def ingest(self, items: Sequence[InboundLike]) -> StepResult:
        """Accept ``items`` into the reorder buffer, then apply the timeline as far as it is
        final, stopping after the first step at which a plan is due (see the module doc)."""
        result = StepResult()
        self._accept_all(items, result)
        result.more = self._run(result)
        result.pending = len(self.state.buffer)
        return result

    def advance(self, watermark: datetime) -> StepResult:
        """Event time has reached ``watermark`` on every input (an event-time heartbeat: the
        low watermark of the input partitions, carried by the stream, never the wall clock).

        The domain's watermark moves up to it (never back) and the timeline is applied as far
        as that makes it final, exactly as ``ingest`` does after an event at that time: so a
        domain whose own inputs stopped still closes its intervals, releases what its reorder
        buffer holds and plans. Same protocol as ``ingest``: plan at a stop, continue with
        ``ingest(())`` while ``more``.

        Decisions stay a function of the event stream: a heartbeat that respects the bound
        ``ingest`` relies on (no event still to come is released before it, i.e. inputs are
        at most their kind's lateness behind it) changes *when* steps are taken, never which
        steps or what they decide. A heartbeat beyond it makes the events it overtook late
        (refused with the watermark in the reason), as a real event would.
        """
        st = self.state
        if st.watermark is None or watermark > st.watermark:
            st.watermark = watermark
        result = StepResult()
        result.more = self._run(result)
        result.pending = len(st.buffer)
        return result

    def _accept_all(self, items: Sequence[InboundLike], result: StepResult) -> None:
        """:meth:`_accept` for each item in order; ticket volumes of this domain (nearly all
        of the input) take an inlined path with the same outcome: the watermark is kept in
        integer microseconds between them (exact, so every comparison is the same)."""
        st = self.state
        domain = self.domain
        dedupe = st.dedupe
        push = st.buffer.push_volume
        lateness = self.config.lateness
        lateness_us = lateness // _MICROSECOND
        watermark = st.watermark
        watermark_us = None if watermark is None else to_us(watermark)
        for item in items:
            event = item.event
            if type(event) is not TicketVolumeObserved or event.domain != domain:
                if watermark is not st.watermark:
                    st.watermark = watermark
                self._accept(item, result)
                watermark = st.watermark
                watermark_us = None if watermark is None else to_us(watermark)
                continue
            time = event.time
            time_us = to_us(time)
            if not dedupe.check_and_add(event.id, time, time_us):
                result.duplicates += 1
                continue
            release = time_us + lateness_us
            if watermark_us is not None and release < watermark_us:
                assert watermark is not None
                result.refused.append(_late(item, event, lateness, watermark))
                continue
            push(item, event, release)
            if watermark_us is None or time_us > watermark_us:
                watermark, watermark_us = time, time_us
            result.accepted += 1
        st.watermark = watermark

    def _accept(self, item: InboundLike, result: StepResult) -> None:
        st = self.state
        event = item.event
        if event.domain != self.domain:
            result.refused.append(
                (
                    item,
                    DeadLetterStage.PROCESS,
                    "WrongDomain",
                    f"event of domain {event.domain} routed to domain {self.domain}",
                )
            )
            return
        if not st.dedupe.check_and_add(event.id, event.time):
            result.duplicates += 1
            return
        lateness = self._lateness.get(type(event))
        if lateness is None:
            result.refused.append(
                (
                    item,
                    DeadLetterStage.PROCESS,
                    "NotAnInput",
                    f"{type(event).event_type} is not an input of the planner",
                )
            )
            return
        watermark = st.watermark
        release = to_us(event.time + lateness)
        if watermark is not None and release < to_us(watermark):
            if type(event) in _CATALOGUE_TRIGGER:
                # Compacted catalogue topics are re-read from the start by every fresh worker,
                # so old facts arriving after current tickets are normal, not errors. They are
                # latest-wins / versioned, so applying one late changes only *when* a plan
                # sees it (now, at the clock), never the catalogue it ends up in.
                clock = st.clock
                if clock is not None:
                    release = max(release, to_us(clock))
                st.buffer.push(item, release)
                result.accepted += 1
                result.late_catalogue += 1
                return
            result.refused.append(_late(item, event, lateness, watermark))
            return
        st.buffer.push(item, release)
        if watermark is None or event.time > watermark:
            st.watermark = event.time
        result.accepted += 1

    def _run(self, result: StepResult) -> bool:
        """Take final steps until a plan is due; True when final steps remain after it."""
        watermark = self.state.watermark
        if watermark is None:
            return False
        limit = to_us(watermark)
        settled = False  # no plan was due after the previous step of this call
        while True:
            step = self._next_step(limit)
            if step is None:
                return False
            if settled:
                self._steps(step, limit, result)
            else:
                self._step(step, result)
            if self._plan_due():
                return self._next_step(limit) is not None
            settled = True

    def _steps(self, first: int, limit: int, result: StepResult) -> None:
        """:meth:`_step` at ``first`` and, in the same call, the following steps that only
        release ticket volumes — the batched fast path (nearly every step of a back-fill or a
        replay is one report of one queue). Called only when no plan was due after the
        previous step.

        A step that releases only ticket volumes and comes before every other point of the
        timeline (``bound``: the next interval close, request timeout, debounce or staleness
        end, provider change, dedupe prune, and the watermark) changes nothing but the demand
        windows, the offsets and the digest: closing, timing out, committing and pruning are
        no-ops there (each is a point of its own), volumes mark no trigger, and whether a plan
        is due cannot change between two points (it was not after the previous step). So those
        steps are taken back to back without the per-step work; the clock is set once, to the
        last of them. A report can move the next close into the bound (its interval closes at
        end + grace + lateness, never before its release), which ends the run; a step that
        also releases another kind of event, or where an interval closes, ends it as a whole
        step. The result is the state, refusals and counters of taking them one by one.
        """
        st, cfg = self.state, self.config
        buffer = st.buffer
        clock = st.clock
        quiet, idle_until = st.providers.idle_before()
        prune_at = st.dedupe.prune_due(cfg.dedupe_window)
        if (
            clock is None
            or not quiet
            or prune_at is None
            or self._reforecast
            or first != buffer.top()
            or type(buffer.peek().event) is not TicketVolumeObserved
        ):
            self._step(first, result)
            return
        bound = limit
        for moment in (
            st.demand.next_close,
            st.providers.next_timeout(cfg),
            st.triggers.wake(clock, cfg),
            idle_until,
            prune_at,
        ):
            if moment is not None:
                bound = min(bound, to_us(moment))
        if first >= bound or first < to_us(clock):
            self._step(first, result)
            return
        demand = st.demand
        observe = demand.observe
        offsets = st.offsets
        refused = result.refused
        close = demand.next_close
        close_us = None if close is None else to_us(close)
        last: int | None = None
        while True:
            top = buffer.top()
            if top is None or top >= bound or type(buffer.peek().event) is not TicketVolumeObserved:
                break
            whole = False
            for item in buffer.take(top):
                event = item.event
                if type(event) is not TicketVolumeObserved:
                    whole = True  # e.g. a provider response released at the same instant
                    if last is not None:
                        st.clock = from_us(last)  # as the step-by-step walk would have it
                    self._apply_item(item, result)
                    continue
                # = _apply_item(item, result) for a ticket volume
                key = (item.topic, item.partition)
                if item.offset > offsets.get(key, -1):
                    offsets[key] = item.offset
                try:
                    observe(event, cfg)
                except LateEvent as exc:
                    refused.append((item, DeadLetterStage.LATE, "LateEvent", str(exc)))
                    continue
                except IntervalMismatch as exc:
                    refused.append((item, DeadLetterStage.PROCESS, "IntervalMismatch", str(exc)))
                    continue
                result.applied += 1
                st.applied += 1
                st.digest = chain_digest(st.digest, event.id)
            last = top
            if demand.next_close is not close:
                close = demand.next_close
                assert close is not None  # reports only ever set it
                close_us = to_us(close)
                if close_us <= top:
                    whole = True  # the report's interval closes at this very step
                elif close_us < bound:
                    bound = close_us
            if whole:
                self._timers(top, result)
                return
        assert last is not None
        st.clock = from_us(last)

    def _next_step(self, limit: int) -> int | None:
        """The next point of the timeline (µs) if it is final (before ``limit``), else None.

        Points: release times of buffered events, the next interval close, the next request
        timeout, and the end of a debounce or staleness window.
        """
        st, cfg = self.state, self.config
        best = st.buffer.top()
        clock = st.clock
        timer = st.demand.next_close
        for moment in (
            st.providers.next_timeout(cfg),
            None if clock is None else st.triggers.wake(clock, cfg),
        ):
            if moment is not None and (timer is None or moment < timer):
                timer = moment
        if timer is not None:
            at = to_us(timer)
            if best is None or at < best:
                best = at
        if best is None or best >= limit:
            return None
        if clock is not None:
            best = max(best, to_us(clock))  # never step back (a timer set in the past)
        return best

    def _step(self, at_us: int, result: StepResult) -> None:
        """One point of the timeline: events released here, then timers, then forecasts."""
        st = self.state
        buffer = st.buffer
        while (top := buffer.top()) is not None and top <= at_us:  # < only for late catalogue
            self._apply_item(buffer.pop(), result)
        self._timers(at_us, result)

    def _timers(self, at_us: int, result: StepResult) -> None:
        """The rest of a step once its events are applied: the clock, timers, forecasts."""
        st = self.state
        clock = from_us(at_us)
        st.clock = clock
        self._advance(clock, result)
        if self._reforecast:
            self._check_forecasts(clock)
        st.dedupe.prune(clock, self.config.dedupe_window)

    def _apply_item(self, item: InboundLike, result: StepResult) -> None:
        st = self.state
        key = (item.topic, item.partition)
        if item.offset > st.offsets.get(key, -1):
            st.offsets[key] = item.offset
        refusal = self._apply(item, result)
        if refusal is not None:
            result.refused.append(refusal)
            return
        result.applied += 1
        st.applied += 1
        st.digest = chain_digest(st.digest, item.event.id)

    def _plan_due(self) -> bool:
        """``due() is not None`` without building the trigger (checked after every step)."""
        st = self.state
        return (
            st.clock is not None
            and st.triggers.pending(st.clock, self.config) is not None
            and self.ready()
        )

    def _check_forecasts(self, clock: datetime) -> None:
        """Forecast-change trigger for the queues that closed intervals at this step.

        Skipped when it cannot change whether or when a plan happens: before the first plan
        (nothing to compare with), when already marked, or when a plan is due at this step
        anyway (that plan re-baselines the forecasts). A forecast over the check window costs
        far more than absorbing an interval, so this keeps the hot path cheap.
        """
        st, cfg = self.state, self.config
        queues, self._reforecast = sorted(self._reforecast), set()
        if (
            st.triggers.last_plan_at is None
            or TriggerKind.FORECAST_CHANGED in st.triggers.marks
            or self._plan_due()
        ):
            return
        as_of = cfg.as_of(clock)
        for queue_id in queues:
            if queue_id not in st.catalogue.queues:
                continue
            values = st.demand.arrivals(queue_id, as_of, cfg, cfg.forecast_check_periods)
            if st.triggers.forecast_moved(queue_id, as_of, values, cfg):
                st.triggers.mark(TriggerKind.FORECAST_CHANGED, clock)
                return

    def _apply(self, item: InboundLike, result: StepResult) -> Refusal | None:
        event = item.event
        st, cfg = self.state, self.config
        if isinstance(event, TicketVolumeObserved):
            try:
                st.demand.observe(event, cfg)
            except LateEvent as exc:
                return (item, DeadLetterStage.LATE, "LateEvent", str(exc))
            except IntervalMismatch as exc:
                return (item, DeadLetterStage.PROCESS, "IntervalMismatch", str(exc))
            return None
        if isinstance(event, CapacityResponded):
            return self._respond(item, event, result)
        kind = _CATALOGUE_TRIGGER[type(event)]  # other types are refused on arrival
        try:
            changed = st.catalogue.apply(event)
        except CatalogueRejected as exc:
            return (item, DeadLetterStage.PROCESS, "InvalidInput", str(exc))
        if changed:
            self._ready = None
            urgent = kind is TriggerKind.CONTRACT_CHANGED
            if isinstance(event, ProviderContractUpdated):
                st.providers.contract_changed(event.provider_id, event.time)
            st.triggers.mark(kind, event.time, urgent=urgent)
        return None

    def _respond(
        self, item: InboundLike, event: CapacityResponded, result: StepResult
    ) -> Refusal | None:
        st, cfg = self.state, self.config
        try:
            key = cfg.provider_keys.get(event.provider_id)
            if key is not None and not verify_response(event, key):
                raise ForgedResponse(
                    f"response {event.id} for request {event.request_id} is "
                    + ("unsigned" if not event.signature else "wrongly signed")
                    + f" although provider {event.provider_id} signs its responses"
                )
            outcome = st.providers.respond(event)
        except ForgedResponse as exc:
            result.log.append(
                log_event(
                    st,
                    cfg,
                    key=(event.id,),
                    at_time=event.time,
                    level=LogLevel.SECURITY,
                    kind="response.forged",
                    message=f"{exc}; not applied",
                    request_id=event.request_id,
                    attrs={
                        "provider_id": event.provider_id,
                        "event_id": event.id,
                        "topic": item.topic,
                        "partition": item.partition,
                        "offset": item.offset,
                    },
                )
            )
            return (item, DeadLetterStage.SECURITY, "ForgedResponse", str(exc))
        except StaleResponse as exc:
            return (item, DeadLetterStage.LATE, "StaleResponse", str(exc))
        self._outcome(outcome, event.time, event.id, result)
        return None

    def _outcome(self, outcome: Outcome, at: datetime, key: str, result: StepResult) -> None:
        st = self.state
        kind = (
            TriggerKind.REQUEST_TIMEOUT
            if outcome.status.value == "timeout"
            else TriggerKind.PROVIDER_RESPONSE
        )
        st.triggers.mark(kind, at, urgent=outcome.urgent)
        request = outcome.request
        result.log.append(
            log_event(
                st,
                self.config,
                key=(key,),
                at_time=at,
                level=LogLevel.WARNING if outcome.urgent else LogLevel.INFO,
                kind=f"request.{outcome.status.value}",
                message=outcome.message,
                plan_id=request.plan_id,
                request_id=request.request_id,
                attrs={
                    "provider_id": request.provider_id,
                    "skill": request.skill,
                    "current_fte": request.current_fte,
                    "target_fte": request.target_fte,
                },
            )
        )

    def _advance(self, clock: datetime, result: StepResult) -> None:
        """The clock moved: close intervals, time out requests, commit what is in force."""
        st, cfg = self.state, self.config
        closed = st.demand.close(clock, cfg)
        if closed:
            result.intervals_closed += len(closed)
            self._reforecast.update(closed)
            if cfg.replan_on_interval_close:
                st.triggers.mark(TriggerKind.INTERVAL_CLOSED, clock)
        for outcome in st.providers.advance(clock, cfg):
            self._outcome(
                outcome, outcome.request.respond_by, outcome.request.request_id + "|timeout", result
            )

    # ---- planning --------------------------------------------------------------------------

    def ready(self) -> bool:
        """Cheap check that a problem can be built: some active queue or approved project has
        a skill that some roster or contract offers. Cached until the catalogue changes."""
        if self._ready is None:
            self._ready = self._compute_ready()
        return self._ready

    def _compute_ready(self) -> bool:
        cat = self.state.catalogue
        skills = {q.skill for q in cat.active_queues()}
        skills |= {p.skill for p in cat.approved_projects()}
        offered = {s for vs in cat.teams.values() for v in vs for s in v.skills}
        offered |= {s for vs in cat.contracts.values() for v in vs for s in v.skills}
        return bool(skills & offered)

    def due(self) -> Trigger | None:
        """The plan that is due at the current step of the timeline (the domain clock,
        debounced), or None. Pure: no state change."""
        st, cfg = self.state, self.config
        clock = st.clock
        if clock is None:
            return None
        pending = st.triggers.pending(clock, cfg)
        if pending is None or not self.ready():
            return None
        reasons, urgent = pending
        as_of = cfg.as_of(clock)
        plan_id = derive_id(
            "plan", self.domain, iso(as_of), iso(clock), st.digest, str(st.triggers.seq)
        )
        return Trigger(
            kind=st.triggers.primary(reasons),
            reasons=reasons,
            urgent=urgent,
            at=clock,
            as_of=as_of,
            plan_id=plan_id,
            seq=st.triggers.seq,
        )

    def problem(self, trigger: Trigger | None = None) -> AllocationProblem:
        """The allocation problem at the trigger's ``as_of`` (default: the current one)."""
        return build_problem(self.state, self.config, self._as_of(trigger)).problem

    def _as_of(self, trigger: Trigger | None) -> datetime:
        if trigger is not None:
            return trigger.as_of
        if self.state.clock is None:
            raise ValueError(f"domain {self.domain}: nothing applied yet, no as-of to plan for")
        return self.config.as_of(self.state.clock)

    def apply_plan(self, plan: Plan, trigger: Trigger) -> list[Event]:
        """Record a solved plan and return the events to publish (plan, decisions, requests,
        log). Accepts any policy's :class:`allocator.Plan` for this trigger's ``as_of``."""
        st, cfg = self.state, self.config
        if plan.as_of != trigger.as_of or plan.period_minutes != cfg.period_minutes:
            raise ValueError(
                f"plan as_of {iso(plan.as_of)} / {plan.period_minutes} min does not match "
                f"trigger as_of {iso(trigger.as_of)} / {cfg.period_minutes} min"
            )
        try:
            notes = build_problem(st, cfg, trigger.as_of).notes
        except AllocatorError:
            notes = ()
        planned = planned_event(plan, trigger, st, cfg, notes)
        output = decision_events(plan, trigger, st, cfg)
        decided = sum(isinstance(e, ScalingDecided) for e in output.events)
        summary = log_event(
            st,
            cfg,
            key=(trigger.plan_id,),
            at_time=trigger.at,
            level=LogLevel.INFO,
            kind="plan.applied",
            message=(
                f"plan {trigger.plan_id} by {plan.policy} as of {iso(trigger.as_of)} "
                f"({trigger.kind.value}): {decided} decisions, {len(output.requests)} requests, "
                f"total cost {plan.costs.total:.2f}, unmet {plan.unmet_fte_hours:.2f} FTE-h"
            ),
            plan_id=trigger.plan_id,
            attrs={
                "trigger": trigger.kind.value,
                "reasons": ",".join(r.value for r in trigger.reasons),
                "urgent": trigger.urgent,
                "policy": plan.policy,
                "as_of": iso(trigger.as_of),
                "decisions": decided,
                "requests": len(output.requests),
                "total_cost": plan.costs.total,
                "unmet_fte_hours": plan.unmet_fte_hours,
            },
        )
        events: list[Event] = [planned, *output.events, summary]
        if notes:
            events.append(
                log_event(
                    st,
                    cfg,
                    key=(trigger.plan_id,),
                    at_time=trigger.at,
                    level=LogLevel.WARNING,
                    kind="plan.notes",
                    message=" | ".join(notes),
                    plan_id=trigger.plan_id,
                    attrs={"notes": len(notes)},
                )
            )
        st.triggers.last_demand_as_of = trigger.as_of
        st.triggers.last_demand = {
            q.queue_id: st.demand.arrivals(q.queue_id, trigger.as_of, cfg)
            for q in st.catalogue.active_queues()
        }
        st.triggers.consume(trigger)
        return events

    def apply_failure(self, reason: str, trigger: Trigger) -> list[Event]:
        """Fallback when no plan came out: keep committed capacity, ``hold`` every engaged
        line with the reason, and an error log record. The trigger counts as handled, so the
        debounce applies before the next attempt (urgent triggers still plan at once)."""
        st, cfg = self.state, self.config
        events: list[Event] = []
        for (pid, skill), line in sorted(st.providers.lines.items()):
            level = line.level_before(trigger.as_of)
            if level <= 0 and not line.changes:
                continue
            decision_id = derive_id("hold", trigger.plan_id, pid, skill)
            events.append(
                ScalingDecided(
                    id=derive_id("event", decision_id),
                    source=cfg.source,
                    time=trigger.at,
                    domain=self.domain,
                    decision_id=decision_id,
                    plan_id=trigger.plan_id,
                    target_kind=SourceKind.PROVIDER,
                    target_id=pid,
                    skill=skill,
                    direction=Direction.HOLD,
                    from_fte=level,
                    to_fte=level,
                    effective_at=trigger.as_of,
                    reason_codes=["solver_failure"],
                    reason=text(f"no plan ({reason}): holding {level:g} FTE"),
                )
            )
        events.append(
            log_event(
                st,
                cfg,
                key=(trigger.plan_id,),
                at_time=trigger.at,
                level=LogLevel.ERROR,
                kind="plan.failed",
                message=f"planning failed ({trigger.kind.value}): {reason}; holding "
                f"{len(events)} provider lines at their committed level",
                plan_id=trigger.plan_id,
                attrs={"trigger": trigger.kind.value, "holds": len(events)},
            )
        )
        st.triggers.consume(trigger)
        return events

    def run_due(self, policy: AllocationPolicy) -> list[Event]:
        """Convenience for synchronous callers (tests, simulations, benchmarks): plan if due
        with ``policy`` in-line, falling back on allocator errors. Returns the outputs."""
        trigger = self.due()
        if trigger is None:
            return []
        try:
            plan = policy.plan(self.problem(trigger))
        except AllocatorError as exc:
            return self.apply_failure(f"{type(exc).__name__}: {exc}", trigger)
        return self.apply_plan(plan, trigger)

    def run(
        self, items: Sequence[InboundLike], policy: AllocationPolicy
    ) -> tuple[list[StepResult], list[Event]]:
        """Convenience for synchronous callers: the shell's whole loop for one input batch
        (ingest, plan at every stop with ``policy`` in-line, continue while ``more``).
        Returns every ``StepResult`` and the outputs in publication order (logs of a step,
        then the plan made at its stop)."""
        steps: list[StepResult] = []
        outputs: list[Event] = []
        result = self.ingest(items)
        while True:
            steps.append(result)
            outputs += result.log
            outputs += self.run_due(policy)
            if not result.more:
                return steps, outputs
            result = self.ingest(())

    # ---- state -----------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Plain JSON-able, versioned state; ``DomainProcessor(domain, config, state)``
        continues from it identically."""
        return self.state.to_json()
