"""The event contract: every event round-trips through the wire format; bad input is refused."""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from schemas import (
    CapacityRequested,
    Event,
    ProviderContractUpdated,
    TicketVolumeObserved,
    capacity_request_id,
)
from schemas.registry import ALL_EVENTS
from schemas.topics import ALL_TOPICS, spec_for, topic_for
from schemas.wire import InvalidEvent, WireMessage, decode, decode_many, encode
from tests.samples import T0, any_event, sample_events, ticket_volumes


def test_every_event_type_has_a_sample() -> None:
    assert {type(e) for e in sample_events()} == set(ALL_EVENTS)


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: type(e).__name__)
def test_sample_round_trips(event: Event) -> None:
    message = encode(event)
    headers = dict(message.headers)
    assert headers["ce_type"] == type(event).event_type.encode()
    assert headers["ce_id"] == event.id.encode()
    assert message.key == event.key.encode()
    assert "id" not in json.loads(message.value)
    expected = spec_for(topic_for(event)).event
    assert decode(message.key, message.value, message.headers, expected_types=[expected]) == event


@given(any_event)
@settings(max_examples=300, deadline=None)
def test_any_valid_event_round_trips(event: Event) -> None:
    message = encode(event)
    assert decode(message.key, message.value, message.headers) == event


def _volume_message(**data_changes: object) -> WireMessage:
    event = sample_events()[1]
    assert isinstance(event, TicketVolumeObserved)
    message = encode(event)
    data = json.loads(message.value) | data_changes
    return WireMessage(message.key, json.dumps(data).encode(), message.headers)


def _with_header(message: WireMessage, name: str, value: bytes | None) -> WireMessage:
    headers = tuple((k, v) for k, v in message.headers if k != name)
    if value is not None:
        headers += ((name, value),)
    return WireMessage(message.key, message.value, headers)


INVALID = {
    "negative arrivals": (_volume_message(arrivals=-1), "ValidationError", "arrivals"),
    "float arrivals": (_volume_message(arrivals=4.5), "ValidationError", "arrivals"),
    "string count": (_volume_message(arrivals="4"), "ValidationError", "arrivals"),
    "misaligned interval": (
        _volume_message(interval_start="2026-11-30T08:07:00+00:00"),
        "ValidationError",
        "not aligned",
    ),
    "naive interval start": (
        _volume_message(interval_start="2026-11-30T08:00:00"),
        "ValidationError",
        "timezone",
    ),
    "naive event time": (
        _with_header(encode(sample_events()[1]), "ce_time", b"2026-11-30T08:15:00"),
        "ValidationError",
        "timezone",
    ),
    "unknown enum value": (
        WireMessage(
            encode(sample_events()[0]).key,
            json.dumps(
                json.loads(encode(sample_events()[0]).value) | {"sensitivity": "top-secret"}
            ).encode(),
            encode(sample_events()[0]).headers,
        ),
        "ValidationError",
        "sensitivity",
    ),
    "unknown field": (_volume_message(colour="blue"), "ValidationError", "colour"),
    "key mismatch": (
        WireMessage(
            b"another-queue", encode(sample_events()[1]).value, encode(sample_events()[1]).headers
        ),
        "KeyMismatch",
        "does not match queue_id",
    ),
    "oversized": (
        _volume_message(padding="x" * 300_000),
        "OversizedEvent",
        "over the",
    ),
    "missing type header": (
        _with_header(encode(sample_events()[1]), "ce_type", None),
        "MissingHeader",
        "ce_type",
    ),
    "unknown type": (
        _with_header(encode(sample_events()[1]), "ce_type", b"flexforce.ops.nope.v9"),
        "UnknownEventType",
        "unknown event type",
    ),
    "wrong spec version": (
        _with_header(encode(sample_events()[1]), "ce_specversion", b"0.3"),
        "BadSpecVersion",
        "0.3",
    ),
    "not json": (
        WireMessage(b"servicedesk-l1", b"{not json", encode(sample_events()[1]).headers),
        "MalformedJson",
        "not JSON",
    ),
    "json array": (
        WireMessage(b"servicedesk-l1", b"[1, 2]", encode(sample_events()[1]).headers),
        "MalformedJson",
        "object",
    ),
    "envelope in data": (_volume_message(id="other"), "EnvelopeInData", "ce_ headers"),
    "tombstone": (
        WireMessage(b"servicedesk-l1", None, encode(sample_events()[1]).headers),  # type: ignore[arg-type]
        "EmptyValue",
        "tombstone",
    ),
    "abandoned above arrivals": (_volume_message(abandoned=1000), "ValidationError", "abandoned"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_message_is_refused_with_a_reason(case: str) -> None:
    message, error_class, fragment = INVALID[case]
    with pytest.raises(InvalidEvent) as caught:
        decode(message.key, message.value, message.headers)
    assert caught.value.error_class == error_class
    assert fragment in caught.value.reason


def test_event_on_the_wrong_topic_is_refused() -> None:
    message = encode(sample_events()[1])
    with pytest.raises(InvalidEvent) as caught:
        decode(
            message.key, message.value, message.headers, expected_types=[ProviderContractUpdated]
        )
    assert caught.value.error_class == "WrongTopic"


def test_contract_with_min_above_max_is_refused() -> None:
    contract = sample_events()[4]
    data = json.loads(encode(contract).value) | {"min_fte": 80, "max_fte": 60}
    message = encode(contract)
    with pytest.raises(InvalidEvent, match=r"min_fte 80\.0 exceeds max_fte 60\.0"):
        decode(message.key, json.dumps(data).encode(), message.headers)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.sampled_from(sample_events()), st.data())
@settings(max_examples=400, deadline=None)
def test_mutated_payload_is_refused_or_valid_never_crashes(
    event: Event, data: st.DataObject
) -> None:
    """Replace one field with arbitrary JSON: decode either refuses it with a reason or yields
    an event that itself satisfies the contract (re-encodes to the same thing)."""
    message = encode(event)
    payload = json.loads(message.value)
    field = data.draw(st.sampled_from(sorted(payload)))
    payload[field] = data.draw(JSON_VALUES)
    value = json.dumps(payload).encode()
    try:
        decoded = decode(message.key, value, message.headers)
    except InvalidEvent as refused:
        assert refused.reason
        assert refused.error_class
    else:
        again = encode(decoded)
        assert decode(again.key, again.value, again.headers) == decoded


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_random_bytes_are_refused(value: bytes) -> None:
    headers = encode(sample_events()[1]).headers
    with pytest.raises(InvalidEvent):
        decode(b"servicedesk-l1", value, headers)


def test_request_ids_are_deterministic_and_distinct() -> None:
    at = T0 + timedelta(hours=72)
    first = capacity_request_id("plan-1", "acme", "service-desk", at)
    assert first == capacity_request_id("plan-1", "acme", "service-desk", at)
    assert first != capacity_request_id("plan-1", "acme", "service-desk", at + timedelta(hours=1))
    assert first != capacity_request_id("plan-1", "other", "service-desk", at)
    with pytest.raises(ValueError, match="timezone"):
        capacity_request_id("plan-1", "acme", "service-desk", datetime(2026, 1, 1))


def test_capacity_requests_go_to_the_providers_own_topic() -> None:
    request = next(e for e in sample_events() if isinstance(e, CapacityRequested))
    assert topic_for(request) == "providers.acme-outsourcing.capacity-requests"
    assert spec_for(topic_for(request)).event is CapacityRequested


def test_topic_table_covers_every_event_and_compacts_catalogues() -> None:
    by_name = {spec.name: spec for spec in ALL_TOPICS}
    assert by_name["ops.queues"].kafka_configs()["cleanup.policy"] == "compact"
    assert by_name["ops.workforce"].compacted and by_name["providers.contracts"].compacted
    assert not by_name["ops.ticket-volume"].compacted
    covered = {spec.event for spec in ALL_TOPICS} | {CapacityRequested}
    assert covered | {spec_for("ops.queues.dlq").event} == set(ALL_EVENTS)


def _verdict(outcome: Event | InvalidEvent) -> object:
    return (outcome.error_class, outcome.reason) if isinstance(outcome, InvalidEvent) else outcome


@given(st.lists(st.tuples(ticket_volumes(), st.integers(0, 6), st.data()), max_size=30))
@settings(max_examples=150, deadline=None)
def test_batch_decode_gives_the_same_verdicts_as_one_by_one(
    items: list[tuple[TicketVolumeObserved, int, st.DataObject]],
) -> None:
    """The hot path validates many records in one call; every verdict (event, or refusal with
    its class and reason) must be exactly what the careful one-record path gives."""
    records = []
    for event, damage, data in items:
        message = encode(event)
        key, value, headers = message.key, message.value, list(message.headers)
        if damage == 1:  # break one field
            payload = json.loads(value)
            payload[data.draw(st.sampled_from(sorted(payload)))] = data.draw(JSON_VALUES)
            value = json.dumps(payload).encode()
        elif damage == 2:
            key = b"other-" + key
        elif damage == 3:  # envelope attribute smuggled into the data
            value = value[:-1] + b', "id": "x"}'
        elif damage == 4:
            headers = [(k, b'say "hi"' if k == "ce_source" else v) for k, v in headers]
        elif damage == 5:
            value = data.draw(st.binary(max_size=40))
        records.append((key, value, headers))
    batch = decode_many(records, TicketVolumeObserved)
    one_by_one = [_decode_quietly(*record) for record in records]
    assert [_verdict(o) for o in batch] == [_verdict(o) for o in one_by_one]


def _decode_quietly(key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> object:
    try:
        return decode(key, value, headers, expected_types=[TicketVolumeObserved])
    except InvalidEvent as refusal:
        return refusal


def _float_fields(model: type[BaseModel], path: str) -> Iterator[tuple[str, FieldInfo]]:
    for name, info in model.model_fields.items():
        stack: list[Any] = [info.annotation]
        while stack:
            ann = stack.pop()
            if ann is float:
                yield f"{path}.{name}", info
            elif isinstance(ann, type) and issubclass(ann, BaseModel):
                yield from _float_fields(ann, f"{path}.{name}")
            stack += typing.get_args(ann)


def test_no_input_float_admits_nan_or_infinity() -> None:
    """Inputs are finite numbers: the internal hand-over writes JSON with orjson, which has no
    NaN or infinity (it would write null), and the planner has no use for either."""
    fields = [
        found
        for spec in ALL_TOPICS
        if spec.is_input
        for found in _float_fields(spec.event, spec.event.__name__)
    ]
    assert len(fields) >= 15, [path for path, _ in fields]  # rates, FTEs, SLAs, handle times
    admitted = []
    for path, info in fields:
        adapter: TypeAdapter[float] = TypeAdapter(Annotated[float, *info.metadata])
        for bad in (math.nan, math.inf):
            for validate, value in (
                (adapter.validate_python, bad),
                (adapter.validate_json, json.dumps(bad)),
            ):
                try:
                    validate(value)
                except ValidationError:
                    continue
                admitted.append(f"{path} admits {value!r}")
    assert not admitted
