"""Provider isolation on a real Apache Kafka with SASL/SCRAM and ACLs enforced (issue 6).

The module starts its own broker with ``deploy/kafka/local-kafka.sh start --sasl`` (a
SASL_PLAINTEXT listener, SCRAM-SHA-512, the KRaft StandardAuthorizer,
``allow.everyone.if.no.acl.found=false``, super user ``admin``; SCRAM users ``acme`` and
``globex`` created at format time) in a temp state dir on free ports, and stops it at the end.
It creates the deployment's topics as admin, applies :mod:`services.acls` for both providers
and then checks, as the provider principals over SASL, that:

* ``acme`` reads its own requests (in its group ``provider-acme``), and is refused
  ``globex``'s topic, ``globex``'s group and the responses topic (reading);
* ``acme`` writes a response, and is refused writing to a requests topic;
* a response ``acme`` forges for ``globex``'s request gets through the ACLs (one shared
  responses topic) but the domain core, run over what admin consumed from the broker,
  refuses it as a security event and dead-letters it; the request stays outstanding.

Skipped only if the Kafka jars can't be fetched (no Maven / no network on a fresh machine).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from schemas import (
    CapacityResponded,
    DeadLetter,
    DeadLetterStage,
    Event,
    LogLevel,
    ResponseStatus,
)
from schemas.topics import DEAD_LETTER_SUFFIX, capacity_requests_spec
from schemas.wire import decode
from services.acls import RESPONSES_TOPIC, all_provider_acls, apply_acls, provider_group
from services.config import Settings
from services.domain import Inbound
from services.kafka import (
    Delivered,
    EventPublisher,
    dead_letter_record,
    deployment_topics,
    ensure_topics,
    read_topic,
)
from services.worker.agent import dead_letter_for_event
from tests.test_domain_support import (
    SKILL,
    Driver,
    contract,
    hours,
    logs,
    queue,
    requests,
    respond,
    team,
)

pytestmark = pytest.mark.kafka

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "local-kafka.sh"
PROVIDERS = ("acme", "globex")
PREFIX = "sec."


@dataclass(frozen=True)
class SecureKafka:
    bootstrap: str
    passwords: dict[str, str]
    start_s: float

    def settings(self, user: str) -> Settings:
        """The project's own client settings, logged in as ``user`` over SASL/SCRAM."""
        return Settings(
            bootstrap_servers=self.bootstrap,
            topic_prefix=PREFIX,
            client_id=f"test-{user}",
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=user,
            sasl_password=self.passwords[user],
        )


def _script(args: list[str], state: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FLEXFORCE_KAFKA_DIR=str(state), FLEXFORCE_PYTHON=sys.executable)
    env["FLEXFORCE_KAFKA_SCRAM_USERS"] = " ".join(PROVIDERS)
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    state = tmp_path_factory.mktemp("secure-kafka")
    fetched = _script(["fetch"], state, 900)
    if fetched.returncode != 0:
        pytest.skip(f"Kafka jars could not be fetched: {fetched.stderr.strip()[-500:]}")
    t0 = time.monotonic()
    started = _script(["start", "--sasl"], state, 180)
    start_s = time.monotonic() - t0
    try:
        assert started.returncode == 0, f"secure broker did not start:\n{started.stderr}"
        passwords = dict(
            line.split(" ", 1) for line in (state / "credentials").read_text().splitlines()
        )
        print(f"secure broker up in {start_s:.1f}s: {started.stderr.strip()}")
        yield SecureKafka(started.stdout.strip().splitlines()[-1], passwords, start_s)
    finally:
        _script(["stop"], state, 120)


def _spiked() -> Driver:
    """A domain that has asked ``globex`` (the cheaper provider) for capacity."""
    d = Driver.new()
    terms: dict[str, Any] = {"lead_h": 6.0, "notice_h": 12.0}
    d.feed([queue(), team(), contract("globex", 25.0, **terms), contract("acme", 35.0, **terms)])
    d.feed_each(hours(0, 24, 10))
    d.feed_each(hours(24, 29, 200))
    return d


async def _read(consumer: AIOKafkaConsumer, count: int, timeout_s: float = 15.0) -> list[Any]:
    seen: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(seen) < count and time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            seen += records
    return seen


async def _consume(
    settings: Settings, logical: str, group: str | None, count: int = 1
) -> list[Any]:
    """Read ``count`` records of ``logical`` as ``settings``' principal; commit in a group."""
    consumer = AIOKafkaConsumer(settings.topic(logical), **settings.consumer_options(group))
    await consumer.start()
    try:
        records = await _read(consumer, count)
        if group is not None:
            await consumer.commit()
        return records
    finally:
        await consumer.stop()


class ResponsesTail:
    """Admin's view of the responses topic, read on from where it stopped last time."""

    def __init__(self, kafka: SecureKafka) -> None:
        self.settings = kafka.settings("admin")
        self.seen = 0

    async def read(self, logical: str = RESPONSES_TOPIC) -> list[Delivered]:
        found: list[Delivered] = []
        async for _, outcome in read_topic(self.settings, logical, idle_timeout_s=1.5):
            assert isinstance(outcome, Delivered), outcome
            found.append(outcome)
        fresh, self.seen = found[self.seen :], len(found)
        return fresh


def _events(records: list[Any]) -> list[Event]:
    """The flexforce events in consumed records (CloudEvents: the envelope is in headers)."""
    return [decode(r.key, r.value, r.headers) for r in records]


def _inbound(delivered: list[Delivered]) -> list[Inbound]:
    return [Inbound(x.event, x.topic, x.partition, x.offset) for x in delivered]


async def test_a_provider_reads_only_its_own_requests_and_a_forged_response_is_refused(
    secure_kafka: SecureKafka,
) -> None:
    kafka = secure_kafka
    admin, acme, globex = (kafka.settings(user) for user in ("admin", *PROVIDERS))
    await ensure_topics(admin, deployment_topics(PROVIDERS), partitions=1)
    client = AIOKafkaAdminClient(**admin.client_options())
    await client.start()
    try:
        assert await apply_acls(client, all_provider_acls(PROVIDERS, PREFIX)) == 12
    finally:
        await client.close()
    acme_requests = capacity_requests_spec("acme").name
    globex_requests = capacity_requests_spec("globex").name
    responses = ResponsesTail(kafka)

    # the domain asks globex (cheaper); the service (admin) publishes the requests
    d = _spiked()
    asked = requests(d.outputs)
    assert asked and {r.provider_id for r in asked} == {"globex"}
    async with EventPublisher(admin) as publisher:
        await publisher.publish_many(asked)
    # globex reads them in its own group and rejects the first; the domain then asks acme
    theirs = await _consume(globex, globex_requests, provider_group("globex", PREFIX), len(asked))
    assert _events(theirs) == asked
    rejected = asked[0]
    at = d.proc.state.watermark + timedelta(minutes=10)
    async with EventPublisher(globex) as publisher:
        await publisher.publish(respond(rejected, ResponseStatus.REJECTED, at=at))
    before = len(d.outputs)
    d.deliver(_inbound(await responses.read()))
    d.settle()
    books = d.proc.state.providers.requests
    assert books[rejected.request_id].status.value == "rejected"
    to_acme = [r for r in requests(d.outputs[before:]) if r.provider_id == "acme"]
    assert to_acme, "a rejection makes the next plan ask the other provider"
    async with EventPublisher(admin) as publisher:
        await publisher.publish_many(requests(d.outputs[before:]))

    # acme reads its own requests in its own group ...
    own = await _consume(acme, acme_requests, provider_group("acme", PREFIX), len(to_acme))
    assert _events(own) == to_acme
    # ... and nothing of globex: its requests (in any group or none), its group, the answers
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume(acme, globex_requests, provider_group("acme", PREFIX))
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume(acme, globex_requests, None)
    with pytest.raises(GroupAuthorizationFailedError):
        await _consume(acme, acme_requests, provider_group("globex", PREFIX))
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume(acme, RESPONSES_TOPIC, None)
    # a wrong password gets nowhere
    impostor = acme.model_copy(
        update={"sasl_password": SecretStr("not-" + kafka.passwords["acme"])}
    )
    with pytest.raises(KafkaError):
        await _consume(impostor, acme_requests, None)

    # acme may answer, may not write requests (its own topic included), and forges an
    # acceptance of a request globex still has open: the ACLs let that through (one shared
    # responses topic); the domain core must not apply it
    open_ = [r for r in asked if books[r.request_id].status.value == "outstanding"]
    assert open_, "globex still has requests open"
    target = open_[-1]
    at = d.proc.state.watermark + timedelta(minutes=10)
    honest = respond(to_acme[0], ResponseStatus.ACCEPTED, at=at)
    forged = respond(
        target, ResponseStatus.ACCEPTED, at=at, provider_id="acme", event_id="forged-by-acme"
    )
    async with EventPublisher(acme) as publisher:
        await publisher.publish_many([honest, forged])
        for topic in (acme_requests, globex_requests):
            with pytest.raises(TopicAuthorizationFailedError):
                await (await publisher.send_raw(topic, b"acme", b"{}", []))

    # the domain processor over what admin consumed from the broker
    answers = await responses.read()
    assert [a.event.id for a in answers] == [honest.id, forged.id]
    before = len(d.outputs)
    d.deliver(_inbound(answers))
    d.settle()
    refused = [r for step in d.steps[-2:] for r in step.refused]
    assert [(r[0].event.id, r[1], r[2]) for r in refused] == [
        (forged.id, DeadLetterStage.SECURITY, "ForgedResponse")
    ]
    item, stage, error_class, reason = refused[0]
    assert "globex" in reason and "acme" in reason
    security = [e for e in logs(d.outputs[before:]) if e.level is LogLevel.SECURITY]
    assert [e.kind for e in security] == ["response.forged"]
    assert books[target.request_id].status.value == "outstanding", "the forgery is not applied"
    assert books[to_acme[0].request_id].status.value in {"accepted", "superseded"}
    assert not any(c.accepted for c in d.proc.state.providers.lines[("globex", SKILL)].changes)

    # ... and dead-lettered on the broker, as the worker's shell does with a refusal
    letter = dead_letter_for_event(item, stage, error_class, reason)
    async with EventPublisher(admin) as publisher:
        await (await publisher.send_raw(*dead_letter_record(letter)))
    (stored,) = await ResponsesTail(kafka).read(RESPONSES_TOPIC + DEAD_LETTER_SUFFIX)
    assert isinstance(stored.event, DeadLetter)
    assert (stored.event.stage, stored.event.original_topic) == (stage, RESPONSES_TOPIC)
    letter = stored.event
    original = decode(
        base64.b64decode(letter.original_key_b64 or ""),
        base64.b64decode(letter.original_value_b64 or ""),
        [(h.key, base64.b64decode(h.value_b64)) for h in letter.original_headers],
        expected_types=[CapacityResponded],
    )
    assert original == forged
