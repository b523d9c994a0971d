"""Benchmark: the optimiser against the greedy and static baselines, and the MIP back-ends.

Run:  .venv/bin/python bench/allocator.py            (S, M, L; about 5 minutes on 2 cores)
      .venv/bin/python bench/allocator.py --sizes S M --limit-m 20

Instances come from :func:`allocator.synthetic.generate` with ``binding_contracts=True`` (big
blocks, minimums, discount tiers, day-long lead times), seed 1. Per size it prints model build
time, solve time, the gap to the best bound, every policy's cost under the *same* cost function
(:mod:`allocator.costing`), unmet demand, and the checker's violation count per policy (which
must be 0). Then the back-ends side by side on S and M: time to a 1 % gap.

Everything is compared inside one run, as ratios, because the machine is noisy. Each solve runs
in a forked child with a hard wall-clock cap (time limit x 2 + 15 s): some back-ends overrun
their time limit in root cut separation, and the bench must still finish.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# This file is named like the package it measures; running it as a script puts bench/ first on
# sys.path, which would shadow the real ``allocator`` package. Drop that entry before importing.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from allocator.checks import check_plan  # noqa: E402
from allocator.demand import StreamRequirement, stream_requirements  # noqa: E402
from allocator.domain import AllocationProblem, Backend, SolverOptions  # noqa: E402
from allocator.errors import SolverFailure  # noqa: E402
from allocator.model.solve import solve  # noqa: E402
from allocator.plan import Plan  # noqa: E402
from allocator.policies import GreedyPolicy, StaticPolicy  # noqa: E402
from allocator.synthetic import SIZES, SizeName, generate  # noqa: E402

SEED = 1
BACKENDS: tuple[Backend, ...] = ("highs", "scip", "cp_sat")


@dataclass(frozen=True, slots=True)
class Run:
    """One optimiser run: its plan (None when no solution) and timings."""

    backend: str
    plan: Plan | None
    wall_s: float
    error: str = ""


def _solve_child(size: SizeName, backend: Backend, limit: float) -> Plan | str:
    problem = generate(size, SEED, binding_contracts=True)
    try:
        return solve(problem, SolverOptions(backend=backend, time_limit_s=limit))
    except SolverFailure as exc:
        return f"no solution: {exc}"


def run_optimiser(size: SizeName, backend: Backend, limit: float) -> Run:
    """Solve in a forked child with a hard cap; problems are rebuilt there (deterministic)."""
    ctx = mp.get_context("fork")
    start = time.perf_counter()
    with ctx.Pool(1) as pool:
        job = pool.apply_async(_solve_child, (size, backend, limit))
        try:
            out: Any = job.get(timeout=2 * limit + 15)
        except mp.TimeoutError:
            pool.terminate()
            return Run(backend, None, time.perf_counter() - start, "killed at hard cap")
    wall = time.perf_counter() - start
    if isinstance(out, str):
        return Run(backend, None, wall, out.split(" without")[0])
    return Run(backend, out, wall)


def shortfall(problem: AllocationProblem, reqs: tuple[StreamRequirement, ...], plan: Plan) -> float:
    """Contacts answered later than the target (queues) + work hours left undone (projects)."""
    svc = {(s.stream_id, s.period): s for s in plan.service}
    total = 0.0
    for stream, req in zip(problem.streams, reqs, strict=True):
        for t, need in enumerate(req.required_fte):
            if need <= 0:
                continue
            row = svc[(stream.id, t)]
            if stream.kind == "queue":
                total += req.volume[t] * max(0.0, req.target_sl - row.expected_sl)
            else:
                total += row.unmet_fte * problem.request.period_hours
    return total


def fmt(x: float | None, digits: int = 2) -> str:
    """Number or a dash."""
    return "–" if x is None else f"{x:,.{digits}f}"


def main() -> None:
    """Run the benchmark and print markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["S", "M", "L"], choices=list(SIZES))
    ap.add_argument("--limit-s", type=float, default=10.0, help="time limit on S (s)")
    ap.add_argument("--limit-m", type=float, default=12.0, help="time limit on M (s)")
    ap.add_argument("--limit-l", type=float, default=30.0, help="time limit on L (s)")
    ap.add_argument("--compare-on", nargs="*", default=["S", "M"], choices=list(SIZES))
    args = ap.parse_args()
    limits = {"S": args.limit_s, "M": args.limit_m, "L": args.limit_l}
    bench_start = time.perf_counter()

    rows: list[str] = []
    backend_rows: list[str] = []
    for size in args.sizes:
        problem = generate(size, SEED, binding_contracts=True)
        reqs = stream_requirements(problem)
        dims = SIZES[size]
        greedy = GreedyPolicy().plan(problem)
        static = StaticPolicy("peak").plan(problem)
        backends = BACKENDS if size in args.compare_on else ("highs",)
        runs = [run_optimiser(size, b, limits[size]) for b in backends]
        solved = [r for r in runs if r.plan is not None]
        # The per-size row reports the default back-end (HiGHS) when it produced a plan, else
        # the best plan any compared back-end found (named in the row).
        main_run = next((r for r in runs if r.backend == "highs" and r.plan is not None), None)
        if main_run is None and solved:
            main_run = min(solved, key=lambda r: r.plan.costs.total if r.plan else 0.0)
        viol_g = len(check_plan(problem, greedy, reqs))
        viol_s = len(check_plan(problem, static, reqs))
        g_cost = greedy.costs.total
        if main_run is not None and main_run.plan is not None:
            opt = main_run.plan
            viol_o = str(len(check_plan(problem, opt, reqs)))
            st = opt.stats
            rows.append(
                f"| {size} ({dims.streams}×{dims.providers}×{dims.teams}×{dims.periods}) "
                f"| {st.num_variables:,} / {st.num_integer_variables:,} | {st.build_time_s:.2f} "
                f"| {st.solve_time_s:.2f} ({main_run.backend}, {st.status}) | {100 * st.gap:.2f} % "
                f"| {opt.costs.total:,.0f} | {g_cost:,.0f} | {static.costs.total:,.0f} "
                f"| **{opt.costs.total / g_cost:.3f}** "
                f"| {opt.unmet_fte_hours:,.1f} / {greedy.unmet_fte_hours:,.1f} / "
                f"{static.unmet_fte_hours:,.1f} "
                f"| {shortfall(problem, reqs, opt):,.0f} / {shortfall(problem, reqs, greedy):,.0f} "
                f"| {viol_o} / {viol_g} / {viol_s} |"
            )
        else:
            why = "; ".join(f"{r.backend}: {r.error}" for r in runs)
            rows.append(
                f"| {size} ({dims.streams}×{dims.providers}×{dims.teams}×{dims.periods}) | – | – "
                f"| no plan within {limits[size]:.0f} s ({why}) | – | – | {g_cost:,.0f} "
                f"| {static.costs.total:,.0f} | – | – / {greedy.unmet_fte_hours:,.1f} / "
                f"{static.unmet_fte_hours:,.1f} | – / {shortfall(problem, reqs, greedy):,.0f} "
                f"| – / {viol_g} / {viol_s} |"
            )
        if size in args.compare_on:
            times = [
                r.plan.stats.solve_time_s
                for r in runs
                if r.plan is not None and r.plan.stats.gap <= 0.01 + 1e-9
            ]
            fastest = min(times) if times else None
            for r in runs:
                if r.plan is None:
                    backend_rows.append(
                        f"| {size} | {r.backend} | {r.error} | > {limits[size]:.0f} "
                        f"(wall {r.wall_s:.1f}) | – | – | – |"
                    )
                    continue
                s = r.plan.stats
                reached = s.gap <= 0.01 + 1e-9
                t_txt = f"{s.solve_time_s:.2f}" if reached else f"> {limits[size]:.0f}"
                ratio = f"{s.solve_time_s / fastest:.1f}×" if reached and fastest else "–"
                backend_rows.append(
                    f"| {size} | {r.backend} | {s.status} | {t_txt} | {100 * s.gap:.2f} % "
                    f"| {s.objective:,.0f} | {ratio} |"
                )
        print(f"[{size} done at {time.perf_counter() - bench_start:.0f} s]", flush=True)

    print()
    print(
        "| size (streams×providers×teams×periods) | vars / integer | build s | solve s "
        "| gap | optimiser cost | greedy cost | static cost | optimiser / greedy "
        "| unmet FTE-h opt / greedy / static | SLA shortfall opt / greedy "
        "| violations opt / greedy / static |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if backend_rows:
        print()
        print("| size | back-end | status | time to 1 % gap (s) | gap | objective | vs fastest |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(backend_rows))
    print()
    print(
        "SLA shortfall = contacts answered later than target (queues, from expected SL) + "
        "project hours undone. Costs: one cost function (allocator.costing) for every policy. "
        f"Seed {SEED}, binding contracts. Total bench time "
        f"{time.perf_counter() - bench_start:.0f} s."
    )


if __name__ == "__main__":
    main()
