"""The deployment files agree with the code: Dockerfile, compose, Kubernetes, Prometheus, Grafana.

Docker and a cluster are not available where the tests run, so every file is parsed and checked
against what the code actually does: the settings it reads (``services.config.Settings``), the
topics it needs (``services.kafka.deployment_topics`` plus the worker's internal topic), the web
routes and port the Faust app serves, the consumer group the ingest stage joins, the CLI
commands and options, and the Prometheus metric names it exports. A rename on either side fails
here instead of in someone's rollout.

Run ``python -m tests.test_deploy`` to print the settings table of docs/deploy.md.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
import shlex
import ssl
import sys
import tomllib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import annotated_types
import pytest
import typer
import yaml
from prometheus_client.metrics import MetricWrapperBase
from pydantic import SecretStr
from pydantic.fields import FieldInfo

import services.worker.app as worker_app
from schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS, spec_for
from services import metrics
from services.cli import app as cli_app
from services.config import SaslMechanism, SecurityProtocol, Settings
from services.eventfile import read_event_file
from services.kafka import deployment_topics
from services.worker.inbound import INTERNAL_TOPIC

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "deploy" / "k8s"
PROMETHEUS = ROOT / "deploy" / "compose" / "prometheus.yml"
GRAFANA_PROVISIONING = ROOT / "deploy" / "compose" / "grafana" / "provisioning"
DASHBOARD = ROOT / "deploy" / "grafana" / "flexforce-dashboard.json"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
SAMPLE_EVENTS = ROOT / "services" / "data" / "quickstart-events.yaml"
LOCAL_KAFKA = ROOT / "deploy" / "kafka" / "local-kafka.sh"

ENV_PREFIX = "FLEXFORCE_"
WORKERS = ("worker-1", "worker-2")
#: Settings that are credentials: never in a ConfigMap, compose file or literal env value.
SECRET_SETTINGS = {
    name
    for name, field in Settings.model_fields.items()
    if SecretStr in typing.get_args(field.annotation) or field.annotation is SecretStr
} | {"sasl_username"}


# --- helpers ---------------------------------------------------------------------------------


def setting_name(env_var: str) -> str:
    """``FLEXFORCE_WEB_PORT`` -> ``web_port`` (pydantic-settings matches case-insensitively)."""
    assert env_var.startswith(ENV_PREFIX), env_var
    return env_var[len(ENV_PREFIX) :].lower()


def interpolate(value: object) -> str:
    """Resolve compose's ``${VAR:-default}`` / ``${VAR}`` the way an empty environment would."""
    return re.sub(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", str(value))


def settings_from_env(env: dict[str, Any], **overrides: Any) -> Settings:
    """Validate an environment block exactly as a process would read it (no other env vars)."""
    values: dict[str, Any] = {setting_name(k): interpolate(v) for k, v in env.items()}
    return Settings(**(values | overrides))


def cli_parse(args: list[str]) -> list[str]:
    """Parse a ``flexforce`` argument list with the real CLI (without running it); return the
    command path, e.g. ``['topics', 'create']``. Unknown commands or options raise."""
    # Typer vendors its own click: recognise groups by behaviour, not by class.
    command: Any = typer.main.get_command(cli_app)
    ctx = command.make_context("flexforce", list(args), resilient_parsing=False)
    path: list[str] = []
    while hasattr(command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, remaining = command.resolve_command(ctx, rest)
        assert name is not None and sub is not None, args
        path.append(name)
        ctx = sub.make_context(name, remaining, parent=ctx)
        command = sub
    return path


def option_values(args: list[str], option: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == option]


def worker_routes(settings: Settings) -> tuple[set[str], Any]:
    """The web routes and config of the worker's Faust app built from ``settings``."""
    app = worker_app.create_app(settings)
    return set(app.web.views), app.conf


def ingest_group(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> str:
    """The consumer group the batched ingest stage joins (what KEDA must watch)."""
    seen: list[str] = []

    class Recorder:
        def __init__(self, settings: Settings, group_id: str) -> None:
            seen.append(group_id)

    monkeypatch.setattr(worker_app, "IngestStage", Recorder)
    worker_app.create_app(settings)
    assert len(seen) == 1
    return seen[0]


def worker_created_topics(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Topics ``flexforce worker`` creates itself at start (name -> partitions)."""
    created: dict[str, int] = {}

    async def fake_ensure(settings: Settings, specs: Any, *, partitions: int | None = None) -> list:
        created.update({spec.name: partitions or spec.partitions for spec in specs})
        return []

    async def no_changelogs(settings: Settings) -> None:
        """Faust's own changelog topics: the worker pre-creates them, no initialiser needed."""

    monkeypatch.setattr(worker_app, "ensure_topics", fake_ensure)
    monkeypatch.setattr(worker_app, "_ensure_changelogs", no_changelogs)
    asyncio.run(worker_app.ensure_worker_topics(settings))
    return created


def sample_event_records() -> list[Any]:
    return list(read_event_file(SAMPLE_EVENTS))


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    """Every document kustomization.yaml applies."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs += [doc for doc in yaml.safe_load_all((K8S / resource).read_text()) if doc]
    return docs


def one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in manifests if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def configmap(manifests: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(manifests, "ConfigMap")["data"]
    return data


@pytest.fixture()
def k8s_settings(configmap: dict[str, str], tmp_path: Path) -> Settings:
    """The ConfigMap as the workers read it, with the Secrets' values and the CA file mounted.

    The CA must be a real PEM bundle (building the app loads it into an SSL context); the
    system's trust store stands in for the cluster's CA."""
    paths = ssl.get_default_verify_paths()
    bundles = [Path(p) for p in (paths.cafile, paths.openssl_cafile) if p and Path(p).is_file()]
    if not bundles:
        pytest.skip("no system CA bundle to stand in for the cluster's CA")
    ca = tmp_path / "ca.crt"
    ca.write_bytes(bundles[0].read_bytes())
    return settings_from_env(
        configmap,
        ssl_cafile=ca,
        data_dir=tmp_path / "data",
        sasl_username="placeholder",
        sasl_password="placeholder",
    )


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not current):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    pairs = []
    for text in logical:
        instruction, _, rest = text.partition(" ")
        pairs.append((instruction.upper(), rest.strip()))
    return pairs


def dockerfile_args() -> dict[str, str]:
    args = {}
    for instruction, rest in dockerfile_instructions():
        if instruction == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def expand_args(text: str) -> str:
    args = dockerfile_args()
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], text)


def runtime_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    froms = [rest for ins, rest in dockerfile_instructions() if ins == "FROM"]
    assert len(froms) >= 2, "builder + runtime stages"
    runtime_base = expand_args(froms[-1].split()[0])
    assert runtime_base == "python:3.11-slim"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    builder = froms[0].split()
    assert builder[-2].upper() == "AS"
    copies = [rest for ins, rest in runtime_stage() if ins == "COPY"]
    assert any(f"--from={builder[-1]}" in c and "/opt/venv" in c for c in copies), (
        "the runtime copies the builder's virtualenv"
    )
    # The runtime copies nothing from the build context: only the installed venv.
    assert all("--from=" in c for c in copies)


def test_dockerfile_runs_as_fixed_non_root_uid() -> None:
    users = [expand_args(rest) for ins, rest in runtime_stage() if ins == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, "numeric, so runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) > 0
    runs = " ".join(expand_args(rest) for ins, rest in runtime_stage() if ins == "RUN")
    assert f"--uid {uid}" in runs and f"--gid {gid}" in runs


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    stage = dict(runtime_stage())
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = json.loads(stage["ENTRYPOINT"])
    assert entrypoint == ["flexforce"]
    assert scripts["flexforce"] == "services.cli:app"
    cmd = json.loads(stage["CMD"])
    assert cmd == ["worker"] and cli_parse(cmd) == ["worker"]
    assert "/opt/venv/bin" in stage["ENV"].split("PATH=")[1].split()[0], "console script on PATH"


def test_dockerfile_port_healthcheck_and_defaults_match_the_app(tmp_path: Path) -> None:
    stage = runtime_stage()
    exposed = [rest for ins, rest in stage if ins == "EXPOSE"]
    assert exposed == [str(Settings.model_fields["web_port"].default)]
    env_line = " ".join(rest for ins, rest in stage if ins == "ENV")
    env = dict(re.findall(r"(FLEXFORCE_[A-Z_]+)=(\S+)", env_line))
    settings = settings_from_env(env, data_dir=tmp_path)
    assert settings.web_host == "0.0.0.0", "probes and Prometheus reach the port from outside"
    assert str(settings.web_port) == exposed[0]
    assert env["FLEXFORCE_DATA_DIR"] in " ".join(rest for ins, rest in stage if ins == "RUN"), (
        "the state directory exists in the image, owned by the app user"
    )
    health = " ".join(rest for ins, rest in stage if ins == "HEALTHCHECK")
    routes, _ = worker_routes(settings)
    assert "/health" in health and "/health" in routes
    assert "urllib.request" in health and "curl" not in health and "wget" not in health


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    allowed = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path, *("/".join(path.split("/")[: i + 1]) for i in range(path.count("/")))]
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, c) for c in candidates):
            allowed = negate
    return allowed


def test_dockerignore_sends_the_sources_and_nothing_else() -> None:
    copied = []
    for ins, rest in dockerfile_instructions():
        if ins == "COPY" and "--from=" not in rest:
            copied += rest.split()[:-1]
    assert copied, "the builder copies the project"
    for source in copied:
        assert (ROOT / source).exists(), source
        assert dockerignore_allows(source), f"{source} is copied but excluded by .dockerignore"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["readme"] in copied, "setuptools needs the readme to build"
    for package in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied
    for path in (".venv", ".git", "tests", "flexforce-data", ".env", "services/__pycache__"):
        assert not dockerignore_allows(path), f"{path} must not reach the build context"
    assert dockerignore_allows("services/cli.py")


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_has_the_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"kafka", "topics", *WORKERS, "prometheus", "grafana"}
    sims = [name for name, svc in services.items() if "sim" in svc.get("profiles", [])]
    assert sims, "simulators run behind the 'sim' profile"
    for name, svc in services.items():
        if name not in sims:
            assert "profiles" not in svc, f"{name} should start with a plain 'compose up'"


def test_compose_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = interpolate(svc["image"])
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image} is not pinned"


def test_compose_kafka_is_kraft_on_the_tested_version(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    tested = re.search(r"KAFKA_VERSION:-([0-9.]+)\}", LOCAL_KAFKA.read_text())
    assert tested is not None
    assert kafka["image"] == f"apache/kafka:{tested.group(1)}", "the version the tests run on"
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in env)
    voter_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert int(voter_id) == int(env["KAFKA_NODE_ID"])
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) == set(protocols)
    assert voter == f"kafka:{listeners[env['KAFKA_CONTROLLER_LISTENER_NAMES']].lstrip(':')}"
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    for name, address in advertised.items():
        assert listeners[name].lstrip(":") == address.rsplit(":", 1)[1]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from the initialiser"
    # The external listener is what the host port publishes.
    published = {p.split(":")[0]: p.split(":")[1] for p in kafka["ports"]}
    for name, address in advertised.items():
        if address.startswith("localhost:"):
            assert published[address.split(":")[1]] == listeners[name].lstrip(":")
    assert "kafka-data:" + env["KAFKA_LOG_DIRS"] in kafka["volumes"]
    assert kafka["healthcheck"]["test"], "workers and the initialiser wait for a healthy broker"


def flexforce_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if s["image"] == services["worker-1"]["image"]}


def test_compose_flexforce_env_is_real_settings(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    fields = set(Settings.model_fields)
    ff = flexforce_services(services)
    assert set(ff) >= {"topics", *WORKERS}
    for name, svc in ff.items():
        assert svc["build"]["context"] == ".", f"{name} builds the repository's image"
        env = svc["environment"]
        unknown = {key for key in env if key.startswith(ENV_PREFIX)} - {
            ENV_PREFIX + f.upper() for f in fields
        }
        assert not unknown, f"{name}: not Settings fields: {unknown}"
        assert not {setting_name(k) for k in env} & SECRET_SETTINGS, f"{name}: literal secret"
        settings = settings_from_env(env, data_dir=tmp_path)
        broker = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        assert f"PLAINTEXT://{settings.bootstrap_servers}" in broker.split(",")
        assert settings.security_protocol is SecurityProtocol.PLAINTEXT


def test_compose_workers(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    host_ports, volumes, client_ids = set(), set(), set()
    for name in WORKERS:
        svc = services[name]
        env = svc["environment"]
        required = {"BOOTSTRAP_SERVERS", "WEB_HOST", "WEB_PORT", "DATA_DIR", "CLIENT_ID"}
        assert {ENV_PREFIX + r for r in required} <= set(env), f"{name} misses settings"
        settings = settings_from_env(env)
        client_ids.add(settings.client_id)
        routes, conf = worker_routes(settings)
        assert conf.web_bind == "0.0.0.0"
        assert cli_parse(svc["command"]) == ["worker"]
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        # Each worker has its own state volume, mounted where the worker keeps its state.
        mounts = dict(v.split(":")[:2][::-1] for v in svc["volumes"])
        volume = mounts[str(settings.data_dir)]
        assert volume in compose["volumes"], f"{volume} is a named volume"
        volumes.add(volume)
        # Published on distinct host ports, onto the port the app listens on.
        for mapping in svc["ports"]:
            host, container = mapping.split(":")
            assert int(container) == conf.web_port
            host_ports.add(host)
        check = " ".join(svc["healthcheck"]["test"])
        assert f"127.0.0.1:{conf.web_port}/health" in check and "/health" in routes
    assert len(volumes) == len(WORKERS), "RocksDB state is per worker: one volume each"
    assert len(host_ports) == len(WORKERS)
    assert len(client_ids) == len(WORKERS)


def test_compose_topic_initialiser_creates_every_topic_the_code_needs(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = services["topics"]
    assert cli_parse(topics["command"]) == ["topics", "create"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert topics["restart"] == "no"
    providers = option_values(topics["command"], "--provider")
    by_initialiser = {spec.name for spec in deployment_topics(providers)}
    settings = settings_from_env(services["worker-1"]["environment"])
    by_worker = worker_created_topics(settings, monkeypatch)
    assert by_worker[INTERNAL_TOPIC] == settings.internal_partitions
    created = by_initialiser | set(by_worker)
    # Everything the workers read, write and dead-letter to exists before they start ...
    for spec in (*INPUT_TOPICS, *OUTPUT_TOPICS):
        assert {spec.name, spec.dead_letter} <= created, spec.name
    # ... including the request topics of the providers in the sample events.
    contracted = {
        event.provider_id
        for _, event in sample_event_records()
        if type(event).__name__ == "ProviderContractUpdated"
    }
    assert contracted and set(providers) >= contracted
    for provider in providers:
        assert spec_for(f"providers.{provider}.capacity-requests").name in created
    # The sample publisher writes only to topics that exist (auto-creation is off).
    assert {raw.topic for raw, _ in sample_event_records()} <= created


def test_compose_simulator_publishes_the_bundled_sample(
    services: dict[str, dict[str, Any]],
) -> None:
    sim = services["sample-events"]
    assert sim["profiles"] == ["sim"]
    assert sim["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    *args, path = sim["command"]
    # The file ships inside the installed package (package-data), at this path in the image.
    froms = [rest for ins, rest in dockerfile_instructions() if ins == "FROM"]
    python = re.match(r"python:(\d+\.\d+)", expand_args(froms[-1]))
    assert python is not None
    prefix = f"/opt/venv/lib/python{python.group(1)}/site-packages/"
    assert path.startswith(prefix)
    assert (ROOT / path.removeprefix(prefix)) == SAMPLE_EVENTS
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["services"]
    assert "data/*.yaml" in package_data
    assert cli_parse([*args, str(SAMPLE_EVENTS)]) == ["publish"]


def test_compose_prometheus_scrapes_every_worker(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets, paths = set(), set()
    for job in config["scrape_configs"]:
        paths.add(job.get("metrics_path", "/metrics"))
        for static in job["static_configs"]:
            targets |= set(static["targets"])
    expected = {
        f"{name}:{settings_from_env(services[name]['environment']).web_port}" for name in WORKERS
    }
    assert targets == expected
    routes, _ = worker_routes(Settings())
    assert paths == {"/metrics"} <= routes
    mounts = [v.split(":") for v in services["prometheus"]["volumes"]]
    assert ["./deploy/compose/prometheus.yml", "/etc/prometheus/prometheus.yml", "ro"] in mounts


def test_compose_grafana_is_provisioned(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    provisioning = mounts["./deploy/compose/grafana/provisioning"]
    assert provisioning == "/etc/grafana/provisioning"
    datasources = yaml.safe_load(
        (GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    port = re.search(r"--web.listen-address=:(\d+)", " ".join(services["prometheus"]["command"]))
    assert source["url"] == f"http://prometheus:{port.group(1) if port else 9090}"
    providers = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "flexforce.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["options"]["path"] == mounts["./deploy/grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{mounts['./deploy/grafana']}/{DASHBOARD.name}"


# --- Kubernetes ------------------------------------------------------------------------------


def test_k8s_kinds_and_kustomization(manifests: list[dict[str, Any]]) -> None:
    kinds = {doc["kind"] for doc in manifests}
    assert kinds >= {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ScaledObject",
        "TriggerAuthentication",
        "Job",
    }
    assert "Secret" not in kinds, "secrets are created out of band, never applied from git"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk, "every manifest is applied"
    namespace = one(manifests, "Namespace")["metadata"]["name"]
    assert kustomization["namespace"] == namespace
    for doc in manifests:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
    for image in kustomization["images"]:
        assert image["newTag"] and image["newTag"] != "latest"


def pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in manifests:
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["kind"], doc["spec"]["template"]["spec"]


def test_k8s_configmap_holds_real_settings_and_no_secrets(
    configmap: dict[str, str], k8s_settings: Settings
) -> None:
    fields = set(Settings.model_fields)
    for key in configmap:
        assert setting_name(key) in fields, f"{key} is not a Settings field"
        assert setting_name(key) not in SECRET_SETTINGS, f"{key} belongs in a Secret"
    assert k8s_settings.web_host == "0.0.0.0"
    assert k8s_settings.security_protocol is SecurityProtocol.SASL_SSL


def test_k8s_pods_take_credentials_from_secrets_only(
    manifests: list[dict[str, Any]], configmap: dict[str, str]
) -> None:
    needed = set(SECRET_SETTINGS) - {"ssl_key_password"}  # mTLS is optional
    for kind, spec in pod_specs(manifests):
        (container,) = spec["containers"]
        refs = [e["configMapRef"]["name"] for e in container["envFrom"]]
        assert refs == [one(manifests, "ConfigMap")["metadata"]["name"]]
        env = {item["name"]: item for item in container["env"]}
        for name in needed:
            item = env[ENV_PREFIX + name.upper()]
            assert "value" not in item and "secretKeyRef" in item["valueFrom"], (kind, name)
        for item in env.values():
            assert setting_name(item["name"]) in Settings.model_fields
            if setting_name(item["name"]) in SECRET_SETTINGS:
                assert "value" not in item
        # The CA file the settings point at is a mounted Secret.
        cafile = Path(configmap["FLEXFORCE_SSL_CAFILE"])
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        (ca_volume,) = [n for n, path in mounts.items() if cafile.parent == Path(path)]
        items = {i["path"]: i["key"] for i in volumes[ca_volume]["secret"].get("items", [])}
        assert cafile.name in items or not items


def test_k8s_secret_example_has_placeholders_only() -> None:
    for path in (K8S / "examples").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] != "Secret":
                continue
            assert "data" not in doc, "base64 data would hide a real value"
            for key, value in doc["stringData"].items():
                assert re.fullmatch(r"<[^>]+>", value), f"{path.name}: {key} is not a placeholder"


def test_k8s_secret_references_are_consistent(manifests: list[dict[str, Any]]) -> None:
    example: dict[str, set[str]] = {}
    for path in (K8S / "examples").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Secret":
                example[doc["metadata"]["name"]] = set(doc["stringData"])
    referenced: set[tuple[str, str]] = set()
    for _, spec in pod_specs(manifests):
        for item in spec["containers"][0]["env"]:
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                referenced.add((ref["name"], ref["key"]))
        for volume in spec["volumes"]:
            if "secret" in volume:
                for item in volume["secret"]["items"]:
                    referenced.add((volume["secret"]["secretName"], item["key"]))
    for ref in one(manifests, "TriggerAuthentication")["spec"]["secretTargetRef"]:
        referenced.add((ref["name"], ref["key"]))
    for name, key in referenced:
        assert key in example.get(name, set()), f"examples/ documents secret {name} key {key}"


def test_k8s_deployment_probes_ports_and_security(
    manifests: list[dict[str, Any]], k8s_settings: Settings
) -> None:
    deployment = one(manifests, "Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    assert cli_parse(container["args"]) == ["worker"]
    routes, conf = worker_routes(k8s_settings)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert conf.web_bind == "0.0.0.0"
    expected = {"livenessProbe": "/health", "startupProbe": "/health", "readinessProbe": "/ready"}
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path and path in routes
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert port == conf.web_port, f"{probe} targets the port the app listens on"
    annotations = pod["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == conf.web_port
    assert annotations["prometheus.io/path"] in routes
    # Resources and a locked-down, non-root container.
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} & set(container["resources"][kind])
    assert "memory" in container["resources"]["limits"]
    pod_security = pod["spec"]["securityContext"]
    users = [expand_args(rest) for ins, rest in runtime_stage() if ins == "USER"]
    assert pod_security["runAsNonRoot"] is True
    assert str(pod_security["runAsUser"]) == users[-1].split(":")[0], "the image's UID"
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # RocksDB state and the solver's temporary files need writable mounts: the root
    # filesystem is read-only.
    assert security["readOnlyRootFilesystem"] is True
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    data_dir = one(manifests, "ConfigMap")["data"]["FLEXFORCE_DATA_DIR"]
    assert {data_dir, "/tmp"} <= writable, "RocksDB state lives on a mounted volume"
    # Rolling one pod at a time, never below the current count.
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] == 1


def test_k8s_service_and_pdb_select_the_workers(
    manifests: list[dict[str, Any]], k8s_settings: Settings
) -> None:
    deployment = one(manifests, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"] for p in container["ports"]}
    service = one(manifests, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in port_names
        assert port["port"] == k8s_settings.web_port
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    scaled = one(manifests, "ScaledObject")["spec"]
    if "maxUnavailable" in pdb["spec"]:
        assert pdb["spec"]["maxUnavailable"] >= 1, "drains must be able to proceed"
    else:
        assert pdb["spec"]["minAvailable"] < scaled["minReplicaCount"]


def test_k8s_topics_job(manifests: list[dict[str, Any]]) -> None:
    job = one(manifests, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert cli_parse(container["args"]) == ["topics", "create"]
    deployment = one(manifests, "Deployment")
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert option_values(container["args"], "--provider"), "per-provider request topics"


def test_keda_scales_on_ingest_lag_bounded_by_partitions(
    manifests: list[dict[str, Any]],
    configmap: dict[str, str],
    k8s_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scaled = one(manifests, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["kind"] == "Deployment"
    assert scaled["scaleTargetRef"]["name"] == one(manifests, "Deployment")["metadata"]["name"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == ingest_group(k8s_settings, monkeypatch)
    logical = "ops.ticket-volume"
    assert logical in {spec.name for spec in INPUT_TOPICS}
    assert meta["topic"] == k8s_settings.topic(logical)
    assert meta["bootstrapServers"] == k8s_settings.bootstrap_servers
    # Bounded by the scaled topic's partitions and by the internal topic's, default and set.
    bound = min(
        spec_for(logical).partitions,
        Settings.model_fields["internal_partitions"].default,
        k8s_settings.internal_partitions,
    )
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= bound
    assert meta["allowIdleConsumers"] == "false"
    assert meta["offsetResetPolicy"] == "earliest", "the ingest consumer starts at earliest"
    assert int(meta["lagThreshold"]) > int(meta["activationLagThreshold"]) > 0
    # Authentication mirrors the workers' client settings.
    keda_sasl = {
        SaslMechanism.PLAIN: "plaintext",
        SaslMechanism.SCRAM_SHA_256: "scram_sha256",
        SaslMechanism.SCRAM_SHA_512: "scram_sha512",
        None: "none",
    }
    assert meta["sasl"] == keda_sasl[k8s_settings.sasl_mechanism]
    tls = k8s_settings.security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)
    assert meta["tls"] == ("enable" if tls else "disable")
    auth = one(manifests, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert {"username", "password"} <= params
    # Slow down, fast(er) up: scale-down waits longer than scale-up, one pod at a time.
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    up, down = behavior["scaleUp"], behavior["scaleDown"]
    assert down["stabilizationWindowSeconds"] > up["stabilizationWindowSeconds"] > 0
    for policy in (*up["policies"], *down["policies"]):
        assert policy["type"] == "Pods" and policy["value"] == 1
    replicas = one(manifests, "Deployment")["spec"]["replicas"]
    assert scaled["minReplicaCount"] <= replicas <= scaled["maxReplicaCount"]
    assert configmap["FLEXFORCE_INTERNAL_PARTITIONS"] == str(k8s_settings.internal_partitions)


# --- Grafana dashboard -----------------------------------------------------------------------


def exported_series() -> dict[str, tuple[str, set[str]]]:
    """Every series name the workers export -> (metric family, its label names)."""
    series: dict[str, tuple[str, set[str]]] = {}
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",)}
    suffixes["histogram"] = ("_bucket", "_sum", "_count", "_created")
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            registered = {family.name for family in metrics.REGISTRY.collect()}
            assert metric._name in registered
            labels = set(metric._labelnames) | ({"le"} if metric._type == "histogram" else set())
            for suffix in suffixes[metric._type]:
                series[metric._name + suffix] = (metric._name, labels)
    return series


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            queries.extend(target["expr"] for target in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["definition"])
    return queries


def test_dashboard_uses_only_exported_metrics() -> None:
    series = exported_series()
    queries = dashboard_queries()
    assert queries
    used = set()
    for query in queries:
        names = set(re.findall(r"\bflexforce_[a-z_]+", query))
        unknown = names - set(series)
        assert not unknown, f"not exported by services/metrics.py: {unknown} in {query}"
        used |= {series[name][0] for name in names}
        # Labels grouped on exist on the metrics of the expression (plus Prometheus' own).
        labels = set().union(*(series[name][1] for name in names)) | {"instance", "job"}
        for group in re.findall(r"\bby \(([^)]*)\)", query):
            grouped = {label.strip() for label in group.split(",")}
            assert grouped <= labels, f"{grouped - labels} not labels of {names}: {query}"
    missing = {family for family, _ in series.values()} - used
    assert not missing, f"metrics with no panel in {DASHBOARD.name}: {missing}"


def test_dashboard_structure() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    (datasource,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert datasource["query"] == "prometheus"
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${" + datasource["name"] + "}"
            assert panel["targets"] and panel["title"]


# --- docs/deploy.md --------------------------------------------------------------------------

#: Descriptions for settings that do not carry one in services/config.py (Field(description=...)
#: there wins). A new setting fails test_deploy_doc_settings_table until it is described.
DESCRIPTIONS = {
    "bootstrap_servers": "Kafka bootstrap servers, comma-separated `host:port`.",
    "topic_prefix": "Deployment prefix of every topic and group id, e.g. `acme.prod.`.",
    "client_profile": "`kafka` for Apache Kafka; `embedded` for the Tansu demo broker only.",
    "client_id": "Kafka client id (per pod in Kubernetes, for broker logs and quotas).",
    "security_protocol": "Kafka security protocol.",
    "sasl_mechanism": "SASL mechanism (with `SASL_*` protocols).",
    "sasl_username": "SASL user. **Secret.**",
    "sasl_password": "SASL password. **Secret.**",
    "ssl_cafile": "CA bundle (PEM) that signed the brokers' certificates; must exist.",
    "ssl_certfile": "Client certificate for mTLS; with `SSL_KEYFILE`.",
    "ssl_keyfile": "Client private key for mTLS; with `SSL_CERTFILE`.",
    "ssl_key_password": "Password of the client private key. **Secret.**",
    "solver_time_limit_s": "Solver time limit per plan, seconds.",
    "planning_policy": "Planner: `optimiser`, `greedy` or `static`.",
    "allowed_lateness_minutes": "Event-time lateness accepted before an event is refused.",
    "period_minutes": "Length of a planning period.",
    "horizon_periods": "Planning horizon, in periods.",
    "min_replan_minutes": "Debounce between two plans of a domain (event time).",
    "max_staleness_minutes": "Re-plan at least this often (event time).",
    "source": "CloudEvents `source` of the events the workers publish.",
    "app_id": "Faust app id; with the prefix, the consumer groups and changelog topic names.",
    "data_dir": "Local RocksDB state directory (a cache of the changelog topics).",
    "web_host": "Bind address of the web port (`0.0.0.0` in containers).",
    "web_port": "Port of /health, /ready, /plan/{domain}, /metrics.",
    "internal_partitions": "Partitions of `internal.domain-inputs` and of the tables.",
}


def _env_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`{json.dumps(value)}`"
    return f"`{value}`" if str(value) != "" else '`""` (none)'


def _type(field: FieldInfo) -> str:
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        text = " \\| ".join(f"`{member.value}`" for member in annotation)
    elif annotation is SecretStr:
        text = "secret string"
    elif typing.get_origin(annotation) is list:
        text = "JSON list"
    else:
        text = getattr(annotation, "__name__", str(annotation)).replace("Path", "path")
    bounds = []
    for item in field.metadata:
        for attr, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            if isinstance(item, getattr(annotated_types, attr.capitalize())):
                bounds.append(f"{symbol} {getattr(item, attr)}")
        if getattr(item, "pattern", None):
            bounds.append("`" + item.pattern.replace("|", "\\|") + "`")
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def settings_table() -> str:
    """The configuration table of docs/deploy.md, from ``Settings`` itself."""
    rows = ["| variable | default | type | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        meaning = field.description or DESCRIPTIONS.get(name)
        assert meaning, f"describe setting {name!r} in services/config.py or DESCRIPTIONS"
        rows.append(
            f"| `{ENV_PREFIX}{name.upper()}` | {_env_value(default)} | {_type(field)} | {meaning} |"
        )
    return "\n".join(rows)


def test_deploy_doc_settings_table_is_in_sync() -> None:
    text = DEPLOY_DOC.read_text()
    match = re.search(
        r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", text, re.S
    )
    assert match, "docs/deploy.md keeps the table between settings-table markers"
    assert match.group(1).strip() == settings_table(), (
        "docs/deploy.md's settings table is stale: paste `python -m tests.test_deploy`"
    )


def test_deploy_doc_commands_are_real() -> None:
    """Every `flexforce ...` command line in docs/deploy.md parses with the real CLI."""
    text = DEPLOY_DOC.read_text()
    lines = re.findall(r"^\s*(?:\$ )?flexforce ([^\n`#|]+)$", text, re.M)
    assert lines
    for line in lines:
        args = shlex.split(line.replace("\\", ""))
        args = [str(SAMPLE_EVENTS) if arg.endswith(".yaml") else arg for arg in args]
        cli_parse(args)


if __name__ == "__main__":
    sys.stdout.write(settings_table() + "\n")
