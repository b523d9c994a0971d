"""Provider capacity: committed levels, pending changes, outstanding requests, responses, caps.

Per (provider, skill) contract line the state holds the **committed** level (in force now) and
**changes** ahead of it: accepted responses whose ``effective_at`` is still in the future and
requests not answered yet (outstanding). Both count as *pending*, so a re-plan honours them
and never requests them again.

Responses (event time):

* ``accepted`` → the confirmed level is committed from the response's ``effective_at``;
* ``partial`` → the confirmed level is committed from ``effective_at`` and the line is
  **capped** at it;
* ``rejected`` → the request is dropped and the line is capped at the request's
  ``current_fte`` (the level it would have stayed at);
* no answer with an event time up to ``respond_by`` → treated as rejected (a log record). The
  timeout fires when the domain clock reaches ``respond_by`` + the responses' lateness, i.e.
  once every answer made in time is final: an answer at or before ``respond_by`` always wins,
  however late it is delivered within the lateness;
* unknown request id, or a provider id that differs from the request's → refused with stage
  ``security``, logged as a security event, never applied;
* an answer to a request already answered, timed out or superseded → refused with stage
  ``late`` (the decision was already taken without it).

A cap lasts ``cap_hours`` of event time, or until a newer contract event of the provider.
How a cap reaches the allocator is :func:`services.domain.problem.apply_caps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from schemas import CapacityResponded, ResponseStatus
from services.domain.config import PlannerConfig
from services.domain.ids import iso, parse_time

LineKey = tuple[str, str]
_MICROSECOND = timedelta(microseconds=1)


class RequestStatus(StrEnum):
    OUTSTANDING = "outstanding"
    ACCEPTED = "accepted"
    PARTIAL = "partial"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    SUPERSEDED = "superseded"


class ForgedResponse(ValueError):
    """Unknown request, or a provider answering for another provider's request."""


class StaleResponse(ValueError):
    """An answer to a request that is no longer outstanding."""


@dataclass(slots=True)
class Request:
    request_id: str
    provider_id: str
    skill: str
    plan_id: str
    current_fte: float
    target_fte: float
    effective_at: datetime
    respond_by: datetime
    sent_at: datetime
    status: RequestStatus = RequestStatus.OUTSTANDING
    closed_at: datetime | None = None

    def to_json(self) -> list[Any]:
        return [
            self.request_id,
            self.provider_id,
            self.skill,
            self.plan_id,
            self.current_fte,
            self.target_fte,
            iso(self.effective_at),
            iso(self.respond_by),
            iso(self.sent_at),
            self.status.value,
            None if self.closed_at is None else iso(self.closed_at),
        ]

    @classmethod
    def from_json(cls, raw: list[Any]) -> Request:
        return cls(
            str(raw[0]),
            str(raw[1]),
            str(raw[2]),
            str(raw[3]),
            float(raw[4]),
            float(raw[5]),
            parse_time(raw[6]),
            parse_time(raw[7]),
            parse_time(raw[8]),
            RequestStatus(raw[9]),
            None if raw[10] is None else parse_time(raw[10]),
        )


@dataclass(slots=True)
class Change:
    """A level the line moves to at ``effective_at``: accepted, or requested and unanswered."""

    effective_at: datetime
    fte: float
    request_id: str
    accepted: bool


@dataclass(slots=True)
class Line:
    committed: float = 0.0
    changes: list[Change] = field(default_factory=list)

    def level_before(self, moment: datetime) -> float:
        """Expected level just before ``moment``: committed, then changes effective earlier."""
        return self._level(moment, at=False)

    def level_at(self, moment: datetime) -> float:
        """Expected level at ``moment``: as :meth:`level_before`, and a change effective at
        ``moment`` itself counts too (of several at one time, the latest made)."""
        return self._level(moment, at=True)

    def _level(self, moment: datetime, *, at: bool) -> float:
        level = self.committed
        for change in self.changes:
            if change.effective_at < moment or (at and change.effective_at == moment):
                level = change.fte
        return level

    def add(self, change: Change) -> None:
        """Record a change; the list stays in effective-time order, and changes at the same
        time in the order they were made (the latest one is the level then)."""
        self.changes.append(change)
        self.changes.sort(key=lambda c: c.effective_at)


@dataclass(slots=True)
class Cap:
    level: float
    since: datetime
    reason: str
    request_id: str


@dataclass(slots=True)
class Outcome:
    """What a response or timeout did, for triggers and the log."""

    request: Request
    status: RequestStatus
    urgent: bool
    message: str


@dataclass(slots=True)
class ProviderBook:
    lines: dict[LineKey, Line] = field(default_factory=dict)
    requests: dict[str, Request] = field(default_factory=dict)
    caps: dict[LineKey, Cap] = field(default_factory=dict)
    next_deadline: datetime | None = None
    # Derived, not state: before ``_idle_until`` (None = never) ``advance`` has nothing to do.
    # The processor calls ``advance`` at every step of the timeline, so this keeps it O(1)
    # there; every mutation sets ``_dirty`` and the next ``advance`` recomputes.
    _dirty: bool = field(default=True, repr=False, compare=False)
    _idle_until: datetime | None = field(default=None, repr=False, compare=False)
    _next_timeout: datetime | None = field(default=None, repr=False, compare=False)

    # ---- requests --------------------------------------------------------------------------

    def record_request(self, request: Request) -> None:
        """Remember a sent request as outstanding (pending), superseding any outstanding
        request of the same line with the same effective time."""
        self._dirty = True
        key = (request.provider_id, request.skill)
        line = self.lines.setdefault(key, Line())
        for change in list(line.changes):
            if change.effective_at == request.effective_at and not change.accepted:
                old = self.requests[change.request_id]
                old.status, old.closed_at = RequestStatus.SUPERSEDED, request.sent_at
                line.changes.remove(change)
        line.add(Change(request.effective_at, request.target_fte, request.request_id, False))
        self.requests[request.request_id] = request
        if self.next_deadline is None or request.respond_by < self.next_deadline:
            self.next_deadline = request.respond_by

    def respond(self, response: CapacityResponded) -> Outcome:
        """Apply a provider's answer (raises ForgedResponse / StaleResponse)."""
        self._dirty = True
        request = self.requests.get(response.request_id)
        if request is None:
            raise ForgedResponse(
                f"response {response.id} from provider {response.provider_id} names unknown "
                f"request {response.request_id}"
            )
        if request.provider_id != response.provider_id:
            raise ForgedResponse(
                f"response {response.id} claims request {response.request_id} of provider "
                f"{request.provider_id} but comes from provider {response.provider_id}"
            )
        if request.status is not RequestStatus.OUTSTANDING:
            raise StaleResponse(
                f"request {request.request_id} is already {request.status.value}"
                + (f" since {iso(request.closed_at)}" if request.closed_at else "")
            )
        key = (request.provider_id, request.skill)
        line = self.lines.setdefault(key, Line())
        line.changes = [c for c in line.changes if c.request_id != request.request_id]
        status = RequestStatus(response.status.value)
        request.status, request.closed_at = status, response.time
        confirmed = response.confirmed_fte
        if response.status is ResponseStatus.REJECTED:
            self.caps[key] = Cap(request.current_fte, response.time, "rejected", request.request_id)
            return Outcome(
                request,
                status,
                True,
                f"{request.provider_id} rejected {request.skill} {request.current_fte:g} → "
                f"{request.target_fte:g} FTE; line capped at {request.current_fte:g}",
            )
        line.add(Change(response.effective_at, confirmed, request.request_id, True))
        if response.status is ResponseStatus.PARTIAL or confirmed != request.target_fte:
            self.caps[key] = Cap(confirmed, response.time, "partial", request.request_id)
            return Outcome(
                request,
                RequestStatus.PARTIAL,
                True,
                f"{request.provider_id} confirmed {confirmed:g} of {request.target_fte:g} FTE "
                f"{request.skill} from {iso(response.effective_at)}; line capped at "
                f"{confirmed:g}",
            )
        return Outcome(
            request,
            status,
            False,
            f"{request.provider_id} accepted {request.skill} {request.target_fte:g} FTE from "
            f"{iso(response.effective_at)}",
        )

    # ---- event time ------------------------------------------------------------------------

    @staticmethod
    def timeout_at(request: Request, cfg: PlannerConfig) -> datetime:
        """Clock time at which ``request`` times out if still unanswered: once answers up to
        ``respond_by`` are final, but never at the step it was made. A request due at once
        (``respond_by`` = ``as_of`` = the clock, with zero lateness) would otherwise time out
        at its own step and re-trigger the plan that makes it again, at the same clock."""
        return max(request.respond_by + cfg.control_lateness, request.sent_at + _MICROSECOND)

    def next_timeout(self, cfg: PlannerConfig) -> datetime | None:
        """Clock time at which the next outstanding request times out (cached until a
        request is made, answered or times out)."""
        if self.next_deadline is None:
            return None
        if self._dirty or self._next_timeout is None:
            outstanding = [
                self.timeout_at(r, cfg)
                for r in self.requests.values()
                if r.status is RequestStatus.OUTSTANDING
            ]
            self._next_timeout = min(outstanding) if outstanding else None
        return self._next_timeout

    def idle_before(self) -> tuple[bool, datetime | None]:
        """``(True, t)`` when :meth:`advance` does nothing for any clock before ``t`` (``t``
        None: for any clock) while nothing else changes the book; ``(False, None)`` when it was
        changed since the last ``advance`` (which then has work to do). For the processor's
        batched fast path, which skips ``advance`` on the steps where it is a no-op."""
        if self._dirty:
            return False, None
        return True, self._idle_until

    def advance(self, clock: datetime, cfg: PlannerConfig) -> list[Outcome]:
        """Time out unanswered requests, commit accepted changes now in force, expire caps
        and forget closed requests older than the cap window (bounded memory)."""
        if not self._dirty and (self._idle_until is None or clock < self._idle_until):
            return []
        outcomes: list[Outcome] = []
        lateness = cfg.control_lateness
        watermark = clock - lateness  # answers up to here are final
        if self.next_deadline is not None and watermark >= self.next_deadline:
            upcoming: datetime | None = None
            for rid in sorted(self.requests):
                request = self.requests[rid]
                if request.status is not RequestStatus.OUTSTANDING:
                    continue
                if self.timeout_at(request, cfg) > clock:
                    if upcoming is None or request.respond_by < upcoming:
                        upcoming = request.respond_by
                    continue
                request.status, request.closed_at = RequestStatus.TIMEOUT, request.respond_by
                key = (request.provider_id, request.skill)
                line = self.lines.setdefault(key, Line())
                line.changes = [c for c in line.changes if c.request_id != rid]
                self.caps[key] = Cap(request.current_fte, request.respond_by, "timeout", rid)
                outcomes.append(
                    Outcome(
                        request,
                        RequestStatus.TIMEOUT,
                        True,
                        f"{request.provider_id} did not answer request {rid} ({request.skill} "
                        f"→ {request.target_fte:g} FTE) by {iso(request.respond_by)}: treated as "
                        f"rejected; line capped at {request.current_fte:g}",
                    )
                )
            self.next_deadline = upcoming
        for line in self.lines.values():
            due = [c for c in line.changes if c.accepted and c.effective_at <= clock]
            if due:
                line.committed = due[-1].fte
                line.changes = [c for c in line.changes if c not in due]
        for key in [k for k, cap in self.caps.items() if clock >= cap.since + cfg.cap_duration]:
            del self.caps[key]
        horizon = cfg.cap_duration + lateness  # a stale answer is still recognised as stale
        for rid in [
            r.request_id
            for r in self.requests.values()
            if r.closed_at is not None and clock >= r.closed_at + horizon
        ]:
            del self.requests[rid]
        self._dirty = True  # recompute the cached next timeout from the new statuses
        self._idle_until = self._next_change(cfg)
        self._dirty = False
        return outcomes

    def _next_change(self, cfg: PlannerConfig) -> datetime | None:
        """The earliest clock time at which ``advance`` would change something."""
        times: list[datetime] = []
        timeout = self.next_timeout(cfg)
        if timeout is not None:
            times.append(timeout)
        times += [c.effective_at for ln in self.lines.values() for c in ln.changes if c.accepted]
        times += [cap.since + cfg.cap_duration for cap in self.caps.values()]
        horizon = cfg.cap_duration + cfg.control_lateness
        times += [r.closed_at + horizon for r in self.requests.values() if r.closed_at is not None]
        return min(times) if times else None

    def contract_changed(self, provider_id: str, at: datetime) -> None:
        """A newer contract lifts the provider's caps (the terms were renegotiated)."""
        self._dirty = True
        for key in [k for k, cap in self.caps.items() if k[0] == provider_id and cap.since < at]:
            del self.caps[key]

    # ---- state -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        # The cached deadline may still hold an answered request's respond_by, depending on
        # which steps ran ``advance`` (batching); stored is its canonical value, the earliest
        # outstanding respond_by — the same behaviour, and the same state on every path.
        outstanding = [
            r.respond_by for r in self.requests.values() if r.status is RequestStatus.OUTSTANDING
        ]
        deadline = min(outstanding) if outstanding else None
        return {
            "lines": [
                [
                    p,
                    s,
                    ln.committed,
                    [[iso(c.effective_at), c.fte, c.request_id, c.accepted] for c in ln.changes],
                ]
                for (p, s), ln in sorted(self.lines.items())
            ],
            "requests": [r.to_json() for _, r in sorted(self.requests.items())],
            "caps": [
                [p, s, c.level, iso(c.since), c.reason, c.request_id]
                for (p, s), c in sorted(self.caps.items())
            ],
            "next_deadline": None if deadline is None else iso(deadline),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProviderBook:
        book = cls()
        for p, s, committed, changes in data["lines"]:
            book.lines[(p, s)] = Line(
                float(committed),
                [Change(parse_time(t), float(f), str(r), bool(a)) for t, f, r, a in changes],
            )
        for raw in data["requests"]:
            request = Request.from_json(raw)
            book.requests[request.request_id] = request
        for p, s, level, since, reason, rid in data["caps"]:
            book.caps[(p, s)] = Cap(float(level), parse_time(since), str(reason), str(rid))
        deadline = data["next_deadline"]
        book.next_deadline = None if deadline is None else parse_time(deadline)
        return book
