"""A harness for integration tests of ``flexforce worker`` on a real Kafka broker.

Workers run as real subprocesses (``flexforce worker``), because what the tests must show —
SIGKILL, restart, takeover by another worker, broker restarts — only means something for a
process the test does not share memory with. Each worker gets its own free web port, data dir
and log file under the test's tmp dir; :class:`WorkerPool` kills every worker it started (the
whole process group, so the solver child goes too) when the test ends, pass or fail.

Outputs are read back from Kafka with a :class:`TopicWatch` (one group-less consumer per test,
subscribed by pattern so per-provider request topics the worker creates later are picked up),
and a :class:`ProviderSimulator` answers capacity requests by publishing ``CapacityResponded``
like a provider integration would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from schemas import (
    AllocationLogged,
    AllocationPlanned,
    CapacityRequested,
    CapacityResponded,
    DeadLetter,
    Event,
    ResponseStatus,
)
from schemas.topics import logical_name
from services.brokers import free_port
from services.config import ClientProfile, Settings
from services.kafka import Delivered, EventPublisher, decode_record

REPO = Path(__file__).resolve().parent.parent
FLEXFORCE = Path(sys.executable).parent / "flexforce"

#: Small, fast planning for tests: greedy policy, two days of hourly periods.
FAST_ENV: dict[str, str] = {
    "FLEXFORCE_PLANNING_POLICY": "greedy",
    "FLEXFORCE_HORIZON_PERIODS": "48",
    "FLEXFORCE_SOLVER_TIME_LIMIT_S": "5",
}

T = TypeVar("T")
E = TypeVar("E", bound=Event)


class WorkerDied(RuntimeError):
    """A worker exited while the test waited for it."""


@dataclass
class WorkerProcess:
    """One ``flexforce worker`` subprocess and where to reach it."""

    name: str
    bootstrap: str
    prefix: str
    root: Path
    env: dict[str, str]
    web_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / f"worker-{self.starts}.log"

    def start(self) -> WorkerProcess:
        """Start (or restart, same data dir, new web port) the worker."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.web_port = free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        # Unbuffered: a SIGKILLed worker's log must hold everything up to the kill.
        env = os.environ | {"PYTHONUNBUFFERED": "1"} | FAST_ENV | self.env
        args = [
            str(FLEXFORCE),
            "--log-level",
            "INFO",
            "worker",
            "-b",
            self.bootstrap,
            "--prefix",
            self.prefix,
            "--profile",
            ClientProfile.KAFKA.value,
            "--web-port",
            str(self.web_port),
            "--data-dir",
            str(self.data_dir),
        ]
        with self.log_path.open("wb") as log_file:
            # Own session: the whole group (worker + solver child) can be signalled at once.
            self.proc = subprocess.Popen(
                args,
                cwd=self.root,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its children, as a crashed host would (no goodbye to the
        group, no flush, no commit)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (a clean shutdown); SIGKILL if it does not stop within ``timeout``."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        with contextlib.suppress(ProcessLookupError):  # a solver child left behind
            os.killpg(self.proc.pid, signal.SIGKILL)
        return code

    def log_text(self) -> str:
        return "\n".join(
            (self.root / f"worker-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
            if (self.root / f"worker-{n}.log").exists()
        )

    # ---- web views ------------------------------------------------------------------------

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes, str]:
        """Status, body and content type of ``GET path`` (status 0: not answering)."""
        url = f"http://127.0.0.1:{self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")
        except (OSError, urllib.error.URLError):
            return 0, b"", ""

    async def get_json(self, path: str) -> tuple[int, Any]:
        status, body, _ = await asyncio.to_thread(self.get, path)
        return status, json.loads(body) if body else None

    async def ready(self) -> dict[str, Any]:
        _, body = await self.get_json("/ready")
        return body or {}

    async def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Poll ``/ready`` until it says ready (fails early with the log if the worker died)."""

        async def check() -> dict[str, Any] | None:
            self._check_alive()
            status, body = await self.get_json("/ready")
            return body if status == 200 else None

        return await wait_for(check, timeout, f"{self.name} ready")

    async def domains(self) -> dict[str, Any]:
        """``/domains``: the domains this worker holds, with applied counts (see views)."""
        status, body = await self.get_json("/domains")
        if status != 200:
            return {"partitions": [], "domains": {}}
        found: dict[str, Any] = body
        return found

    async def plan(self, domain: str) -> dict[str, Any] | None:
        status, body = await self.get_json(f"/plan/{domain}")
        return body if status == 200 else None

    async def metrics(self) -> dict[str, float]:
        """``/metrics`` parsed into ``{series with labels: value}``."""
        status, body, _ = await asyncio.to_thread(self.get, "/metrics")
        assert status == 200, status
        return parse_metrics(body.decode())

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise WorkerDied(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}"
            )


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format → ``{'name{labels}': value}`` (comments dropped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            values[series] = float(value)
    return values


def metric_sum(metrics: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's series whose labels include ``labels``."""
    total = 0.0
    for series, value in metrics.items():
        base = series.split("{", 1)[0]
        if base != name:
            continue
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += value
    return total


@dataclass
class WorkerPool:
    """Starts workers for one test and guarantees they are all gone afterwards."""

    bootstrap: str
    prefix: str
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def spawn(self, name: str, prefix: str | None = None, **env: str) -> WorkerProcess:
        worker = WorkerProcess(name, self.bootstrap, prefix or self.prefix, self.tmp / name, env)
        self.workers.append(worker)
        return worker.start()

    def close(self) -> None:
        for worker in self.workers:
            if worker.running:
                worker.kill()
            elif worker.proc is not None:  # reap stray children of a dead worker
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(worker.proc.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n\n".join(f"==== {w.name} ====\n{w.log_text()[-6000:]}" for w in self.workers)


async def wait_for(
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, every: float = 0.2
) -> T:
    """Await ``check()`` until it returns something truthy; fail with ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(every)


# ---- Kafka in and out ---------------------------------------------------------------------


def settings_for(bootstrap: str, prefix: str) -> Settings:
    return Settings(
        bootstrap_servers=bootstrap, topic_prefix=prefix, client_profile=ClientProfile.KAFKA
    )


async def publish(settings: Settings, events: Iterable[Event]) -> int:
    """Publish events to their topics and wait for the broker's acks."""
    async with EventPublisher(settings) as publisher:
        return await publisher.publish_many(events)


@dataclass(frozen=True)
class Seen:
    """One record read back: its logical topic, partition/offset and what it decoded to."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    event: Event | None
    timestamp_ms: int = 0
    """The record's create time (set by the producing worker's clock)."""


class TopicWatch:
    """A group-less consumer on a prefix's output topics (or any regex), accumulating records.

    Pattern subscription with a short metadata age, so the per-provider request topics the
    worker creates on the fly are read from their start as soon as they exist.
    """

    def __init__(self, settings: Settings, pattern: str) -> None:
        self._settings = settings
        self._consumer = AIOKafkaConsumer(
            **settings.consumer_options(group_id=None) | {"metadata_max_age_ms": 500}
        )
        self._pattern = "^" + re.escape(settings.topic_prefix) + f"({pattern})$"
        self.seen: list[Seen] = []
        self._read: set[tuple[str, int, int]] = set()

    async def __aenter__(self) -> TopicWatch:
        await self._consumer.start()
        self._consumer.subscribe(pattern=self._pattern)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> list[Seen]:
        fetched = await self._consumer.getmany(timeout_ms=timeout_ms)
        new: list[Seen] = []
        for records in fetched.values():
            for record in records:
                # A new matching topic re-assigns every partition, and without a group the
                # old ones restart from the earliest offset: skip what was already read.
                where = (record.topic, record.partition, record.offset)
                if where not in self._read:
                    self._read.add(where)
                    new.append(self._decode(record))
        self.seen.extend(new)
        return new

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> Seen:
        outcome = decode_record(record, self._settings.topic_prefix)
        event = outcome.event if isinstance(outcome, Delivered) else None
        topic = logical_name(self._settings.topic_prefix, record.topic)
        return Seen(
            topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            event,
            record.timestamp,
        )

    async def until(
        self, predicate: Callable[[TopicWatch], T | None], timeout: float, what: str
    ) -> T:
        """Poll until ``predicate(self)`` is truthy; return its value."""

        async def check() -> T | None:
            await self.poll()
            return predicate(self) or None

        return await wait_for(check, timeout, what, every=0)

    async def within(self, predicate: Callable[[TopicWatch], T], seconds: float) -> T | None:
        """Poll for up to ``seconds``; the predicate's value, or None if it never held."""
        deadline = time.monotonic() + seconds
        while True:
            await self.poll(100)
            found = predicate(self)
            if found or time.monotonic() > deadline:
                return found or None

    async def settle(self, quiet_s: float = 1.5) -> None:
        """Poll until nothing new arrived for ``quiet_s`` (the worker has gone idle)."""
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            if await self.poll(200):
                last = time.monotonic()

    def events(self, kind: type[E], domain: str | None = None) -> list[E]:
        return [
            s.event
            for s in self.seen
            if isinstance(s.event, kind) and (domain is None or s.event.domain == domain)
        ]

    def requests(self, domain: str | None = None) -> list[CapacityRequested]:
        return self.events(CapacityRequested, domain)

    def plans(self, domain: str | None = None) -> list[AllocationPlanned]:
        return self.events(AllocationPlanned, domain)

    def logs(self, kind: str | None = None) -> list[AllocationLogged]:
        return [e for e in self.events(AllocationLogged) if kind is None or e.kind == kind]

    def dead_letters(self) -> list[DeadLetter]:
        return self.events(DeadLetter)


OUTPUTS = r"allocation\..*|providers\..*\.capacity-requests|.*\.dlq"


def ups(requests: Sequence[CapacityRequested]) -> list[CapacityRequested]:
    return [r for r in requests if r.target_fte > r.current_fte]


def downs(requests: Sequence[CapacityRequested]) -> list[CapacityRequested]:
    return [r for r in requests if r.target_fte < r.current_fte]


def duplicate_request_ids(watch: TopicWatch) -> tuple[Counter[str], dict[str, set[bytes]]]:
    """How often each request id is on the request topics, and the distinct payloads of each."""
    counts: Counter[str] = Counter()
    payloads: dict[str, set[bytes]] = {}
    for seen in watch.seen:
        if isinstance(seen.event, CapacityRequested):
            counts[seen.event.request_id] += 1
            payloads.setdefault(seen.event.request_id, set()).add(seen.value or b"")
    return counts, payloads


Decide = Callable[[CapacityRequested], ResponseStatus | None]


class ProviderSimulator:
    """Answers capacity requests like a provider's integration: reads the request topics,
    decides per request (``None``: no answer), publishes ``CapacityResponded``. Its event time
    is ten minutes after the request, or "now" (``now()``: the newest event time the scenario
    published) if later — requests carry the core's clock, which trails the newest input by
    the allowed lateness, so an answer stamped request + 10 min would be refused as late in a
    stream that has moved on. Each request id is answered once (consumers dedupe by it).

    A scenario that publishes its own events under :attr:`turn` keeps the answers in order
    with them: an answer is stamped and published (acknowledged) while holding it, so no
    report is published between its stamp and its arrival. Without that, a report or two
    could overtake an answer on its way on a busy machine, the worker would rightly refuse it
    as late, and a replay of the recording (merged in event time) would not."""

    def __init__(
        self, settings: Settings, decide: Decide, now: Callable[[], datetime] | None = None
    ) -> None:
        self._settings = settings
        self._decide = decide
        self._now = now
        self._watch = TopicWatch(settings, r"providers\..*\.capacity-requests")
        self._publisher = EventPublisher(settings)
        self._task: asyncio.Task[None] | None = None
        self.answered: dict[str, CapacityResponded] = {}
        self.paused = False
        self.turn = asyncio.Lock()

    async def __aenter__(self) -> ProviderSimulator:
        await self._publisher.start()
        await self._watch.__aenter__()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._watch.__aexit__()
        await self._publisher.stop()

    async def wait_answered(self, count: int, timeout: float = 30.0) -> int:
        """Wait until at least ``count`` requests were answered; how many were."""

        async def enough() -> int | None:
            return len(self.answered) if len(self.answered) >= count else None

        return await wait_for(enough, timeout, f"{count} provider answers")

    async def pause(self) -> None:
        """Stop answering; returns once an answer on its way is acknowledged."""
        async with self.turn:
            self.paused = True

    async def _run(self) -> None:
        pending: list[CapacityRequested] = []
        while True:
            for seen in await self._watch.poll(200):
                if isinstance(seen.event, CapacityRequested):
                    pending.append(seen.event)
            while pending and not self.paused:
                request = pending.pop(0)
                if request.request_id in self.answered:
                    continue
                status = self._decide(request)
                if status is None:
                    continue
                async with self.turn:
                    if self.paused:
                        pending.insert(0, request)
                        break
                    at = request.time + timedelta(minutes=10)
                    if self._now is not None:  # answer "now": the newest event time published
                        at = max(at, self._now())
                    response = respond_to(request, status, at)
                    await self._publisher.publish(response)
                    self.answered[request.request_id] = response


def respond_to(
    request: CapacityRequested, status: ResponseStatus, at: datetime | None = None
) -> CapacityResponded:
    """The provider's answer at ``at`` (default ten minutes after the request): all of the
    target if accepted, nothing otherwise."""
    confirmed = request.target_fte if status is ResponseStatus.ACCEPTED else 0.0
    return CapacityResponded(
        id=f"resp-{request.request_id}-{status.value}",
        source=f"urn:provider:{request.provider_id}",
        time=at or request.time + timedelta(minutes=10),
        domain=request.domain,
        request_id=request.request_id,
        provider_id=request.provider_id,
        status=status,
        confirmed_fte=confirmed,
        effective_at=request.effective_at,
    )


def in_domain(events: Iterable[Event], domain: str) -> list[Event]:
    """The same events for another planning domain (ids prefixed, so they stay unique)."""
    return [e.model_copy(update={"domain": domain, "id": f"{domain}:{e.id}"}) for e in events]
