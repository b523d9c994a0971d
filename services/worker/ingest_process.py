"""The batched ingest stage in a child process of the worker.

Validation (pydantic over whole partition batches), alignment and re-encoding for the internal
topic cost about as much CPU per event as the domain core applying it; in one process they share
one event loop and one core with the domain agent and Faust. Here the stage
(:class:`services.worker.ingest.IngestStage`, unchanged: its own consumer group, its own
producer, commits after acks) runs in a spawned child with its own event loop, so the two halves
of the pipeline run on two cores. Nothing but counters crosses the process boundary: the child
reads the input topics and writes ``internal.domain-inputs`` and the dead-letter topics itself.

* The parent (:class:`IngestChild`) mirrors the child's counters into the worker's ``/ready``
  (``ingest``, ``ingest_forwarded``) and Prometheus metrics, from reports the child sends over
  a pipe (at most every :data:`REPORT_EVERY_S`, and at once when it becomes ready).
* Stopping: the parent sends ``stop``; the child stops its loop, waits for outstanding acks,
  commits and exits. A child that exits on its own (a crash, a kill) makes :meth:`run` raise, so
  the worker's supervisor starts another one (uncommitted input is re-read: at least once).
* The child never outlives the worker: it asks the kernel to kill it when its parent dies
  (``PR_SET_PDEATHSIG``; Linux) and stops when the pipe to the parent closes — a SIGKILLed
  worker must not leave a member in the ingest group that keeps forwarding.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
from collections import Counter
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import structlog

from services.config import Settings
from services.metrics import EVENTS_DEAD_LETTERED, EVENTS_IN, INGEST_LAG
from services.worker.gc_tuning import tune_gc
from services.worker.ingest import INGEST_FIRST_FETCH, INGEST_HELD, IngestStage

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

log = structlog.get_logger(__name__)

#: Seconds between the child's counter reports (the parent's metrics lag at most this much).
REPORT_EVERY_S = 0.1
#: Seconds a stopping child gets to drain and commit before it is killed.
STOP_GRACE_S = 15.0

_PR_SET_PDEATHSIG = 1


class IngestChildExited(RuntimeError):
    """The ingest child process ended without being asked to."""


class IngestChild:
    """Runs one ingest child process and mirrors its counters into ``stage`` (the parent's
    :class:`IngestStage` facade, whose ``ready``/``forwarded`` the web views read)."""

    def __init__(self, settings: Settings, group_id: str, stage: IngestStage) -> None:
        self._settings = settings
        self._group_id = group_id
        self._stage = stage
        self._conn: Connection | None = None
        self._stopping = False
        self._last: dict[str, Any] = {}

    def stop(self) -> None:
        """Ask the child to drain, commit and exit (idempotent)."""
        self._stopping = True
        if self._conn is not None:
            with contextlib.suppress(OSError, ValueError):
                self._conn.send("stop")

    async def run(self) -> None:
        """Start the child and mirror its reports until it exits."""
        context = multiprocessing.get_context("spawn")
        conn, child_conn = context.Pipe(duplex=True)
        root = logging.getLogger()
        renderer = structlog.get_config()["processors"][-1]
        json_logs = isinstance(renderer, structlog.processors.JSONRenderer)
        process = context.Process(
            target=_child_main,
            args=(self._settings, self._group_id, child_conn, os.getpid(), root.level, json_logs),
            name="flexforce-ingest",
            daemon=True,
        )
        process.start()
        child_conn.close()
        self._conn = conn
        if self._stopping:
            self.stop()
        loop = asyncio.get_running_loop()
        reports: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def readable() -> None:
            try:
                while conn.poll():
                    reports.put_nowait(conn.recv())
            except (EOFError, OSError):
                loop.remove_reader(conn.fileno())
                reports.put_nowait(None)

        loop.add_reader(conn.fileno(), readable)
        log.info("ingest.child_started", pid=process.pid)
        try:
            while (report := await reports.get()) is not None:
                self._apply(report)
        finally:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(conn.fileno())
            self.stop()
            code = await _wait_for(process, STOP_GRACE_S)
            self._conn = None
            conn.close()
            self._stage.ready.clear()
        if not self._stopping or code != 0:
            raise IngestChildExited(f"ingest child {process.pid} exited with code {code}")
        log.info("ingest.child_stopped", pid=process.pid)

    def _apply(self, report: dict[str, Any]) -> None:
        """Mirror one cumulative report: counters by difference with the previous one."""
        stage, last = self._stage, self._last
        if report["ready"]:
            stage.ready.set()
        forwarded = report["forwarded"]
        stage.forwarded += forwarded - last.get("forwarded", 0)
        seen_in: Counter[str] = last.get("events_in", Counter())
        for event_type, count in report["events_in"].items():
            if count > seen_in[event_type]:
                EVENTS_IN.labels(event_type).inc(count - seen_in[event_type])
        seen_dead: Counter[tuple[str, str, str]] = last.get("dead_lettered", Counter())
        for labels, count in report["dead_lettered"].items():
            if count > seen_dead[labels]:
                EVENTS_DEAD_LETTERED.labels(*labels).inc(count - seen_dead[labels])
                stage.dead_lettered += count - seen_dead[labels]
        if report["lag"] is not None:
            INGEST_LAG.set(report["lag"])
        INGEST_HELD.set(report["held"])
        if report["first_fetch"] is not None and not stage.stats.first_fetch:
            # the first child's first fetch is the stage's (a restarted child keeps it)
            stage.stats.first_fetch = report["first_fetch"]
            INGEST_FIRST_FETCH.set(report["first_fetch"])
        self._last = {
            **report,
            "events_in": Counter(report["events_in"]),
            "dead_lettered": Counter(report["dead_lettered"]),
        }


async def _wait_for(process: BaseProcess, grace_s: float) -> int | None:
    """The child's exit code; killed after ``grace_s`` (a stuck drain must not hang shutdown)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while process.exitcode is None and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if process.exitcode is None:
        log.warning("ingest.child_killed", pid=process.pid, grace_s=grace_s)
        process.kill()
        await loop.run_in_executor(None, process.join, 5.0)
    return process.exitcode


# ---- the child -------------------------------------------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _child_main(
    settings: Settings,
    group_id: str,
    conn: Connection,
    parent_pid: int,
    log_level: int,
    json_logs: bool,
) -> None:
    _die_with_parent(parent_pid)
    from services.logs import configure_logging

    configure_logging(json=json_logs, level=logging.getLevelName(log_level))
    stage = IngestStage(settings, group_id, child_process=False)
    tune_gc()
    asyncio.run(_child_run(stage, conn))


def _snapshot(stage: IngestStage) -> dict[str, Any]:
    report = asdict(stage.stats)
    report["events_in"] = dict(stage.stats.events_in)
    report["dead_lettered"] = dict(stage.stats.dead_lettered)
    report["ready"] = stage.ready.is_set()
    return report


async def _child_run(stage: IngestStage, conn: Connection) -> None:
    loop = asyncio.get_running_loop()

    def on_message() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone: stop (commits what is acked)
            message = "stop"
        if message == "stop":
            loop.remove_reader(conn.fileno())
            stage.stop()

    loop.add_reader(conn.fileno(), on_message)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stage.stop)

    async def report() -> None:
        sent: dict[str, Any] | None = None
        while True:
            current = _snapshot(stage)
            if current != sent:
                conn.send(current)
                sent = current
            with contextlib.suppress(TimeoutError):
                # at once when the stage becomes ready, else at the reporting period
                waiter = stage.ready.wait() if not current["ready"] else asyncio.sleep(1e9)
                await asyncio.wait_for(waiter, REPORT_EVERY_S)

    reporter = asyncio.create_task(report())
    try:
        await stage.run()
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        with contextlib.suppress(OSError, ValueError):
            conn.send(_snapshot(stage))
        conn.close()
