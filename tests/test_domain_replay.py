"""Replay determinism and state round trips of the domain processor.

The promise to operations: a recorded stream fed again (same batches) gives byte-identical
outputs — plan, decision, request and event ids included — and a processor rebuilt from its
JSON state at any point continues exactly as the original would have.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import CapacityRequested, Event, ResponseStatus, encode
from services.domain import STATE_VERSION, DomainProcessor, StateVersionError
from tests.test_domain_support import (
    DOMAIN,
    Driver,
    config,
    contract,
    hours,
    queue,
    requests,
    respond,
    team,
)

Script = list[Sequence[Event]]


def scenario_batches() -> Script:
    """Catalogue, a quiet day, a spike, then the demand falling (batches as the shell sees)."""
    terms: dict[str, Any] = {"lead_h": 6.0, "notice_h": 12.0}
    batches: Script = [[queue(), team(), contract("cheap", 25.0, **terms)]]
    batches.append([contract("pricey", 35.0, **terms)])
    batches += [hours(h, h + 2, 10) for h in range(0, 24, 2)]
    batches += [[e] for e in hours(24, 30, 200)]
    batches += [hours(h, h + 3, 5) for h in range(30, 48, 3)]
    return batches


def run(
    batches: Script,
    *,
    respond_with: Callable[[CapacityRequested], ResponseStatus | None] | None = None,
    driver: Driver | None = None,
) -> tuple[Driver, list[bytes]]:
    """Feed the batches; answer each new request right after the batch that produced it,
    10 minutes after the newest event time (a live provider's clock)."""
    d = driver or Driver.new()
    for batch in batches:
        out = d.feed(batch)
        if respond_with is not None:
            for request in requests(out):
                status = respond_with(request)
                seen = d.proc.state.watermark
                if status is not None and seen is not None:
                    d.feed([respond(request, status, at=seen + timedelta(minutes=10))])
    wire = [encode(e).value + b"|" + repr(encode(e).headers).encode() for e in d.outputs]
    return d, wire


def alternate(request: CapacityRequested) -> ResponseStatus | None:
    """Deterministic provider behaviour: cheap rejects big ups, accepts the rest; pricey is
    silent (its requests time out)."""
    if request.provider_id == "pricey":
        return None
    big = request.target_fte - request.current_fte >= 3
    return ResponseStatus.REJECTED if big else ResponseStatus.ACCEPTED


def test_replay_gives_byte_identical_outputs() -> None:
    first, wire_a = run(scenario_batches(), respond_with=alternate)
    second, wire_b = run(scenario_batches(), respond_with=alternate)
    assert wire_a == wire_b
    assert requests(first.outputs), "the scenario exercises requests"
    kinds = {type(e).__name__ for e in first.outputs}
    assert {"AllocationPlanned", "ScalingDecided", "CapacityRequested", "AllocationLogged"} <= kinds
    assert first.proc.to_state() == second.proc.to_state()
    ids = [e.id for e in first.outputs]
    assert len(ids) == len(set(ids)), "every output event has its own id"


def test_outputs_are_deterministic_with_the_optimiser_too() -> None:
    from allocator import SolverOptions
    from allocator.policies import OptimiserPolicy

    policy = OptimiserPolicy(SolverOptions(time_limit_s=20, compute_marginals=False))
    batches = scenario_batches()[:20]
    _, wire_a = run(batches, driver=Driver.new(policy=policy))
    _, wire_b = run(batches, driver=Driver.new(policy=policy))
    assert wire_a == wire_b


def test_state_is_plain_json_and_versioned() -> None:
    d, _ = run(scenario_batches()[:18], respond_with=alternate)
    state = d.proc.to_state()
    text = json.dumps(state)
    assert json.loads(text) == state
    assert state["version"] == STATE_VERSION and state["domain"] == DOMAIN
    with pytest.raises(StateVersionError):
        DomainProcessor(DOMAIN, config(), state | {"version": 999})
    with pytest.raises(ValueError, match="domain"):
        DomainProcessor("other", config(), state)


@pytest.mark.parametrize("cut", [1, 5, 14, 17, 20, 26])
def test_restoring_state_mid_stream_continues_identically(cut: int) -> None:
    batches = scenario_batches()
    whole, wire_whole = run(batches, respond_with=alternate)
    head, _ = run(batches[:cut], respond_with=alternate)
    restored = head.restore()
    restored.outputs = list(head.outputs)
    tail, wire_tail = run(batches[cut:], respond_with=alternate, driver=restored)
    assert wire_tail == wire_whole
    assert tail.proc.to_state() == whole.proc.to_state()


@settings(max_examples=8, deadline=None)
@given(st.integers(min_value=1, max_value=len(scenario_batches()) - 1))
def test_restore_at_any_cut_matches_the_uninterrupted_run(cut: int) -> None:
    batches = scenario_batches()[:30]
    cut = min(cut, len(batches) - 1)
    _, wire_whole = run(batches)
    head, _ = run(batches[:cut])
    restored = head.restore()
    restored.outputs = list(head.outputs)
    _, wire_tail = run(batches[cut:], driver=restored)
    assert wire_tail == wire_whole


def test_redelivered_input_after_a_restore_changes_nothing() -> None:
    """At-least-once: after a crash the shell re-reads inputs the stored state already saw."""
    batches = scenario_batches()
    _, wire_whole = run(batches)
    head, _ = run(batches[:20])
    restored = head.restore()
    restored.outputs = list(head.outputs)
    again = batches[18:20]  # already applied before the "crash", redelivered at their offsets
    restored.offset = sum(len(b) for b in batches[:18])
    for batch in again:
        out = restored.feed(batch)
        assert out == [] and restored.steps[-1].duplicates == len(batch)
    _, wire_tail = run(batches[20:], driver=restored)
    assert wire_tail == wire_whole


def test_plan_ids_depend_on_content_not_offsets() -> None:
    a = Driver.new()
    b = Driver.new()
    b.offset = 10_000  # same events at other offsets (fresh topics, other partitions)
    for batch in scenario_batches()[:16]:
        a.feed(batch)
        b.feed(batch)
    assert [getattr(e, "plan_id", None) for e in a.outputs] == [
        getattr(e, "plan_id", None) for e in b.outputs
    ]
    assert [getattr(e, "request_id", None) for e in a.outputs] == [
        getattr(e, "request_id", None) for e in b.outputs
    ]
