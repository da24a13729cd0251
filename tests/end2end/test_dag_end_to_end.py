"""The real DAG through ``dag.test()`` against PostgreSQL and a fleet of real sshd and hostile peers."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from integration.test_notifications import Webhook
from support import add_servers, dump, query

from heartbeat_lab import BannerPeer, KeyPair, SilentPeer, SshdFleet, SshdServer, refused_port

pytestmark = pytest.mark.end2end

REPO = Path(__file__).resolve().parents[2]
PROBE_TIMEOUT_S = 3.0


def run_dag_test(env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "dags" / "ssh_heartbeat.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    return output


def last_run_states(env: dict[str, str], postgres) -> tuple[str, dict[str, str]]:
    runs = query(postgres.dsn("airflow_meta"),
                 "SELECT run_id, state FROM dag_run WHERE dag_id = 'ssh_heartbeat' ORDER BY id DESC LIMIT 1")
    tis = query(postgres.dsn("airflow_meta"),
                "SELECT task_id, map_index, rendered_map_index, state FROM task_instance WHERE run_id = %s",
                (runs[0]["run_id"],))
    return runs[0]["state"], {f"{t['task_id']}[{t['rendered_map_index'] or t['map_index']}]": t["state"]
                              for t in tis}


@pytest.fixture
def hostile_fleet(tmp_path: Path, other_key: KeyPair):
    """Peers that fail each in their own way; all stopped at the end."""
    wrong_key = SshdServer(tmp_path / "wrong_key", listen_host="127.0.0.1", authorized_keys=[other_key.public_line])
    peers = [SilentPeer(), SilentPeer(), BannerPeer(b"HTTP/1.1 400 Bad Request\r\n\r\n")]
    wrong_key.start()
    for peer in peers:
        peer.start()
    yield {"wrong_key": wrong_key, "silent": peers[:2], "http": peers[2]}
    wrong_key.stop()
    for peer in peers:
        peer.stop()


def test_should_run_a_full_cycle_and_materialise_every_status(
    airflow_base_env, heartbeat_env, heartbeat_dsn, postgres, fleet: SshdFleet, hostile_fleet
):
    web1, web2, alerted, rotated = fleet.servers
    ids = add_servers(heartbeat_dsn, [
        {"name": "web-1", "host": web1.host, "port": web1.port},
        {"name": "web-2", "host": web2.host, "port": web2.port},
        {"name": "alerted", "host": alerted.host, "port": alerted.port},
        # both silent hosts in one shard of three: it must take one timeout, not two
        {"name": "silent-1", "host": "127.0.0.1", "port": hostile_fleet["silent"][0].port},
        {"name": "silent-2", "host": "127.0.0.1", "port": hostile_fleet["silent"][1].port},
        # pinned to another server's key: the key it presents has "changed"
        {"name": "changed-key", "host": rotated.host, "port": rotated.port, "host_key": web1.host_key_public_line},
        {"name": "refused", "host": "127.0.0.1", "port": refused_port()},
        {"name": "not-ssh", "host": "127.0.0.1", "port": hostile_fleet["http"].port},
        {"name": "wrong-key", "host": "127.0.0.1", "port": hostile_fleet["wrong_key"].port},
        {"name": "disabled", "host": "127.0.0.1", "port": refused_port(), "enabled": False},
    ])
    query(heartbeat_dsn, "INSERT INTO alerts (server_id, kind, message) VALUES (%s, 'disk_full', '/var 97%%')"
          " RETURNING id", (ids["alerted"],))
    webhook = Webhook()
    env = {**airflow_base_env, **heartbeat_env, "HEARTBEAT_PROBE_TIMEOUT_S": str(PROBE_TIMEOUT_S),
           "HEARTBEAT_CONNECT_TIMEOUT_S": "2", "HEARTBEAT_SHARD_SIZE": "3", "HEARTBEAT_NOTIFY_AFTER_S": "0",
           "AIRFLOW_CONN_HEARTBEAT_WEBHOOK": webhook.connection_json()}

    with webhook:
        output = run_dag_test(env)

    run_state, task_states = last_run_states(env, postgres)
    assert run_state == "success", dump(task_states)
    assert set(task_states.values()) == {"success"}, dump(task_states)
    assert "probe_shard[silent-1 … changed-key (3 servers)]" in task_states, dump(task_states)
    status = {r["server_name"]: r for r in query(heartbeat_dsn, "SELECT * FROM server_status_live")}
    stored = {r["name"]: r for r in query(
        heartbeat_dsn, "SELECT s.name, st.status, st.reason, h.last_error_class FROM server_status st "
                       "JOIN servers s ON s.id = st.server_id LEFT JOIN heartbeats h ON h.server_id = s.id")}
    expected = {
        "web-1": ("ONLINE", None), "web-2": ("ONLINE", None), "alerted": ("WARNING", None),
        "changed-key": ("OFFLINE", "host_key_changed"), "refused": ("OFFLINE", "refused"),
        "silent-1": ("OFFLINE", "timeout"), "silent-2": ("OFFLINE", "timeout"), "not-ssh": ("OFFLINE", "banner"),
        "wrong-key": ("OFFLINE", "auth"),
    }
    assert {n: (r["status"], r["last_error_class"]) for n, r in stored.items()} == expected, output[-3000:]
    assert {n: r["status"] for n, r in status.items()} == {n: s for n, (s, _) in expected.items()}
    assert stored["refused"]["reason"] == "no heartbeat yet; last attempt: connection refused"
    assert stored["alerted"]["reason"].endswith("; 1 active alert")
    key_alerts = query(heartbeat_dsn, "SELECT message FROM alerts WHERE kind = 'host_key_changed' "
                                      "AND resolved_at IS NULL AND server_id = %s", (ids["changed-key"],))
    assert len(key_alerts) == 1
    assert web1.host_key_fingerprint in key_alerts[0]["message"]
    assert rotated.host_key_fingerprint in key_alerts[0]["message"]
    # TOFU: healthy servers had their keys pinned on first use
    pinned = {r["name"]: r["host_key"] for r in query(heartbeat_dsn, "SELECT name, host_key FROM servers")}
    assert pinned["web-1"] == web1.host_key_public_line and pinned["wrong-key"] is not None
    assert pinned["changed-key"] == web1.host_key_public_line  # never silently replaced
    # The same task sent the notifications: the changed host key among them.
    sent = {(m["kind"], m["title"]) for m in webhook.received}
    assert ("host_key_changed", "changed-key: host key changed") in sent, dump(webhook.received)

    # The silent hosts cost one probe timeout for their shard, not one each.
    [cycle] = query(heartbeat_dsn, "SELECT started_at, finished_at, servers, ok, failed, online, warning, offline "
                                   "FROM cycles")
    assert (cycle["servers"], cycle["ok"], cycle["online"], cycle["warning"], cycle["offline"]) == (9, 3, 2, 1, 6)
    silent_ms = [r["total_ms"] for r in query(heartbeat_dsn, "SELECT total_ms FROM probe_history "
                                                             "WHERE error_class = 'timeout'")]
    assert len(silent_ms) == 2 and max(silent_ms) < (PROBE_TIMEOUT_S + 0.5) * 1000
    print("cycle duration under dag.test():", cycle["finished_at"] - cycle["started_at"])
    assert cycle["finished_at"] - cycle["started_at"] < timedelta(seconds=PROBE_TIMEOUT_S + 6)

    # Resolve the alert: ONLINE again on the next run.
    query(heartbeat_dsn, "UPDATE alerts SET resolved_at = now() WHERE kind = 'disk_full' RETURNING id")
    run_dag_test(env)
    assert query(heartbeat_dsn, "SELECT status FROM server_status WHERE server_id = %s",
                 (ids["alerted"],))[0]["status"] == "ONLINE"
    events = query(heartbeat_dsn, "SELECT s.name, e.from_status, e.to_status FROM status_events e "
                                  "JOIN servers s ON s.id = e.server_id ORDER BY e.id")
    transitions = [(e["name"], e["from_status"], e["to_status"]) for e in events]
    assert ("alerted", None, "WARNING") in transitions
    assert ("alerted", "WARNING", "ONLINE") in transitions
    assert ("web-1", None, "ONLINE") in transitions and ("refused", None, "OFFLINE") in transitions
    assert len(transitions) == 10  # nine first statuses and one change
    assert len(query(heartbeat_dsn, "SELECT * FROM cycles")) == 2


def test_should_fail_the_run_with_a_clear_task_log_when_the_database_is_unreachable(airflow_base_env, postgres):
    env = {**airflow_base_env,
           "AIRFLOW_CONN_HEARTBEAT_DB": json.dumps({"conn_type": "postgres", "host": "127.0.0.1",
                                                    "port": refused_port(), "schema": "heartbeat", "login": "x"}),
           "AIRFLOW_CONN_HEARTBEAT_SSH": json.dumps({"conn_type": "ssh", "login": "root"})}
    proc = subprocess.run([sys.executable, str(REPO / "dags" / "ssh_heartbeat.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert "cannot reach the heartbeat database" in output and "heartbeat_db" in output
    run_state, task_states = last_run_states(env, postgres)
    assert run_state == "failed"
    assert task_states["load_inventory[-1]"] == "failed"
    assert task_states["materialise_and_notify[-1]"] == "failed"  # it still ran (all_done), and said why
