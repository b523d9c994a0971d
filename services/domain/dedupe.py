"""Duplicate suppression by event id, with expiry in event time (bounded memory).

At-least-once delivery (ingest commits after forwarding, restarts replay uncommitted input)
means the same event can arrive twice. Ids are remembered with their event time and forgotten
once older than ``watermark - dedupe_window``; by then a repeat is harmless anyway: catalogue
updates are latest-wins (a repeat is a no-op), ticket volumes are late (refused), responses name
a request that is no longer outstanding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.domain.ids import iso, parse_time


@dataclass(slots=True)
class Deduper:
    seen: dict[str, datetime] = field(default_factory=dict)
    pruned_at: datetime | None = None

    def check_and_add(self, event_id: str, time: datetime) -> bool:
        """True when ``event_id`` is new (and remembers it), False for a duplicate."""
        if event_id in self.seen:
            return False
        self.seen[event_id] = time
        return True

    def prune(self, watermark: datetime, window: timedelta) -> None:
        """Forget ids older than the window; scans at most every quarter window."""
        if self.pruned_at is not None and watermark < self.pruned_at + window / 4:
            return
        horizon = watermark - window
        self.seen = {k: t for k, t in self.seen.items() if t >= horizon}
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
