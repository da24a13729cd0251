"""The dashboard views and the Grafana dashboard against a real PostgreSQL, with a status history
built here and its figures worked out by hand; and the SQL contract for alerts and anomalies."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import add_servers, query

from heartbeat import store
from heartbeat.models import ProbeResult

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "include" / "grafana" / "heartbeat-dashboard.json"
T0 = datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC)
H = 3600.0


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def add_events(conn, server_id: int, changes: list[tuple[datetime, str]]) -> None:
    previous = None
    for at, status in changes:
        conn.execute("INSERT INTO status_events (server_id, from_status, to_status, at, reason) "
                     "VALUES (%s, %s, %s, %s, 'test')", (server_id, previous, status, at))
        previous = status


def add_maintenance(conn, server_id: int, starts_at: datetime, ends_at: datetime) -> None:
    conn.execute("INSERT INTO maintenance_windows (server_id, starts_at, ends_at, reason) VALUES (%s, %s, %s, 'work')",
                 (server_id, starts_at, ends_at))


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_should_compute_uptime_from_status_changes_leaving_maintenance_out(heartbeat_dsn: str):
    ids = add_servers(heartbeat_dsn, [{"name": n, "host": "10.0.0.1"} for n in ("steady", "late", "planned", "new")]
                      + [{"name": "disabled", "host": "10.0.0.2", "enabled": False}])
    with store.connect(heartbeat_dsn) as conn:
        # up all day except one hour OFFLINE; WARNING counts as up; a change after the window is ignored
        add_events(conn, ids["steady"], [(T0 - hours(1), "ONLINE"), (T0 + hours(2), "OFFLINE"),
                                         (T0 + hours(3), "ONLINE"), (T0 + hours(10), "WARNING"),
                                         (T0 + hours(12), "ONLINE"), (T0 + hours(25), "OFFLINE")])
        # first seen at noon: only the 12 h observed count, 6 of them up
        add_events(conn, ids["late"], [(T0 + hours(12), "ONLINE"), (T0 + hours(18), "OFFLINE")])
        # an outage inside two overlapping maintenance windows (5 h to 9 h): not held against it
        add_events(conn, ids["planned"], [(T0 - timedelta(days=2), "ONLINE"), (T0 + hours(6), "OFFLINE"),
                                          (T0 + hours(8), "ONLINE")])
        add_maintenance(conn, ids["planned"], T0 + hours(5), T0 + hours(8))
        add_maintenance(conn, ids["planned"], T0 + hours(7), T0 + hours(9))
        add_maintenance(conn, ids["planned"], T0 - hours(30), T0 - hours(28))  # before the window: no effect
        add_events(conn, ids["disabled"], [(T0, "OFFLINE")])
        conn.commit()

    rows = {r["server_name"]: r for r in query(heartbeat_dsn, "SELECT * FROM heartbeat_uptime(%s, %s)",
                                               (T0, T0 + hours(24)))}

    assert set(rows) == {"steady", "late", "planned", "new"}
    assert (rows["steady"]["up_s"], rows["steady"]["observed_s"]) == (23 * H, 24 * H)
    assert rows["steady"]["uptime_pct"] == pytest.approx(100 * 23 / 24)
    assert (rows["late"]["up_s"], rows["late"]["observed_s"], rows["late"]["uptime_pct"]) == (6 * H, 12 * H, 50.0)
    assert rows["planned"] == {**rows["planned"], "up_s": 20 * H, "observed_s": 20 * H, "maintenance_s": 4 * H,
                               "uptime_pct": 100.0}
    assert (rows["new"]["observed_s"], rows["new"]["uptime_pct"]) == (0, None)


def test_should_give_uptime_windows_latency_and_status_for_now_in_the_views(heartbeat_dsn: str):
    ids = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}, {"name": "db", "host": "10.0.0.2"},
                                      {"name": "fresh", "host": "10.0.0.3"}])
    web, db = ids["web"], ids["db"]
    latencies = [float(ms) for ms in range(1, 101)]
    # one transaction: now() stays the same for the inserts and the views
    with store.connect(heartbeat_dsn) as conn:
        now = conn.execute("SELECT now() AS now").fetchone()["now"]
        add_events(conn, web, [(now - timedelta(days=31), "ONLINE"), (now - hours(2), "OFFLINE"),
                               (now - hours(1), "ONLINE")])
        add_events(conn, db, [(now - hours(48), "ONLINE"), (now - hours(3), "OFFLINE")])
        add_maintenance(conn, db, now - hours(3), now + hours(1))
        for i, ms in enumerate(latencies):
            conn.execute("INSERT INTO probe_history (server_id, cycle_id, attempted_at, ok, total_ms) "
                         "VALUES (%s, %s, %s, true, %s)", (web, f"c{i}", now - timedelta(seconds=30 * (i + 1)), ms))
        conn.execute("INSERT INTO probe_history (server_id, cycle_id, attempted_at, ok, error_class, total_ms) "
                     "VALUES (%s, 'fail', %s, false, 'timeout', 10000)", (web, now - timedelta(minutes=5, seconds=7)))
        conn.execute("INSERT INTO probe_history (server_id, cycle_id, attempted_at, ok, total_ms) "
                     "VALUES (%s, 'old', %s, true, 5000)", (web, now - hours(2)))
        conn.execute("INSERT INTO heartbeats (server_id, last_success_at, last_attempt_at, last_cycle_id, last_ok, "
                     "total_ms) VALUES (%s, %s, %s, 'c0', true, 12.5)", (web, now - timedelta(seconds=20),
                                                                         now - timedelta(seconds=20)))
        conn.execute("INSERT INTO cycles (cycle_id, started_at, finished_at, servers, ok, failed) "
                     "VALUES ('c0', %s, %s, 3, 1, 2)", (now - timedelta(seconds=32), now - timedelta(seconds=20)))
        uptime = {r["server_name"]: r for r in conn.execute("SELECT * FROM server_uptime").fetchall()}
        latency = {r["server_name"]: r for r in conn.execute("SELECT * FROM server_latency_1h").fetchall()}
        status = {r["server_name"]: r for r in conn.execute("SELECT * FROM dashboard_server_status").fetchall()}
        summary = conn.execute("SELECT * FROM dashboard_fleet_summary").fetchone()
        changes = conn.execute("SELECT server_name, to_status, in_maintenance FROM recent_status_changes "
                               "ORDER BY at").fetchall()
        conn.rollback()

    assert uptime["web"]["uptime_24h_pct"] == pytest.approx(100 * 23 / 24)
    assert uptime["web"]["uptime_7d_pct"] == pytest.approx(100 * (7 * 24 - 1) / (7 * 24))
    assert uptime["web"]["uptime_30d_pct"] == pytest.approx(100 * (30 * 24 - 1) / (30 * 24))
    # db went OFFLINE when its maintenance began: still 100 %, the 3 h are left out
    assert uptime["db"]["uptime_24h_pct"] == 100.0
    assert uptime["db"]["observed_24h_s"] == 21 * H and uptime["db"]["maintenance_24h_s"] == 3 * H
    assert uptime["db"]["observed_7d_s"] == 45 * H
    assert uptime["fresh"]["uptime_24h_pct"] is None

    assert latency["web"]["attempts"] == 101 and latency["web"]["successes"] == 100
    for column, fraction in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        assert latency["web"][column] == pytest.approx(percentile_cont(latencies, fraction)), column
    assert (latency["web"]["max_ms"], latency["web"]["avg_ms"]) == (100.0, pytest.approx(50.5))
    assert latency["db"]["attempts"] == 0 and latency["db"]["p50_ms"] is None

    assert status["web"]["status"] == "ONLINE" and status["web"]["status_since"] == now - hours(1)
    assert status["web"]["last_latency_ms"] == 12.5 and not status["web"]["in_maintenance"]
    assert status["db"]["status"] == "OFFLINE" and status["db"]["status_since"] == now - hours(3)
    assert status["db"]["in_maintenance"] and status["db"]["maintenance_until"] == now + hours(1)
    assert status["fresh"]["status"] == "OFFLINE" and status["fresh"]["status_since"] is None

    assert {k: summary[k] for k in ("online", "warning", "offline", "stale", "total", "in_maintenance")} == {
        "online": 1, "warning": 0, "offline": 2, "stale": 0, "total": 3, "in_maintenance": 1}
    assert (summary["stalled"], summary["health"], summary["stale_after_s"]) == (False, "ok", 60)
    assert summary["last_cycle_id"] == "c0"
    assert summary["last_cycle_duration_s"] == pytest.approx(12.0)
    assert summary["last_cycle_age_s"] == pytest.approx(20.0)

    assert [(c["server_name"], c["to_status"], c["in_maintenance"]) for c in changes] == [  # 7 days back
        ("db", "ONLINE", False), ("db", "OFFLINE", True), ("web", "OFFLINE", False), ("web", "ONLINE", False)]


def test_should_show_every_server_stale_when_the_monitor_has_stalled(heartbeat_dsn: str):
    add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}, {"name": "db", "host": "10.0.0.2"}])
    with store.connect(heartbeat_dsn) as conn:
        now = conn.execute("SELECT now() AS now").fetchone()["now"]
        conn.execute("INSERT INTO cycles (cycle_id, started_at, finished_at) VALUES ('c0', %s, %s)",
                     (now - timedelta(minutes=10, seconds=3), now - timedelta(minutes=10)))
        statuses = {r["server_name"]: r["status"] for r in conn.execute(
            "SELECT server_name, status FROM dashboard_server_status").fetchall()}
        summary = conn.execute("SELECT * FROM dashboard_fleet_summary").fetchone()
        conn.rollback()
    assert statuses == {"web": "STALE", "db": "STALE"}
    assert (summary["stale"], summary["total"], summary["stalled"]) == (2, 2, True)
    assert summary["health"].startswith("monitor stalled since ")
    assert summary["last_cycle_age_s"] == pytest.approx(600)


def test_should_give_the_same_reason_when_read_later_so_it_agrees_with_the_age_beside_it(heartbeat_dsn: str):
    """A row decided by the last cycle and read now: the age is the read's, and the reason holds no
    age of its own to contradict it (the Fleet page ticks the age between refreshes as well)."""
    ids = add_servers(heartbeat_dsn, [{"name": n, "host": "10.0.0.1"} for n in ("web", "busy", "down")])
    with store.connect(heartbeat_dsn) as conn:
        now = conn.execute("SELECT now() AS now").fetchone()["now"]
        heartbeat_at, cycle_at = now - timedelta(seconds=29), now - timedelta(seconds=24)
        store.record_results(conn, "c1", [
            ProbeResult(server_id=ids["web"], server_name="web", ok=True, attempted_at=heartbeat_at, total_ms=9.0),
            ProbeResult(server_id=ids["busy"], server_name="busy", ok=True, attempted_at=heartbeat_at, total_ms=9.0),
            ProbeResult(server_id=ids["down"], server_name="down", ok=False, attempted_at=heartbeat_at,
                        error_class="timeout", message="TCP connect timed out")])
        conn.execute("INSERT INTO alerts (server_id, kind) VALUES (%s, 'disk_full')", (ids["busy"],))
        conn.execute("INSERT INTO cycles (cycle_id, started_at, finished_at) VALUES ('c1', %s, %s)",
                     (heartbeat_at, cycle_at))
        conn.commit()
        store.materialise_status(conn, cycle_at, 60)
        decided = {r["server_name"]: r for r in conn.execute(
            "SELECT s.name AS server_name, d.status, d.reason, d.heartbeat_age_s FROM server_status d "
            "JOIN servers s ON s.id = d.server_id").fetchall()}
        live = {r["server_name"]: r for r in conn.execute(
            "SELECT server_name, status, reason, heartbeat_age_s FROM dashboard_server_status").fetchall()}
        conn.rollback()
    assert {n: (r["status"], r["reason"]) for n, r in live.items()} == {
        "web": ("ONLINE", "heartbeat within 60 s"),
        "busy": ("WARNING", "heartbeat within 60 s; 1 active alert"),
        "down": ("OFFLINE", "no heartbeat yet; last attempt: timed out")}
    assert {n: (r["status"], r["reason"]) for n, r in decided.items()} == {
        n: (r["status"], r["reason"]) for n, r in live.items()}
    assert decided["web"]["heartbeat_age_s"] == pytest.approx(5.0)
    assert live["web"]["heartbeat_age_s"] >= 29.0


def test_should_turn_warning_on_the_next_cycle_with_the_documented_sql_and_back(heartbeat_dsn: str):
    """The SQL contract for other systems, exactly as the README gives it."""
    ids = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])
    web = ids["web-01"]

    def cycle(at: datetime) -> str:
        with store.connect(heartbeat_dsn) as conn:
            store.record_results(conn, f"c{at.timestamp()}", [ProbeResult(
                server_id=web, server_name="web-01", ok=True, attempted_at=at, total_ms=9.0)])
            store.materialise_status(conn, at, 60)
        return query(heartbeat_dsn, "SELECT status FROM server_status")[0]["status"]

    assert cycle(T0) == "ONLINE"
    [alert] = query(heartbeat_dsn, "INSERT INTO alerts (server_id, kind, message, source) "
                                   "SELECT id, 'disk_full', '/var at 97%%', 'prometheus' FROM servers "
                                   "WHERE name = 'web-01' RETURNING id")
    [anomaly] = query(heartbeat_dsn, "INSERT INTO anomalies (server_id, kind, description, source) "
                                     "SELECT id, 'cpu_spike', 'load 40', 'ml' FROM servers "
                                     "WHERE name = 'web-01' RETURNING id")
    assert cycle(T0 + timedelta(seconds=30)) == "WARNING"
    reason = query(heartbeat_dsn, "SELECT reason FROM server_status")[0]["reason"]
    assert reason.endswith("1 active alert, 1 active anomaly")
    query(heartbeat_dsn, "UPDATE alerts SET resolved_at = now() WHERE id = %s RETURNING id", (alert["id"],))
    assert cycle(T0 + timedelta(seconds=60)) == "WARNING"  # the anomaly is still active
    query(heartbeat_dsn, "UPDATE anomalies SET resolved_at = now() WHERE id = %s RETURNING id", (anomaly["id"],))
    assert cycle(T0 + timedelta(seconds=90)) == "ONLINE"
    events = query(heartbeat_dsn, "SELECT from_status, to_status FROM status_events ORDER BY id")
    assert [(e["from_status"], e["to_status"]) for e in events] == [
        (None, "ONLINE"), ("ONLINE", "WARNING"), ("WARNING", "ONLINE")]


# --- the Grafana dashboard ------------------------------------------------------------------------

DASHBOARD_VIEWS = {"dashboard_server_status", "dashboard_fleet_summary", "server_uptime", "server_latency_1h",
                   "recent_status_changes", "probe_latency", "maintenance_active", "server_status_live",
                   "fleet_summary", "open_incidents"}


def grafana_sql(raw: str) -> str:
    """Expand the Grafana macros and variables the dashboard uses, as Grafana would for a 6 h range."""
    text = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN now() - interval '6 hours' AND now()", raw)
    text = text.replace("$__timeFrom()", "now() - interval '6 hours'").replace("$__timeTo()", "now()")
    text = text.replace("$server", "'web', 'db'")
    assert "$" not in text, f"unexpanded Grafana macro in: {raw}"
    return text


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    found = [(p["title"], t["rawSql"]) for p in dashboard["panels"] for t in p["targets"]]
    found += [(f"annotation {a['name']}", a["target"]["rawSql"])
              for a in dashboard["annotations"]["list"] if "target" in a]
    found += [(f"variable {v['name']}", v["query"]) for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def test_should_ship_a_grafana_dashboard_with_the_keys_grafana_needs():
    dashboard = json.loads(GRAFANA.read_text())
    assert {"uid", "title", "schemaVersion", "panels", "templating", "time"} <= set(dashboard)
    assert dashboard["uid"] == "ssh-heartbeat-fleet" and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "grafana-postgresql-datasource"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    for panel in dashboard["panels"]:
        assert {"id", "type", "title", "gridPos", "datasource", "targets"} <= set(panel), panel["title"]
        assert panel["datasource"] == {"type": "grafana-postgresql-datasource", "uid": "${datasource}"}
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel["targets"]:
            assert target["rawQuery"] and target["format"] in ("table", "time_series"), panel["title"]
            used = {name for name in DASHBOARD_VIEWS if re.search(rf"\b{name}\b", target["rawSql"])}
            assert used, f"panel {panel['title']!r} reads none of the dashboard views"


def test_should_run_every_grafana_query_against_the_schema(heartbeat_dsn: str):
    ids = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}, {"name": "db", "host": "10.0.0.2"}])
    with store.connect(heartbeat_dsn) as conn:
        now = conn.execute("SELECT now() AS now").fetchone()["now"]
        add_events(conn, ids["web"], [(now - hours(3), "ONLINE")])
        conn.execute("INSERT INTO probe_history (server_id, cycle_id, attempted_at, ok, total_ms) "
                     "VALUES (%s, 'c1', %s, true, 11)", (ids["web"], now - hours(1)))
        conn.commit()
    queries = dashboard_queries(json.loads(GRAFANA.read_text()))
    assert len(queries) >= 12
    with store.connect(heartbeat_dsn) as conn:
        for title, raw in queries:
            try:
                rows = conn.execute(grafana_sql(raw)).fetchall()
            except Exception as exc:
                pytest.fail(f"Grafana query of {title!r} fails: {exc}\n{raw}")
            conn.rollback()
            if title in ("Servers", "Uptime (maintenance left out)", "Login latency, last hour"):
                assert len(rows) == 2, title
            if title == "Login latency":
                assert [r["value"] for r in rows] == [11.0]
