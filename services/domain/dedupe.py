"""Duplicate suppression by event id, with expiry in event time (bounded memory).

At-least-once delivery (ingest commits after forwarding, restarts replay uncommitted input)
means the same event can arrive twice. Ids are remembered with their event time and forgotten
once older than ``watermark - dedupe_window``; by then a repeat is harmless anyway: catalogue
updates are latest-wins (a repeat is a no-op), ticket volumes are late (refused), responses name
a request that is no longer outstanding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.domain.ids import iso, parse_time

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_BUCKET_US = 3_600_000_000  # an hour


def _us(moment: datetime) -> int:
    """Microseconds since the Unix epoch (exact, so comparisons are those of the times)."""
    return (moment - _EPOCH) // _MICROSECOND


@dataclass(slots=True)
class Deduper:
    seen: dict[str, datetime] = field(default_factory=dict)
    pruned_at: datetime | None = None
    # Derived, not state: the ids of ``seen`` by hour of event time (µs since the epoch //
    # _BUCKET_US), with their time in µs, so a prune drops whole expired hours and looks only
    # at the hour the horizon falls in, instead of scanning every id (``seen`` holds a whole
    # input batch's ids, far ahead of the clock, while the clock walks through it: a scan per
    # prune was quadratic in the batch size).
    _buckets: dict[int, list[tuple[int, str]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self._buckets = {}
        for event_id, time in self.seen.items():
            time_us = _us(time)
            self._buckets.setdefault(time_us // _BUCKET_US, []).append((time_us, event_id))

    def check_and_add(self, event_id: str, time: datetime, time_us: int | None = None) -> bool:
        """True when ``event_id`` is new (and remembers it), False for a duplicate.
        ``time_us``: ``time`` in µs since the epoch, when the caller has it already."""
        if event_id in self.seen:
            return False
        self.seen[event_id] = time
        if time_us is None:
            time_us = _us(time)
        bucket = self._buckets.get(time_us // _BUCKET_US)
        if bucket is None:
            self._buckets[time_us // _BUCKET_US] = [(time_us, event_id)]
        else:
            bucket.append((time_us, event_id))
        return True

    def prune_due(self, window: timedelta) -> datetime | None:
        """The clock time from which :meth:`prune` does something (None: at once)."""
        return None if self.pruned_at is None else self.pruned_at + window / 4

    def prune(self, watermark: datetime, window: timedelta) -> None:
        """Forget ids older than the window; at most every quarter window.

        The same as keeping ``{k: t for k, t in seen.items() if t >= horizon}``: exactly the
        ids with ``t < horizon`` are deleted (every id of an hour before the horizon's, those
        of its hour that are before it), and deleting keeps the others in their order.
        """
        if self.pruned_at is not None and watermark < self.pruned_at + window / 4:
            return
        horizon = _us(watermark - window)
        edge = horizon // _BUCKET_US
        seen, buckets = self.seen, self._buckets
        for hour in [h for h in buckets if h <= edge]:
            bucket = buckets[hour]
            if hour < edge:
                for _, event_id in bucket:
                    del seen[event_id]
                del buckets[hour]
                continue
            kept = []
            for entry in bucket:
                if entry[0] < horizon:
                    del seen[entry[1]]
                else:
                    kept.append(entry)
            if kept:
                buckets[hour] = kept
            else:
                del buckets[hour]
        self.pruned_at = watermark

    def to_json(self) -> dict[str, Any]:
        return {
            "seen": {k: iso(t) for k, t in self.seen.items()},
            "pruned_at": None if self.pruned_at is None else iso(self.pruned_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deduper:
        pruned = data["pruned_at"]
        return cls(
            seen={k: parse_time(t) for k, t in data["seen"].items()},
            pruned_at=None if pruned is None else parse_time(pruned),
        )
