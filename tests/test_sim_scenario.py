"""Scenario validation and the shipped scenario files."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.sim.scenario import ScenarioError, load_scenario
from tests.test_sim_support import small

SHIPPED = sorted((Path(__file__).parents[1] / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenarios_validate(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.queues and scenario.providers


def test_bad_field_is_named(tmp_path: Path) -> None:
    text = Path(SHIPPED[0]).read_text().replace("mode: accept", "mode: maybe", 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ScenarioError, match=r"providers\.0\.behaviour\.mode"):
        load_scenario(bad)


def test_demand_must_name_known_queues() -> None:
    with pytest.raises(ValueError, match="unknown queues"):
        small(
            demand={
                "kind": "synthetic",
                "queues": [{"queue": "nope", "peak_per_hour": 1, "handle_time_s": 60}],
            }
        )


def test_restricted_queue_needs_regions() -> None:
    queue = {
        "id": "q",
        "skill": "sd",
        "sla": {"seconds": 20},
        "sensitivity": "restricted",
        "default_handle_time_s": 60,
    }
    with pytest.raises(ValueError, match="allowed_regions"):
        small(queues=[queue])
