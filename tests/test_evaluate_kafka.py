"""`flexforce evaluate --kafka`: the same closed loop with a real worker fed through a broker
(the embedded one here) gives the same result as the in-process loop — exactly, for a
deterministic policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from services.cli import app
from tests.test_sim_support import small

pytestmark = pytest.mark.embedded


@pytest.mark.parametrize("policy", ["greedy", "static"])
def test_evaluate_through_kafka_matches_the_in_process_loop(tmp_path: Path, policy: str) -> None:
    scenario = tmp_path / "small.yaml"
    scenario.write_text(yaml.safe_dump(small(duration_hours=12).model_dump(mode="json")))
    runner = CliRunner()
    results = {}
    for mode, extra in (("kafka", ["--kafka"]), ("process", [])):
        out = tmp_path / f"{mode}.json"
        res = runner.invoke(
            app, ["evaluate", "-s", str(scenario), "-p", policy, "--json", str(out), *extra]
        )
        assert res.exit_code == 0, res.output
        (results[mode],) = json.loads(out.read_text())["results"]
    kafka, process = results["kafka"], results["process"]
    assert kafka["policy"] == f"{policy} (worker, Kafka)" and process["policy"] == policy
    # The same events at the same event times, each round one demand interval and handed over
    # whole (no late rounds): a deterministic policy makes the same requests in both loops,
    # so the outcome is the same to the cent.
    assert process["scale_actions"] > 0, "requests went round"
    assert kafka["late_rounds"] == 0
    assert kafka["plan_failures"] == process["plan_failures"] == 0
    assert kafka["scale_actions"] == process["scale_actions"], (kafka, process)
    assert kafka["cost"] == process["cost"]
    assert kafka["sla"] == process["sla"]
    assert kafka["provider_fte_hours"] == process["provider_fte_hours"]
    assert kafka["compliance_violations"] == 0
