"""Least privilege: the DAG's database role can run a whole cycle and nothing more."""

from __future__ import annotations

import psycopg
import pytest
from support import add_servers

from heartbeat import cycle, store
from heartbeat.config import Settings
from heartbeat_lab import SshdFleet

pytestmark = pytest.mark.integration


def login_role(postgres, name: str, group: str) -> None:
    with postgres.connect() as admin:
        admin.execute(f"DROP ROLE IF EXISTS {name}")
        admin.execute(f"CREATE ROLE {name} LOGIN IN ROLE {group}")


def dsn_as(heartbeat_dsn: str, role: str) -> str:
    return heartbeat_dsn.replace("postgres@", f"{role}@", 1)


def test_should_run_a_whole_cycle_as_the_pipeline_role(postgres, heartbeat_env, heartbeat_dsn, fleet: SshdFleet):
    login_role(postgres, "dag_login", "heartbeat_pipeline")
    web = fleet.servers[0]
    add_servers(heartbeat_dsn, [{"name": "web", "host": web.host, "port": web.port},
                                {"name": "bad", "host": "bad_host!"}])
    dsn = dsn_as(heartbeat_dsn, "dag_login")
    settings = Settings(probe_timeout_s=3, connect_timeout_s=2)
    now = cycle.utc_now()
    shards = cycle.load_shards(settings, "c1", now, dsn=dsn)
    summary = cycle.probe_shard(settings, "c1", shards[0], dsn=dsn)
    counts = cycle.materialise(settings, "c1", cycle.utc_now(), dsn=dsn)
    assert (summary.ok, counts["online"], counts["offline"]) == (1, 1, 1)
    with store.connect(heartbeat_dsn) as conn:
        assert conn.execute("SELECT host_key FROM servers WHERE name = 'web'").fetchone()["host_key"]  # pinned


@pytest.mark.parametrize("statement", [
    "DELETE FROM servers",
    "INSERT INTO servers (name, host) VALUES ('evil', '10.9.9.9')",
    "UPDATE servers SET host = '10.9.9.9'",
    "UPDATE servers SET enabled = false",
    "DROP TABLE servers",
    "TRUNCATE probe_history",
    "ALTER TABLE servers ADD COLUMN x int",
    "CREATE TABLE mine (x int)",
    "UPDATE alerts SET resolved_at = now()",
    "DELETE FROM status_events",
], ids=lambda s: s.split(" (")[0][:40])
def test_should_refuse_the_pipeline_role_anything_else(postgres, heartbeat_dsn, statement):
    login_role(postgres, "dag_login2", "heartbeat_pipeline")
    with psycopg.connect(dsn_as(heartbeat_dsn, "dag_login2")) as conn, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_should_let_dashboards_read_and_other_systems_only_raise_inputs(postgres, heartbeat_dsn):
    login_role(postgres, "grafana_login", "heartbeat_reader")
    login_role(postgres, "alertmanager_login", "heartbeat_inputs")
    add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])
    with psycopg.connect(dsn_as(heartbeat_dsn, "grafana_login")) as conn:
        conn.execute("SELECT * FROM server_status_live").fetchall()
        conn.execute("SELECT * FROM monitor_health").fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO alerts (server_id, kind) SELECT id, 'x' FROM servers")
    with psycopg.connect(dsn_as(heartbeat_dsn, "alertmanager_login")) as conn:
        alert_id = conn.execute("INSERT INTO alerts (server_id, kind, source) SELECT id, 'disk_full', 'am' "
                                "FROM servers WHERE name = 'web' RETURNING id").fetchone()[0]
        conn.execute("UPDATE alerts SET resolved_at = now() WHERE id = %s", (alert_id,))
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE servers SET host = '10.6.6.6'")


def test_should_let_the_fleet_page_login_acknowledge_and_escalate_and_nothing_more(postgres, heartbeat_dsn):
    """The api-server's heartbeat_db login in a least-privilege deployment is a member of
    heartbeat_reader and heartbeat_inputs: the page's acknowledge and escalate actions must work
    with that and nothing else (the browser test's api-server logs in as the owner)."""
    from datetime import UTC, datetime, timedelta

    from heartbeat import notify
    from heartbeat.models import ProbeResult

    login_role(postgres, "page_login", "heartbeat_reader, heartbeat_inputs")
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    t0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    with store.connect(heartbeat_dsn) as conn:  # the pipeline's part, as the owner
        for at, ok in ((t0, True), (t0 + timedelta(seconds=120), False)):
            store.record_results(conn, f"c{at.timestamp()}", [ProbeResult(
                server_id=web, server_name="web-01", ok=ok, attempted_at=at, error_class=None if ok else "refused",
                message="", total_ms=5.0)])
            store.materialise_status(conn, at, 60.0)

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name, self.sent = name, []

        def send(self, notification) -> None:
            self.sent.append(notification)

    oncall, pager = Recorder("oncall"), Recorder("pager")
    settings = notify.NotifySettings(notify_after_s=0, escalation_channels="pager")
    with store.connect(heartbeat_dsn) as conn:
        notify.notify_changes(conn, [oncall], settings, t0 + timedelta(seconds=130))
    assert [n.kind for n in oncall.sent] == ["offline"]

    with store.connect(dsn_as(heartbeat_dsn, "page_login")) as conn:
        store.acknowledge(conn, server_name="web-01", by="erin", reason="on it", as_of=t0 + timedelta(seconds=140))
        counts = notify.escalate_now(conn, [oncall, pager], settings, t0 + timedelta(seconds=150), by="frank",
                                     server_name="web-01")
        assert counts["sent"] == 1 and [n.kind for n in pager.sent] == ["escalation"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE servers SET host = '10.6.6.6'")
