"""`flexforce acls`: the provider-isolation ACLs, printed (applying them is tested on a SASL
broker in tests/test_security_kafka.py)."""

from __future__ import annotations

from typer.testing import CliRunner

from services.cli import app


def test_acls_command_prints_each_providers_bindings_only() -> None:
    res = CliRunner().invoke(app, ["acls", "acme", "globex", "--prefix", "p."])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    acme = [ln for ln in lines if "User:acme" in ln]
    assert "ALLOW User:acme READ on TOPIC p.providers.acme.capacity-requests" in res.output
    assert "ALLOW User:acme WRITE on TOPIC p.providers.capacity-responses" in res.output
    assert not any("globex" in ln for ln in acme), "acme gets nothing of globex"
    assert len(lines) == 12


def test_acls_command_refuses_a_bad_provider_id() -> None:
    res = CliRunner().invoke(app, ["acls", "bad id"])
    assert res.exit_code != 0
