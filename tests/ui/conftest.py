"""A real Airflow api-server with the heartbeat plugin, over a heartbeat database with a fleet of
real sshd probed by a real cycle plus 24 h of recorded history, for the page and API tests."""

from __future__ import annotations

import json
import random
import secrets
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from integration.test_notifications import Webhook
from support import add_servers

from heartbeat import cycle, store
from heartbeat.config import settings_from_env
from heartbeat_lab import KeyPair, PostgresServer, SshdFleet, free_port, refused_port
from heartbeat_lab.airflow_env import (
    airflow_environment,
    migrate_metadata,
    postgres_connection_json,
    ssh_connection_json,
)
from heartbeat_lab.airflow_procs import AirflowProcesses

# A server is OFFLINE 300 s after its last heartbeat here, and the monitor STALE 600 s after its
# last cycle (60 s each by default), so that a slow machine cannot change what the page should
# show between the cycle and the page load.
OFFLINE_AFTER_S = "300"
STALE_AFTER_S = "600"


REASONS = {"ONLINE": "heartbeat 0 s ago", "WARNING": "heartbeat 4 s ago; 1 active anomaly",
           "OFFLINE": "no heartbeat for 61 s; last attempt: connection refused"}


@dataclass
class FleetSite:
    url: str
    dsn: str
    passwords: dict[str, str]
    server_ids: dict[str, int]
    pager: Webhook  # the api-server's escalation channel (webhook)

    def token(self, user: str = "viewer") -> str:
        request = urllib.request.Request(  # noqa: S310 (the api-server on 127.0.0.1)
            f"{self.url}/auth/token", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"username": user, "password": self.passwords[user]}).encode())
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return str(json.load(response)["access_token"])


def add_history(conn: psycopg.Connection, now: datetime, ids: dict[str, int]) -> None:
    """24 h of status changes and attempts, as the monitor would have recorded them, and the
    statuses that go with them (so the real cycle only records what changes now)."""
    hours = lambda n: now - timedelta(hours=n)  # noqa: E731
    history = {
        "web-01": [(hours(26), "ONLINE"), (hours(8), "OFFLINE"), (hours(7.5), "ONLINE")],
        "web-02": [(hours(24 * 30), "ONLINE")],
        "web-03": [(hours(72), "ONLINE"), (hours(5), "WARNING"), (hours(4), "ONLINE")],
        "api-01": [(hours(240), "ONLINE")],
        "db-01": [(hours(240), "ONLINE"), (hours(2), "OFFLINE")],
        "batch-01": [(hours(120), "ONLINE"), (hours(0.7), "OFFLINE")],
    }
    rng = random.Random(7)
    for name, changes in history.items():
        previous = None
        for at, status in changes:
            conn.execute("INSERT INTO status_events (server_id, from_status, to_status, at, reason) "
                         "VALUES (%s, %s, %s, %s, %s)", (ids[name], previous, status, at, REASONS[status]))
            previous = status
        conn.execute("INSERT INTO server_status (server_id, status, reason, active_alerts, active_anomalies, "
                     "status_since, evaluated_at) VALUES (%s, %s, 'recorded', 0, 0, %s, %s)",
                     (ids[name], previous, changes[-1][0], hours(0.01)))
        base = {"web-01": 11, "web-02": 9, "web-03": 14, "api-01": 17, "db-01": 10, "batch-01": 12}[name]
        for i in range(1, 288):
            at = now - timedelta(minutes=5 * i)
            status = next((s for t, s in reversed(changes) if t <= at), None)
            if status is None:
                continue
            ok = status != "OFFLINE"
            conn.execute(
                "INSERT INTO probe_history (server_id, cycle_id, attempted_at, ok, error_class, message, total_ms) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (ids[name], f"history-{i}", at, ok, None if ok else "refused", "" if ok else "connection refused",
                 round(base + rng.gauss(0, 1.5) + (6 if i % 37 == 0 else 0), 2) if ok else 0.4))
    conn.execute("INSERT INTO heartbeats (server_id, last_success_at, last_attempt_at, last_cycle_id, last_ok) "
                 "SELECT server_id, max(attempted_at) FILTER (WHERE ok), max(attempted_at), 'history-1', "
                 "coalesce(max(attempted_at) FILTER (WHERE ok) = max(attempted_at), false) "
                 "FROM probe_history GROUP BY server_id")


@pytest.fixture(scope="module")
def fleet_site(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, fleet: SshdFleet,
               client_key: KeyPair) -> Iterator[FleetSite]:
    home = tmp_path_factory.mktemp("airflow_ui")
    postgres.create_database("airflow_meta_ui")
    postgres.create_database("heartbeat_ui")
    dsn = postgres.dsn("heartbeat_ui")
    passwords = {"admin": secrets.token_urlsafe(12), "viewer": secrets.token_urlsafe(12),
                 "editor": secrets.token_urlsafe(12)}
    password_file = home / "passwords.json"
    password_file.write_text(json.dumps(passwords))
    pager = Webhook()
    db_json = postgres_connection_json(postgres.host, postgres.port, "heartbeat_ui")
    ssh_json = ssh_connection_json("root", client_key.private_path)
    env = airflow_environment(
        home, f"postgresql+psycopg://postgres@{postgres.host}:{postgres.port}/airflow_meta_ui",
        heartbeat_db_json=db_json, ssh_conn_json=ssh_json, api_port=free_port(),
        extra={"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer,editor:user",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
               "HEARTBEAT_OFFLINE_AFTER_S": OFFLINE_AFTER_S,
               "AIRFLOW_CONN_HEARTBEAT_WEBHOOK": pager.connection_json(),
               "HEARTBEAT_NOTIFY_ESCALATION_CHANNELS": "webhook"},
    )
    migrate_metadata(env)
    with store.connect(dsn) as conn:
        store.migrate(conn)
    servers = fleet.servers
    ids = add_servers(dsn, [
        {"name": "web-01", "host": servers[0].host, "port": servers[0].port},
        {"name": "web-02", "host": servers[1].host, "port": servers[1].port},
        {"name": "web-03", "host": servers[2].host, "port": servers[2].port},
        {"name": "api-01", "host": servers[3].host, "port": servers[3].port},
        {"name": "db-01", "host": "127.0.0.1", "port": refused_port()},
        {"name": "batch-01", "host": "127.0.0.1", "port": refused_port()},
    ])
    with pager, AirflowProcesses(env, Path(home) / "logs", components=("api-server",)) as airflow:
        with store.connect(dsn) as conn:
            now = conn.execute("SELECT now() AS now").fetchone()["now"]
            add_history(conn, now, ids)
            conn.execute("INSERT INTO alerts (server_id, kind, message, source) VALUES (%s, 'disk_full', "
                         "'/var at 97%%', 'prometheus')", (ids["api-01"],))
            conn.execute("INSERT INTO maintenance_windows (server_id, starts_at, ends_at, reason) "
                         "VALUES (%s, %s, %s, 'kernel upgrade')",
                         (ids["batch-01"], now - timedelta(hours=1), now + timedelta(hours=2)))
            conn.commit()
        run_cycle(dsn, db_json, ssh_json)
        yield FleetSite(url=airflow.api_url, dsn=dsn, passwords=passwords, server_ids=ids, pager=pager)


def run_cycle(dsn: str, db_json: str, ssh_json: str) -> None:
    """One real monitoring cycle in this process (load, probe the sshd fleet, materialise)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_HEARTBEAT_DB", db_json)
        patch.setenv("AIRFLOW_CONN_HEARTBEAT_SSH", ssh_json)
        patch.setenv("HEARTBEAT_OFFLINE_AFTER_S", OFFLINE_AFTER_S)
        patch.setenv("HEARTBEAT_STALE_AFTER_S", STALE_AFTER_S)
        patch.setenv("HEARTBEAT_CONNECT_TIMEOUT_S", "2")
        patch.setenv("HEARTBEAT_PROBE_TIMEOUT_S", "5")
        settings = settings_from_env()
        started = cycle.utc_now()
        cycle_id = "ui-" + started.strftime("%H%M%S")
        shards = cycle.load_shards(settings, cycle_id, started, dsn=dsn)
        for shard in shards:
            cycle.probe_shard(settings, cycle_id, shard, dsn=dsn)
        cycle.materialise(settings, cycle_id, cycle.utc_now(), dsn=dsn)
