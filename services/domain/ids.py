"""Deterministic identifiers and time text: the only source of ids in the functional core.

Why uuid5 everywhere: a recorded stream replayed into fresh topics must produce the same plan,
decision, request and event ids, so consumers can drop repeats by id and audits line up. Every
id is a uuid5 of a stable name built from ids that are themselves deterministic.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

#: Fixed forever: changing it would give every replayed output a new id.
OUTPUT_NAMESPACE = uuid.UUID("1c0b5d4e-6a3f-4f51-9d0e-7f2a61b8c9d3")


def derive_id(*parts: str) -> str:
    """A uuid5 of ``parts`` joined with ``|`` (parts must not be ambiguous themselves)."""
    return str(uuid.uuid5(OUTPUT_NAMESPACE, "|".join(parts)))


def iso(moment: datetime) -> str:
    """Canonical RFC 3339 text of an aware datetime (used in ids and in the state)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime in the domain core")
    return moment.isoformat()


def parse_time(text: str) -> datetime:
    """Inverse of :func:`iso`."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {text!r} in domain state")
    return moment


def chain_digest(previous: str, event_id: str) -> str:
    """Running digest of the applied event ids: identifies the input a plan was built from.

    Content-based (not offsets), so the same events replayed into fresh topics give the same
    digest and therefore the same plan ids.
    """
    return hashlib.sha256(f"{previous}|{event_id}".encode()).hexdigest()[:32]
