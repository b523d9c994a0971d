"""Service configuration from the environment (``FLEXFORCE_*``), validated at start.

Two client profiles exist because the embedded Tansu broker is not Apache Kafka: on ``embedded``
the producer is not idempotent (Tansu fails InitProducerId) and group timeouts are short (Tansu
makes every join wait half the session timeout). ``kafka`` is the profile for real clusters.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from aiokafka.helpers import create_ssl_context
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import validate_prefix


class ClientProfile(StrEnum):
    KAFKA = "kafka"
    EMBEDDED = "embedded"


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class Settings(BaseSettings):
    """Everything a flexforce process needs to reach Kafka and plan."""

    model_config = SettingsConfigDict(env_prefix="FLEXFORCE_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    client_profile: ClientProfile = ClientProfile.KAFKA
    client_id: str = "flexforce"
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    solver_time_limit_s: float = Field(10.0, gt=0, le=3600)
    planning_policy: str = Field("optimiser", pattern="^(optimiser|greedy|static)$")
    provider_keys_file: Path | None = Field(
        None,
        description="File of `provider_id=secret` lines: the HMAC keys providers sign their "
        "responses with (a keyed provider's unsigned or forged answer is refused).",
    )
    policy_sla_penalty_per_contact: float = Field(
        10.0, ge=0, description="Price of a contact not answered within target."
    )
    policy_unmet_work_penalty_per_hour: float = Field(
        200.0, ge=0, description="Price of an hour of project work left undone."
    )
    policy_churn_cost_per_fte: float = Field(
        0.0, ge=0, description="Paid per FTE of every provider level change."
    )
    policy_quality_penalty_per_fte_hour: float = Field(
        0.0, ge=0, description="Times (1 - quality score) per provider FTE-hour."
    )
    policy_core_in_house_share: float = Field(
        0.0, ge=0, le=1, description="Core streams: in-house share of their cover, at least."
    )
    policy_vendor_concentration_cap: float = Field(
        1.0, gt=0, le=1, description="Most any provider may hold of all outsourced FTE-hours."
    )
    policy_budget_cap: float | None = Field(
        None, ge=0, description="Spend cap per horizon (overrun is priced and reported)."
    )
    policy_max_occupancy: float = Field(0.85, gt=0, le=1, description="Erlang occupancy cap.")
    policy_level_change_hours: float = Field(
        8.0, ge=0, description="Provider levels change only every this many hours."
    )
    policy_internal_cost: str = Field(
        "rostered",
        pattern="^(rostered|assigned)$",
        description="rostered: teams are paid for their roster (idle time is free); "
        "assigned: each assigned in-house hour costs its wage.",
    )
    policy_demand_cv: float = Field(
        0.3,
        ge=0,
        le=2,
        description="Spread of arrivals around the forecast the optimiser prices "
        "(measured hourly forecast WAPE: 0.34-0.69).",
    )
    policy_understaffing_penalty_per_fte_hour: float = Field(
        0.0,
        ge=0,
        description="Price of each FTE-hour a queue is staffed below its Erlang requirement "
        "at target; above the dearest rate it makes the SLA target a floor.",
    )
    policy_request_cost_per_fte: float = Field(
        0.0,
        ge=0,
        description="Price of each FTE asked of a provider beyond what is committed or "
        "pending; damps plans that revise pending requests back and forth.",
    )
    service_target_margin: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Plan queues to target + margin x (1 - target) (0.5: an 80 % SLA is "
        "planned to 90 %), a buffer against forecast error; 0 plans to the SLA itself.",
    )
    allowed_lateness_minutes: int = Field(60, ge=0)
    control_lateness_minutes: int | None = Field(
        None, ge=0, description="Lateness of catalogue events and provider answers (default: same)."
    )
    interval_grace_minutes: int | None = Field(
        None, ge=0, description="How long after its interval a volume report still counts."
    )
    period_minutes: int = Field(60, gt=0)
    horizon_periods: int = Field(168, gt=0, le=24 * 90)
    min_replan_minutes: int = Field(30, ge=0)
    max_staleness_minutes: int = Field(360, ge=1)
    source: str = "urn:flexforce:service"
    app_id: str = Field("flexforce", pattern=r"^[A-Za-z0-9._-]+$")
    data_dir: Path = Path("flexforce-data")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    internal_partitions: int = Field(6, ge=1, le=1000)
    group_session_timeout_s: float = Field(
        6.0,
        ge=1.0,
        le=300.0,
        description=(
            "Consumer-group session timeout: how long a SIGKILLed worker keeps its domains "
            "before the group moves them (measured takeover ≈ this + 1–2 s). 6 s is Apache "
            "Kafka's default group.min.session.timeout.ms; raise it on brokers that require "
            "more or when long GC/network pauses cause false failovers."
        ),
    )
    changelog_replication_factor: int | None = Field(
        None,
        ge=1,
        le=10,
        description=(
            "Replication factor of the topics the worker's Faust app creates (its tables' "
            "changelogs, the assignor's topic). Default: min(3, brokers) for the changelogs, "
            "1 for the rest; set 3 on a production cluster."
        ),
    )
    exactly_once: bool = Field(
        False,
        description=(
            "Not supported: `true` is refused at start. Delivery is at least once with "
            'deterministic output ids (docs/worker.md, "Delivery guarantee").'
        ),
    )

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return validate_prefix(value)

    @model_validator(mode="after")
    def _security(self) -> Self:
        sasl = self.security_protocol in (
            SecurityProtocol.SASL_SSL,
            SecurityProtocol.SASL_PLAINTEXT,
        )
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol {self.security_protocol.value} needs FLEXFORCE_SASL_MECHANISM, "
                "FLEXFORCE_SASL_USERNAME and FLEXFORCE_SASL_PASSWORD"
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path} does not exist or is not a file")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile (mTLS) must be given together")
        if self.provider_keys_file is not None:
            self.provider_keys()  # a bad file fails at start, with its line
        if self.exactly_once:
            raise ValueError(
                "exactly_once is not supported: Faust's transactions (faust-streaming 0.15.3) "
                "group a worker's outputs by the partition they are sent to and commit them on "
                "a timer, not with the input message and the domain state that produced them, "
                "so a crash still repeats outputs (seen: a capacity request id twice in 2 of 4 "
                "runs, one run stalled), and the ingest stage is outside Faust anyway. Leave "
                "FLEXFORCE_EXACTLY_ONCE unset: delivery is at least once with deterministic "
                "ids, so consumers drop repeats by id (see docs/worker.md)"
            )
        return self

    def provider_keys(self) -> dict[str, bytes]:
        """The providers' HMAC keys from ``provider_keys_file`` (empty without one).

        One ``provider_id=secret`` per line; blank lines and ``#`` comments are skipped. The
        secrets never reach a log or an error message.
        """
        if self.provider_keys_file is None:
            return {}
        path = self.provider_keys_file
        if not path.is_file():
            raise ValueError(f"provider_keys_file {path} does not exist or is not a file")
        keys: dict[str, bytes] = {}
        for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            pid, sep, secret = line.partition("=")
            pid, secret = pid.strip(), secret.strip()
            if not sep or not pid or not secret:
                raise ValueError(f"provider_keys_file {path} line {n}: expected provider_id=secret")
            if pid in keys:
                raise ValueError(f"provider_keys_file {path} line {n}: provider {pid!r} twice")
            keys[pid] = secret.encode("utf-8")
        return keys

    def topic(self, logical: str) -> str:
        """Physical topic name for a logical one."""
        return self.topic_prefix + logical

    @property
    def embedded(self) -> bool:
        return self.client_profile is ClientProfile.EMBEDDED

    def client_options(self) -> dict[str, Any]:
        """Connection options shared by aiokafka producers, consumers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol.value,
        }
        if self.security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
            options["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
                password=self.ssl_key_password.get_secret_value()
                if self.ssl_key_password
                else None,
            )
        if self.sasl_mechanism is not None:
            options["sasl_mechanism"] = self.sasl_mechanism.value
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return options

    def producer_options(self) -> dict[str, Any]:
        """Idempotent, compressed producer on Kafka; a plain one on the embedded broker."""
        options = self.client_options() | {"linger_ms": 5, "max_batch_size": 256 * 1024}
        if self.embedded:
            return options | {"acks": 1, "max_request_size": 16 * 1024 * 1024}
        return options | {
            "enable_idempotence": True,
            "acks": "all",
            "compression_type": "gzip",
            "max_request_size": 16 * 1024 * 1024,
        }

    def consumer_options(self, group_id: str | None) -> dict[str, Any]:
        """Consumer options; short group timeouts so a dead worker is replaced in seconds."""
        options = self.client_options() | {
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed" if not self.embedded else "read_uncommitted",
            "fetch_max_bytes": 16 * 1024 * 1024,
            "max_partition_fetch_bytes": 16 * 1024 * 1024,
        }
        return options | {
            "session_timeout_ms": int(self.group_session_timeout_s * 1000),
            "heartbeat_interval_ms": int(self.group_heartbeat_interval_s * 1000),
        }

    @property
    def group_heartbeat_interval_s(self) -> float:
        """Heartbeats well inside the session (Kafka wants at most a third of it): a worker
        learns of a rebalance within a second and re-joins, so takeover is session-bound."""
        return min(1.0, self.group_session_timeout_s / 3)
