"""The ``flexforce`` command as an operator uses it: topic table, publish, tail, refusals."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from typer.testing import CliRunner

from schemas.topics import ALL_TOPICS
from schemas.wire import encode
from services.cli import app
from services.worker.inbound import INTERNAL_TOPIC
from tests.samples import sample_events

runner = CliRunner()
QUICKSTART = Path(__file__).parents[1] / "services" / "data" / "quickstart-events.yaml"


def _event_file(tmp_path: Path, records: list[dict[str, object]]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _record(index: int) -> dict[str, object]:
    event = sample_events()[index]
    return {
        "type": type(event).event_type,
        "id": event.id,
        "source": event.source,
        "time": event.time.isoformat(),
        **json.loads(encode(event).value),
    }


def test_topics_list_names_every_topic() -> None:
    result = runner.invoke(app, ["topics", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for spec in ALL_TOPICS:
        assert spec.name in result.output
    assert "providers.<provider_id>.capacity-requests" in result.output


def test_publish_refuses_a_file_with_an_invalid_record_and_sends_nothing(tmp_path: Path) -> None:
    bad = _record(1) | {"arrivals": -3}
    path = _event_file(tmp_path, [_record(0), bad])
    # No broker is reachable on this port: a refused file must fail before connecting.
    result = runner.invoke(app, ["publish", str(path), "-b", "127.0.0.1:9"])
    assert result.exit_code == 1
    assert "record 2" in result.output and "arrivals" in result.output
    assert "nothing sent" in result.output


def test_publish_reports_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"type": "QueueDefined"\n')
    result = runner.invoke(app, ["publish", str(path), "-b", "127.0.0.1:9"])
    assert result.exit_code == 1
    assert "not JSON" in result.output


def test_bad_configuration_is_a_clear_error() -> None:
    result = runner.invoke(app, ["topics", "create", "--prefix", "no dots or spaces"])
    assert result.exit_code == 2
    assert "configuration error" in result.output


async def _topic_names(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.kafka
def test_publish_then_tail_through_apache_kafka(kafka_bootstrap: str, topic_prefix: str) -> None:
    common = ["-b", kafka_bootstrap, "--prefix", topic_prefix]
    created = runner.invoke(app, ["topics", "create", *common, "--partitions", "1"])
    assert created.exit_code == 0, created.output
    names = asyncio.run(_topic_names(kafka_bootstrap))
    # the workers' own topics too, so a cluster without auto-creation is ready for them
    assert f"{topic_prefix}{INTERNAL_TOPIC}" in names
    assert any(n.startswith(topic_prefix) and n.endswith("domain-state-changelog") for n in names)
    sent = runner.invoke(app, ["publish", str(QUICKSTART), "--no-validate", *common])
    assert sent.exit_code == 0, sent.output
    assert "sent 14 record(s); 6 of them invalid" in sent.output
    tailed = runner.invoke(
        app, ["tail", "ops.ticket-volume", *common, "--idle", "2"], env={"COLUMNS": "300"}
    )
    assert tailed.exit_code == 0, tailed.output
    assert tailed.output.count("TicketVolumeObserved") == 3
    assert tailed.output.count("invalid") == 3  # tail shows the raw topic: wrong ones too
