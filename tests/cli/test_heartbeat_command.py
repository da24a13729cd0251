"""The ``heartbeat`` command as a person runs it: in a subprocess, against PostgreSQL and sshd."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import add_servers, query

from heartbeat_lab import SshdFleet, refused_port

pytestmark = pytest.mark.integration

HEARTBEAT = str(Path(sys.executable).with_name("heartbeat"))


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTBEAT_PROBE_TIMEOUT_S": "3", "HEARTBEAT_CONNECT_TIMEOUT_S": "2"}
    proc = subprocess.run([HEARTBEAT, *args], capture_output=True, text=True, timeout=120, env=env)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_should_apply_schema_once(heartbeat_env, postgres):
    postgres.create_database("heartbeat_cli_migrate")
    db = json.loads(heartbeat_env["AIRFLOW_CONN_HEARTBEAT_DB"]) | {"schema": "heartbeat_cli_migrate"}
    os.environ["AIRFLOW_CONN_HEARTBEAT_DB"] = json.dumps(db)
    first = run("migrate")
    assert "applied: 001_inventory_and_heartbeats" in first.stdout
    assert run("migrate").stdout.strip() == "schema is up to date"


def test_should_add_list_and_remove_servers(heartbeat_env, heartbeat_dsn):
    assert "added web-01 (10.0.0.1:2222)" in run("servers", "add", "web-01", "10.0.0.1", "--port", "2222",
                                                 "--username", "ops").stdout
    listing = run("servers", "list").stdout
    assert "web-01" in listing and "2222" in listing and "not pinned" in listing
    bad = run("servers", "add", "web-02", "10.0.0.2", "--port", "70000", ok=False)
    assert bad.returncode == 1
    assert "port must be between 1 and 65535, got 70000" in bad.stderr and "Traceback" not in bad.stderr
    dup = run("servers", "add", "web-01", "10.0.0.9", ok=False)
    assert "already exists" in dup.stderr
    assert "removed web-01" in run("servers", "remove", "web-01").stdout
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM servers")[0]["n"] == 0


def test_should_add_and_move_servers_between_configured_sites_only(heartbeat_env, heartbeat_dsn, monkeypatch):
    monkeypatch.setenv("HEARTBEAT_SITES", "default,dc-b")
    assert "as server 1 in site dc-b" in run("servers", "add", "web-01", "10.0.0.1", "--site", "dc-b").stdout
    assert "dc-b" in run("servers", "list").stdout.splitlines()[2]
    unknown = run("servers", "add", "web-02", "10.0.0.2", "--site", "dc-c", ok=False)
    assert unknown.returncode == 1
    assert "site 'dc-c' is not configured (HEARTBEAT_SITES: default, dc-b)" in unknown.stderr
    bad = run("servers", "add", "web-02", "10.0.0.2", "--site", "DC B", ok=False)
    assert "site 'DC B' must be 1-40 lower-case letters" in bad.stderr and "Traceback" not in bad.stderr
    assert "moved to site default" in run("servers", "set-site", "web-01", "default").stdout
    assert "not configured" in run("servers", "set-site", "web-01", "dc-x", ok=False).stderr
    assert query(heartbeat_dsn, "SELECT site FROM servers") == [{"site": "default"}]
    monkeypatch.setenv("HEARTBEAT_SITES", "dc-b,dc-b")
    assert "listed twice" in run("servers", "list", ok=False).stderr + run("status", ok=False).stderr


def test_should_import_all_or_nothing_reporting_line_and_field(heartbeat_env, heartbeat_dsn, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,host,port\nweb-01,10.0.0.1,22\nweb-02,10.0.0.2,0\n")
    proc = run("servers", "import", str(bad), ok=False)
    assert proc.returncode == 1
    assert "nothing imported" in proc.stderr and "line 3: port must be between 1 and 65535, got 0" in proc.stderr
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM servers")[0]["n"] == 0
    good = tmp_path / "fleet.yaml"
    good.write_text("servers:\n  - {name: web-01, host: 10.0.0.1}\n"
                    "  - {name: db-01, host: '2001:db8::5', port: 2200}\n")
    assert "imported 2 servers" in run("servers", "import", str(good)).stdout
    assert "0 added, 2 updated" in run("servers", "import", str(good)).stdout


def test_should_probe_verbosely_and_show_status(heartbeat_env, heartbeat_dsn, fleet: SshdFleet):
    web = fleet.servers[0]
    add_servers(heartbeat_dsn, [{"name": "web", "host": web.host, "port": web.port},
                                {"name": "down", "host": "127.0.0.1", "port": refused_port()}])
    out = run("probe", "--verbose").stdout
    assert f"connecting to web ({web.host}:{web.port})" in out
    assert "web: ok in" in out and web.host_key_fingerprint in out
    assert "down: FAILED refused" in out
    assert "1/2 heartbeats recorded" in out
    assert "site default, worker " in out and f"(worker {socket.gethostname()})" in out
    assert "status: 1 ONLINE, 0 WARNING, 1 OFFLINE" in out

    status = run("status", "--verbose").stdout
    lines = {line.split()[0]: line for line in status.splitlines() if line and line.split()[0] in ("web", "down")}
    assert "ONLINE" in lines["web"] and "heartbeat" in lines["web"]
    assert "OFFLINE" in lines["down"] and "no heartbeat yet; last attempt: connection refused" in lines["down"]
    assert "last cycle: cli-" in status

    data = json.loads(run("status", "--json").stdout)
    assert {s["server_name"]: s["status"] for s in data["servers"]} == {"web": "ONLINE", "down": "OFFLINE"}


@pytest.mark.parametrize("verbose", [True, False], ids=["verbose", "quiet"])
def test_should_print_each_failed_attempt_once(heartbeat_env, heartbeat_dsn, verbose):
    port = refused_port()
    add_servers(heartbeat_dsn, [{"name": "down", "host": "127.0.0.1", "port": port}])
    proc = run("probe", *(["--verbose"] if verbose else []))
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if "down" in line]
    failed = [line for line in lines if "refused" in line]
    assert len(failed) == 1 and failed[0].startswith("down: FAILED refused"), lines
    assert lines == ([f"connecting to down (127.0.0.1:{port})"] if verbose else []) + failed


def test_should_turn_warning_with_an_alert_and_back(heartbeat_env, heartbeat_dsn, fleet: SshdFleet):
    web = fleet.servers[1]
    add_servers(heartbeat_dsn, [{"name": "web", "host": web.host, "port": web.port}])
    assert "raised on web: disk_full" in run("alert", "raise", "web", "disk_full", "-m", "/var 97%").stdout
    assert "disk_full" in run("alert", "list").stdout
    assert "status: 0 ONLINE, 1 WARNING, 0 OFFLINE" in run("probe").stdout
    alert_id = query(heartbeat_dsn, "SELECT id FROM alerts")[0]["id"]
    run("alert", "resolve", str(alert_id))
    run("anomaly", "raise", "web", "cpu_spike")
    assert "status: 0 ONLINE, 1 WARNING, 0 OFFLINE" in run("probe").stdout
    anomaly_id = query(heartbeat_dsn, "SELECT id FROM anomalies")[0]["id"]
    run("anomaly", "resolve", str(anomaly_id))
    assert "status: 1 ONLINE, 0 WARNING, 0 OFFLINE" in run("probe").stdout
    assert "no server named 'nope'" in run("alert", "raise", "nope", "x", ok=False).stderr


def test_should_accept_a_changed_key_only_when_told(heartbeat_env, heartbeat_dsn, fleet: SshdFleet):
    target, other = fleet.servers[2], fleet.servers[3]
    add_servers(heartbeat_dsn, [{"name": "moved", "host": target.host, "port": target.port,
                                 "host_key": other.host_key_public_line}])
    out = run("probe", "--verbose", "--server", "moved").stdout
    assert "moved: FAILED host_key_changed" in out
    assert other.host_key_fingerprint in out and target.host_key_fingerprint in out
    assert "host_key_changed" in run("alert", "list").stdout
    assert "FAILED host_key_changed" in run("probe", "-v").stdout  # still refused on the next cycle
    accepted = run("servers", "accept-key", "moved").stdout
    assert f"pinned host key {target.host_key_fingerprint} (was {other.host_key_fingerprint})" in accepted
    assert "moved: ok in" in run("probe", "--verbose").stdout
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM alerts WHERE resolved_at IS NULL")[0]["n"] == 0


def test_should_explain_an_unreachable_database_without_a_traceback(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_DB", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": refused_port(), "schema": "x", "login": "x"}))
    proc = run("status", ok=False)
    assert proc.returncode == 1
    assert "cannot reach the heartbeat database" in proc.stderr and "heartbeat_db" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_should_explain_a_missing_connection(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_HEARTBEAT_DB", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", "/nonexistent-airflow-home")
    proc = run("status", ok=False)
    assert "connection 'heartbeat_db' is not defined" in proc.stderr, proc.stderr
