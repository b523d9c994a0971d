"""Web views for SREs and integrations: liveness, readiness, the current plan, a domain's
state, metrics."""

from __future__ import annotations

import json
from typing import Any

import faust
from faust.types import TableT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.metrics import REGISTRY
from services.worker.agent import DomainHandler, is_position_key
from services.worker.dashboard import register_dashboard
from services.worker.ingest import IngestStage


def register_views(
    app: faust.App,
    *,
    states: TableT[Any, Any],
    plans: TableT[Any, Any],
    ingest: IngestStage,
    handler: DomainHandler,
    internal_topic: str,
) -> None:
    """Attach ``/health``, ``/ready``, ``/plan/{domain}``, ``/state/{domain}``, ``/domains``
    and ``/metrics``."""

    def internal_partitions() -> list[int]:
        """Partitions of the domain-keyed internal topic this worker owns (the domains it
        plans): lets an operator, or a failover test, see who plans what."""
        return sorted(
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == internal_topic
        )

    @app.page("/health")
    async def health(web: Any, request: Request) -> Response:
        """Liveness: the process and its event loop answer."""
        response: Response = web.json({"status": "ok"})
        return response

    @app.page("/ready")
    async def ready(web: Any, request: Request) -> Response:
        """Readiness: ingest consuming, the app running, table recovery finished."""
        recovery = getattr(app.tables, "recovery", None)
        recovered = bool(recovery is not None and recovery.completed.is_set())
        checks = {
            "ingest": ingest.ready.is_set(),
            "app_running": app.started,
            "tables_recovered": recovered,
            "rebalancing": app.rebalancing,
        }
        ok = checks["ingest"] and checks["app_running"] and recovered and not app.rebalancing
        body = {
            "ready": ok,
            **checks,
            "events_handled": handler.handled,
            # internal-topic gaps (messages the stream never delivered, see
            # DomainHandler.admit) read directly; seeks back when that failed; skipped repeats
            "input_gaps_filled": handler.gaps_filled,
            "input_rewinds": handler.rewinds,
            "inputs_skipped": handler.skipped,
            # event-time heartbeats from ingest applied (idle domains, docs/worker.md)
            "heartbeats": handler.heartbeats,
            "ingest_forwarded": ingest.forwarded,
            "partitions": internal_partitions(),
        }
        response: Response = web.json(body, status=200 if ok else 503)
        return response

    @app.page("/plan/{domain}")
    class PlanView(View):
        """The domain's current plan (``AllocationPlanned`` data); any worker can answer."""

        async def get(self, request: Request, domain: str) -> Response:
            missing = f"no plan for domain {domain!r} yet"
            return _stored_json(self, plans.get(domain.encode()), missing)

    @app.page("/state/{domain}")
    class StateView(View):
        """The domain's planner state as this worker holds it (the JSON the domain agent
        persists): lets a what-if or a debugging session re-plan from exactly what the worker
        plans from. Only the worker that plans the domain has it (``/domains`` says which)."""

        async def get(self, request: Request, domain: str) -> Response:
            key = domain.encode()
            stored = None if is_position_key(key) else states.get(key)
            missing = f"this worker holds no state for domain {domain!r}"
            return _stored_json(self, stored, missing)

    @app.page("/domains")
    async def domains(web: Any, request: Request) -> Response:
        """The domains whose state this worker holds (its active partitions), with the count
        of input events applied to each (and accepted but still waiting in the reorder buffer),
        its watermark, clock and input digest: the persisted truth for "every input was
        processed" checks, which survives restarts and takeovers (unlike process counters).
        Separate from ``/ready`` because it reads every domain's state."""
        found: dict[str, Any] = {}
        for key, raw in list(states.items()):
            if is_position_key(key):  # the partition's input position, not a domain
                continue
            state = json.loads(raw)
            found[key.decode()] = {
                "applied": state["applied"],
                "pending": len(state.get("buffer", ())),  # accepted, not yet final
                "watermark": state["watermark"],
                "clock": state.get("clock"),
                "digest": state["digest"],
            }
        body = {"partitions": internal_partitions(), "domains": found}
        response: Response = web.json(body)
        return response

    @app.page("/metrics")
    async def metrics(web: Any, request: Request) -> Response:
        # aiohttp sets the charset itself and refuses one inside content_type.
        content_type = CONTENT_TYPE_LATEST.split("; charset")[0]
        response: Response = web.bytes(generate_latest(REGISTRY), content_type=content_type)
        return response

    register_dashboard(app, states=states, plans=plans)


def _stored_json(view: View, stored: bytes | None, missing: str) -> Response:
    """A stored JSON document as it is (no re-encoding), or 404 saying what is missing."""
    response: Response
    if stored is None:
        response = view.json({"error": missing}, status=404)
    else:
        response = view.bytes(stored, content_type="application/json")
    return response
