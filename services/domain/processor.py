"""``DomainProcessor``: the functional core of one planning domain behind five calls.

The Faust shell owns all I/O: it feeds validated events (``ingest``), asks whether to plan
(``due``), builds the problem (``problem``), solves it off the event loop with any
:class:`allocator.policies.AllocationPolicy`, and publishes what ``apply_plan`` (or
``apply_failure``) returns; it dead-letters ``StepResult.refused`` and publishes
``StepResult.log``; it stores ``to_state()`` in its table. Nothing here reads a clock, so a
recorded stream fed in the same batches gives the same outputs, byte for byte.

``problem()`` raises :class:`allocator.InvalidInput` when there is nothing to plan; ``due()``
only returns a trigger when :meth:`DomainProcessor.ready` holds, so that is rare (e.g. every
stream's only provider was removed meanwhile) — the shell then calls ``apply_failure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

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
from services.domain.catalogue import CatalogueRejected
from services.domain.config import PlannerConfig
from services.domain.decisions import decision_events, log_event, planned_event, text
from services.domain.demand import IntervalMismatch, LateEvent
from services.domain.ids import chain_digest, derive_id, iso
from services.domain.problem import build_problem
from services.domain.responses import ForgedResponse, Outcome, StaleResponse
from services.domain.state import DomainState
from services.domain.triggers import Trigger, TriggerKind


class Inbound(NamedTuple):
    """One validated input and where it came from (for dead letters and plan watermarks)."""

    event: Event
    topic: str
    partition: int
    offset: int


class InboundLike(Protocol):
    """Anything shaped like :class:`Inbound` (the shell's own hand-over tuple works too)."""

    @property
    def event(self) -> Event: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


In = TypeVar("In", bound=InboundLike)

Refusal = tuple[In, DeadLetterStage, str, str]
"""(input, stage, error class, reason): the shell turns it into a dead letter."""


@dataclass(slots=True)
class StepResult(Generic[In]):
    """What one ``ingest`` call did. ``refused`` holds the caller's own input objects."""

    refused: list[Refusal[In]] = field(default_factory=list)
    duplicates: int = 0
    applied: int = 0
    log: list[AllocationLogged] = field(default_factory=list)
    intervals_closed: int = 0


_CATALOGUE_TRIGGER: dict[type[Event], TriggerKind] = {
    QueueDefined: TriggerKind.QUEUE_CHANGED,
    ProjectDemandChanged: TriggerKind.PROJECT_CHANGED,
    TeamCapacityUpdated: TriggerKind.ROSTER_CHANGED,
    ProviderContractUpdated: TriggerKind.CONTRACT_CHANGED,
}


class DomainProcessor:
    """One domain's state and the pure transitions on it (see the module docstring)."""

    def __init__(
        self, domain: str, config: PlannerConfig, state: dict[str, Any] | None = None
    ) -> None:
        self.domain = domain
        self.config = config
        self.state = DomainState(domain) if state is None else DomainState.from_json(state)
        self._reforecast: set[str] = set()
        if self.state.domain != domain:
            raise ValueError(f"state is for domain {self.state.domain!r}, not {domain!r}")

    # ---- ingest ----------------------------------------------------------------------------

    def ingest(self, items: Sequence[In]) -> StepResult[In]:
        """Apply validated events in order (see :mod:`services.domain` for every rule)."""
        result: StepResult[In] = StepResult()
        st = self.state
        for item in items:
            key = (item.topic, item.partition)
            if item.offset > st.offsets.get(key, -1):
                st.offsets[key] = item.offset
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
                continue
            if not st.dedupe.check_and_add(event.id, event.time):
                result.duplicates += 1
                continue
            refusal = self._apply(item, result)
            if refusal is not None:
                result.refused.append(refusal)
                continue
            result.applied += 1
            st.applied += 1
            st.digest = chain_digest(st.digest, event.id)
            if st.watermark is None or event.time > st.watermark:
                st.watermark = event.time
                self._advance(result)
        if st.watermark is not None:
            self._check_forecasts(st.watermark)
            st.dedupe.prune(st.watermark, self.config.dedupe_window)
        return result

    def _check_forecasts(self, watermark: datetime) -> None:
        """Forecast-change trigger, once per batch for the queues that closed intervals.

        Once per batch, not per close: a forecast over the check window costs far more than
        absorbing an interval, and the trigger is only read by ``due()`` after the batch.
        """
        st, cfg = self.state, self.config
        queues, self._reforecast = sorted(self._reforecast), set()
        if TriggerKind.FORECAST_CHANGED in st.triggers.marks:
            return
        as_of = cfg.as_of(watermark)
        for queue_id in queues:
            if queue_id not in st.catalogue.queues:
                continue
            values = st.demand.arrivals(queue_id, as_of, cfg, cfg.forecast_check_periods)
            if st.triggers.forecast_moved(queue_id, as_of, values, cfg):
                st.triggers.mark(TriggerKind.FORECAST_CHANGED, watermark)
                return

    def _apply(self, item: In, result: StepResult[In]) -> Refusal[In] | None:
        event = item.event
        st, cfg = self.state, self.config
        if isinstance(event, TicketVolumeObserved):
            try:
                st.demand.observe(event, st.watermark, cfg)
            except LateEvent as exc:
                return (item, DeadLetterStage.LATE, "LateEvent", str(exc))
            except IntervalMismatch as exc:
                return (item, DeadLetterStage.PROCESS, "IntervalMismatch", str(exc))
            return None
        if isinstance(event, CapacityResponded):
            return self._respond(item, event, result)
        kind = _CATALOGUE_TRIGGER.get(type(event))
        if kind is None:
            return (
                item,
                DeadLetterStage.PROCESS,
                "NotAnInput",
                f"{type(event).event_type} is not an input of the planner",
            )
        try:
            changed = st.catalogue.apply(event)
        except CatalogueRejected as exc:
            return (item, DeadLetterStage.PROCESS, "InvalidInput", str(exc))
        if changed:
            urgent = kind is TriggerKind.CONTRACT_CHANGED
            if isinstance(event, ProviderContractUpdated):
                st.providers.contract_changed(event.provider_id, event.time)
            st.triggers.mark(kind, event.time, urgent=urgent)
        return None

    def _respond(
        self, item: In, event: CapacityResponded, result: StepResult[In]
    ) -> Refusal[In] | None:
        st, cfg = self.state, self.config
        try:
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

    def _outcome(self, outcome: Outcome, at: datetime, key: str, result: StepResult[Any]) -> None:
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

    def _advance(self, result: StepResult[Any]) -> None:
        """Event time moved: close intervals, time out requests, commit what is in force."""
        st, cfg = self.state, self.config
        watermark = st.watermark
        assert watermark is not None
        closed = st.demand.close(watermark, cfg)
        if closed:
            result.intervals_closed += len(closed)
            self._reforecast.update(closed)
            if cfg.replan_on_interval_close:
                st.triggers.mark(TriggerKind.INTERVAL_CLOSED, watermark)
        for outcome in st.providers.advance(watermark, cfg):
            self._outcome(
                outcome, outcome.request.respond_by, outcome.request.request_id + "|timeout", result
            )

    # ---- planning --------------------------------------------------------------------------

    def ready(self) -> bool:
        """Cheap check that a problem can be built: some active queue or approved project has
        a skill that some roster or contract offers."""
        cat = self.state.catalogue
        skills = {q.skill for q in cat.active_queues()}
        skills |= {p.skill for p in cat.approved_projects()}
        offered = {s for vs in cat.teams.values() for v in vs for s in v.skills}
        offered |= {s for vs in cat.contracts.values() for v in vs for s in v.skills}
        return bool(skills & offered)

    def due(self) -> Trigger | None:
        """The plan that is due now (event time, debounced), or None. Pure: no state change."""
        st, cfg = self.state, self.config
        if st.watermark is None:
            return None
        pending = st.triggers.pending(st.watermark, cfg)
        if pending is None or not self.ready():
            return None
        reasons, urgent = pending
        as_of = cfg.as_of(st.watermark)
        plan_id = derive_id(
            "plan", self.domain, iso(as_of), iso(st.watermark), st.digest, str(st.triggers.seq)
        )
        return Trigger(
            kind=st.triggers.primary(reasons),
            reasons=reasons,
            urgent=urgent,
            at=st.watermark,
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
        if self.state.watermark is None:
            raise ValueError(f"domain {self.domain}: no events yet, no as-of to plan for")
        return self.config.as_of(self.state.watermark)

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

    # ---- state -----------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Plain JSON-able, versioned state; ``DomainProcessor(domain, config, state)``
        continues from it identically."""
        return self.state.to_json()
