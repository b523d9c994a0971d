"""Micro-benchmark of the allocation MIP: model size, build and solve time, gap, per back-end.

Run:  .venv/bin/python bench/allocator_model.py          (S, M, L; HiGHS and SCIP; default limits)
      .venv/bin/python bench/allocator_model.py --sizes M --backends highs scip --limit 30

Why separate from ``bench/allocator.py`` (policies against each other): this one is for working
on the model itself — it prints what changes when the formulation changes (variables, integers,
rows, build time) and how each back-end copes (time, status, gap, objective), plus the optimiser
/ greedy cost ratio and unmet FTE-hours where the greedy baseline is available. Every solve runs
in a forked child with a hard wall-clock cap (time limit × 2 + 15 s) so a back-end that ignores
its time limit cannot hang the run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Running bench/<name>.py puts bench/ first on sys.path; bench/allocator.py would then shadow the
# real ``allocator`` package. Drop that entry before importing.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from allocator.demand import stream_requirements  # noqa: E402
from allocator.domain import Backend, SolverOptions  # noqa: E402
from allocator.errors import SolverFailure  # noqa: E402
from allocator.model.build import build_model  # noqa: E402
from allocator.model.solve import solve  # noqa: E402
from allocator.synthetic import SIZES, SizeName, generate  # noqa: E402

SEED = 1


@dataclass(frozen=True, slots=True)
class Row:
    """One (size, back-end) measurement."""

    size: str
    backend: str
    variables: int
    integers: int
    rows: int
    build_s: float
    solve_s: float | None
    wall_s: float
    status: str
    gap: float | None
    objective: float | None
    unmet_fte_h: float | None


def _child(size: SizeName, backend: Backend, limit: float, gap: float) -> dict[str, Any]:
    problem = generate(size, SEED, binding_contracts=True)
    try:
        plan = solve(
            problem,
            SolverOptions(backend=backend, time_limit_s=limit, relative_gap=gap),
        )
    except SolverFailure as exc:
        return {"error": str(exc).split(" without")[0]}
    st = plan.stats
    return {
        "vars": st.num_variables,
        "ints": st.num_integer_variables,
        "rows": st.num_constraints,
        "build": st.build_time_s,
        "solve": st.solve_time_s,
        "status": st.status,
        "gap": st.gap,
        "obj": st.objective,
        "unmet": plan.unmet_fte_hours,
    }


def measure(size: SizeName, backend: Backend, limit: float, gap: float) -> Row:
    """Solve in a forked child with a hard cap; the instance is regenerated there."""
    problem = generate(size, SEED, binding_contracts=True)
    t0 = time.perf_counter()
    built = build_model(problem, stream_requirements(problem))
    build = time.perf_counter() - t0
    lp = built.lp
    ctx = mp.get_context("fork")
    start = time.perf_counter()
    with ctx.Pool(1) as pool:
        job = pool.apply_async(_child, (size, backend, limit, gap))
        try:
            out: dict[str, Any] = job.get(timeout=2 * limit + 15)
        except mp.TimeoutError:
            pool.terminate()
            out = {"error": "killed at hard cap"}
    wall = time.perf_counter() - start
    if "error" in out:
        return Row(
            size, backend, lp.num_vars, lp.num_integer, lp.num_rows, build, None, wall,
            out["error"], None, None, None,
        )  # fmt: skip
    return Row(
        size, backend, out["vars"], out["ints"], out["rows"], out["build"], out["solve"], wall,
        out["status"], out["gap"], out["obj"], out["unmet"],
    )  # fmt: skip


def greedy_line(size: SizeName) -> str:
    """Greedy cost and unmet FTE-hours, if the baseline policy is available."""
    try:
        from allocator.policies import GreedyPolicy
    except ImportError:  # pragma: no cover - the policies package is optional here
        return "greedy: not available"
    problem = generate(size, SEED, binding_contracts=True)
    plan = GreedyPolicy().plan(problem)
    return f"{plan.costs.total:.0f} {plan.unmet_fte_hours:.1f}"


def main() -> None:
    """Print one markdown row per (size, back-end), then optimiser / greedy."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["S", "M", "L"], choices=list(SIZES))
    ap.add_argument("--backends", nargs="+", default=["highs", "scip"])
    ap.add_argument("--limit", type=float, default=None, help="time limit (default per size)")
    ap.add_argument("--gap", type=float, default=0.01)
    args = ap.parse_args()
    default_limit = {"S": 10.0, "M": 10.0, "L": 60.0}
    print(
        "| size | back-end | vars | integers | rows | build s | solve s | wall s | status | gap "
        "| objective | unmet FTE-h |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    results: list[Row] = []
    for size in args.sizes:
        for backend in args.backends:
            limit = args.limit or default_limit[size]
            r = measure(size, backend, limit, args.gap)
            results.append(r)
            solve_txt = f"{r.solve_s:.2f}" if r.solve_s is not None else "–"
            gap_txt = f"{100 * r.gap:.2f} %" if r.gap is not None else "–"
            obj_txt = f"{r.objective:,.0f}" if r.objective is not None else "–"
            unmet = f"{r.unmet_fte_h:,.1f}" if r.unmet_fte_h is not None else "–"
            print(
                f"| {size} | {backend} | {r.variables:,} | {r.integers:,} | {r.rows:,} "
                f"| {r.build_s:.2f} | {solve_txt} | {r.wall_s:.1f} | {r.status} | {gap_txt} "
                f"| {obj_txt} | {unmet} |",
                flush=True,
            )
    print()
    for size in args.sizes:
        g = greedy_line(size)
        parts = g.split()
        if len(parts) != 2:
            print(f"{size}: {g}")
            continue
        g_cost, g_unmet = float(parts[0]), float(parts[1])
        for r in results:
            if r.size == size and r.objective is not None:
                print(
                    f"{size} {r.backend}: optimiser / greedy = {r.objective / g_cost:.3f} "
                    f"(greedy {g_cost:,.0f}); unmet FTE-h {r.unmet_fte_h:,.1f} vs greedy "
                    f"{g_unmet:,.1f}"
                )


if __name__ == "__main__":
    main()
