"""The wheel added to an Airflow that already runs, as a user adds it: a new virtual environment with
Airflow 3.3.2 and the providers from the package registry (``requirements.txt`` as constraints,
so they are the versions the rest of the suite runs on and come from uv's cache), then the wheel.

- Installing the wheel changes no installed package; pip's dry run agrees; an Airflow 3.2 pin is
  refused by the resolver with the package's requirement in the message.
- From that environment, the real api-server, dag-processor and scheduler (LocalExecutor, the
  metadata database in the lab's PostgreSQL) with an empty plugins folder and a DAG folder
  holding only the two-line file of the README: the Fleet page answers through the entry-point
  plugin; while the heartbeat database is empty (a real, empty PostgreSQL database) the page's
  API and the first cycle's tasks say to run ``heartbeat migrate``; ``heartbeat migrate`` and
  ``heartbeat servers add`` run from the installed command (the SQL from the package); a
  scheduled cycle then probes a real sshd to ONLINE.

The Airflow processes get nothing of the checkout: no ``PYTHONPATH``, the default hostname
callable, the venv's ``bin`` first on ``PATH``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from distributions import REPO, build, uv
from support import wait_until

from heartbeat_lab import KeyPair, PostgresServer, SshdFleet, free_port
from heartbeat_lab.airflow_env import (
    airflow_environment,
    migrate_metadata,
    postgres_connection_json,
    ssh_connection_json,
)
from heartbeat_lab.airflow_procs import AirflowProcesses, metadata_dsn, wait_for_dag

pytestmark = pytest.mark.timeout(420)

AIRFLOW = ("apache-airflow==3.3.2", "apache-airflow-providers-ssh==7.0.1", "apache-airflow-providers-postgres==7.1.1",
           "apache-airflow-providers-smtp==3.2.0")
DISTRIBUTION = "airflow-ssh-heartbeat==0.1.0"
DAG_ID = "ssh_heartbeat"
MIGRATE = "run `heartbeat migrate`"
CYCLE_S = 30
SLACK_S = 30


def run(command: list[str], env: dict[str, str] | None = None, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)


def freeze(python: Path) -> set[str]:
    """Every installed distribution as ``name==version`` (a wheel installed from a file included)."""
    proc = run([str(uv()), "pip", "list", "--format", "json", "-p", str(python)])
    assert proc.returncode == 0, proc.stderr
    return {f"{p['name'].lower()}=={p['version']}" for p in json.loads(proc.stdout)}


def readme_dag_file() -> str:
    """The DAG file as the README's "Add it to your Airflow" section shows it."""
    section = (REPO / "README.md").read_text().split("## Add it to your Airflow", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]


@dataclass
class CleanInstall:
    venv: Path
    before: set[str]
    after: set[str]
    pip_would_install: list[str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> CleanInstall:
    work = tmp_path_factory.mktemp("clean_install")
    wheel = build(work / "build", via_sdist=True)
    venv = work / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    made = run([str(uv()), "venv", "--quiet", "--seed", "-p", base_python, str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    airflow = run([str(uv()), "pip", "install", "--quiet", "-p", str(python), "-c", str(REPO / "requirements.txt"),
                   *AIRFLOW], timeout_s=600)
    assert airflow.returncode == 0, airflow.stderr[-3000:]
    before = freeze(python)
    report = run([str(python), "-m", "pip", "install", "--quiet", "--dry-run", "--report", "-", str(wheel)])
    assert report.returncode == 0, report.stderr[-3000:]
    pip_would_install = sorted(f"{i['metadata']['name']}=={i['metadata']['version']}"
                               for i in json.loads(report.stdout)["install"])
    added = run([str(uv()), "pip", "install", "--quiet", "-p", str(python), str(wheel)])
    assert added.returncode == 0, added.stderr[-3000:]
    return CleanInstall(venv, before, freeze(python), pip_would_install)


def test_should_add_the_package_and_change_no_installed_package(installed: CleanInstall) -> None:
    assert "apache-airflow==3.3.2" in installed.before
    assert installed.before - installed.after == set(), "installing the wheel removed, up- or downgraded these"
    assert installed.after - installed.before == {DISTRIBUTION}


def test_pip_should_also_install_nothing_but_the_package(installed: CleanInstall) -> None:
    assert installed.pip_would_install == [DISTRIBUTION]


REFUSALS = {
    "uv": "airflow-ssh-heartbeat==0.1.0 depends on apache-airflow>=3.3,<4",
    "pip": "airflow-ssh-heartbeat 0.1.0 depends on apache-airflow<4 and >=3.3",
}


@pytest.mark.parametrize("installer", sorted(REFUSALS))
def test_should_refuse_an_airflow_older_than_3_3_with_the_requirement_in_the_message(
        installed: CleanInstall, installer: str) -> None:
    """Airflow pinned beside the package, as Airflow's guide says to add packages (and as managed
    services pin it): the resolver refuses and names the requirement. Asks the registry for 3.2.2."""
    [wheel] = installed.venv.parent.glob("build/dist/*.whl")
    command = {"uv": [str(uv()), "pip", "install", "-p", str(installed.python)],
               "pip": [str(installed.python), "-m", "pip", "install"]}[installer]
    proc = run([*command, "--dry-run", str(wheel), "apache-airflow==3.2.2"])
    assert proc.returncode != 0
    said = " ".join((proc.stdout + proc.stderr).split())
    assert REFUSALS[installer] in said and "apache-airflow==3.2.2" in said, said


def test_should_read_the_sql_from_the_installed_package(installed: CleanInstall) -> None:
    code = ("import heartbeat, heartbeat.sql as s; print(heartbeat.__file__); print(s.sql_dir()); "
            "print(len(s.migrations()), len(s.repeatable_scripts()), len(s._all_queries(str(s.sql_dir()))))")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HEARTBEAT_SQL_DIR")}
    proc = run([str(installed.python), "-c", code], env=env)
    assert proc.returncode == 0, proc.stderr
    module, folder, counts = proc.stdout.splitlines()
    site = installed.venv / "lib" / "python3.11" / "site-packages"
    assert Path(module) == site / "heartbeat" / "__init__.py"
    assert Path(folder) == site / "heartbeat" / "sqlfiles"
    sql = REPO / "include" / "sql"
    assert counts.split()[:2] == [str(len(list((sql / "migrations").glob("*.sql")))),
                                  str(len(list((sql / "views").glob("*.sql"))))]
    assert int(counts.split()[2]) > 0


# -- the real components, from the clean environment -----------------------------------------------


@dataclass
class Deployment:
    airflow: AirflowProcesses
    env: dict[str, str]
    home: Path
    heartbeat_dsn: str
    passwords: dict[str, str]
    bin_dir: Path

    def token(self, user: str) -> str:
        request = urllib.request.Request(  # noqa: S310 (the api-server on 127.0.0.1)
            f"{self.airflow.api_url}/auth/token", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"username": user, "password": self.passwords[user]}).encode())
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return str(json.load(response)["access_token"])

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(self.airflow.api_url + path, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def heartbeat(self, *args: str) -> subprocess.CompletedProcess:
        return run([str(self.bin_dir / "heartbeat"), *args], env=self.env, timeout_s=120)


@pytest.fixture(scope="module")
def deployment(installed: CleanInstall, tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer,
               client_key: KeyPair) -> Iterator[Deployment]:
    work = tmp_path_factory.mktemp("deployment")
    home = work / "airflow_home"
    dags = home / "dags"
    dags.mkdir(parents=True)
    (dags / "ssh_heartbeat.py").write_text(readme_dag_file())
    metadata, heartbeat = f"airflow_clean_{os.getpid()}", f"heartbeat_clean_{os.getpid()}"
    for name in (metadata, heartbeat):
        postgres.drop_database(name)
        postgres.create_database(name)  # the heartbeat database stays empty: no schema
    passwords = {"admin": "admin-pw", "viewer": "viewer-pw"}
    (work / "passwords.json").write_text(json.dumps(passwords))
    bin_dir = installed.venv / "bin"
    env = airflow_environment(
        home, f"postgresql+psycopg://postgres@{postgres.host}:{postgres.port}/{metadata}",
        heartbeat_db_json=postgres_connection_json(postgres.host, postgres.port, heartbeat),
        ssh_conn_json=ssh_connection_json("root", client_key.private_path),
        api_port=free_port(),
        extra={"AIRFLOW__CORE__DAGS_FOLDER": str(dags),
               "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow.utils.net.getfqdn",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(work / "passwords.json"),
               "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    for name in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    assert sorted(p.name for p in Path(env["AIRFLOW__CORE__PLUGINS_FOLDER"]).iterdir()) == []
    assert sorted(p.name for p in dags.iterdir()) == ["ssh_heartbeat.py"]
    migrate_metadata(env, bin_dir=bin_dir)
    airflow = AirflowProcesses(env, work / "logs", components=("api-server", "dag-processor", "scheduler"),
                               bin_dir=bin_dir)
    try:
        airflow.start()
        yield Deployment(airflow, airflow.env, home, postgres.dsn(heartbeat), passwords, bin_dir)
    finally:
        airflow.stop(timeout_s=3.0)
        for name in (metadata, heartbeat):
            postgres.drop_database(name)




def rows(dsn: str, text: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute(text, params).fetchall()


def test_should_monitor_from_the_wheel_with_an_empty_plugins_folder_and_the_two_line_dag_file(
        deployment: Deployment, fleet: SshdFleet) -> None:
    meta = metadata_dsn(deployment.env)

    def context() -> str:
        runs = rows(meta, "SELECT run_id, run_type, state FROM dag_run WHERE dag_id = %s", (DAG_ID,))
        tis = rows(meta, "SELECT run_id, task_id, map_index, state FROM task_instance WHERE dag_id = %s", (DAG_ID,))
        logs = {n: deployment.airflow.log_path(n).read_text(errors="replace")[-2000:]
                for n in ("scheduler", "dag-processor")}
        return f"runs: {runs}\ntask instances: {tis}\nlogs: {json.dumps(logs, indent=1)}"

    viewer = {"Authorization": f"Bearer {deployment.token('viewer')}"}
    admin = {"Authorization": f"Bearer {deployment.token('admin')}"}

    # -- the plugin: from the package's entry point, the plugins folder being empty ----------------
    status, body = deployment.get("/api/v2/plugins", admin)
    assert status == 200, body
    plugins = [p for p in json.loads(body)["plugins"] if p["name"] == "heartbeat"]
    assert [p["source"] for p in plugins] == [
        f"{DISTRIBUTION}: EntryPoint(name='heartbeat', value='heartbeat.plugin:HeartbeatPlugin', "
        "group='airflow.plugins')"]
    status, body = deployment.get("/api/v2/plugins/importErrors", admin)
    assert status == 200 and json.loads(body)["total_entries"] == 0, body
    status, page = deployment.get("/heartbeat/", {"Cookie": f"_token={deployment.token('viewer')}"})
    assert status == 200 and "<title>Fleet heartbeat</title>" in page

    # -- no heartbeat schema yet: the page's API and the tasks say what to do --------------------
    status, body = deployment.get("/heartbeat/api/servers", viewer)
    assert status == 503 and MIGRATE in json.loads(body)["detail"], body
    wait_for_dag(deployment.env, DAG_ID, procs=deployment.airflow)
    [(first_run,)] = wait_until("the first cycle's load_inventory failed", lambda: rows(
        meta, "SELECT run_id FROM task_instance WHERE dag_id = %s AND task_id = 'load_inventory' "
              "AND state = 'failed' LIMIT 1", (DAG_ID,)), 90, context)
    [log_file] = deployment.home.glob(f"logs/dag_id={DAG_ID}/run_id={first_run}/task_id=load_inventory/attempt=*.log")
    log = log_file.read_text()
    assert "the heartbeat database has no schema yet: run `heartbeat migrate`" in log, log
    assert "UndefinedTable" not in log and "SchemaError" not in log, log

    # -- heartbeat migrate and a server, from the installed command --------------------------------
    migrated = deployment.heartbeat("migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert "applied:" in migrated.stdout
    server = fleet[0]
    added = deployment.heartbeat("servers", "add", "web-01", server.host, "--port", str(server.port))
    assert added.returncode == 0, added.stderr[-3000:]

    # -- a scheduled cycle probes the sshd to ONLINE --------------------------------------------------
    wait_until("web-01 ONLINE after a scheduled cycle", lambda: rows(
        deployment.heartbeat_dsn, "SELECT st.status FROM server_status st JOIN servers s ON s.id = st.server_id "
                                  "WHERE s.name = 'web-01' AND st.status = 'ONLINE'"), CYCLE_S + SLACK_S, context)
    assert rows(meta, "SELECT DISTINCT run_type FROM dag_run WHERE dag_id = %s", (DAG_ID,)) == [("scheduled",)]
    status, body = deployment.get("/heartbeat/api/servers", viewer)
    assert status == 200, body
    assert [(s["name"], s["status"]) for s in json.loads(body)["servers"]] == [("web-01", "ONLINE")]
