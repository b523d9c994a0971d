"""A bare Faust app that seeks its own stream back from inside the agent, and reports what the
agent saw afterwards (one JSON line on stdout). Run by tests/test_worker_faust_seek.py in a
child process (a Faust worker owns its process: signals, event loop, logging).

    python -m tests.faust_seek_probe BOOTSTRAP TOPIC SEEK_AT SEEK_TO
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from typing import Any

import faust
from faust.types import TP


def main() -> None:
    datadir = tempfile.mkdtemp(prefix="seek-probe-")  # not the caller's working directory
    bootstrap, topic_name, seek_at, seek_to = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:5])
    app = faust.App(
        "seek-probe-" + uuid.uuid4().hex[:8],
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=1,
        datadir=datadir,
    )
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes)
    seen: list[int] = []
    probe: dict[str, Any] = {}

    def report() -> None:
        after = seen[seen.index(seek_at) + 1 :]
        probe.update(first_after=after[:5], redelivered=seek_to in after, last=seen[-1])
        os.write(1, (json.dumps(probe) + "\n").encode())  # Faust redirects sys.stdout
        shutil.rmtree(datadir, ignore_errors=True)
        os._exit(0)

    @app.agent(topic)
    async def agent(stream: Any) -> None:
        async for event in stream.events():
            offset = event.message.offset
            seen.append(offset)
            if offset == seek_at and "sought" not in probe:
                probe["sought"] = time.monotonic()
                await app.consumer.seek_wait({TP(topic_name, 0): seek_to})
                probe["read_offset_after_seek"] = app.consumer._read_offset[TP(topic_name, 0)]  # type: ignore[attr-defined]
            elif "sought" in probe and (
                offset == seek_to or time.monotonic() - probe["sought"] > 8
            ):
                report()

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def give_up() -> None:
        if "sought" in probe and time.monotonic() - probe["sought"] > 10:
            report()

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
