"""flexforce event contract: versioned CloudEvents carried on Kafka.

Import events from here; :mod:`schemas.wire` turns them into Kafka records and back, and
:mod:`schemas.topics` says which topic each one lives on.
"""

from schemas.allocation import (
    AllocationLogged,
    AllocationPlanned,
    CostBreakdown,
    Direction,
    Explanation,
    LogLevel,
    MarginalValue,
    ProviderLevel,
    ScalingDecided,
    SolverStats,
    SolverStatus,
    SourceKind,
    StreamAllocation,
    StreamService,
    WatermarkEntry,
)
from schemas.base import Event, Sensitivity
from schemas.deadletter import DeadLetter, DeadLetterHeader, DeadLetterStage
from schemas.ops import (
    AnswerWithinSla,
    ProjectDemandChanged,
    ProjectStatus,
    QueueDefined,
    QueueStatus,
    ResolveWithinSla,
    TeamCapacityUpdated,
    TicketVolumeObserved,
)
from schemas.providers import (
    CapacityRequested,
    CapacityResponded,
    ContractStatus,
    ProviderContractUpdated,
    RateTier,
    ResponseStatus,
    SkillRate,
    capacity_request_id,
)
from schemas.registry import ALL_EVENTS, EVENT_TYPES
from schemas.wire import InvalidEvent, WireMessage, decode, encode

__all__ = [
    "ALL_EVENTS",
    "EVENT_TYPES",
    "AllocationLogged",
    "AllocationPlanned",
    "AnswerWithinSla",
    "CapacityRequested",
    "CapacityResponded",
    "ContractStatus",
    "CostBreakdown",
    "DeadLetter",
    "DeadLetterHeader",
    "DeadLetterStage",
    "Direction",
    "Event",
    "Explanation",
    "InvalidEvent",
    "LogLevel",
    "MarginalValue",
    "ProjectDemandChanged",
    "ProjectStatus",
    "ProviderContractUpdated",
    "ProviderLevel",
    "QueueDefined",
    "QueueStatus",
    "RateTier",
    "ResolveWithinSla",
    "ResponseStatus",
    "ScalingDecided",
    "Sensitivity",
    "SkillRate",
    "SolverStats",
    "SolverStatus",
    "SourceKind",
    "StreamAllocation",
    "StreamService",
    "TeamCapacityUpdated",
    "TicketVolumeObserved",
    "WatermarkEntry",
    "WireMessage",
    "capacity_request_id",
    "decode",
    "encode",
]
