"""The worker's functional core: one planning domain's state and its pure transitions.

No Kafka, no clocks, no files, no asyncio: the Faust shell (``services/worker``) does the I/O
and calls :class:`DomainProcessor`::

    proc = DomainProcessor(domain, PlannerConfig(...), state_or_None)
    step = proc.ingest([Inbound(event, topic, partition, offset), ...])
    while True:
        # step.refused -> dead letters (stage late / security / process), step.log -> allocation.log
        if (trigger := proc.due()) is not None:
            try:
                plan = policy.plan(proc.problem(trigger))    # off the event loop
                outputs = proc.apply_plan(plan, trigger)
            except AllocatorError as exc:
                outputs = proc.apply_failure(str(exc), trigger)
        if not step.more:                                    # stopped at a plan point?
            break
        step = proc.ingest(())                               # continue the timeline
    table[domain] = proc.to_state()                          # JSON-able, versioned

Semantics in one place (details in each module's docstring):

* **Event time only, independent of batching and interleaving.** The *watermark* is the
  largest event time among accepted events (refused ones cannot move it). An event arriving
  when the watermark is already more than its kind's lateness past its time is refused
  ``late``; accepted events wait in a reorder buffer (:mod:`.buffer`) and are applied in a
  canonical order once the watermark passes their release time (time + lateness). The
  *clock* is the point of that timeline applied so far: closes, timeouts, debounce, staleness,
  the trigger's ``at`` and ``as_of`` (the clock rounded up to the next period boundary counted
  from ``PlannerConfig.origin``) all read it. ``ingest`` stops at each step where a plan is due
  (``StepResult.more``), so plans happen at the same points whatever the batches were.
  Lateness: ``allowed_lateness_minutes`` for ticket volumes, ``control_lateness_minutes``
  (default: the same) for catalogue events and provider responses — a rejection is acted on
  once it is final, i.e. one lateness of event time after it was made.
* **Dedupe** by event id at arrival, remembered for ``dedupe_window`` of event time (default
  max(2 × lateness, 24 h)); repeats are counted, not re-applied or re-dead-lettered.
* **Catalogue** (:mod:`.catalogue`): newest event time wins per key, order-independent;
  tombstones for retired queues / cancelled projects; rosters and contracts versioned by
  ``valid_from`` (contracts end at ``valid_until``; suspended contracts take no work).
  Catalogue events are never refused as late: compacted topics are re-read from the start by
  every fresh worker, so one arriving after its place in the timeline was final is applied at
  the current clock (``StepResult.late_catalogue``) — only *when* a plan sees it can then
  depend on arrival, never the catalogue itself.
* **Demand** (:mod:`.demand`): a report counts when made within ``interval_grace_minutes``
  (default: the allowed lateness) of its interval's end, later ones are refused ``late``;
  intervals close once end + grace is final (clock at end + grace + lateness); closed
  intervals feed the queue's forecaster; AHT smoothed; the backlog at the last closed interval
  is added as arrivals over the first ``backlog_periods`` periods (answer-within queues) or over
  half the resolve target (resolve-within queues: open incidents are work due within it,
  :func:`.problem.backlog_spread`); projects spread ``hours_per_week`` evenly.
* **Problem** (:mod:`.problem`): lead times and notice are counted from when a plan's requests
  can reach providers — ``as_of`` plus the allowed lateness and one volume interval, the most
  the clock trails the watermark (a deterministic bound) — not from ``as_of`` itself.
* **Triggers** (:mod:`.triggers`): interval close, forecast change, provider response or
  timeout, contract / roster / queue / project change, staleness; debounced by
  ``min_replan_minutes`` of event time except urgent ones (rejection, partial, timeout,
  contract change incl. suspension).
* **Provider levels and responses** (:mod:`.responses`): committed + pending (accepted future
  changes and outstanding requests); partial / rejected / timed out cap the line for
  ``cap_hours`` or until a newer contract (enforced as in :func:`.problem.apply_caps`);
  forged responses are refused ``security`` and logged at level ``security``.
* **Decisions** (:mod:`.decisions`): one ``AllocationPlanned``; a ``ScalingDecided`` per new
  change; ``CapacityRequested`` only for new changes due within ``request_window_periods``,
  with ``capacity_request_id`` ids and ``respond_by`` = min(effective_at, as_of + respond
  window); an ``AllocationLogged`` summary. Every output id is a uuid5 of the plan id. The
  plan's input ``watermark`` lists, per input partition, the highest offset among the events
  applied before it (not merely received), so it too is the same for any batching.
"""

from services.domain.buffer import Inbound, InboundLike
from services.domain.config import PlannerConfig
from services.domain.processor import DomainProcessor, Refusal, StepResult
from services.domain.state import STATE_VERSION, StateVersionError, dump_state, load_state
from services.domain.triggers import Trigger, TriggerKind

__all__ = [
    "STATE_VERSION",
    "DomainProcessor",
    "Inbound",
    "InboundLike",
    "PlannerConfig",
    "Refusal",
    "StateVersionError",
    "StepResult",
    "Trigger",
    "TriggerKind",
    "dump_state",
    "load_state",
]
