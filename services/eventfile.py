"""Event files (JSON lines or YAML): how operations systems, demos and tests seed events.

Each record is a mapping with ``type`` (the CloudEvents type, or the event class name), the
context attributes ``id``, ``source`` and ``time``, and the event's data fields. Optional ``key``
and ``topic`` override the Kafka key and logical topic — only useful to publish deliberately
wrong records (``--no-validate``) and watch them land in a dead-letter topic.

A record is turned into a Kafka message first and then validated with :func:`schemas.wire.decode`,
the same function the consumers use, so "valid in the file" means exactly "valid on the wire".
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from schemas import EVENT_TYPES, Event
from schemas.topics import spec_for
from schemas.wire import CONTENT_TYPE, SPECVERSION, InvalidEvent, decode

_BY_CLASS_NAME = {cls.__name__: cls for cls in EVENT_TYPES.values()}


class _StringTimestampLoader(yaml.SafeLoader):
    """YAML loader that leaves timestamps as text, so a naive time stays naive and is refused
    by the contract instead of being silently read as local time."""


_StringTimestampLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record of an event file as it will be sent: logical topic, key, value, headers."""

    line: int
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class EventFileError(ValueError):
    """A record of an event file that cannot even be turned into a Kafka message."""


def load_records(path: Path) -> list[dict[str, Any]]:
    """Read the mappings of a JSON-lines (``.jsonl``/``.ndjson``) or YAML file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in {".jsonl", ".ndjson", ".json"}:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise EventFileError(f"{path}:{number}: not JSON: {exc}") from exc
    else:
        records = []
        for document in yaml.load_all(text, Loader=_StringTimestampLoader):
            if isinstance(document, list):
                records.extend(document)
            elif document is not None:
                records.append(document)
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise EventFileError(f"{path}: record {number} is not a mapping")
    return records


def _event_class(type_name: object) -> type[Event]:
    if not isinstance(type_name, str):
        raise EventFileError("record has no 'type'")
    cls = EVENT_TYPES.get(type_name) or _BY_CLASS_NAME.get(type_name)
    if cls is None:
        raise EventFileError(f"unknown event type {type_name!r}")
    return cls


def to_raw(record: Mapping[str, Any], line: int = 0) -> RawRecord:
    """Build the Kafka message for a record exactly as written, without validating it."""
    data = dict(record)
    cls = _event_class(data.pop("type", None))
    topic = data.pop("topic", None)
    key = data.pop("key", None)
    envelope = {name: data.pop(name, None) for name in ("id", "source", "time")}
    if topic is None:
        try:
            topic = cls.topic.format(**data)
        except (KeyError, IndexError) as exc:
            raise EventFileError(f"record {line}: cannot tell its topic: missing {exc}") from exc
    if key is None:
        key = data.get(cls.key_field, "")
    headers = [("ce_specversion", SPECVERSION), ("ce_type", cls.event_type)]
    headers += [(f"ce_{name}", str(value)) for name, value in envelope.items() if value is not None]
    headers.append(("content-type", CONTENT_TYPE))
    return RawRecord(
        line=line,
        topic=str(topic),
        key=str(key).encode(),
        value=json.dumps(data, default=str).encode(),
        headers=tuple((name, value.encode()) for name, value in headers),
    )


def validate(raw: RawRecord) -> Event:
    """Validate a raw record as a consumer of its topic would; raises InvalidEvent."""
    spec = spec_for(raw.topic)
    return decode(
        raw.key, raw.value, raw.headers, expected_types=[spec.event], max_bytes=spec.max_event_bytes
    )


def read_event_file(path: Path) -> Iterator[tuple[RawRecord, Event | InvalidEvent]]:
    """Each record of a file as sent, with its validated event or the reason it is invalid."""
    for line, record in enumerate(load_records(path), start=1):
        raw = to_raw(record, line)
        try:
            yield raw, validate(raw)
        except InvalidEvent as refusal:
            yield raw, refusal
        except KeyError as unknown:
            yield raw, InvalidEvent(str(unknown), "UnknownTopic")
