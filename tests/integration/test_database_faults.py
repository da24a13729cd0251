"""Database faults: PostgreSQL restarted in the middle of a cycle, or gone altogether."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest
from support import add_servers, query

from heartbeat import cycle, store
from heartbeat.config import Settings
from heartbeat_lab import SilentPeer, SshdFleet

pytestmark = pytest.mark.integration

SETTINGS = Settings(probe_timeout_s=3, connect_timeout_s=2)


def test_should_fail_a_cycle_cleanly_when_the_database_restarts_mid_write_and_recover_next_cycle(
        postgres, heartbeat_env, heartbeat_dsn, fleet: SshdFleet):
    web = fleet.servers[0]
    add_servers(heartbeat_dsn, [{"name": "web", "host": web.host, "port": web.port}])
    shards = cycle.load_shards(SETTINGS, "c1", cycle.utc_now())

    # Hold the results write inside its transaction while PostgreSQL restarts under it.
    original = store.record_results
    restarted = threading.Event()

    def record_during_restart(conn, cycle_id, results, *args, **kwargs):
        with conn.transaction():
            conn.execute("SELECT 1")
            threading.Thread(target=lambda: (postgres.restart(), restarted.set()), daemon=True).start()
            restarted.wait(60)
            original(conn, cycle_id, results, *args, **kwargs)

    store.record_results = record_during_restart
    try:
        with pytest.raises(psycopg.OperationalError):
            cycle.probe_shard(SETTINGS, "c1", shards[0])
    finally:
        store.record_results = original
    assert restarted.is_set() and postgres.is_running()
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM probe_history")[0]["n"] == 0  # nothing half-written
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM heartbeats")[0]["n"] == 0

    # The next cycle recovers by itself.
    now = cycle.utc_now()
    for shard in cycle.load_shards(SETTINGS, "c2", now):
        cycle.probe_shard(SETTINGS, "c2", shard)
    counts = cycle.materialise(SETTINGS, "c2", cycle.utc_now())
    assert counts["online"] == 1
    assert [r["cycle_id"] for r in query(heartbeat_dsn, "SELECT cycle_id FROM cycles WHERE finished_at IS NOT NULL")
            ] == ["c2"]


def test_should_survive_a_restart_while_probing(postgres, heartbeat_env, heartbeat_dsn, fleet: SshdFleet):
    """Probing holds no database connection: a restart during the logins costs nothing."""
    web = fleet.servers[1]
    with SilentPeer() as silent:
        add_servers(heartbeat_dsn, [{"name": "web", "host": web.host, "port": web.port},
                                    {"name": "silent", "host": silent.host, "port": silent.port}])
        [shard] = cycle.load_shards(SETTINGS, "c1", cycle.utc_now())
        restarter = threading.Timer(0.5, postgres.restart)
        restarter.start()
        started = time.monotonic()
        summary = cycle.probe_shard(SETTINGS, "c1", shard)
        restarter.join(60)
    assert time.monotonic() - started < SETTINGS.probe_timeout_s + 5
    assert (summary.probed, summary.ok, summary.by_error_class) == (2, 1, {"timeout": 1})
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM probe_history")[0]["n"] == 2


def test_should_say_which_connection_to_check_when_the_database_is_down(postgres, heartbeat_env, heartbeat_dsn):
    postgres.stop()
    try:
        with pytest.raises(psycopg.OperationalError, match="cannot reach the heartbeat database") as err:
            cycle.load_shards(SETTINGS, "c1", cycle.utc_now())
        assert "AIRFLOW_CONN_HEARTBEAT_DB" in str(err.value)
    finally:
        postgres.start()


def test_should_decide_nothing_from_a_cycle_whose_probes_recorded_no_attempt(
        postgres, heartbeat_env, heartbeat_dsn, fleet: SshdFleet):
    """Probe tasks that could not reach the database record nothing: the materialise step then
    leaves the last complete cycle's statuses (read STALE later), not a false OFFLINE fleet."""
    web = fleet.servers[0]
    add_servers(heartbeat_dsn, [{"name": "web", "host": web.host, "port": web.port}])
    [shard] = cycle.load_shards(SETTINGS, "c1", cycle.utc_now())
    cycle.probe_shard(SETTINGS, "c1", shard)
    assert cycle.materialise(SETTINGS, "c1", cycle.utc_now())["online"] == 1

    much_later = cycle.utc_now() + timedelta(minutes=10)  # the heartbeat is long stale by then
    with store.connect(heartbeat_dsn) as conn:
        store.start_cycle(conn, "c2", much_later)
    with pytest.raises(cycle.CycleRecordedNothing, match="recorded no probe attempt for 1 enabled servers"):
        cycle.materialise(SETTINGS, "c2", much_later)
    [row] = query(heartbeat_dsn, "SELECT status FROM server_status")
    assert row["status"] == "ONLINE"
    assert query(heartbeat_dsn, "SELECT finished_at FROM cycles WHERE cycle_id = 'c2'")[0]["finished_at"] is None
