"""Process faults under the real scheduler: a probe task killed with SIGKILL, and the scheduler
stopped for five minutes. Both play out in real time: the scheduler's clock is the subject."""

from __future__ import annotations

import itertools
import os
import signal
import time
from datetime import datetime, timedelta

import pytest
from support import add_servers, query
from test_real_scheduler import (  # the real-scheduler fixtures and helpers
    CYCLE_S,
    DAG_ID,
    FIRST_CYCLE_TIMEOUT_S,
    SLACK_S,
    airflow,  # noqa: F401 - a fixture
    dag_runs,
    diagnostics,
    inventory,  # noqa: F401 - a fixture
    statuses,
    wait_until,
)

from heartbeat_lab import SilentPeer
from heartbeat_lab.airflow_procs import AirflowProcesses, metadata_dsn, wait_for_dag

OUTAGE_S = 300


@pytest.fixture
def silent_server(heartbeat_dsn, inventory):  # noqa: F811 - the fixture above
    """A server that never answers: every probe task then runs for the full probe timeout."""
    with SilentPeer() as peer:
        add_servers(heartbeat_dsn, [{"name": "silent", "host": peer.host, "port": peer.port}])
        yield "silent"


def task_instances(procs: AirflowProcesses, run_id: str) -> dict[str, str]:
    rows = query(metadata_dsn(procs.env), "SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                 (DAG_ID, run_id))
    return {r["task_id"]: r["state"] for r in rows}


@pytest.mark.timeout(300)
def test_should_recover_on_the_next_cycle_after_a_probe_task_is_killed(
        silent_server, airflow: AirflowProcesses, heartbeat_dsn, inventory):  # noqa: F811
    context = diagnostics(airflow, heartbeat_dsn)
    wait_for_dag(airflow.env, DAG_ID, procs=airflow)
    meta = metadata_dsn(airflow.env)

    def running_probe():
        rows = query(meta, "SELECT run_id, pid FROM task_instance WHERE dag_id = %s AND task_id = 'probe_shard' "
                           "AND state = 'running' AND pid IS NOT NULL", (DAG_ID,))
        return rows[0] if rows else None

    victim = wait_until("a probe task running", running_probe, FIRST_CYCLE_TIMEOUT_S, context)
    os.kill(victim["pid"], signal.SIGKILL)
    killed_run = victim["run_id"]

    wait_until("the killed run finished", lambda: any(
        r["run_id"] == killed_run and r["end_date"] for r in dag_runs(airflow)), 2 * CYCLE_S + SLACK_S, context)
    states = task_instances(airflow, killed_run)
    assert states["probe_shard"] in ("failed", "up_for_retry", "upstream_failed"), states
    assert states["materialise_and_notify"] == "success", states  # still materialised: all_done
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM probe_history WHERE cycle_id = %s",
                 (killed_run,))[0]["n"] == 0  # nothing half-written

    def next_good_run():
        later = [r for r in dag_runs(airflow) if r["start_date"] > victim_start and r["state"] == "success"]
        return later[0] if later else None

    victim_start = next(r["start_date"] for r in dag_runs(airflow) if r["run_id"] == killed_run)
    good = wait_until("a successful run after the kill", next_good_run, 2 * CYCLE_S + 2 * SLACK_S, context)
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM probe_history WHERE cycle_id = %s",
                 (good["run_id"],))[0]["n"] == len(inventory) + 1
    current = statuses(heartbeat_dsn)
    assert all(current[n]["status"] == "ONLINE" for n in inventory), context()
    assert current["silent"]["status"] == "OFFLINE"
    assert query(meta, "SELECT is_paused FROM dag WHERE dag_id = %s", (DAG_ID,))[0]["is_paused"] is False


@pytest.mark.timeout(OUTAGE_S + 300)
def test_should_resume_the_cadence_without_a_burst_after_the_scheduler_was_down_five_minutes(
        airflow: AirflowProcesses, heartbeat_dsn, inventory):  # noqa: F811
    context = diagnostics(airflow, heartbeat_dsn)
    wait_for_dag(airflow.env, DAG_ID, procs=airflow)
    wait_until("a first finished run", lambda: [r for r in dag_runs(airflow) if r["end_date"]],
               FIRST_CYCLE_TIMEOUT_S, context)

    airflow.stop_component("scheduler")
    down_at = datetime.now().astimezone()
    time.sleep(OUTAGE_S)  # the outage itself: real time is what the scheduler sees
    airflow.start_component("scheduler")
    up_at = datetime.now().astimezone()

    def runs_after_restart():
        runs = query(metadata_dsn(airflow.env),
                     "SELECT run_id, state, run_after, start_date, end_date FROM dag_run WHERE dag_id = %s "
                     "AND run_after > %s AND end_date IS NOT NULL ORDER BY run_after", (DAG_ID, down_at))
        return runs if len(runs) >= 3 else None

    runs = wait_until("three runs after the restart", runs_after_restart, 4 * CYCLE_S + 3 * SLACK_S, context)
    due = [r["run_after"] for r in runs]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(due)]
    print(f"after a {OUTAGE_S} s outage: first run due {(due[0] - up_at).total_seconds():.0f} s after the restart, "
          f"started {(runs[0]['start_date'] - up_at).total_seconds():.0f} s after; then due every "
          f"{[round(g, 1) for g in gaps]} s")
    # No catch-up: the five minutes without a scheduler produce no runs at all, not ten late ones;
    # the first run is due when the scheduler is back, and the cadence is 30 s again from there.
    assert not [r for r in runs if r["run_after"] < up_at - timedelta(seconds=CYCLE_S)], context()
    assert due[0] - up_at < timedelta(seconds=CYCLE_S + 2 * SLACK_S), context()
    assert min(gaps) >= CYCLE_S - 1, f"a burst of catch-up runs: due every {gaps}\n{context()}"
    assert all(r["state"] == "success" for r in runs), context()
    assert all(s["status"] == "ONLINE" for s in statuses(heartbeat_dsn).values()), context()
