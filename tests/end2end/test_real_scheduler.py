"""The real Airflow components (api-server, scheduler with LocalExecutor, dag-processor, triggerer)
run the DAG on its 30-second schedule against the test PostgreSQL and the test sshd fleet."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pytest
from support import add_servers, dump, query

from heartbeat_lab import PostgresServer, SshdFleet, free_port
from heartbeat_lab.airflow_env import airflow_environment, migrate_metadata
from heartbeat_lab.airflow_procs import AirflowProcesses, metadata_dsn, unpause_dag, wait_for_dag

pytestmark = pytest.mark.timeout(300)

DAG_ID = "ssh_heartbeat"
CYCLE_S = 30
MAX_START_GAP_S = 35
MAX_RUN_S = 30
OFFLINE_AFTER_S = 60  # the default of HEARTBEAT_OFFLINE_AFTER_S, deliberately kept
SLACK_S = 10
FIRST_CYCLE_TIMEOUT_S = 120

T = TypeVar("T")


@pytest.fixture
def inventory(heartbeat_dsn: str, fleet: SshdFleet) -> list[str]:
    """The test fleet in the inventory before Airflow starts, so that the first cycle sees all of it."""
    names = [f"node-{i}" for i in range(len(fleet))]
    add_servers(heartbeat_dsn, [{"name": n, "host": s.host, "port": s.port} for n, s in zip(names, fleet, strict=True)])
    return names


@pytest.fixture
def airflow(tmp_path: Path, postgres: PostgresServer, heartbeat_env: dict[str, str],
            inventory: list[str]) -> Iterator[AirflowProcesses]:
    """The four components against a metadata database of their own (not dag.test()'s airflow_meta)."""
    database = f"airflow_scheduler_{os.getpid()}"
    postgres.drop_database(database)
    postgres.create_database(database)
    env = airflow_environment(
        tmp_path / "airflow_home",
        f"postgresql+psycopg://postgres@{postgres.host}:{postgres.port}/{database}",
        heartbeat_db_json=heartbeat_env["AIRFLOW_CONN_HEARTBEAT_DB"],
        ssh_conn_json=heartbeat_env["AIRFLOW_CONN_HEARTBEAT_SSH"],
        api_port=free_port(),
        extra={"AIRFLOW__CORE__PARALLELISM": "4"},
    )
    migrate_metadata(env)
    procs = AirflowProcesses(env, tmp_path / "logs")
    try:
        procs.start()
        yield procs
    finally:
        started = procs.pids()
        procs.stop()
        assert not [pid for pid in started if running(pid)], "Airflow processes survived stop()"
        postgres.drop_database(database)


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(what: str, probe: Callable[[], T | None], timeout_s: float, context: Callable[[], str]) -> T:
    """Poll ``probe`` every second until it returns something truthy; fail with ``context()`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s\n{context()}")


def statuses(dsn: str) -> dict[str, dict]:
    rows = query(dsn, "SELECT s.name, st.status, st.reason FROM servers s JOIN server_status st ON st.server_id = s.id")
    return {r["name"]: r for r in rows}


def dag_runs(procs: AirflowProcesses) -> list[dict]:
    return query(metadata_dsn(procs.env), "SELECT run_id, run_type, state, start_date, end_date FROM dag_run "
                                          "WHERE dag_id = %s ORDER BY start_date", (DAG_ID,))


def diagnostics(procs: AirflowProcesses, dsn: str) -> Callable[[], str]:
    def describe() -> str:
        runs = [(r["run_id"], r["state"], str(r["start_date"]), str(r["end_date"])) for r in dag_runs(procs)]
        logs = {name: procs.log_path(name).read_text(errors="replace")[-2000:] for name in ("scheduler", "api-server")}
        return f"status: {dump(statuses(dsn))}\nruns: {dump(runs)}\nlogs: {dump(logs)}"

    return describe


def spacing(runs: list[dict]) -> tuple[list[float], list[float]]:
    """(seconds between consecutive starts, seconds each run took)."""
    starts: list[datetime] = [r["start_date"] for r in runs]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    took = [(r["end_date"] - r["start_date"]).total_seconds() for r in runs]
    return gaps, took


def test_should_run_every_30_s_and_follow_a_server_going_offline_and_back_online(
    airflow: AirflowProcesses, heartbeat_dsn: str, fleet: SshdFleet, inventory: list[str]
):
    names = inventory
    victim_name, victim = names[1], fleet[1]
    context = diagnostics(airflow, heartbeat_dsn)

    wait_for_dag(airflow.env, DAG_ID, procs=airflow)
    unpause_dag(airflow.env, DAG_ID)  # a no-op for a DAG created unpaused; shows the helper works
    wait_until("every server ONLINE after the first cycle",
               lambda: (s := statuses(heartbeat_dsn)) and all(s.get(n, {}).get("status") == "ONLINE" for n in names),
               FIRST_CYCLE_TIMEOUT_S, context)
    first_cycle_done = datetime.now().astimezone()

    victim.stop()
    stopped, stopped_at = time.monotonic(), datetime.now().astimezone()
    try:
        offline = wait_until(f"{victim_name} OFFLINE after its sshd stopped",
                             lambda: (r := statuses(heartbeat_dsn)[victim_name])["status"] == "OFFLINE" and r,
                             OFFLINE_AFTER_S + 2 * CYCLE_S + SLACK_S, context)
        offline_after = time.monotonic() - stopped
    finally:
        victim.start()
    restarted = time.monotonic()
    wait_until(f"{victim_name} ONLINE again after its sshd restarted",
               lambda: statuses(heartbeat_dsn)[victim_name]["status"] == "ONLINE",
               2 * CYCLE_S + SLACK_S, context)
    online_after = time.monotonic() - restarted

    assert offline["reason"].startswith("no heartbeat for "), offline
    assert offline["reason"].endswith("; last attempt: connection refused"), offline
    assert offline_after >= OFFLINE_AFTER_S - CYCLE_S, f"OFFLINE after only {offline_after:.0f} s"
    events = query(heartbeat_dsn, "SELECT e.from_status, e.to_status FROM status_events e JOIN servers s "
                                  "ON s.id = e.server_id WHERE s.name = %s AND e.at >= %s ORDER BY e.id",
                   (victim_name, stopped_at))
    assert [(e["from_status"], e["to_status"]) for e in events] == [("ONLINE", "OFFLINE"), ("OFFLINE", "ONLINE")]
    assert all(s["status"] == "ONLINE" for n, s in statuses(heartbeat_dsn).items() if n != victim_name)

    def steady_runs() -> list[dict]:
        runs = [r for r in dag_runs(airflow) if r["run_type"] == "scheduled" and r["end_date"] is not None
                and r["start_date"] >= first_cycle_done]
        return runs if len(runs) >= 3 else []

    runs = wait_until("three finished runs after the first cycle", steady_runs, CYCLE_S + SLACK_S, context)
    gaps, took = spacing(runs)
    print(f"OFFLINE {offline_after:.0f} s after stop, ONLINE {online_after:.0f} s after start; "
          f"run start gaps {[round(g, 1) for g in gaps]} s, durations {[round(t, 1) for t in took]} s")
    assert all(r["state"] == "success" for r in runs), context()
    assert max(gaps) <= MAX_START_GAP_S, context()
    assert max(took) <= MAX_RUN_S, context()
