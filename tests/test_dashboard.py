"""``/dashboard`` in a real browser: a worker on Apache Kafka plans a short bank scenario (the
demo's closed loop drives it), headless Chromium renders the page, the test keeps a screenshot
(under pytest's tmp dir) and checks from the DOM that the charts were drawn with data."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from services.config import ClientProfile, Settings
from services.sim import demo as dm
from services.sim.scenario import data_dir, load_scenario

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package"),
    pytest.mark.skipif(
        not (data_dir() / "anonymous_bank_feb1999_arrivals_15min.csv").exists(),
        reason="bank data not present",
    ),
]


def chromium(*args: str, timeout: float = 60) -> str:
    assert CHROMIUM is not None
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out.stdout


async def test_dashboard_renders_charts_in_headless_chromium(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    scenario = dm.demo_scenario(load_scenario(REPO / "scenarios" / "bank-week.yaml"), 6, 1, 3)
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        client_profile=ClientProfile.KAFKA,
    )
    (tmp_path / "demo").mkdir()
    workers: list[dm.WorkerProcess] = []
    loop = asyncio.create_task(
        dm.run_demo(
            scenario,
            settings,
            tmp_path / "demo",
            console=Console(file=open(tmp_path / "console.txt", "w")),  # noqa: SIM115
            acceleration=1200.0,  # 3 s per round: the worker stays up while we look
            live=False,
            on_worker=workers.append,
        )
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert not loop.done() or loop.exception() is None, loop.exception()
            assert time.monotonic() < deadline, "no plan on /plan within 240 s"
            if workers and (await asyncio.to_thread(workers[0].get, "/plan/bank"))[0] == 200:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(4)  # a few more plans for the cost history
        url = f"http://127.0.0.1:{workers[0].web_port}/dashboard?domain=bank"
        shot = tmp_path / "dashboard.png"
        dom = await asyncio.to_thread(chromium, "--dump-dom", url)
        await asyncio.to_thread(chromium, f"--screenshot={shot}", "--window-size=1200,2400", url)
    finally:
        if not loop.done():
            loop.cancel()
        with contextlib.suppress(BaseException):
            await loop
    charts = dict(re.findall(r'data-chart="([\w-]+)" data-points="(\d+)"', dom))
    charts |= dict(re.findall(r"data-chart='([\w-]+)' data-points='(\d+)'", dom))
    assert {"demand-capacity", "cost", "service-level", "decisions"} <= set(charts), dom[:2000]
    assert int(charts["demand-capacity"]) > 0 and int(charts["service-level"]) > 0
    assert "<path" in dom and "flexforce dashboard" in dom
    assert shot.exists() and shot.stat().st_size > 20_000
    print(f"screenshot: {shot} ({shot.stat().st_size} bytes)")
