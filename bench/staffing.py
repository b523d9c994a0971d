"""Benchmark: vectorised required_agents vs a naive scalar loop (200 queues x 168 hourly periods).

Run:  .venv/bin/python -m bench.staffing   (as a module: bench/allocator.py shadows the package)

The naive baseline is the textbook way: per cell, start at ceil(load) and step agents up one at
a time, recomputing Erlang B from scratch (recursion from 0) at each candidate -- i.e. what a
straightforward port of a calculator does.  The scalar loop is timed on a sample of cells and
scaled up, so the benchmark stays quick; results are checked for equality on that sample.
"""

from __future__ import annotations

import math
import time

import numpy as np

from allocator.staffing import required_agents

QUEUES, PERIODS = 200, 168
INTERVAL_S, TARGET_SL, TARGET_S, MAX_OCC = 3600.0, 0.8, 20.0, 0.85


def naive_required(arrivals: float, aht: float, patience: float | None = None) -> int:
    """Scalar Erlang C requirement (patience ignored: the naive baseline is Erlang C only)."""
    a = arrivals * aht / INTERVAL_S
    if a == 0:
        return 0
    n = max(math.floor(a) + 1, math.ceil(a / MAX_OCC))
    while True:
        b = 1.0
        for k in range(1, n + 1):
            b = a * b / (k + a * b)
        c = n * b / (n - a * (1 - b))
        sl = 1 - c * math.exp(-(n - a) * TARGET_S / aht)
        if sl >= TARGET_SL and a / n <= MAX_OCC:
            return n
        n += 1


def workload(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weekly profile per queue: daily and weekly seasonality, some closed hours (zero)."""
    base = rng.lognormal(mean=math.log(scale), sigma=0.8, size=(QUEUES, 1))
    hours = np.arange(PERIODS)
    daily = np.clip(np.sin((hours % 24 - 6) / 12 * math.pi), 0.0, None)
    weekly = np.where(hours // 24 >= 5, 0.3, 1.0)
    arrivals = np.round(base * daily * weekly * rng.uniform(0.8, 1.2, (QUEUES, PERIODS)))
    aht = rng.uniform(240, 900, (QUEUES, 1)) * np.ones((1, PERIODS))
    return arrivals, aht


def timed(fn: object, repeat: int = 5) -> float:
    assert callable(fn)
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    rng = np.random.default_rng(7)
    print(
        f"required_agents over {QUEUES} x {PERIODS} = {QUEUES * PERIODS} cells, 80/20 SL, occ 0.85"
    )
    for label, scale in (("service desk (median ~30 contacts/h)", 30.0), ("large (~600/h)", 600.0)):
        arrivals, aht = workload(rng, scale)
        load = arrivals * aht / INTERVAL_S
        vec = timed(
            lambda a=arrivals, h=aht: required_agents(a, h, INTERVAL_S, TARGET_SL, TARGET_S)
        )
        res = required_agents(arrivals, aht, INTERVAL_S, TARGET_SL, TARGET_S, MAX_OCC)
        vec_a = timed(
            lambda a=arrivals, h=aht: required_agents(
                a, h, INTERVAL_S, TARGET_SL, TARGET_S, MAX_OCC, patience_s=120.0
            ),
            repeat=2,
        )
        sample = rng.choice(arrivals.size, size=400, replace=False)
        t0 = time.perf_counter()
        naive = [naive_required(arrivals.flat[i], aht.flat[i]) for i in sample]
        naive_s = (time.perf_counter() - t0) * arrivals.size / sample.size
        assert naive == [int(res.flat[i]) for i in sample], "naive and vectorised disagree"
        print(f"\n{label}: max load {load.max():.0f} Erlangs, max agents {res.max()}")
        print(f"  vectorised Erlang C : {vec * 1e3:8.1f} ms")
        print(f"  vectorised Erlang A : {vec_a * 1e3:8.1f} ms   (patience 120 s)")
        print(f"  naive scalar loop   : {naive_s * 1e3:8.1f} ms   (extrapolated from 400 cells)")
        print(f"  speed-up (Erlang C) : {naive_s / vec:8.1f} x")


if __name__ == "__main__":
    main()
