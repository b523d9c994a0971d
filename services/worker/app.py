"""The Faust app of a worker: topics, tables, the domain agent, the ingest stage and web views.

A factory rather than a module-level app, because the settings (broker, prefix, profile, data
directory, web port) differ between a deployment, the demo and each test's workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import faust
import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faust.types import TP
from faust.types.auth import CredentialsT

from schemas import Event
from schemas.topics import TopicSpec
from services.config import SaslMechanism, SecurityProtocol, Settings
from services.kafka import deployment_topics, ensure_topics
from services.metrics import INGEST_RESTARTS
from services.worker.agent import DomainHandler, GapReader, OutputSender
from services.worker.faust_tuning import tune_worker_consumer
from services.worker.gc_tuning import tune_gc
from services.worker.inbound import INTERNAL_TOPIC
from services.worker.ingest import IngestStage
from services.worker.planner import Planner
from services.worker.views import register_views

log = structlog.get_logger(__name__)

#: RocksDB per table partition. Faust's defaults are 64 MB memtables (up to 3) and a 2 GB block
#: cache: each stored plan (~1 MB of JSON) and domain state stayed in a memtable until 64 MB
#: had piled up, so the worker grew ~1.5 MB per plan (measured in bench/pipeline.py: main
#: process 154 -> 202 MB over 32 plans). The tables hold one value per domain; small memtables
#: flush them to disk early and lose nothing (the changelog topics are the source of truth).
ROCKSDB_OPTIONS: dict[str, int] = {
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 1024 * 1024,
}
#: Pause before a failed ingest stage starts again (no tight crash loop against the broker).
INGEST_RESTART_DELAY_S = 1.0


def _store_url() -> str:
    """RocksDB (via rocksdict) where it is installed; memory otherwise (state then rebuilds
    from the changelog topics at every start, which is slower but loses nothing)."""
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        return "memory://"
    return "rocksdb://"


def _credentials(settings: Settings) -> CredentialsT | ssl.SSLContext | None:
    options = settings.client_options()
    context: ssl.SSLContext | None = options.get("ssl_context")
    if settings.security_protocol in (SecurityProtocol.SASL_SSL, SecurityProtocol.SASL_PLAINTEXT):
        mechanism = settings.sasl_mechanism or SaslMechanism.PLAIN
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            ssl_context=context,
            mechanism=mechanism.value,
        )
    return context


async def ensure_worker_topics(settings: Settings) -> None:
    """Create the contract's topics and the internal hand-over topic before the app starts
    (Faust declares only its own changelogs; the broker must not auto-create ours with
    other partition counts)."""
    internal = TopicSpec(
        INTERNAL_TOPIC,
        Event,
        "domain",
        "Validated input events, batched per planning domain.",
        partitions=settings.internal_partitions,
        max_event_bytes=4 * 1024 * 1024,
        is_input=False,
    )
    await ensure_topics(settings, [*deployment_topics(), internal])
    await _ensure_changelogs(settings)


#: Faust's own topics, by name suffix, as Faust would declare them (compacted changelogs).
FAUST_TABLES = ("domain-state", "last-plan")


async def _ensure_changelogs(settings: Settings) -> None:
    """Create the tables' changelog topics before Faust starts. Faust creates them itself,
    but then reads metadata at once; on Apache Kafka the new topic is sometimes not in that
    metadata yet ("Ignoring missing topic ...-last-plan-changelog") and the worker never
    became ready (seen in about 1 of 6 starts in tests/test_worker_kafka.py)."""
    app_id = settings.topic_prefix + settings.app_id
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        brokers = len((await admin.describe_cluster())["brokers"])
        replication = settings.changelog_replication_factor or min(3, brokers)
        if replication > brokers:
            raise ValueError(
                f"FLEXFORCE_CHANGELOG_REPLICATION_FACTOR={replication} but the cluster has "
                f"{brokers} broker(s)"
            )
        wanted = [
            NewTopic(
                name=f"{app_id}-{table}-changelog",
                num_partitions=settings.internal_partitions,
                replication_factor=replication,
                topic_configs={} if settings.embedded else {"cleanup.policy": "compact"},
            )
            for table in FAUST_TABLES
            if f"{app_id}-{table}-changelog" not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
            # wait until the broker lists them, so Faust's first metadata read has them
            for _ in range(50):
                if {t.name for t in wanted} <= set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


def create_app(settings: Settings) -> faust.App:
    """Build a worker's Faust app from settings (nothing connects until it starts)."""
    tune_worker_consumer()  # Faust's hard-coded 1.5 s fetch wait stalled the domain agent
    app_id = settings.topic_prefix + settings.app_id
    app = faust.App(
        app_id,
        broker=";".join(f"kafka://{host}" for host in settings.bootstrap_servers.split(",")),
        broker_credentials=_credentials(settings),
        store=_store_url(),
        datadir=str(settings.data_dir),
        processing_guarantee="exactly_once" if settings.exactly_once else "at_least_once",
        # Seconds, not the 30–90 s defaults: a SIGKILLed worker's domains are planned by
        # another within about the session timeout + 1 s (measured on Apache Kafka 4.4, see
        # tests/test_worker_failures.py). The rebalance timeout bounds how long a rebalance
        # waits for live members to re-join; they heartbeat every second, so 10 s is ample.
        broker_session_timeout=settings.group_session_timeout_s,
        broker_heartbeat_interval=settings.group_heartbeat_interval_s,
        broker_rebalance_timeout=10.0,
        broker_max_poll_interval=300.0,
        producer_acks=1 if settings.embedded else -1,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.internal_partitions,
        # Faust's own topics (changelogs are pre-created above with the same factor)
        topic_replication_factor=settings.changelog_replication_factor or 1,
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        key_serializer="raw",
        value_serializer="raw",
        logging_config=None,
    )
    inputs = app.topic(
        settings.topic(INTERNAL_TOPIC),
        key_type=bytes,
        value_type=bytes,
        partitions=settings.internal_partitions,
    )
    tables: dict[str, Any] = {
        "default": None,
        "partitions": settings.internal_partitions,
        "key_type": bytes,
        "value_type": bytes,
        "options": ROCKSDB_OPTIONS,
    }
    states = app.Table("domain-state", **tables)
    # Global: every worker holds every domain's last plan, so any worker answers /plan/{domain}.
    plans = app.GlobalTable("last-plan", **tables)
    sender = OutputSender(app, settings)
    planner = Planner(settings.planning_policy, settings.solver_time_limit_s)
    internal_topic = settings.topic(INTERNAL_TOPIC)

    async def rewind(partition: int, offset: int) -> None:
        # in the consumer's thread (Consumer.seek would touch aiokafka from this one)
        await app.consumer.seek_wait({TP(internal_topic, partition): offset})

    async def earliest(partition: int) -> int:
        tp = TP(internal_topic, partition)
        return int((await app.consumer.earliest_offsets(tp))[tp])

    handler = DomainHandler(
        settings,
        states,
        plans,
        sender,
        planner,
        rewind,
        earliest,
        read_gap=GapReader(settings, internal_topic),
    )
    ingest = IngestStage(settings, group_id=f"{app_id}-ingest")

    @app.agent(inputs)
    async def domains(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            message = event.message
            # Only the partition's next message, by the table's record (not the group's
            # committed offset, which Faust can move past messages it never delivered);
            # a domain's batch, or an event-time heartbeat from ingest.
            await handler.on_message(event.key, event.value, message.partition, message.offset)

    @app.task  # type: ignore[untyped-decorator]
    async def warm_planner() -> None:
        tune_gc()  # the worker runs: fewer collections of its large, mostly acyclic heap
        await planner.warm()  # the first plan should not wait for a process start

    @app.task  # type: ignore[untyped-decorator]
    async def run_ingest() -> None:
        # Supervised: an error in the stage (a rebalance race, a broker hiccup) would otherwise
        # crash the whole app and take the domain agent down with it. Restarting the stage is
        # safe: offsets are committed only after forwarding, so it re-reads, never skips.
        while True:
            try:
                await ingest.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                INGEST_RESTARTS.inc()
                log.exception("ingest.failed_restarting", delay_s=INGEST_RESTART_DELAY_S)
                await asyncio.sleep(INGEST_RESTART_DELAY_S)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_cached_domains(app: faust.App, revoked: Any, **_: Any) -> None:
        handler.forget()  # the table is the truth; a domain that comes back reloads from it

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def drop_moved_domains(app: faust.App, assigned: Any, **_: Any) -> None:
        # per-domain gauges of domains another worker plans now would go stale here
        handler.retain({tp.partition for tp in assigned if tp.topic == internal_topic})

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_ingest(app: faust.App, **_: Any) -> None:
        ingest.stop()
        planner.close()

    register_views(
        app,
        states=states,
        plans=plans,
        ingest=ingest,
        handler=handler,
        internal_topic=internal_topic,
    )
    return app
