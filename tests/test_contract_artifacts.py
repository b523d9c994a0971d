"""The published contract artefacts: current, complete, well-formed and faithful to the models.

``schemas/json/*.json`` and ``schemas/asyncapi.yaml`` are what teams outside flexforce code
against, so they must never drift from the pydantic models (that would let a producer pass its own
validation and still be dead-lettered), must cover every event and topic, and must be documents
the AsyncAPI and JSON Schema tooling accepts.

No PyPI package ships the official AsyncAPI 3.0.0 JSON Schema in a usable form, so the AsyncAPI
document is checked structurally here: every reference resolves, every operation points at a
channel and at a message of that channel, parameters match addresses, bindings are typed as the
Kafka binding expects. The payload schemas are exercised with ``jsonschema`` against real events.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from schemas import generate
from schemas.base import ENVELOPE_FIELDS, Event
from schemas.providers import CapacityRequested, CapacityResponded
from schemas.registry import ALL_EVENTS
from schemas.topics import (
    ALL_TOPICS,
    CAPACITY_REQUESTS_TEMPLATE,
    DEAD_LETTER_SUFFIX,
    TopicSpec,
    spec_for,
    topic_for,
)
from schemas.wire import InvalidEvent, decode, encode
from tests.samples import any_event, sample_events

REGENERATE = "run `python -m schemas.generate` and commit the result"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The checked-in AsyncAPI document, as consumers load it."""
    loaded: dict[str, Any] = yaml.safe_load(generate.ASYNCAPI_PATH.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def data_schemas() -> dict[str, dict[str, Any]]:
    """The checked-in data schemas, by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(generate.JSON_DIR.glob("*.json"))
    }


@pytest.fixture(scope="module")
def jsonschema() -> ModuleType:
    """``jsonschema``, which belongs in the dev extras; skip (not fail) where it is missing."""
    module: ModuleType = pytest.importorskip("jsonschema", reason="pip install jsonschema (dev)")
    return module


def sample(event_class: type[Event]) -> Event:
    return next(event for event in sample_events() if type(event) is event_class)


# -- (a) the checked-in files are what the generator makes --------------------------------------


def test_checked_in_artefacts_are_up_to_date() -> None:
    stale = generate.stale_files()
    assert not stale, (
        "the contract artefacts do not match the models; "
        + REGENERATE
        + ":\n  "
        + "\n  ".join(stale)
    )


def test_generation_is_deterministic_and_round_trips() -> None:
    first, second = generate.render(), generate.render()
    assert first == second
    assert all(text.endswith("\n") and not text.endswith("\n\n") for text in first.values())
    document = generate.asyncapi_document()
    assert yaml.safe_load(generate.render_yaml(document)) == document
    assert "&id" not in first[generate.ASYNCAPI_PATH], "YAML anchors make the document hard to read"
    for name, schema in generate.json_schemas().items():
        assert json.loads(first[generate.JSON_DIR / name]) == schema


def test_check_mode_lists_stale_files_and_write_mode_fixes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "schemas"
    package.mkdir()
    monkeypatch.setattr(generate, "PACKAGE_DIR", package)
    monkeypatch.setattr(generate, "JSON_DIR", package / "json")
    monkeypatch.setattr(generate, "ASYNCAPI_PATH", package / "asyncapi.yaml")

    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0
    capsys.readouterr()

    volume = package / "json" / "flexforce.ops.ticket_volume.v1.json"
    volume.write_text(volume.read_text(encoding="utf-8").replace("arrivals", "arrival"))
    (package / "json" / "flexforce.ops.retired_event.v1.json").write_text("{}\n")
    assert generate.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "python -m schemas.generate" in err
    assert "schemas/json/flexforce.ops.ticket_volume.v1.json (out of date)" in err
    assert "schemas/json/flexforce.ops.retired_event.v1.json (no longer generated)" in err

    assert generate.main([]) == 0
    assert not (package / "json" / "flexforce.ops.retired_event.v1.json").exists()
    capsys.readouterr()
    assert generate.main([]) == 0
    assert "up to date" in capsys.readouterr().out


# -- (b) every event has a schema and a message, every topic a channel --------------------------


def test_every_event_has_a_data_schema(data_schemas: dict[str, dict[str, Any]]) -> None:
    assert set(data_schemas) == {f"{event.event_type}.json" for event in ALL_EVENTS}
    for event in ALL_EVENTS:
        schema = data_schemas[f"{event.event_type}.json"]
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith(event.event_type)
        assert schema["title"] == event.__name__
        assert schema["description"]
        assert schema["x-cloudevents"]["type"] == event.event_type
        assert schema["x-cloudevents"]["key"] == event.key_field
        assert schema["x-cloudevents"]["topic"] == event.topic
        assert event.key_field in schema["properties"]
        assert not ENVELOPE_FIELDS & schema["properties"].keys()
        assert not ENVELOPE_FIELDS & set(schema.get("required", []))
        assert schema["additionalProperties"] is False
        fields = set(event.model_fields) - ENVELOPE_FIELDS
        assert set(schema["properties"]) == fields


def test_every_event_has_a_message(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    assert set(messages) == {event.__name__ for event in ALL_EVENTS}
    for event in ALL_EVENTS:
        message = messages[event.__name__]
        assert message["headers"]["properties"]["ce_type"]["const"] == event.event_type
        assert message["payload"] == {"$ref": f"#/components/schemas/{event.__name__}"}
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        assert message["contentType"] == "application/json"
    correlated = {name for name, message in messages.items() if "correlationId" in message}
    assert correlated == {CapacityRequested.__name__, CapacityResponded.__name__}


def _channels_by_address(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {channel["address"]: channel for channel in document["channels"].values()}


def _documented_topics() -> list[TopicSpec]:
    """The table plus the per-provider topic (in its template form)."""
    return [*ALL_TOPICS, spec_for(CAPACITY_REQUESTS_TEMPLATE.format(provider_id="p"))]


def test_every_topic_and_dead_letter_topic_has_a_channel(document: dict[str, Any]) -> None:
    by_address = _channels_by_address(document)
    expected = [spec.name for spec in ALL_TOPICS] + [CAPACITY_REQUESTS_TEMPLATE]
    expected += [name + DEAD_LETTER_SUFFIX for name in expected]
    assert sorted(by_address) == sorted(expected)
    for spec in _documented_topics():
        for concrete in (spec, spec_for(spec.name + DEAD_LETTER_SUFFIX)):
            address = concrete.name.replace("providers.p.", "providers.{provider_id}.")
            channel = by_address[address]
            assert list(channel["messages"]) == [concrete.event.__name__]
            kafka = channel["bindings"]["kafka"]
            assert kafka["partitions"] == concrete.partitions
            configs = concrete.kafka_configs()
            topic_config = kafka["topicConfiguration"]
            assert topic_config["max.message.bytes"] == int(configs["max.message.bytes"])
            policy = configs.get("cleanup.policy", "delete")
            assert topic_config["cleanup.policy"] == [policy]
            if "retention.ms" in configs:
                assert topic_config["retention.ms"] == int(configs["retention.ms"])


def test_the_table_and_the_events_agree_on_topic_and_key() -> None:
    for spec in ALL_TOPICS:
        assert spec.event.topic == spec.name, spec.name
        assert spec.event.key_field == spec.key, spec.name
    for event in sample_events():
        assert spec_for(topic_for(event)).event is type(event)


def test_operations_are_from_flexforces_point_of_view(document: dict[str, Any]) -> None:
    actions: dict[str, str] = {}
    for operation in document["operations"].values():
        channel_id = operation["channel"]["$ref"].removeprefix("#/channels/")
        actions[document["channels"][channel_id]["address"]] = operation["action"]
    for spec in ALL_TOPICS:
        assert actions[spec.name] == ("receive" if spec.is_input else "send"), spec.name
        if spec.is_input:  # flexforce dead-letters what it refuses to consume
            assert actions[spec.dead_letter] == "send"
        else:  # written by downstream consumers, not by flexforce
            assert spec.dead_letter not in actions
    assert actions[CAPACITY_REQUESTS_TEMPLATE] == "send"


# -- (c) the AsyncAPI document is structurally sound ---------------------------------------------


def _walk(node: Any, path: str = "#") -> Iterator[tuple[str, Any]]:
    """Every (JSON pointer, value) pair under ``node``."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key.replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


def _resolve(document: dict[str, Any], ref: str) -> Any:
    """Follow a local JSON pointer reference, or raise ``KeyError`` naming the broken part."""
    assert ref.startswith("#/"), f"only local references are expected, got {ref!r}"
    node: Any = document
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(f"{ref}: no {part!r}")
    return node


def _refs(node: Any) -> Iterator[tuple[str, str]]:
    for where, value in _walk(node):
        if isinstance(value, dict) and isinstance(value.get("$ref"), str):
            yield where, value["$ref"]


def test_asyncapi_header(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "flexforce"
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+.*", document["info"]["version"])
    assert document["info"]["description"]
    assert document["defaultContentType"] == "application/json"
    assert document["servers"]["local"] == document["servers"]["local"] | {
        "host": "127.0.0.1:9092",
        "protocol": "kafka",
    }


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = list(_refs(document))
    assert refs
    for where, ref in refs:
        try:
            _resolve(document, ref)
        except (KeyError, IndexError) as exc:
            pytest.fail(f"{where}: unresolved $ref {ref}: {exc}")
        assert "$defs" not in ref, f"{where}: {ref} points into a standalone schema's $defs"


def test_object_keys_follow_the_asyncapi_patterns(document: dict[str, Any]) -> None:
    # AsyncAPI 3.0.0: component keys ^[a-zA-Z0-9.\-_]+$; channel/operation ids are used in refs
    for section in ("channels", "operations"):
        for key in document[section]:
            assert re.fullmatch(r"[A-Za-z0-9_\-]+", key), f"{section}: {key!r}"
    for section, entries in document["components"].items():
        for key in entries:
            assert re.fullmatch(r"[A-Za-z0-9.\-_]+", key), f"components.{section}: {key!r}"


def test_operations_reference_a_channel_and_its_messages(document: dict[str, Any]) -> None:
    assert document["operations"]
    for op_id, operation in document["operations"].items():
        assert operation["action"] in {"send", "receive"}, op_id
        channel_ref = operation["channel"]["$ref"]
        assert re.fullmatch(r"#/channels/[^/]+", channel_ref), op_id
        channel = _resolve(document, channel_ref)
        assert operation["messages"], f"{op_id} names no message"
        for message in operation["messages"]:
            # spec: an operation's messages MUST be messages of the channel it references
            assert message["$ref"].startswith(channel_ref + "/messages/"), op_id
            name = message["$ref"].rsplit("/", 1)[1]
            assert name in channel["messages"], op_id


def test_channels_reference_component_messages_and_declare_parameters(
    document: dict[str, Any],
) -> None:
    components = document["components"]["messages"]
    for channel_id, channel in document["channels"].items():
        assert channel["messages"], channel_id
        for name, message in channel["messages"].items():
            assert message == {"$ref": f"#/components/messages/{name}"}, channel_id
            assert name in components
        placeholders = set(re.findall(r"\{([^}]+)\}", channel["address"]))
        assert placeholders == set(channel.get("parameters", {})), channel_id
        for parameter in channel.get("parameters", {}).values():
            assert parameter["description"]
            assert set(parameter) <= {"enum", "default", "description", "examples", "location"}


def test_kafka_bindings_are_typed_as_the_binding_expects(document: dict[str, Any]) -> None:
    for channel_id, channel in document["channels"].items():
        kafka = channel["bindings"]["kafka"]
        assert set(kafka) <= {
            "topic",
            "partitions",
            "replicas",
            "topicConfiguration",
            "bindingVersion",
        }
        assert isinstance(kafka["partitions"], int) and kafka["partitions"] > 0, channel_id
        config = kafka["topicConfiguration"]
        assert config["cleanup.policy"] and set(config["cleanup.policy"]) <= {"compact", "delete"}
        for name, value in config.items():
            if name.endswith((".ms", ".bytes")):
                assert isinstance(value, int) and not isinstance(value, bool), (
                    f"{channel_id} {name}"
                )
        assert kafka["bindingVersion"] == "0.5.0"
    for name, message in document["components"]["messages"].items():
        kafka = message["bindings"]["kafka"]
        assert set(kafka) <= {"key", "bindingVersion"}, name


def test_headers_and_correlation_ids_match_the_wire_format(document: dict[str, Any]) -> None:
    for event in ALL_EVENTS:
        message = document["components"]["messages"][event.__name__]
        headers = message["headers"]
        assert headers["type"] == "object"
        wire_headers = {name for name, _ in encode(sample(event)).headers}
        assert set(headers["properties"]) == wire_headers
        assert set(headers["required"]) <= wire_headers
        payload = _resolve(document, message["payload"]["$ref"])
        key = message["bindings"]["kafka"]["key"]
        assert key.get("pattern") == payload["properties"][event.key_field].get("pattern")
        if "correlationId" in message:
            location = message["correlationId"]["location"]
            assert location.startswith("$message.payload#/")
            assert location.rsplit("/", 1)[1] in payload["required"]


def test_component_schemas_are_asyncapi_schema_objects(
    document: dict[str, Any], jsonschema: ModuleType
) -> None:
    # The AsyncAPI Schema Object is a superset of JSON Schema draft 07; its ``discriminator`` is a
    # property name, and an ``$id`` inside the document would break the references below it.
    for name, schema in document["components"]["schemas"].items():
        checked = {key: value for key, value in schema.items() if not key.startswith("x-")}
        jsonschema.Draft7Validator.check_schema(checked)
        for where, value in _walk(schema, f"#/components/schemas/{name}"):
            if isinstance(value, dict):
                assert "$id" not in value and "$defs" not in value, where
                if "discriminator" in value and "oneOf" in value:
                    assert isinstance(value["discriminator"], str), where


def test_data_schema_files_are_valid_draft_2020_12(
    data_schemas: dict[str, dict[str, Any]], jsonschema: ModuleType
) -> None:
    for schema in data_schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)


# -- (d) the schemas accept what the models write and refuse what the models refuse ---------------


def _file_validator(jsonschema: ModuleType, event: type[Event]) -> Any:
    schema = json.loads((generate.JSON_DIR / f"{event.event_type}.json").read_text("utf-8"))
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _asyncapi_validator(jsonschema: ModuleType, document: dict[str, Any], name: str) -> Any:
    """Validate against a payload as it sits in the AsyncAPI document (refs and all)."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    uri = "urn:flexforce:asyncapi"
    registry: Registry[Any] = Registry().with_resource(
        uri, Resource.from_contents(document, default_specification=DRAFT7)
    )
    return jsonschema.Draft7Validator(
        {"$ref": f"{uri}#/components/schemas/{name}"}, registry=registry
    )


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: type(e).__name__)
def test_sample_data_validates_against_its_schemas(
    event: Event, document: dict[str, Any], jsonschema: ModuleType
) -> None:
    data = event.data()
    errors = [e.message for e in _file_validator(jsonschema, type(event)).iter_errors(data)]
    assert not errors, f"{type(event).event_type}: {errors}"
    in_document = _asyncapi_validator(jsonschema, document, type(event).__name__)
    errors = [e.message for e in in_document.iter_errors(data)]
    assert not errors, f"{type(event).__name__} in asyncapi.yaml: {errors}"


@given(event=any_event)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_valid_events_validate_against_their_schema(event: Event) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = _file_validator(jsonschema, type(event))
    errors = [e.message for e in validator.iter_errors(event.data())]
    assert not errors, errors


def _mutate(event_class: type[Event], change: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(sample(event_class).data())
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        if value is _DROP:
            del node[last]
        else:
            node[last] = value
    return data


_DROP = object()

# Each payload is one mistake a producer could make; the schema and the model both refuse it.
INVALID: dict[str, tuple[str, dict[str, Any]]] = {
    "negative arrivals": ("TicketVolumeObserved", {"arrivals": -1}),
    "arrivals as text": ("TicketVolumeObserved", {"arrivals": "42"}),
    "unknown queue status": ("QueueDefined", {"status": "paused"}),
    "unknown sensitivity": ("QueueDefined", {"sensitivity": "secret"}),
    "unknown sla kind": ("QueueDefined", {"sla.kind": "respond_within"}),
    "unknown response status": ("CapacityResponded", {"status": "maybe"}),
    "negative fte": ("CapacityRequested", {"target_fte": -5}),
    "bad provider id": ("CapacityResponded", {"provider_id": "ACME Outsourcing"}),
    "missing key field": ("TicketVolumeObserved", {"queue_id": _DROP}),
    "unknown field": ("ProjectDemandChanged", {"budget": 1000}),
    "envelope field in data": ("TicketVolumeObserved", {"id": "tv-1"}),
    "bad log attribute name": ("AllocationLogged", {"attrs": {"not an identifier": 1}}),
    "bad dead-letter stage": ("DeadLetter", {"stage": "later"}),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_payloads_are_refused_by_schema_and_model(
    case: str, document: dict[str, Any], jsonschema: ModuleType
) -> None:
    class_name, change = INVALID[case]
    event_class = next(event for event in ALL_EVENTS if event.__name__ == class_name)
    data = _mutate(event_class, change)

    assert list(_file_validator(jsonschema, event_class).iter_errors(data)), (
        f"{case}: the JSON Schema accepts what flexforce refuses"
    )
    assert list(_asyncapi_validator(jsonschema, document, class_name).iter_errors(data)), case

    message = encode(sample(event_class))
    with pytest.raises(InvalidEvent):
        decode(message.key, json.dumps(data).encode(), message.headers)
