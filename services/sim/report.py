"""The HTML report of a closed-loop run: five charts and a summary table in one file.

Why one self-contained file: it is what ``flexforce demo`` hands over — something to open in
any browser, attach to a ticket or archive, offline, years later. So no CDN, no scripts: the
charts are inline SVG from :mod:`services.sim.charts`, the styles are inline CSS.

Charts: demand vs capacity stacked by source; cost over time (cumulative, by kind); service
level per queue (hourly, with the target); the decision timeline (requests per provider, their
answers, the FTE in place); the what-if comparison (re-planned from the final state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from services.sim import charts
from services.sim.timeline import Timeline
from services.sim.whatif import WhatIf

__all__ = ["ReportInput", "build_charts", "render_html", "write_report"]

ANSWER_COLOURS = {
    "accepted": "#009E73",
    "partial": "#E69F00",
    "rejected": "#D55E00",
    "unanswered": "#7F7F7F",
}


@dataclass(slots=True)
class ReportInput:
    title: str
    scenario: str
    description: str
    timeline: Timeline
    summary: dict[str, Any]
    """``EvalResult.to_dict()`` of the run."""
    whatif: WhatIf | None = None
    how: list[str] = field(default_factory=list)
    """What ran where (broker, worker, simulators), one line each."""
    facts: list[tuple[str, str]] = field(default_factory=list)
    """Extra run facts for the summary (label, value)."""


def _hourly(timeline: Timeline) -> tuple[list[datetime], list[list[int]]]:
    """Group interval indexes by hour (charts of service level read better hourly)."""
    hours: list[datetime] = []
    groups: list[list[int]] = []
    for i, rec in enumerate(timeline.intervals):
        hour = rec.start.replace(minute=0, second=0, microsecond=0)
        if not hours or hours[-1] != hour:
            hours.append(hour)
            groups.append([])
        groups[-1].append(i)
    return hours, groups


def demand_chart(timeline: Timeline) -> str:
    """Hourly means (15-minute Erlang needs are too jagged to read against capacity)."""
    recs = timeline.intervals
    hours, groups = _hourly(timeline)

    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    teams = sorted({t for r in recs for t in r.teams_fte})
    providers = sorted({p for r in recs for p in r.providers_fte})
    areas = [
        charts.Series(
            f"in house: {t}",
            [mean([recs[i].teams_fte.get(t, 0.0) for i in g]) for g in groups],
            charts.colour(k),
        )
        for k, t in enumerate(teams)
    ]
    areas += [
        charts.Series(
            f"provider: {p}",
            [mean([recs[i].providers_fte.get(p, 0.0) for i in g]) for g in groups],
            charts.colour(len(teams) + k),
        )
        for k, p in enumerate(providers)
    ]
    demand = charts.Series(
        "FTE needed for the SLA (Erlang C, backlog included)",
        [mean([sum(recs[i].required_fte.values()) for i in g]) for g in groups],
        "#1f2933",
        width=2.2,
    )
    return charts.stacked_area(
        "demand-capacity",
        "Demand vs capacity in place, stacked by source (productive FTE, hourly mean)",
        hours,
        areas,
        [demand],
    )


def cost_chart(timeline: Timeline) -> str:
    recs = timeline.intervals
    times = [r.start for r in recs]
    kinds = [
        ("internal", "in-house staff", "#0072B2"),
        ("providers", "providers", "#E69F00"),
        ("churn", "churn (level changes)", "#CC79A7"),
        ("penalties", "SLA penalties", "#D55E00"),
    ]
    areas = []
    for key, label, fill in kinds:
        running, values = 0.0, []
        for r in recs:
            running += r.cost.get(key, 0.0)
            values.append(running)
        areas.append(charts.Series(label, values, fill))
    return charts.stacked_area("cost", "Cumulative cost by kind (€)", times, areas, unit="€")


def sla_chart(timeline: Timeline) -> str:
    hours, groups = _hourly(timeline)
    recs = timeline.intervals
    lines = []
    for k, q in enumerate(timeline.queues):
        values: list[float | None] = []
        for g in groups:
            met = sum(
                (recs[i].service_level.get(q) or 0.0) * recs[i].arrivals.get(q, 0)
                for i in g
                if recs[i].service_level.get(q) is not None
            )
            n = sum(
                recs[i].arrivals.get(q, 0) for i in g if recs[i].service_level.get(q) is not None
            )
            values.append(met / n if n > 0 else None)
        lines.append(charts.Series(q, values, charts.colour(k), width=1.6))
    targets = sorted(set(timeline.targets.values()))
    return charts.line_chart(
        "service-level",
        "Service level per queue, hourly (share of calls answered within the SLA time)",
        hours,
        lines,
        unit="%",
        y_min=0.0,
        y_max=1.0,
        targets=[(f"target {t:.0%}", t, "#1f2933") for t in targets],
    )


def decision_chart(timeline: Timeline) -> str:
    recs = timeline.intervals
    times = [r.start for r in recs]
    providers = sorted(
        {d.provider_id for d in timeline.decisions} | {p for r in recs for p in r.providers_fte}
    )
    lanes = []
    for p in providers:
        markers = []
        for d in timeline.decisions:
            if d.provider_id != p or (times and d.at < times[0]):
                continue
            kind = "up" if d.to_fte > d.from_fte else "down" if d.to_fte < d.from_fte else "hold"
            confirmed = "" if d.confirmed_fte is None else f", confirmed {d.confirmed_fte:g}"
            markers.append(
                charts.Marker(
                    d.at,
                    kind,
                    f"{d.to_fte:g}",
                    f"{d.at:%a %H:%M} {p}/{d.skill}: {d.from_fte:g} → {d.to_fte:g} FTE — "
                    f"{d.answer}{confirmed}",
                    ANSWER_COLOURS.get(d.answer, "#333"),
                )
            )
        lanes.append(charts.Lane(p, markers, [r.providers_fte.get(p, 0.0) for r in recs]))
    return charts.event_lanes(
        "decisions",
        "Decision timeline: capacity requests per provider (▲ up, ▼ down; colour = answer; "
        "grey line = FTE in place)",
        times,
        lanes,
    )


def whatif_chart(result: WhatIf) -> str:
    rows = [result.base, *result.variants]
    bars = [charts.Bar(r.label, [r.total, r.worst_sla, r.unmet_fte_hours]) for r in rows]
    return charts.grouped_bars(
        "whatif",
        "What-if: re-planned from the final state",
        ["planned cost over the horizon", "worst queue's planned SLA", "unmet FTE-hours"],
        bars,
        units=["€", "%", " h"],
    )


def build_charts(data: ReportInput) -> dict[str, str]:
    out = {
        "demand": demand_chart(data.timeline),
        "cost": cost_chart(data.timeline),
        "sla": sla_chart(data.timeline),
        "decisions": decision_chart(data.timeline),
    }
    if data.whatif is not None:
        out["whatif"] = whatif_chart(data.whatif)
    return out


CSS = """
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#e3e6ea;--bg:#f5f7fa;--accent:#0072B2}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.5 Inter,"Segoe UI",Helvetica,Arial,sans-serif}
header{background:#102a43;color:#fff;padding:28px 40px}
header h1{margin:0 0 4px;font-size:24px;font-weight:650}
header p{margin:0;color:#bcccdc}
main{max-width:1080px;margin:0 auto;padding:24px 24px 48px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;
margin:0 0 20px}
.kpi{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 16px}
.kpi .v{font-size:22px;font-weight:650}.kpi .l{color:var(--muted);font-size:12px;
text-transform:uppercase;letter-spacing:.04em}
.ok{color:#00875a}.bad{color:#c0392b}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 20px;
margin:0 0 18px}
section h2{margin:0 0 2px;font-size:17px}section p.c{margin:0 0 10px;color:var(--muted)}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:right}
th:first-child,td:first-child{text-align:left}th{color:var(--muted);font-weight:600;
font-size:12px;text-transform:uppercase;letter-spacing:.03em}
ul.how{margin:6px 0 0;padding-left:18px;color:var(--muted)}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:20px}
"""


def _kpis(data: ReportInput) -> str:
    s = data.summary
    sla = s.get("sla", {})
    below = [q for q, v in sla.items() if v["attainment"] < v["target"]]
    worst = min(sla.items(), key=lambda kv: kv[1]["attainment"]) if sla else None
    items = [
        ("total cost", f"€{s['cost']['total']:,.0f}", ""),
        ("spend (no penalties)", f"€{s['cost']['spend']:,.0f}", ""),
        (
            "queues on SLA target",
            f"{len(sla) - len(below)} / {len(sla)}",
            "ok" if not below else "bad",
        ),
        (
            f"worst queue ({worst[0]})" if worst else "worst queue",
            f"{worst[1]['attainment']:.1%}" if worst else "–",
            "ok" if worst and worst[1]["attainment"] >= worst[1]["target"] else "bad",
        ),
        ("capacity requests", str(s.get("scale_actions", 0)), ""),
        (
            "compliance violations",
            str(s.get("compliance_violations", 0)),
            "ok" if not s.get("compliance_violations") else "bad",
        ),
    ]
    return (
        "<div class='kpis'>"
        + "".join(
            f"<div class='kpi'><div class='l'>{escape(label)}</div>"
            f"<div class='v {cls}'>{escape(value)}</div></div>"
            for label, value, cls in items
        )
        + "</div>"
    )


def _cls(v: dict[str, Any]) -> str:
    return "ok" if v["attainment"] >= v["target"] else "bad"


def _summary_table(data: ReportInput) -> str:
    s = data.summary
    rows: list[tuple[str, str]] = [
        ("total cost (spend + penalties)", f"€{s['cost']['total']:,.2f}"),
        ("  in-house staff", f"€{s['cost']['internal']:,.2f}"),
        ("  providers", f"€{s['cost']['providers']:,.2f}"),
        ("  churn (level changes)", f"€{s['cost']['churn']:,.2f}"),
        ("  SLA penalties (priced like the allocator)", f"€{s['cost']['penalties']:,.2f}"),
        ("unmet FTE-hours", f"{s['unmet_fte_hours']:,.1f}"),
        ("capacity requests sent", str(s["scale_actions"])),
        (
            "provider answers",
            ", ".join(f"{k} {v}" for k, v in s.get("provider_answers", {}).items()) or "–",
        ),
        ("plans", f"{s['plans']} ({s['plan_failures']} failed)"),
        ("compliance violations", str(s["compliance_violations"])),
        (
            "provider FTE-hours in place",
            ", ".join(f"{k} {v:,.0f}" for k, v in s.get("provider_fte_hours", {}).items()) or "–",
        ),
        *data.facts,
    ]
    body = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b)}</td></tr>" for a, b in rows)
    sla_rows = "".join(
        f"<tr><td>{escape(q)}</td><td>{v['arrivals']:,}</td><td>{v['target']:.0%}</td>"
        f"<td class='{_cls(v)}'>{v['attainment']:.1%}</td>"
        f"<td>{v['intervals_on_target']:.0%}</td><td>{v['abandoned']:,.0f}</td>"
        f"<td>{v['peak_backlog']:,.0f}</td></tr>"
        for q, v in s.get("sla", {}).items()
    )
    return (
        "<table><tr><th>measure</th><th>value</th></tr>" + body + "</table>"
        "<h3 style='margin:18px 0 6px;font-size:15px'>Service per queue</h3>"
        "<table><tr><th>queue</th><th>arrivals</th><th>target</th><th>attained</th>"
        "<th>intervals on target</th><th>abandoned</th><th>peak backlog</th></tr>"
        + sla_rows
        + "</table>"
    )


def _whatif_table(result: WhatIf) -> str:
    rows = [result.base, *result.variants]
    head = "".join(f"<th>{escape(r.label)}</th>" for r in rows)
    lines = [
        ("planned cost", [f"€{r.total:,.0f}" for r in rows]),
        ("  providers", [f"€{r.cost['providers']:,.0f}" for r in rows]),
        ("  penalties", [f"€{r.cost['penalties']:,.0f}" for r in rows]),
        ("worst queue's planned SLA", [f"{r.worst_sla:.1%}" for r in rows]),
        ("unmet FTE-hours", [f"{r.unmet_fte_hours:,.1f}" for r in rows]),
        ("new capacity requests", [str(len(r.requests)) for r in rows]),
    ]
    body = "".join(
        f"<tr><td>{escape(label)}</td>" + "".join(f"<td>{escape(v)}</td>" for v in values) + "</tr>"
        for label, values in lines
    )
    when = f"re-planned as of {result.as_of:%a %d %b %H:%M}"
    return f"<table><tr><th>{when}</th>{head}</tr>{body}</table>"


def render_html(data: ReportInput) -> str:
    figures = build_charts(data)
    tl = data.timeline
    span = ""
    if tl.intervals:
        first, last = tl.intervals[0].start, tl.intervals[-1].start
        span = f"{first:%a %d %b %Y %H:%M} – {last:%a %d %b %H:%M} UTC (measured window)"
    sections = [
        (
            "Demand vs capacity",
            "What the queues needed (Erlang C staffing for the SLA, backlog "
            "included) against the productive capacity really in place, in house and per provider.",
            figures["demand"],
        ),
        (
            "Cost over time",
            "Cumulative spend of the capacity in place, plus SLA penalties "
            "priced like the allocator prices them.",
            figures["cost"],
        ),
        (
            "Service level per queue",
            "Calls answered within the queue's target time, per hour, "
            "from the capacity really in place (not from the plans' promise).",
            figures["sla"],
        ),
        (
            "Decision timeline",
            "Every capacity request the planner sent to a provider, and how the provider answered.",
            figures["decisions"],
        ),
    ]
    if data.whatif is not None:
        sections.append(
            (
                "What-if",
                "The final state re-planned as is and with changed facts — nothing "
                "sent to providers (flexforce whatif).",
                figures["whatif"] + _whatif_table(data.whatif),
            )
        )
    how = "".join(f"<li>{escape(line)}</li>" for line in data.how)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>{escape(data.title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{escape(data.title)}</h1><p>{escape(data.description)}</p>",
        f"<p>{escape(span)}</p></header><main>",
        _kpis(data),
    ]
    for title, caption, svg in sections:
        parts.append(
            f"<section><h2>{escape(title)}</h2><p class='c'>{escape(caption)}</p>{svg}</section>"
        )
    parts.append(f"<section><h2>Summary</h2>{_summary_table(data)}</section>")
    if how:
        parts.append(f"<section><h2>How this run was made</h2><ul class='how'>{how}</ul></section>")
    parts.append(
        f"<footer>flexforce · scenario {escape(data.scenario)} · generated "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · self-contained, no external resources"
        "</footer></main></body></html>"
    )
    return "".join(parts)


def write_report(path: Path, data: ReportInput) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(data), encoding="utf-8")
    return path


def default_variants(providers: Sequence[str]) -> list[tuple[str, list[str]]]:
    """What-ifs the report shows when none are given: each provider suspended (up to two),
    and demand +30 %."""
    out = [(f"{p} suspended", [f"provider.{p}.status=suspended"]) for p in providers[:2]]
    out.append(("demand +30 %", ["demand.scale=1.3"]))
    return out
