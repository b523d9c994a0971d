"""``flexforce explain`` on a plan the real worker produced on Kafka.

A worker (optimiser policy, so the plan carries binding constraints and marginal values) plans
a demand spike, sends a capacity request, a simulated provider accepts it and the worker
applies the answer. Then ``flexforce explain`` runs as a subprocess, as an operator would run
it, with the request id and with the plan id, readable and ``--json``; an unknown id exits 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas import AllocationPlanned, Direction, ResponseStatus, ScalingDecided
from services.config import Settings
from tests.conftest import LocalKafka
from tests.test_domain_support import DOMAIN
from tests.test_worker_kafka import Clock, Feed, spike
from tests.worker_harness import (
    FLEXFORCE,
    OUTPUTS,
    ProviderSimulator,
    TopicWatch,
    WorkerPool,
    settings_for,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
def pool(local_kafka: LocalKafka, topic_prefix: str, tmp_path: Path) -> Iterator[WorkerPool]:
    workers = WorkerPool(local_kafka.bootstrap, topic_prefix, tmp_path)
    try:
        yield workers
    finally:
        workers.close()
        print(workers.logs())


def run_explain(settings: Settings, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``flexforce explain ARGS`` against the test's broker and prefix; result and seconds."""
    started = time.monotonic()
    done = subprocess.run(
        [
            str(FLEXFORCE),
            "explain",
            *args,
            "-b",
            settings.bootstrap_servers,
            "--prefix",
            settings.topic_prefix,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )
    return done, time.monotonic() - started


async def explain(settings: Settings, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    return await asyncio.to_thread(run_explain, settings, *args)


async def test_explain_names_the_plan_its_constraints_decisions_and_the_answered_request(
    pool: WorkerPool,
) -> None:
    settings = settings_for(pool.bootstrap, pool.prefix)
    worker = pool.spawn("w1", FLEXFORCE_PLANNING_POLICY="optimiser")
    await worker.wait_ready()
    accept = lambda _: ResponseStatus.ACCEPTED  # noqa: E731
    async with TopicWatch(settings, OUTPUTS) as watch, ProviderSimulator(settings, accept) as sim:
        clock = Clock(Feed(settings, worker), watch)
        sent = await spike(clock)
        clock.feed.valid += await sim.wait_answered(1)
        await clock.until(lambda w: w.logs("request.accepted"), 200, "acceptance applied", 4)
        await watch.settle(0.5)
    # a request the provider's acceptance was applied to (a later plan may have revised the
    # first one before its answer came: that answer is stale, see docs/worker.md)
    accepted = {x.request_id for x in watch.logs("request.accepted")}
    request = next(r for r in [*sent, *watch.requests()] if r.request_id in accepted)
    plan: AllocationPlanned = next(p for p in watch.plans() if p.plan_id == request.plan_id)
    decisions = [d for d in watch.events(ScalingDecided) if d.plan_id == plan.plan_id]
    siblings = {r.request_id for r in watch.requests() if r.plan_id == plan.plan_id}
    assert plan.solver.status.value in {"optimal", "feasible"}, plan.solver
    assert plan.explanation.binding_constraints, "the optimiser names what binds"

    # --json, from the request id
    done, json_s = await explain(settings, request.request_id, "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    assert data["plan_id"] == plan.plan_id and data["query_kind"] == "capacity_request"
    assert data["domain"] == DOMAIN and data["status"] == "planned"
    assert data["plan"]["policy"] == plan.policy and plan.policy.startswith("optimiser")
    assert data["plan"]["as_of"] == plan.model_dump(mode="json")["as_of"]
    assert data["plan"]["cost"]["total"] == pytest.approx(plan.cost.total)
    assert data["plan"]["solver"]["status"] == plan.solver.status.value
    assert data["inputs"] == [w.model_dump(mode="json") for w in plan.watermark]
    assert {w["topic"] for w in data["inputs"]} >= {"ops.ticket-volume", "providers.contracts"}
    assert data["binding_constraints"] == plan.explanation.binding_constraints
    assert len(data["marginal_values"]) == len(plan.explanation.marginal_values)
    assert data["relaxations"] == plan.explanation.relaxations
    assert {d["decision_id"] for d in data["decisions"]} == {d.decision_id for d in decisions}
    up = [d for d in data["decisions"] if d["direction"] == Direction.UP.value]
    assert up and up[0]["target_id"] == "cheap" and up[0]["reason_codes"]
    assert {r["request_id"] for r in data["requests"]} == siblings
    mine = next(r for r in data["requests"] if r["request_id"] == request.request_id)
    assert [a["status"] for a in mine["responses"]] == ["accepted"]
    assert "request.accepted" in mine["outcome"]
    assert any(x["kind"] == "plan.applied" for x in data["log"])

    # readable, from the plan id
    done, text_s = await explain(settings, plan.plan_id)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    print(out)
    assert f"plan {plan.plan_id}" in out
    assert plan.explanation.binding_constraints[0] in out
    for d in decisions:
        assert f"{d.target_id}/{d.skill}" in out
    assert request.request_id in out and "answered accepted" in out
    assert "ops.ticket-volume[" in out
    if plan.explanation.marginal_values:
        assert plan.explanation.marginal_values[0].resource in out

    # unknown id, and a known id in the wrong domain
    done, _ = await explain(settings, "no-such-plan")
    assert done.returncode == 1 and "no-such-plan" in done.stdout, done.stdout
    done, _ = await explain(settings, plan.plan_id, "--domain", "us", "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["error"], done.stdout
    print(f"explain: --json from the request id {json_s:.1f} s, readable {text_s:.1f} s")
