"""Generate the published contract artefacts: JSON Schemas of event data and an AsyncAPI document.

Teams that produce ops events or answer capacity requests do not run Python, so the pydantic
models in :mod:`schemas` are published as language-neutral artefacts:

* ``schemas/json/<ce type>.json``: a JSON Schema (draft 2020-12) of the *data* of each event,
  i.e. the Kafka value. The CloudEvents context (``id``, ``source``, ``time``) rides in ``ce_``
  headers in binary mode, so those fields are removed here; a producer that validates its value
  against this schema also cannot smuggle them into the data, which :func:`schemas.wire.decode`
  refuses.
* ``schemas/asyncapi.yaml``: an AsyncAPI 3.0.0 document of every topic, who sends and who receives,
  the headers, keys and topic configuration, with the same data schemas as payloads.

The artefacts are generated from the models (never edited by hand) and checked in, so a reviewer
sees a contract change in the diff and consumers can fetch them without installing flexforce. A
test regenerates them and fails when the checked-in copies are stale. Run::

    python -m schemas.generate          # rewrite schemas/json/ and schemas/asyncapi.yaml
    python -m schemas.generate --check  # exit 1 and list the stale files, change nothing

Everything here is a pure function of the models and the topic table; output is byte-for-byte
deterministic so that regenerating without a contract change leaves the tree clean.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from schemas.base import ENVELOPE_FIELDS, Event
from schemas.providers import CapacityRequested, CapacityResponded
from schemas.registry import ALL_EVENTS
from schemas.topics import (
    ALL_TOPICS,
    CAPACITY_REQUESTS_TEMPLATE,
    TopicSpec,
    capacity_requests_spec,
    dead_letter_spec,
)
from schemas.wire import CONTENT_TYPE, REQUIRED_HEADERS, SPECVERSION

JsonSchema = dict[str, Any]

#: Where the artefacts live: next to the models, so they ship as package data (see pyproject).
PACKAGE_DIR: Final = Path(__file__).resolve().parent
JSON_DIR: Final = PACKAGE_DIR / "json"
ASYNCAPI_PATH: Final = PACKAGE_DIR / "asyncapi.yaml"

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
#: ``$id`` prefix of the data schemas. A URN rather than a URL: flexforce owns no web address to
#: serve them from, and an ``$id`` must be an absolute URI that never changes meaning.
SCHEMA_ID_PREFIX: Final = "urn:flexforce:schema:"
ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
LOCAL_BROKER: Final = "127.0.0.1:9092"
#: Used when flexforce is not installed (e.g. the tree is only on ``sys.path``).
FALLBACK_VERSION: Final = "0.1.0"

_DEFS_REF = "#/$defs/"
_COMPONENT_SCHEMA_REF = "#/components/schemas/"

# Keywords whose value is one subschema, a list of subschemas, or a name -> subschema map. Only
# these are walked, so a *field* called ``discriminator`` or ``$ref`` is never mistaken for one.
_SINGLE_SUBSCHEMA = (
    "additionalProperties",
    "contains",
    "else",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("$defs", "definitions", "dependentSchemas", "patternProperties", "properties")

# Top-level key order of a data schema file: identity first, then the shape, then shared parts.
_SCHEMA_KEY_ORDER = (
    "$schema",
    "$id",
    "title",
    "description",
    "x-cloudevents",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "$defs",
)


# -- JSON Schema of event data ------------------------------------------------------------------


def _map_subschemas(schema: JsonSchema, fn: Callable[[JsonSchema], JsonSchema]) -> JsonSchema:
    """Apply ``fn`` bottom-up to ``schema`` and every subschema in it; returns a new schema.

    Walks only JSON Schema keywords (not ``default``, ``const``, ``enum`` or ``examples``, whose
    values are data), which keeps rewrites from touching a field's default value.
    """
    out: JsonSchema = dict(schema)
    for keyword in _SINGLE_SUBSCHEMA:
        value = out.get(keyword)
        if isinstance(value, dict):
            out[keyword] = _map_subschemas(value, fn)
    for keyword in _SUBSCHEMA_LISTS:
        value = out.get(keyword)
        if isinstance(value, list):
            out[keyword] = [_map_subschemas(item, fn) for item in value]
    for keyword in _SUBSCHEMA_MAPS:
        value = out.get(keyword)
        if isinstance(value, dict):
            out[keyword] = {name: _map_subschemas(sub, fn) for name, sub in value.items()}
    return fn(out)


def _close_pattern_maps(schema: JsonSchema) -> JsonSchema:
    """Refuse keys that match no ``patternProperties`` pattern, as pydantic does.

    pydantic describes ``dict[Identifier, V]`` with ``patternProperties`` alone, which in JSON
    Schema lets any other key through; the model refuses such keys, so the schema must too.
    """
    if "patternProperties" in schema and not {"additionalProperties", "properties"} & schema.keys():
        return schema | {"additionalProperties": False}
    return schema


def _referenced_defs(schema: JsonSchema) -> set[str]:
    """Names of the ``$defs`` entries reachable from the schema's own properties."""
    defs: dict[str, JsonSchema] = schema.get("$defs", {})
    found: set[str] = set()

    def visit(node: JsonSchema) -> JsonSchema:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS_REF):
            name = ref.removeprefix(_DEFS_REF)
            if name not in found:
                found.add(name)
                _map_subschemas(defs[name], visit)
        return node

    _map_subschemas({k: v for k, v in schema.items() if k != "$defs"}, visit)
    return found


def _ordered(schema: JsonSchema) -> JsonSchema:
    """Put the top-level keys in reading order; keys not listed follow, sorted."""
    head = {key: schema[key] for key in _SCHEMA_KEY_ORDER if key in schema}
    tail = {key: schema[key] for key in sorted(schema) if key not in head}
    return head | tail


def topic_of(event: type[Event]) -> str:
    """Logical topic (or topic template) the event is published to, from the topic table."""
    for spec in ALL_TOPICS:
        if spec.event is event:
            return spec.name
    return event.topic


def cloudevents_block(event: type[Event]) -> dict[str, Any]:
    """The ``x-cloudevents`` extension: how this data travels, which JSON Schema cannot say."""
    return {
        "specversion": SPECVERSION,
        "type": event.event_type,
        "mode": "binary",
        "datacontenttype": CONTENT_TYPE,
        "contextAttributesInHeaders": sorted(ENVELOPE_FIELDS),
        "key": event.key_field,
        "topic": topic_of(event),
    }


def data_schema(event: type[Event]) -> JsonSchema:
    """JSON Schema (draft 2020-12) of the Kafka value of ``event``: the model minus the envelope.

    Validation mode, because the schema is what flexforce *accepts*: fields with defaults are
    optional for a producer even though :meth:`Event.data` always writes them.
    """
    schema = _map_subschemas(event.model_json_schema(mode="validation"), _close_pattern_maps)
    schema["properties"] = {
        name: prop for name, prop in schema["properties"].items() if name not in ENVELOPE_FIELDS
    }
    schema["required"] = [
        name for name in schema.get("required", []) if name not in ENVELOPE_FIELDS
    ]
    if not schema["required"]:
        del schema["required"]
    if "$defs" in schema:
        used = _referenced_defs(schema)
        schema["$defs"] = {name: schema["$defs"][name] for name in sorted(used)}
        if not schema["$defs"]:
            del schema["$defs"]
    schema |= {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": SCHEMA_ID_PREFIX + event.event_type,
        "title": event.__name__,
        "description": inspect.cleandoc(event.__doc__ or event.__name__),
        "x-cloudevents": cloudevents_block(event),
    }
    return _ordered(schema)


def schema_file_name(event: type[Event]) -> str:
    """File name of the data schema: the CloudEvents type, so versions sit side by side."""
    return f"{event.event_type}.json"


def json_schemas() -> dict[str, JsonSchema]:
    """File name -> data JSON Schema, for every event in :data:`schemas.registry.ALL_EVENTS`."""
    return {schema_file_name(event): data_schema(event) for event in ALL_EVENTS}


# -- AsyncAPI -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Channel:
    """One AsyncAPI channel: a logical topic (or topic template) and flexforce's part in it."""

    id: str
    spec: TopicSpec
    #: What flexforce does on it: ``send``, ``receive``, or ``None`` (others write and read it).
    action: str | None
    summary: str


def _channel_id(address: str) -> str:
    """A channel id AsyncAPI accepts (``[A-Za-z0-9_-]``) that still reads like the topic."""
    return re.sub(r"[^A-Za-z0-9]+", "-", address).strip("-")


def _capacity_requests_template() -> TopicSpec:
    """The per-provider request topic with ``{provider_id}`` left in, for documentation."""
    concrete = capacity_requests_spec("provider")
    return dataclasses.replace(
        concrete,
        name=CAPACITY_REQUESTS_TEMPLATE,
        description="Capacity requests for one provider; one topic per provider so that ACLs "
        "can confine each provider to its own requests.",
    )


def channels() -> list[Channel]:
    """Every channel, in topic-table order: each topic, then the per-provider one, then DLQs.

    flexforce dead-letters what it consumes, so it sends on the dead-letter topics of its inputs;
    the dead-letter topics of its outputs are documented for the consumers that write them.
    """
    topics = [*ALL_TOPICS, _capacity_requests_template()]
    found: list[Channel] = []
    for spec in topics:
        action = "receive" if spec.is_input else "send"
        found.append(Channel(_channel_id(spec.name), spec, action, spec.description))
    for spec in topics:
        letters = dead_letter_spec(spec)
        writer = "flexforce" if spec.is_input else "consumers of " + spec.name
        summary = (
            f"Refused messages of {spec.name}, kept whole with the reason (written by {writer})."
        )
        dlq_action = "send" if spec.is_input else None
        found.append(Channel(_channel_id(letters.name), letters, dlq_action, summary))
    ids = [channel.id for channel in found]
    if len(set(ids)) != len(ids):
        raise ValueError(f"two topics map to the same AsyncAPI channel id: {sorted(ids)}")
    return found


def _kafka_config_value(name: str, value: str) -> Any:
    """Topic configs are strings for the admin API; the Kafka binding wants typed values."""
    if name == "cleanup.policy":
        return sorted(part.strip() for part in value.split(","))
    if re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    return value


def _channel_bindings(spec: TopicSpec) -> dict[str, Any]:
    """Kafka channel binding: partitions and the topic configs flexforce creates the topic with."""
    configs = {"cleanup.policy": "delete"} | spec.kafka_configs()
    return {
        "kafka": {
            "partitions": spec.partitions,
            "topicConfiguration": {
                name: _kafka_config_value(name, configs[name]) for name in sorted(configs)
            },
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }


def _parameters(address: str) -> dict[str, Any]:
    """AsyncAPI parameters for each ``{name}`` in a channel address."""
    params: dict[str, Any] = {}
    for name in re.findall(r"\{([^}]+)\}", address):
        if name != "provider_id":
            raise ValueError(f"no documentation for channel parameter {name!r} in {address!r}")
        params[name] = {
            "description": "Provider id, as in the contract: lower-case letters, digits and "
            "hyphens, at most 63 characters (^[a-z0-9][a-z0-9-]{0,62}$).",
            "examples": ["acme-outsourcing"],
        }
    return params


def _channel(channel: Channel) -> dict[str, Any]:
    spec = channel.spec
    body: dict[str, Any] = {
        "address": spec.name,
        "title": spec.name,
        "summary": channel.summary,
        "description": f"Kafka key: `{spec.key}`. Physical topic name: the deployment prefix "
        f"(e.g. `acme.prod.`) followed by `{spec.name}`.",
        "messages": {spec.event.__name__: {"$ref": f"#/components/messages/{spec.event.__name__}"}},
    }
    params = _parameters(spec.name)
    if params:
        body["parameters"] = params
    body["bindings"] = _channel_bindings(spec)
    return body


def _operation(channel: Channel) -> dict[str, Any]:
    """flexforce's side of a channel: ``send`` or ``receive`` its one message."""
    message = channel.spec.event.__name__
    verb = "Consumes" if channel.action == "receive" else "Publishes"
    return {
        "action": channel.action,
        "channel": {"$ref": f"#/channels/{channel.id}"},
        "summary": f"{verb} {channel.spec.name}.",
        "messages": [{"$ref": f"#/channels/{channel.id}/messages/{message}"}],
    }


def _envelope_property(field: str) -> JsonSchema:
    """The base model's schema of an envelope field, reused for its ``ce_`` header."""
    prop = dict(Event.model_json_schema(mode="validation")["properties"][field])
    prop.pop("title", None)
    return prop


def _headers(event: type[Event]) -> JsonSchema:
    """CloudEvents binary-mode headers; other headers (e.g. tracing) are allowed alongside."""
    return {
        "type": "object",
        "description": "CloudEvents 1.0 context attributes as Kafka headers (UTF-8 values).",
        "required": list(REQUIRED_HEADERS),
        "properties": {
            "ce_specversion": {"type": "string", "const": SPECVERSION},
            "ce_id": _envelope_property("id"),
            "ce_source": _envelope_property("source"),
            "ce_type": {"type": "string", "const": event.event_type},
            "ce_time": _envelope_property("time"),
            "content-type": {
                "type": "string",
                "description": f"{CONTENT_TYPE}, assumed when absent; parameters are ignored.",
                "default": CONTENT_TYPE,
                "pattern": r"^\s*application/json\s*(;.*)?$",
            },
        },
    }


def _key_schema(event: type[Event]) -> JsonSchema:
    """The Kafka key: the value of the event's key field, with that field's constraints."""
    field = data_schema(event)["properties"][event.key_field]
    key: JsonSchema = {
        "type": "string",
        "description": f"The event's `{event.key_field}` (UTF-8).",
    }
    for keyword in ("minLength", "maxLength", "pattern"):
        if keyword in field:
            key[keyword] = field[keyword]
    return key


#: Messages whose ``request_id`` ties a provider's answer to flexforce's request.
_CORRELATED: Final = (CapacityRequested, CapacityResponded)


def _message(event: type[Event]) -> dict[str, Any]:
    """One message per event type: headers, payload, key and (for requests) correlation."""
    doc = inspect.cleandoc(event.__doc__ or event.__name__)
    message: dict[str, Any] = {
        "name": event.__name__,
        "title": event.event_type,
        "summary": doc.splitlines()[0],
    }
    if "\n" in doc:  # a one-line docstring would only repeat the summary
        message["description"] = doc
    message |= {
        "contentType": CONTENT_TYPE,
        "headers": _headers(event),
        "payload": {"$ref": _COMPONENT_SCHEMA_REF + event.__name__},
    }
    if event in _CORRELATED:
        message["correlationId"] = {
            "description": "Deterministic request id shared by a request and its response.",
            "location": "$message.payload#/request_id",
        }
    message["bindings"] = {
        "kafka": {"key": _key_schema(event), "bindingVersion": KAFKA_BINDING_VERSION}
    }
    return message


def _asyncapi_schema(schema: JsonSchema) -> JsonSchema:
    """Adapt one subschema to AsyncAPI's schema dialect and the shared components namespace.

    References move from ``#/$defs/`` to ``#/components/schemas/``; AsyncAPI's ``discriminator``
    is the property name (a string), not OpenAPI's object that pydantic emits.
    """
    out = dict(schema)
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(_DEFS_REF):
        out["$ref"] = _COMPONENT_SCHEMA_REF + ref.removeprefix(_DEFS_REF)
    discriminator = out.get("discriminator")
    if isinstance(discriminator, dict):
        out["discriminator"] = discriminator["propertyName"]
    return out


def _component_schemas() -> dict[str, JsonSchema]:
    """Every data schema and every part it uses, in one namespace with refs rewritten.

    ``$id`` and ``$schema`` are dropped: an ``$id`` inside the document would move the base URI
    and break the ``#/components/...`` references beneath it.
    """
    found: dict[str, JsonSchema] = {}

    def add(name: str, schema: JsonSchema) -> None:
        if name in found and found[name] != schema:
            raise ValueError(f"two different schemas are both called {name!r}; rename one model")
        found[name] = schema

    for event in ALL_EVENTS:
        schema = data_schema(event)
        defs: dict[str, JsonSchema] = schema.pop("$defs", {})
        for key in ("$schema", "$id"):
            del schema[key]
        for name, sub in defs.items():
            add(name, _map_subschemas(sub, _asyncapi_schema))
        add(event.__name__, _map_subschemas(schema, _asyncapi_schema))
    return {name: found[name] for name in sorted(found)}


def package_version() -> str:
    """flexforce's version from the installed metadata, so the document versions with the code."""
    try:
        return importlib.metadata.version("flexforce")
    except importlib.metadata.PackageNotFoundError:
        return FALLBACK_VERSION


_DESCRIPTION = """\
flexforce allocates capacity between internal IT teams and outsourcing providers. It consumes
operations events (queues, ticket volumes, project demand, rosters), provider contracts and
providers' answers, and publishes allocation plans, scaling decisions, an audit log and
per-provider capacity requests.

Every message is a CloudEvents 1.0 event in Kafka binary mode: the context attributes travel as
headers (`ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time`, `content-type`), the Kafka
value is the JSON data (the payload schemas below; `id`, `source` and `time` are never in it) and
the Kafka key is the value of the event's key field.

Channel addresses are logical topic names; each deployment puts its prefix in front (e.g.
`acme.prod.ops.ticket-volume`). Messages that cannot be used go, whole and with the reason, to the
dead-letter topic `<topic>.dlq`, keyed by the original key.

Generated from the pydantic models by `python -m schemas.generate`; do not edit by hand.
"""


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of flexforce's topics, from flexforce's point of view."""
    chans = channels()
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "flexforce",
            "version": package_version(),
            "description": _DESCRIPTION,
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": LOCAL_BROKER,
                "protocol": "kafka",
                "description": "Local development broker (deploy/kafka); topics without prefix.",
            }
        },
        "channels": {channel.id: _channel(channel) for channel in chans},
        "operations": {
            f"{channel.action}-{channel.id}": _operation(channel)
            for channel in chans
            if channel.action is not None
        },
        "components": {
            "schemas": _component_schemas(),
            "messages": {
                event.__name__: _message(event)
                for event in sorted(ALL_EVENTS, key=lambda e: e.__name__)
            },
        },
    }


# -- rendering and the command line ---------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Safe YAML without anchors (shared dicts would become ``&id001``) and with block text."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render_json(schema: JsonSchema) -> str:
    """Stable JSON text: two-space indent, UTF-8 as is, trailing newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def render_yaml(document: dict[str, Any]) -> str:
    """Stable YAML text in the document's own key order (which is already deterministic)."""
    text: str = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
        indent=2,
    )
    return text


def render() -> dict[Path, str]:
    """Every artefact path and the exact text it should have."""
    files = {JSON_DIR / name: render_json(schema) for name, schema in json_schemas().items()}
    files[ASYNCAPI_PATH] = render_yaml(asyncapi_document())
    return files


def _unexpected(expected: Iterable[Path]) -> list[Path]:
    """Generated-looking files no model produces any more (e.g. a removed event version)."""
    wanted = set(expected)
    present = sorted(JSON_DIR.glob("*.json")) if JSON_DIR.is_dir() else []
    return [path for path in present if path not in wanted]


def stale_files() -> list[str]:
    """Artefacts on disk that differ from freshly generated ones, with why; empty when current."""
    files = render()
    stale: list[str] = []
    for path, text in sorted(files.items()):
        if not path.exists():
            stale.append(f"{_display(path)} (missing)")
        elif path.read_text(encoding="utf-8") != text:
            stale.append(f"{_display(path)} (out of date)")
    stale += [f"{_display(path)} (no longer generated)" for path in _unexpected(files)]
    return stale


def write() -> list[str]:
    """Bring the artefacts up to date, touching only files whose text changes."""
    files = render()
    JSON_DIR.mkdir(exist_ok=True)
    changed: list[str] = []
    for path, text in sorted(files.items()):
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8", newline="\n")
            changed.append(_display(path))
    for path in _unexpected(files):
        path.unlink()
        changed.append(f"{_display(path)} (removed)")
    return changed


def _display(path: Path) -> str:
    return str(path.relative_to(PACKAGE_DIR.parent))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m schemas.generate [--check]``; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m schemas.generate",
        description="Generate schemas/json/*.json and schemas/asyncapi.yaml from the models.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 and list the stale files if any artefact is out of date",
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale contract artefacts (run `python -m schemas.generate`):", file=sys.stderr)
            for line in stale:
                print(f"  {line}", file=sys.stderr)
            return 1
        print("contract artefacts are up to date")
        return 0
    changed = write()
    for line in changed:
        print(f"wrote {line}")
    if not changed:
        print("contract artefacts are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
