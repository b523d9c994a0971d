"""The ``flexforce`` command: brokers, topics, publishing, tailing and the quick start."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from schemas import DeadLetter, Event, InvalidEvent
from schemas.topics import ALL_TOPICS, capacity_requests_spec
from services.config import ClientProfile, Settings
from services.eventfile import EventFileError, RawRecord, read_event_file
from services.kafka import (
    Delivered,
    EventPublisher,
    Refused,
    ValidatingReader,
    deployment_topics,
    ensure_topics,
    read_topic,
)
from services.logs import configure_logging

app = typer.Typer(
    help="flexforce: event-driven, contract-aware capacity allocation for IT operations.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
topics_app = typer.Typer(help="Create and inspect flexforce topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
console = Console()

Bootstrap = Annotated[
    str | None,
    typer.Option("--bootstrap", "-b", help="Kafka bootstrap servers (default: $FLEXFORCE_...)."),
]
Prefix = Annotated[str | None, typer.Option("--prefix", help="Topic prefix, e.g. 'acme.prod.'.")]
Profile = Annotated[
    ClientProfile | None,
    typer.Option("--profile", help="Client profile: kafka, or embedded for the Tansu broker."),
]


def _settings(
    bootstrap: str | None, prefix: str | None, profile: ClientProfile | None = None
) -> Settings:
    overrides: dict[str, Any] = {}
    if bootstrap:
        overrides["bootstrap_servers"] = bootstrap
    if prefix is not None:
        overrides["topic_prefix"] = prefix
    if profile is not None:
        overrides["client_profile"] = profile
    try:
        return Settings(**overrides)
    except ValueError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from exc


@app.callback()
def _main(
    log_json: Annotated[
        bool, typer.Option("--log-json", envvar="FLEXFORCE_LOG_JSON", help="Logs as JSON lines.")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", envvar="FLEXFORCE_LOG_LEVEL")
    ] = "WARNING",
) -> None:
    configure_logging(json=log_json, level=log_level.upper())


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).")] = 9092,
) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, memory only) until Ctrl-C."""
    from services.brokers import EmbeddedBroker

    embedded = EmbeddedBroker(port=port or None)
    embedded.start()
    console.print(
        f"embedded broker on [bold]{embedded.bootstrap}[/] — memory only: "
        "[yellow]nothing is kept across restarts[/]. Use --profile embedded with it. Ctrl-C stops."
    )
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        embedded.stop()


@topics_app.command("create")
def topics_create(
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    profile: Profile = None,
    provider: Annotated[
        list[str] | None, typer.Option("--provider", help="Provider id (repeatable).")
    ] = None,
    partitions: Annotated[int | None, typer.Option(help="Override partition counts.")] = None,
) -> None:
    """Create every flexforce topic (idempotent): the contract's, per-provider and dead-letter
    topics, and the workers' own (internal hand-over topic, table changelogs), so a cluster
    with topic auto-creation off is ready before the first worker starts."""
    from services.worker.app import ensure_worker_topics

    settings = _settings(bootstrap, prefix, profile)
    specs = deployment_topics(provider or [])
    created = asyncio.run(ensure_topics(settings, specs, partitions=partitions))
    asyncio.run(ensure_worker_topics(settings))
    console.print(
        f"{len(created)} topics created, {len(specs) - len(created)} already there "
        "(and the workers' internal and changelog topics)"
    )


@topics_app.command("list")
def topics_list() -> None:
    """Print the topic table (logical names, keys, events); every topic also has a .dlq."""
    table = Table("topic", "key", "event", "compacted", "partitions")
    template = capacity_requests_spec("provider")
    for spec in (*ALL_TOPICS, template):
        name = spec.name.replace(".provider.", ".<provider_id>.")
        table.add_row(
            name, spec.key, spec.event.event_type, str(spec.compacted), str(spec.partitions)
        )
    console.print(table)
    console.print("and <topic>.dlq for each: dead letters keyed by the original key")


async def _publish_file(
    settings: Settings, path: Path, validate_first: bool
) -> tuple[int, list[tuple[RawRecord, InvalidEvent]]]:
    records = list(read_event_file(path))
    invalid = [(raw, outcome) for raw, outcome in records if isinstance(outcome, InvalidEvent)]
    if validate_first and invalid:
        return 0, invalid
    async with EventPublisher(settings) as publisher:
        acks = [
            await publisher.send_raw(raw.topic, raw.key, raw.value, list(raw.headers))
            for raw, _ in records
        ]
        await asyncio.gather(*acks)
    return len(acks), invalid


@app.command()
def publish(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL or YAML.")],
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    profile: Profile = None,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate/--no-validate",
            help="Refuse the whole file if a record is invalid (default), or send it as written.",
        ),
    ] = True,
) -> None:
    """Publish the events of a file to their topics."""
    settings = _settings(bootstrap, prefix, profile)
    try:
        sent, invalid = asyncio.run(_publish_file(settings, file, validate))
    except EventFileError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    for raw, refusal in invalid:
        console.print(f"[red]record {raw.line}[/] ({raw.topic}): {refusal.error_class}: {refusal}")
    if validate and invalid:
        console.print(f"[red]nothing sent:[/] {len(invalid)} invalid record(s)")
        raise typer.Exit(1)
    console.print(f"sent {sent} record(s); {len(invalid)} of them invalid (sent as written)")


def _describe(event: Event) -> str:
    if isinstance(event, DeadLetter):
        return f"[red]{event.error_class}[/] {event.original_topic}@{event.offset}: {event.reason}"
    fields = event.data()
    fields.pop("domain", None)
    text = json.dumps(fields, default=str)
    return text if len(text) < 160 else text[:157] + "..."


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help="Logical topic, e.g. ops.ticket-volume.dlq")],
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    profile: Profile = None,
    limit: Annotated[int | None, typer.Option(help="Stop after N records.")] = None,
    idle: Annotated[float, typer.Option(help="Stop after this many idle seconds.")] = 2.0,
) -> None:
    """Print a topic's events from the beginning, readable, one per line."""
    settings = _settings(bootstrap, prefix, profile)

    async def run() -> None:
        async for record, outcome in read_topic(settings, topic, idle_timeout_s=idle, limit=limit):
            where = f"[dim]{record.partition}:{record.offset}[/]"
            if isinstance(outcome, Delivered):
                event = outcome.event
                kind = type(event).__name__
                console.print(f"{where} [bold]{kind}[/] {event.key} {_describe(event)}")
            else:
                console.print(f"{where} [red]invalid[/] {outcome.letter.reason}")

    asyncio.run(run())


@app.command()
def explain(
    ident: Annotated[str, typer.Argument(metavar="PLAN_ID|REQUEST_ID", help="Plan or request id.")],
    domain: Annotated[str | None, typer.Option(help="Only this planning domain.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    profile: Profile = None,
) -> None:
    """Why a plan is what it is: costs, solver, inputs, binding constraints, marginal values,
    relaxations, its decisions and the capacity requests it sent (with their answers). A
    request id explains the plan that sent it. Read from the topics; exit 1 if not found."""
    from services import explain as ex

    settings = _settings(bootstrap, prefix, profile)
    try:
        data = ex.explain(settings, ident, domain)
    except ex.ExplainError as exc:
        if json_out:
            typer.echo(json.dumps({"query": ident, "error": str(exc)}))
        else:
            console.print(f"[red]not found:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    if json_out:
        typer.echo(json.dumps(data, indent=2))
    else:
        ex.render(data, console)


async def _quickstart(settings: Settings, path: Path) -> tuple[list[Delivered], list[DeadLetter]]:
    """Publish a file as written, then validate everything on the broker like a worker would."""
    await ensure_topics(settings, deployment_topics(["acme-outsourcing"]), partitions=1)
    sent, _ = await _publish_file(settings, path, validate_first=False)
    delivered: list[Delivered] = []
    letters: list[DeadLetter] = []
    async with ValidatingReader(settings, group_id="flexforce-quickstart") as reader:
        async for batch in reader.batches(timeout_ms=500):
            for outcome in batch:
                if isinstance(outcome, Delivered):
                    delivered.append(outcome)
                elif isinstance(outcome, Refused):
                    letters.append(outcome.letter)
            if len(delivered) + len(letters) >= sent:
                await reader.commit()
                break
    return delivered, letters


@app.command()
def quickstart(
    file: Annotated[
        Path | None, typer.Option(help="Event file (default: the bundled sample).")
    ] = None,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
) -> None:
    """Zero-setup tour: embedded broker, sample events, validation and dead letters, live."""
    path = file or Path(str(resources.files("services") / "data" / "quickstart-events.yaml"))
    embedded = None
    if bootstrap is None:
        from services.brokers import EmbeddedBroker

        embedded = EmbeddedBroker()
        started = time.perf_counter()
        embedded.start()
        console.print(
            f"embedded broker (Tansu, [yellow]memory only — nothing is kept[/]) on "
            f"{embedded.bootstrap}, up in {time.perf_counter() - started:.1f} s"
        )
        settings = _settings(embedded.bootstrap, prefix, ClientProfile.EMBEDDED)
    else:
        settings = _settings(bootstrap, prefix)
    try:
        delivered, letters = asyncio.run(_quickstart(settings, path))
    finally:
        if embedded is not None:
            embedded.stop()
    table = Table(title=f"{len(delivered)} valid events on the broker", show_lines=False)
    table.add_column("topic")
    table.add_column("event")
    table.add_column("key")
    for item in delivered:
        table.add_row(item.topic, type(item.event).__name__, item.event.key)
    console.print(table)
    dlq = Table(title=f"{len(letters)} refused → dead-letter topics, with the reason")
    dlq.add_column("dead-letter topic")
    dlq.add_column("error")
    dlq.add_column("reason", overflow="fold")
    for letter in letters:
        dlq.add_row(letter.original_topic + ".dlq", letter.error_class, letter.reason)
    console.print(dlq)
    counts = Counter(type(item.event).__name__ for item in delivered)
    console.print(f"valid by type: {dict(sorted(counts.items()))}")


@app.command()
def worker(
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    profile: Profile = None,
    data_dir: Annotated[Path | None, typer.Option(help="Local state (RocksDB) directory.")] = None,
    web_port: Annotated[int | None, typer.Option(help="Port of /health, /plan, /metrics.")] = None,
    log_level: Annotated[str, typer.Option("--worker-log-level")] = "info",
) -> None:
    """Run a worker: ingest, forecast, plan and publish decisions (Ctrl-C stops cleanly)."""
    from faust.worker import Worker

    from services.worker.app import create_app, ensure_worker_topics

    settings = _settings(bootstrap, prefix, profile)
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if web_port is not None:
        overrides["web_port"] = web_port
    if overrides:
        settings = settings.model_copy(update=overrides)
    asyncio.run(ensure_worker_topics(settings))
    faust_app = create_app(settings)
    Worker(
        faust_app, loglevel=log_level, quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


@app.command()
def evaluate(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Scenario YAML file.")],
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="optimiser|greedy|reactive|static|all")
    ] = "all",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results here.")] = None,
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka",
            help="Run the planner policies through Kafka with a real worker each (embedded "
            "broker unless --bootstrap); reactive, not a worker policy, stays in process.",
        ),
    ] = False,
    bootstrap: Bootstrap = None,
    service_margin: Annotated[
        float | None,
        typer.Option(
            "--service-margin",
            min=0.0,
            max=0.999,
            help="Planning target of the planner policies: queues planned to target + "
            "margin x (1 - target) (overrides the scenario's planning.service_target_margin).",
        ),
    ] = None,
) -> None:
    """Closed-loop evaluation: cost, SLA, unmet hours, actions, violations.

    In process by default (fast); with --kafka each planner policy runs as `flexforce worker`
    fed by the simulators through the broker, as in `flexforce demo`.
    """
    from services.sim import evaluate as ev
    from services.sim.scenario import ScenarioError, load_scenario

    try:
        loaded = load_scenario(scenario)
        if service_margin is not None:
            planning = loaded.planning.model_copy(update={"service_target_margin": service_margin})
            loaded = loaded.model_copy(update={"planning": planning})
        names = list(ev.POLICIES) if policy == "all" else [policy]
        if kafka:
            results = [_evaluate_through_kafka(loaded, name, bootstrap) for name in names]
        else:
            with console.status("evaluating") as status:
                results = ev.evaluate(
                    loaded,
                    names,
                    progress=lambda n, at: status.update(f"{n}: {at:%Y-%m-%d %H:%M}"),
                )
    except (ScenarioError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    ev.render(loaded, results, console)
    if json_out is not None:
        ev.write_json(json_out, loaded, results)
        console.print(f"JSON written to {json_out}")


def _evaluate_through_kafka(scenario: Any, name: str, bootstrap: str | None) -> Any:
    """One policy's closed loop through Kafka with a real worker (reactive: in process)."""
    from services.sim import demo as dm
    from services.sim import evaluate as ev

    if name not in ("optimiser", "greedy", "static"):
        if name not in ev.POLICIES:
            raise ValueError(f"unknown policy {name!r}")
        (result,) = ev.evaluate(scenario, [name])
        result.policy = f"{name} (in process)"
        return result
    root = dm.temp_root()
    embedded = None
    if bootstrap is None:
        from services.brokers import EmbeddedBroker

        embedded = EmbeddedBroker()
        embedded.start()
        settings = _settings(embedded.bootstrap, f"eval{name}.", ClientProfile.EMBEDDED)
    else:
        settings = _settings(bootstrap, f"eval{name}{int(time.time())}.")
    try:
        with console.status(f"{name}: closed loop through Kafka"):
            run = asyncio.run(
                dm.run_demo(scenario, settings, root, console=console, live=False, policy=name)
            )
    except dm.DemoError as exc:
        raise ValueError(f"{name} through Kafka failed: {exc}") from exc
    finally:
        if embedded is not None:
            embedded.stop()
    result = ev._summarise(f"{name} (worker, Kafka)", run.result, run.seconds)
    result.late_rounds = run.late_rounds
    return result


DEFAULT_DEMO_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "bank-week.yaml"


@app.command()
def demo(
    scenario: Annotated[
        Path, typer.Option("--scenario", "-s", help="Scenario YAML (default: bank-week).")
    ] = DEFAULT_DEMO_SCENARIO,
    hours: Annotated[
        float, typer.Option(help="Measured hours of event time (default 48: Mon–Tue).")
    ] = 48.0,
    history_days: Annotated[
        int | None,
        typer.Option(
            help="Days of history back-filled first (forecast training; default: the "
            "scenario's — bank-week: 6, so Wednesday's peak is forecast and bought for)."
        ),
    ] = None,
    lead_in_hours: Annotated[
        float | None,
        typer.Option(
            help="Closed loop before measuring (providers ramp up; default: the scenario's, 24)."
        ),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(help="Max event seconds per wall second (default: the scenario's, 3600)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Report (default: ./flexforce-report-<scenario>.html)."),
    ] = None,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Live terminal view.")] = True,
    whatif_report: Annotated[
        bool, typer.Option("--whatif/--no-whatif", help="Add the what-if comparison.")
    ] = True,
) -> None:
    """The closed loop through Kafka, live: embedded broker, a worker, simulators; then an
    HTML report.

    Starts the embedded broker (Tansu, memory only; or uses --bootstrap), runs `flexforce
    worker` as a child process, and in this process the simulated operations system (real
    bank calls, 15-minute volumes), the simulated providers (answering the worker's capacity
    requests) and the service-outcome model. Event time advances one demand interval per
    round: the demo publishes the interval, waits for the worker to plan it, hands its
    requests to the providers, as the in-process loop of `flexforce evaluate` does. The
    default (6 days of history back-filled, 24 h lead-in, 48 h measured) takes about 2
    minutes on 2 cores. The what-if section re-plans (in this process) from the worker's
    own final state of the domain.
    Exits 0 after printing the report's path; every child process is stopped.
    """
    from services.sim import demo as dm
    from services.sim import evaluate as ev
    from services.sim.scenario import ScenarioError, load_scenario

    try:
        loaded = dm.demo_scenario(load_scenario(scenario), hours, history_days, lead_in_hours)
    except (ScenarioError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    path = out or Path.cwd() / f"flexforce-report-{loaded.name}.html"
    root = dm.temp_root()
    embedded = None
    started = time.perf_counter()
    if bootstrap is None:
        from services.brokers import EmbeddedBroker

        embedded = EmbeddedBroker()
        embedded.start()
        console.print(
            f"embedded broker (Tansu, [yellow]memory only[/]) on {embedded.bootstrap}; "
            f"worker logs in {root}"
        )
        settings = _settings(embedded.bootstrap, prefix or "demo.", ClientProfile.EMBEDDED)
    else:
        settings = _settings(bootstrap, prefix or f"demo{int(time.time())}.")
    try:
        run = asyncio.run(
            dm.run_demo(loaded, settings, root, console=console, acceleration=speed, live=live)
        )
    except dm.DemoError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        if embedded is not None:
            embedded.stop()
    summary = ev._summarise("optimiser (worker, through Kafka)", run.result, run.seconds)
    _write_demo_report(path, loaded, run, summary, whatif_report, bootstrap is None)
    ev.render(loaded, [summary], console)
    console.print(
        f"closed loop through Kafka in {time.perf_counter() - started:.0f} s "
        f"({run.result.stats.plans} plans by the worker, {run.result.stats.requests} requests)"
    )
    console.print(f"report: [bold]{path}[/]")


def _write_demo_report(
    path: Path, scenario: Any, run: Any, summary: Any, with_whatif: bool, embedded: bool
) -> None:
    from services.sim import report
    from services.sim import whatif as wi

    what = None
    if with_whatif and run.domain_state is None:
        console.print("[yellow]what-if skipped: the worker did not return its domain state[/]")
    elif with_whatif:
        with console.status("what-if: re-planning from the worker's final state"):
            proc = wi.state_from_worker(scenario, run.domain_state)
            variants = [
                (label, wi.parse_overrides(items))
                for label, items in report.default_variants([p.id for p in scenario.providers])
            ]
            what = wi.whatif(proc.problem(), variants, wi.planning_policy(scenario))
    broker = "the embedded broker (Tansu, memory only)" if embedded else "the given Kafka broker"
    how = [
        f"Broker: {broker}; topics prefixed 'demo.' with one partition each.",
        "Worker: `flexforce worker` in a child process (batched ingest, domain agent, "
        "optimiser in its solver process), planning with its own settings: the scenario's "
        "planning block and policy weights mapped to FLEXFORCE_*.",
        "Simulators (the demo process): operations (real 15-minute bank calls with the "
        "backlog left), providers (answering the worker's capacity requests per their "
        "behaviour) and the service-outcome model that scored this report.",
        f"History: {scenario.history_days} days back-filled (in-house only, contracts "
        f"published at the lead-in); lead-in {scenario.lead_in_hours:g} h; measured "
        f"{scenario.duration_hours:g} h; rounds of one demand interval, as in the in-process "
        "loop (requests received at the end of the interval they were made in).",
        "What-if: re-planned in the demo process from the worker's own planner state at the "
        "end (its /state/{domain} view), with the scenario's planner settings.",
        f"Wall time of the closed loop: {run.seconds:.0f} s; dead letters seen: "
        f"{run.dead_letters}.",
    ]
    facts = [("worker's last plan", _plan_fact(run.plan))]
    report.write_report(
        path,
        report.ReportInput(
            title=f"flexforce demo — {scenario.name}",
            scenario=scenario.name,
            description=scenario.description,
            timeline=run.timeline,
            summary=summary.to_dict(),
            whatif=what,
            how=how,
            facts=facts,
        ),
    )


def _plan_fact(plan: dict[str, Any] | None) -> str:
    if not plan:
        return "–"
    cost = plan.get("cost", {}).get("total", 0.0)
    return f"{plan.get('plan_id', '?')} as of {plan.get('as_of', '?')}, planned cost €{cost:,.0f}"


@app.command()
def whatif(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Scenario YAML file.")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE (repeatable): provider.<id>.status=suspended, "
            "provider.<id>.max_fte=N, provider.<id>.rate=F, demand.scale=F, "
            "demand.<queue>.scale=F, team.<id>.fte=N, policy.<field>=V.",
        ),
    ] = None,
    hours: Annotated[
        float, typer.Option(help="Re-plan from the state this many hours into the scenario.")
    ] = 24.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results here.")] = None,
) -> None:
    """Re-plan from one state with changed facts; print the difference in cost, SLA and
    requests. The state is the planner core's after the scenario's in-process closed loop ran
    --hours into its measured window; both plans start from it, nothing is sent."""
    from services.sim import whatif as wi
    from services.sim.scenario import ScenarioError, load_scenario

    try:
        loaded = load_scenario(scenario)
        overrides = wi.parse_overrides(set_ or [])
        with console.status(f"running the closed loop {hours:g} h into {loaded.name}"):
            proc = wi.state_from_loop(loaded, hours)
            problem = proc.problem()
            wi.apply_overrides(problem, overrides)  # fail before solving anything
        label = ", ".join(o.text for o in overrides) or "as is (no --set)"
        with console.status("re-planning"):
            result = wi.whatif(problem, [(label, overrides)], wi.planning_policy(loaded))
    except (ScenarioError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    wi.render(result, console)
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
        console.print(f"JSON written to {json_out}")


if __name__ == "__main__":
    app()


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def acls(ctx: typer.Context) -> None:
    """Print (or --apply) the Kafka ACLs that isolate each provider (see docs/security.md).

    Arguments as `python -m services.acls`: PROVIDER_ID... [--prefix P] [--format text|kafka-acls]
    [--apply --bootstrap HOST:PORT --command-config admin.properties]; --help for details.
    """
    from services.acls import main as acls_main

    raise typer.Exit(acls_main(list(ctx.args)))
