"""Solve the allocation MIP and read the answer back into a :class:`~allocator.plan.Plan`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from allocator.changes import line_steps
from allocator.costing import stream_service_rows
from allocator.demand import stream_requirements
from allocator.domain import AllocationProblem, SolverOptions
from allocator.errors import SolverFailure
from allocator.explain import Solution, change_reasons, explain, level_at
from allocator.model.build import Built, Line, build_model, cover_matrix, with_aux
from allocator.model.lp import LinearProgram, LpResult
from allocator.model.warm_lp import WarmLp
from allocator.plan import (
    Assignment,
    CapacityChange,
    CostBreakdown,
    Explanation,
    Plan,
    ProviderLineLevels,
    ReasonCode,
    SolverStats,
    StreamService,
    sorted_assignments,
)

# The MIP stages (model/lagrange.py, neighbourhood.py, local.py) solve through OR-Tools MathOpt
# and are imported where they run: a plan whose rounded LP meets the gap (most live re-plans)
# never loads OR-Tools, which keeps the worker's planner process 21 MB smaller.
if TYPE_CHECKING:
    from allocator.model.lagrange import Decomposition, LagrangeResult

TINY = 1e-9


LAZY_TOL = 1e-6
MAX_LAZY_ROUNDS = 4
ROUND_THRESHOLD = 0.5
ROUND_MIN_SHARE = 2.0
"""The rounding stage's time floor, as a multiple of the LP's time (it may overrun the limit)."""
"""Fractional part above which an LP level rounds up (see :func:`_rounded_bounds`)."""
SEARCH_MIN_S = 1.0
"""Time that must be left after rounding for the level search to run."""
SEARCH_SHARE = 0.4
"""Share of the time left that the level search may take (the full MIP gets the rest)."""
DECOMPOSE_MIN_INTEGERS = 200
"""Below this many integers the full MIP closes the gap faster than the decomposition and
search stages (S, 21 integers: 0.1 s straight to the MIP, 0.4 s through them)."""
LAGRANGE_SHARE = 0.85
"""Share of the time left after the LP that the Lagrangian bound may take (a cap: at M it
finishes in a few seconds; at L it uses it, and more bound beat the block search there, which
saved 0-2k of 5.38M in that time)."""
LAGRANGE_MIN_S = 0.3
"""Time that must be left after the LP for the Lagrangian stage to run."""
LAGRANGE_BLOCK_LIMIT_S = 0.02
"""Floor of one (skill, segment) block MIP's time limit in the Lagrangian bound (above it, an
equal share of the time left). Why a floor and not run-to-end: at L, 10 s on one thread gave
15.6k over the LP with every block run to its end (the most fractional take 0.1-0.4 s), 35k
with a 0.05 s floor and 44k with 0.02 s: a cut-short block keeps most of its gain in its root
bound. The floor is for short limits (M at 2 s: slices of ~4 ms would finish none)."""
LAGRANGE_GAP_SHARE = 0.1
"""The Lagrangian blocks together close to this share of the target gap (absolute)."""
RETIER_LEFT = 1.0
"""The re-tiered rounding (``_retier``) runs when the time left is at least this multiple of
what the LP and the rounding took. Its two LPs start from the warm LP's basis, so it costs
about 0.4x the LP (M: 0.17 s after a 0.42 s LP); cold, it cost as much as LP and rounding
together, and at M with a 2 s limit the factor was 2.5 so that it left time for the bound."""
NEIGHBOURHOOD_SECONDS_PER_VAR = 4e-4
"""Floor of a neighbourhood MIP's time per free variable (M ~0.9 s, L ~4 s; see ``improve``)."""
NEIGHBOURHOOD_SHARE = 0.9
"""Share of the time left that the block neighbourhood search may take (each of its two
stages: single blocks, then coupled pairs). At M with a 2 s limit the single blocks are what
meets the gap, in the last ~0.3 s; the stages after them need seconds to find anything."""
PAIRS_MIN_S = 0.5
"""Time that must be left for the coupled-pairs search (a pair takes 25-70 ms)."""
PAIRS_PER_SWEEP = 400
"""Most promising pairs a pairs sweep visits (neighbourhoods are built only for those)."""
MIP_MIN_S = 1.0
"""Time that must be left for the full MIP after the decomposition stages, when they found
a plan (at M its set-up alone took 0.12-0.14 s, past a 2 s limit, and found nothing)."""
PAIR_ROWS = frozenset({"team_capacity", "provider_max", "provider_min", "engaged"})
"""Rows across skills whose binding (non-zero dual) instances make pairs of (skill, segment)
blocks for the pair search: in-house time and a provider's engagement shared by two skills."""
DEFINITIONS = frozenset({"outsourced_total"})
"""Lazy rows that only define sum variables: never "broken", added with the rows using them."""


@dataclass(slots=True)
class Outcome:
    """Best plan values found, the bound proven, and how they were found."""

    values: NDArray[np.float64]
    objective: float
    bound: float
    status: str
    solve_time_s: float
    stages: list[str]
    rows: list[int]
    """Rows in the final model (every non-lazy row and the lazy rows that were needed)."""
    duals: NDArray[np.float64] | None = None
    """Duals of the final rows with every integer fixed at the plan (the shadow prices), when
    asked for (``SolverOptions.compute_marginals``) and that LP solved to optimality."""


def _integral(built: Built, values: NDArray[np.float64]) -> bool:
    """True when every integer variable of the LP solution is integral (then it is optimal)."""
    ints = np.asarray(built.lp.integer, dtype=bool)
    x = values[ints]
    return bool(np.all(np.abs(x - np.round(x)) < 1e-6))


def _round_at(x: float, threshold: float) -> int:
    """``x`` rounded up when its fractional part exceeds ``threshold``, else down."""
    whole = math.floor(x + 1e-6)
    return whole + (1 if x - whole > threshold + 1e-9 else 0)


def _rounded_bounds(
    built: Built, relaxed: NDArray[np.float64], threshold: float = ROUND_THRESHOLD
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Levels rounded from the LP and fixed, except inside lead-time/notice windows.

    Levels round to the nearest block (``threshold`` 0.5), not up: a level rounded down only
    leaves some cover short, which the model prices as SLA shortfall, so the rounded MIP is
    always feasible, and on the M benchmark nearest rounding gave a plan 1.8 % cheaper than
    rounding up (1,132k vs 1,153k; the best known plan is 1,127k). A provider with a minimum
    whose rounded total is positive but below it is lifted to the minimum when the LP used at
    least half of it, else released (when its bounds allow); rounded totals above the contract
    maximum are cut back block by block. Window levels and all binaries stay free (their rows
    tie them to neighbours), so the back-end's presolve settles them in a tiny search.
    """
    lp = built.lp
    lb = np.asarray(lp.lb, dtype=np.float64)
    ub = np.asarray(lp.ub, dtype=np.float64)
    req = built.problem.request
    by_provider: dict[int, list[Line]] = {}
    for line in built.lines:
        by_provider.setdefault(line.provider, []).append(line)
    for j, lines in sorted(by_provider.items()):
        c = built.problem.providers[j].contract
        window = max(
            req.hours_to_periods(c.ramp_up_hours), req.hours_to_periods(c.ramp_down_notice_hours)
        )
        for start, _end in built.segments.get(j, ()):
            if start < window:
                continue
            vs = [(ln, ln.n[start]) for ln in lines]
            free = [(ln, v) for ln, v in vs if v is not None]
            if not free:
                continue
            n: dict[int, float] = {
                v: min(lp.ub[v], max(lp.lb[v], _round_at(relaxed[v], threshold))) for _, v in free
            }
            const = sum(ln.fixed[start] for ln, v in vs if v is None)
            lp_total = sum(relaxed[v] * ln.block for ln, v in free) + const

            def total() -> float:
                return float(sum(n[v] * ln.block for ln, v in free) + const)  # noqa: B023

            if c.min_fte > 0 and 1e-9 < total() < c.min_fte - 1e-9:
                if lp_total >= c.min_fte / 2:
                    _ln, v = max(free, key=lambda lv: relaxed[lv[1]])
                    while total() < c.min_fte - 1e-9 and n[v] < lp.ub[v]:
                        n[v] += 1
                else:
                    for _, v in free:
                        n[v] = lp.lb[v]
            for _ln, v in sorted(free, key=lambda lv: relaxed[lv[1]] - math.floor(relaxed[lv[1]])):
                while total() > c.max_fte + 1e-9 and n[v] > lp.lb[v]:
                    n[v] -= 1
            for _, v in free:
                lb[v] = ub[v] = n[v]
    return lb, ub


def _all_fixed(
    built: Built,
    relaxed: NDArray[np.float64],
    lb: NDArray[np.float64],
    ub: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Every integer fixed: window levels rounded along their step rows, switches implied.

    :func:`_rounded_bounds` leaves the window levels and the binaries to a MIP; that MIP's
    root cuts took 7 s at L (0.8 s at M) and it stops at the target gap, so its plan may be
    up to that gap worse than the best plan for the same levels. With every integer fixed the
    rest is an LP: exact for these levels and ~5× faster. Window levels are rounded in time
    order, each to the nearest block the step rows allow given the level before it (so they
    stay feasible); a tier is on when the level reaches its start, a provider engaged when its
    total is positive. A combination the rows refuse (e.g. a total under the minimum) makes
    the LP infeasible and the caller falls back to the MIP.
    """
    lp = built.lp
    lb, ub = lb.copy(), ub.copy()
    by_provider: dict[int, list[tuple[int, Line]]] = {}
    for k, line in enumerate(built.lines):
        by_provider.setdefault(line.provider, []).append((k, line))
    for j, lines in sorted(by_provider.items()):
        contract = built.problem.providers[j].contract
        for start, _end in built.segments.get(j, ()):
            free: dict[int, tuple[int, int]] = {}
            const = 0.0
            for k, line in lines:
                v = line.n[start]
                if v is None:
                    const += line.fixed[start]
                    continue
                lo, hi = float(lb[v]), float(ub[v])
                for side in ("up", "down"):
                    r = built.window_rows.get((k, side, start))
                    if r is not None:
                        lo, hi = _narrowed(lp, r, v, lb, lo, hi)
                free[v] = (math.ceil(lo - 1e-9), math.floor(hi + 1e-9))
            blocks = {v: line.block for _k, line in lines if (v := line.n[start]) is not None}
            for v, n in _repaired(free, blocks, relaxed, const, contract.min_fte, contract.max_fte):
                lb[v] = ub[v] = n
    for var, value in _switch_values(built, lb).items():
        lb[var] = ub[var] = value
    return lb, ub


def _repaired(
    free: dict[int, tuple[int, int]],
    blocks: dict[int, float],
    relaxed: NDArray[np.float64],
    const: float,
    min_fte: float,
    max_fte: float,
) -> list[tuple[int, int]]:
    """Block counts for one provider segment: nearest in range, total within min/max or 0.

    Mirrors :func:`_rounded_bounds`: a total under the minimum is lifted (largest LP level
    first) when the LP used at least half the minimum, else dropped to the lowest counts
    allowed — and the other way round when the first way cannot leave the minimum's gap (a
    window may forbid the drop: notice holds a level that a rejected request keeps from
    rising); a total above the maximum is cut back (smallest fractional part first).
    """
    n = {v: min(hi, max(lo, round(float(relaxed[v])))) for v, (lo, hi) in free.items()}

    def total(counts: dict[int, int]) -> float:
        return const + sum(counts[v] * blocks[v] for v in counts)

    def short(counts: dict[int, int]) -> bool:
        return min_fte > 0 and 1e-9 < total(counts) < min_fte - 1e-9

    def lifted() -> dict[int, int]:
        out = dict(n)
        for v in sorted(out, key=lambda u: -relaxed[u]):
            while short(out) and out[v] < free[v][1]:
                out[v] += 1
        return out

    def dropped() -> dict[int, int]:
        return {v: free[v][0] for v in n}

    if short(n):
        lp_total = const + sum(float(relaxed[v]) * blocks[v] for v in n)
        tries = [lifted(), dropped()] if lp_total >= min_fte / 2 else [dropped(), lifted()]
        n = next((c for c in tries if not short(c)), tries[0])
    for v in sorted(n, key=lambda u: relaxed[u] - math.floor(relaxed[u])):
        while total(n) > max_fte + 1e-9 and n[v] > free[v][0]:
            n[v] -= 1
    return sorted(n.items())


def _narrowed(
    lp: LinearProgram, row: int, v: int, fixed: NDArray[np.float64], lo: float, hi: float
) -> tuple[float, float]:
    """``[lo, hi]`` for ``v`` cut by ``row``, every other variable of it at ``fixed``."""
    a = 0.0
    rest = 0.0
    for u, c in zip(lp.row_idx[row], lp.row_coef[row], strict=True):
        if u == v:
            a += c
        else:
            rest += c * float(fixed[u])
    if abs(a) < 1e-12:
        return lo, hi
    r_lo, r_hi = (lp.row_lo[row] - rest) / a, (lp.row_hi[row] - rest) / a
    if a < 0:
        r_lo, r_hi = r_hi, r_lo
    return max(lo, r_lo), min(hi, r_hi)


def _switch_values(built: Built, n: NDArray[np.float64]) -> dict[int, float]:
    """Tier-switch and engagement values implied by the block counts ``n``."""
    out: dict[int, float] = {}

    def level(line: Line, start: int) -> float:
        v = line.n[start]
        return line.fixed[start] if v is None else line.block * round(float(n[v]))

    for line in built.lines:
        for s, (start, _end) in enumerate(line.segments):
            lv = level(line, start)
            for k, z in enumerate(line.tier_on[s], start=1):
                out[z] = 1.0 if lv >= line.rate.tiers[k].from_fte - 1e-9 else 0.0
    for (j, start), e in built.engaged.items():
        total = sum(level(ln, start) for ln in built.lines if ln.provider == j)
        out[e] = 1.0 if total > 1e-9 else 0.0
    return out


def optimise(built: Built, opts: SolverOptions) -> Outcome:
    """LP → rounded plan → Lagrangian bound → block and pair search → level search → full MIP.

    Why this order: the LP relaxation is cheap and its bound is valid; rounding its levels
    and fixing them leaves a tiny MIP, so a plan exists within about a second at M (HiGHS on
    its own spends its budget in root cut rounds with only a feasibility-jump incumbent 18×
    worse) — a plan first, whatever the limit. The LP bound is ~2 % under the optimum at M, so
    no plan could be proven within 1 % from it: the Lagrangian bound over (skill, segment)
    blocks (``model/lagrange.py``; with threads to spare, beside the re-tiering) lifts it most
    of the way. The block neighbourhood search (``model/neighbourhood.py``) then re-optimises
    the plan block by block where the Lagrangian prices say the gap is, then pairs of blocks
    that a binding row couples; the ±1 level search polishes, and the full MIP, hinted with
    the best plan, gets what is left. Each stage is skipped once the gap is met. (A RENS
    sub-MIP was measured and dropped: at M and L it never beat the rounded plan; the blocks'
    own Lagrangian levels as a plan were worse than the rounding.) Lazy rows (dense horizon
    rows) join the model only when a solution breaks them, and then the round repeats; a
    solution that satisfies them is feasible for the full model, and bounds from fewer rows
    are valid bounds for it.
    """
    lp = built.lp
    fixed = fixed_cost(built)
    start = time.perf_counter()
    deadline = start + opts.time_limit_s
    warm = WarmLp(lp)
    rows = [r for r in range(lp.num_rows) if not lp.lazy[r]]
    waiting = [r for r in range(lp.num_rows) if lp.lazy[r]]
    stages: list[str] = []
    best: LpResult | None = None
    bound = -math.inf

    def left() -> float:
        return max(0.05, deadline - time.perf_counter())

    def mip(**kw: object) -> LpResult:
        from allocator.model import mathopt

        kw.setdefault("relative_gap", opts.relative_gap)
        return mathopt.solve(
            lp,
            opts.backend,
            rows,
            threads=opts.threads,
            seed=opts.seed,
            **kw,  # type: ignore[arg-type]
        )

    def broken(values: NDArray[np.float64]) -> list[int]:
        checked = [r for r in waiting if lp.row_name[r] not in DEFINITIONS]
        return lp.violated(with_aux(built, values), checked, LAZY_TOL)

    for _ in range(MAX_LAZY_ROUNDS):
        best, bound = None, -math.inf
        relaxed = warm.solve(rows, time_limit_s=left())
        stages.append(_stage("lp", relaxed))
        if relaxed.has_solution:
            cut = broken(relaxed.values)
            if cut:
                _activate(lp, rows, waiting, cut)
                continue
            if relaxed.status == "optimal":
                bound = relaxed.objective
            if _integral(built, relaxed.values) and relaxed.status == "optimal":
                best = relaxed
            else:
                rlb, rub = _rounded_bounds(built, relaxed.values)
                # A plan beats no plan: when the LP used most of a short limit, the rounding
                # still gets ROUND_MIN_SHARE × the LP's time (measured: M at a 2 s limit on a
                # loaded machine left 0.4 s, too little to finish, and no plan came back).
                round_limit = max(left(), ROUND_MIN_SHARE * relaxed.wall_time_s)
                flb, fub = _all_fixed(built, relaxed.values, rlb, rub)
                rounded = warm.solve(rows, time_limit_s=round_limit, lb=flb, ub=fub)
                stages.append(_stage("round", rounded))
                if not rounded.has_solution:
                    rounded = mip(time_limit_s=max(left(), round_limit), lb=rlb, ub=rub)
                    stages.append(_stage("round_mip", rounded))
                big = lp.num_integer >= DECOMPOSE_MIN_INTEGERS
                far = not rounded.has_solution or (
                    _gap(rounded.objective, bound, fixed) > opts.relative_gap
                )
                # The (skill, segment) blocks, for the bound and the block search.
                dec: Decomposition | None = None
                if big and far:
                    from allocator.model.lagrange import BOUND_LINK_ROWS, decompose

                    dec = decompose(lp, rows, BOUND_LINK_ROWS)
                lag: LagrangeResult | None = None
                with ThreadPoolExecutor(max_workers=1) as side:
                    # The bound's blocks need only the LP: with threads to spare they run
                    # while the re-tiering's LPs (one core, the warm HiGHS instance) do, not
                    # after them (M at 2 s: the plan met the gap 0.1-0.2 s sooner).
                    pending: Future[tuple[float, str, LagrangeResult]] | None = None
                    bounds = relaxed.status == "optimal"
                    if dec is not None and bounds and opts.threads > 1 and left() >= LAGRANGE_MIN_S:
                        pending = side.submit(_lagrange, built, dec, relaxed, opts, left(), bound)
                    spent = relaxed.wall_time_s + rounded.wall_time_s
                    if big and far and rounded.has_solution and left() >= RETIER_LEFT * spent:
                        again = _retier(built, warm, rows, rounded, left())
                        stages.append(again[3])
                        if again[0] is not None and again[0].objective < rounded.objective:
                            rounded, rlb, rub = again[0], again[1], again[2]
                    sequential = opts.threads == 1 and left() >= LAGRANGE_MIN_S
                    if dec is not None and bounds and sequential:
                        pending = side.submit(_lagrange, built, dec, relaxed, opts, left(), bound)
                    if pending is not None:
                        bound, line, lag = pending.result()
                        stages.append(line)
                if rounded.has_solution:
                    best = rounded
                    if dec is not None and _gap(best.objective, bound, fixed) > opts.relative_gap:
                        target = _target(bound, fixed, opts.relative_gap)
                        best, line = _neighbourhood(built, dec, best, lag, opts, deadline, target)
                        stages.append(line)
                        far = _gap(best.objective, bound, fixed) > opts.relative_gap
                        if far and left() >= PAIRS_MIN_S:
                            from allocator.model.neighbourhood import coupled_pairs

                            pairs = coupled_pairs(lp, dec, relaxed.duals, PAIR_ROWS)
                            best, line = _neighbourhood(
                                built, dec, best, lag, opts, deadline, target, pairs
                            )
                            stages.append(line)
                    searched = None
                    if big and _gap(best.objective, bound, fixed) > opts.relative_gap:
                        searched = _search(built, rlb, rub, best, deadline, mip)
                    if searched is not None:
                        stages.append(searched[1])
                        if searched[0].objective < best.objective:
                            best = searched[0]
        far = best is None or _gap(best.objective, bound, fixed) > opts.relative_gap
        if best is None or (
            far and (lp.num_integer < DECOMPOSE_MIN_INTEGERS or left() >= MIP_MIN_S)
        ):
            hint = best.values if best is not None else None
            # The back-end's gap is relative to its whole objective; scale the target so it
            # means the same share of the cost the plan can change (see _gap).
            share = 1.0
            if best is not None and abs(best.objective) > 1e-9:
                share = max(0.0, min(1.0, abs(best.objective - fixed) / abs(best.objective)))
            full = mip(time_limit_s=left(), hint=hint, relative_gap=opts.relative_gap * share)
            stages.append(_stage("mip", full))
            if full.has_solution and (best is None or full.objective <= best.objective):
                best = full
            if full.has_solution or full.status == "no_solution_found":
                bound = max(bound, full.best_bound)
        if best is None:
            break
        cut = broken(best.values)
        if not cut:
            break
        _activate(lp, rows, waiting, cut)
    elapsed = time.perf_counter() - start
    if best is None or broken(best.values):
        raise SolverFailure(
            f"{opts.backend} found no plan after {elapsed:.2f}s "
            f"(time limit {opts.time_limit_s}s; stages {', '.join(stages)})"
        )
    bound = min(bound, best.objective)
    gap = _gap(best.objective, bound, fixed)
    status = "optimal" if gap <= max(opts.relative_gap, 1e-9) else "feasible"
    values = with_aux(built, best.values)
    duals = _plan_duals(warm, built, rows, values, opts) if opts.compute_marginals else None
    return Outcome(values, best.objective, bound, status, elapsed, stages, rows, duals)


def _plan_duals(
    warm: WarmLp,
    built: Built,
    rows: list[int],
    values: NDArray[np.float64],
    opts: SolverOptions,
) -> NDArray[np.float64] | None:
    """Duals of the LP with every integer fixed at the plan: the shadow prices it explains.

    From the warm LP, usually a few pivots (none when the plan is the rounded LP's)."""
    ints = np.asarray(built.lp.integer, dtype=bool)
    lb = np.asarray(built.lp.lb, dtype=np.float64)
    ub = np.asarray(built.lp.ub, dtype=np.float64)
    lb[ints] = ub[ints] = np.round(values[ints])
    res = warm.solve(rows, time_limit_s=opts.time_limit_s, lb=lb, ub=ub)
    return res.duals if res.status == "optimal" else None


def _retier(
    built: Built, warm: WarmLp, rows: list[int], rounded: LpResult, limit: float
) -> tuple[LpResult | None, NDArray[np.float64], NDArray[np.float64], str]:
    """The rounded plan's tier switches fixed, the LP again, and its levels rounded again.

    Why: the LP prices a discounted line along the chord of its tiered cost over the level's
    whole range (the open last tier's big-M is the line's upper bound, far above the levels
    plans use), so its levels are placed as if every line earned part of its discount, and
    rounding them keeps that misplacement. With the switches fixed each line's price is exact
    and the LP re-places the levels; rounding those gave M 1,143k → 1,141k and L 5,390k →
    5,380k for one LP and one fixed LP. (Fixing engagement as well was no better; a second
    round changed no switch.) Returns the new plan (None when the LP failed), its rounded
    bounds and a stage line.
    """
    lp = built.lp
    t0 = time.perf_counter()
    lb = np.asarray(lp.lb, dtype=np.float64)
    ub = np.asarray(lp.ub, dtype=np.float64)
    zs = [z for line in built.lines for seg in line.tier_on for z in seg]
    if not zs:
        return None, lb, ub, "retier:no tier switches"
    lb[zs] = ub[zs] = np.round(rounded.values[zs])
    relaxed = warm.solve(rows, time_limit_s=limit, lb=lb, ub=ub)
    rlb, rub = lb, ub
    plan: LpResult | None = None
    if relaxed.status == "optimal":
        rlb, rub = _rounded_bounds(built, relaxed.values)
        flb, fub = _all_fixed(built, relaxed.values, rlb, rub)
        res = warm.solve(rows, time_limit_s=max(0.05, limit - relaxed.wall_time_s), lb=flb, ub=fub)
        plan = res if res.status == "optimal" else None
    obj = f"{plan.objective:,.0f}" if plan is not None else "-"
    line = f"retier:{relaxed.status}:{relaxed.objective:,.0f}:{obj}:{time.perf_counter() - t0:.2f}s"
    return plan, rlb, rub, line


def _search(
    built: Built,
    rlb: NDArray[np.float64],
    rub: NDArray[np.float64],
    rounded: LpResult,
    deadline: float,
    mip: Callable[..., LpResult],
) -> tuple[LpResult, str] | None:
    """Local search on the rounded levels, then the rounded MIP again at the new levels.

    Runs only when at least ``SEARCH_MIN_S`` is left, and takes at most ``SEARCH_SHARE`` of
    it, so the full MIP still gets time to improve the bound. Returns the re-solved plan and a
    stage line, or None when the search moved nothing.
    """
    left = deadline - time.perf_counter()
    if left < SEARCH_MIN_S:
        return None
    t0 = time.perf_counter()
    from allocator.model.local import LevelSearch, window_levels

    search = LevelSearch(built)
    frozen = window_levels(built, rlb, rub)
    levels, saved, moves = search.improve(
        rounded.values, frozen, time.perf_counter() + SEARCH_SHARE * left
    )
    t_search = time.perf_counter() - t0
    if moves == 0:
        return None
    lb, ub = rlb.copy(), rub.copy()
    for v in sorted(search.level_vars):
        if not frozen[v]:
            lb[v] = ub[v] = levels[v]
    res = mip(time_limit_s=max(0.05, deadline - time.perf_counter()), lb=lb, ub=ub)
    obj = f"{res.objective:,.0f}" if res.has_solution else "-"
    line = (
        f"search:{moves} moves,-{saved:,.0f}:{t_search:.2f}s:"
        f"{res.status}:{obj}:{res.wall_time_s:.2f}s"
    )
    return (res, line) if res.has_solution else None


def _neighbourhood(
    built: Built,
    dec: Decomposition,
    best: LpResult,
    lag: LagrangeResult | None,
    opts: SolverOptions,
    deadline: float,
    target: float,
    pairs: list[tuple[int, int]] | None = None,
) -> tuple[LpResult, str]:
    """Block neighbourhood search (``model/neighbourhood.py``) from ``best``: single blocks,
    or the ``pairs`` of blocks a binding row couples.

    Takes ``NEIGHBOURHOOD_SHARE`` of the time left and stops once the plan costs at most
    ``target`` (the gap is met); sweeps stop when one saves less than the blocks' tolerance.
    With the Lagrangian result, blocks are visited in order of how far their priced cost is
    above their bound.
    """
    share = deadline - time.perf_counter()
    fixed = fixed_cost(built)
    gap = max(opts.relative_gap, 1e-4) * LAGRANGE_GAP_SHARE * abs(best.objective - fixed)
    from allocator.model.neighbourhood import improve

    res = improve(
        built.lp,
        dec,
        best.values,
        backend=opts.backend,
        deadline=time.perf_counter() + NEIGHBOURHOOD_SHARE * share,
        absolute_gap=gap / max(1, len(dec.blocks)),
        threads=opts.threads,
        seed=opts.seed,
        prices=lag.prices if lag is not None else None,
        block_bounds=lag.block_bounds if lag is not None else None,
        seconds_per_var=NEIGHBOURHOOD_SECONDS_PER_VAR,
        target=target,
        unions=pairs,
        max_visits=None if pairs is None else PAIRS_PER_SWEEP,
    )
    objective = best.objective - res.saved
    name = "blocks" if pairs is None else f"pairs({len(pairs)})"
    line = (
        f"{name}:{res.improved}/{res.solved} moves,{res.sweeps} sweeps,-{res.saved:,.0f}:"
        f"{objective:,.0f}:{res.wall_time_s:.2f}s"
    )
    if res.saved <= 0:
        return best, line
    values = res.values
    return (
        LpResult(
            status="feasible",
            has_solution=True,
            values=values,
            duals=best.duals,
            objective=built.lp.objective_at(values),
            best_bound=best.best_bound,
            wall_time_s=best.wall_time_s + res.wall_time_s,
        ),
        line,
    )


def _lagrange(
    built: Built,
    dec: Decomposition,
    relaxed: LpResult,
    opts: SolverOptions,
    left: float,
    bound: float,
) -> tuple[float, str, LagrangeResult]:
    """The Lagrangian bound at the LP's duals (``model/lagrange.py``) over the (skill,
    segment) blocks ``dec`` (``BOUND_LINK_ROWS`` dualised), cheapest first, each block
    MIP given an equal share of the time left and at least ``LAGRANGE_BLOCK_LIMIT_S``.

    Takes up to ``LAGRANGE_SHARE`` of the time left (it stops when every block is done: M
    ~0.8 s on 2 threads); the blocks together close to ``LAGRANGE_GAP_SHARE`` of the target
    gap, so the bound is not chased past what the target needs. (The blocks' own integer
    levels were tried as a plan and were worse than the rounded LP: M 1,148k vs 1,143k with
    every block closed, far worse when blocks stop early.)
    """
    fixed = fixed_cost(built)
    gap = max(opts.relative_gap, 1e-4) * LAGRANGE_GAP_SHARE * abs(relaxed.objective - fixed)
    from allocator.model.lagrange import lagrangian_bound

    lag = lagrangian_bound(
        built.lp,
        dec,
        relaxed,
        backend=opts.backend,
        deadline=time.perf_counter() + LAGRANGE_SHARE * left,
        absolute_gap=gap,
        threads=opts.threads,
        seed=opts.seed,
        block_limit_s=LAGRANGE_BLOCK_LIMIT_S,
    )
    line = (
        f"lagrange:{lag.closed}/{lag.blocks} blocks closed:{lag.bound:,.0f}:{lag.wall_time_s:.2f}s"
    )
    return max(bound, lag.bound), line, lag


def _stage(name: str, res: LpResult) -> str:
    """One line of the solve log: stage, status, objective, time."""
    obj = f"{res.objective:,.0f}" if res.has_solution else "-"
    return f"{name}:{res.status}:{obj}:{res.wall_time_s:.2f}s"


def fixed_cost(built: Built) -> float:
    """The part of every plan's cost no decision changes: the paid roster (rostered mode)."""
    return built.const_costs.get("internal", 0.0)


def _target(bound: float, fixed: float, relative_gap: float) -> float:
    """The highest plan cost that :func:`_gap` calls within ``relative_gap`` of ``bound``."""
    return (bound - relative_gap * fixed) / (1.0 - relative_gap)


def _gap(objective: float, bound: float, fixed: float = 0.0) -> float:
    """Relative gap of the cost the plan can change: ``(obj − bound) / |obj − fixed|``.

    Why not of the whole objective: with the roster paid whatever the plan does (M: 1.74M of a
    1.9M objective), a gap over the whole cost would call a plan 10 % off on everything it
    decides "within 1 %".
    """
    if not math.isfinite(bound):
        return math.inf
    return max(0.0, objective - bound) / max(abs(objective - fixed), 1e-9)


def _activate(lp: LinearProgram, rows: list[int], waiting: list[int], broken: list[int]) -> None:
    """Move violated lazy rows (and the definitions they rest on) into the model."""
    names = {lp.row_name[r] for r in broken}
    add = set(broken)
    if "concentration_cap" in names:
        add |= {r for r in waiting if lp.row_name[r] == "outsourced_total"}
    rows.extend(sorted(add))
    rows.sort()
    waiting[:] = [r for r in waiting if r not in add]


def solve(problem: AllocationProblem, options: SolverOptions | None = None) -> Plan:
    """Optimal (to ``options.relative_gap``) plan for ``problem``.

    Shortfalls never make the model infeasible: they are priced (SLA penalty, unmet work,
    budget overrun) and named in ``plan.explanation.relaxations``. A time limit returns the best
    plan found with its gap (the rounding stage may overrun a limit the LP relaxation nearly
    used up, by at most twice the LP's time, so that a plan comes back); no plan at all raises
    :class:`SolverFailure`. The ``cp_sat``
    back-end is refused (SolverFailure): its conversion of this model's continuous variables
    returned plans far from optimal while claiming optimality, which this package never does.
    """
    opts = options or SolverOptions()
    if opts.backend == "cp_sat":
        raise SolverFailure(
            "cp_sat is not a supported back-end for the allocation MIP: its scaling of "
            "continuous variables gives wrong optima here; use 'highs' or 'scip'"
        )
    start = time.perf_counter()
    reqs = stream_requirements(problem)
    built = build_model(problem, reqs)
    build_time = time.perf_counter() - start
    out = optimise(built, opts)
    values = out.values.copy()
    ints = np.asarray(built.lp.integer, dtype=bool)
    values[ints] = np.round(values[ints])
    duals = out.duals
    sol = Solution(values=values, duals=duals)
    res = LpResult(
        status=out.status,
        has_solution=True,
        values=values,
        duals=duals if duals is not None else np.zeros(built.lp.num_rows),
        objective=out.objective,
        best_bound=out.bound,
        wall_time_s=out.solve_time_s,
    )
    return read_plan(built, sol, res, opts.backend, build_time, tuple(out.stages))


def _stats(
    built: Built, res: LpResult, backend: str, build_time: float, stages: tuple[str, ...]
) -> SolverStats:
    obj = res.objective
    bound = min(res.best_bound, obj)
    gap = _gap(obj, bound, fixed_cost(built))
    return SolverStats(
        backend=backend,
        status="optimal" if res.status == "optimal" else "feasible",
        objective=obj,
        best_bound=bound,
        gap=gap,
        solve_time_s=res.wall_time_s,
        build_time_s=build_time,
        num_variables=built.lp.num_vars,
        num_constraints=built.lp.num_rows,
        num_integer_variables=built.lp.num_integer,
        stages=stages,
    )


def _assignments(
    built: Built, v: NDArray[np.float64], cover: NDArray[np.float64]
) -> list[Assignment]:
    p = built.problem
    out: list[Assignment] = []
    for cls in built.classes:
        covers: dict[int, dict[int, float]] = {}
        for i in cls.streams:
            for t in np.flatnonzero(cover[i] > TINY).tolist():
                covers.setdefault(t, {})[i] = float(cover[i, t])
        for (j, t), var in sorted(cls.x.items()):
            _split(out, covers.get(t, {}), float(v[var]), t, p.teams[j].id, "team", p)
        for (j, t), var in sorted(cls.y.items()):
            _split(out, covers.get(t, {}), float(v[var]), t, p.providers[j].id, "provider", p)
    return out


def _split(
    out: list[Assignment],
    covers: dict[int, float],
    amount: float,
    t: int,
    source: str,
    kind: str,
    p: AllocationProblem,
) -> None:
    total = sum(covers.values())
    if amount <= TINY or total <= TINY:
        return
    for i, c in sorted(covers.items()):
        fte = amount * c / total
        if fte > TINY:
            out.append(Assignment(t, p.streams[i].id, source, kind, fte))  # type: ignore[arg-type]


def _costs(built: Built, v: NDArray[np.float64]) -> CostBreakdown:
    def fam(name: str) -> float:
        terms = built.cost_vars[name]
        return built.const_costs[name] + sum(c * float(v[j]) for j, c in terms.items())

    over = float(v[built.overrun]) if built.overrun is not None else 0.0
    return CostBreakdown(
        internal=fam("internal"),
        providers=fam("providers"),
        churn=fam("churn"),
        sla_penalty=fam("sla"),
        unmet_penalty=fam("unmet"),
        quality_penalty=fam("quality"),
        budget_overrun=over,
        budget_overrun_penalty=over * built.problem.policy.budget_overrun_penalty,
    )


def _service(built: Built, cover: NDArray[np.float64]) -> list[StreamService]:
    p = built.problem
    out: list[StreamService] = []
    periods = np.arange(p.request.horizon_periods, dtype=np.int64)
    for i, stream in enumerate(p.streams):
        out.extend(stream_service_rows(stream.id, built.reqs[i], cover[i], periods))
    return out


def _levels_and_changes(
    built: Built, sol: Solution, explanation: Explanation
) -> tuple[list[ProviderLineLevels], list[CapacityChange]]:
    p = built.problem
    req = p.request
    levels: list[ProviderLineLevels] = []
    changes: list[CapacityChange] = []
    for k, line in enumerate(built.lines):
        prov = p.providers[line.provider]
        lv = tuple(level_at(line, sol.values, t) for t in range(req.horizon_periods))
        levels.append(ProviderLineLevels(prov.id, line.skill, line.committed, lv))
        up_lead = req.hours_to_periods(prov.contract.ramp_up_hours)
        notice = req.hours_to_periods(prov.contract.ramp_down_notice_hours)
        for step in line_steps(line.committed, line.baseline, lv, up_lead, notice):
            pending = step.pending
            reasons = change_reasons(
                built, sol, k, step.period, step.direction, pending, explanation.binding
            )
            if step.revision and not pending:
                reasons = (ReasonCode.PENDING_REVISED, *reasons)
            changes.append(step.change(prov, line.skill, req, reasons, pending))
    return levels, changes


def read_plan(
    built: Built,
    sol: Solution,
    res: LpResult,
    backend: str,
    build_time: float,
    stages: tuple[str, ...] = (),
) -> Plan:
    """Turn solver values into domain output objects, in canonical (sorted) order."""
    p = built.problem
    cover = cover_matrix(built, sol.values)
    explanation = explain(built, sol, cover)
    levels, changes = _levels_and_changes(built, sol, explanation)
    return Plan(
        policy=f"optimiser:{backend}",
        as_of=p.request.as_of,
        period_minutes=p.request.period_minutes,
        horizon_periods=p.request.horizon_periods,
        assignments=sorted_assignments(_assignments(built, sol.values, cover)),
        provider_levels=tuple(levels),
        changes=tuple(changes),
        costs=_costs(built, sol.values),
        service=tuple(_service(built, cover)),
        stats=_stats(built, res, backend, build_time, stages),
        explanation=explanation,
    )
