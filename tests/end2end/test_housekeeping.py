"""Housekeeping for 2,880 runs a day: each kind of growth is pruned by the system itself."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import add_servers, query

from heartbeat import store
from heartbeat.housekeeping import prune_task_logs
from heartbeat.models import ProbeResult

pytestmark = pytest.mark.end2end

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def touch(path: Path, age: timedelta, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = (NOW - age).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def test_should_prune_only_log_files_older_than_retention(tmp_path: Path):
    old = touch(tmp_path / "dag_id=ssh_heartbeat/run_id=old/task_id=probe_shard/attempt=1.log", timedelta(days=4))
    fresh = touch(tmp_path / "dag_id=ssh_heartbeat/run_id=new/task_id=probe_shard/attempt=1.log", timedelta(hours=1))
    outside = touch(tmp_path.parent / "outside.log", timedelta(days=30))
    (tmp_path / "link.log").symlink_to(outside)
    report = prune_task_logs(tmp_path, NOW - timedelta(days=3))
    assert (report.files_deleted, report.bytes_deleted) == (1, 10)
    assert not old.exists() and not old.parent.parent.exists()  # emptied folders go too
    assert fresh.exists() and outside.exists()


def test_should_clean_metadata_logs_and_history_from_the_housekeeping_dag(
        airflow_base_env, heartbeat_env, heartbeat_dsn, postgres):
    env = {**airflow_base_env, **heartbeat_env}
    meta = postgres.dsn("airflow_meta")

    def run_housekeeping() -> str:
        proc = subprocess.run([sys.executable, str(REPO / "dags" / "heartbeat_housekeeping.py")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        return proc.stdout + proc.stderr

    run_housekeeping()
    [first] = query(meta, "SELECT run_id FROM dag_run WHERE dag_id = 'heartbeat_housekeeping'")
    ten_days = timedelta(days=10)
    query(meta, "UPDATE dag_run SET start_date = start_date - %(d)s, end_date = end_date - %(d)s, "
                "queued_at = queued_at - %(d)s, logical_date = logical_date - %(d)s, run_after = run_after - %(d)s "
                "WHERE dag_id = 'heartbeat_housekeeping' RETURNING id", {"d": ten_days})
    query(meta, "UPDATE task_instance SET start_date = start_date - %(d)s, end_date = end_date - %(d)s "
                "WHERE dag_id = 'heartbeat_housekeeping' RETURNING id", {"d": ten_days})
    logs = Path(env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
    now = datetime.now(UTC)
    old_log = logs / "dag_id=ssh_heartbeat" / "run_id=ancient" / "attempt=1.log"
    old_log.parent.mkdir(parents=True, exist_ok=True)
    old_log.write_text("old")
    os.utime(old_log, ((now - ten_days).timestamp(),) * 2)
    web = add_servers(heartbeat_dsn, [{"name": "web", "host": "10.0.0.1"}])["web"]
    with store.connect(heartbeat_dsn) as conn:
        store.record_results(conn, "old", [ProbeResult(web, "web", True, now - ten_days)])
        store.record_results(conn, "new", [ProbeResult(web, "web", True, now)])

    output = run_housekeeping()

    runs = [r["run_id"] for r in query(meta, "SELECT run_id FROM dag_run WHERE dag_id = 'heartbeat_housekeeping'")]
    assert first["run_id"] not in runs and len(runs) == 1, output[-3000:]
    assert query(meta, "SELECT count(*) AS n FROM task_instance WHERE run_id = %s", (first["run_id"],))[0]["n"] == 0
    assert not old_log.exists()
    assert [r["cycle_id"] for r in query(heartbeat_dsn, "SELECT cycle_id FROM probe_history")] == ["new"]
