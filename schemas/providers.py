"""Provider events: contracts, capacity requests sent to providers, and their answers."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.base import Event, Fte, Identifier, ProviderId, Text

#: Namespace for deterministic request ids (uuid5), fixed forever: changing it would make a
#: re-plan after an upgrade send every open request a second time.
REQUEST_ID_NAMESPACE = uuid.UUID("6f1c7c1e-5d1a-4b8e-9a53-3c3c1f0f2e01")


class RateTier(BaseModel):
    """Rate that applies to FTE at or above ``from_fte`` (until the next tier starts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_fte: Fte
    rate_per_hour: float = Field(gt=0, allow_inf_nan=False)


class SkillRate(BaseModel):
    """The rate card for one skill: volume tiers ordered by ``from_fte``, the first at 0."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    skill: Identifier
    tiers: list[RateTier] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _check(self) -> SkillRate:
        starts = [tier.from_fte for tier in self.tiers]
        if starts[0] != 0:
            raise ValueError(f"rate tiers of {self.skill} must start at from_fte=0")
        if any(b <= a for a, b in itertools.pairwise(starts)):
            raise ValueError(f"rate tiers of {self.skill} must have increasing from_fte")
        return self


class ContractStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class ProviderContractUpdated(Event):
    """The terms under which a provider sells capacity (compacted catalogue, key provider_id)."""

    event_type: ClassVar[str] = "flexforce.providers.contract.v1"
    key_field: ClassVar[str] = "provider_id"
    topic: ClassVar[str] = "providers.contracts"

    provider_id: ProviderId
    name: Text = ""
    contract_id: Identifier
    rates: list[SkillRate] = Field(min_length=1, max_length=100)
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    min_fte: Fte = Field(0, description="Minimum commitment while engaged.")
    max_fte: Fte = Field(description="Most FTE the provider can supply in total.")
    fte_block: float = Field(1.0, gt=0, le=1000, description="Capacity is bought in blocks.")
    ramp_up_lead_time_hours: float = Field(ge=0, le=24 * 365)
    ramp_down_notice_hours: float = Field(ge=0, le=24 * 365)
    regions: list[Identifier] = Field(min_length=1, max_length=100)
    certifications: list[Identifier] = Field(default_factory=list, max_length=50)
    quality_score: float = Field(1.0, ge=0, le=1)
    status: ContractStatus = ContractStatus.ACTIVE
    valid_from: AwareDatetime
    valid_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _check(self) -> ProviderContractUpdated:
        if self.min_fte > self.max_fte:
            raise ValueError(f"min_fte {self.min_fte} exceeds max_fte {self.max_fte}")
        skills = [rate.skill for rate in self.rates]
        if len(set(skills)) != len(skills):
            raise ValueError("a skill has two rate cards")
        if self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self

    @property
    def skills(self) -> list[str]:
        return [rate.skill for rate in self.rates]


def capacity_request_id(plan_id: str, provider_id: str, skill: str, effective_at: datetime) -> str:
    """Deterministic request id, so a re-plan or a restart never sends one request twice.

    The plan id is part of the input because a request answers one plan; the same plan replayed
    gives the same id, and consumers drop the repeat.
    """
    if effective_at.tzinfo is None:
        raise ValueError("effective_at must be timezone-aware")
    name = f"{plan_id}|{provider_id}|{skill}|{effective_at.isoformat()}"
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, name))


class CapacityRequested(Event):
    """flexforce asks one provider to move one skill to ``target_fte`` from ``effective_at``."""

    event_type: ClassVar[str] = "flexforce.providers.capacity_requested.v1"
    key_field: ClassVar[str] = "provider_id"
    topic: ClassVar[str] = "providers.{provider_id}.capacity-requests"

    request_id: Annotated[str, Field(min_length=1, max_length=100)]
    provider_id: ProviderId
    skill: Identifier
    current_fte: Fte
    target_fte: Fte
    effective_at: AwareDatetime
    respond_by: AwareDatetime
    plan_id: Annotated[str, Field(min_length=1, max_length=100)]
    reasons: list[Identifier] = Field(
        default_factory=list, max_length=50, description="Reason codes."
    )
    note: Text = ""

    @model_validator(mode="after")
    def _check(self) -> CapacityRequested:
        if self.respond_by > self.effective_at:
            raise ValueError("respond_by must not be after effective_at")
        if self.target_fte == self.current_fte:
            raise ValueError("a capacity request must change the level")
        return self


class ResponseStatus(StrEnum):
    ACCEPTED = "accepted"
    PARTIAL = "partial"
    REJECTED = "rejected"


class CapacityResponded(Event):
    """A provider's answer to a capacity request."""

    event_type: ClassVar[str] = "flexforce.providers.capacity_responded.v1"
    key_field: ClassVar[str] = "provider_id"
    topic: ClassVar[str] = "providers.capacity-responses"

    request_id: Annotated[str, Field(min_length=1, max_length=100)]
    provider_id: ProviderId
    status: ResponseStatus
    confirmed_fte: Fte
    effective_at: AwareDatetime
    note: Text = ""
    signature: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="Optional HMAC of the response by the provider's key."
    )
