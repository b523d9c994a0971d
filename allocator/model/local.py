"""Local search on provider levels around a plan: ±1 block per line and segment, or release.

Why: the LP-rounded plan is within a few per cent of the optimum, and the full MIP search at M
and L did not improve it within 30 s (HiGHS' own heuristics at any effort found nothing
better). With every level fixed the rest of the model is an LP that splits by period (balance,
team capacity, line capacity and core share rows each touch one period; the dense horizon rows
are lazy and checked by the caller), so the effect of changing one line's level in one segment
is the change of a small LP over that segment's periods, plus the tier price and churn, which
are closed-form. Duals of the segment LP prune moves exactly: the LP value is convex in the
line capacities, so one more block gains at most ``block·Σλ`` and one less costs at least that.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from ortools.math_opt import model_parameters_pb2, model_pb2

from allocator.model.build import Built
from allocator.model.mathopt import run, solver_params

PERIOD_FAMILIES = frozenset({"balance", "team_capacity", "line_capacity", "core_in_house"})
"""Row families that touch one period only (given fixed levels)."""
IMPROVE_TOL = 1e-6
"""Relative improvement a move must bring to be taken."""


@dataclass(slots=True)
class _SubLp:
    """The fixed-level LP of a set of periods, with compact variable ids."""

    cols: NDArray[np.int64]
    rows: list[int]
    level_terms: list[list[tuple[int, float]]]
    """Per row: (level var, coefficient) terms moved to the right-hand side."""
    cap_rows: dict[tuple[int, int], int]
    """(line index, period) → position of its capacity row in ``rows``."""


class LevelSearch:
    """First-improvement search on integer levels with segment LPs (see module doc)."""

    def __init__(self, built: Built) -> None:
        self.built = built
        lp = built.lp
        self.lp = lp
        self.obj = np.asarray(lp.obj, dtype=np.float64)
        period = np.full(lp.num_vars, -1, dtype=np.int64)
        for per_stream in built.cover:
            for t, vs in enumerate(per_stream):
                period[vs] = t
        for cls in built.classes:
            for (_j, t), v in cls.x.items():
                period[v] = t
            for (_j, t), v in cls.y.items():
                period[v] = t
        self.period = period
        self.level_vars: set[int] = {v for ln in built.lines for v in ln.n if v is not None}
        self.rows_at: dict[int, list[int]] = {}
        for r in range(lp.num_rows):
            if lp.lazy[r] or lp.row_name[r] not in PERIOD_FAMILIES:
                continue
            ts = {int(period[v]) for v in lp.row_idx[r] if period[v] >= 0}
            if len(ts) == 1:
                self.rows_at.setdefault(ts.pop(), []).append(r)
        self.subs: dict[tuple[int, int], _SubLp] = {}
        self.cap_line: dict[int, tuple[int, int]] = {}
        for k, ln in enumerate(built.lines):
            for t, cap in enumerate(ln.capacity_rows):
                if cap is not None:
                    self.cap_line[cap] = (k, t)

    def _sub(self, start: int, end: int) -> _SubLp:
        rows = [r for t in range(start, end) for r in self.rows_at.get(t, [])]
        cols = np.flatnonzero((self.period >= start) & (self.period < end))
        terms = [
            [
                (v, c)
                for v, c in zip(self.lp.row_idx[r], self.lp.row_coef[r], strict=True)
                if v in self.level_vars
            ]
            for r in rows
        ]
        caps = {self.cap_line[r]: i for i, r in enumerate(rows) if r in self.cap_line}
        return _SubLp(cols, rows, terms, caps)

    def _solve(
        self, sub: _SubLp, levels: NDArray[np.float64], limit: float
    ) -> tuple[float, NDArray[np.float64]] | None:
        """Objective (period variables only) and row duals of the segment LP, or None."""
        lp = self.lp
        pos = np.full(lp.num_vars, -1, dtype=np.int64)
        pos[sub.cols] = np.arange(len(sub.cols))
        m = model_pb2.ModelProto()
        v = m.variables
        v.ids.extend(range(len(sub.cols)))
        v.lower_bounds.extend(np.asarray(lp.lb)[sub.cols].tolist())
        v.upper_bounds.extend(np.asarray(lp.ub)[sub.cols].tolist())
        v.integers.extend([False] * len(sub.cols))
        obj = self.obj[sub.cols]
        nz = np.flatnonzero(obj)
        m.objective.linear_coefficients.ids.extend(nz.tolist())
        m.objective.linear_coefficients.values.extend(obj[nz].tolist())
        cons = m.linear_constraints
        cons.ids.extend(range(len(sub.rows)))
        rids: list[int] = []
        cids: list[int] = []
        coefs: list[float] = []
        for i, r in enumerate(sub.rows):
            shift = sum(c * levels[lv] for lv, c in sub.level_terms[i])
            cons.lower_bounds.append(lp.row_lo[r] - shift)
            cons.upper_bounds.append(lp.row_hi[r] - shift)
            pairs = sorted(
                (int(pos[c]), k)
                for c, k in zip(lp.row_idx[r], lp.row_coef[r], strict=True)
                if c not in self.level_vars
            )
            for c, k in pairs:
                rids.append(i)
                cids.append(c)
                coefs.append(k)
        mat = m.linear_constraint_matrix
        mat.row_ids.extend(rids)
        mat.column_ids.extend(cids)
        mat.coefficients.extend(coefs)
        res = run(
            m,
            "highs_lp",
            solver_params("highs_lp", limit, 0.0, 1, 0),
            model_parameters_pb2.ModelSolveParametersProto(),
            limit,
            len(sub.cols),
            len(sub.rows),
        )
        if res.status != "optimal":
            return None
        return res.objective, res.duals

    def _level(self, k: int, t: int, lv: NDArray[np.float64]) -> float:
        ln = self.built.lines[k]
        var = ln.n[t]
        return ln.fixed[t] if var is None else float(lv[var]) * ln.block

    def _fixed_cost(self, k: int, start: int, end: int, lv: NDArray[np.float64]) -> float:
        """Tier price of line ``k`` over the segment plus churn at both of its ends."""
        built = self.built
        ln = built.lines[k]
        churn = built.problem.policy.churn_cost_per_fte
        hours = built.problem.request.period_hours * (end - start)
        ask = built.problem.policy.request_cost_per_fte
        cur = self._level(k, start, lv)
        prev = ln.committed if start == 0 else self._level(k, start - 1, lv)
        base = ln.baseline
        before = ln.committed if start == 0 else base[start - 1]
        out = hours * ln.rate.cost_per_hour(cur) + churn * abs(cur - prev)
        out += ask * abs(cur - prev - (base[start] - before))
        if end < built.problem.request.horizon_periods:
            nxt = self._level(k, end, lv)
            out += churn * abs(nxt - cur) + ask * abs(nxt - cur - (base[end] - base[end - 1]))
        return out

    def _engagement_ok(self, j: int, ks: list[int], start: int, lv: NDArray[np.float64]) -> bool:
        c = self.built.problem.providers[j].contract
        tot = sum(self._level(k, start, lv) for k in ks)
        return tot <= 1e-9 or (c.min_fte - 1e-9 <= tot <= c.max_fte + 1e-9)

    def _segment(
        self,
        j: int,
        ks: list[int],
        free: list[int],
        span: tuple[int, int],
        levels: NDArray[np.float64],
        deadline: float,
    ) -> tuple[NDArray[np.float64], float] | None:
        """The first improving move on provider ``j``'s segment ``span``: (levels, saving)."""
        start, end = span
        lp = self.lp
        if span not in self.subs:
            self.subs[span] = self._sub(start, end)
        sub = self.subs[span]
        base = self._solve(sub, levels, max(0.05, deadline - time.perf_counter()))
        if base is None:
            return None
        v0, duals = base
        tol = IMPROVE_TOL * max(1.0, abs(v0))
        cands: list[tuple[float, NDArray[np.float64]]] = []
        for k in free:
            var = self.built.lines[k].n[start]
            assert var is not None
            block = self.built.lines[k].block
            lam = max(
                0.0,
                sum(
                    -float(duals[sub.cap_rows[(k, t)]])
                    for t in range(start, end)
                    if (k, t) in sub.cap_rows
                ),
            )
            for step in (1, -1):
                new = levels[var] + step
                if new < lp.lb[var] - 1e-9 or new > lp.ub[var] + 1e-9:
                    continue
                lv = levels.copy()
                lv[var] = new
                if not self._engagement_ok(j, ks, start, lv):
                    continue
                d_fixed = self._fixed_cost(k, start, end, lv) - self._fixed_cost(
                    k, start, end, levels
                )
                # LP value convex in capacity: +1 block gains ≤ λ·block, −1 loses ≥ λ·block.
                estimate = d_fixed - step * lam * block
                if estimate < -tol:
                    cands.append((estimate, lv))
        lv = levels.copy()
        for k in free:
            var = self.built.lines[k].n[start]
            assert var is not None
            lv[var] = lp.lb[var]
        if not np.array_equal(lv, levels) and self._engagement_ok(j, ks, start, lv):
            cands.append((-math.inf, lv))  # release: no cheap estimate, always try
        for _est, lv in sorted(cands, key=lambda e: e[0]):
            if time.perf_counter() >= deadline:
                break
            got = self._solve(sub, lv, max(0.05, deadline - time.perf_counter()))
            if got is None:
                continue
            d_fixed = sum(
                self._fixed_cost(k, start, end, lv) - self._fixed_cost(k, start, end, levels)
                for k in ks
            )
            delta = got[0] - v0 + d_fixed
            if delta < -tol:
                return lv, -delta
        return None

    def improve(
        self, values: NDArray[np.float64], frozen: NDArray[np.bool_], deadline: float
    ) -> tuple[NDArray[np.float64], float, int]:
        """Better levels than ``values`` (others unchanged), the estimated saving, moves taken.

        ``frozen`` marks level variables the search must not move (window levels, which the
        caller leaves to the MIP). Levels stay within their bounds and every provider's total
        per segment stays 0 or within [min, max]. Passes repeat until one finds nothing or
        the deadline passes.
        """
        built = self.built
        levels = values.copy()
        ints = sorted(self.level_vars)
        levels[ints] = np.round(levels[ints])
        by_provider: dict[int, list[int]] = {}
        for k, ln in enumerate(built.lines):
            by_provider.setdefault(ln.provider, []).append(k)
        saved = 0.0
        moves = 0
        improved = True
        while improved and time.perf_counter() < deadline:
            improved = False
            for j, ks in sorted(by_provider.items()):
                for start, end in built.segments.get(j, ()):
                    if time.perf_counter() >= deadline:
                        break
                    free = [
                        k
                        for k in ks
                        if (v := built.lines[k].n[start]) is not None and not frozen[v]
                    ]
                    if not free:
                        continue
                    found = self._segment(j, ks, free, (start, end), levels, deadline)
                    if found is not None:
                        levels, gain = found
                        saved += gain
                        moves += 1
                        improved = True
        out = values.copy()
        out[ints] = levels[ints]
        return out, saved, moves


def window_levels(
    built: Built, lb: NDArray[np.float64], ub: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Level variables the rounding left free (lead-time/notice windows): not searched."""
    out = np.zeros(built.lp.num_vars, dtype=bool)
    for ln in built.lines:
        for v in ln.n:
            if v is not None and ub[v] - lb[v] > 0.5:
                out[v] = True
    return out
