"""Planner configuration: every threshold the functional core uses, in one validated object.

Why a frozen dataclass and not settings: the core is pure, so configuration arrives as a value
(the shell builds it from ``services.config.Settings``); freezing it means one processor can
never see its rules change half-way through a stream, which replay determinism relies on.
All durations are *event-time* durations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from allocator import Policy
from allocator.forecast import DEFAULT_METHOD, METHODS

#: Monday 2000-01-03 00:00 UTC: interval indices count from here, so index % day and
#: index % week are the time-of-day and hour-of-week slots the forecasters learn.
DEFAULT_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)


class _Durations(NamedTuple):
    period: timedelta
    lateness: timedelta
    control_lateness: timedelta
    max_lateness: timedelta
    interval_grace: timedelta
    close_delay: timedelta
    dedupe_window: timedelta
    min_replan: timedelta
    max_staleness: timedelta
    cap_duration: timedelta
    respond_window: timedelta
    horizon: timedelta


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    """How one domain is planned (see ``services/domain/__init__.py`` for the semantics)."""

    period_minutes: int = 60
    """Planning period length; ``as_of`` is rounded up to a multiple of it from ``origin``."""
    horizon_periods: int = 168
    """Periods in the rolling horizon (168 hourly periods = one week)."""
    allowed_lateness_minutes: int = 60
    """Disorder bound for ticket volumes (and, by default, every input): an event is final once
    the watermark (newest event time seen) is more than this past its time, and refused as
    late when it arrives after that. Events are applied in event-time order at that point."""
    control_lateness_minutes: int | None = None
    """The same bound for catalogue events and provider responses; None = the ticket one.
    Smaller = a rejection or contract change is acted on sooner (in event time), but such an
    event must then reach the domain within this much of the newest ticket time, or it is
    refused as late."""
    interval_grace_minutes: int | None = None
    """Reports of an interval made up to this long after its end still count (corrections);
    later ones are refused as late. None = ``allowed_lateness_minutes``. The interval closes
    once its end + grace is final, i.e. when the watermark passes end + grace + lateness."""
    dedupe_window_minutes: int | None = None
    """How long event ids are remembered (event time); None = max(2 × lateness, 24 h)."""
    min_replan_minutes: int = 30
    """Debounce: at most one plan per this much event time, except for urgent triggers."""
    max_staleness_minutes: int = 360
    """Re-plan when the last plan is this old (event time), even without another trigger."""
    replan_on_interval_close: bool = True
    """Treat every interval close as a (debounced) trigger; off = forecast change only."""
    forecast_change_threshold: float = 0.10
    """Relative change of a queue's forecast vs the last plan that triggers a re-plan."""
    forecast_check_periods: int = 24
    """Periods ahead compared for the forecast-change trigger."""
    forecast_method: str = DEFAULT_METHOD
    service_target_margin: float = 0.0
    """Plan queues to a stricter service target than their SLA: target + margin × (1 −
    target), e.g. 0.5 plans an 80 % target to 90 %. The workforce-management "planning
    target": a buffer against forecast error, bought where the SLA is worth more than its
    price says. 0 plans to the SLA itself."""
    origin: datetime = DEFAULT_ORIGIN
    """Origin of interval indices and period rounding; should be a Monday midnight."""
    aht_alpha: float = 0.2
    """Weight of the newest interval in the smoothed mean handle time."""
    backlog_periods: int = 1
    """Backlog at the last closed interval is spread over this many first periods."""
    project_resolve_hours: float = 40.0
    """Resolve-within SLA given to projects (informational for the allocator)."""
    cap_hours: float = 168.0
    """How long a partial/rejected/timed-out provider line stays capped (event time)."""
    respond_window_hours: float = 24.0
    """``respond_by`` = min(effective_at, as_of + this)."""
    request_window_periods: int = 24
    """Changes whose latest request period is within this many periods are requested now;
    later ones stay in the plan and are requested by a later plan."""
    report_solver_times: bool = True
    """Put solve/build seconds in plans; off makes outputs byte-identical on replay."""
    currency: str = "EUR"
    source: str = "urn:flexforce:planner"
    policy: Policy = field(default_factory=Policy)
    provider_keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    """Per provider id, the HMAC key its responses must be signed with
    (:mod:`schemas.signing`); a keyed provider's unsigned or wrongly signed response is
    refused as forged. Providers without a key are trusted by principal (Kafka ACLs)."""
    _d: _Durations = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_d", self._durations())
        positive = {
            "period_minutes": self.period_minutes,
            "horizon_periods": self.horizon_periods,
            "forecast_check_periods": self.forecast_check_periods,
            "backlog_periods": self.backlog_periods,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"PlannerConfig.{name} must be >= 1, got {value}")
        if 1440 % self.period_minutes and self.period_minutes % 1440:
            raise ValueError("period_minutes must divide a day or be a multiple of a day")
        for name in ("allowed_lateness_minutes", "min_replan_minutes", "request_window_periods"):
            if getattr(self, name) < 0:
                raise ValueError(f"PlannerConfig.{name} must be >= 0")
        for name in ("control_lateness_minutes", "interval_grace_minutes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"PlannerConfig.{name} must be >= 0 or None")
        if not 0.0 <= self.service_target_margin < 1.0:
            raise ValueError("PlannerConfig.service_target_margin must be in [0, 1)")
        if self.max_staleness_minutes < 1:
            raise ValueError("PlannerConfig.max_staleness_minutes must be >= 1")
        if self.dedupe_window_minutes is not None and self.dedupe_window_minutes < 1:
            raise ValueError("PlannerConfig.dedupe_window_minutes must be >= 1")
        if self.dedupe_window_minutes is not None and self.dedupe_window < self.max_lateness:
            # a forgotten id must be one whose repeat is refused as late anyway
            raise ValueError("PlannerConfig.dedupe_window_minutes must be >= every lateness")
        if not self.forecast_change_threshold > 0:
            raise ValueError("PlannerConfig.forecast_change_threshold must be > 0")
        if self.forecast_method not in METHODS:
            raise ValueError(f"unknown forecast_method {self.forecast_method!r}: {METHODS}")
        if self.origin.tzinfo is None:
            raise ValueError("PlannerConfig.origin must be timezone-aware")
        if not 0 < self.aht_alpha <= 1:
            raise ValueError("PlannerConfig.aht_alpha must be in (0, 1]")
        for name in ("cap_hours", "respond_window_hours", "project_resolve_hours"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PlannerConfig.{name} must be > 0")

    def _durations(self) -> _Durations:
        """The derived durations, built once: the per-event path reads them many times."""
        minutes = timedelta(minutes=1)
        lateness = self.allowed_lateness_minutes * minutes
        control = (
            lateness
            if self.control_lateness_minutes is None
            else self.control_lateness_minutes * minutes
        )
        grace = (
            lateness
            if self.interval_grace_minutes is None
            else self.interval_grace_minutes * minutes
        )
        longest = max(lateness, control)
        dedupe = (
            max(2 * longest, timedelta(hours=24))
            if self.dedupe_window_minutes is None
            else self.dedupe_window_minutes * minutes
        )
        period = self.period_minutes * minutes
        return _Durations(
            period=period,
            lateness=lateness,
            control_lateness=control,
            max_lateness=longest,
            interval_grace=grace,
            close_delay=grace + lateness,
            dedupe_window=dedupe,
            min_replan=self.min_replan_minutes * minutes,
            max_staleness=self.max_staleness_minutes * minutes,
            cap_duration=timedelta(hours=self.cap_hours),
            respond_window=timedelta(hours=self.respond_window_hours),
            horizon=period * self.horizon_periods,
        )

    @property
    def period(self) -> timedelta:
        return self._d.period

    @property
    def lateness(self) -> timedelta:
        """Lateness of ticket volumes."""
        return self._d.lateness

    @property
    def control_lateness(self) -> timedelta:
        """Lateness of catalogue events and provider responses."""
        return self._d.control_lateness

    @property
    def max_lateness(self) -> timedelta:
        return self._d.max_lateness

    @property
    def interval_grace(self) -> timedelta:
        """How long after an interval's end a report of it still counts."""
        return self._d.interval_grace

    @property
    def close_delay(self) -> timedelta:
        """Watermark distance past an interval's end at which it closes: grace + lateness."""
        return self._d.close_delay

    @property
    def dedupe_window(self) -> timedelta:
        return self._d.dedupe_window

    @property
    def min_replan(self) -> timedelta:
        return self._d.min_replan

    @property
    def max_staleness(self) -> timedelta:
        return self._d.max_staleness

    @property
    def cap_duration(self) -> timedelta:
        return self._d.cap_duration

    @property
    def respond_window(self) -> timedelta:
        return self._d.respond_window

    @property
    def horizon(self) -> timedelta:
        return self._d.horizon

    def as_of(self, watermark: datetime) -> datetime:
        """The watermark rounded up to the next period boundary (counted from ``origin``).

        A watermark exactly on a boundary stays there: that period has not started yet in
        event time, so it is the first one the plan can still change.
        """
        step = self.period
        periods = -((self.origin - watermark) // step)  # ceil division on timedeltas
        return self.origin + periods * step
