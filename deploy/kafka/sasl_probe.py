"""Readiness probe for ``local-kafka.sh start --sasl``: log in with SASL/SCRAM-SHA-512 and
exit 0 once the broker's Metadata answer lists a broker (the stdlib probe in
services/brokers.py can't be used: a SASL listener serves nothing before authentication).

Run with the project's python (it needs aiokafka): ``python -I sasl_probe.py HOST:PORT
--user admin [--timeout 2]`` with the password in ``$FLEXFORCE_PROBE_PASSWORD`` (not on the
command line, where ``ps`` shows it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from aiokafka.admin import AIOKafkaAdminClient


async def _probe(address: str, user: str, password: str, timeout: float) -> int:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=address,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=user,
        sasl_plain_password=password,
        request_timeout_ms=int(timeout * 1000),
        connections_max_idle_ms=int(timeout * 1000) + 1000,
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        brokers = (await asyncio.wait_for(admin.describe_cluster(), timeout))["brokers"]
        return 0 if brokers else 1
    finally:
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("--user", required=True)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    try:
        password = os.environ["FLEXFORCE_PROBE_PASSWORD"]
        return asyncio.run(_probe(args.address, args.user, password, args.timeout))
    except Exception as exc:
        print(f"not ready: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
