"""Worker settings that are refused or new, and per-domain gauges after a rebalance (no Kafka)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.config import Settings
from services.metrics import PLAN_GAP, PLANNED_COST, REGISTRY, UNMET_DEMAND
from services.worker.agent import DomainHandler


def test_exactly_once_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXFORCE_EXACTLY_ONCE", "true")
    with pytest.raises(ValidationError, match=r"exactly_once is not supported(.|\n)*at least once"):
        Settings()
    monkeypatch.setenv("FLEXFORCE_EXACTLY_ONCE", "false")
    assert Settings().exactly_once is False


def test_domains_is_no_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """It was accepted and never read; now it is not a setting at all (ignored if set)."""
    assert "domains" not in Settings.model_fields
    monkeypatch.setenv("FLEXFORCE_DOMAINS", '["emea"]')
    assert not hasattr(Settings(), "domains")


def test_changelog_replication_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().changelog_replication_factor is None
    monkeypatch.setenv("FLEXFORCE_CHANGELOG_REPLICATION_FACTOR", "3")
    assert Settings().changelog_replication_factor == 3
    monkeypatch.setenv("FLEXFORCE_CHANGELOG_REPLICATION_FACTOR", "0")
    with pytest.raises(ValidationError):
        Settings()


def _sample(name: str, domain: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"domain": domain})


def test_gauges_of_a_domain_moved_away_are_removed() -> None:
    handler = DomainHandler.__new__(DomainHandler)
    handler._gauged = {"gauge-stays": 0, "gauge-moves": 3}
    for domain in handler._gauged:
        PLAN_GAP.labels(domain).set(0.01)
        PLANNED_COST.labels(domain).set(100.0)
        UNMET_DEMAND.labels(domain).set(1.0)
    handler.retain({0, 1, 2})
    assert _sample("flexforce_planned_cost", "gauge-moves") is None
    assert _sample("flexforce_plan_gap_ratio", "gauge-moves") is None
    assert _sample("flexforce_unmet_demand_fte_hours", "gauge-moves") is None
    assert _sample("flexforce_planned_cost", "gauge-stays") == 100.0
    assert handler._gauged == {"gauge-stays": 0}
    handler.retain(set())  # and a domain never planned here is no error
    assert _sample("flexforce_planned_cost", "gauge-stays") is None


def test_provider_keys_file_is_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "keys"
    good.write_text("# provider=secret\nacme = s3cret\n\nglobex=other-key\n", encoding="utf-8")
    settings = Settings(provider_keys_file=good)
    assert settings.provider_keys() == {"acme": b"s3cret", "globex": b"other-key"}
    assert Settings().provider_keys() == {}
    bad = tmp_path / "bad"
    bad.write_text("acme=s3cret\nglobex\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: expected provider_id=secret") as info:
        Settings(provider_keys_file=bad)
    assert "s3cret" not in str(info.value)
    twice = tmp_path / "twice"
    twice.write_text("acme=a\nacme=b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'acme' twice"):
        Settings(provider_keys_file=twice)
    with pytest.raises(ValueError, match="does not exist"):
        Settings(provider_keys_file=tmp_path / "missing")
