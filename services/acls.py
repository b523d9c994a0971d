"""Provider isolation on Kafka: the ACLs that confine each provider principal to its own topic.

A provider ``<id>`` authenticates as the Kafka principal ``User:<id>`` (SASL/SCRAM, or the
mTLS certificate's name mapped to it) and may do exactly this, nothing else:

* READ + DESCRIBE on topic ``<prefix>providers.<id>.capacity-requests`` (its own requests),
* READ on consumer group ``<prefix>provider-<id>`` (to commit its position there; DESCRIBE
  on the group too, for offset lookups),
* WRITE + DESCRIBE on topic ``<prefix>providers.capacity-responses`` (its answers).

All bindings are LITERAL (no prefixes, no wildcards), host ``*``, ALLOW. With
``allow.everyone.if.no.acl.found=false`` on the broker, everything else is denied: another
provider's requests, the ops topics, the plans, creating topics. The flexforce service runs as
a super user (or gets its own ACLs; not generated here).

What ACLs can't do: Kafka does not stamp the producing principal on a record, and all
providers write the one responses topic, so a provider could put another provider's id in a
response. The domain core refuses a response whose provider differs from the request's
(stage ``security``, dead-lettered, logged as a security event), so a forged answer to someone
else's request is never applied; see docs/security.md for the remaining gap.

``python -m services.acls acme globex`` prints the bindings (and the equivalent
``kafka-acls.sh`` commands); ``--apply --bootstrap HOST:PORT --command-config FILE`` creates
them through the Kafka protocol (CreateAcls; aiokafka has no ACL admin API, kafka-acls.sh
needs the kafka-tools jars). Creating an ACL that exists is a no-op on the broker, so
``--apply`` can be re-run.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest

from schemas.base import PROVIDER_ID_PATTERN
from schemas.topics import TOPICS_BY_NAME, capacity_requests_spec, validate_prefix

RESPONSES_TOPIC = "providers.capacity-responses"
assert RESPONSES_TOPIC in TOPICS_BY_NAME, "the responses topic was renamed"
PROVIDER_GROUP_TEMPLATE = "provider-{provider_id}"


class ResourceType(IntEnum):
    """Kafka's ``ResourceType`` codes (org.apache.kafka.common.resource.ResourceType)."""

    TOPIC = 2
    GROUP = 3


class Operation(IntEnum):
    """Kafka's ``AclOperation`` codes."""

    READ = 3
    WRITE = 4
    DESCRIBE = 8


ALLOW = 3  # AclPermissionType.ALLOW
LITERAL = 3  # PatternType.LITERAL


@dataclass(frozen=True, slots=True)
class AclBinding:
    """One ALLOW rule: ``principal`` may ``operation`` on the literal resource ``name``."""

    principal: str
    resource_type: ResourceType
    name: str
    operation: Operation
    host: str = "*"

    def describe(self) -> str:
        return (
            f"ALLOW {self.principal} {self.operation.name} on "
            f"{self.resource_type.name} {self.name} (literal, host {self.host})"
        )


def provider_group(provider_id: str, prefix: str = "") -> str:
    """The consumer group a provider reads its requests with."""
    return prefix + PROVIDER_GROUP_TEMPLATE.format(provider_id=provider_id)


def provider_acls(provider_id: str, prefix: str = "") -> list[AclBinding]:
    """The bindings of one provider (see the module docstring)."""
    if not re.match(PROVIDER_ID_PATTERN, provider_id):
        raise ValueError(f"invalid provider id {provider_id!r}")
    prefix = validate_prefix(prefix)
    principal = f"User:{provider_id}"
    requests = prefix + capacity_requests_spec(provider_id).name
    responses = prefix + RESPONSES_TOPIC
    group = provider_group(provider_id, prefix)
    return [
        AclBinding(principal, ResourceType.TOPIC, requests, Operation.READ),
        AclBinding(principal, ResourceType.TOPIC, requests, Operation.DESCRIBE),
        AclBinding(principal, ResourceType.GROUP, group, Operation.READ),
        AclBinding(principal, ResourceType.GROUP, group, Operation.DESCRIBE),
        AclBinding(principal, ResourceType.TOPIC, responses, Operation.WRITE),
        AclBinding(principal, ResourceType.TOPIC, responses, Operation.DESCRIBE),
    ]


def all_provider_acls(provider_ids: Iterable[str], prefix: str = "") -> list[AclBinding]:
    return [acl for p in sorted(set(provider_ids)) for acl in provider_acls(p, prefix)]


def kafka_acls_commands(
    bindings: Sequence[AclBinding], bootstrap: str = "BOOTSTRAP", command_config: str = "FILE"
) -> list[str]:
    """The same bindings as ``kafka-acls.sh`` command lines (one per binding)."""
    flag = {ResourceType.TOPIC: "--topic", ResourceType.GROUP: "--group"}
    return [
        shlex.join(
            [
                "kafka-acls.sh",
                "--bootstrap-server",
                bootstrap,
                "--command-config",
                command_config,
                "--add",
                "--allow-principal",
                b.principal,
                "--allow-host",
                b.host,
                "--operation",
                b.operation.name.capitalize(),
                flag[b.resource_type],
                b.name,
                "--resource-pattern-type",
                "literal",
            ]
        )
        for b in bindings
    ]


class AclError(RuntimeError):
    """The broker refused to create an ACL."""


async def apply_acls(admin: AIOKafkaAdminClient, bindings: Sequence[AclBinding]) -> int:
    """Create the bindings through ``admin`` (a started client of a super user or of a
    principal with ALTER on the cluster). Returns how many were sent; raises
    :class:`AclError` on the first the broker refuses. Existing bindings are a no-op."""
    for binding in bindings:
        request = CreateAclsRequest(
            binding.resource_type,
            binding.name,
            LITERAL,
            binding.principal,
            binding.host,
            binding.operation,
            ALLOW,
        )
        # The controller applies ACLs in KRaft, but any broker forwards CreateAcls.
        response: Any = await admin._send_request(request)
        for error_code, message in response.creation_responses:
            if error_code:
                raise AclError(f"{binding.describe()}: {for_code(error_code).__name__} {message}")
    return len(bindings)


def read_command_config(path: Path) -> dict[str, Any]:
    """aiokafka options from a Kafka client properties file (``--command-config``):
    security.protocol, sasl.mechanism and the username/password of sasl.jaas.config."""
    props: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    options: dict[str, Any] = {}
    if "security.protocol" in props:
        options["security_protocol"] = props["security.protocol"]
    if "sasl.mechanism" in props:
        options["sasl_mechanism"] = props["sasl.mechanism"]
    jaas = props.get("sasl.jaas.config", "")
    for field, option in (("username", "sasl_plain_username"), ("password", "sasl_plain_password")):
        match = re.search(rf'{field}="([^"]*)"', jaas)
        if match:
            options[option] = match.group(1)
    if str(options.get("security_protocol", "")).endswith("SSL"):
        raise SystemExit("--command-config: SSL options are not read here; use SASL_PLAINTEXT")
    return options


async def _apply(bootstrap: str, options: dict[str, Any], bindings: Sequence[AclBinding]) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    try:
        return await apply_acls(admin, bindings)
    finally:
        await admin.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.acls",
        description="Print (or apply) the Kafka ACLs that isolate each provider.",
    )
    parser.add_argument("provider_ids", nargs="+", metavar="PROVIDER_ID")
    parser.add_argument("--prefix", default="", help="deployment topic prefix, e.g. acme.prod.")
    parser.add_argument("--apply", action="store_true", help="create them on the cluster")
    parser.add_argument("--bootstrap", help="HOST:PORT (with --apply)")
    parser.add_argument(
        "--command-config",
        type=Path,
        help="Kafka client properties of an admin (security.protocol, sasl.*), with --apply",
    )
    parser.add_argument(
        "--format", choices=("text", "kafka-acls"), default="text", help="what to print"
    )
    args = parser.parse_args(argv)
    try:
        bindings = all_provider_acls(args.provider_ids, args.prefix)
    except ValueError as exc:
        parser.error(str(exc))
    if args.format == "kafka-acls":
        print("\n".join(kafka_acls_commands(bindings, args.bootstrap or "BOOTSTRAP")))
    else:
        print("\n".join(b.describe() for b in bindings))
    if not args.apply:
        return 0
    if not args.bootstrap:
        parser.error("--apply needs --bootstrap")
    options = read_command_config(args.command_config) if args.command_config else {}
    count = asyncio.run(_apply(args.bootstrap, options, bindings))
    print(f"applied {count} ACL bindings", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
