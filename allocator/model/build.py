"""Build the allocation MIP: data in, named variables and constraint families out.

Layout follows OR-Tools' examples: one small function per variable or constraint family, all
indices kept in :class:`Built` so the solution (and the duals) can be read back by name.

Size control (the L instance is 200 streams × 70 sources × 168 periods): streams with the same
skill, the same eligible sources and the same core flag form a *class*; assignment variables exist
per (class, eligible source, period with demand) only, and a class's cover is split back over its
streams proportionally to their cover after the solve, which preserves every constraint (skills,
compliance and the core share hold class-wide, so they hold for each proportional share).
Provider levels, engagement and tier switches are decided once per *level segment* (a block of
``Policy.level_change_hours``, split at window ends and pending changes), which cuts the
integers about 8× at hourly periods; SLA curves are cover pieces (no rows); the dense horizon
rows (vendor concentration, budget) are lazy.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from allocator.demand import Curve, StreamRequirement
from allocator.domain import AllocationProblem, Provider, SkillRate, WorkStream
from allocator.model.lp import INF, LinearProgram

EPS = 1e-7


@dataclass(slots=True)
class StreamClass:
    """Streams that are interchangeable for capacity: same skill, sources and core flag."""

    index: int
    skill: str
    core: bool
    streams: list[int]
    teams: list[int]
    providers: list[int]
    x: dict[tuple[int, int], int] = field(default_factory=dict)
    """(team index, period) → var."""
    y: dict[tuple[int, int], int] = field(default_factory=dict)
    """(provider index, period) → var."""


@dataclass(slots=True)
class Line:
    """One (provider, skill) contract line and its level per period.

    Levels are decided per *segment* (``AllocationProblem.level_segments``): ``n[t]`` is the
    same integer variable for every period of a segment (``level(t) = block * n[t]``), or None
    when the level is the constant ``fixed[t]``. Per-segment decisions (tier fills and switches,
    churn steps) are indexed by segment number.
    """

    provider: int
    skill: str
    rate: SkillRate
    block: float
    committed: float
    baseline: tuple[float, ...]
    segments: tuple[tuple[int, int], ...]
    n: list[int | None]
    fixed: list[float]
    up: list[int | None]
    down: list[int | None]
    fills: list[list[int]]
    tier_on: list[list[int]]
    capacity_rows: list[int | None]

    def terms(self, t: int) -> tuple[list[int], list[float], float]:
        """Level at ``t`` as (vars, coefs, constant)."""
        v = self.n[t]
        if v is None:
            return [], [], self.fixed[t]
        return [v], [self.block], 0.0


@dataclass(slots=True)
class Built:
    """The MIP and every index needed to read it back and explain it."""

    lp: LinearProgram
    problem: AllocationProblem
    reqs: tuple[StreamRequirement, ...]
    classes: list[StreamClass]
    stream_class: list[int]
    lines: list[Line]
    cover: list[list[list[int]]]
    """Stream → period → piece variables whose sum is the cover (empty: no demand)."""
    segments: dict[int, tuple[tuple[int, int], ...]]
    """Provider index → level segments (only providers with modelled lines)."""
    engaged: dict[tuple[int, int], int]
    """(provider, segment start) → engaged binary; provider min/max rows use the same key."""
    team_rows: dict[tuple[int, int], int]
    provider_max_rows: dict[tuple[int, int], int]
    provider_min_rows: dict[tuple[int, int], int]
    core_rows: dict[tuple[int, int], int]
    concentration_rows: dict[int, int]
    window_rows: dict[tuple[int, str, int], int]
    budget_row: int | None
    overrun: int | None
    total_outsourced: int | None
    aux: list[tuple[int, list[int]]]
    """Sum variables defined by lazy rows, in dependency order: (var, summed vars)."""
    offset: float
    const_spend: float
    cost_vars: dict[str, dict[int, float]]
    """Cost family → {var: coefficient}: internal, providers, churn, quality, sla, unmet."""
    const_costs: dict[str, float]


def with_aux(built: Built, values: NDArray[np.float64]) -> NDArray[np.float64]:
    """``values`` with the lazily defined sum variables set from what they sum.

    A solve without the lazy rows leaves those variables at arbitrary values; checking the lazy
    rows (and reading costs) needs them consistent with the assignments.
    """
    out = values.copy()
    for var, parts in built.aux:
        out[var] = float(out[parts].sum()) if parts else 0.0
    return out


def cover_matrix(built: Built, values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cover (productive FTE: the sum of its pieces) of every stream (rows) in every period
    (columns), summed in one pass.

    Reading a plan asks for every (stream, period) cover two or three times; one small sum
    each was 0.1-0.15 s of a live M re-plan (25,000 of them).
    """
    horizon = built.problem.request.horizon_periods
    cells: list[int] = []
    pieces: list[int] = []
    for i, per_period in enumerate(built.cover):
        for t, vs in enumerate(per_period):
            if vs:
                cells.extend([i * horizon + t] * len(vs))
                pieces.extend(vs)
    total = np.bincount(
        np.asarray(cells, dtype=np.int64),
        weights=values[np.asarray(pieces, dtype=np.int64)],
        minlength=len(built.cover) * horizon,
    )
    return np.asarray(total, dtype=np.float64).reshape(len(built.cover), horizon)


def eligible_teams(problem: AllocationProblem, stream: WorkStream) -> list[int]:
    """Indices of teams that may work ``stream``."""
    return [j for j, team in enumerate(problem.teams) if team.can_take(stream)]


def eligible_providers(problem: AllocationProblem, stream: WorkStream) -> list[int]:
    """Indices of active providers that may work ``stream``."""
    return [j for j, p in enumerate(problem.providers) if p.can_take(stream)]


def _classes(problem: AllocationProblem) -> tuple[list[StreamClass], list[int]]:
    by_key: dict[tuple[str, bool, tuple[int, ...], tuple[int, ...]], StreamClass] = {}
    stream_class: list[int] = []
    for i, stream in enumerate(problem.streams):
        teams = eligible_teams(problem, stream)
        provs = eligible_providers(problem, stream)
        key = (stream.skill, stream.core, tuple(teams), tuple(provs))
        if key not in by_key:
            by_key[key] = StreamClass(len(by_key), stream.skill, stream.core, [], teams, provs)
        by_key[key].streams.append(i)
        stream_class.append(by_key[key].index)
    return list(by_key.values()), stream_class


def _capped_pieces(
    curve: Curve, target: float, required: float
) -> tuple[float, list[tuple[float, float]]]:
    """``min(target, SL(c))`` on ``[0, required]`` as (value at 0, [(width, slope), ...]).

    Slopes are non-increasing (SL is concave and the cap only flattens the tail); a last flat
    piece keeps the cover's range ``[0, required]`` whole.
    """
    start = min(target, curve.ys[0])
    pieces: list[tuple[float, float]] = []
    x_end = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(zip(curve.xs, curve.ys, strict=True)):
        if y0 >= target - EPS:
            break
        if x1 - x0 <= EPS:
            continue
        slope = (y1 - y0) / (x1 - x0)
        if y1 > target:
            x1 = x0 + (target - y0) / slope
        pieces.append((x1 - x0, slope))
        x_end = x1
        if y1 >= target:
            break
    if required - x_end > EPS:
        pieces.append((required - x_end, 0.0))
    return start, pieces


def _split_at(pieces: list[tuple[float, float]], need: float) -> list[tuple[float, float, bool]]:
    """``pieces`` as (width, slope, below ``need``), the piece straddling ``need`` cut in two.

    Cover below the requirement also earns the understaffing price; since those pieces come
    first, slopes stay non-increasing and the LP still fills the pieces in order.
    """
    out: list[tuple[float, float, bool]] = []
    x = 0.0
    for width, slope in pieces:
        below = min(width, max(0.0, need - x))
        if below > EPS:
            out.append((below, slope, True))
        if width - below > EPS:
            out.append((width - below, slope, False))
        x += width
    return out


def _is_convex(rate: SkillRate) -> bool:
    rates = [t.rate_per_hour for t in rate.tiers]
    return all(b >= a for a, b in itertools.pairwise(rates))


class _Builder:
    def __init__(self, problem: AllocationProblem, reqs: tuple[StreamRequirement, ...]) -> None:
        self.p = problem
        self.reqs = reqs
        self.T = problem.request.horizon_periods
        self.H = problem.request.period_hours
        self.lp = LinearProgram()
        self.classes, self.stream_class = _classes(problem)
        self.offset = 0.0
        self.const_spend = 0.0
        self.cost_vars: dict[str, dict[int, float]] = {
            k: {} for k in ("internal", "providers", "churn", "quality", "sla", "unmet")
        }
        self.const_costs: dict[str, float] = {k: 0.0 for k in self.cost_vars}
        self.lines: list[Line] = []
        self.cover: list[list[list[int]]] = []
        self.engaged: dict[tuple[int, int], int] = {}
        self.team_rows: dict[tuple[int, int], int] = {}
        self.provider_max_rows: dict[tuple[int, int], int] = {}
        self.provider_min_rows: dict[tuple[int, int], int] = {}
        self.core_rows: dict[tuple[int, int], int] = {}
        self.concentration_rows: dict[int, int] = {}
        self.window_rows: dict[tuple[int, str, int], int] = {}
        self.segments: dict[int, tuple[tuple[int, int], ...]] = {}
        self.budget_row: int | None = None
        self.overrun: int | None = None
        self.total_outsourced: int | None = None
        self.aux: list[tuple[int, list[int]]] = []

    # -- costs ---------------------------------------------------------------------------
    def cost(self, family: str, var: int, coef: float) -> None:
        if coef == 0:
            return
        self.lp.add_obj(var, coef)
        fam = self.cost_vars[family]
        fam[var] = fam.get(var, 0.0) + coef

    def const_cost(self, family: str, amount: float) -> None:
        self.offset += amount
        self.const_costs[family] += amount
        if family in ("internal", "providers", "churn"):
            self.const_spend += amount

    # -- variables -----------------------------------------------------------------------
    def add_cover_and_service(self) -> None:
        """Cover per stream/period as pieces of the (capped) service curve; shortfall priced.

        The penalty ``w·volume·(target − min(target, SL(cover)))`` is convex in cover because
        SL is concave, so cover is the sum of one bounded variable per curve piece, each earning
        its slope: the LP fills the steepest pieces first without binaries. Compared with an SL
        variable bounded by one row per piece this needs no rows at all, which roughly halves
        the row count of the model.
        """
        policy = self.p.policy
        for i, stream in enumerate(self.p.streams):
            req = self.reqs[i]
            weight = policy.penalty_weight(stream)
            cov: list[list[int]] = []
            for t in range(self.T):
                r = req.cap(t)
                if r <= EPS:
                    cov.append([])
                    continue
                if stream.kind == "project":
                    # weight × (work − H·cover): unmet work hours.
                    self.const_cost("unmet", weight * req.volume[t])
                    c = self.lp.var(0.0, r)
                    self.cost("unmet", c, -weight * self.H)
                    cov.append([c])
                    continue
                price = weight * req.volume[t]
                start, pieces = _capped_pieces(req.curves[t], req.target_sl, r)
                self.const_cost("sla", price * (req.target_sl - start))
                floor = self.H * policy.understaffing_penalty_per_fte_hour
                need = req.required_fte[t] if floor > 0 else 0.0
                if need > EPS:
                    self.const_cost("unmet", floor * need)
                vs: list[int] = []
                for width, slope, under in _split_at(pieces, need):
                    v = self.lp.var(0.0, width)
                    self.cost("sla", v, -price * slope)
                    if under:
                        self.cost("unmet", v, -floor)
                    vs.append(v)
                cov.append(vs)
            self.cover.append(cov)

    def add_assignments(self) -> None:
        """x (class, team, t) and y (class, provider, t) where the class has demand; balance.

        In-house time is priced per ``Policy.internal_cost``: rostered (default) — the whole
        roster is a constant cost and x is free; assigned — each x FTE costs its wage.
        """
        assigned = self.p.policy.internal_cost == "assigned"
        if not assigned:
            for team in self.p.teams:
                roster = sum(team.rostered_fte(t) for t in range(self.T))
                self.const_cost("internal", self.H * team.cost_per_hour * roster)
        for cls in self.classes:
            for t in range(self.T):
                cvars = [v for i in cls.streams for v in self.cover[i][t]]
                if not cvars:
                    continue
                xs: list[int] = []
                for j in cls.teams:
                    team = self.p.teams[j]
                    if team.productive_fte(t) <= EPS:
                        continue
                    v = self.lp.var(0.0, team.productive_fte(t))
                    cls.x[(j, t)] = v
                    xs.append(v)
                    if assigned:
                        self.cost("internal", v, self.H * team.internal_rate)
                ys: list[int] = []
                for j in cls.providers:
                    v = self.lp.var(0.0)
                    cls.y[(j, t)] = v
                    ys.append(v)
                    q = self.p.providers[j].quality_score
                    self.cost(
                        "quality", v, self.H * self.p.policy.quality_penalty_per_fte_hour * (1 - q)
                    )
                self.lp.row(
                    cvars + xs + ys,
                    [1.0] * len(cvars) + [-1.0] * (len(xs) + len(ys)),
                    lo=0.0,
                    hi=0.0,
                    name="balance",
                )

    def add_team_capacity(self) -> None:
        """Σ_class x[class, team, t] ≤ productive FTE of the team in t."""
        use: dict[tuple[int, int], list[int]] = {}
        for cls in self.classes:
            for key, v in cls.x.items():
                use.setdefault(key, []).append(v)
        for key in sorted(use):
            j, t = key
            vs = use[key]
            self.team_rows[key] = self.lp.row(
                vs, [1.0] * len(vs), hi=self.p.teams[j].productive_fte(t), name="team_capacity"
            )

    def _line_upper(self, j: int, skill: str) -> float:
        prov = self.p.providers[j]
        demand = 0.0
        for cls in self.classes:
            if cls.skill == skill and j in cls.providers:
                for i in cls.streams:
                    req = self.reqs[i]
                    demand += max(req.cap(t) for t in range(self.T)) if self.T else 0.0
        base = max(self.p.baseline_level(prov.id, skill))
        block = prov.contract.block_fte
        floor_engaged = prov.contract.min_fte if max(demand, base) > EPS else 0.0
        need = math.ceil(max(demand, base, floor_engaged) / block - 1e-9) * block
        if not math.isfinite(prov.contract.max_fte):
            return need
        return min(math.floor(prov.contract.max_fte / block + 1e-9) * block, need)

    def _line_demand(self, j: int, skill: str) -> NDArray[np.float64]:
        """Required FTE per period of every stream the line (provider ``j``, ``skill``) may take."""
        dem = np.zeros(self.T)
        for cls in self.classes:
            if cls.skill == skill and j in cls.providers:
                for i in cls.streams:
                    req = self.reqs[i]
                    dem += np.asarray([req.cap(t) for t in range(self.T)], dtype=np.float64)
        return dem

    def _segment_upper(
        self,
        j: int,
        rate: SkillRate,
        segments: tuple[tuple[int, int], ...],
        window: int,
        churn: float,
    ) -> list[int]:
        """Per segment, the most blocks an optimal plan can hold on the line (a valid bound).

        Outside the windows, a level above both the segment's eligible demand (cover never
        exceeds the requirement) and the contract minimum can only be there to save churn.
        Dropping one block saves at least ``H·len·min_rate`` per FTE and adds at most
        ``2·churn`` (two steps move by one block), and a level that high leaves the provider's
        total ≥ min after the drop; so when the saving is larger, some optimal plan stays at or
        below ``max(⌈demand/block⌉, ⌈min/block⌉)`` blocks. This bound is what makes the
        engagement rows ``n ≤ ub·e`` tight in the LP: a horizon-wide bound let the relaxation
        engage providers at a fraction of their minimum in quiet segments.
        """
        prov = self.p.providers[j]
        b = prov.contract.block_fte
        dem = self._line_demand(j, rate.skill)
        r_min = min(t.rate_per_hour for t in rate.tiers)
        floor_min = math.ceil(prov.contract.min_fte / b - 1e-9)
        out: list[int] = []
        for start, end in segments:
            if start < window or self.H * (end - start) * r_min <= 2.0 * churn + EPS:
                out.append(10**9)
                continue
            need = math.ceil(float(dem[start:end].max()) / b - 1e-9)
            out.append(max(need, floor_min))
        return out

    def add_lines(self) -> None:
        """Level variables per contract line and segment, frozen windows, tiers and churn."""
        req = self.p.request
        churn = self.p.policy.churn_cost_per_fte
        for j, prov in enumerate(self.p.providers):
            contract = prov.contract
            up_lead = req.hours_to_periods(contract.ramp_up_hours)
            notice = req.hours_to_periods(contract.ramp_down_notice_hours)
            segments = self.p.level_segments(prov.id)
            for rate in contract.rates:
                base = self.p.baseline_level(prov.id, rate.skill)
                committed = self.p.committed_level(prov.id, rate.skill)
                used = any(
                    cls.skill == rate.skill and j in cls.providers and cls.y for cls in self.classes
                )
                if not used and committed <= EPS and max(base) <= EPS:
                    continue
                self.segments[j] = segments
                n_seg = len(segments)
                line = Line(
                    provider=j,
                    skill=rate.skill,
                    rate=rate,
                    block=contract.block_fte,
                    committed=committed,
                    baseline=base,
                    segments=segments,
                    n=[None] * self.T,
                    fixed=[0.0] * self.T,
                    up=[None] * n_seg,
                    down=[None] * n_seg,
                    fills=[[] for _ in range(n_seg)],
                    tier_on=[[] for _ in range(n_seg)],
                    capacity_rows=[None] * self.T,
                )
                upper = self._line_upper(j, rate.skill)
                b = contract.block_fte
                seg_hi = self._segment_upper(j, rate, segments, max(up_lead, notice), churn)
                for s_idx, (start, end) in enumerate(segments):
                    # Baseline and window status are constant over a segment: decide at start.
                    level: float | None = None
                    var: int | None = None
                    if not prov.active:
                        level = 0.0
                    elif start < up_lead and start < notice:
                        level = base[start]
                    else:
                        lo = math.ceil(base[start] / b - 1e-9) if start < notice else 0
                        hi = (
                            math.floor(base[start] / b + 1e-9)
                            if start < up_lead
                            else min(math.floor(upper / b + 1e-9), seg_hi[s_idx])
                        )
                        if self.p.policy.request_cost_per_fte > 0 and start >= up_lead:
                            # holding what providers were told may beat the demand-sized cap
                            told = math.ceil(base[start] / b - 1e-9)
                            hi = max(hi, min(math.floor(upper / b + 1e-9), told))
                        hi = max(hi, lo)
                        if hi == lo:
                            level = lo * b
                        else:
                            var = self.lp.var(float(lo), float(hi), integer=True)
                    for t in range(start, end):
                        line.n[t] = var
                        line.fixed[t] = level if level is not None else 0.0
                self._line_windows(line, up_lead, notice)
                self._line_cost(line)
                self._line_churn(line, churn)
                self.lines.append(line)

    def _line_windows(self, line: Line, up_lead: int, notice: int) -> None:
        """Inside the windows, level steps only as the baseline (committed + pending) steps.

        Levels change only at segment starts and the baseline is constant inside a segment,
        so the per-period rule reduces to one row per segment start.
        """
        prev_vars: list[int] = []
        prev_coef: list[float] = []
        prev_const = line.committed
        prev_base = line.committed
        for start, _end in line.segments:
            vs, cs, const = line.terms(start)
            step = line.baseline[start] - prev_base
            if vs or prev_vars:
                idx = vs + prev_vars
                coef = cs + [-c for c in prev_coef]
                if start < up_lead:
                    self.window_rows[(len(self.lines), "up", start)] = self.lp.row(
                        idx, coef, hi=max(0.0, step) - const + prev_const, name="frozen_up"
                    )
                if start < notice:
                    self.window_rows[(len(self.lines), "down", start)] = self.lp.row(
                        idx, coef, lo=min(0.0, step) - const + prev_const, name="frozen_down"
                    )
            prev_vars, prev_coef, prev_const = vs, cs, const
            prev_base = line.baseline[start]

    def _line_cost(self, line: Line) -> None:
        """Tiered price of the level per segment; concave (discount) tiers get binaries.

        Convex tiers (rising rates) need no binaries: the LP fills cheap tiers first. Falling
        rates would let the LP fill the cheap upper tier first, so a binary per upper tier
        switches it on only once the tier below is full; its big-M is the tier width, or the
        line's own upper bound for the open last tier.
        """
        tiers = line.rate.tiers
        convex = _is_convex(line.rate)
        for s, (start, end) in enumerate(line.segments):
            hours = self.H * (end - start)
            vs, cs, const = line.terms(start)
            if not vs:
                self.const_cost("providers", hours * line.rate.cost_per_hour(const))
                continue
            top = self.lp.ub[vs[0]] * cs[0]
            if len(tiers) == 1:
                self.cost("providers", vs[0], hours * tiers[0].rate_per_hour * cs[0])
                continue
            fills: list[int] = []
            ons: list[int] = []
            for k, tier in enumerate(tiers):
                if tier.from_fte >= top - EPS:
                    break  # the level can never reach this tier
                width = tiers[k + 1].from_fte - tier.from_fte if k + 1 < len(tiers) else INF
                width = min(width, top - tier.from_fte)
                f = self.lp.var(0.0, width)
                fills.append(f)
                self.cost("providers", f, hours * tier.rate_per_hour)
                if not convex and k > 0:
                    z = self.lp.var(0.0, 1.0, integer=True)
                    ons.append(z)
                    prev_width = tier.from_fte - tiers[k - 1].from_fte
                    # fill of tier k only once tier k−1 is full
                    self.lp.row([fills[k - 1], z], [1.0, -prev_width], lo=0.0, name="tier_order")
                    self.lp.row([f, z], [1.0, -width], hi=0.0, name="tier_on")
            self.lp.row(
                fills + vs, [1.0] * len(fills) + [-c for c in cs], lo=0.0, hi=0.0, name="tier_fill"
            )
            line.fills[s] = fills
            line.tier_on[s] = ons

    def _line_churn(self, line: Line, churn: float) -> None:
        """level[s] − level[s−1] = up − down at every segment start, priced per FTE; with a
        request cost, the step's difference from the baseline's step too (:meth:`_line_request`).
        """
        prev_vs: list[int] = []
        prev_cs: list[float] = []
        prev_const = line.committed
        prev_base = line.committed
        for s, (start, _end) in enumerate(line.segments):
            vs, cs, const = line.terms(start)
            base_step = line.baseline[start] - prev_base
            self._line_request(
                vs + prev_vs, cs + [-c for c in prev_cs], const - prev_const, base_step
            )
            prev_base = line.baseline[start]
            if not vs and not prev_vs:
                self.const_cost("churn", churn * abs(const - prev_const))
            else:
                up = self.lp.var(0.0)
                dn = self.lp.var(0.0)
                line.up[s], line.down[s] = up, dn
                self.cost("churn", up, churn)
                self.cost("churn", dn, churn)
                self.lp.row(
                    vs + prev_vs + [up, dn],
                    cs + [-c for c in prev_cs] + [-1.0, 1.0],
                    lo=prev_const - const,
                    hi=prev_const - const,
                    name="churn",
                )
            prev_vs, prev_cs, prev_const = vs, cs, const

    def _line_request(
        self, vs: list[int], cs: list[float], const_step: float, base_step: float
    ) -> None:
        """step − baseline step = ask_up − ask_down, priced per FTE (``request_cost_per_fte``).

        Named like the churn rows: it ties a segment to the one before, so the Lagrangian bound
        and the block neighbourhoods treat it as the link row it is.
        """
        price = self.p.policy.request_cost_per_fte
        if price <= 0:
            return
        if not vs:
            self.const_cost("churn", price * abs(const_step - base_step))
            return
        up = self.lp.var(0.0)
        dn = self.lp.var(0.0)
        self.cost("churn", up, price)
        self.cost("churn", dn, price)
        rhs = base_step - const_step
        self.lp.row([*vs, up, dn], [*cs, -1.0, 1.0], lo=rhs, hi=rhs, name="churn")

    def add_line_capacity(self) -> None:
        """Σ_class y[class, provider, t] ≤ level of the provider's line for that skill."""
        by_line = {(ln.provider, ln.skill): ln for ln in self.lines}
        for cls in self.classes:
            for (j, _t), v in cls.y.items():
                line = by_line.get((j, cls.skill))
                if line is None:
                    self.lp.ub[v] = 0.0
        for line in self.lines:
            for t in range(self.T):
                ys = [
                    cls.y[(line.provider, t)]
                    for cls in self.classes
                    if cls.skill == line.skill and (line.provider, t) in cls.y
                ]
                if not ys:
                    continue
                vs, cs, const = line.terms(t)
                line.capacity_rows[t] = self.lp.row(
                    ys + vs, [1.0] * len(ys) + [-c for c in cs], hi=const, name="line_capacity"
                )

    def add_engagement(self) -> None:
        """min·engaged ≤ Σ_lines level ≤ max·engaged per provider and segment (if it can vary).

        Each variable line also gets ``n ≤ ub·engaged``: redundant for integer solutions but it
        tightens the LP relaxation, which otherwise engages providers fractionally for free.
        """
        for j, prov in enumerate(self.p.providers):
            lines = [ln for ln in self.lines if ln.provider == j]
            if not lines or not prov.active:
                continue
            c = prov.contract
            for start, _end in self.segments[j]:
                vs: list[int] = []
                cs: list[float] = []
                const = 0.0
                for ln in lines:
                    a, b, k = ln.terms(start)
                    vs += a
                    cs += b
                    const += k
                if not vs:
                    continue
                ub_total = sum(self.lp.ub[v] * cc for v, cc in zip(vs, cs, strict=True)) + const
                cap = min(c.max_fte, ub_total)
                if c.min_fte > EPS:
                    e = self.lp.var(0.0, 1.0, integer=True)
                    self.engaged[(j, start)] = e
                    self.provider_max_rows[(j, start)] = self.lp.row(
                        [*vs, e], [*cs, -cap], hi=-const, name="provider_max"
                    )
                    self.provider_min_rows[(j, start)] = self.lp.row(
                        [*vs, e], [*cs, -c.min_fte], lo=-const, name="provider_min"
                    )
                    if const <= EPS:
                        for v in vs:
                            if self.lp.lb[v] <= EPS:
                                self.lp.row([v, e], [1.0, -self.lp.ub[v]], hi=0.0, name="engaged")
                elif math.isfinite(c.max_fte) and ub_total > c.max_fte + EPS:
                    self.provider_max_rows[(j, start)] = self.lp.row(
                        vs, cs, hi=c.max_fte - const, name="provider_max"
                    )

    def add_core_share(self) -> None:
        """Core streams: internal ≥ share × cover, i.e. (1−s)·Σx − s·Σy ≥ 0 per class/period."""
        share = self.p.policy.core_in_house_share
        if share <= 0:
            return
        for cls in self.classes:
            if not cls.core:
                continue
            for t in range(self.T):
                xs = [v for (j, tt), v in cls.x.items() if tt == t]
                ys = [v for (j, tt), v in cls.y.items() if tt == t]
                if not ys:
                    continue
                self.core_rows[(cls.index, t)] = self.lp.row(
                    xs + ys,
                    [1 - share] * len(xs) + [-share] * len(ys),
                    lo=0.0,
                    name="core_in_house",
                )

    def add_concentration(self) -> None:
        """Each provider's FTE-hours ≤ cap × all outsourced FTE-hours.

        Per provider a total ``P_p = Σ y_p`` (one long row, each assignment in exactly one such
        row), ``total = Σ_p P_p`` and ``P_p ≤ cap · total`` (short rows). The rows are lazy: they
        couple every period, make simplex pivots several times slower, and seldom bind.
        """
        cap = self.p.policy.vendor_concentration_cap
        if cap >= 1.0:
            return
        per_provider: dict[int, list[int]] = {}
        for cls in self.classes:
            for (j, _t), v in cls.y.items():
                per_provider.setdefault(j, []).append(v)
        if not per_provider:
            return
        total = self.lp.var(0.0)
        self.total_outsourced = total
        mine: dict[int, int] = {}
        for j in sorted(per_provider):
            vs = per_provider[j]
            mine[j] = self.lp.var(0.0)
            self.aux.append((mine[j], vs))
            self.lp.row(
                [*vs, mine[j]],
                [1.0] * len(vs) + [-1.0],
                lo=0.0,
                hi=0.0,
                name="outsourced_total",
                lazy=True,
            )
        self.lp.row(
            [*mine.values(), total],
            [1.0] * len(mine) + [-1.0],
            lo=0.0,
            hi=0.0,
            name="outsourced_total",
            lazy=True,
        )
        self.aux.append((total, list(mine.values())))
        for j in sorted(per_provider):
            self.concentration_rows[j] = self.lp.row(
                [mine[j], total], [1.0, -cap], hi=0.0, name="concentration_cap", lazy=True
            )

    def add_budget(self) -> None:
        """Spend (internal + providers + churn) ≤ cap + overrun, overrun priced."""
        cap = self.p.policy.budget_cap
        if cap is None:
            return
        terms: dict[int, float] = {}
        for fam in ("internal", "providers", "churn"):
            for v, c in self.cost_vars[fam].items():
                terms[v] = terms.get(v, 0.0) + c
        over = self.lp.var(0.0, obj=self.p.policy.budget_overrun_penalty)
        self.overrun = over
        idx = sorted(terms)
        self.budget_row = self.lp.row(
            [*idx, over],
            [terms[v] for v in idx] + [-1.0],
            hi=cap - self.const_spend,
            name="budget_cap",
            lazy=True,
        )

    def build(self) -> Built:
        self.add_cover_and_service()
        self.add_assignments()
        self.add_team_capacity()
        self.add_lines()
        self.add_line_capacity()
        self.add_engagement()
        self.add_core_share()
        self.add_concentration()
        self.add_budget()
        self.lp.offset = self.offset
        return Built(
            lp=self.lp,
            problem=self.p,
            reqs=self.reqs,
            classes=self.classes,
            stream_class=self.stream_class,
            lines=self.lines,
            cover=self.cover,
            segments=self.segments,
            engaged=self.engaged,
            team_rows=self.team_rows,
            provider_max_rows=self.provider_max_rows,
            provider_min_rows=self.provider_min_rows,
            core_rows=self.core_rows,
            concentration_rows=self.concentration_rows,
            window_rows=self.window_rows,
            budget_row=self.budget_row,
            overrun=self.overrun,
            total_outsourced=self.total_outsourced,
            aux=self.aux,
            offset=self.offset,
            const_spend=self.const_spend,
            cost_vars=self.cost_vars,
            const_costs=self.const_costs,
        )


def build_model(problem: AllocationProblem, reqs: tuple[StreamRequirement, ...]) -> Built:
    """Build the MIP for ``problem`` given the per-stream requirements."""
    return _Builder(problem, reqs).build()


def provider_of(built: Built, line: Line) -> Provider:
    """The provider a line belongs to."""
    return built.problem.providers[line.provider]
