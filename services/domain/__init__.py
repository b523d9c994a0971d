"""The worker's functional core: one planning domain's state and its pure transitions.

No Kafka, no clocks, no files, no asyncio: the Faust shell (``services/worker``) does the I/O
and calls :class:`DomainProcessor`::

    proc = DomainProcessor(domain, PlannerConfig(...), state_or_None)
    step = proc.ingest([Inbound(event, topic, partition, offset), ...])
    #   step.refused -> dead letters (stage late / security / process), step.log -> allocation.log
    if (trigger := proc.due()) is not None:
        try:
            plan = policy.plan(proc.problem(trigger))        # off the event loop
            outputs = proc.apply_plan(plan, trigger)
        except AllocatorError as exc:
            outputs = proc.apply_failure(str(exc), trigger)
    table[domain] = proc.to_state()                          # JSON-able, versioned

Semantics in one place (details in each module's docstring):

* **Event time only.** The watermark is the largest event time among *applied* events (refused
  ones — late, forged — cannot move it). ``as_of`` = watermark rounded up to the next period
  boundary counted from ``PlannerConfig.origin``.
* **Dedupe** by event id, remembered for ``dedupe_window`` of event time (default
  max(2 × lateness, 24 h)); repeats are counted, not re-applied or re-dead-lettered.
* **Catalogue** (:mod:`.catalogue`): newest event time wins per key, order-independent;
  tombstones for retired queues / cancelled projects; rosters and contracts versioned by
  ``valid_from`` (contracts end at ``valid_until``; suspended contracts take no work).
* **Demand** (:mod:`.demand`): intervals close at end + allowed lateness; later observations
  are refused ``late`` naming the watermark and lateness; closed intervals feed the queue's
  forecaster; AHT smoothed; the backlog at the last closed interval is added as arrivals over
  the first ``backlog_periods`` periods; projects spread ``hours_per_week`` evenly.
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
  window); an ``AllocationLogged`` summary. Every output id is a uuid5 of the plan id.
"""

from services.domain.config import PlannerConfig
from services.domain.processor import DomainProcessor, Inbound, InboundLike, Refusal, StepResult
from services.domain.state import STATE_VERSION, StateVersionError
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
]
