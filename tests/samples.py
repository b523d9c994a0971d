"""Valid sample events of every type, and hypothesis strategies that build random valid ones.

Shared by the contract tests and the Kafka round-trip tests, so both cover the same events.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import strategies as st

from schemas import (
    AllocationLogged,
    AllocationPlanned,
    AnswerWithinSla,
    CapacityRequested,
    CapacityResponded,
    CostBreakdown,
    DeadLetter,
    DeadLetterStage,
    Direction,
    Event,
    ProjectDemandChanged,
    ProviderContractUpdated,
    ProviderLevel,
    QueueDefined,
    RateTier,
    ResolveWithinSla,
    ResponseStatus,
    ScalingDecided,
    Sensitivity,
    SkillRate,
    SolverStats,
    SolverStatus,
    SourceKind,
    StreamAllocation,
    StreamService,
    TeamCapacityUpdated,
    TicketVolumeObserved,
    capacity_request_id,
)

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
SRC = "urn:flexforce:test"


def sample_events(domain: str = "eu-west") -> list[Event]:
    """One valid event of every type, all in ``domain``."""
    common = {"source": SRC, "domain": domain}
    plan_id = "plan-0001"
    return [
        QueueDefined(
            id="q-def-1",
            time=T0,
            queue_id="servicedesk-l1",
            skill="service-desk",
            sla=AnswerWithinSla(target_fraction=0.8, within_seconds=60),
            default_handle_time_s=420,
            allowed_regions=["eu"],
            sensitivity=Sensitivity.RESTRICTED,
            required_certifications=["iso27001"],
            core=True,
            **common,
        ),
        TicketVolumeObserved(
            id="tv-1",
            time=T0 + timedelta(minutes=15),
            queue_id="servicedesk-l1",
            interval_start=T0,
            interval_minutes=15,
            arrivals=42,
            backlog=5,
            abandoned=2,
            mean_handle_time_s=380.5,
            **common,
        ),
        ProjectDemandChanged(
            id="pd-1",
            time=T0,
            project_id="erp-upgrade",
            skill="sap-basis",
            hours_per_week=120,
            start=date(2026, 12, 1),
            end=date(2027, 3, 31),
            status="approved",
            **common,
        ),
        TeamCapacityUpdated(
            id="team-1",
            time=T0,
            team_id="sd-lisbon",
            skills=["service-desk", "app-support"],
            fte=25,
            shrinkage=0.3,
            cost_per_hour=38.0,
            region="eu",
            clearances=["iso27001"],
            valid_from=T0,
            **common,
        ),
        ProviderContractUpdated(
            id="contract-1",
            time=T0,
            provider_id="acme-outsourcing",
            contract_id="C-2026-17",
            rates=[
                SkillRate(
                    skill="service-desk",
                    tiers=[
                        RateTier(from_fte=0, rate_per_hour=32.0),
                        RateTier(from_fte=20, rate_per_hour=28.5),
                    ],
                )
            ],
            min_fte=5,
            max_fte=60,
            fte_block=5,
            ramp_up_lead_time_hours=72,
            ramp_down_notice_hours=336,
            regions=["eu", "uk"],
            certifications=["iso27001"],
            quality_score=0.92,
            valid_from=T0,
            **common,
        ),
        CapacityRequested(
            id="req-evt-1",
            time=T0,
            request_id=capacity_request_id(
                plan_id, "acme-outsourcing", "service-desk", T0 + timedelta(hours=72)
            ),
            provider_id="acme-outsourcing",
            skill="service-desk",
            current_fte=10,
            target_fte=15,
            effective_at=T0 + timedelta(hours=72),
            respond_by=T0 + timedelta(hours=24),
            plan_id=plan_id,
            reasons=["demand.forecast_up", "cheapest_eligible"],
            **common,
        ),
        CapacityResponded(
            id="resp-1",
            time=T0 + timedelta(hours=2),
            request_id="5f7c1e2a-0000-5000-8000-000000000001",
            provider_id="acme-outsourcing",
            status=ResponseStatus.PARTIAL,
            confirmed_fte=12,
            effective_at=T0 + timedelta(hours=72),
            note="two agents still in training",
            **common,
        ),
        AllocationPlanned(
            id="plan-evt-1",
            time=T0,
            plan_id=plan_id,
            as_of=T0,
            period_minutes=60,
            horizon_periods=2,
            allocations=[
                StreamAllocation(
                    stream_id="servicedesk-l1",
                    source_kind=SourceKind.TEAM,
                    source_id="sd-lisbon",
                    skill="service-desk",
                    fte=[10.0, 12.5],
                )
            ],
            provider_levels=[
                ProviderLevel(provider_id="acme-outsourcing", skill="service-desk", fte=[10, 15])
            ],
            service=[
                StreamService(
                    stream_id="servicedesk-l1",
                    required_fte=[10, 14],
                    staffed_fte=[10, 12.5],
                    unmet_fte=[0, 1.5],
                    expected_service_level=[0.82, 0.71],
                )
            ],
            cost=CostBreakdown(internal=855.0, providers=800.0, penalties=30.0, total=1685.0),
            solver=SolverStats(
                backend="scip",
                status=SolverStatus.OPTIMAL,
                objective=1685,
                gap=0.0,
                solve_seconds=0.05,
            ),
            **common,
        ),
        ScalingDecided(
            id="dec-1",
            time=T0,
            decision_id="dec-0001",
            plan_id=plan_id,
            target_kind=SourceKind.PROVIDER,
            target_id="acme-outsourcing",
            skill="service-desk",
            direction=Direction.UP,
            from_fte=10,
            to_fte=15,
            effective_at=T0 + timedelta(hours=72),
            reason_codes=["demand.forecast_up"],
            reason="forecast exceeds in-house capacity from Thursday",
            **common,
        ),
        AllocationLogged(
            id="log-1",
            time=T0,
            kind="plan.solved",
            message="plan solved to optimality",
            plan_id=plan_id,
            attrs={"solve_seconds": 0.05, "gap": 0.0},
            **common,
        ),
        DeadLetter(
            id="dlq-1",
            time=T0,
            original_topic="ops.ticket-volume",
            partition=0,
            offset=17,
            original_key="servicedesk-l1",
            original_value_b64="e30=",
            stage=DeadLetterStage.VALIDATE,
            error_class="ValidationError",
            reason="arrivals: Input should be greater than or equal to 0",
            **common,
        ),
    ]


# -- hypothesis strategies -------------------------------------------------------------------

identifiers = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)
event_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,40}", fullmatch=True)
aware_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
ftes = st.floats(min_value=0, max_value=10_000, allow_nan=False, allow_infinity=False)


@st.composite
def ticket_volumes(draw: st.DrawFn) -> TicketVolumeObserved:
    minutes = draw(st.sampled_from([5, 15, 30, 60]))
    day = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
    slot = draw(st.integers(0, 1440 // minutes - 1))
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=slot * minutes)
    arrivals = draw(st.integers(0, 100_000))
    return TicketVolumeObserved(
        id=draw(event_ids),
        source=SRC,
        time=start + timedelta(minutes=draw(st.integers(0, 10_000))),
        domain=draw(identifiers),
        queue_id=draw(identifiers),
        interval_start=start,
        interval_minutes=minutes,
        arrivals=arrivals,
        backlog=draw(st.integers(0, 1_000_000)),
        abandoned=draw(st.integers(0, arrivals)),
        mean_handle_time_s=draw(st.none() | st.floats(0.5, 86_400)),
    )


@st.composite
def contracts(draw: st.DrawFn) -> ProviderContractUpdated:
    skills = draw(st.lists(identifiers, min_size=1, max_size=4, unique=True))
    rates = []
    for skill in skills:
        starts = sorted(draw(st.lists(ftes, max_size=3, unique=True).map(lambda xs: set(xs) - {0})))
        tiers = [RateTier(from_fte=s, rate_per_hour=draw(st.floats(1, 500))) for s in [0, *starts]]
        rates.append(SkillRate(skill=skill, tiers=tiers))
    low = draw(ftes)
    return ProviderContractUpdated(
        id=draw(event_ids),
        source=SRC,
        time=draw(aware_times),
        domain=draw(identifiers),
        provider_id=draw(identifiers),
        contract_id=draw(identifiers),
        rates=rates,
        min_fte=low,
        max_fte=low + draw(ftes),
        fte_block=draw(st.floats(0.5, 50)),
        ramp_up_lead_time_hours=draw(st.floats(0, 2000)),
        ramp_down_notice_hours=draw(st.floats(0, 2000)),
        regions=draw(st.lists(identifiers, min_size=1, max_size=3)),
        certifications=draw(st.lists(identifiers, max_size=3)),
        quality_score=draw(st.floats(0, 1)),
        status=draw(st.sampled_from(["active", "suspended"])),
        valid_from=draw(aware_times),
    )


@st.composite
def queues(draw: st.DrawFn) -> QueueDefined:
    sla = draw(
        st.builds(
            AnswerWithinSla,
            target_fraction=st.floats(0.05, 0.99),
            within_seconds=st.floats(1, 3600),
        )
        | st.builds(
            ResolveWithinSla, target_fraction=st.floats(0.05, 0.99), within_hours=st.floats(1, 500)
        )
    )
    sensitivity = draw(st.sampled_from(list(Sensitivity)))
    return QueueDefined(
        id=draw(event_ids),
        source=SRC,
        time=draw(aware_times),
        domain=draw(identifiers),
        queue_id=draw(identifiers),
        skill=draw(identifiers),
        sla=sla,
        sensitivity=sensitivity,
        allowed_regions=draw(st.lists(identifiers, min_size=1, max_size=3)),
        core=draw(st.booleans()),
        default_handle_time_s=draw(st.floats(1, 86_400)),
        interval_minutes=draw(st.sampled_from([15, 30, 60])),
    )


any_event = st.one_of(ticket_volumes(), contracts(), queues(), st.sampled_from(sample_events()))
