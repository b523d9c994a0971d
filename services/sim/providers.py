"""Simulated providers: they answer ``CapacityRequested`` per their behaviour and deliver the
capacity only after their lead time — the capacity *in place* is what they really supply.

Why a simulator that speaks the contract: the same requests a real provider reads from
``providers.<id>.capacity-requests`` arrive here, and the answers are real
``CapacityResponded`` events (to ``providers.capacity-responses``), so the loop exercises the
planner's response handling (partial caps, rejections, timeouts) exactly as production would,
and can later run against Kafka unchanged.

Rules (event time, deterministic):

* a request is answered ``answer_delay_minutes`` after it was sent, per the behaviour mode
  (:class:`services.sim.scenario.ProviderBehaviour`); decreases are always accepted;
* an answer later than the request's ``respond_by`` is void: the planner has timed the
  request out, so the provider delivers nothing for it (the late answer is still sent — the
  planner refuses it as stale, which is what a real late answer meets);
* during an outage nothing is answered and nothing is delivered (and nothing billed);
  with ``announce`` the contract is suspended at the start and restored at the end;
* an accepted increase is in place from max(effective_at, sent + actual lead time); a decrease
  from its effective_at (the planner already gave notice).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas import (
    CapacityRequested,
    CapacityResponded,
    ContractStatus,
    ProviderContractUpdated,
    ResponseStatus,
)
from services.sim.scenario import ProviderSpec

__all__ = ["Answer", "ProviderSimulator", "Scheduled"]

SOURCE = "urn:flexforce:sim:providers"
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Scheduled:
    """The line's level becomes ``fte`` at ``at`` (``seq`` breaks ties: later request wins)."""

    at: datetime
    seq: int
    fte: float


@dataclass(frozen=True, slots=True)
class Answer:
    """A response waiting to be sent at ``at``; ``delivers`` is False when it is void."""

    at: datetime
    seq: int
    response: CapacityResponded
    delivers: bool
    request: CapacityRequested
    received: datetime


@dataclass(slots=True)
class ProviderSimulator:
    """All simulated providers of one domain (see the module docstring)."""

    specs: Sequence[ProviderSpec]
    domain: str
    contracts: Mapping[str, ProviderContractUpdated] = field(default_factory=dict)
    schedule: dict[tuple[str, str], list[Scheduled]] = field(default_factory=dict)
    outbox: list[Answer] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    requests: int = 0
    answered: dict[str, int] = field(default_factory=dict)
    _seq: int = 0

    def spec(self, provider_id: str) -> ProviderSpec:
        for s in self.specs:
            if s.id == provider_id:
                return s
        raise KeyError(provider_id)

    def in_outage(self, provider_id: str, moment: datetime) -> bool:
        outage = self.spec(provider_id).behaviour.outage
        return outage is not None and outage.start <= moment < outage.end

    # ---- requests and answers --------------------------------------------------------------

    def request(self, req: CapacityRequested, received_at: datetime | None = None) -> None:
        """Take one request, read at ``received_at`` (default: its event time); duplicates by
        request id are ignored, as a real consumer would."""
        received = req.time if received_at is None else max(req.time, received_at)
        if req.request_id in self.seen:
            return
        self.seen.add(req.request_id)
        self.requests += 1
        spec = self.spec(req.provider_id)
        behaviour = spec.behaviour
        if self.in_outage(req.provider_id, received):
            return  # silence: the planner times the request out
        at = received + timedelta(minutes=behaviour.answer_delay_minutes)
        increase = req.target_fte > req.current_fte + _EPS
        status, confirmed = ResponseStatus.ACCEPTED, req.target_fte
        if increase and behaviour.mode == "reject":
            status, confirmed = ResponseStatus.REJECTED, 0.0
        elif increase and behaviour.mode == "partial":
            extra = math.floor(
                (req.target_fte - req.current_fte) * behaviour.fill_fraction / spec.fte_block + 1e-9
            )
            confirmed = req.current_fte + extra * spec.fte_block
            status = ResponseStatus.PARTIAL
        response = CapacityResponded(
            id=f"resp-{req.request_id}",
            source=SOURCE,
            time=at,
            domain=self.domain,
            request_id=req.request_id,
            provider_id=req.provider_id,
            status=status,
            confirmed_fte=confirmed,
            effective_at=req.effective_at,
            note=f"simulated {behaviour.mode}",
        )
        self._seq += 1
        delivers = at <= req.respond_by and status is not ResponseStatus.REJECTED
        self.outbox.append(Answer(at, self._seq, response, delivers, req, received))

    def due(self, until: datetime) -> list[CapacityResponded]:
        """Answers with event time ≤ ``until``, in time order; schedules their deliveries."""
        ready = sorted((a for a in self.outbox if a.at <= until), key=lambda a: (a.at, a.seq))
        self.outbox = [a for a in self.outbox if a.at > until]
        out: list[CapacityResponded] = []
        for a in ready:
            out.append(a.response)
            key = a.response.status.value
            self.answered[key] = self.answered.get(key, 0) + 1
            if a.delivers:
                self._deliver(a)
        return out

    def _deliver(self, a: Answer) -> None:
        req, resp = a.request, a.response
        spec = self.spec(req.provider_id)
        at = resp.effective_at
        if resp.confirmed_fte > req.current_fte + _EPS:
            lead = spec.behaviour.lead_time_hours
            lead = spec.lead_time_hours if lead is None else lead
            at = max(at, a.received + timedelta(hours=lead))
        self._seq += 1
        key = (req.provider_id, req.skill)
        self.schedule.setdefault(key, []).append(Scheduled(at, self._seq, resp.confirmed_fte))

    # ---- capacity in place -----------------------------------------------------------------

    def contracted(self, moment: datetime) -> dict[tuple[str, str], float]:
        """Level of every line in force at ``moment`` (what is billed unless in outage)."""
        out: dict[tuple[str, str], float] = {}
        for key, items in sorted(self.schedule.items()):
            level, best = 0.0, None
            for item in items:
                if item.at <= moment and (best is None or (item.at, item.seq) > best):
                    level, best = item.fte, (item.at, item.seq)
            out[key] = level
        return out

    def in_place(self, moment: datetime) -> dict[tuple[str, str], float]:
        """Capacity really working at ``moment``: contracted, and zero during an outage."""
        return {
            key: 0.0 if self.in_outage(key[0], moment) else fte
            for key, fte in self.contracted(moment).items()
        }

    # ---- vendor-manager events ---------------------------------------------------------------

    def contract_events(self, start: datetime, end: datetime) -> list[ProviderContractUpdated]:
        """Announced outages in [start, end): the contract suspended, then restored."""
        out: list[ProviderContractUpdated] = []
        for spec in self.specs:
            outage = spec.behaviour.outage
            base = self.contracts.get(spec.id)
            if outage is None or not outage.announce or base is None:
                continue
            for at, status in (
                (outage.start, ContractStatus.SUSPENDED),
                (outage.end, ContractStatus.ACTIVE),
            ):
                if start <= at < end:
                    out.append(
                        base.model_copy(
                            update={
                                "id": f"contract-{spec.id}-{status.value}-{at.isoformat()}",
                                "time": at,
                                "status": status,
                                "source": SOURCE,
                            }
                        )
                    )
        return sorted(out, key=lambda e: (e.time, e.id))
