"""Small, dependency-free SVG charts for the HTML report and the worker's ``/dashboard``.

Why our own: the report must be one self-contained file that opens offline (no CDN, no
JavaScript bundle), and the worker must draw the same charts without pulling a plotting stack
into the service. Five chart kinds cover everything shown: stacked areas with overlaid lines
(demand vs capacity, cost), lines with a target band (service level), horizontal grouped bars
(what-if) and event lanes (decision timeline).

Every chart is an ``<svg class="ff-chart" data-chart=NAME data-points=N>`` with a ``viewBox``
(it scales to its container) and ``<title>`` tooltips; ``data-points`` counts the data drawn,
so a test can check from the DOM that a chart has data without parsing paths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape

__all__ = [
    "PALETTE",
    "Bar",
    "Lane",
    "Marker",
    "Series",
    "colour",
    "event_lanes",
    "grouped_bars",
    "line_chart",
    "stacked_area",
]

#: Colour-blind-friendly categorical palette (Okabe–Ito, reordered; grey last).
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#7F7F7F",
)

WIDTH = 960
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 34, 34
FONT = "font-family='Inter,Segoe UI,Helvetica,Arial,sans-serif'"


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    values: Sequence[float | None]
    colour: str
    dash: str = ""
    width: float = 2.0


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    values: Sequence[float]
    """One value per group (see :func:`grouped_bars`)."""


@dataclass(frozen=True, slots=True)
class Marker:
    at: datetime
    kind: str  # "up" | "down" | "hold" | "info"
    text: str
    tooltip: str
    colour: str = "#333"


@dataclass(frozen=True, slots=True)
class Lane:
    label: str
    markers: Sequence[Marker] = ()
    level: Sequence[float | None] = field(default_factory=tuple)
    """Optional step series (e.g. FTE in place) on the chart's time grid, drawn faintly."""


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:.0f}"


def _nice_max(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10.0 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _fmt_axis(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value * 100:.0f}%"
    if abs(value) >= 1_000_000:
        return f"{value / 1e6:.1f}M{unit}"
    if abs(value) >= 10_000:
        return f"{value / 1e3:.0f}k{unit}"
    if abs(value) >= 1_000:
        return f"{value / 1e3:.1f}k{unit}"
    return f"{_num(value)}{unit}"


class _Frame:
    """Plot area, scales and the axes of a time-series chart."""

    def __init__(
        self, times: Sequence[datetime], y_max: float, height: int, y_min: float = 0.0
    ) -> None:
        self.times = list(times)
        self.height = height
        self.x0, self.x1 = PAD_L, WIDTH - PAD_R
        self.y0, self.y1 = height - PAD_B, PAD_T
        self.t0 = self.times[0] if self.times else datetime(2000, 1, 1)
        step = self.times[1] - self.times[0] if len(self.times) > 1 else timedelta(hours=1)
        self.t_end = (self.times[-1] if self.times else self.t0) + step
        self.y_min, self.y_max = y_min, y_max

    def x(self, moment: datetime) -> float:
        span = (self.t_end - self.t0).total_seconds() or 1.0
        return self.x0 + (self.x1 - self.x0) * (moment - self.t0).total_seconds() / span

    def xi(self, index: int) -> float:
        return self.x(self.times[index]) if index < len(self.times) else self.x1

    def y(self, value: float) -> float:
        span = (self.y_max - self.y_min) or 1.0
        clipped = min(max(value, self.y_min), self.y_max)
        return self.y0 - (self.y0 - self.y1) * (clipped - self.y_min) / span

    def axes(self, unit: str, ticks: int = 5) -> list[str]:
        out: list[str] = []
        for k in range(ticks + 1):
            value = self.y_min + (self.y_max - self.y_min) * k / ticks
            y = self.y(value)
            out.append(
                f"<line x1='{self.x0}' x2='{self.x1}' y1='{y:.1f}' y2='{y:.1f}' "
                f"stroke='#e6e8eb' stroke-width='1'/>"
                f"<text x='{self.x0 - 6}' y='{y + 4:.1f}' text-anchor='end' font-size='11' "
                f"fill='#5f6b7a'>{escape(_fmt_axis(value, unit))}</text>"
            )
        out += self._time_ticks()
        out.append(
            f"<line x1='{self.x0}' x2='{self.x1}' y1='{self.y0}' y2='{self.y0}' stroke='#9aa4b1'/>"
        )
        return out

    def _time_ticks(self) -> list[str]:
        hours = (self.t_end - self.t0).total_seconds() / 3600.0
        every = next((h for h in (1, 2, 3, 6, 12, 24, 48, 168) if hours / h <= 14), 336)
        first = self.t0.replace(minute=0, second=0, microsecond=0)
        while first < self.t0 or first.hour % min(every, 24):
            first += timedelta(hours=1)
        out: list[str] = []
        moment = first
        while moment <= self.t_end:
            x = self.x(moment)
            label = moment.strftime("%a %d %b") if moment.hour == 0 else moment.strftime("%H:%M")
            weight = "600" if moment.hour == 0 else "400"
            out.append(
                f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{self.y1}' y2='{self.y0}' stroke='#f0f1f3'/>"
                f"<text x='{x:.1f}' y='{self.y0 + 16}' text-anchor='middle' font-size='11' "
                f"font-weight='{weight}' fill='#5f6b7a'>{label}</text>"
            )
            moment += timedelta(hours=every)
        return out


def _open(name: str, height: int, points: int, title: str) -> str:
    return (
        f"<svg class='ff-chart' data-chart='{escape(name)}' data-points='{points}' "
        f"viewBox='0 0 {WIDTH} {height}' width='100%' role='img' "
        f"aria-label='{escape(title)}' xmlns='http://www.w3.org/2000/svg' {FONT}>"
        f"<title>{escape(title)}</title>"
    )


def _legend(items: Sequence[tuple[str, str, str]], y: int = 16) -> str:
    """Legend across the top: (label, colour, 'area'|'line'|'dash')."""
    out, x = [], PAD_L
    for label, fill, kind in items:
        if kind == "area":
            out.append(
                f"<rect x='{x}' y='{y - 9}' width='12' height='10' rx='2' fill='{fill}' "
                "fill-opacity='0.75'/>"
            )
        else:
            dash = " stroke-dasharray='5 3'" if kind == "dash" else ""
            out.append(
                f"<line x1='{x}' x2='{x + 14}' y1='{y - 4}' y2='{y - 4}' stroke='{fill}' "
                f"stroke-width='2.5'{dash}/>"
            )
        out.append(
            f"<text x='{x + 18}' y='{y}' font-size='12' fill='#2b3440'>{escape(label)}</text>"
        )
        x += 26 + int(6.6 * len(label))
    return "".join(out)


def _path(frame: _Frame, values: Sequence[float | None], step: bool) -> str:
    """A polyline (or a step line), broken at ``None``."""
    parts: list[str] = []
    pen = False
    for i, value in enumerate(values):
        if value is None:
            pen = False
            continue
        x, y = frame.xi(i), frame.y(value)
        if step:
            x_next = frame.xi(i + 1)
            parts.append(f"{'L' if pen else 'M'}{x:.1f},{y:.1f}L{x_next:.1f},{y:.1f}")
        else:
            xm = (x + frame.xi(i + 1)) / 2
            parts.append(f"{'L' if pen else 'M'}{xm:.1f},{y:.1f}")
        pen = True
    return "".join(parts)


def stacked_area(
    name: str,
    title: str,
    times: Sequence[datetime],
    areas: Sequence[Series],
    lines: Sequence[Series] = (),
    *,
    unit: str = "",
    height: int = 300,
) -> str:
    """Areas stacked bottom-up (step-shaped: values hold over each interval), lines on top."""
    n = len(times)
    totals = [sum((s.values[i] or 0.0) for s in areas) for i in range(n)]
    peak = max([*totals, *((v or 0.0) for s in lines for v in s.values), 0.0])
    frame = _Frame(times, _nice_max(peak * 1.05), height)
    points = sum(1 for s in (*areas, *lines) for v in s.values if v is not None)
    out = [_open(name, height, points, title), *frame.axes(unit)]
    base = [0.0] * n
    for s in areas:
        top = [base[i] + (s.values[i] or 0.0) for i in range(n)]
        if n and any(s.values[i] for i in range(n)):
            upper = "".join(
                f"L{frame.xi(i):.1f},{frame.y(top[i]):.1f}L{frame.xi(i + 1):.1f},"
                f"{frame.y(top[i]):.1f}"
                for i in range(n)
            )
            lower = "".join(
                f"L{frame.xi(i + 1):.1f},{frame.y(base[i]):.1f}L{frame.xi(i):.1f},"
                f"{frame.y(base[i]):.1f}"
                for i in reversed(range(n))
            )
            d = f"M{frame.xi(0):.1f},{frame.y(base[0]):.1f}" + upper + lower + "Z"
            mean = sum(v or 0.0 for v in s.values) / max(1, n)
            out.append(
                f"<path d='{d}' fill='{s.colour}' fill-opacity='0.72' stroke='{s.colour}' "
                f"stroke-width='0.6'><title>{escape(s.label)}: mean {_num(mean)}{unit}</title>"
                "</path>"
            )
        base = top
    for s in lines:
        dash = f" stroke-dasharray='{s.dash}'" if s.dash else ""
        out.append(
            f"<path d='{_path(frame, s.values, step=False)}' fill='none' stroke='{s.colour}' "
            f"stroke-width='{s.width}'{dash} stroke-linejoin='round'>"
            f"<title>{escape(s.label)}</title></path>"
        )
    legend = [(s.label, s.colour, "area") for s in areas]
    legend += [(s.label, s.colour, "dash" if s.dash else "line") for s in lines]
    out.append(_legend(legend))
    out.append("</svg>")
    return "".join(out)


def line_chart(
    name: str,
    title: str,
    times: Sequence[datetime],
    lines: Sequence[Series],
    *,
    unit: str = "",
    y_min: float | None = None,
    y_max: float | None = None,
    targets: Sequence[tuple[str, float, str]] = (),
    step: bool = False,
    height: int = 300,
) -> str:
    """Lines on a time axis, with optional horizontal target lines (label, value, colour)."""
    values = [v for s in lines for v in s.values if v is not None]
    top = y_max if y_max is not None else _nice_max(max([*values, 0.0]) * 1.05)
    low = y_min if y_min is not None else min([*values, 0.0])
    frame = _Frame(times, top, height, y_min=low)
    out = [_open(name, height, len(values), title), *frame.axes(unit)]
    for label, value, fill in targets:
        y = frame.y(value)
        out.append(
            f"<line x1='{frame.x0}' x2='{frame.x1}' y1='{y:.1f}' y2='{y:.1f}' stroke='{fill}' "
            f"stroke-width='1.5' stroke-dasharray='6 4'><title>{escape(label)}</title></line>"
            f"<text x='{frame.x1 - 4}' y='{y - 4:.1f}' text-anchor='end' font-size='11' "
            f"fill='{fill}'>{escape(label)}</text>"
        )
    for s in lines:
        dash = f" stroke-dasharray='{s.dash}'" if s.dash else ""
        out.append(
            f"<path d='{_path(frame, s.values, step)}' fill='none' stroke='{s.colour}' "
            f"stroke-width='{s.width}'{dash} stroke-linejoin='round'>"
            f"<title>{escape(s.label)}</title></path>"
        )
    out.append(_legend([(s.label, s.colour, "dash" if s.dash else "line") for s in lines]))
    out.append("</svg>")
    return "".join(out)


def grouped_bars(
    name: str,
    title: str,
    groups: Sequence[str],
    bars: Sequence[Bar],
    *,
    units: Sequence[str] = (),
    baseline_first: bool = True,
) -> str:
    """One panel per group (e.g. cost, SLA), one horizontal bar per item (e.g. scenario), each
    labelled with its value and, when ``baseline_first``, its difference from the first bar."""
    row, gap, label_w = 24, 18, 230
    panel_w = (WIDTH - PAD_L - label_w - PAD_R) / max(1, len(groups))
    height = PAD_T + 22 + len(bars) * row + gap
    points = sum(len(b.values) for b in bars)
    out = [_open(name, height, points, title)]
    for i, bar in enumerate(bars):
        y = PAD_T + 22 + i * row
        out.append(
            f"<text x='{PAD_L + label_w - 10}' y='{y + 15}' text-anchor='end' font-size='12' "
            f"fill='#2b3440'>{escape(bar.label)}</text>"
        )
    for g, group in enumerate(groups):
        unit = units[g] if g < len(units) else ""
        x0 = PAD_L + label_w + g * panel_w
        values = [b.values[g] for b in bars]
        peak = _nice_max(max([*values, 0.0]) * 1.25 if unit != "%" else 1.0)
        out.append(
            f"<text x='{x0}' y='{PAD_T + 8}' font-size='12' font-weight='600' "
            f"fill='#2b3440'>{escape(group)}</text>"
        )
        for i, value in enumerate(values):
            y = PAD_T + 22 + i * row
            w = (panel_w - 90) * max(0.0, value) / peak
            text = _fmt_value(value, unit)
            if baseline_first and i > 0:
                delta = value - values[0]
                sign = "+" if delta >= 0 else "−"
                text += f" ({sign}{_fmt_value(abs(delta), unit, delta=True)})"
            out.append(
                f"<rect x='{x0}' y='{y + 3}' width='{w:.1f}' height='{row - 8}' rx='3' "
                f"fill='{colour(i)}' fill-opacity='0.85'><title>{escape(bars[i].label)} — "
                f"{escape(group)}: {escape(text)}</title></rect>"
                f"<text x='{x0 + w + 5:.1f}' y='{y + 15}' font-size='11' "
                f"fill='#2b3440'>{escape(text)}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def _fmt_value(value: float, unit: str, delta: bool = False) -> str:
    if unit == "%":
        return f"{value * 100:.1f} pt" if delta else f"{value * 100:.1f}%"
    if unit == "€":
        return f"€{value:,.0f}"
    return f"{value:,.1f}{unit}"


def event_lanes(
    name: str,
    title: str,
    times: Sequence[datetime],
    lanes: Sequence[Lane],
    *,
    lane_height: int = 46,
) -> str:
    """One lane per subject (e.g. provider): an optional faint step series of its level and
    markers for events (▲ up, ▼ down, ● other) with their text and a tooltip."""
    height = PAD_T + PAD_B + lane_height * max(1, len(lanes))
    frame = _Frame(times, 1.0, height)
    frame.x0 = max(PAD_L, 10 + 7 * max((len(lane.label) for lane in lanes), default=0))
    points = sum(len(lane.markers) for lane in lanes)
    out = [_open(name, height, points, title), *frame._time_ticks()]
    for k, lane in enumerate(lanes):
        top = PAD_T + k * lane_height
        mid = top + lane_height / 2
        out.append(
            f"<rect x='{frame.x0}' y='{top + 2}' width='{frame.x1 - frame.x0}' "
            f"height='{lane_height - 4}' fill='{'#f7f8fa' if k % 2 == 0 else '#ffffff'}'/>"
            f"<text x='{frame.x0 - 6}' y='{mid + 4:.1f}' text-anchor='end' font-size='12' "
            f"fill='#2b3440'>{escape(lane.label)}</text>"
        )
        levels = [v for v in lane.level if v is not None]
        if levels:
            peak = _nice_max(max(levels)) or 1.0
            sub = _Frame(times, peak, height)
            sub.x0 = frame.x0
            sub.y0, sub.y1 = int(top + lane_height - 4), int(top + 6)
            out.append(
                f"<path d='{_path(sub, lane.level, step=True)}' fill='none' stroke='#9aa4b1' "
                f"stroke-width='1.5'><title>{escape(lane.label)} FTE in place "
                f"(max {_num(max(levels))})</title></path>"
            )
        for m in lane.markers:
            x = frame.x(m.at)
            if m.kind == "up":
                shape = (
                    f"M{x:.1f},{mid - 7:.1f}L{x + 6:.1f},{mid + 4:.1f}L{x - 6:.1f},{mid + 4:.1f}Z"
                )
            elif m.kind == "down":
                shape = (
                    f"M{x:.1f},{mid + 7:.1f}L{x + 6:.1f},{mid - 4:.1f}L{x - 6:.1f},{mid - 4:.1f}Z"
                )
            else:
                shape = f"M{x - 4:.1f},{mid:.1f}a4,4 0 1,0 8,0a4,4 0 1,0 -8,0"  # a small circle
            out.append(
                f"<path class='ff-marker' d='{shape}' fill='{m.colour}' stroke='#fff' "
                f"stroke-width='0.8'><title>{escape(m.tooltip)}</title></path>"
            )
            if m.text:
                out.append(
                    f"<text x='{x:.1f}' y='{mid + (20 if m.kind != 'down' else -10):.1f}' "
                    f"text-anchor='middle' font-size='9' fill='{m.colour}'>{escape(m.text)}</text>"
                )
    out.append(
        f"<line x1='{frame.x0}' x2='{frame.x1}' y1='{height - PAD_B}' y2='{height - PAD_B}' "
        "stroke='#9aa4b1'/>"
    )
    out.append("</svg>")
    return "".join(out)
