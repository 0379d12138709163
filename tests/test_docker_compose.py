"""The wiring of docker-compose.yaml and the Dockerfile that a user of the stack depends on.

Nothing here starts a container: the file is read as data, and each test names the service and
the key at fault, so a broken edit to the compose file fails here rather than at `docker compose up`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from deployflow.metrics.prometheus import config_text

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
REQUIREMENTS = REPO_ROOT / "requirements.txt"
PYPROJECT = REPO_ROOT / "pyproject.toml"

AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
ONE_SHOT_SERVICES = frozenset({"airflow-init"})
REQUIRED_SERVICES = frozenset(
    {*AIRFLOW_SERVICES, *ONE_SHOT_SERVICES, "postgres", "redis", "azurite", "deployflow-runtime", "prometheus"}
)
REDIS_PORT = 6379
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]"})
COMPOSE_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")
URL_HOST = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?P<host>[^/:;?\s\"']+)(?::(?P<port>\d+))?")

Service = dict[str, Any]


@pytest.fixture(scope="module")
def services() -> dict[str, Service]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    return compose["services"]


def environment(service: Service) -> dict[str, str]:
    """A service's environment as a mapping, whichever of compose's two forms the file uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def dependencies(service: Service) -> dict[str, str]:
    """Service name -> condition waited for; the list form means `service_started`."""
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):
        return dict.fromkeys(depends_on, "service_started")
    return {name: spec["condition"] for name, spec in depends_on.items()}


def command_args(service: Service) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(arg) for arg in command]


def command_option(service: Service, option: str) -> str:
    args = command_args(service)
    assert option in args, f"command {args} has no {option}"
    return args[args.index(option) + 1]


def container_ports(service: Service) -> set[int]:
    """Ports a service listens on inside the network, as far as its command line says."""
    args = command_args(service)
    return {
        int(value)
        for option, value in pairwise(args)
        if option.startswith("--") and option.lower().endswith("port") and value.isdigit()
    }


def host_ip_of(port: str | dict[str, Any]) -> str | None:
    """Host address a published port binds to; None when it binds every interface."""
    if isinstance(port, dict):
        return port.get("host_ip")
    parts = str(port).rsplit(":", 2)
    return parts[0] if len(parts) == 3 else None


def connection_endpoints(value: str) -> set[tuple[str, int | None]]:
    """(host, port) pairs an `AIRFLOW_CONN_*` value points at, in JSON or URI form."""
    endpoints = {(m["host"], int(m["port"]) if m["port"] else None) for m in URL_HOST.finditer(value)}
    if value.lstrip().startswith("{"):
        conn = json.loads(value)
        if conn.get("host"):
            port = conn.get("port")
            endpoints.add((conn["host"], int(port) if port is not None else None))
    return endpoints


def interpolated(value: str) -> str:
    """`value` as compose resolves it when no variable is set: `${NAME:-default}` becomes `default`."""
    return COMPOSE_VARIABLE.sub(lambda m: m["default"] or "", value)


def airflow_version_pin(requirements: str) -> str:
    match = re.search(r"^apache-airflow(?:\[[^\]]*\])?==(?P<version>[^\s;#]+)", requirements, re.M)
    assert match, "requirements.txt has no `apache-airflow==<version>` line"
    return match["version"]


def test_required_services_exist(services: dict[str, Service]) -> None:
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, f"docker-compose.yaml lacks services {sorted(missing)}"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Service]) -> None:
    lacking = []
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            continue
        check = service.get("healthcheck") or {}
        test = check.get("test")
        if check.get("disable") or not test or test == ["NONE"]:
            lacking.append(name)
    assert not lacking, f"services without a healthcheck: {lacking}"


@pytest.mark.parametrize("name", [*AIRFLOW_SERVICES, *sorted(ONE_SHOT_SERVICES), "deployflow-runtime"])
def test_service_runs_the_image_built_from_the_dockerfile(services: dict[str, Service], name: str) -> None:
    build = services[name].get("build")
    context = build.get("context") if isinstance(build, dict) else build
    assert context in (".", "./"), f"{name} must be built from the repository's Dockerfile, has build={build!r}"


def test_no_requirements_are_installed_at_container_start() -> None:
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in COMPOSE_FILE.read_text(), (
        "install requirements in the Dockerfile, not with _PIP_ADDITIONAL_REQUIREMENTS at every start"
    )


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_service_waits_for_database_init_and_backends(services: dict[str, Service], name: str) -> None:
    deps = dependencies(services[name])
    assert deps.get("postgres") == "service_healthy", deps
    assert deps.get("airflow-init") == "service_completed_successfully", deps
    assert deps.get("azurite") == "service_healthy", deps
    assert deps.get("deployflow-runtime") == "service_healthy", deps


def test_dependencies_name_existing_services_that_can_meet_the_condition(
    services: dict[str, Service],
) -> None:
    problems = []
    for name, service in services.items():
        for target, condition in dependencies(service).items():
            if target not in services:
                problems.append(f"{name} depends on unknown service {target}")
            elif condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(f"{name} waits for {target} to be healthy, but {target} has no healthcheck")
    assert not problems, problems


def assert_is_the_postgres_service(value: str, services: dict[str, Service]) -> None:
    postgres_env = environment(services["postgres"])
    url = make_url(value)
    assert url.drivername.startswith("postgresql"), url.drivername
    assert url.host == "postgres"
    assert (url.username, url.password, url.database) == (
        postgres_env["POSTGRES_USER"],
        postgres_env["POSTGRES_PASSWORD"],
        postgres_env["POSTGRES_DB"],
    )


@pytest.mark.parametrize("name", [*AIRFLOW_SERVICES, *sorted(ONE_SHOT_SERVICES), "flower"])
def test_airflow_runs_the_celery_executor_on_redis_and_the_postgres_service(
    services: dict[str, Service], name: str
) -> None:
    env = environment(services[name])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert_is_the_postgres_service(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], services)
    backend = env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert backend.startswith("db+"), f"Celery's results belong in the metadata database, not {backend}"
    assert_is_the_postgres_service(backend.removeprefix("db+"), services)
    broker = make_url(env["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.drivername, broker.host, broker.port) == ("redis", "redis", REDIS_PORT), broker
    assert REDIS_PORT in services["redis"]["expose"], "the broker URL names a port Redis does not expose"
    assert dependencies(services[name]).get("redis") == "service_healthy"


def test_redis_is_the_bsd_licensed_release_answering_ping_and_published_nowhere(services: dict[str, Service]) -> None:
    redis = services["redis"]
    assert re.fullmatch(r"redis:7\.[0-2]([.-].*)?", redis["image"]), redis["image"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in redis, "the broker carries tasks' commands: it must not be reachable from outside"


def test_the_celery_worker_scales_with_docker_compose_up_scale(services: dict[str, Service]) -> None:
    """`--scale airflow-worker=N` needs no fixed container name and no host port to clash over."""
    worker = services["airflow-worker"]
    assert command_args(worker) == ["celery", "worker"]
    assert "container_name" not in worker and "ports" not in worker, worker.keys()
    assert "deploy" not in worker or "replicas" not in worker["deploy"], "the replica count belongs to --scale"
    (kind, check) = worker["healthcheck"]["test"]
    # Each replica pings its own Celery node, named after its container's host name.
    assert kind == "CMD-SHELL" and "inspect ping" in check and '-d "celery@$${HOSTNAME}"' in check, check
    assert "airflow.providers.celery.executors.celery_executor.app" in check
    assert environment(worker)["DUMB_INIT_SETSID"] == "0", "a worker must get SIGTERM itself (warm shutdown)"
    assert dependencies(worker).get("airflow-apiserver") == "service_healthy", "tasks report to the api-server"


def test_flower_is_opt_in_and_bound_to_loopback(services: dict[str, Service]) -> None:
    flower = services["flower"]
    assert flower["profiles"] == ["flower"] and command_args(flower) == ["celery", "flower"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]


def test_the_celery_provider_the_executor_needs_is_pinned_in_requirements() -> None:
    assert re.search(r"^apache-airflow-providers-celery==[\d.]+\s*$", REQUIREMENTS.read_text(), re.M)


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_tasks_reach_the_execution_api_on_the_api_server(services: dict[str, Service], name: str) -> None:
    url = environment(services[name])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    match = URL_HOST.match(url)
    assert match and match["host"] == "airflow-apiserver", url
    published = {str(port).rsplit(":", 1)[-1] for port in services["airflow-apiserver"].get("ports", [])}
    assert (match["port"] or "80") in published, f"{url} does not name the api-server's port {published}"
    assert url.rstrip("/").endswith("/execution"), url


def test_connections_point_at_compose_services_on_the_ports_they_listen_on(
    services: dict[str, Service],
) -> None:
    connections = {
        key: value
        for key, value in environment(services["airflow-scheduler"]).items()
        if key.startswith("AIRFLOW_CONN_")
    }
    assert {"AIRFLOW_CONN_DEPLOYFLOW_LOCAL", "AIRFLOW_CONN_DEPLOYFLOW_BLOB"} <= connections.keys()
    problems = []
    for key, value in connections.items():
        endpoints = connection_endpoints(value)
        if not endpoints:
            problems.append(f"{key} names no host")
        for host, port in endpoints:
            if host not in services:
                problems.append(f"{key} points at {host}, which is not a compose service")
            elif port is not None and port not in container_ports(services[host]):
                problems.append(
                    f"{key} points at {host}:{port}, but {host} listens on {container_ports(services[host])}"
                )
    assert not problems, problems


def test_local_runtime_connection_targets_the_runtime_control_port(services: dict[str, Service]) -> None:
    runtime = services["deployflow-runtime"]
    value = environment(services["airflow-scheduler"])["AIRFLOW_CONN_DEPLOYFLOW_LOCAL"]
    control_port = int(command_option(runtime, "--control-port"))
    assert ("deployflow-runtime", control_port) in connection_endpoints(value), value


def test_airflow_sends_the_admin_token_the_runtime_expects(services: dict[str, Service]) -> None:
    connection = json.loads(interpolated(environment(services["airflow-scheduler"])["AIRFLOW_CONN_DEPLOYFLOW_LOCAL"]))
    expected = interpolated(environment(services["deployflow-runtime"])["DEPLOYFLOW_RUNTIME_TOKEN"])
    assert expected, "the runtime's DEPLOYFLOW_RUNTIME_TOKEN has no default"
    assert connection.get("password") == expected


def test_runtime_reports_scoring_uris_the_airflow_containers_can_reach(services: dict[str, Service]) -> None:
    runtime = services["deployflow-runtime"]
    assert command_option(runtime, "--host") == "0.0.0.0", "the runtime must listen on the compose network"
    assert command_option(runtime, "--advertise-host") == "deployflow-runtime"


def test_wasb_connection_targets_azurite_blob_service(services: dict[str, Service]) -> None:
    value = environment(services["airflow-scheduler"])["AIRFLOW_CONN_DEPLOYFLOW_BLOB"]
    blob_port = int(command_option(services["azurite"], "--blobPort"))
    assert connection_endpoints(value) == {("azurite", blob_port)}, value
    assert "AccountName=devstoreaccount1" in value


def test_published_ports_bind_to_loopback_only(services: dict[str, Service]) -> None:
    exposed = [
        f"{name}: {port}"
        for name, service in services.items()
        for port in service.get("ports", [])
        if host_ip_of(port) not in LOOPBACK_HOSTS
    ]
    assert not exposed, f"ports published on every interface: {exposed}"
    assert "127.0.0.1:8080:8080" in services["airflow-apiserver"]["ports"]


def test_dockerfile_extends_the_airflow_version_pinned_in_requirements() -> None:
    dockerfile = DOCKERFILE.read_text()
    base = re.search(r"^FROM\s+apache/airflow:(?P<airflow>[\d.]+)-python(?P<python>[\d.]+)\s*$", dockerfile, re.M)
    assert base, "Dockerfile must start FROM apache/airflow:<version>-python<version>"
    assert base["airflow"] == airflow_version_pin(REQUIREMENTS.read_text())
    target = tomllib.loads(PYPROJECT.read_text())["tool"]["ruff"]["target-version"]
    assert target == "py" + base["python"].replace(".", ""), (
        f"image runs Python {base['python']}, code targets {target}"
    )


def test_dockerfile_installs_requirements_and_ends_as_the_airflow_user() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^COPY\s.*\brequirements\.txt\s", dockerfile, re.M), "requirements.txt is not copied in"
    assert re.search(r"^RUN\s+pip install\b.*-r\s+\S*requirements\.txt", dockerfile, re.M)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] == "airflow", f"the image must not run as {users[-1] if users else 'root'}"


def test_every_connection_a_batch_use_case_names_is_defined_for_the_airflow_services(
    services: dict[str, Service],
) -> None:
    defined = {
        name.removeprefix("AIRFLOW_CONN_").lower()
        for name in environment(services["airflow-scheduler"])
        if name.startswith("AIRFLOW_CONN_")
    }
    for config in sorted((REPO_ROOT / "include" / "batch").glob("*.json")):
        use_case = json.loads(config.read_text())
        for key in ("ml_platform_conn_id", "storage_conn_id"):
            assert use_case[key] in defined, f"{config.name}: {key} {use_case[key]!r} is not defined in compose"


def mounted_prometheus_config(service: Service) -> Path:
    """The repository file mounted as the Prometheus service's prometheus.yml."""
    for volume in service.get("volumes", []):
        source, target = interpolated(str(volume)).split(":")[:2]
        if target == "/etc/prometheus/prometheus.yml":
            return REPO_ROOT / source
    raise AssertionError(f"prometheus mounts no /etc/prometheus/prometheus.yml: {service.get('volumes')}")


def test_prometheus_scrapes_the_runtime_control_plane_metrics(services: dict[str, Service]) -> None:
    service = services["prometheus"]
    assert str(service["image"]).startswith("prom/prometheus:"), service["image"]
    assert dependencies(service).get("deployflow-runtime") == "service_healthy"
    path = mounted_prometheus_config(service)
    assert path.is_file(), f"prometheus mounts {path}, which is not in the repository"
    config = yaml.safe_load(path.read_text())
    control_port = int(command_option(services["deployflow-runtime"], "--control-port"))
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": [f"deployflow-runtime:{control_port}"]}]
    assert "prometheus-data:/prometheus" in service["volumes"], "its time series must outlive the container"


def test_compose_prometheus_config_is_what_dev_up_writes_with_the_compose_address(services: dict[str, Service]) -> None:
    """One scrape setup (interval, job, path) for both stacks: the file is the generator's output for the service."""
    path = mounted_prometheus_config(services["prometheus"])
    control_port = int(command_option(services["deployflow-runtime"], "--control-port"))
    assert yaml.safe_load(path.read_text()) == yaml.safe_load(config_text(f"deployflow-runtime:{control_port}"))


def compose_client() -> list[str] | None:
    """A Compose client: Docker's plugin (`docker compose`) where there is one, else Debian's docker-compose."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def compose_config(client: list[str], compose_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # config reads and validates the file; it talks to no Docker engine
    command = [*client, "--project-directory", str(REPO_ROOT), "-f", str(compose_file), "config", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_a_compose_client_validates_the_file_and_refuses_a_broken_one(tmp_path: Path) -> None:
    """`docker compose config` (or Debian's docker-compose 1.29, which `./dev test` installs) reads the file as
    `docker compose up` would: schema, anchors, interpolation. A service with an unknown key must fail it."""
    client = compose_client()
    if client is None:
        pytest.skip("no Compose client: apt-get install -y docker-compose")
    done = compose_config(client, COMPOSE_FILE, "-q")
    assert done.returncode == 0, done.stderr
    listed = compose_config(client, COMPOSE_FILE, "--services")
    assert set(listed.stdout.split()) >= {*AIRFLOW_SERVICES, "airflow-worker", "redis", "postgres"}, listed.stdout
    broken = tmp_path / "docker-compose.yaml"
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    document["services"]["airflow-worker"]["replicaz"] = 2
    broken.write_text(yaml.safe_dump(document))
    refused = compose_config(client, broken, "-q")
    assert refused.returncode != 0 and "replicaz" in refused.stderr, refused.stderr
