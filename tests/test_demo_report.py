"""The HTML report, ``flexforce whatif`` and ``flexforce demo`` end to end.

The demo test runs the real thing — embedded broker, a ``flexforce worker`` child process,
the simulators — over a short window (1 day of history, 3 h lead-in, 6 h measured, unpaced),
and checks the report, the exit code and that no child process is left behind.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.sim import evaluate as ev
from services.sim import report
from services.sim import whatif as wi
from services.sim.scenario import data_dir, load_scenario
from services.sim.timeline import run_recorded

REPO = Path(__file__).resolve().parent.parent
OUTAGE = REPO / "scenarios" / "provider-outage.yaml"
BANK = REPO / "scenarios" / "bank-week.yaml"
CHARTS = ("demand-capacity", "cost", "service-level", "decisions", "whatif")


def chart_points(html: str) -> dict[str, int]:
    return {
        name: int(points)
        for name, points in re.findall(r"data-chart='([\w-]+)' data-points='(\d+)'", html)
    }


def test_report_has_five_charts_with_data_and_no_external_resources(tmp_path: Path) -> None:
    scenario = load_scenario(OUTAGE).model_copy(
        update={"duration_hours": 30, "history_days": 2, "lead_in_hours": 12}
    )
    run = run_recorded(scenario)
    summary = ev._summarise("optimiser", run.result, run.seconds).to_dict()
    proc = run.controller.processors[scenario.domain]  # type: ignore[attr-defined]
    variants = [
        (label, wi.parse_overrides(items))
        for label, items in report.default_variants([p.id for p in scenario.providers])
    ]
    what = wi.whatif(proc.problem(), variants, wi.planning_policy(scenario))
    path = report.write_report(
        tmp_path / "r.html",
        report.ReportInput("t", scenario.name, "d", run.timeline, summary, what, ["in process"]),
    )
    html = path.read_text()
    points = chart_points(html)
    assert set(points) == set(CHARTS), points
    assert all(points[name] > 0 for name in CHARTS), points
    assert not re.search(r"(src|href)=['\"]https?:", html)  # self-contained
    assert "<table>" in html and "desk" in html
    # the outage is in the window: main-bpo's capacity is zero during it, requests were made
    assert run.timeline.decisions
    assert len(run.timeline.intervals) == 30


def test_whatif_prints_cost_sla_and_requests_difference() -> None:
    result = CliRunner().invoke(
        app,
        [
            "whatif",
            "--scenario",
            str(OUTAGE),
            "--hours",
            "12",
            "--set",
            "provider.main-bpo.status=suspended",
            "--set",
            "demand.scale=1.3",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    for text in ("planned cost", "SLA desk", "new capacity requests", "requests — as is"):
        assert text in result.output


def test_whatif_suspending_the_main_provider_moves_requests_elsewhere() -> None:
    scenario = load_scenario(OUTAGE)
    proc = wi.state_from_loop(scenario, 12)
    out = wi.whatif(
        proc.problem(),
        [("x", wi.parse_overrides(["provider.main-bpo.status=suspended", "demand.scale=1.3"]))],
        wi.planning_policy(scenario),
    )
    variant = out.variants[0]
    assert not any(r["provider"] == "main-bpo" and r["direction"] == "up" for r in variant.requests)
    assert variant.cost["total"] > out.base.cost["total"]
    assert json.dumps(out.to_dict())


@pytest.mark.parametrize(
    "setting",
    ["provider.nobody.status=suspended", "demand.scale=abc", "oops", "provider.main-bpo.colour=1"],
)
def test_whatif_refuses_bad_overrides(setting: str) -> None:
    result = CliRunner().invoke(
        app, ["whatif", "--scenario", str(OUTAGE), "--hours", "6", "--set", setting]
    )
    assert result.exit_code == 2, result.output
    assert "--set" in result.output


def _workers() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "services.cli"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


@pytest.mark.embedded
@pytest.mark.skipif(
    not (data_dir() / "anonymous_bank_feb1999_arrivals_15min.csv").exists(),
    reason="bank data not present",
)
def test_demo_end_to_end_through_kafka(tmp_path: Path) -> None:
    before = _workers()
    out = tmp_path / "report.html"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "demo",
            "--hours",
            "6",
            "--history-days",
            "1",
            "--lead-in-hours",
            "3",
            "--speed",
            "1e9",
            "--no-live",
            "-o",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"report: {out}" in " ".join(proc.stdout.split())
    html = out.read_text()
    points = chart_points(html)
    assert set(points) == set(CHARTS), points
    assert points["demand-capacity"] > 0 and points["service-level"] > 0
    assert "flexforce worker" in html  # the report says what ran where
    assert "what-if skipped" not in proc.stdout
    assert "from the worker&#x27;s own planner state" in html or "from the worker's own" in html
    assert _workers() <= before, "the demo left a worker process behind"
    print(f"demo end to end: {took:.0f} s")
