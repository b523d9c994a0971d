"""Prometheus metrics of a worker: what an SRE needs to see the service is healthy and useful.

Names follow Prometheus conventions (``flexforce_<noun>_<unit>_total``); every series is labelled
by what an on-call engineer would filter on (event type, topic, domain, provider), never by ids
that grow without bound (event, plan or request ids belong in logs, not labels).
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_IN = Counter(
    "flexforce_events_in_total",
    "Valid input events ingested, by event type.",
    ["event_type"],
    registry=REGISTRY,
)
EVENTS_DEAD_LETTERED = Counter(
    "flexforce_events_dead_lettered_total",
    "Input records refused and written to a dead-letter topic.",
    ["topic", "stage", "error_class"],
    registry=REGISTRY,
)
EVENTS_DUPLICATE = Counter(
    "flexforce_events_duplicate_total",
    "Input events dropped as repeats of an event id already applied.",
    ["domain"],
    registry=REGISTRY,
)
EVENTS_OUT = Counter(
    "flexforce_events_out_total",
    "Decision events published, by event type.",
    ["event_type"],
    registry=REGISTRY,
)
INGEST_LAG = Gauge(
    "flexforce_ingest_lag_records",
    "Records between the ingest consumer's position and the end of its partitions.",
    registry=REGISTRY,
)
PLAN_SOLVE_SECONDS = Histogram(
    "flexforce_plan_solve_seconds",
    "Time to solve one allocation plan.",
    ["domain"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
PLAN_GAP = Gauge(
    "flexforce_plan_gap_ratio",
    "Relative gap between the last plan's objective and its best bound.",
    ["domain"],
    registry=REGISTRY,
)
PLANNED_COST = Gauge(
    "flexforce_planned_cost",
    "Total cost (spend + penalties) of the last plan over its horizon.",
    ["domain"],
    registry=REGISTRY,
)
UNMET_DEMAND = Gauge(
    "flexforce_unmet_demand_fte_hours",
    "Demand the last plan leaves uncovered over its horizon, in FTE-hours.",
    ["domain"],
    registry=REGISTRY,
)
CAPACITY_REQUESTS = Counter(
    "flexforce_capacity_requests_total",
    "Capacity requests sent to providers.",
    ["provider", "direction"],
    registry=REGISTRY,
)
PROVIDER_RESPONSES = Counter(
    "flexforce_provider_responses_total",
    "Provider responses applied, by status (timeouts count as rejected).",
    ["provider", "status"],
    registry=REGISTRY,
)
PROVIDER_RESPONSE_SECONDS = Histogram(
    "flexforce_provider_response_seconds",
    "Event time between a capacity request and the provider's answer.",
    ["provider"],
    buckets=(60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600),
    registry=REGISTRY,
)
FALLBACKS = Counter(
    "flexforce_plan_fallbacks_total",
    "Planning runs that failed or timed out and fell back to holding capacity.",
    ["domain", "reason"],
    registry=REGISTRY,
)
SECURITY_EVENTS = Counter(
    "flexforce_security_events_total",
    "Forged or cross-provider responses refused.",
    ["provider"],
    registry=REGISTRY,
)
INGEST_RESTARTS = Counter(
    "flexforce_ingest_restarts_total",
    "Times the ingest stage failed and was restarted (its consumer re-joins; input is re-read "
    "from the last committed offsets, so nothing is lost).",
    registry=REGISTRY,
)

#: Gauges holding a domain's last plan: meaningful only on the worker that plans the domain.
DOMAIN_GAUGES = (PLAN_GAP, PLANNED_COST, UNMET_DEMAND)


def forget_domain(domain: str) -> None:
    """Drop a domain's gauges (a rebalance moved it to another worker, which reports it now):
    otherwise this worker would go on exporting its last, stale values. Counters and
    histograms stay (they only ever grow; Prometheus sums them across workers)."""
    for gauge in DOMAIN_GAUGES:
        with contextlib.suppress(KeyError):  # never planned here
            gauge.remove(domain)
