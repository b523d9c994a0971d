"""Real-broker checks: the clients we depend on really work against the brokers we ship.

Against Apache Kafka (marker ``kafka``): produce/consume with keys and headers through a
consumer group, the idempotent producer, transactions (what Faust ``exactly_once`` needs),
committed group offsets, a restart on the same port that keeps the data, and the script's
``status``. Against the embedded Tansu (marker ``embedded``): the plain round trip, and
that it really keeps nothing across a restart. No mocks: if a broker or client upgrade
breaks one of these, the services would break the same way.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from services.brokers import (
    EMBEDDED_CONSUMER_SETTINGS,
    LOCAL_KAFKA_SCRIPT,
    MEMORY_ONLY_WARNING,
    BrokerNotReadyError,
    EmbeddedBroker,
    free_port,
    probe_kafka,
    restart_local_kafka,
)
from tests.conftest import LocalKafka

HEADERS = [("event-type", b"demand.forecast"), ("schema-version", b"1")]


async def _create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    """Topics are created explicitly: the test broker runs with auto-create off."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


Seen = list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int]]


async def _consume(
    bootstrap: str, topic: str, count: int, group_id: str | None = None, **settings: Any
) -> Seen:
    """Read ``count`` records from the start as (key, value, headers, offset); commit if in
    a group."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **settings,
    )
    await consumer.start()
    seen: Seen = []
    try:
        for _ in range(60):
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                seen += [(r.key, r.value, list(r.headers), r.offset) for r in records]
            if len(seen) >= count:
                break
        if group_id is not None and seen:
            await consumer.commit()
    finally:
        await consumer.stop()
    return seen


# --------------------------------------------------------------------------- Apache Kafka


@pytest.mark.kafka
async def test_kafka_round_trip_with_headers_through_a_group(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic, group = f"{topic_prefix}events", f"{topic_prefix}group"
    await _create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b'{"n":1}', key=b"team-a", headers=HEADERS)
        await producer.send_and_wait(topic, b'{"n":2}', key=b"team-b")
    finally:
        await producer.stop()
    assert (meta.topic, meta.partition, meta.offset) == (topic, 0, 0)

    seen = await _consume(kafka_bootstrap, topic, 2, group_id=group)
    assert seen == [(b"team-a", b'{"n":1}', HEADERS, 0), (b"team-b", b'{"n":2}', [], 1)]

    # The group's commit is durable on the broker: a new member of the group resumes after it.
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group)
    await consumer.start()
    try:
        assert await consumer.committed(TopicPartition(topic, 0)) == 2
    finally:
        await consumer.stop()


@pytest.mark.kafka
async def test_kafka_idempotent_producer_writes_each_record_once_in_order(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}idem"
    await _create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, f"{i}".encode(), key=b"k") for i in range(50)]
        offsets = [(await f).offset for f in futures]
    finally:
        await producer.stop()
    assert offsets == list(range(50))
    seen = await _consume(kafka_bootstrap, topic, 50)
    assert [value for _, value, _, _ in seen] == [f"{i}".encode() for i in range(50)]


@pytest.mark.kafka
async def test_kafka_transactions_hide_aborted_records_from_read_committed(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """What Faust's exactly_once relies on (and what the embedded broker lacks)."""
    topic = f"{topic_prefix}txn"
    await _create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_prefix}tx"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"committed-1")
        await producer.begin_transaction()
        await producer.send(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"committed-2")
    finally:
        await producer.stop()
    seen = await _consume(kafka_bootstrap, topic, 2, isolation_level="read_committed")
    assert [value for _, value, _, _ in seen] == [b"committed-1", b"committed-2"]


@pytest.mark.kafka
def test_local_kafka_script_status_reports_the_running_broker(local_kafka: LocalKafka) -> None:
    if local_kafka.state_dir is None:
        pytest.skip("external $KAFKA_BOOTSTRAP: the script does not manage that broker")
    env = {**os.environ, "FLEXFORCE_KAFKA_DIR": str(local_kafka.state_dir)}
    status = subprocess.run(
        ["bash", str(LOCAL_KAFKA_SCRIPT), "status"], env=env, capture_output=True, text=True
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.startswith("running:")
    assert local_kafka.bootstrap in status.stdout
    host, _, port = local_kafka.bootstrap.rpartition(":")
    brokers = probe_kafka(host, int(port))
    assert [(b.host, b.port) for b in brokers] == [(host, int(port))]


@pytest.mark.kafka
async def test_kafka_restart_keeps_port_and_data(
    local_kafka: LocalKafka, topic_prefix: str
) -> None:
    """The script's restart is what "broker restarts under a running worker" tests use."""
    if local_kafka.state_dir is None:
        pytest.skip("external $KAFKA_BOOTSTRAP: cannot restart that broker")
    topic = f"{topic_prefix}durable"
    await _create_topic(local_kafka.bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=local_kafka.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before-restart", headers=HEADERS)
    finally:
        await producer.stop()

    assert restart_local_kafka(local_kafka.state_dir) == local_kafka.bootstrap

    seen = await _consume(local_kafka.bootstrap, topic, 1)
    assert seen == [(None, b"before-restart", HEADERS, 0)]


# --------------------------------------------------------------------------- embedded Tansu


@pytest.mark.embedded
async def test_embedded_round_trip_with_headers(embedded_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}events"
    await _create_topic(embedded_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=embedded_bootstrap)  # no idempotence on Tansu
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"n":1}', key=b"team-a", headers=HEADERS)
        await producer.send_and_wait(topic, b'{"n":2}', key=b"team-b")
    finally:
        await producer.stop()
    seen = await _consume(
        embedded_bootstrap, topic, 2, group_id=f"{topic_prefix}group", **EMBEDDED_CONSUMER_SETTINGS
    )
    assert [(k, v, h) for k, v, h, _ in seen] == [
        (b"team-a", b'{"n":1}', HEADERS),
        (b"team-b", b'{"n":2}', []),
    ]


@pytest.mark.embedded
async def test_embedded_broker_keeps_nothing_across_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    with (
        caplog.at_level(logging.WARNING, logger="services.brokers"),
        EmbeddedBroker(port=port) as broker,
    ):
        await _create_topic(broker.bootstrap, "survivor")
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("survivor", b"lost")
        finally:
            await producer.stop()
        log_path = broker.log_path
        assert log_path is not None and log_path.exists()
    assert MEMORY_ONLY_WARNING in caplog.text
    assert not broker.running
    assert not log_path.exists()  # its temp log goes with it

    with EmbeddedBroker(port=port) as broker:
        assert broker.bootstrap == f"127.0.0.1:{port}"
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            assert "survivor" not in await admin.list_topics()
        finally:
            await admin.close()


@pytest.mark.embedded
def test_embedded_broker_on_a_taken_port_fails_with_tansu_output() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(port=port, startup_timeout=20)
        with pytest.raises(RuntimeError, match="did not start") as failure:
            broker.start()
    assert "Tansu output" in str(failure.value)
    assert not broker.running


def test_probe_fails_fast_where_no_broker_listens() -> None:
    with pytest.raises(OSError):
        probe_kafka("127.0.0.1", free_port(), timeout=1.0)
    assert issubclass(BrokerNotReadyError, OSError)


def test_brokers_helper_runs_standalone_for_the_shell_script() -> None:
    """local-kafka.sh runs services/brokers.py with ``python -I``: stdlib only, no package."""
    run = subprocess.run(
        [sys.executable, "-I", "services/brokers.py", "free-port", "2"],
        cwd=LOCAL_KAFKA_SCRIPT.parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    ports = [int(p) for p in run.stdout.split()]
    assert len(ports) == 2 and ports[0] != ports[1] and all(1024 <= p <= 65535 for p in ports)
