"""Scenario validation and the shipped scenario files."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.sim.scenario import ScenarioError, data_dir, load_scenario
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


def test_data_dir_prefers_env_then_shared_then_the_repository_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEXFORCE_DATA_DIR", raising=False)
    repo = tmp_path / "flexforce"
    repo.mkdir()
    assert data_dir(repo) == repo / "data"
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert data_dir(repo) == tmp_path / "shared" / "data"
    monkeypatch.setenv("FLEXFORCE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert data_dir(repo) == tmp_path / "elsewhere"
    # the copies the scenarios read ship with the repository
    here = Path(__file__).resolve().parents[1] / "data"
    assert (here / "anonymous_bank_feb1999_arrivals_15min.csv").is_file()
    assert (here / "servicenow_incidents_2016_arrivals_hourly.csv").is_file()
