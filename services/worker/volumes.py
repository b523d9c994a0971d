"""The ingest stage's fast path for ticket volumes: wire record → internal row, no model.

Nearly all input is ``TicketVolumeObserved`` in the exact form :func:`schemas.wire.encode`
writes it (headers in order, compact JSON with the fields in model order). For such a record
the stage needs only the event's time, its domain and its row of the internal message
(:func:`services.worker.inbound.row`); building the pydantic model first and then reading it
back into a row cost about two thirds of the stage's CPU per event.

:func:`volume_row` recognises that form with one regular expression and checks what the model
would check (identifier patterns, ranges, the allowed interval lengths, the model validator's
alignment / abandoned / time rules, the Kafka key) with plain comparisons. It answers ``None``
for anything it cannot vouch for — any other layout, escapes, other time offsets, ints where
floats belong, a failed check — and the caller then decodes the record the careful way
(:func:`services.kafka.decode_records`), which gives the verdict and the dead letter's reason.
So the fast path never refuses anything, and what it accepts, the model accepts with exactly
the values the row holds (``tests/test_fastpath_volumes.py`` checks both against
:func:`schemas.wire.decode` on random and damaged records).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from schemas import TicketVolumeObserved
from schemas.ops import INTERVAL_MINUTES

_ID = rb"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"  # base.IDENTIFIER_PATTERN, no escapes possible
_INT = rb"0|[1-9][0-9]{0,17}"
# RFC 3339 in UTC only (what encode writes); fromisoformat then rejects impossible dates
_TIME = (
    rb"[12][0-9]{3}-[0-9]{2}-[0-9]{2}"
    rb"T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|\+00:00)"
)
# a JSON float (fraction or exponent: a JSON int goes the careful way), no sign
_FLOAT = rb"(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+)"

_VALUE = re.compile(
    rb'\{"domain":"('
    + _ID
    + rb')","queue_id":"('
    + _ID
    + rb')","interval_start":"('
    + _TIME
    + rb')","interval_minutes":('
    + _INT
    + rb'),"arrivals":('
    + _INT
    + rb'),"backlog":('
    + _INT
    + rb'),"abandoned":('
    + _INT
    + rb'),"mean_handle_time_s":(null|'
    + _FLOAT
    + rb")\}",
    re.ASCII,
)
_CE_TIME = re.compile(_TIME, re.ASCII)
_EVENT_ID = re.compile(rb"[\x21-\x7e]{1,200}")  # base.EventId

_TYPE = TicketVolumeObserved.event_type.encode()
_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type")
_MINUTES = frozenset(INTERVAL_MINUTES)
_MAX_HANDLE_S = 7 * 86_400
_VOLUME_ROW = 0  # services.worker.inbound._VOLUME

Headers = Sequence[tuple[str, bytes | None]]


def volume_row(
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    topic: str,
    partition: int,
    offset: int,
    max_bytes: int,
) -> tuple[datetime, str, list[Any]] | None:
    """``(event time, domain, internal row)`` of a ticket-volume record in the canonical form
    that is valid, or None: decode it the careful way (see the module docstring)."""
    if value is None or len(value) > max_bytes:
        return None
    if len(headers) != 6:
        return None
    (n0, spec), (n1, ce_id), (n2, ce_source), (n3, ce_type), (n4, ce_time), (n5, ctype) = headers
    if (n0, n1, n2, n3, n4, n5) != _HEADERS:
        return None
    if spec != b"1.0" or ce_type != _TYPE or ctype != b"application/json":
        return None
    if not ce_id or not ce_source or not ce_time:
        return None
    if _EVENT_ID.fullmatch(ce_id) is None or len(ce_source) > 500 or not ce_source.isascii():
        return None
    if _CE_TIME.fullmatch(ce_time) is None:
        return None
    match = _VALUE.fullmatch(value)
    if match is None:
        return None
    domain, queue_id, start_text, minutes_text, arr, back, ab, handle = match.groups()
    if key != queue_id:
        return None
    minutes = int(minutes_text)
    arrivals = int(arr)
    backlog = int(back)
    abandoned = int(ab)
    if (
        minutes not in _MINUTES
        or arrivals > 10_000_000
        or backlog > 100_000_000
        or abandoned > 10_000_000
        or abandoned > arrivals
    ):
        return None
    mean_handle_time_s: float | None = None
    if handle != b"null":
        mean_handle_time_s = float(handle)
        if not 0 < mean_handle_time_s <= _MAX_HANDLE_S:  # also refuses inf and nan
            return None
    time_text = ce_time.decode()
    start_iso = start_text.decode()
    try:
        time = datetime.fromisoformat(time_text)
        start = datetime.fromisoformat(start_iso)
    except ValueError:  # e.g. February 30th
        return None
    # the model validator's alignment rule, on the time of day (UTC: the offset is zero)
    of_day = (start.hour * 3600 + start.minute * 60 + start.second) * 1_000_000
    if (of_day + start.microsecond) % (minutes * 60_000_000):
        return None
    if time < start:
        return None
    time_iso = _isoformat(time_text, time)
    start_iso = _isoformat(start_iso, start)
    domain_text = domain.decode()
    row = [
        _VOLUME_ROW,
        topic,
        partition,
        offset,
        ce_id.decode(),
        ce_source.decode(),
        time_iso,
        domain_text,
        queue_id.decode(),
        start_iso,
        minutes,
        arrivals,
        backlog,
        abandoned,
        mean_handle_time_s,
    ]
    return time, domain_text, row


def _isoformat(text: str, moment: datetime) -> str:
    """``moment.isoformat()`` (``moment`` parsed from ``text``, a UTC time matched by
    ``_TIME``), without the call when the text is that already but for ``Z``: isoformat writes
    six fraction digits, none when the microseconds are zero. ``_TIME`` fixes the layout, so
    the length tells the fraction digits: 20 or 25 characters none, 27 or 32 six."""
    size = len(text)
    if size in (20, 25) if moment.microsecond == 0 else size in (27, 32):
        return text[:-1] + "+00:00" if text[-1] == "Z" else text
    return moment.isoformat()
