#!/usr/bin/env bash
# Print, or apply, the Kafka ACLs that confine each provider principal (User:<id>) to its own
# capacity-request topic (READ+DESCRIBE), its consumer group provider-<id> (READ+DESCRIBE) and
# the shared responses topic (WRITE+DESCRIBE); nothing else. See docs/security.md and
# services/acls.py (this is a thin wrapper around `python -m services.acls`).
#
#   provider-acls.sh acme globex                       print the bindings
#   provider-acls.sh acme --format kafka-acls          print kafka-acls.sh commands instead
#   provider-acls.sh acme globex --prefix acme.prod.   with a deployment topic prefix
#   provider-acls.sh acme globex --apply --bootstrap 127.0.0.1:PORT \
#       --command-config "$FLEXFORCE_KAFKA_DIR/admin.properties"    create them (idempotent)
#
# The command config is a Kafka client properties file of a super user (security.protocol,
# sasl.mechanism, sasl.jaas.config); `local-kafka.sh start --sasl` writes one for admin.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
if [[ -n "${FLEXFORCE_PYTHON:-}" ]]; then
  PY="$FLEXFORCE_PYTHON"
elif [[ -x "$REPO/.venv/bin/python" ]]; then
  PY="$REPO/.venv/bin/python"
else
  PY="python3"
fi
if [[ $# -eq 0 ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
cd "$REPO"
exec "$PY" -m services.acls "$@"
