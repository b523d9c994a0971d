"""``flexforce whatif``: re-plan from one domain state with changed facts, and compare.

Why from a *state* and not a fresh problem: the question an operations manager asks is "what
would we do now if provider X went dark / demand rose 30 %?", which only means something with
the capacity already committed and pending, the forecasts learnt so far and the requests in
flight. So the state comes from a real run — the in-process closed loop of the scenario,
stopped ``hours`` into its measured window (the planner core there is the one the worker runs)
— and both plans are solved from the same :class:`allocator.AllocationProblem`, one of them with
the overrides applied. Nothing is published, nothing is sent to a provider.

Overrides (``--set KEY=VALUE``, repeatable):

* ``provider.<id>.status=suspended|active``, ``provider.<id>.max_fte=N``,
  ``provider.<id>.min_fte=N``, ``provider.<id>.lead_time_hours=H``,
  ``provider.<id>.notice_hours=H``, ``provider.<id>.rate=F`` (every rate tier × F);
* ``demand.scale=F`` (every stream) or ``demand.<stream>.scale=F``;
* ``team.<id>.fte=N``;
* ``policy.<field>=V`` (any :class:`allocator.Policy` number, e.g.
  ``policy.sla_penalty_per_contact=20``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from allocator import AllocationProblem, Plan, SolverOptions
from allocator.domain import Contract, Demand, Provider, RateTier, SkillRate, Team
from allocator.policies import GreedyPolicy, OptimiserPolicy
from allocator.policies.base import AllocationPolicy
from services.domain import DomainProcessor
from services.sim.controllers import PlannerController
from services.sim.quiet import QuietPolicy
from services.sim.scenario import Scenario

__all__ = [
    "Override",
    "OverrideError",
    "PlanSummary",
    "WhatIf",
    "apply_overrides",
    "parse_overrides",
    "render",
    "state_from_loop",
    "summarise",
    "whatif",
]


class OverrideError(ValueError):
    """A ``--set`` that cannot be applied; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Override:
    path: tuple[str, ...]
    value: str

    @property
    def text(self) -> str:
        return f"{'.'.join(self.path)}={self.value}"


def parse_overrides(items: Sequence[str]) -> list[Override]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise OverrideError(f"--set {item!r}: expected KEY=VALUE, e.g. demand.scale=1.3")
        out.append(Override(tuple(key.strip().split(".")), value.strip()))
    return out


def _float(o: Override) -> float:
    try:
        value = float(o.value)
    except ValueError as exc:
        raise OverrideError(f"--set {o.text}: {o.value!r} is not a number") from exc
    if value < 0:
        raise OverrideError(f"--set {o.text}: must not be negative")
    return value


def _provider(problem: AllocationProblem, o: Override) -> AllocationProblem:
    if len(o.path) != 3:
        raise OverrideError(f"--set {o.text}: expected provider.<id>.<field>")
    pid, name = o.path[1], o.path[2]
    ids = [p.id for p in problem.providers]
    if pid not in ids:
        raise OverrideError(f"--set {o.text}: no provider {pid!r} (providers: {', '.join(ids)})")
    prov = next(p for p in problem.providers if p.id == pid)
    contract = prov.contract
    new: Provider
    if name == "status":
        if o.value not in ("active", "suspended"):
            raise OverrideError(f"--set {o.text}: status is active or suspended")
        new = dataclasses.replace(prov, status=o.value)  # type: ignore[arg-type]
    elif name in ("max_fte", "min_fte", "lead_time_hours", "notice_hours", "rate"):
        value = _float(o)
        field = {
            "max_fte": "max_fte",
            "min_fte": "min_fte",
            "lead_time_hours": "ramp_up_hours",
            "notice_hours": "ramp_down_notice_hours",
        }.get(name)
        changed: Contract
        if field is not None:
            changed = dataclasses.replace(contract, **{field: value})  # type: ignore[arg-type]
        else:
            changed = dataclasses.replace(
                contract,
                rates=tuple(
                    SkillRate(
                        r.skill,
                        tuple(RateTier(t.from_fte, t.rate_per_hour * value) for t in r.tiers),
                    )
                    for r in contract.rates
                ),
            )
        new = dataclasses.replace(prov, contract=changed)
    else:
        raise OverrideError(
            f"--set {o.text}: provider fields are status, max_fte, min_fte, lead_time_hours, "
            "notice_hours, rate"
        )
    providers = tuple(new if p.id == pid else p for p in problem.providers)
    return dataclasses.replace(problem, providers=providers)


def _scale(d: Demand, factor: float) -> Demand:
    return dataclasses.replace(
        d,
        arrivals=None if d.arrivals is None else tuple(a * factor for a in d.arrivals),
        work_hours=None if d.work_hours is None else tuple(w * factor for w in d.work_hours),
    )


def _demand(problem: AllocationProblem, o: Override) -> AllocationProblem:
    if o.path[-1] != "scale" or len(o.path) not in (2, 3):
        raise OverrideError(f"--set {o.text}: expected demand.scale or demand.<stream>.scale")
    factor = _float(o)
    stream = o.path[1] if len(o.path) == 3 else None
    ids = [d.stream_id for d in problem.demand]
    if stream is not None and stream not in ids:
        raise OverrideError(f"--set {o.text}: no stream {stream!r} (streams: {', '.join(ids)})")
    demand = tuple(
        _scale(d, factor) if stream in (None, d.stream_id) else d for d in problem.demand
    )
    return dataclasses.replace(problem, demand=demand)


def _team(problem: AllocationProblem, o: Override) -> AllocationProblem:
    if len(o.path) != 3 or o.path[2] != "fte":
        raise OverrideError(f"--set {o.text}: expected team.<id>.fte")
    ids = [t.id for t in problem.teams]
    if o.path[1] not in ids:
        raise OverrideError(f"--set {o.text}: no team {o.path[1]!r} (teams: {', '.join(ids)})")
    value = _float(o)
    teams: tuple[Team, ...] = tuple(
        dataclasses.replace(t, fte_available=tuple(value for _ in t.fte_available))
        if t.id == o.path[1]
        else t
        for t in problem.teams
    )
    return dataclasses.replace(problem, teams=teams)


def _policy(problem: AllocationProblem, o: Override) -> AllocationProblem:
    names = {
        f.name
        for f in dataclasses.fields(problem.policy)
        if isinstance(getattr(problem.policy, f.name), int | float | None)
    }
    if len(o.path) != 2 or o.path[1] not in names:
        raise OverrideError(f"--set {o.text}: policy fields are {', '.join(sorted(names))}")
    changes: dict[str, Any] = {o.path[1]: _float(o)}
    policy = dataclasses.replace(problem.policy, **changes)
    return dataclasses.replace(problem, policy=policy)


def apply_overrides(problem: AllocationProblem, overrides: Sequence[Override]) -> AllocationProblem:
    """The problem with every override applied (each validated by the allocator's own checks:
    e.g. a max_fte below the committed level is refused with the allocator's reason)."""
    handlers = {"provider": _provider, "demand": _demand, "team": _team, "policy": _policy}
    for o in overrides:
        handler = handlers.get(o.path[0])
        if handler is None:
            raise OverrideError(
                f"--set {o.text}: unknown key {o.path[0]!r} (provider, demand, team, policy)"
            )
        try:
            problem = handler(problem, o)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, OverrideError):
                raise
            raise OverrideError(f"--set {o.text}: {exc}") from exc
    return problem


# ---- the state ---------------------------------------------------------------------------


def state_from_loop(scenario: Scenario, hours: float, policy: str = "optimiser") -> DomainProcessor:
    """Run the scenario's in-process closed loop ``hours`` into its measured window and return
    the planner core's state for its domain (what a worker would hold at that point)."""
    from services.sim import evaluate as ev
    from services.sim.loop import build_world, run_loop

    if hours <= 0:
        raise ValueError("hours must be > 0")
    cut = scenario.model_copy(update={"duration_hours": min(hours, scenario.duration_hours)})
    world = build_world(cut)
    controller = ev._controller(policy, cut, world)
    if not isinstance(controller, PlannerController):
        raise ValueError(f"policy {policy!r} has no planner state")
    run_loop(world, controller)
    proc = controller.processors.get(scenario.domain)
    if proc is None:
        raise ValueError(f"no state for domain {scenario.domain!r}")
    return proc


def state_from_worker(scenario: Scenario, state: dict[str, Any]) -> DomainProcessor:
    """The planner core over a worker's persisted domain state (its ``/state/{domain}``
    view), configured with the scenario's planner settings — the ones the demo gives the
    worker — so a re-plan starts from exactly what the worker plans from."""
    from services.sim import evaluate as ev

    return DomainProcessor(scenario.domain, ev.planner_config(scenario), state=state)


# ---- plans and their comparison ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanSummary:
    label: str
    cost: dict[str, float]
    sla: dict[str, float]
    """Planned service level per stream over the horizon (arrival-weighted mean)."""
    sla_target: dict[str, float]
    periods_on_target: dict[str, float]
    unmet_fte_hours: float
    requests: list[dict[str, Any]]
    status: str
    gap: float

    @property
    def total(self) -> float:
        return self.cost["total"]

    @property
    def worst_sla(self) -> float:
        return min(self.sla.values(), default=1.0)

    @property
    def mean_sla(self) -> float:
        return sum(self.sla.values()) / len(self.sla) if self.sla else 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summarise(label: str, problem: AllocationProblem, plan: Plan) -> PlanSummary:
    weights: dict[str, list[float]] = {}
    for d in problem.demand:
        series = d.arrivals if d.arrivals is not None else d.work_hours
        weights[d.stream_id] = list(series or ())
    sla: dict[str, float] = {}
    target: dict[str, float] = {}
    on: dict[str, float] = {}
    for stream in problem.streams:
        rows = [s for s in plan.service if s.stream_id == stream.id]
        w = weights.get(stream.id, [])
        total = sum(w[r.period] for r in rows if r.period < len(w))
        if total > 1e-9:
            sla[stream.id] = sum(r.expected_sl * w[r.period] for r in rows) / total
        else:
            sla[stream.id] = sum(r.expected_sl for r in rows) / max(1, len(rows))
        target[stream.id] = stream.sla.target_fraction
        on[stream.id] = sum(r.expected_sl >= r.target_sl - 1e-6 for r in rows) / max(1, len(rows))
    c = plan.costs
    return PlanSummary(
        label=label,
        cost={
            "internal": c.internal,
            "providers": c.providers,
            "churn": c.churn,
            "penalties": c.penalties,
            "total": c.total,
        },
        sla=sla,
        sla_target=target,
        periods_on_target=on,
        unmet_fte_hours=plan.unmet_fte_hours,
        requests=[
            {
                "provider": ch.provider_id,
                "skill": ch.skill,
                "direction": ch.direction,
                "from_fte": ch.from_fte,
                "to_fte": ch.to_fte,
                "effective_at": ch.effective_at.isoformat(),
            }
            for ch in plan.changes
            if not ch.pending
        ],
        status=str(plan.stats.status),
        gap=plan.stats.gap,
    )


@dataclass(frozen=True, slots=True)
class WhatIf:
    as_of: datetime
    base: PlanSummary
    variants: list[PlanSummary]

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "base": self.base.to_dict(),
            "variants": [v.to_dict() for v in self.variants],
        }


def planning_policy(scenario: Scenario, name: str = "optimiser") -> AllocationPolicy:
    p = scenario.planning
    if name == "greedy":
        return GreedyPolicy()
    if name != "optimiser":
        raise ValueError(f"what-if plans with optimiser or greedy, not {name!r}")
    return QuietPolicy(
        OptimiserPolicy(
            SolverOptions(
                backend=p.solver_backend,
                time_limit_s=p.solver_time_limit_s,
                relative_gap=p.relative_gap,
                compute_marginals=False,
            )
        )
    )


def whatif(
    problem: AllocationProblem,
    variants: Sequence[tuple[str, Sequence[Override]]],
    policy: AllocationPolicy,
) -> WhatIf:
    """Plan ``problem`` as it is and once per variant (label, overrides)."""
    base = summarise("as is", problem, policy.plan(problem))
    out = []
    for label, overrides in variants:
        changed = apply_overrides(problem, overrides)
        out.append(summarise(label, changed, policy.plan(changed)))
    return WhatIf(problem.request.as_of, base, out)


def _delta(a: float, b: float, fmt: str) -> str:
    d = b - a
    if abs(d) < 1e-9:
        return "="
    text = format(abs(d), fmt)
    return f"[red]+{text}[/]" if d > 0 else f"[green]−{text}[/]"


def _sla_delta(a: float, b: float) -> str:
    d = (b - a) * 100
    if abs(d) < 0.05:
        return "="
    return f"[green]+{d:.1f} pt[/]" if d > 0 else f"[red]{d:.1f} pt[/]"


def render(result: WhatIf, console: Console) -> None:
    """The comparison: cost lines, SLA per stream, unmet hours, then each variant's requests."""
    base = result.base
    table = Table(title=f"what-if, re-planned from the state as of {result.as_of:%Y-%m-%d %H:%M}")
    table.add_column("metric")
    table.add_column(base.label, justify="right")
    for v in result.variants:
        table.add_column(v.label, justify="right")
        table.add_column("Δ", justify="right")
    for key in ("total", "internal", "providers", "churn", "penalties"):
        label = "planned cost" if key == "total" else f"  {key}"
        row = [label, f"{base.cost[key]:,.0f}"]
        for v in result.variants:
            row += [f"{v.cost[key]:,.0f}", _delta(base.cost[key], v.cost[key], ",.0f")]
        table.add_row(*row)
    for sid in base.sla:
        row = [f"SLA {sid} (target {base.sla_target[sid]:.0%})", f"{base.sla[sid]:.1%}"]
        for v in result.variants:
            row += [f"{v.sla[sid]:.1%}", _sla_delta(base.sla[sid], v.sla[sid])]
        table.add_row(*row)
    row = ["unmet FTE-hours", f"{base.unmet_fte_hours:,.1f}"]
    for v in result.variants:
        row += [
            f"{v.unmet_fte_hours:,.1f}",
            _delta(base.unmet_fte_hours, v.unmet_fte_hours, ",.1f"),
        ]
    table.add_row(*row)
    row = ["new capacity requests", str(len(base.requests))]
    for v in result.variants:
        row += [str(len(v.requests)), _delta(len(base.requests), len(v.requests), "d")]
    table.add_row(*row)
    row = ["solver", f"{base.status} ({base.gap:.1%})"]
    for v in result.variants:
        row += [f"{v.status} ({v.gap:.1%})", ""]
    table.add_row(*row)
    console.print(table)
    for summary in (base, *result.variants):
        reqs = Table(title=f"requests — {summary.label}", show_header=True)
        for col in ("provider", "skill", "change", "effective"):
            reqs.add_column(col)
        base_keys = {_req_key(r) for r in base.requests}
        for r in summary.requests:
            mark = "" if summary is base or _req_key(r) in base_keys else " [bold](new)[/]"
            reqs.add_row(
                r["provider"],
                r["skill"],
                f"{r['from_fte']:g} → {r['to_fte']:g} ({r['direction']}){mark}",
                r["effective_at"][:16].replace("T", " "),
            )
        if not summary.requests:
            reqs.add_row("—", "", "no change requested", "")
        console.print(reqs)


def _req_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["provider"], r["skill"], r["to_fte"], r["effective_at"])
