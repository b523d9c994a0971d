"""Why the domain agent reads an internal-topic gap with a consumer of its own (``GapReader``)
instead of seeking Faust's stream back: in faust-streaming 0.15.3 a ``Consumer.seek_wait``
issued from inside an agent is undone by Faust's fetch loop, which sets its per-partition read
offset from the records already fetched behind the current one and drops every re-fetched
record below it (right after the seek the read offset may briefly show the sought offset;
what counts is what the agent is given next). This pins that behaviour on a real broker; if
it fails after a Faust upgrade, seeking may work now (see docs/worker.md, "Takeover").
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = pytest.mark.kafka

RECORDS = 2000


async def test_a_seek_back_inside_a_faust_agent_is_undone(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = "seek-probe-" + uuid.uuid4().hex[:8]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        for n in range(RECORDS):
            await producer.send(topic, key=b"k", value=str(n).encode() * 50)
        await producer.flush()
    finally:
        await producer.stop()
    seek_at, seek_to = 40, 3
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.faust_seek_probe",
            kafka_bootstrap,
            topic,
            str(seek_at),
            str(seek_to),
        ],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in done.stdout.decode().splitlines() if line.startswith("{")]
    assert lines, f"the probe reported nothing: {done.stdout[-2000:]!r} {done.stderr[-2000:]!r}"
    probe = json.loads(lines[-1])
    print(probe)
    assert not probe["redelivered"], "the sought offset came again: seeking may work now"
    assert probe["first_after"][0] == seek_at + 1, "the stream just went on"
