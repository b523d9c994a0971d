"""Small scenarios for the simulator and evaluation tests (a day or two, one or two queues)."""

from __future__ import annotations

from typing import Any

from services.sim.scenario import Scenario


def small(**overrides: Any) -> Scenario:
    """One service-desk queue, a 4-FTE team, a cheap slow provider and a dear fast one."""
    base: dict[str, Any] = {
        "name": "small",
        "domain": "t",
        "start": "2026-03-03T00:00:00Z",
        "duration_hours": 24,
        "history_days": 1,
        "lead_in_hours": 12,
        "planning": {
            "horizon_periods": 24,
            "solver_time_limit_s": 2.0,
            "allowed_lateness_minutes": 0,
        },
        "policy": {
            "sla_penalty_per_contact": 6.0,
            "churn_cost_per_fte": 2.0,
            "level_change_hours": 4,
        },
        "queues": [
            {
                "id": "desk",
                "skill": "sd",
                "sla": {"kind": "answer_within", "target": 0.8, "seconds": 60},
                "default_handle_time_s": 300,
            }
        ],
        "teams": [{"id": "team", "skills": ["sd"], "fte": 4, "cost_per_hour": 30, "region": "eu"}],
        "providers": [
            {
                "id": "cheap",
                "rates": {"sd": 20.0},
                "max_fte": 30,
                "fte_block": 2,
                "lead_time_hours": 6,
                "notice_hours": 6,
                "regions": ["eu"],
                "behaviour": {"answer_delay_minutes": 10},
            },
            {
                "id": "dear",
                "rates": {"sd": 45.0},
                "max_fte": 20,
                "lead_time_hours": 1,
                "notice_hours": 1,
                "regions": ["eu"],
                "behaviour": {"answer_delay_minutes": 5},
            },
        ],
        "demand": {
            "kind": "synthetic",
            "interval_minutes": 60,
            "seed": 1,
            "queues": [{"queue": "desk", "peak_per_hour": 120, "handle_time_s": 300}],
        },
    }
    return Scenario.model_validate(base | overrides)
