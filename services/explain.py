"""``flexforce explain``: why a plan (or a capacity request) is what it is, read from Kafka.

Everything comes from the topics the worker writes — nothing from a worker's memory:

* ``allocation.plans`` — the plan: as-of, policy, cost breakdown, solver status and gap, the
  input watermark (topic/partition/offset it had applied), binding constraints, marginal
  values (what one more FTE of a resource would save over the horizon) and relaxations;
* ``allocation.decisions`` — the plan's scaling decisions with their reason codes;
* ``providers.<id>.capacity-requests`` — the requests the plan sent (``plan_id`` links them);
* ``providers.capacity-responses`` — the providers' answers (``request_id`` links them);
* ``allocation.log`` — the audit records that name the plan or its requests (a plan whose
  solve failed has no ``AllocationPlanned``, only its ``hold`` decisions and a log record).

Given a request id, the request is found first and its ``plan_id`` is explained. Topics are
read once from the beginning to their end offsets with a group-less consumer; records that
cannot contain the id (a byte search on the value) are not decoded, so large plan topics are
cheap to scan. Repeats (at-least-once) are dropped by event id.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import TypeAdapter
from rich.console import Console
from rich.table import Table

from schemas import (
    AllocationLogged,
    AllocationPlanned,
    CapacityRequested,
    CapacityResponded,
    Event,
    ScalingDecided,
)
from services.config import Settings
from services.kafka import Delivered, decode_record

PLANS = "allocation.plans"
DECISIONS = "allocation.decisions"
LOG = "allocation.log"
RESPONSES = "providers.capacity-responses"
_TIME: TypeAdapter[datetime] = TypeAdapter(datetime)
_REQUEST_TOPIC = re.compile(r"providers\.([a-z0-9][a-z0-9-]{0,62})\.capacity-requests")


class ExplainError(LookupError):
    """The id names no plan or request on the topics (or is ambiguous across domains)."""


@dataclass
class Found:
    """The events read for one explanation (deduplicated by event id, in topic order)."""

    plans: list[AllocationPlanned] = field(default_factory=list)
    decisions: list[ScalingDecided] = field(default_factory=list)
    requests: list[CapacityRequested] = field(default_factory=list)
    responses: list[CapacityResponded] = field(default_factory=list)
    logs: list[AllocationLogged] = field(default_factory=list)
    records_read: int = 0


async def partitions_by_topic(consumer: AIOKafkaConsumer) -> dict[str, list[int]]:
    """Every topic of the cluster with its partitions (one metadata request).

    aiokafka's consumer only keeps metadata of the topics it subscribed to, and its public
    ``topics()`` drops the partitions; its client's ``fetch_all_metadata`` (aiokafka 0.14,
    pinned) returns both."""
    cluster = await consumer._client.fetch_all_metadata()
    return {t: sorted(cluster.partitions_for_topic(t) or ()) for t in cluster.topics()}


def request_topics(settings: Settings, topics: Iterable[str]) -> list[str]:
    """Logical names of the per-provider request topics that exist under the prefix."""
    prefix = settings.topic_prefix
    return sorted(
        physical[len(prefix) :]
        for physical in topics
        if physical.startswith(prefix) and _REQUEST_TOPIC.fullmatch(physical[len(prefix) :])
    )


async def _scan(
    settings: Settings,
    consumer: AIOKafkaConsumer,
    layout: dict[str, list[int]],
    topics: Iterable[str],
    wanted: Callable[[bytes], bool],
    idle_s: float = 3.0,
) -> tuple[list[Event], int]:
    """Events of ``topics`` (logical names), beginning to end offsets, whose raw value passes
    ``wanted``. Returns the decoded events in read order and how many records were read."""
    physical = [settings.topic(t) for t in topics]
    partitions = [TopicPartition(t, p) for t in physical for p in layout.get(t, ())]
    if not partitions:
        return [], 0
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    left = {tp for tp in partitions if ends[tp] > 0}
    events: list[Event] = []
    read = 0
    idle_since = time.monotonic()
    while left:
        fetched = await consumer.getmany(*left, timeout_ms=200)
        if not fetched:
            if time.monotonic() - idle_since > idle_s:  # e.g. transaction markers at the end
                break
            continue
        idle_since = time.monotonic()
        for tp, records in fetched.items():
            for record in records:
                read += 1
                if record.offset >= ends[tp] or record.value is None or not wanted(record.value):
                    continue
                outcome = decode_record(record, settings.topic_prefix)
                if isinstance(outcome, Delivered):
                    events.append(outcome.event)
            if records and records[-1].offset + 1 >= ends[tp]:
                left.discard(tp)
    return events, read


def _unique(events: Iterable[Event]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for event in events:
        if event.id not in seen:
            seen.add(event.id)
            out.append(event)
    return out


async def collect(settings: Settings, ident: str, domain: str | None = None) -> tuple[str, Found]:
    """Find ``ident`` (a plan id or a capacity request id) and everything about its plan.

    Returns the plan id explained and what was found; raises :class:`ExplainError` when the
    id is on no topic."""
    consumer = AIOKafkaConsumer(**settings.consumer_options(group_id=None))
    await consumer.start()
    try:
        return await _collect(settings, consumer, ident, domain)
    finally:
        await consumer.stop()


async def _collect(
    settings: Settings, consumer: AIOKafkaConsumer, ident: str, domain: str | None
) -> tuple[str, Found]:
    found = Found()

    def mine(event: Event) -> bool:
        return domain is None or event.domain == domain

    layout = await partitions_by_topic(consumer)
    requests_topics = request_topics(settings, layout)
    needle = ident.encode()
    events, read = await _scan(settings, consumer, layout, requests_topics, lambda v: needle in v)
    found.records_read += read
    asked = [
        e for e in events if isinstance(e, CapacityRequested) and e.request_id == ident and mine(e)
    ]
    plan_id = ident
    if asked:
        plan_ids = {e.plan_id for e in asked}
        if len(plan_ids) > 1:  # the same id in two domains: only with hand-made ids
            raise ExplainError(
                f"request {ident} belongs to {len(plan_ids)} plans "
                f"({', '.join(sorted({e.domain for e in asked}))}): pass --domain"
            )
        plan_id = plan_ids.pop()
    needle = plan_id.encode()
    events, read = await _scan(
        settings, consumer, layout, [PLANS, DECISIONS, LOG, *requests_topics], lambda v: needle in v
    )
    found.records_read += read
    events = [e for e in _unique(events) if mine(e) and getattr(e, "plan_id", None) == plan_id]
    found.plans = [e for e in events if isinstance(e, AllocationPlanned)]
    found.decisions = [e for e in events if isinstance(e, ScalingDecided)]
    found.requests = [e for e in events if isinstance(e, CapacityRequested)]
    found.logs = [e for e in events if isinstance(e, AllocationLogged)]
    if not events:
        what = "plan or capacity request" if not asked else "plan"
        where = f" in domain {domain}" if domain else ""
        raise ExplainError(f"no {what} with id {plan_id!r}{where} on the topics")
    domains = {e.domain for e in events}
    if len(domains) > 1:
        raise ExplainError(
            f"plan id {plan_id} is used by domains {', '.join(sorted(domains))}: pass --domain"
        )
    ids = {r.request_id for r in found.requests}
    if ids:
        needles = [i.encode() for i in ids]
        events, read = await _scan(
            settings, consumer, layout, [RESPONSES], lambda v: any(n in v for n in needles)
        )
        found.records_read += read
        found.responses = [
            e
            for e in _unique(events)
            if isinstance(e, CapacityResponded) and e.request_id in ids and mine(e)
        ]
    # request.* log records (accepted, rejected, timed out) carry the plan id too
    return plan_id, found


def _iso(moment: datetime) -> str:
    """The same text pydantic writes for event times (``...Z`` for UTC)."""
    text: str = _TIME.dump_python(moment, mode="json")
    return text


def explanation(ident: str, plan_id: str, found: Found) -> dict[str, Any]:
    """The machine-readable explanation (what ``--json`` prints)."""
    plan = found.plans[-1] if found.plans else None
    events: list[Event] = [*found.plans, *found.decisions, *found.requests, *found.logs]
    out: dict[str, Any] = {
        "query": ident,
        "query_kind": "plan" if ident == plan_id else "capacity_request",
        "plan_id": plan_id,
        "domain": events[0].domain if events else None,
        "status": "planned" if plan is not None else "no_plan",
        "plan": None,
        "inputs": [],
        "binding_constraints": [],
        "marginal_values": [],
        "relaxations": [],
        "decisions": [],
        "requests": [],
        "log": [],
    }
    if plan is not None:
        unmet = sum(sum(s.unmet_fte) for s in plan.service) * plan.period_minutes / 60
        out["plan"] = {
            "as_of": _iso(plan.as_of),
            "time": _iso(plan.time),
            "policy": plan.policy,
            "period_minutes": plan.period_minutes,
            "horizon_periods": plan.horizon_periods,
            "cost": plan.cost.model_dump(mode="json"),
            "solver": plan.solver.model_dump(mode="json"),
            "summary": plan.explanation.summary,
            "streams": [s.stream_id for s in plan.service],
            "providers": sorted({level.provider_id for level in plan.provider_levels}),
            "unmet_fte_hours": round(unmet, 6),
            "copies_on_topic": len(found.plans),
        }
        out["inputs"] = [w.model_dump(mode="json") for w in plan.watermark]
        out["binding_constraints"] = list(plan.explanation.binding_constraints)
        out["marginal_values"] = [
            m.model_dump(mode="json")
            for m in sorted(plan.explanation.marginal_values, key=lambda m: -m.saving_per_fte)
        ]
        out["relaxations"] = list(plan.explanation.relaxations)
    out["decisions"] = [
        d.model_dump(mode="json", exclude={"id", "source", "domain", "plan_id"})
        for d in found.decisions
    ]
    answers: dict[str, list[dict[str, Any]]] = {}
    for response in found.responses:
        answers.setdefault(response.request_id, []).append(
            response.model_dump(
                mode="json", exclude={"id", "source", "domain", "request_id", "signature"}
            )
        )
    request_logs: dict[str, list[dict[str, Any]]] = {}
    for record in found.logs:
        if record.request_id:
            request_logs.setdefault(record.request_id, []).append(
                {"time": _iso(record.time), "kind": record.kind, "message": record.message}
            )
    out["requests"] = [
        r.model_dump(mode="json", exclude={"id", "source", "domain", "plan_id"})
        | {
            "responses": answers.get(r.request_id, []),
            "outcome": [x["kind"] for x in request_logs.get(r.request_id, [])],
        }
        for r in found.requests
    ]
    out["log"] = [
        {
            "time": _iso(record.time),
            "level": record.level.value,
            "kind": record.kind,
            "message": record.message,
            "request_id": record.request_id,
        }
        for record in found.logs
    ]
    return out


def _money(value: float, currency: str) -> str:
    return f"{currency} {value:,.2f}"


def render(data: dict[str, Any], console: Console) -> None:
    """The readable explanation."""
    say = console.print
    if data["query_kind"] == "capacity_request":
        say(f"capacity request [bold]{data['query']}[/] was sent by plan:", soft_wrap=True)
    say(f"[bold]plan {data['plan_id']}[/] (domain [bold]{data['domain']}[/])", soft_wrap=True)
    plan = data["plan"]
    if plan is None:
        say("[red]no AllocationPlanned on allocation.plans for this id[/] (planning failed?)")
    else:
        cost, solver = plan["cost"], plan["solver"]
        cur = cost["currency"]
        gap = "–" if solver["gap"] is None else f"{solver['gap']:.2%}"
        say(
            f"as of {plan['as_of']} · policy [bold]{plan['policy']}[/] · "
            f"{plan['horizon_periods']} × {plan['period_minutes']} min · published "
            f"{plan['time']}",
            soft_wrap=True,
        )
        say(
            f"solver {solver['backend']}: [bold]{solver['status']}[/], gap {gap}, "
            f"{solver['solve_seconds']:.2f} s (build {solver['build_seconds']:.2f} s)",
            soft_wrap=True,
        )
        costs = Table(title="cost over the horizon", show_header=True)
        for col in ("internal", "providers", "penalties", "churn", "total"):
            costs.add_column(col, justify="right")
        costs.add_row(
            *(_money(cost[c], cur) for c in ("internal", "providers")),
            f"{cost['penalties']:,.2f}",
            _money(cost["churn"], cur),
            f"[bold]{_money(cost['total'], cur)}[/]",
        )
        say(costs)
        say(
            f"streams: {', '.join(plan['streams']) or '–'}; providers: "
            f"{', '.join(plan['providers']) or '–'}; unmet {plan['unmet_fte_hours']:.1f} FTE-h",
            soft_wrap=True,
        )
        if plan["summary"]:
            say(f"notes: {plan['summary']}", soft_wrap=True)
        say("[bold]inputs[/] (watermark: last offset applied per input partition)")
        for w in data["inputs"] or [{"topic": "–", "partition": "", "offset": ""}]:
            say(f"  {w['topic']}[{w['partition']}] @ {w['offset']}", soft_wrap=True)
        _bullets(say, "binding constraints", data["binding_constraints"])
        say("[bold]alternatives[/] (marginal values: one more FTE over the horizon would save)")
        if not data["marginal_values"]:
            say("  –")
        for m in data["marginal_values"]:
            say(f"  {m['resource']}: {_money(m['saving_per_fte'], cur)}", soft_wrap=True)
        _bullets(say, "relaxations (priced slack)", data["relaxations"])
    say(f"[bold]decisions[/] ({len(data['decisions'])})")
    for d in data["decisions"]:
        say(
            f"  {d['direction']:<4} {d['target_kind']} {d['target_id']}/{d['skill']} "
            f"{d['from_fte']:g} → {d['to_fte']:g} FTE from {d['effective_at']} "
            f"[{', '.join(d['reason_codes']) or '–'}] {d['reason']}",
            soft_wrap=True,
            markup=False,
        )
    say(f"[bold]capacity requests[/] ({len(data['requests'])})")
    for r in data["requests"]:
        mark = "  ▶ " if r["request_id"] == data["query"] else "    "
        say(
            f"{mark}{r['request_id']} → {r['provider_id']}/{r['skill']} "
            f"{r['current_fte']:g} → {r['target_fte']:g} FTE from {r['effective_at']}, "
            f"answer by {r['respond_by']} [{', '.join(r['reasons']) or '–'}]",
            soft_wrap=True,
            markup=False,
        )
        for a in r["responses"]:
            say(
                f"      answered {a['status']}: {a['confirmed_fte']:g} FTE at {a['time']} "
                f"{a['note']}".rstrip(),
                soft_wrap=True,
                markup=False,
            )
        if not r["responses"]:
            say("      no answer on providers.capacity-responses", soft_wrap=True)
        if r["outcome"]:
            say(f"      applied: {', '.join(r['outcome'])}", soft_wrap=True, markup=False)
    say(f"[bold]audit log[/] ({len(data['log'])})")
    for record in data["log"]:
        say(
            f"  {record['time']} {record['level']} {record['kind']}: {record['message']}",
            soft_wrap=True,
            markup=False,
        )


def _bullets(say: Callable[..., None], title: str, items: list[str]) -> None:
    say(f"[bold]{title}[/] ({len(items)})")
    if not items:
        say("  –")
    for item in items:
        say(f"  • {item}", soft_wrap=True, markup=False)


def explain(settings: Settings, ident: str, domain: str | None = None) -> dict[str, Any]:
    """Collect and build the explanation of a plan or request id (blocking)."""
    plan_id, found = asyncio.run(collect(settings, ident, domain))
    return explanation(ident, plan_id, found)
