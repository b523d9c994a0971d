"""``flexforce demo``: the closed loop through Kafka — embedded broker, a real worker, the
simulators — shown live, then written up as an HTML report.

What runs where:

* the **embedded broker** (Tansu, memory only) in a child process (or any broker given with
  ``--bootstrap``);
* one **worker**, the ``flexforce worker`` command itself in a child process (batched ingest,
  the domain agent, forecasts, the optimiser in its solver process, decisions to Kafka);
* in this process, the **simulators**: the operations system publishes the catalogue and the
  15-minute ticket volumes (real bank calls) with the backlog the outcome model left; the
  simulated providers read ``providers.<id>.capacity-requests`` and publish their answers to
  ``providers.capacity-responses``; the outcome model scores the capacity really in place.

Event time runs in rounds of ``round_minutes`` (default: one demand interval, as the
in-process loop ticks): the round's volumes, answers and contract events are published, the
demo waits until the worker's clock (``/domains``) has reached the round's end — so every plan
of the round is made — reads the worker's outputs (plans, decisions, requests) and hands the
requests to the providers, received at the round's end. Rounds are paced to at most
``acceleration`` event seconds per wall second.

Same inputs as the in-process loop of ``flexforce evaluate``, at the same event times: the
history before the lead-in is a back-fill of queues, rosters and volumes; the provider
contracts are published at the lead-in's start in both loops (so no request is made for the
past, and the first provider-aware plan is made at the same step). One difference: the worker
also plans the back-fill, in-house only; every mark those plans leave is cleared by that
first provider-aware plan, which is urgent. The worker plans with its own settings
(``FLEXFORCE_*``: the scenario's planning block and policy weights are mapped onto them, so it
plans with the prices the outcome is scored with). With a deterministic policy (greedy,
static) the two loops make the same requests; the optimiser's plans depend on its time limit.
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
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from schemas import (
    AllocationLogged,
    AllocationPlanned,
    CapacityRequested,
    DeadLetter,
    Event,
    ScalingDecided,
)
from schemas.topics import capacity_requests_spec
from services.brokers import free_port
from services.config import ClientProfile, Settings
from services.kafka import (
    Delivered,
    EventPublisher,
    decode_record,
    deployment_topics,
    ensure_topics,
)
from services.sim.controllers import Stats
from services.sim.demand import load_demand
from services.sim.loop import LoopResult, allocator_policy, build_world, project_work
from services.sim.scenario import Scenario
from services.sim.timeline import Recorder, Timeline, new_timeline

__all__ = ["DemoError", "DemoRun", "WorkerProcess", "demo_scenario", "run_demo", "worker_env"]

OUTPUT_TOPICS = ("allocation.plans", "allocation.decisions", "allocation.log")
INPUT_DLQS = (
    "ops.ticket-volume.dlq",
    "ops.queues.dlq",
    "ops.workforce.dlq",
    "providers.contracts.dlq",
    "providers.capacity-responses.dlq",
)


class DemoError(RuntimeError):
    """The demo could not run (the message says what and shows the worker's log tail)."""


def demo_scenario(
    scenario: Scenario, hours: float, history_days: int | None, lead_in_hours: float | None
) -> Scenario:
    """The scenario cut to ``hours`` measured (and optionally less history / lead-in)."""
    update: dict[str, Any] = {"duration_hours": min(hours, scenario.duration_hours)}
    if history_days is not None:
        update["history_days"] = history_days
    if lead_in_hours is not None:
        update["lead_in_hours"] = lead_in_hours
    return scenario.model_copy(update=update)


def worker_env(
    scenario: Scenario, solver_time_limit_s: float | None = None, policy: str = "optimiser"
) -> dict[str, str]:
    """The scenario's planning block as the worker's ``FLEXFORCE_*`` settings."""
    p = scenario.planning
    env = {
        "FLEXFORCE_PLANNING_POLICY": policy,
        "FLEXFORCE_PERIOD_MINUTES": str(p.period_minutes),
        "FLEXFORCE_HORIZON_PERIODS": str(p.horizon_periods),
        "FLEXFORCE_MIN_REPLAN_MINUTES": str(p.min_replan_minutes),
        "FLEXFORCE_MAX_STALENESS_MINUTES": str(p.max_staleness_minutes),
        "FLEXFORCE_ALLOWED_LATENESS_MINUTES": str(p.allowed_lateness_minutes),
        "FLEXFORCE_CONTROL_LATENESS_MINUTES": str(p.control_lateness_minutes),
        "FLEXFORCE_SOLVER_TIME_LIMIT_S": str(solver_time_limit_s or p.solver_time_limit_s),
        "FLEXFORCE_SERVICE_TARGET_MARGIN": str(p.service_target_margin),
        "FLEXFORCE_INTERNAL_PARTITIONS": "1",
        "FLEXFORCE_SOURCE": f"urn:flexforce:demo:{scenario.name}",
    }
    # The scenario's prices: the worker plans with what the outcome is scored with.
    prices = allocator_policy(scenario)
    for name in (
        "sla_penalty_per_contact",
        "unmet_work_penalty_per_hour",
        "churn_cost_per_fte",
        "quality_penalty_per_fte_hour",
        "core_in_house_share",
        "vendor_concentration_cap",
        "max_occupancy",
        "level_change_hours",
        "internal_cost",
        "demand_cv",
        "understaffing_penalty_per_fte_hour",
        "request_cost_per_fte",
    ):
        env[f"FLEXFORCE_POLICY_{name.upper()}"] = str(getattr(prices, name))
    if prices.budget_cap is not None:
        env["FLEXFORCE_POLICY_BUDGET_CAP"] = str(prices.budget_cap)
    return env


_EVENTS_OUT_SAMPLE = re.compile(r'^flexforce_events_out_total\{event_type="([^"]+)"\} (\S+)$', re.M)


@dataclass
class WorkerProcess:
    """``flexforce worker`` as a child process in its own session (solver child included)."""

    bootstrap: str
    prefix: str
    profile: ClientProfile
    root: Path
    env: dict[str, str]
    web_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "worker.log"

    def start(self) -> None:
        self.web_port = free_port()
        args = [
            sys.executable,
            "-m",
            "services.cli",
            "--log-level",
            "WARNING",
            "worker",
            "-b",
            self.bootstrap,
            "--prefix",
            self.prefix,
            "--profile",
            self.profile.value,
            "--web-port",
            str(self.web_port),
            "--data-dir",
            str(self.root / "data"),
            "--worker-log-level",
            "warning",
        ]
        env = os.environ | {"PYTHONUNBUFFERED": "1"} | self.env
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _fetch(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        """Status and body of a GET on the worker's web port (error bodies too; 0 when it
        does not answer)."""
        url = f"http://127.0.0.1:{self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        """Status and JSON body of a GET; the body is None unless the status is a success."""
        status, raw = self._fetch(path, timeout)
        if not 200 <= status < 300:
            return status, None
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return 0, None

    def events_out(self, attempts: int = 6) -> dict[str, int] | None:
        """Decision events the worker has handed to its producer, by event type (its
        ``flexforce_events_out_total`` counter); None when ``/metrics`` does not answer in
        ``attempts`` tries of 5 s (a busy worker answers late: without the count, a round's
        hand-over could not be proven whole)."""
        for attempt in range(attempts):
            status, raw = self._fetch("/metrics", timeout=5.0)
            if status == 200:
                text = raw.decode(errors="replace")
                return {m[1]: int(float(m[2])) for m in _EVENTS_OUT_SAMPLE.finditer(text)}
            if attempt + 1 < attempts:
                time.sleep(0.2)
        return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check(self) -> None:
        if not self.alive():
            raise DemoError(f"the worker exited; its log:\n{self.log_tail()}")

    async def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            status, _ = await asyncio.to_thread(self.get, "/ready")
            if status == 200:
                return
            await asyncio.sleep(0.3)
        raise DemoError(f"worker not ready after {timeout:.0f} s; its log:\n{self.log_tail()}")

    async def handled(self) -> int | None:
        """Input events the worker's domain agent has handled (``/ready``), None if unknown."""
        return await asyncio.to_thread(self._handled)

    def _handled(self) -> int | None:
        status, raw = self._fetch("/ready")  # 503 while not ready: its body still counts
        try:
            body = json.loads(raw or b"null") if status else None
        except ValueError:
            return None
        count = (body or {}).get("events_handled")
        return None if count is None else int(count)

    async def domain(self, name: str) -> dict[str, Any] | None:
        status, body = await asyncio.to_thread(self.get, "/domains")
        if status != 200 or not body:
            return None
        found: dict[str, Any] | None = body.get("domains", {}).get(name)
        return found

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (clean shutdown), SIGKILL the whole session if it lingers."""
        if self.proc is None:
            return None
        code: int | None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the solver child, or a stuck worker
        if code is None:
            code = self.proc.wait(timeout=10)
        return code


@dataclass
class LiveState:
    """What the live view shows (updated by the loop, rendered by :func:`render_live`)."""

    scenario: Scenario
    phase: str = "starting"
    now: datetime | None = None
    started: float = field(default_factory=time.monotonic)
    rounds: int = 0
    rounds_total: int = 0
    plans: int = 0
    last_plan_cost: float | None = None
    last_solve_s: float | None = None
    queue_rows: dict[str, tuple[int, float, float, float | None, float]] = field(
        default_factory=dict
    )
    teams: dict[str, float] = field(default_factory=dict)
    providers: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0
    feed: deque[str] = field(default_factory=lambda: deque(maxlen=10))
    note: str = ""


def render_live(state: LiveState) -> Group:
    sc = state.scenario
    wall = time.monotonic() - state.started
    head = Table.grid(padding=(0, 2))
    head.add_row(
        f"[bold]{sc.name}[/] · domain {sc.domain}",
        f"phase: [cyan]{state.phase}[/]",
        f"event time: [bold]{state.now:%a %d %b %H:%M}[/]" if state.now else "event time: –",
        f"round {state.rounds}/{state.rounds_total}",
        f"wall {wall:,.0f} s",
    )
    head.add_row(
        f"plans {state.plans}",
        f"last plan cost €{state.last_plan_cost:,.0f}" if state.last_plan_cost else "",
        f"solve {state.last_solve_s:.2f} s" if state.last_solve_s is not None else "",
        f"cost so far €{state.cost:,.0f}",
        state.note,
    )
    queues = Table(title="queues (last interval)", expand=True)
    for col in ("queue", "arrivals", "FTE needed", "FTE working", "service level", "backlog"):
        queues.add_column(col, justify="right" if col != "queue" else "left")
    for q, (arr, need, routed, sl, backlog) in sorted(state.queue_rows.items()):
        target = next((x.sla.target for x in sc.queues if x.id == q), 0.8)
        sl_text = "–" if sl is None else f"[{'green' if sl >= target else 'red'}]{sl:.0%}[/]"
        queues.add_row(q, str(arr), f"{need:.1f}", f"{routed:.1f}", sl_text, f"{backlog:.0f}")
    cap = Table(title="capacity in place (FTE)", expand=True)
    cap.add_column("source")
    cap.add_column("FTE", justify="right")
    for t, fte in sorted(state.teams.items()):
        cap.add_row(f"in house: {t}", f"{fte:.1f}")
    for p in sorted({s.id for s in sc.providers}):
        cap.add_row(f"provider: {p}", f"{state.providers.get(p, 0.0):.0f}")
    feed = Panel("\n".join(state.feed) or "–", title="decisions as they happen")
    grid = Table.grid(expand=True)
    grid.add_column(ratio=3)
    grid.add_column(ratio=2)
    grid.add_row(queues, cap)
    return Group(head, grid, feed)


@dataclass
class DemoRun:
    result: LoopResult
    timeline: Timeline
    seconds: float
    worker_url: str
    state: dict[str, Any] | None
    """The worker's final domain summary (``/domains``)."""
    plan: dict[str, Any] | None
    """The worker's last plan (``/plan/{domain}``)."""
    dead_letters: int
    late_rounds: int = 0
    """Rounds whose outputs were not all read when the round was handed over."""
    domain_state: dict[str, Any] | None = None
    """The worker's own planner state of the domain at the end (``/state/{domain}``): what
    the what-if re-plans from."""


class OutputReader:
    """Reads the worker's outputs (plans, decisions, requests, log, dead letters) by explicit
    partition assignment (all topics have one partition in the demo)."""

    def __init__(self, settings: Settings, providers: Sequence[str]) -> None:
        self.settings = settings
        topics = [*OUTPUT_TOPICS, *INPUT_DLQS]
        topics += [capacity_requests_spec(p).name for p in providers]
        self.partitions = [TopicPartition(settings.topic(t), 0) for t in topics]
        self.consumer = AIOKafkaConsumer(**settings.consumer_options(group_id=None))
        self.seen: Counter[str] = Counter()
        """Events read since the start, by event type."""
        self.late_rounds = 0
        self.ids: set[str] = set()
        """Ids of the events handed on (a re-sent output is read again, with the same id)."""
        """Rounds whose outputs did not all arrive within :meth:`drain_until`'s wait."""

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def drain(self, quiet_ms: int = 150, max_s: float = 2.0) -> list[Event]:
        """Everything published so far: poll until nothing new arrives for ``quiet_ms``."""
        out: list[Event] = []
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            batch = await self._poll(quiet_ms)
            if not batch:
                break
            out += batch
        return out

    async def drain_until(self, expected: Mapping[str, int], max_s: float = 30.0) -> list[Event]:
        """Read until as many events of each type have arrived (since the start) as the worker
        says it has sent: the exact hand-over of a round — a request the worker sent late in
        the round is read in that round, however slow the broker or the machine. Falls back
        to :meth:`drain`'s quiet period when the worker's counts are unknown."""
        out: list[Event] = []
        deadline = time.monotonic() + max_s
        while any(self.seen[kind] < n for kind, n in expected.items()):
            if time.monotonic() > deadline:
                self.late_rounds += 1  # what is missing is read in a later round
                break
            out += await self._poll(100)
        return out + await self.drain(quiet_ms=0 if expected else 150)

    async def _poll(self, timeout_ms: int) -> list[Event]:
        out: list[Event] = []
        fetched = await self.consumer.getmany(timeout_ms=timeout_ms)
        for records in fetched.values():
            for record in records:
                outcome = decode_record(record, self.settings.topic_prefix)
                if isinstance(outcome, Delivered):
                    event = outcome.event
                    self.seen[type(event).event_type] += 1  # every copy: the worker counts sends
                    if event.id not in self.ids:  # at least once: repeats dropped by id
                        self.ids.add(event.id)
                        out.append(event)
        return out


async def run_demo(
    scenario: Scenario,
    settings: Settings,
    root: Path,
    *,
    console: Console,
    acceleration: float | None = None,
    round_minutes: int | None = None,
    solver_time_limit_s: float | None = None,
    live: bool = True,
    on_worker: Callable[[WorkerProcess], None] | None = None,
    policy: str = "optimiser",
) -> DemoRun:
    """Run the closed loop through Kafka (see the module docstring); ``policy`` is the
    worker's ``FLEXFORCE_PLANNING_POLICY`` (optimiser, greedy or static)."""
    sc = scenario
    started = time.perf_counter()
    trace = load_demand(sc)
    world = build_world(sc, trace)
    timeline = new_timeline(sc, trace)
    recorder = Recorder(world.model, timeline)
    stats = Stats()
    provider_ids = [p.id for p in sc.providers]
    await ensure_topics(settings, deployment_topics(provider_ids), partitions=1)
    worker = WorkerProcess(
        settings.bootstrap_servers,
        settings.topic_prefix,
        settings.client_profile,
        root,
        worker_env(sc, solver_time_limit_s, policy),
    )
    view = LiveState(sc)
    ctx: Any = (
        Live(render_live(view), console=console, refresh_per_second=4, transient=False)
        if live
        else contextlib.nullcontext()
    )
    reader = OutputReader(settings, provider_ids)
    dead_letters = 0
    try:
        worker.start()
        if on_worker is not None:
            on_worker(worker)
        with ctx as display:

            def refresh() -> None:
                if display is not None:
                    display.update(render_live(view))

            view.phase = "worker starting"
            refresh()
            await worker.wait_ready()
            await reader.start()
            async with EventPublisher(settings) as publisher:
                interval = trace.interval
                lead_in = sc.start - timedelta(hours=sc.lead_in_hours)
                first = max(0, trace.index(lead_in))
                catalogue = world.catalogue
                # ---- history: a back-fill, in-house only (contracts come at the lead-in) ----
                view.phase = "back-fill (history, forecasts learn)"
                history: list[Event] = catalogue.in_house()
                for i in range(first):
                    history += world.ops.volumes(i, {})
                await publisher.publish_many(history)
                published = len(history)
                backfill_end = trace.start + first * interval
                await _wait_clock(
                    worker, sc.domain, backfill_end, view, refresh, timeout=300, slack=interval
                )
                await _wait_handled(worker, published, view, refresh)
                # ---- the closed loop, in rounds ----
                per_round = max(1, (round_minutes or 0) // trace.interval_minutes)
                last = min(trace.length, trace.index(sc.end))
                view.rounds_total = -(-(last - first) // per_round)
                pace = acceleration or sc.acceleration
                capacity_hours: dict[str, float] = {}
                hours = trace.interval_minutes / 60.0
                pending_requests: list[CapacityRequested] = []
                i = first
                while i < last:
                    round_started = time.monotonic()
                    view.phase = (
                        "lead-in (not measured)" if i < trace.index(sc.start) else "measured"
                    )
                    events: list[Event] = []
                    end = ops_end = world.ops.interval_start(i)
                    for j in range(i, min(last, i + per_round)):
                        start = world.ops.interval_start(j)
                        end = start + interval
                        measure = start >= sc.start
                        lines = world.providers.in_place(start)
                        demand = {q: trace.at(q, j) for q in catalogue.queues}
                        demand |= project_work(sc, start, trace.interval_minutes)
                        agents = recorder.step(start, demand, lines, measure=measure)
                        if measure:
                            for (pid, _), fte in lines.items():
                                capacity_hours[pid] = capacity_hours.get(pid, 0.0) + fte * hours
                        if j == first:
                            events += catalogue.contracts_at(start)
                        events += world.ops.volumes(
                            j, {q: world.model.open_tickets(q) for q in catalogue.queues}
                        )
                        events += world.providers.contract_events(start, end)
                        events += world.ops.projects(start, end)
                        answers = world.providers.due(end)
                        events += answers
                        for answer in answers:
                            timeline.answer(answer)
                            view.feed.append(
                                f"{answer.time:%a %H:%M} [bold]{answer.provider_id}[/] "
                                f"{answer.status.value} {answer.confirmed_fte:g} FTE"
                            )
                        _live_rows(view, world, demand, agents, recorder, start, lines)
                        ops_end = end
                    events.sort(key=lambda e: (e.time, e.id))
                    await publisher.publish_many(events)
                    published += len(events)
                    await _wait_clock(
                        worker, sc.domain, ops_end, view, refresh, timeout=120, slack=interval
                    )
                    await _wait_handled(worker, published, view, refresh)
                    sent = await asyncio.to_thread(worker.events_out)
                    if sent is None:
                        reader.late_rounds += 1  # the hand-over cannot be proven whole
                    for event in await reader.drain_until(sent or {}):
                        dead_letters += isinstance(event, DeadLetter)
                        _observe(event, stats, timeline, view, pending_requests, sc.start)
                    for req in pending_requests:
                        world.providers.request(req, received_at=ops_end)
                    pending_requests.clear()
                    view.rounds += 1
                    view.now = ops_end
                    refresh()
                    i += per_round
                    wait = (ops_end - world.ops.interval_start(i - per_round)).total_seconds()
                    rest = wait / pace - (time.monotonic() - round_started)
                    if rest > 0:
                        await asyncio.sleep(rest)
                world.model.finish(sc.end)
                view.phase = "done"
                refresh()
        worker.check()
        _, state = await asyncio.to_thread(worker.get, "/domains")
        _, plan = await asyncio.to_thread(worker.get, f"/plan/{sc.domain}")
        status, domain_state = await asyncio.to_thread(worker.get, f"/state/{sc.domain}", 10.0)
        result = LoopResult(world, stats, view.rounds, capacity_hours)
        return DemoRun(
            result,
            timeline,
            time.perf_counter() - started,
            f"http://127.0.0.1:{worker.web_port}",
            (state or {}).get("domains", {}).get(sc.domain),
            plan,
            dead_letters,
            reader.late_rounds,
            domain_state if status == 200 else None,
        )
    finally:
        with contextlib.suppress(Exception):
            await reader.stop()
        worker.stop()


async def _wait_clock(
    worker: WorkerProcess,
    domain: str,
    until: datetime,
    view: LiveState,
    refresh: Callable[[], None],
    timeout: float,
    slack: timedelta = timedelta(minutes=15),
) -> None:
    """Until the worker's clock for ``domain`` has reached ``until`` (all its plans made).

    The core's frontier is exclusive: with the newest event at W, its clock stops at the last
    step before W (one volume interval earlier); what W itself closes is planned when the next
    round's events move W on — exactly as in the in-process loop."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        worker.check()
        found = await worker.domain(domain)
        clock = found.get("clock") if found else None
        if clock is not None and datetime.fromisoformat(clock) >= until - slack:
            return
        if time.monotonic() > deadline:
            raise DemoError(
                f"the worker's clock did not reach {until.isoformat()} within {timeout:.0f} s "
                f"(at {clock}); its log:\n{worker.log_tail()}"
            )
        if found and view.phase.startswith("back-fill"):
            view.note = f"applied {found.get('applied', 0):,} events, clock {clock or '–'}"
            refresh()
        await asyncio.sleep(delay)
        delay = min(0.2, delay * 1.5)


async def _wait_handled(
    worker: WorkerProcess,
    published: int,
    view: LiveState,
    refresh: Callable[[], None],
    timeout: float = 120.0,
) -> None:
    """Until the worker's domain agent has handled every event published so far.

    The agent stores a batch's state (and so its clock) only after the batch's plans are made
    and their outputs handed to the producer, and counts the batch last: once the count covers
    what was published, nothing of the round is still being planned, and the worker's
    ``flexforce_events_out_total`` is final for it. Waiting for the clock alone let a plan
    still in progress at the round's end send its request a round late."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        worker.check()
        handled = await worker.handled()
        if handled is not None and handled >= published:
            return
        if time.monotonic() > deadline:
            view.note = f"worker handled {handled} of {published} events; going on"
            refresh()
            return
        await asyncio.sleep(delay)
        delay = min(0.2, delay * 1.5)


def _observe(
    event: Event,
    stats: Stats,
    timeline: Timeline,
    view: LiveState,
    pending: list[CapacityRequested],
    measured_from: datetime,
) -> None:
    if isinstance(event, AllocationPlanned):
        stats.plans += 1
        stats.plan_seconds += event.solver.solve_seconds
        view.plans += 1
        view.last_plan_cost = event.cost.total
        view.last_solve_s = event.solver.solve_seconds
        if event.as_of >= measured_from:
            timeline.plans.append(
                _plan_record(event),
            )
    elif isinstance(event, CapacityRequested):
        stats.requests += 1
        pending.append(event)
        if event.time >= measured_from:
            timeline.request(event)
        arrow = "▲" if event.target_fte > event.current_fte else "▼"
        view.feed.append(
            f"{event.time:%a %H:%M} request {arrow} [bold]{event.provider_id}[/]/{event.skill} "
            f"{event.current_fte:g} → {event.target_fte:g} FTE from {event.effective_at:%a %H:%M}"
        )
    elif isinstance(event, ScalingDecided) and event.direction.value == "hold":
        view.feed.append(f"{event.time:%a %H:%M} hold {event.target_id}: {event.reason[:60]}")
    elif isinstance(event, AllocationLogged) and event.level.value == "error":
        stats.failures += 1
        view.feed.append(f"[red]{event.time:%a %H:%M} {event.kind}: {event.message[:70]}[/]")
    elif isinstance(event, DeadLetter):
        stats.refused += 1


def _plan_record(event: AllocationPlanned) -> Any:
    from services.sim.timeline import PlanRecord

    return PlanRecord(
        event.as_of,
        event.cost.total,
        event.cost.providers,
        event.solver.solve_seconds,
        event.solver.status.value,
        event.policy,
    )


def _live_rows(
    view: LiveState,
    world: Any,
    demand: dict[str, Any],
    agents: dict[str, float],
    recorder: Recorder,
    start: datetime,
    lines: dict[tuple[str, str], float],
) -> None:
    view.now = start
    last = recorder.timeline.intervals[-1] if recorder.timeline.intervals else None
    measured = last is not None and last.start == start
    for q in world.catalogue.queues:
        need = last.required_fte.get(q, 0.0) if measured and last else 0.0
        sl = last.service_level.get(q) if measured and last else None
        view.queue_rows[q] = (
            demand[q].arrivals if q in demand else 0,
            need,
            agents.get(q, 0.0),
            sl,
            world.model.backlog.get(q, 0.0),
        )
    view.teams = {t.id: t.productive_fte(0) for t in world.model.teams}
    totals: dict[str, float] = {}
    for (pid, _), fte in lines.items():
        totals[pid] = totals.get(pid, 0.0) + fte
    view.providers = totals
    view.cost = world.model.spend.total + sum(s.penalty for s in world.model.scores.values())


def temp_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="flexforce-demo-"))
