"""CloudEvents 1.0 in Kafka binary mode: the one way flexforce events go on and off the wire.

Binary mode puts the context attributes in headers (``ce_specversion``, ``ce_id``, ``ce_source``,
``ce_type``, ``ce_time``, plus ``content-type``) and the event data, as JSON, in the value; the
Kafka key is the event's key. :func:`decode` is strict: anything it cannot vouch for raises
:class:`InvalidEvent` with a reason a person can act on, so the caller can dead-letter it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas.base import ENVELOPE_FIELDS, Event
from schemas.registry import EVENT_TYPES
from schemas.topics import MAX_INPUT_EVENT_BYTES

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time")

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class WireMessage:
    """A Kafka record as flexforce writes it: key, value and CloudEvents headers."""

    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class InvalidEvent(ValueError):
    """A message that is not a valid flexforce event; ``reason`` says why, for the dead letter."""

    def __init__(self, reason: str, error_class: str = "InvalidEvent", domain: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_class = error_class
        #: The planning domain, when the payload got far enough to tell.
        self.domain = domain


def encode(event: Event) -> WireMessage:
    """Serialise an event to a Kafka record in CloudEvents binary mode."""
    value = event.model_dump_json(exclude=set(ENVELOPE_FIELDS)).encode()
    headers = (
        ("ce_specversion", SPECVERSION.encode()),
        ("ce_id", event.id.encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", type(event).event_type.encode()),
        ("ce_time", event.time.isoformat().encode()),
        ("content-type", CONTENT_TYPE.encode()),
    )
    return WireMessage(key=event.key.encode(), value=value, headers=headers)


def _header_map(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, raw in headers:
        if name in found:
            raise InvalidEvent(f"header {name!r} appears twice", "DuplicateHeader")
        try:
            found[name] = (raw or b"").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"header {name!r} is not UTF-8", "BadHeader") from exc
    return found


def _explain(error: ValidationError) -> str:
    """One line per problem, with the field path, so an operator can fix the producer."""
    lines = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in item["loc"])
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def decode(
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes | None]],
    *,
    expected_types: Iterable[type[Event]] | None = None,
    max_bytes: int = MAX_INPUT_EVENT_BYTES,
) -> Event:
    """Turn a Kafka record back into a validated event, or raise :class:`InvalidEvent`.

    ``expected_types`` are the events allowed on the topic the record came from; an event of
    another type (even a valid one) is refused, because it would otherwise be silently ignored.
    """
    if value is None:
        raise InvalidEvent("record has no value (a tombstone is not an event)", "EmptyValue")
    if len(value) > max_bytes:
        raise InvalidEvent(
            f"value is {len(value)} bytes, over the {max_bytes}-byte limit", "OversizedEvent"
        )
    meta = _header_map(headers)
    missing = [name for name in REQUIRED_HEADERS if not meta.get(name)]
    if missing:
        raise InvalidEvent(f"missing CloudEvents headers: {', '.join(missing)}", "MissingHeader")
    if meta["ce_specversion"] != SPECVERSION:
        raise InvalidEvent(
            f"ce_specversion {meta['ce_specversion']!r} is not {SPECVERSION}", "BadSpecVersion"
        )
    content_type = meta.get("content-type", CONTENT_TYPE).split(";")[0].strip()
    if content_type != CONTENT_TYPE:
        raise InvalidEvent(f"content-type {content_type!r} is not {CONTENT_TYPE}", "BadContentType")
    event_class = EVENT_TYPES.get(meta["ce_type"])
    if event_class is None:
        raise InvalidEvent(f"unknown event type {meta['ce_type']!r}", "UnknownEventType")
    allowed = None if expected_types is None else tuple(expected_types)
    if allowed is not None and event_class not in allowed:
        names = ", ".join(sorted(t.event_type for t in allowed))
        raise InvalidEvent(
            f"event type {event_class.event_type} does not belong on this topic (expects {names})",
            "WrongTopic",
        )
    try:
        data: Any = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"value is not JSON: {exc}", "MalformedJson") from exc
    if not isinstance(data, dict):
        raise InvalidEvent("value must be a JSON object", "MalformedJson")
    raw_domain = data.get("domain")
    domain = raw_domain if isinstance(raw_domain, str) else ""
    clashes = sorted(ENVELOPE_FIELDS & data.keys())
    if clashes:
        raise InvalidEvent(
            f"{', '.join(clashes)} belong in ce_ headers, not in the data", "EnvelopeInData", domain
        )
    data |= {"id": meta["ce_id"], "source": meta["ce_source"], "time": meta["ce_time"]}
    try:
        event = event_class.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        raise InvalidEvent(
            f"{event_class.event_type}: {_explain(exc)}", "ValidationError", domain
        ) from exc
    expected_key = event.key.encode()
    if key != expected_key:
        raise InvalidEvent(
            f"Kafka key {key!r} does not match {event_class.key_field}={event.key!r}",
            "KeyMismatch",
            event.domain,
        )
    return event


_STANDARD_HEADERS = frozenset((*REQUIRED_HEADERS, "content-type"))


@cache
def _list_adapter(event_class: type[Event]) -> TypeAdapter[list[Event]]:
    return TypeAdapter(list[event_class])  # type: ignore[valid-type]


def _fast_envelope(
    value: bytes | None, headers: Iterable[tuple[str, bytes | None]], type_name: bytes
) -> bytes | None:
    """The value with the CloudEvents attributes spliced in, or None if the record needs the
    careful path (anything unusual: odd headers, escapes, envelope names in the data)."""
    if value is None or value[:1] != b"{" or value[1:2] == b"}":
        return None
    if b'"id"' in value or b'"source"' in value or b'"time"' in value:
        return None  # an envelope attribute in the data: refused by the careful path
    headers = list(headers)
    if len(headers) != len(_STANDARD_HEADERS):
        return None
    # Headers in the order :func:`encode` writes them: checked by position, no dict (this runs
    # once per ticket volume). Any other order takes the general check below.
    (n0, spec), (n1, ce_id), (n2, ce_source), (n3, ce_type), (n4, ce_time), (n5, ctype) = headers
    if (
        n0 != "ce_specversion"
        or n1 != "ce_id"
        or n2 != "ce_source"
        or n3 != "ce_type"
        or n4 != "ce_time"
        or n5 != "content-type"
    ):
        found = dict(headers)
        if found.keys() != _STANDARD_HEADERS:
            return None
        spec, ce_type, ctype = found["ce_specversion"], found["ce_type"], found["content-type"]
        ce_id, ce_source, ce_time = found["ce_id"], found["ce_source"], found["ce_time"]
    if spec != b"1.0" or ce_type != type_name or ctype != b"application/json":
        return None
    if not (ce_id and ce_source and ce_time):
        return None
    envelope = ce_id + ce_source + ce_time
    if b'"' in envelope or b"\\" in envelope:
        return None
    if not envelope.isascii():
        return None
    return b'{"id":"%s","source":"%s","time":"%s",%s' % (ce_id, ce_source, ce_time, value[1:])


def decode_many(
    records: Sequence[tuple[bytes | None, bytes | None, Headers]],
    event_class: type[Event],
    *,
    max_bytes: int = MAX_INPUT_EVENT_BYTES,
) -> list[Event | InvalidEvent]:
    """Decode a batch of records of one topic: the same verdicts as :func:`decode`, faster.

    The hot ingest path (ticket volumes, tens of thousands a second) cannot afford a Python
    round trip per record, so well-formed records are validated together in one pydantic call;
    any record that is unusual, or that fails, is decoded on its own by :func:`decode` so that
    its refusal carries exactly the same reason as anywhere else.
    """
    results: list[Event | InvalidEvent | None] = [None] * len(records)
    type_name = event_class.event_type.encode()
    fast: list[int] = []
    parts: list[bytes] = []
    for index, (_key, value, headers) in enumerate(records):
        spliced = None
        if value is not None and len(value) <= max_bytes:
            spliced = _fast_envelope(value, headers, type_name)
        if spliced is None:
            results[index] = _decode_or_refusal(records[index], event_class, max_bytes)
        else:
            fast.append(index)
            parts.append(spliced)
    adapter = _list_adapter(event_class)
    while fast:
        try:
            events = adapter.validate_json(b"[" + b",".join(parts) + b"]", strict=True)
        except ValidationError as exc:
            failed = {fast[int(err["loc"][0])] for err in exc.errors() if err["loc"]}
            if not failed:  # not attributable to one item: be careful with every one
                failed = set(fast)
            for index in failed:
                results[index] = _decode_or_refusal(records[index], event_class, max_bytes)
            kept = [(i, part) for i, part in zip(fast, parts, strict=True) if i not in failed]
            fast, parts = [i for i, _ in kept], [part for _, part in kept]
            continue
        for index, event in zip(fast, events, strict=True):
            key = records[index][0]
            if key != event.key.encode():
                results[index] = _decode_or_refusal(records[index], event_class, max_bytes)
            else:
                results[index] = event
        break
    return [r for r in results if r is not None]


def _decode_or_refusal(
    record: tuple[bytes | None, bytes | None, Headers], event_class: type[Event], max_bytes: int
) -> Event | InvalidEvent:
    key, value, headers = record
    try:
        return decode(key, value, headers, expected_types=[event_class], max_bytes=max_bytes)
    except InvalidEvent as refusal:
        return refusal


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time (as in ``ce_time``), refusing naive values."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return moment
