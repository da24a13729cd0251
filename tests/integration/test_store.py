"""The heartbeat store against a real PostgreSQL: migrations, results, status, history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from support import add_servers, query

from heartbeat import sql, store
from heartbeat.flapping import FlapRules
from heartbeat.models import ProbeResult
from heartbeat.status import StatusRules

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def ok(server_id: int, at: datetime, name: str = "s", host_key: str | None = None) -> ProbeResult:
    return ProbeResult(server_id=server_id, server_name=name, ok=True, attempted_at=at, message="login ok",
                       tcp_connect_ms=0.3, ssh_handshake_ms=8.0, auth_ms=3.0, total_ms=11.5,
                       banner="SSH-2.0-OpenSSH_9.2", host_key=host_key,
                       host_key_fingerprint=None if host_key is None else "SHA256:x")


def failed(server_id: int, at: datetime, error_class: str = "refused", name: str = "s") -> ProbeResult:
    return ProbeResult(server_id=server_id, server_name=name, ok=False, attempted_at=at, error_class=error_class,
                       message="connection refused on port 22", total_ms=0.5)


def test_should_apply_migrations_once_and_record_them(heartbeat_dsn: str):
    with store.connect(heartbeat_dsn) as conn:
        assert store.migrate(conn) == []  # the fixture applied them already
        store.check_schema(conn)
    ledger = query(heartbeat_dsn, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert ledger[0] == {"version": 1, "name": "inventory_and_heartbeats"}


def test_should_refuse_a_migration_edited_after_it_was_applied(heartbeat_dsn: str):
    with store.connect(heartbeat_dsn) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        conn.commit()
        with pytest.raises(store.SchemaError, match="changed after it was applied"):
            store.migrate(conn)


def test_should_say_run_migrate_when_schema_is_missing(postgres):
    postgres.create_database("heartbeat_empty")
    with store.connect(postgres.dsn("heartbeat_empty")) as conn, pytest.raises(
            store.SchemaError, match="run `heartbeat migrate`"):
        store.check_schema(conn)


def test_should_give_a_clear_message_when_the_database_is_unreachable():
    with pytest.raises(psycopg.OperationalError, match=r"cannot reach the heartbeat database.*heartbeat_db"):
        store.connect("host=127.0.0.1 port=1 dbname=x user=x connect_timeout=1")


def test_should_flip_online_warning_offline_and_record_each_change(heartbeat_dsn: str):
    ids = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])
    web = ids["web"]
    with store.connect(heartbeat_dsn) as conn:
        store.record_results(conn, "c1", [ok(web, T0)])
        assert store.materialise_status(conn, T0 + timedelta(seconds=1), 60)["online"] == 1
        conn.execute("INSERT INTO alerts (server_id, kind, message) VALUES (%s, 'disk_full', '/ 98%%')", (web,))
        conn.commit()
        store.materialise_status(conn, T0 + timedelta(seconds=30), 60)
        row = query(heartbeat_dsn, "SELECT status, reason, active_alerts FROM server_status")[0]
        assert row == {"status": "WARNING", "reason": "heartbeat within 60 s; 1 active alert", "active_alerts": 1}
        store.record_results(conn, "c2", [failed(web, T0 + timedelta(seconds=30))])
        store.materialise_status(conn, T0 + timedelta(seconds=61), 60)
        store.materialise_status(conn, T0 + timedelta(seconds=91), 60)  # no change: no new event
    events = query(heartbeat_dsn, "SELECT from_status, to_status, reason FROM status_events ORDER BY id")
    assert events == [
        {"from_status": None, "to_status": "ONLINE", "reason": "heartbeat within 60 s"},
        {"from_status": "ONLINE", "to_status": "WARNING", "reason": "heartbeat within 60 s; 1 active alert"},
        {"from_status": "WARNING", "to_status": "OFFLINE",
         "reason": "no heartbeat for over 60 s; last attempt: connection refused"},
    ]
    status = query(heartbeat_dsn, "SELECT status_since, evaluated_at FROM server_status")[0]
    assert status["status_since"] == T0 + timedelta(seconds=61)
    assert status["evaluated_at"] == T0 + timedelta(seconds=91)


def test_should_not_let_an_older_evaluation_overwrite_a_newer_one(heartbeat_dsn: str):
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    with store.connect(heartbeat_dsn) as conn:
        store.record_results(conn, "c1", [ok(web, T0)])
        store.materialise_status(conn, T0 + timedelta(seconds=120), 60)  # OFFLINE
        store.materialise_status(conn, T0 + timedelta(seconds=5), 60)  # a retried old run: ignored
    assert query(heartbeat_dsn, "SELECT status FROM server_status")[0]["status"] == "OFFLINE"
    assert len(query(heartbeat_dsn, "SELECT * FROM status_events")) == 1


def test_should_count_consecutive_failures_once_per_cycle_even_when_retried(heartbeat_dsn: str):
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    with store.connect(heartbeat_dsn) as conn:
        store.record_results(conn, "c1", [failed(web, T0)])
        store.record_results(conn, "c2", [failed(web, T0 + timedelta(seconds=30))])
        store.record_results(conn, "c2", [failed(web, T0 + timedelta(seconds=35))])  # the task was retried
    row = query(heartbeat_dsn, "SELECT consecutive_failures, last_success_at FROM heartbeats")[0]
    assert row == {"consecutive_failures": 2, "last_success_at": None}
    assert len(query(heartbeat_dsn, "SELECT * FROM probe_history")) == 2


def test_should_pin_first_key_and_alert_once_on_a_changed_key(heartbeat_dsn: str):
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
    changed = ProbeResult(server_id=web, server_name="web", ok=False, attempted_at=T0 + timedelta(seconds=30),
                          error_class="host_key_changed", message="host key changed",
                          host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5",
                          host_key_fingerprint="SHA256:new", pinned_fingerprint="SHA256:old")
    with store.connect(heartbeat_dsn) as conn:
        store.record_results(conn, "c1", [ok(web, T0, host_key=key)])
        store.record_results(conn, "c2", [changed])
        store.record_results(conn, "c3", [changed])
    assert query(heartbeat_dsn, "SELECT host_key FROM servers")[0]["host_key"] == key
    alerts = query(heartbeat_dsn, "SELECT kind, message FROM alerts WHERE resolved_at IS NULL")
    assert len(alerts) == 1
    assert alerts[0]["kind"] == "host_key_changed"
    assert "SHA256:old" in alerts[0]["message"] and "SHA256:new" in alerts[0]["message"]


def test_should_skip_and_report_invalid_inventory_rows(heartbeat_dsn: str):
    add_servers(heartbeat_dsn, [{"name": "good", "host": "10.0.0.1"}, {"name": "bad", "host": "exa_mple!"},
                                {"name": "off", "host": "10.0.0.2", "enabled": False}])
    with store.connect(heartbeat_dsn) as conn:
        good, bad = store.load_inventory(conn)
    assert [s.name for s in good] == ["good"]
    assert [(s.name, p) for s, p in bad] == [("bad", "invalid inventory row: host 'exa_mple!' is not a DNS name, "
                                                     "IPv4 or IPv6 address")]


def test_should_prune_history_older_than_retention(heartbeat_dsn: str):
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    with store.connect(heartbeat_dsn) as conn:
        for day in range(10):
            store.record_results(conn, f"c{day}", [ok(web, T0 - timedelta(days=day))])
        assert store.prune_history(conn, T0, retention_days=7) == 2  # 8 and 9 days old; 7 days is kept
    assert len(query(heartbeat_dsn, "SELECT * FROM probe_history")) == 8


def test_should_remove_a_deleted_servers_history_and_keep_the_others(heartbeat_dsn: str):
    ids = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}, {"name": "db", "host": "10.0.0.2"}])
    with store.connect(heartbeat_dsn) as conn:
        for i in range(3):
            store.record_results(conn, f"c{i}", [ok(ids["web"], T0 + timedelta(seconds=30 * i)),
                                                 failed(ids["db"], T0 + timedelta(seconds=30 * i))])
        store.materialise_status(conn, T0 + timedelta(seconds=61), 60)
        conn.execute("DELETE FROM servers WHERE id = %s", (ids["web"],))
        conn.commit()
        for table in ("probe_history", "heartbeats", "server_status"):
            remaining = query(heartbeat_dsn, f"SELECT DISTINCT server_id FROM {table}")
            assert remaining == [{"server_id": ids["db"]}], table
        assert store.cycle_probe_counts(conn, "c2") == store.ProbeCounts(servers=1, ok=0, failed=1)


def test_should_recount_a_cycle_from_its_history_rows_and_not_double_a_retried_shard(heartbeat_dsn: str):
    ids = add_servers(heartbeat_dsn, [{"name": f"s{i}", "host": f"10.0.1.{i}"} for i in range(5)])
    with store.connect(heartbeat_dsn) as conn:
        batch = [ok(sid, T0) if i % 2 else failed(sid, T0) for i, sid in enumerate(ids.values())]
        store.record_results(conn, "c1", batch)
        store.record_results(conn, "c1", batch)  # a retried shard
        store.record_results(conn, "c2", batch[:1])
        assert store.cycle_probe_counts(conn, "c1") == store.ProbeCounts(servers=5, ok=2, failed=3)


def test_should_store_hostile_values_inert(heartbeat_dsn: str):
    ids = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])
    hostile = "'; DROP TABLE servers; -- \u202e ☃" + "x" * 10_000
    with store.connect(heartbeat_dsn) as conn:
        store.record_results(conn, "c1'; --", [ProbeResult(ids["web"], "web", False, T0, "other", hostile)])
    assert query(heartbeat_dsn, "SELECT message FROM probe_history")[0]["message"] == hostile
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM servers")[0]["n"] == 1


def test_should_flag_a_flapping_server_as_warning(heartbeat_dsn: str):
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    with store.connect(heartbeat_dsn) as conn:
        for i in range(10):
            at = T0 + timedelta(seconds=30 * i)
            store.record_results(conn, f"c{i}", [ok(web, at) if i % 2 else failed(web, at)])
        counts = store.materialise_status(conn, T0 + timedelta(seconds=275), 60)
    row = query(heartbeat_dsn, "SELECT flapping, flap_percent FROM heartbeats")[0]
    assert row == {"flapping": True, "flap_percent": 100.0}
    assert counts["warning"] == 1
    assert query(heartbeat_dsn, "SELECT reason FROM server_status")[0]["reason"] == \
        "heartbeat within 60 s; flapping (100% state changes)"


def test_should_hold_offline_until_recovery_threshold_is_met(heartbeat_dsn: str):
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    rules = StatusRules(recovery_threshold=2)
    with store.connect(heartbeat_dsn) as conn:
        store.record_results(conn, "c1", [failed(web, T0)])
        assert store.materialise_status(conn, T0 + timedelta(seconds=1), rules)["offline"] == 1
        store.record_results(conn, "c2", [ok(web, T0 + timedelta(seconds=30))])
        assert store.materialise_status(conn, T0 + timedelta(seconds=31), rules)["offline"] == 1
        store.record_results(conn, "c3", [ok(web, T0 + timedelta(seconds=60))])
        assert store.materialise_status(conn, T0 + timedelta(seconds=61), rules)["online"] == 1
    reasons = [r["reason"] for r in query(heartbeat_dsn, "SELECT reason FROM status_events ORDER BY id")]
    assert reasons == ["no heartbeat yet; last attempt: connection refused", "heartbeat within 60 s"]


def test_should_mark_the_fleet_stale_instead_of_offline_when_the_monitor_stalls(heartbeat_dsn: str):
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    with store.connect(heartbeat_dsn) as conn:
        store.record_results(conn, "c1", [ok(web, long_ago)])
        store.materialise_status(conn, long_ago, 60)
        store.finish_cycle(conn, "c1", long_ago, long_ago, {"online": 1})
    [live] = query(heartbeat_dsn, "SELECT status, reason FROM server_status_live")
    assert live["status"] == "STALE"
    assert live["reason"] == f"monitor stalled since {long_ago:%Y-%m-%d %H:%M:%S} UTC; last known: ONLINE"
    [health] = query(heartbeat_dsn, "SELECT stalled, health, online FROM monitor_health")
    assert health["stalled"] is True and health["health"].startswith("monitor stalled since")
    assert query(heartbeat_dsn, "SELECT stale FROM fleet_summary")[0]["stale"] == 1


SERVER_STATUS_COLUMNS = ["server_id", "status", "reason", "last_heartbeat_at", "heartbeat_age_s", "active_alerts",
                         "active_anomalies", "status_since", "evaluated_at", "flapping"]


def test_should_write_a_status_row_only_when_the_decision_changes(heartbeat_dsn: str):
    ids = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}, {"name": "db", "host": "10.0.0.2"}])
    web, db = ids["web"], ids["db"]
    with store.connect(heartbeat_dsn) as conn:
        store.record_results(conn, "c1", [ok(web, T0), ok(db, T0)])
        assert store.materialise_status(conn, T0 + timedelta(seconds=2), 60)["written"] == 2
        store.record_results(conn, "c2", [ok(web, T0 + timedelta(seconds=30)), failed(db, T0 + timedelta(seconds=30))])
        first = store.materialise_status(conn, T0 + timedelta(seconds=32), 60)  # db: 32 s old, still ONLINE
        store.record_results(conn, "c3", [ok(web, T0 + timedelta(seconds=60)), failed(db, T0 + timedelta(seconds=60))])
        second = store.materialise_status(conn, T0 + timedelta(seconds=62), 60)  # db: 62 s old, OFFLINE
    assert (first["written"], first["online"]) == (0, 2)
    assert (second["written"], second["flips"], second["offline"]) == (1, 1, 1)
    decided = query(heartbeat_dsn, "SELECT server_id, written_at FROM server_status_decided")
    written = {r["server_id"]: r["written_at"] for r in decided}
    assert written == {web: T0 + timedelta(seconds=2), db: T0 + timedelta(seconds=62)}
    rows = {r["server_id"]: r for r in query(heartbeat_dsn, "SELECT * FROM server_status")}
    assert rows[web]["reason"] == "heartbeat within 60 s"
    assert rows[web]["heartbeat_age_s"] == 2.0 and rows[web]["last_heartbeat_at"] == T0 + timedelta(seconds=60)
    assert rows[web]["evaluated_at"] == T0 + timedelta(seconds=62)
    assert rows[db]["reason"] == "no heartbeat for over 60 s; last attempt: connection refused"
    assert (rows[db]["status"], rows[db]["status_since"]) == ("OFFLINE", T0 + timedelta(seconds=62))


def test_should_keep_the_server_status_columns_for_readers_and_accept_rows_written_by_hand(heartbeat_dsn: str):
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    query(heartbeat_dsn, "INSERT INTO server_status (server_id, status, reason, status_since, evaluated_at) "
                         "VALUES (%s, 'ONLINE', 'recorded', %s, %s) RETURNING server_id", (web, T0, T0))
    [row] = query(heartbeat_dsn, "SELECT * FROM server_status")
    assert list(row) == SERVER_STATUS_COLUMNS
    assert row == {"server_id": web, "status": "ONLINE", "reason": "recorded", "last_heartbeat_at": None,
                   "heartbeat_age_s": None, "active_alerts": 0, "active_anomalies": 0, "status_since": T0,
                   "evaluated_at": T0, "flapping": False}


def test_should_rewrite_a_status_when_only_its_reason_changes(heartbeat_dsn: str):
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    with store.connect(heartbeat_dsn) as conn:
        store.record_results(conn, "c1", [failed(web, T0)])
        store.materialise_status(conn, T0 + timedelta(seconds=1), 60)
        store.record_results(conn, "c2", [failed(web, T0 + timedelta(seconds=30), error_class="timeout")])
        counts = store.materialise_status(conn, T0 + timedelta(seconds=31), 60)
    assert (counts["written"], counts["flips"]) == (1, 0)
    [row] = query(heartbeat_dsn, "SELECT status, reason, status_since FROM server_status")
    assert row == {"status": "OFFLINE", "reason": "no heartbeat yet; last attempt: timed out",
                   "status_since": T0 + timedelta(seconds=1)}


def test_should_carry_the_flap_window_with_the_heartbeat_and_replace_a_retried_attempt(heartbeat_dsn: str):
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    rules = FlapRules(window=4)
    with store.connect(heartbeat_dsn) as conn:
        for i in range(6):
            at = T0 + timedelta(seconds=30 * i)
            store.record_results(conn, f"c{i}", [ok(web, at) if i % 3 else failed(web, at)], rules)
        assert query(heartbeat_dsn, "SELECT recent_oks FROM heartbeats")[0]["recent_oks"] == [True, False, True, True]
        store.record_results(conn, "c5", [failed(web, T0 + timedelta(seconds=155))], rules)  # the task was retried
    row = query(heartbeat_dsn, "SELECT recent_oks, flapping, flap_percent FROM heartbeats")[0]
    assert row == {"recent_oks": [True, False, True, False], "flapping": True, "flap_percent": 100.0}


def test_should_upgrade_a_database_of_migration_006_keeping_status_and_flap_window(postgres):
    postgres.create_database("heartbeat_006")
    dsn = postgres.dsn("heartbeat_006")
    with store.connect(dsn) as conn, conn.transaction():
        conn.execute(store.LEDGER_DDL)
        for migration in [m for m in sql.migrations() if m.version <= 6]:
            conn.execute(migration.text.encode())
            conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                         (migration.version, migration.name, migration.checksum))
        web = conn.execute("INSERT INTO servers (name, host) VALUES ('web', '10.0.0.1') RETURNING id").fetchone()["id"]
        for i, was_ok in enumerate([True, False, True, True]):
            conn.execute("INSERT INTO probe_history (server_id, cycle_id, attempted_at, ok) VALUES (%s, %s, %s, %s)",
                         (web, f"c{i}", T0 + timedelta(seconds=30 * i), was_ok))
        conn.execute("INSERT INTO heartbeats (server_id, last_success_at, last_attempt_at, last_cycle_id, last_ok) "
                     "VALUES (%s, %s, %s, 'c3', true)", (web, T0 + timedelta(seconds=90), T0 + timedelta(seconds=90)))
        conn.execute("INSERT INTO server_status (server_id, status, reason, last_heartbeat_at, heartbeat_age_s, "
                     "status_since, evaluated_at) VALUES (%s, 'ONLINE', 'heartbeat 3 s ago', %s, 3, %s, %s)",
                     (web, T0 + timedelta(seconds=90), T0, T0 + timedelta(seconds=93)))
    with store.connect(dsn) as conn:
        assert store.migrate(conn)[:2] == ["007_status_written_on_change", "008_flap_window_in_heartbeats"]
        assert query(dsn, "SELECT recent_oks FROM heartbeats")[0]["recent_oks"] == [True, False, True, True]
        [kept] = query(dsn, "SELECT status, reason, heartbeat_age_s, status_since, evaluated_at FROM server_status")
        assert kept == {"status": "ONLINE", "reason": "heartbeat 3 s ago", "heartbeat_age_s": 3.0, "status_since": T0,
                        "evaluated_at": T0 + timedelta(seconds=93)}
        counts = store.materialise_status(conn, T0 + timedelta(seconds=100), 60)
    assert (counts["written"], counts["flips"]) == (1, 0)  # the stored reason is rewritten, once
    [row] = query(dsn, "SELECT status, reason, status_since FROM server_status")
    assert row == {"status": "ONLINE", "reason": "heartbeat within 60 s", "status_since": T0}


def test_should_edit_the_inventory_and_its_inputs_through_typed_records(heartbeat_dsn: str):
    from heartbeat.inventory import ServerSpec

    with store.connect(heartbeat_dsn) as conn:
        web = store.add_server(conn, ServerSpec(name="web", host="10.0.0.1", port=2222))
        assert store.upsert_servers(conn, [ServerSpec(name="web", host="10.0.0.9"), ServerSpec(name="db", host="h")]
                                    ) == (1, 1)
        assert [(s.name, s.host, s.port, s.enabled) for s in store.list_servers(conn)] == [
            ("db", "h", 22, True), ("web", "10.0.0.9", 22, True)]
        assert store.set_server_enabled(conn, "db", False) and not store.set_server_enabled(conn, "nope", True)
        assert store.host_keys(conn, "web") == store.HostKeys(server_id=web, pinned=None, presented=None)
        assert store.host_keys(conn, "nope") is None
        store.pin_host_key(conn, web, "ssh-ed25519 AAAA")
        assert store.host_keys(conn, "web").pinned == "ssh-ed25519 AAAA"

        alert = store.raise_alert(conn, "web", "disk_full", message="/var 97%", source="test")
        anomaly = store.raise_anomaly(conn, "web", "cpu_spike")
        assert store.raise_alert(conn, "nope", "disk_full") is None
        [active] = store.list_alerts(conn)
        assert (active.id, active.name, active.kind, active.message, active.source, active.resolved_at) == (
            alert, "web", "disk_full", "/var 97%", "test", None)
        assert [a.kind for a in store.list_anomalies(conn)] == ["cpu_spike"]
        assert store.resolve_alert(conn, alert) and not store.resolve_alert(conn, alert)
        assert anomaly is not None and store.resolve_anomaly(conn, anomaly)
        assert store.list_alerts(conn) == [] and len(store.list_alerts(conn, include_resolved=True)) == 1

        assert store.remove_server(conn, "web") and not store.remove_server(conn, "web")


def test_should_read_cycles_and_the_status_report_as_records(heartbeat_dsn: str):
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    with store.connect(heartbeat_dsn) as conn:
        assert store.last_cycle(conn) is None
        store.start_cycle(conn, "c1", T0)
        store.record_results(conn, "c1", [ok(web, T0, name="web")])
        counts = store.materialise_status(conn, T0 + timedelta(seconds=1), 60)
        store.finish_cycle(conn, "c1", T0, T0 + timedelta(seconds=1), counts)
        [row] = store.status_report(conn, T0 + timedelta(seconds=1), StatusRules(stale_after_s=60))
        last = store.last_cycle(conn)
        assert store.get_cycle(conn, "c1") == last and store.get_cycle(conn, "c2") is None
    assert (row.server_name, row.status, row.heartbeat_age_s, row.total_ms) == ("web", "ONLINE", 1.0, 11.5)
    assert last == store.CycleRecord("c1", T0, T0 + timedelta(seconds=1), 1, 1, 0, 1, 0, 0)
