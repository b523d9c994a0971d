"""The ingest stage's ticket-volume fast path agrees with the careful decoder, record by record.

:func:`services.worker.volumes.volume_row` turns a canonical ticket-volume record straight into
its internal row, or answers None (decode the careful way). Whatever it accepts, the careful
path (:func:`schemas.wire.decode`) must accept too, and the row, event time and domain must be
exactly those of the decoded event; it must never accept what the careful path refuses. Checked
on random valid events and on records damaged at the byte level in the ways a producer could
get them wrong (or merely write them differently).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import TicketVolumeObserved
from schemas.ops import INTERVAL_MINUTES
from schemas.topics import MAX_INPUT_EVENT_BYTES
from schemas.wire import InvalidEvent, decode, encode
from services.worker.inbound import Inbound, row
from services.worker.volumes import volume_row
from tests.samples import ticket_volumes

TOPIC = "ops.ticket-volume"

#: JSON texts a field's value may be replaced with (valid, invalid, or merely unusual).
FIELD_TEXTS = [
    "0",
    "1",
    "-1",
    "01",
    "7",
    "10000001",
    "100000001",
    "99999999999999999999",
    "1.0",
    "1.5",
    "0.0",
    "-0.5",
    "1e3",
    "1E+2",
    "2.5e-3",
    "604800.0",
    "604800.0000001",
    "1e400",
    "true",
    "false",
    "null",
    '"60"',
    '"q1"',
    '"with space"',
    '"x\\u0041"',
    '"2026-01-05T00:00:00Z"',
    '"2026-01-05T00:00:00+00:00"',
    '"2026-01-05T00:00:00.5Z"',
    '"2026-01-05T00:00:00.000000Z"',
    '"2026-01-05T00:07:00Z"',
    '"2026-01-05T01:00:00+01:00"',
    '"2026-01-05T00:00:00"',
    '"2026-02-30T00:00:00Z"',
    '"2026-01-05T24:00:00Z"',
    '"2026-01-05T23:59:60Z"',
    '"0999-01-05T00:00:00Z"',
    "[]",
    "{}",
]

#: ce_time texts (the event time header).
TIMES = [
    "2026-01-05T00:00:00Z",
    "2026-01-05T00:00:00+00:00",
    "2026-01-05T00:30:00.250Z",
    "2026-01-05T00:30:00.123456+00:00",
    "2026-01-05T00:30:00.1234567Z",
    "2026-01-05T01:30:00+01:00",
    "2026-01-05T00:30:00",
    "2026-01-05 00:30:00Z",
    "2026-02-30T00:00:00Z",
    "1999-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
    "",
]

#: Texts a header may be replaced with.
HEADER_TEXTS = [
    b"",
    b"1.0",
    b"0.9",
    b"application/json; charset=utf-8",
    b"a b",
    b"x" * 501,
    b'"q"',
    b"caf\xc3\xa9",
    b"\xff",
    b"ctl\x01",
    b"flexforce.ops.queue.v1",
]

_FIELD = re.compile(rb'"([a-z_]+)":((?:"[^"]*")|[^,}]*)')


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    event: TicketVolumeObserved = draw(ticket_volumes())
    message = encode(event)
    key: bytes | None = message.key
    value: bytes | None = message.value
    headers = list(message.headers)
    for _ in range(draw(st.integers(0, 3))):
        damage = draw(st.integers(0, 12))
        if value is None:
            break
        try:
            payload = json.loads(value)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not payload:
            damage = 5 if damage in (0, 3, 4, 12) else damage  # no field-level damage now
        if damage == 0:  # one field's value replaced by another JSON text
            fields = [m.group(1) for m in _FIELD.finditer(value)]
            if not fields:
                continue
            name = draw(st.sampled_from(fields))
            text = draw(st.sampled_from(FIELD_TEXTS)).encode()
            pattern = rb'"' + name + rb'":(?:"[^"]*"|[^,}]*)'
            replacement = b'"' + name + b'":' + text
            value = re.sub(pattern, replacement.replace(b"\\", b"\\\\"), value)
        elif damage == 1:  # the event time header
            time = draw(st.sampled_from(TIMES)).encode()
            headers = [(k, time if k == "ce_time" else v) for k, v in headers]
        elif damage == 2:
            key = draw(st.sampled_from([None, b"", b"other", key + b"x" if key else b"x"]))
        elif damage == 3:  # another layout of the same data
            assert payload is not None
            order = draw(st.permutations(sorted(payload)))
            value = json.dumps({k: payload[k] for k in order}).encode()
        elif damage == 4:  # a field dropped or added
            assert payload is not None
            if draw(st.booleans()):
                payload.pop(draw(st.sampled_from(sorted(payload))))
            else:
                payload[draw(st.sampled_from(["extra", "id", "time", "source"]))] = "x"
            value = json.dumps(payload, separators=(",", ":")).encode()
        elif damage == 5:
            headers = draw(st.permutations(headers))
        elif damage == 6:
            name = draw(st.sampled_from([h for h, _ in headers]))
            headers = [h for h in headers if h[0] != name]
        elif damage == 7:
            name = draw(st.sampled_from([h for h, _ in headers]))
            text = draw(st.sampled_from(HEADER_TEXTS))
            headers = [(h, text if h == name else v) for h, v in headers]
        elif damage == 8:
            value = value[: draw(st.integers(0, len(value)))]
        elif damage == 9:
            value = value.replace(b",", b", ", 1)
        elif damage == 10:
            value = None
        elif damage == 11:
            headers = [*headers, ("ce_extension", b"1")]
        elif damage == 12:  # near the abandoned <= arrivals edge, in the canonical layout
            assert payload is not None
            if isinstance(payload.get("arrivals"), int):
                payload["abandoned"] = max(0, payload["arrivals"] + draw(st.integers(-1, 1)))
            value = json.dumps(payload, separators=(",", ":")).encode()
    return key, value, headers


def _careful(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> TicketVolumeObserved | InvalidEvent:
    try:
        event = decode(key, value, headers, expected_types=[TicketVolumeObserved])
    except InvalidEvent as refusal:
        return refusal
    assert isinstance(event, TicketVolumeObserved)
    return event


def check(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> bool:
    """Asserts the agreement; True when the fast path took the record."""
    fast = volume_row(key, value, headers, TOPIC, 4, 123, MAX_INPUT_EVENT_BYTES)
    careful = _careful(key, value, headers)
    if fast is None:
        return False
    assert isinstance(careful, TicketVolumeObserved), (value, headers, careful)
    time, domain, fast_row = fast
    assert fast_row == row(Inbound(careful, TOPIC, 4, 123))
    assert json.dumps(fast_row) == json.dumps(row(Inbound(careful, TOPIC, 4, 123)))
    assert time == careful.time and time.utcoffset() == careful.time.utcoffset()
    assert domain == careful.domain
    return True


@given(records())
@settings(max_examples=1500, deadline=None)
def test_fast_rows_are_the_careful_decoders_rows(
    record: tuple[bytes | None, bytes | None, list[tuple[str, bytes]]],
) -> None:
    check(*record)


@given(ticket_volumes())
@settings(max_examples=300, deadline=None)
def test_canonical_records_take_the_fast_path(event: TicketVolumeObserved) -> None:
    message = encode(event)
    assert check(message.key, message.value, list(message.headers))


@given(ticket_volumes(), st.sampled_from(TIMES[:5]), st.integers(0, 999_999))
@settings(max_examples=300, deadline=None)
def test_times_with_fractions_and_offsets(
    event: TicketVolumeObserved, time: str, micros: int
) -> None:
    shifted = event.model_copy(
        update={"time": max(event.time.replace(microsecond=micros), event.interval_start)}
    )
    message = encode(shifted)
    assert check(message.key, message.value, list(message.headers))
    parsed = datetime.fromisoformat(time)
    if parsed >= event.interval_start:
        headers = [(k, time.encode() if k == "ce_time" else v) for k, v in message.headers]
        check(message.key, message.value, headers)


@given(
    st.datetimes(
        min_value=datetime(1990, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), ZoneInfo("Europe/Berlin")]
        ),
    ),
    st.sampled_from(INTERVAL_MINUTES),
)
@settings(max_examples=500, deadline=None)
def test_alignment_rule_is_the_timedelta_one(start: datetime, minutes: int) -> None:
    """``TicketVolumeObserved._check`` reads the time of day as integers; it must refuse
    exactly the starts the timedelta form (start - its midnight) % interval refuses."""
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    misaligned = bool((start - midnight) % timedelta(minutes=minutes))
    try:
        TicketVolumeObserved(
            id="x",
            source="urn:x",
            time=start + timedelta(minutes=minutes),
            domain="d",
            queue_id="q",
            interval_start=start,
            interval_minutes=minutes,
            arrivals=1,
        )
    except ValueError as exc:
        assert misaligned and "is not aligned" in str(exc)
    else:
        assert not misaligned
