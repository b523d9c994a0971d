"""Benchmark: one worker's ingest rate next to a raw aiokafka consumer, and end-to-end latency.

Run:  .venv/bin/python bench/pipeline.py                  (300k events; ~2-3 minutes on 2 cores)
      .venv/bin/python bench/pipeline.py --events 100000 --trials 20 --policy optimiser

Why this shape (issue 4, "Benchmark"): replays, back-fills and simulations push ticket volumes
through a worker as fast as it can go, so the worker's ingest rate is measured against what the
same broker hands a bare ``getmany`` loop *in the same run* (the machine is noisy, ratios are
not). Latency is what an operator sees live: from the event that closes an interval with a
demand surge to the capacity request on the provider's topic.

One run:

1. Apache Kafka: ``$KAFKA_BOOTSTRAP`` if set, else a fresh single-node broker from
   ``deploy/kafka/local-kafka.sh`` in a state dir of its own, stopped at the end.
2. An M-size domain (50 queues, 8 teams, 12 providers; catalogue shaped by
   :func:`allocator.synthetic.generate`) and N ``TicketVolumeObserved`` events of hourly
   intervals with the generator's daily/weekly arrival profile, pre-loaded under a fresh topic
   prefix (key = queue id, 12 partitions as in the contract).
3. (a) a raw aiokafka consumer reads the ticket-volume topic end to end (no decoding: the
   broker + client ceiling); (b) a ``flexforce worker`` subprocess consumes the same events:
   from its first non-empty fetch (reported on ``/metrics``) to the moment ``/ready`` reports
   every event handled by the domain agent; (c) b / a; (d) the worker's peak RSS (``VmHWM``).
4. (e) with the worker caught up: K trials, each publishing one hour of observations for all
   50 queues, one of them surging. The hour's events close the previous hour (allowed lateness
   60 min), whose surge moves the forecast, which triggers a plan, which sends capacity
   requests. Latency = from the first send of the closing hour to the first
   ``CapacityRequested`` on any ``providers.<id>.capacity-requests`` topic (its broker
   timestamp, as set by the worker's producer). Trials without a request are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, bench/ is first on sys.path; keep it from shadowing installed packages
# (bench/allocator.py is named like the allocator package).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from allocator.domain import AllocationProblem  # noqa: E402
from allocator.synthetic import generate  # noqa: E402
from schemas import (  # noqa: E402
    AnswerWithinSla,
    CapacityRequested,
    ContractStatus,
    Event,
    ProviderContractUpdated,
    QueueDefined,
    RateTier,
    Sensitivity,
    SkillRate,
    TeamCapacityUpdated,
    TicketVolumeObserved,
)
from schemas.topics import capacity_requests_spec, topic_for  # noqa: E402
from schemas.wire import encode  # noqa: E402
from services.brokers import free_port, start_local_kafka, stop_local_kafka  # noqa: E402
from services.config import Settings  # noqa: E402
from services.kafka import deployment_topics, ensure_topics  # noqa: E402

#: A Monday midnight: hourly intervals line up with the forecasters' day and week slots.
T0 = datetime(2026, 1, 5, tzinfo=UTC)
DOMAIN = "bench-m"
SOURCE = "urn:flexforce:bench"
#: The surge of a trial queue: this many times its usual hourly arrivals.
SURGE = 4.0


@dataclass
class MDomain:
    """An M-size planning domain as input events: catalogue, history, and latency trials."""

    domain: str
    catalogue: list[Event]
    queue_ids: list[str]
    provider_ids: list[str]
    #: Usual arrivals per queue and hour of the week (168 values per queue).
    profile: np.ndarray
    aht_s: list[float]
    hours: int
    history: list[TicketVolumeObserved] = field(default_factory=list)

    @classmethod
    def build(cls, seed: int = 7, history_events: int = 300_000) -> MDomain:
        """Catalogue from the synthetic M instance, then ``history_events`` hourly volumes.

        The catalogue's event time is the end of the history: the history is a back-fill that
        warms the forecasters before the domain is configured, so nothing is planned while it
        streams in (a plan per hour of history would measure the planner, not ingest; the
        latency trials measure planning).
        """
        problem = generate("M", seed, binding_contracts=True)
        n_queues = len(problem.streams)
        hours = math.ceil(history_events / n_queues)
        at = T0 + timedelta(hours=hours, minutes=3)
        common: dict[str, Any] = {"source": SOURCE, "domain": DOMAIN, "time": at}
        catalogue: list[Event] = []
        queue_ids: list[str] = []
        aht: list[float] = []
        rows: list[np.ndarray] = []
        for index, stream in enumerate(problem.streams):
            qid = f"q{index:03d}"
            demand = problem.demand[index]
            if demand.arrivals is not None and demand.aht_s is not None:
                stream_aht = float(demand.aht_s[0])
                arrivals = np.asarray(demand.arrivals, dtype=np.float64)
            else:  # project streams of the instance become queues of the same work
                stream_aht = 1200.0
                work = np.asarray(demand.work_hours or (), dtype=np.float64)
                arrivals = np.round(work * 3600.0 / stream_aht)
            catalogue.append(
                QueueDefined(
                    id=f"queue-{qid}",
                    queue_id=qid,
                    skill=stream.skill,
                    sla=AnswerWithinSla(
                        target_fraction=stream.sla.target_fraction,
                        within_seconds=stream.sla.target_seconds or 60.0,
                    ),
                    sensitivity=Sensitivity(stream.sensitivity),
                    allowed_regions=sorted(stream.allowed_regions),
                    required_certifications=sorted(stream.required_certifications),
                    core=stream.core,
                    default_handle_time_s=stream_aht,
                    patience_s=stream.patience_s,
                    interval_minutes=60,
                    **common,
                )
            )
            queue_ids.append(qid)
            aht.append(stream_aht)
            rows.append(arrivals)
        for team in problem.teams:
            catalogue.append(
                TeamCapacityUpdated(
                    id=f"team-{team.id}",
                    team_id=team.id,
                    skills=sorted(team.skills),
                    fte=max(team.fte_available),
                    shrinkage=team.shrinkage,
                    cost_per_hour=team.cost_per_hour,
                    region=team.region,
                    clearances=sorted(team.clearances),
                    valid_from=at,
                    **common,
                )
            )
        catalogue += _contracts(problem, at)
        provider_ids = [p.id for p in problem.providers]
        domain = cls(DOMAIN, catalogue, queue_ids, provider_ids, np.vstack(rows), aht, hours)
        domain.history = domain.volumes(0, hours, seed)[:history_events]
        return domain

    def volumes(
        self, first_hour: int, hours: int, seed: int, surge: dict[str, float] | None = None
    ) -> list[TicketVolumeObserved]:
        """Observations of every queue for ``hours`` hours, hour-major (as they would arrive).

        Reported 0-120 s after the interval ends (a collector's delay); arrivals are Poisson
        around the queue's hour-of-week profile, times ``surge`` for the named queues.
        """
        rng = np.random.default_rng(seed + first_hour)
        surge = surge or {}
        out: list[TicketVolumeObserved] = []
        for hour in range(first_hour, first_hour + hours):
            start = T0 + timedelta(hours=hour)
            lam = self.profile[:, hour % 168]
            arrivals = rng.poisson(np.maximum(lam, 0.0))
            delays = rng.integers(0, 120, len(self.queue_ids))
            for i, qid in enumerate(self.queue_ids):
                count = int(arrivals[i] * surge.get(qid, 1.0))
                out.append(
                    TicketVolumeObserved(
                        id=f"vol-{qid}-{hour}",
                        source=SOURCE,
                        time=start + timedelta(hours=1, seconds=int(delays[i])),
                        domain=DOMAIN,
                        queue_id=qid,
                        interval_start=start,
                        interval_minutes=60,
                        arrivals=count,
                        backlog=count // 10,
                        abandoned=0,
                        mean_handle_time_s=self.aht_s[i],
                    )
                )
        return out

    def trial(self, k: int) -> list[TicketVolumeObserved]:
        """Trial ``k``: the hour after the history (+k), one queue surging.

        Publishing it closes the previous hour (trial k-1's surge, or the last history hour).
        """
        qid = self.queue_ids[(k * 7) % len(self.queue_ids)]
        return self.volumes(self.hours + k, 1, seed=99, surge={qid: SURGE})


def _contracts(problem: AllocationProblem, at: datetime) -> list[Event]:
    events: list[Event] = []
    for provider in problem.providers:
        contract = provider.contract
        events.append(
            ProviderContractUpdated(
                id=f"contract-{provider.id}",
                source=SOURCE,
                time=at,
                domain=DOMAIN,
                provider_id=provider.id,
                contract_id=f"K-{provider.id}",
                rates=[
                    SkillRate(
                        skill=rate.skill,
                        tiers=[
                            RateTier(from_fte=t.from_fte, rate_per_hour=t.rate_per_hour)
                            for t in rate.tiers
                        ],
                    )
                    for rate in contract.rates
                ],
                min_fte=contract.min_fte,
                max_fte=contract.max_fte,
                fte_block=contract.block_fte,
                ramp_up_lead_time_hours=contract.ramp_up_hours,
                ramp_down_notice_hours=contract.ramp_down_notice_hours,
                regions=sorted(provider.regions),
                certifications=sorted(provider.certifications),
                quality_score=provider.quality_score,
                status=ContractStatus.ACTIVE
                if provider.status == "active"
                else ContractStatus.SUSPENDED,
                valid_from=at - timedelta(days=30),
            )
        )
    return events


# ---- Kafka side ------------------------------------------------------------------------------

VOLUME_TOPIC = TicketVolumeObserved.topic
REPO = _HERE.parent


async def preload(settings: Settings, events: Sequence[Event]) -> float:
    """Publish events in order as an operations system would (the project's producer
    settings: idempotent, acks=all, gzip); returns the seconds it took."""
    producer = AIOKafkaProducer(**settings.producer_options())
    await producer.start()
    started = time.perf_counter()
    try:
        pending: list[asyncio.Future[Any]] = []
        for event in events:
            message = encode(event)
            pending.append(
                await producer.send(
                    settings.topic(topic_for(event)),
                    value=message.value,
                    key=message.key,
                    headers=list(message.headers),
                )
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def raw_consume(settings: Settings, expected: int) -> float:
    """Events/s of a bare aiokafka ``getmany`` loop over the ticket-volume topic (no group,
    no decoding, the service's fetch sizes): the ceiling the broker and client allow."""
    consumer = AIOKafkaConsumer(
        settings.topic(VOLUME_TOPIC), **settings.consumer_options(group_id=None)
    )
    await consumer.start()
    try:
        seen = 0
        started: float | None = None
        deadline = time.monotonic() + 120
        while seen < expected and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            if fetched and started is None:
                started = time.perf_counter()
            seen += sum(len(records) for records in fetched.values())
        if seen < expected or started is None:
            raise RuntimeError(f"raw consumer read {seen} of {expected} events")
        return expected / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _get_text(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text: str = response.read().decode()
        return text


def _metric(text: str, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets) in an exposition text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _vm_kb(pid: int, field_name: str) -> int:
    """A memory figure of /proc/<pid>/status in kB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found += [int(c) for c in text]
    return found


@dataclass
class Worker:
    """A ``flexforce worker`` subprocess on loopback, with its web port and log."""

    process: subprocess.Popen[bytes]
    web: str
    log_path: Path

    @classmethod
    def start(cls, settings: Settings, workdir: Path, policy: str, limit_s: float) -> Worker:
        port = free_port()
        env = os.environ | {
            "FLEXFORCE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "FLEXFORCE_TOPIC_PREFIX": settings.topic_prefix,
            "FLEXFORCE_DOMAINS": json.dumps([DOMAIN]),
            "FLEXFORCE_PLANNING_POLICY": policy,
            "FLEXFORCE_SOLVER_TIME_LIMIT_S": str(limit_s),
            "FLEXFORCE_APP_ID": "bench",
        }
        log_path = workdir / "worker.log"
        command = [
            str(REPO / ".venv" / "bin" / "flexforce"),
            "worker",
            "--data-dir",
            str(workdir / "data"),
            "--web-port",
            str(port),
            "--worker-log-level",
            "warning",
        ]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir
            )
        return cls(process, f"http://127.0.0.1:{port}", log_path)

    def ready(self) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = _get_json(self.web + "/ready")
            return body
        except (OSError, ValueError):
            return None

    def metrics(self) -> str:
        try:
            return _get_text(self.web + "/metrics")
        except OSError:
            return ""

    def peak_rss_mb(self) -> tuple[float, float]:
        """Peak RSS of the worker process, and the largest of its children (the planner)."""
        own = _vm_kb(self.process.pid, "VmHWM") / 1024
        children = [_vm_kb(c, "VmHWM") / 1024 for c in _children(self.process.pid)]
        return own, max(children, default=0.0)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class IngestResult:
    events: int
    seconds: float
    rate: float
    handled: int
    applied: int | None
    late: float
    dead_lettered: float


async def measure_ingest(
    worker: Worker, expected: int, volumes: int, timeout_s: float
) -> IngestResult:
    """Wait until the worker's domain agent has handled ``expected`` inputs; the rate counts
    from the ingest stage's first non-empty fetch."""
    deadline = time.monotonic() + timeout_s
    done_at: float | None = None
    handled = 0
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError("worker exited:\n" + worker.tail())
        body = worker.ready()
        handled = int(body.get("events_handled", 0)) if body else 0
        if handled >= expected:
            done_at = time.time()
            break
        await asyncio.sleep(0.02)
    metrics = worker.metrics()
    first = _metric(metrics, "flexforce_ingest_first_fetch_timestamp_seconds")
    if done_at is None or not first:
        raise RuntimeError(
            f"worker handled {handled} of {expected} inputs in {timeout_s:.0f} s\n" + worker.tail()
        )
    seconds = done_at - first
    applied = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        applied = int(_get_json(worker.web + "/domains")["domains"][DOMAIN]["applied"])
    dead = _metric(metrics, "flexforce_events_dead_lettered_total")
    late = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("flexforce_events_dead_lettered_total{") and 'stage="late"' in line
    )
    return IngestResult(volumes, seconds, volumes / seconds, handled, applied, late, dead)


async def measure_latency(
    settings: Settings, domain: MDomain, trials: int, timeout_s: float
) -> tuple[list[float], int]:
    """Latency of each trial (seconds, from the first send of the closing hour to the first
    capacity request); returns the latencies and how many trials produced no request."""
    topics = [settings.topic(capacity_requests_spec(p).name) for p in domain.provider_ids]
    consumer = AIOKafkaConsumer(**settings.consumer_options(group_id=None))
    await consumer.start()
    producer = AIOKafkaProducer(**settings.producer_options())
    await producer.start()
    latencies: list[float] = []
    missed = 0
    try:
        partitions = [TopicPartition(t, 0) for t in topics]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # resolve now, so the first trial is not missed
        # Trial 0 closes the last history hour (no surge in it); its plan is not measured.
        for k in range(trials + 1):
            events = domain.trial(k)
            # Requests of the plan this hour triggers carry its event time (the watermark):
            # earlier ones, from a previous trial's slow plan, are not this trial's answer.
            since = min(event.time for event in events).isoformat().encode()
            sent = time.time()
            futures = []
            for event in events:
                message = encode(event)
                futures.append(
                    await producer.send(
                        settings.topic(topic_for(event)),
                        value=message.value,
                        key=message.key,
                        headers=list(message.headers),
                    )
                )
            await asyncio.gather(*futures)
            first = await _first_request(consumer, timeout_s, since)
            if k == 0:
                continue
            if first is None:
                missed += 1
            else:
                latencies.append(first - sent)
            # Let this trial's plan finish publishing before the next hour is sent.
            while await _first_request(consumer, 1.0, since) is not None:
                pass
    finally:
        await producer.stop()
        await consumer.stop()
    return latencies, missed


async def _first_request(
    consumer: AIOKafkaConsumer, timeout_s: float, since: bytes
) -> float | None:
    """Broker timestamp (s) of the first capacity request read within ``timeout_s`` whose event
    time (``ce_time``, same UTC ISO form) is at or after ``since``."""
    deadline = time.monotonic() + timeout_s
    kind = CapacityRequested.event_type.encode()
    while time.monotonic() < deadline:
        fetched = await consumer.getmany(timeout_ms=50)
        stamps: list[float] = []
        for records in fetched.values():
            for record in records:
                headers = dict(record.headers)
                if headers.get("ce_type") == kind and headers.get("ce_time", b"") >= since:
                    stamps.append(record.timestamp / 1000)
        if stamps:
            return min(stamps)
    return None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 30 samples p99 is the maximum)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@contextlib.contextmanager
def kafka(state_dir: Path) -> Iterator[str]:
    """``$KAFKA_BOOTSTRAP`` if set, else a local Apache Kafka of our own, stopped after."""
    external = os.environ.get("KAFKA_BOOTSTRAP", "").strip()
    if external:
        yield external
        return
    bootstrap = start_local_kafka(state_dir)
    try:
        yield bootstrap
    finally:
        stop_local_kafka(state_dir)


async def run(args: argparse.Namespace, bootstrap: str, workdir: Path) -> dict[str, Any]:
    built = time.perf_counter()
    domain = MDomain.build(seed=args.seed, history_events=args.events)
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}.")
    print(
        f"domain: {len(domain.queue_ids)} queues, {len(domain.provider_ids)} providers, "
        f"{len(domain.catalogue)} catalogue events, {len(domain.history)} volumes over "
        f"{domain.hours} h (built in {time.perf_counter() - built:.1f} s); "
        f"prefix {settings.topic_prefix}",
        flush=True,
    )
    await ensure_topics(settings, deployment_topics(domain.provider_ids))
    load_s = await preload(settings, [*domain.history, *domain.catalogue])
    print(f"pre-loaded in {load_s:.1f} s", flush=True)
    raw_rate = await raw_consume(settings, len(domain.history))
    print(f"raw aiokafka: {raw_rate:,.0f} events/s", flush=True)
    worker = Worker.start(settings, workdir, args.policy, args.time_limit)
    spy = None
    if args.py_spy:
        spy = subprocess.Popen(
            [
                str(REPO / ".venv/bin/py-spy"),
                "record",
                "--pid",
                str(worker.process.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(args.py_spy),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        expected = len(domain.catalogue) + len(domain.history)
        ingest = await measure_ingest(worker, expected, len(domain.history), args.ingest_timeout)
        print(
            f"worker: {ingest.rate:,.0f} events/s ({ingest.seconds:.1f} s), applied "
            f"{ingest.applied}, dead-lettered {ingest.dead_lettered:.0f} (late {ingest.late:.0f})",
            flush=True,
        )
        rss_after_ingest = worker.peak_rss_mb()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        latencies, missed = await measure_latency(settings, domain, args.trials, args.trial_timeout)
        rss, planner_rss = worker.peak_rss_mb()
        metrics = worker.metrics()
    finally:
        worker.stop()
    solves = _metric(metrics, "flexforce_plan_solve_seconds_count")
    solve_sum = _metric(metrics, "flexforce_plan_solve_seconds_sum")
    return {
        "events": len(domain.history),
        "raw_rate": raw_rate,
        "ingest": ingest,
        "ratio": ingest.rate / raw_rate,
        "rss_mb": rss,
        "rss_after_ingest_mb": rss_after_ingest[0],
        "planner_rss_mb": planner_rss,
        "latencies": latencies,
        "missed": missed,
        "trials": args.trials,
        "policy": args.policy,
        "time_limit": args.time_limit,
        "plans": solves,
        "mean_solve_s": solve_sum / solves if solves else float("nan"),
        "load_s": load_s,
    }


def report(r: dict[str, Any]) -> str:
    """The markdown table of one run, with the issue's targets."""
    ingest: IngestResult = r["ingest"]
    lat = r["latencies"]
    p50 = percentile(lat, 50) if lat else float("nan")
    p99 = percentile(lat, 99) if lat else float("nan")

    def ok(flag: bool) -> str:
        return "yes" if flag else "**no**"

    rows = [
        ("raw aiokafka getmany (same topic, same run)", f"{r['raw_rate']:,.0f} events/s", "", ""),
        (
            "worker ingest (first fetch → all handled)",
            f"{ingest.rate:,.0f} events/s ({ingest.events:,} in {ingest.seconds:.1f} s)",
            "≥ 50,000/s",
            ok(ingest.rate >= 50_000),
        ),
        ("worker / raw", f"{r['ratio']:.3f}", "≥ 0.15", ok(r["ratio"] >= 0.15)),
        (
            "end-to-end latency p50 / p99",
            f"{p50:.2f} s / {p99:.2f} s ({len(lat)} trials, {r['missed']} without request)",
            "p99 ≤ 2 s",
            ok(bool(lat) and p99 <= 2.0 and r["missed"] == 0),
        ),
        (
            "worker peak RSS (VmHWM)",
            f"{r['rss_mb']:.0f} MB (after ingest {r['rss_after_ingest_mb']:.0f} MB; "
            f"planner child {r['planner_rss_mb']:.0f} MB)",
            "≤ 500 MB",
            ok(r["rss_mb"] <= 500),
        ),
        (
            "inputs applied / dead-lettered (late)",
            f"{ingest.applied} / {ingest.dead_lettered:.0f} ({ingest.late:.0f})",
            "",
            "",
        ),
        (
            "plans solved (policy, limit) / mean solve",
            f"{r['plans']:.0f} ({r['policy']}, {r['time_limit']:g} s) / {r['mean_solve_s']:.2f} s",
            "",
            "",
        ),
    ]
    lines = ["| measure | value | target | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    if lat:
        lines.append("")
        lines.append(
            "latencies (s): "
            + ", ".join(f"{x:.2f}" for x in lat)
            + f"; mean {statistics.fmean(lat):.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000, help="ticket volumes to ingest")
    parser.add_argument("--trials", type=int, default=30, help="latency trials")
    parser.add_argument("--policy", default="greedy", choices=("greedy", "optimiser", "static"))
    parser.add_argument("--time-limit", type=float, default=2.0, help="solver time limit, s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ingest-timeout", type=float, default=180.0)
    parser.add_argument("--trial-timeout", type=float, default=15.0)
    parser.add_argument("--py-spy", type=Path, help="profile the worker's ingest to this file")
    parser.add_argument("--keep", type=Path, help="work in this dir and keep it (worker log)")
    args = parser.parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # NotLeader retries after creation
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            workdir = args.keep
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ff-bench-")))
        with kafka(workdir / "kafka") as bootstrap:
            print(f"kafka at {bootstrap}", flush=True)
            result = asyncio.run(run(args, bootstrap, workdir))
    print()
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
