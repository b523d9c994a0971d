"""``/dashboard``: the worker's current plans as live charts (the report's chart kinds).

Why from the tables and not from a separate store: any worker already holds every domain's
last plan (the ``last-plan`` global table) and the state of the domains it owns; the dashboard
only draws them. It keeps, in memory, the plans it has seen (by plan id) so cost over time
builds up while the page is watched — a restarted worker starts that history afresh.

Charts per domain, from the last ``AllocationPlanned``: demand vs capacity over the plan's
horizon (FTE per source stacked, FTE required on top); planned cost per plan over time;
expected service level per stream with its target; the planned provider levels (the decision
timeline, with the provider's committed level now). The page refreshes itself every 10 s;
``/dashboard/data`` returns the same numbers as JSON. The what-if comparison is the
``flexforce whatif`` command, not a page: it solves, which a web request must not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from html import escape
from typing import Any

import faust
from faust.types import TableT
from faust.web import Request, Response

from services.sim import charts

__all__ = ["register_dashboard", "render_dashboard"]

#: Plans remembered per domain for the cost-over-time chart.
HISTORY = 500

CSS = (
    "body{margin:0;background:#f5f7fa;color:#1f2933;font:14px/1.5 Inter,'Segoe UI',Helvetica,"
    "Arial,sans-serif}header{background:#102a43;color:#fff;padding:16px 28px}header h1{margin:0;"
    "font-size:20px}header p{margin:2px 0 0;color:#bcccdc}main{max-width:1080px;margin:0 auto;"
    "padding:18px}section{background:#fff;border:1px solid #e3e6ea;border-radius:10px;"
    "padding:14px 18px;margin:0 0 14px}h2{margin:0 0 6px;font-size:16px}nav a{color:#9fb3c8;"
    "margin-right:12px}table{border-collapse:collapse}td,th{padding:4px 10px;text-align:right;"
    "border-bottom:1px solid #e3e6ea}td:first-child,th:first-child{text-align:left}"
)


def _plans(plans: TableT[Any, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, raw in list(plans.items()):
        try:
            out[key.decode()] = json.loads(raw)
        except (ValueError, AttributeError):
            continue
    return out


def _times(plan: Mapping[str, Any]) -> list[datetime]:
    start = datetime.fromisoformat(plan["as_of"])
    step = timedelta(minutes=int(plan["period_minutes"]))
    return [start + k * step for k in range(int(plan["horizon_periods"]))]


def demand_svg(plan: Mapping[str, Any]) -> str:
    times = _times(plan)
    n = len(times)
    by_source: dict[tuple[str, str], list[float]] = {}
    for a in plan.get("allocations", []):
        key = (a["source_kind"], a["source_id"])
        values = by_source.setdefault(key, [0.0] * n)
        for k, v in enumerate(a["fte"][:n]):
            values[k] += v
    areas = [
        charts.Series(
            f"{'in house' if kind == 'team' else 'provider'}: {sid}", values, charts.colour(i)
        )
        for i, ((kind, sid), values) in enumerate(sorted(by_source.items()))
    ]
    required = [0.0] * n
    for s in plan.get("service", []):
        for k, v in enumerate(s["required_fte"][:n]):
            required[k] += v
    return charts.stacked_area(
        "demand-capacity",
        "Planned FTE per source vs FTE required, over the plan's horizon",
        times,
        areas,
        [charts.Series("FTE required (forecast)", required, "#1f2933", width=2.2)],
    )


def sla_svg(plan: Mapping[str, Any], targets: Mapping[str, float]) -> str:
    times = _times(plan)
    lines = [
        charts.Series(s["stream_id"], s["expected_service_level"], charts.colour(i), width=1.6)
        for i, s in enumerate(sorted(plan.get("service", []), key=lambda s: s["stream_id"]))
    ]
    marks = sorted(set(targets.values()))
    return charts.line_chart(
        "service-level",
        "Expected service level per stream over the horizon",
        times,
        lines,
        unit="%",
        y_min=0.0,
        y_max=1.0,
        targets=[(f"target {t:.0%}", t, "#1f2933") for t in marks],
    )


def levels_svg(plan: Mapping[str, Any]) -> str:
    times = _times(plan)
    lanes = []
    for level in sorted(
        plan.get("provider_levels", []), key=lambda x: (x["provider_id"], x["skill"])
    ):
        fte = level["fte"]
        markers = []
        for k in range(1, len(fte)):
            if abs(fte[k] - fte[k - 1]) > 1e-6:
                kind = "up" if fte[k] > fte[k - 1] else "down"
                markers.append(
                    charts.Marker(
                        times[k],
                        kind,
                        f"{fte[k]:g}",
                        f"{times[k]:%a %H:%M} {level['provider_id']}/{level['skill']}: "
                        f"{fte[k - 1]:g} → {fte[k]:g} FTE",
                        "#009E73" if kind == "up" else "#D55E00",
                    )
                )
        lanes.append(charts.Lane(f"{level['provider_id']}/{level['skill']}", markers, fte))
    return charts.event_lanes(
        "decisions",
        "Planned provider levels and the changes they imply (▲ up, ▼ down)",
        times,
        lanes,
    )


def cost_svg(history: list[tuple[datetime, dict[str, float]]]) -> str:
    history = sorted(history)
    times = [t for t, _ in history] or [datetime.fromtimestamp(0)]
    kinds = [
        ("internal", "in-house", "#0072B2"),
        ("providers", "providers", "#E69F00"),
        ("churn", "churn", "#CC79A7"),
        ("penalties", "penalties", "#D55E00"),
    ]
    areas = [
        charts.Series(label, [c.get(key, 0.0) for _, c in history], fill)
        for key, label, fill in kinds
    ]
    return charts.stacked_area(
        "cost", "Planned cost of each plan over its horizon, by kind (€)", times, areas, unit="€"
    )


def render_dashboard(
    domain: str,
    plan: Mapping[str, Any] | None,
    history: list[tuple[datetime, dict[str, float]]],
    domains: list[str],
    targets: Mapping[str, float],
) -> str:
    nav = "".join(f"<a href='/dashboard?domain={escape(d)}'>{escape(d)}</a>" for d in domains)
    head = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='refresh' content='10'>"
        f"<title>flexforce — {escape(domain)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>flexforce dashboard — {escape(domain)}</h1>"
    )
    if plan is None:
        return (
            head + f"<p>no plan yet for this domain</p><nav>{nav}</nav></header>"
            "<main><section>Waiting for the first plan…</section></main></body></html>"
        )
    cost = plan.get("cost", {})
    solver = plan.get("solver", {})
    summary = (
        f"plan {escape(str(plan.get('plan_id')))} by {escape(str(plan.get('policy')))} as of "
        f"{escape(str(plan.get('as_of')))} · planned cost €{cost.get('total', 0):,.0f} · "
        f"solver {escape(str(solver.get('status')))} in {solver.get('solve_seconds', 0):.2f} s"
    )
    sections = [
        ("Demand vs capacity", demand_svg(plan)),
        ("Cost over time", cost_svg(history)),
        ("Service level per stream", sla_svg(plan, targets)),
        ("Decision timeline", levels_svg(plan)),
    ]
    explanation = plan.get("explanation", {}).get("summary", "")
    body = "".join(f"<section><h2>{t}</h2>{svg}</section>" for t, svg in sections)
    if explanation:
        body += f"<section><h2>Why</h2><p>{escape(explanation)}</p></section>"
    return head + f"<p>{summary}</p><nav>{nav}</nav></header><main>{body}</main></body></html>"


def register_dashboard(
    app: faust.App, *, states: TableT[Any, Any], plans: TableT[Any, Any]
) -> None:
    """Attach ``/dashboard`` (HTML, inline SVG) and ``/dashboard/data`` (its JSON)."""
    history: dict[str, dict[str, tuple[datetime, dict[str, float]]]] = {}

    def remember(found: dict[str, dict[str, Any]]) -> None:
        for domain, plan in found.items():
            seen = history.setdefault(domain, {})
            if plan.get("plan_id") not in seen:
                seen[plan["plan_id"]] = (datetime.fromisoformat(plan["as_of"]), plan["cost"])
                while len(seen) > HISTORY:
                    seen.pop(next(iter(seen)))

    def targets(domain: str) -> dict[str, float]:
        raw = states.get(domain.encode())
        if raw is None:
            return {}
        try:
            queues = json.loads(raw)["catalogue"]["queues"]
            return {q["queue_id"]: float(q["sla"]["target_fraction"]) for q in queues}
        except (KeyError, TypeError, ValueError):
            return {}

    def pick(request: Request, found: dict[str, Any]) -> str:
        asked = request.query.get("domain")
        return str(asked) if asked else (sorted(found)[0] if found else "default")

    @app.page("/dashboard")
    async def dashboard(web: Any, request: Request) -> Response:
        found = _plans(plans)
        remember(found)
        domain = pick(request, found)
        html = render_dashboard(
            domain,
            found.get(domain),
            list(history.get(domain, {}).values()),
            sorted(found),
            targets(domain) or {"": 0.8},
        )
        response: Response = web.html(html)
        return response

    @app.page("/dashboard/data")
    async def data(web: Any, request: Request) -> Response:
        found = _plans(plans)
        remember(found)
        domain = pick(request, found)
        body = {
            "domain": domain,
            "domains": sorted(found),
            "plan": found.get(domain),
            "cost_history": [
                {"as_of": t.isoformat(), "cost": c}
                for t, c in sorted(history.get(domain, {}).values(), key=lambda x: x[0])
            ],
        }
        response: Response = web.json(body)
        return response
