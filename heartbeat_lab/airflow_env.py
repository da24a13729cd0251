"""Environment for real Airflow processes (``dag.test()``, scheduler, api-server) in the lab:
one AIRFLOW_HOME, the metadata database in the lab's PostgreSQL, the project's DAGs and
connections. The plugins folder is an empty one in AIRFLOW_HOME, as in a deployment: the UI plugin
comes from the package's ``airflow.plugins`` entry point (the venv installs the project)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def ssh_connection_json(login: str, key_file: Path, port: int | None = None,
                        extra: Mapping[str, object] | None = None) -> str:
    """An ssh connection as ``AIRFLOW_CONN_<ID>`` JSON; ``extra`` is added to ``key_file``
    (``host_key``, ``conn_timeout``, ...)."""
    conn: dict[str, object] = {"conn_type": "ssh", "login": login,
                               "extra": {"key_file": str(key_file), **(extra or {})}}
    if port is not None:
        conn["port"] = port
    return json.dumps(conn)


def postgres_connection_json(host: str, port: int, database: str, login: str = "postgres",
                             password: str | None = None, extra: Mapping[str, object] | None = None) -> str:
    """A postgres connection as ``AIRFLOW_CONN_<ID>`` JSON; ``extra`` as PostgresHook reads it
    (``sslmode``, ``options``, ...)."""
    conn: dict[str, object] = {"conn_type": "postgres", "host": host, "port": port, "schema": database,
                               "login": login}
    if password:
        conn["password"] = password
    if extra:
        conn["extra"] = dict(extra)
    return json.dumps(conn)


def airflow_environment(
    home: Path,
    metadata_sqlalchemy_url: str,
    heartbeat_db_json: str,
    ssh_conn_json: str,
    api_port: int | None = None,
    extra: Mapping[str, str] | None = None,
    secrets_file: Path | None = None,
    api_host: str = "127.0.0.1",
) -> dict[str, str]:
    """A full environment for Airflow subprocesses. The JWT secret and Fernet key are kept in
    ``secrets_file`` (default ``home/lab-secrets.json``) so restarts share them. ``api_host``: where
    the api-server listens and tasks reach it (loopback, or an address of a started LabNetwork
    for workers inside its namespaces)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "plugins").mkdir(exist_ok=True)
    secrets_file = secrets_file or home / "lab-secrets.json"
    if secrets_file.exists():
        keys = json.loads(secrets_file.read_text())
    else:
        keys = {
            "jwt_secret": secrets.token_urlsafe(64),
            "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
        secrets_file.write_text(json.dumps(keys))
        secrets_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "HEARTBEAT_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # use the venv's compiled bytecode (make installs it)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_sqlalchemy_url,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # A running task tells the API server it is alive every 20 s instead of 5 (the timeout
        # that declares it lost is 300 s): a probe task lives about as long as a cycle.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "20",
        # The scheduler notices a finished step (inventory, probes, status) within 0.5 s instead
        # of 1 s, so each step starts sooner (as in docker-compose.yaml).
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW_CONN_HEARTBEAT_DB": heartbeat_db_json,
        "AIRFLOW_CONN_HEARTBEAT_SSH": ssh_conn_json,
    })
    if api_port is not None:
        env.update({
            "AIRFLOW__API__HOST": api_host,
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": f"http://{api_host}:{api_port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{api_host}:{api_port}/execution/",
        })
    env.update(extra or {})
    return env


def airflow_bin(bin_dir: Path | None = None) -> str:
    """The ``airflow`` command of this interpreter's environment, or of the one whose ``bin``
    folder is ``bin_dir`` (another virtual environment, e.g. one that installed the wheel)."""
    return str((bin_dir or Path(sys.executable).parent) / "airflow")


def migrate_metadata(env: Mapping[str, str], timeout_s: float = 300, bin_dir: Path | None = None) -> None:
    """``airflow db migrate``; raises with Airflow's own output when it fails."""
    proc = subprocess.run([airflow_bin(bin_dir), "db", "migrate"], env=dict(env), capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
