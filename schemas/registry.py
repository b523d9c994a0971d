"""Every event type flexforce knows, by its CloudEvents ``type``."""

from __future__ import annotations

from schemas.allocation import AllocationLogged, AllocationPlanned, ScalingDecided
from schemas.base import Event
from schemas.deadletter import DeadLetter
from schemas.ops import (
    ProjectDemandChanged,
    QueueDefined,
    TeamCapacityUpdated,
    TicketVolumeObserved,
)
from schemas.providers import CapacityRequested, CapacityResponded, ProviderContractUpdated

ALL_EVENTS: tuple[type[Event], ...] = (
    QueueDefined,
    TicketVolumeObserved,
    ProjectDemandChanged,
    TeamCapacityUpdated,
    ProviderContractUpdated,
    CapacityRequested,
    CapacityResponded,
    AllocationPlanned,
    ScalingDecided,
    AllocationLogged,
    DeadLetter,
)

EVENT_TYPES: dict[str, type[Event]] = {event.event_type: event for event in ALL_EVENTS}
