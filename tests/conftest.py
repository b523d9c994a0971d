"""Shared fixtures: a real Apache Kafka for tests marked ``kafka``, unique topic names.

* ``kafka_bootstrap`` (session): ``$KAFKA_BOOTSTRAP`` if set (an external broker you run),
  otherwise a single-node Apache Kafka started once per test session through
  ``deploy/kafka/local-kafka.sh`` (via :func:`services.brokers.start_local_kafka`) in its own
  state dir under pytest's tmp dir, and stopped at the end. Its own state dir means two
  pytest sessions on one machine never share, or stop, each other's broker. The first run
  on a machine fetches the jars with Maven (~15 s); later runs start in ~5 s.
* ``local_kafka`` (session): the same broker plus its state dir, for tests that restart it
  (:func:`services.brokers.restart_local_kafka`). With ``$KAFKA_BOOTSTRAP`` it is that
  broker, and ``state_dir`` is ``$FLEXFORCE_KAFKA_DIR`` when the script runs it there
  (CI), else ``None``: then tests that restart the broker should skip.
* ``embedded_bootstrap`` (session): an embedded, memory-only Tansu broker
  (:class:`services.brokers.EmbeddedBroker`) for tests marked ``embedded``; mind the gaps
  listed in :mod:`services.brokers` (no idempotence/transactions, slow group joins).
* ``topic_prefix`` (function): ``t<8 hex>.``, so tests sharing the session broker never
  collide on topic or group names.

Only tests that request these fixtures start a broker; pure unit tests pay nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.brokers import (
    EmbeddedBroker,
    local_kafka_bootstrap,
    start_local_kafka,
    stop_local_kafka,
)


@dataclass(frozen=True)
class LocalKafka:
    """The session's Kafka: where to connect, and the script state dir if we started it."""

    bootstrap: str
    state_dir: Path | None


@pytest.fixture(scope="session")
def local_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    external = os.environ.get("KAFKA_BOOTSTRAP", "").strip()
    if external:
        # If that broker is the script's (as in .ci/run, which exports FLEXFORCE_KAFKA_DIR),
        # tests may restart it through the script; it is never stopped here.
        script_dir = os.environ.get("FLEXFORCE_KAFKA_DIR")
        managed = script_dir and local_kafka_bootstrap(Path(script_dir)) == external
        yield LocalKafka(external, Path(script_dir) if managed and script_dir else None)
        return
    state_dir = tmp_path_factory.mktemp("kafka")
    bootstrap = start_local_kafka(state_dir)
    try:
        yield LocalKafka(bootstrap, state_dir)
    finally:
        stop_local_kafka(state_dir)


@pytest.fixture(scope="session")
def kafka_bootstrap(local_kafka: LocalKafka) -> str:
    """``127.0.0.1:PORT`` of a real Apache Kafka (see module docstring)."""
    return local_kafka.bootstrap


@pytest.fixture(scope="session")
def embedded_bootstrap() -> Iterator[str]:
    """``127.0.0.1:PORT`` of an embedded Tansu broker, started once per session."""
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A unique ``t<8 hex>.`` prefix for this test's topics and consumer groups."""
    return f"t{uuid.uuid4().hex[:8]}."
