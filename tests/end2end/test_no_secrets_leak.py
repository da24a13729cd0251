"""No key material, passphrase or password in logs, XComs or the databases after a full run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import add_servers, query

from heartbeat_lab import SshdServer, refused_port

pytestmark = pytest.mark.end2end

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct-horse-battery-staple-42"
DB_PASSWORD = "s3cret-db-password-do-not-log"


def secret_fragments(private_key_text: str) -> list[str]:
    body = [line for line in private_key_text.splitlines() if line and not line.startswith("-----")]
    return [PASSPHRASE, DB_PASSWORD] + [line[:24] for line in body if len(line) >= 24]


def test_should_keep_key_material_out_of_logs_xcoms_and_databases(
        airflow_base_env, heartbeat_dsn, postgres, tmp_path: Path):
    key_path = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(key_path)], check=True)
    private_text = key_path.read_text()
    public_line = key_path.with_suffix(".pub").read_text().strip()
    database = heartbeat_dsn.rsplit("/", 1)[1]
    with postgres.connect() as admin:
        admin.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'leakcheck') THEN "
                      f"CREATE ROLE leakcheck LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}'; END IF; END $$")
    with SshdServer(tmp_path / "sshd", authorized_keys=[public_line]) as sshd:
        add_servers(heartbeat_dsn, [{"name": "web", "host": sshd.host, "port": sshd.port},
                                    {"name": "down", "host": "127.0.0.1", "port": refused_port()}])
        env = {**airflow_base_env,
               "AIRFLOW_CONN_HEARTBEAT_DB": json.dumps({
                   "conn_type": "postgres", "host": postgres.host, "port": postgres.port, "schema": database,
                   "login": "leakcheck", "password": DB_PASSWORD}),
               "AIRFLOW_CONN_HEARTBEAT_SSH": json.dumps({
                   "conn_type": "ssh", "login": "root",
                   "extra": {"private_key": private_text, "private_key_passphrase": PASSPHRASE}}),
               "HEARTBEAT_PROBE_TIMEOUT_S": "3", "HEARTBEAT_CONNECT_TIMEOUT_S": "2"}
        proc = subprocess.run([sys.executable, str(REPO / "dags" / "ssh_heartbeat.py")], env=env,
                              capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    statuses = {r["name"]: r["status"] for r in query(
        heartbeat_dsn, "SELECT s.name, st.status FROM server_status st JOIN servers s ON s.id = st.server_id")}
    assert statuses == {"web": "ONLINE", "down": "OFFLINE"}, query(heartbeat_dsn, "SELECT * FROM heartbeats")

    haystacks = {"dag.test output": output}
    for path in Path(env["AIRFLOW_HOME"]).joinpath("logs").rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_text(errors="replace")
    assert "probed 2 servers" in output  # dag.test() prints the task logs: they are searched too
    meta = postgres.dsn("airflow_meta")
    haystacks["xcom"] = json.dumps(query(meta, "SELECT value::text FROM xcom"), default=str)
    haystacks["rendered fields"] = json.dumps(
        query(meta, "SELECT rendered_fields::text FROM rendered_task_instance_fields"), default=str)
    haystacks["heartbeat db"] = json.dumps([
        query(heartbeat_dsn, f"SELECT * FROM {table}")
        for table in ("servers", "heartbeats", "probe_history", "alerts", "server_status", "status_events", "cycles")
    ], default=str)
    leaks = [(name, fragment) for fragment in secret_fragments(private_text)
             for name, text in haystacks.items() if fragment in text]
    assert leaks == []
