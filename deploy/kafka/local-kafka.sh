#!/usr/bin/env bash
# A real, single-node Apache Kafka (KRaft, broker+controller in one JVM) on 127.0.0.1,
# for tests, CI and local development. No Docker, no system install: the broker jars
# come from Maven Central through `mvn` (deploy/kafka/pom.xml) and are cached outside
# the repo, so only the first run pays for the download.
#
#   local-kafka.sh start [--sasl]      start (or reuse a running) broker; last stdout line
#                                      is the bootstrap address 127.0.0.1:PORT. --sasl: a
#                                      SASL_PLAINTEXT/SCRAM-SHA-512 listener with ACLs
#                                      enforced (see "Secure mode" below)
#   local-kafka.sh stop [--keep-data]  SIGTERM, SIGKILL after a grace period; removes the
#                                      state dir unless --keep-data
#   local-kafka.sh restart             stop --keep-data + start: same port, same data
#                                      (for "broker restarts under a running worker" tests)
#   local-kafka.sh status              "running ..." (exit 0) or "not running" (exit 3)
#   local-kafka.sh bootstrap           print 127.0.0.1:PORT (exit 1 if not running)
#   local-kafka.sh fetch               only fetch the jars into the cache
#
# Environment:
#   FLEXFORCE_KAFKA_DIR      state dir (config, data, broker.log, pid, bootstrap)
#                            default /tmp/flexforce-kafka
#   FLEXFORCE_CACHE          jar cache root, default ~/.cache/flexforce
#                            (jars in $FLEXFORCE_CACHE/kafka-<version>/libs)
#   FLEXFORCE_KAFKA_VERSION  Kafka version, default 4.4.0 (see pom.xml for why)
#   FLEXFORCE_KAFKA_PORT     fixed client port (default: a free one)
#   FLEXFORCE_KAFKA_HEAP     JVM max heap, default 512m
#   FLEXFORCE_KAFKA_AUTO_CREATE  auto.create.topics.enable, default false: our services
#                            declare their topics, and a missing declaration should fail
#                            in tests, not be papered over. Note Faust only declares its
#                            *internal* topics (changelogs, repartition, internal=True);
#                            source/sink topics must be created by the service.
#   FLEXFORCE_KAFKA_START_TIMEOUT  seconds to wait for the broker to answer, default 60
#   FLEXFORCE_PYTHON         python for the readiness probe (stdlib only), default the
#                            repo's .venv python, else python3
#
# Secure mode (start --sasl; docs/security.md): the client listener is SASL_PLAINTEXT with
# SCRAM-SHA-512 only, the StandardAuthorizer (KRaft) enforces ACLs and
# allow.everyone.if.no.acl.found=false, so a principal without an ACL can do nothing.
# User:admin is the only super user: the broker itself (inter-broker, SCRAM; broker to
# controller, SASL/PLAIN on the loopback controller listener) and the flexforce service.
# SCRAM credentials are written into the metadata log at format time (KIP-900), so no
# running broker is needed to create them. The state dir then also holds
#   credentials        "name password" per SCRAM user (mode 600), admin first
#   admin.properties   client config for Kafka's Java tools (--command-config)
#   admin.env          FLEXFORCE_SECURITY_PROTOCOL/SASL_* for the flexforce service
#   FLEXFORCE_KAFKA_SCRAM_USERS    more SCRAM users (providers), default "acme globex"
#   FLEXFORCE_KAFKA_ADMIN_PASSWORD admin's password (default: random, in credentials)
# `restart` keeps the mode, users and passwords. The readiness probe then logs in as admin
# with aiokafka (the stdlib probe can't: the listener serves nothing before SASL).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
KAFKA_VERSION="${FLEXFORCE_KAFKA_VERSION:-4.4.0}"
CACHE_ROOT="${FLEXFORCE_CACHE:-$HOME/.cache/flexforce}"
LIBS="$CACHE_ROOT/kafka-$KAFKA_VERSION/libs"
STATE="${FLEXFORCE_KAFKA_DIR:-/tmp/flexforce-kafka}"
HEAP="${FLEXFORCE_KAFKA_HEAP:-512m}"
START_TIMEOUT="${FLEXFORCE_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT=30
MARKER=".flexforce-local-kafka"   # only a dir carrying this is ever rm -rf'ed

if [[ -n "${FLEXFORCE_PYTHON:-}" ]]; then
  PY="$FLEXFORCE_PYTHON"
elif [[ -x "$REPO/.venv/bin/python" ]]; then
  PY="$REPO/.venv/bin/python"
else
  PY="python3"
fi
# -I: isolated, so services/ is not put on sys.path (services/kafka.py etc. can't shadow).
HELPER=("$PY" -I "$REPO/services/brokers.py")

say() { echo "local-kafka: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# --------------------------------------------------------------------------- jars

fetch_jars() {
  if [[ -f "$LIBS/.complete" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  command -v java >/dev/null || die "java not found (Kafka 4.x needs Java 17+)"
  say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS (first run only)"
  mkdir -p "$(dirname "$LIBS")"
  local tmp
  tmp="$(mktemp -d "$(dirname "$LIBS")/libs.tmp.XXXXXX")"
  if ! mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
      >"$tmp.mvn.log" 2>&1; then
    cat "$tmp.mvn.log" >&2
    rm -rf "$tmp" "$tmp.mvn.log"
    die "mvn could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
  fi
  rm -f "$tmp.mvn.log"
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka jar missing after mvn"; }
  chmod 755 "$tmp"
  touch "$tmp/.complete"
  # Publish with a rename: an interrupted fetch never leaves a half-filled cache, and if a
  # concurrent fetch finished first, its (complete) copy stays and ours is dropped.
  if [[ -f "$LIBS/.complete" ]]; then
    rm -rf "$tmp"
  else
    rm -rf "$LIBS"
    mv -T "$tmp" "$LIBS" 2>/dev/null || rm -rf "$tmp"
  fi
}

# Modest heap: the machine has 2 cores and other things (tests, Faust) run beside it.
JAVA=(java -Xms128m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$HERE/log4j2.properties" -cp "$LIBS/*")
# The storage format is a one-second JVM: C1 only and serial GC start it ~30% faster.
FORMAT_JAVA=(java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
  "-Dlog4j2.configurationFile=$HERE/log4j2.properties" -cp "$LIBS/*")

# --------------------------------------------------------------------------- process

pid_of_broker() {
  # Prints the pid if the broker of THIS state dir runs. Checks the command line, so a
  # recycled pid that now belongs to another process is never signalled.
  local pid
  [[ -f "$STATE/broker.pid" ]] || return 1
  pid="$(cat "$STATE/broker.pid")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $STATE/server.properties" \
    || return 1
  echo "$pid"
}

bootstrap_addr() { cat "$STATE/bootstrap"; }

single_node_props() {
  # Storage and internal-topic settings every single-node mode shares.
  cat <<EOF
log.dirs=$STATE/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=${FLEXFORCE_KAFKA_AUTO_CREATE:-false}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
EOF
}

write_config() {
  local port="$1" cport="$2"
  if sasl_mode; then
    write_sasl_config "$port" "$cport"
    return 0
  fi
  cat >"$STATE/server.properties" <<EOF
# Generated by deploy/kafka/local-kafka.sh - single node, loopback only, for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
EOF
  single_node_props >>"$STATE/server.properties"
  echo "$port" >"$STATE/port"
  echo "$cport" >"$STATE/controller.port"
}

# --------------------------------------------------------------------------- secure mode

sasl_mode() { [[ -f "$STATE/sasl" ]]; }

random_secret() { "$PY" -I -c 'import secrets; print(secrets.token_hex(16))'; }

write_credentials() {
  # Passwords are hex: nothing in them needs quoting in JAAS, properties or --add-scram.
  local admin_pw="${FLEXFORCE_KAFKA_ADMIN_PASSWORD:-$(random_secret)}" user
  [[ "$admin_pw" =~ ^[A-Za-z0-9._-]+$ ]] || die "FLEXFORCE_KAFKA_ADMIN_PASSWORD: use [A-Za-z0-9._-] only"
  for user in ${FLEXFORCE_KAFKA_SCRAM_USERS-acme globex}; do
    [[ "$user" =~ ^[A-Za-z0-9_-]+$ && "$user" != admin ]] || die "bad SCRAM user name '$user'"
  done
  (
    umask 077
    echo "admin $admin_pw" >"$STATE/credentials"
    for user in ${FLEXFORCE_KAFKA_SCRAM_USERS-acme globex}; do
      echo "$user $(random_secret)" >>"$STATE/credentials"
    done
    cat >"$STATE/admin.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
EOF
    cat >"$STATE/admin.env" <<EOF
FLEXFORCE_SECURITY_PROTOCOL=SASL_PLAINTEXT
FLEXFORCE_SASL_MECHANISM=SCRAM-SHA-512
FLEXFORCE_SASL_USERNAME=admin
FLEXFORCE_SASL_PASSWORD=$admin_pw
EOF
  )
}

admin_password() { awk '$1 == "admin" { print $2 }' "$STATE/credentials"; }

write_sasl_config() {
  local port="$1" cport="$2" pw
  pw="$(admin_password)"
  [[ -n "$pw" ]] || die "no admin password in $STATE/credentials"
  (
    umask 077
    cat >"$STATE/server.properties" <<EOF
# Generated by deploy/kafka/local-kafka.sh start --sasl - single node, loopback only, for
# tests: SASL/SCRAM-SHA-512 clients, ACLs enforced (StandardAuthorizer), super user admin.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=SASL_PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
# Clients and inter-broker: SCRAM (credentials live in the metadata log, added at format).
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$pw";
# Broker -> controller: PLAIN (a controller can't use SCRAM: it would need the metadata log
# it is about to serve), so the broker is User:admin there too, not ANONYMOUS.
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$pw" user_admin="$pw";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
EOF
    single_node_props >>"$STATE/server.properties"
  )
  echo "$port" >"$STATE/port"
  echo "$cport" >"$STATE/controller.port"
}

scram_format_args() {
  # --add-scram per credential line: SCRAM-SHA-512 for every user.
  local name pw
  while read -r name pw; do
    [[ -n "$name" ]] && printf '%s\n%s\n' --add-scram "SCRAM-SHA-512=[name=$name,password=$pw]"
  done <"$STATE/credentials"
}

probe() {
  # Ready = a client can log in and the Metadata answer lists a broker.
  if sasl_mode; then
    FLEXFORCE_PROBE_PASSWORD="$(admin_password)" "$PY" -I "$HERE/sasl_probe.py" "$1" \
      --user admin --timeout 2
  else
    "${HELPER[@]}" probe "$1" --timeout 2
  fi
}

launch() {
  # setsid: the broker gets its own session, so a Ctrl-C or a killed test runner's process
  # group doesn't take it down half-way; it is stopped explicitly by `stop`.
  local port="$1" t0 t1
  : >"$STATE/broker.log"
  rm -f "$STATE/broker.pid"
  t0="$(date +%s%N)"
  # shellcheck disable=SC2016  # $$/$0/$@ are meant for the inner bash
  setsid nohup bash -c 'echo $$ >"$0/broker.pid"; exec "$@"' "$STATE" \
    "${JAVA[@]}" kafka.Kafka "$STATE/server.properties" >>"$STATE/broker.log" 2>&1 </dev/null 9>&- &
  local waited=0
  while [[ ! -s "$STATE/broker.pid" ]] && ((waited < 50)); do sleep 0.1; waited=$((waited + 1)); done
  local pid
  pid="$(cat "$STATE/broker.pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] || die "broker process did not start; see $STATE/broker.log"

  local deadline=$((SECONDS + START_TIMEOUT))
  until probe "127.0.0.1:$port" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "broker exited during startup; tail of $STATE/broker.log:"
      tail -n 40 "$STATE/broker.log" >&2 || true
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      say "broker did not answer on 127.0.0.1:$port within ${START_TIMEOUT}s; tail of $STATE/broker.log:"
      tail -n 40 "$STATE/broker.log" >&2 || true
      kill -KILL "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
  t1="$(date +%s%N)"
  echo "127.0.0.1:$port" >"$STATE/bootstrap"
  say "Apache Kafka $KAFKA_VERSION up on 127.0.0.1:$port (pid $pid, $(((t1 - t0) / 1000000)) ms, state $STATE)"
}

port_in_use() {
  # SO_REUSEADDR like the JVM's listener: connections of the previous run lingering in
  # TIME_WAIT don't count, only another process listening there does.
  ! "$PY" -I -c 'import socket as S, sys; s = S.socket(); s.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' \
    "$1" 2>/dev/null
}

# --------------------------------------------------------------------------- commands

cmd_start() {
  local want_sasl=0
  [[ "${1:-}" == "--sasl" ]] && want_sasl=1
  fetch_jars
  mkdir -p "$STATE"
  exec 9>"$STATE.lock"
  # Two sessions starting the same state dir: one starts, the other reuses. (launch closes
  # fd 9 for the JVM, or the broker would hold this lock for as long as it runs.)
  flock 9
  local pid
  if pid="$(pid_of_broker)"; then
    if ((want_sasl)) && ! sasl_mode; then
      die "a plain broker already runs on $STATE (pid $pid); stop it first for --sasl"
    fi
    say "already running (pid $pid)"
    bootstrap_addr
    return 0
  fi
  local port cport
  if [[ -f "$STATE/$MARKER" && -f "$STATE/server.properties" && -f "$STATE/data/meta.properties" ]]; then
    # Data kept by `stop --keep-data`: come back on the same ports with the same log.
    port="$(cat "$STATE/port")"
    cport="$(cat "$STATE/controller.port")"
    for p in "$port" "$cport"; do
      port_in_use "$p" && die "port $p (kept from the previous run) is taken by another process"
    done
    if ((want_sasl)) && ! sasl_mode; then
      die "$STATE holds a plain broker's kept data; stop it without --keep-data for --sasl"
    fi
    say "restarting on kept data in $STATE"
  else
    if [[ -n "$(ls -A "$STATE" 2>/dev/null)" && ! -f "$STATE/$MARKER" ]]; then
      die "$STATE is not empty and not ours; set FLEXFORCE_KAFKA_DIR to an empty dir"
    fi
    rm -rf "${STATE:?}"/*
    touch "$STATE/$MARKER"
    local format_extra=()
    if ((want_sasl)); then
      chmod 700 "$STATE"   # credentials; format.log lists the salted SCRAM keys
      touch "$STATE/sasl"
      write_credentials
      mapfile -t format_extra < <(scram_format_args)
    fi
    if [[ -n "${FLEXFORCE_KAFKA_PORT:-}" ]]; then
      port="$FLEXFORCE_KAFKA_PORT"
      cport="$("${HELPER[@]}" free-port)"
    else
      read -r port cport <<<"$("${HELPER[@]}" free-port 2)"
    fi
    write_config "$port" "$cport"
    local cluster_id
    cluster_id="$("${HELPER[@]}" cluster-id)"
    "${FORMAT_JAVA[@]}" kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" \
      -c "$STATE/server.properties" "${format_extra[@]}" >"$STATE/format.log" 2>&1 \
      || { cat "$STATE/format.log" >&2; die "kafka storage format failed"; }
  fi
  launch "$port"
  bootstrap_addr
}

cmd_stop() {
  local keep=0
  [[ "${1:-}" == "--keep-data" ]] && keep=1
  local pid
  if pid="$(pid_of_broker)"; then
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT * 10)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "broker (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    say "stopped (pid $pid)"
  else
    say "not running"
  fi
  rm -f "$STATE/broker.pid" "$STATE/bootstrap"
  if ((keep == 0)) && [[ -f "$STATE/$MARKER" ]]; then
    rm -rf "$STATE" "$STATE.lock"
  fi
}

cmd_status() {
  local pid
  if pid="$(pid_of_broker)"; then
    echo "running: Apache Kafka on $(bootstrap_addr) (pid $pid, state $STATE)"
  else
    echo "not running (state $STATE)"
    return 3
  fi
}

cmd_bootstrap() {
  pid_of_broker >/dev/null || die "not running (state $STATE)"
  bootstrap_addr
}

case "${1:-}" in
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  restart)
    cmd_stop --keep-data
    cmd_start
    ;;
  status) cmd_status ;;
  bootstrap) cmd_bootstrap ;;
  fetch) fetch_jars && echo "$LIBS" ;;
  *)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
