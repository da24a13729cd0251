"""The real Airflow components (api-server, scheduler with LocalExecutor, dag-processor, triggerer)
run the DAG on its 30-second schedule against the test PostgreSQL and the test sshd fleet: the
cadence and a server going offline and back, then two process faults, which play out in real time
(the scheduler's clock is the subject): the scheduler stopped for three cycles, and a probe task
killed with SIGKILL.

One timeline in one test, as the phases overlap to spare real time: the cadence is measured on the
runs while the stopped server goes OFFLINE; its sshd is started again and a server that never
answers is added during the scheduler's outage; the first runs after the restart then show no
catch-up, the cadence resumed and the server ONLINE again, and one of them has the silent server's
probe task killed, which the next cycle recovers from. Each phase is asserted as soon as it is
over, and the fleet, the scheduler and the inventory are restored whatever happens."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict
from support import add_servers, dump, new_heartbeat_database, query, wait_until

from heartbeat_lab import KeyPair, PostgresServer, SilentPeer, SshdFleet, free_port
from heartbeat_lab.airflow_env import (
    airflow_environment,
    migrate_metadata,
    postgres_connection_json,
    ssh_connection_json,
)
from heartbeat_lab.airflow_procs import AirflowProcesses, metadata_dsn, unpause_dag, wait_for_dag

pytestmark = pytest.mark.timeout(300)

DAG_ID = "ssh_heartbeat"
CYCLE_S = 30
MAX_START_GAP_S = 35
MAX_RUN_S = 30
OFFLINE_AFTER_S = 60  # the default of HEARTBEAT_OFFLINE_AFTER_S, deliberately kept
SLACK_S = 10
FIRST_CYCLE_TIMEOUT_S = 120
# The rule under test: no catch-up (catchup=False). While the scheduler is down the dag-processor
# keeps re-parsing the DAG (every 30 s) and moves the next run to "now"; so after a restart the
# first run is due at most about a cycle before it, and the cycles missed meanwhile are never run.
# A catch-up would instead replay every missed slot, the first due within one cycle after the stop,
# so the outage must last over two cycles for that slot to fall more than a cycle before the
# restart, where no run may be due. Three cycles leave one cycle of margin; longer proves nothing more.
OUTAGE_S = 3 * CYCLE_S
# Stopping Airflow at the end: the scheduler would wait for its LocalExecutor workers; nothing is
# asserted about a graceful stop here (the leak check below still holds), so the trees are killed sooner.
STOP_GRACE_S = 3.0



@pytest.fixture(scope="module")
def heartbeat_dsn(postgres: PostgresServer) -> str:
    """The heartbeat database of this module's Airflow (replaces the per-test one)."""
    return new_heartbeat_database(postgres)


@pytest.fixture(scope="module")
def inventory(heartbeat_dsn: str, fleet: SshdFleet) -> list[str]:
    """The test fleet in the inventory before Airflow starts, so that the first cycle sees all of it."""
    names = [f"node-{i}" for i in range(len(fleet))]
    add_servers(heartbeat_dsn, [{"name": n, "host": s.host, "port": s.port} for n, s in zip(names, fleet, strict=True)])
    return names


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, client_key: KeyPair,
            heartbeat_dsn: str, inventory: list[str]) -> Iterator[AirflowProcesses]:
    """The four components against a metadata database of their own (not dag.test()'s airflow_meta)."""
    database = f"airflow_scheduler_{os.getpid()}"
    postgres.drop_database(database)
    postgres.create_database(database)
    home = tmp_path_factory.mktemp("airflow_scheduler")
    heartbeat_database = str(conninfo_to_dict(heartbeat_dsn)["dbname"])
    env = airflow_environment(
        home / "airflow_home",
        f"postgresql+psycopg://postgres@{postgres.host}:{postgres.port}/{database}",
        heartbeat_db_json=postgres_connection_json(postgres.host, postgres.port, heartbeat_database),
        ssh_conn_json=ssh_connection_json("root", client_key.private_path),
        api_port=free_port(),
        # one server per probe task: a killed task then takes only its own server's attempt with it
        extra={"AIRFLOW__CORE__PARALLELISM": "4", "HEARTBEAT_SHARD_SIZE": "1"},
    )
    migrate_metadata(env)
    procs = AirflowProcesses(env, home / "logs")
    try:
        procs.start()
        yield procs
    finally:
        started = procs.pids()
        procs.stop(timeout_s=STOP_GRACE_S)
        assert not [pid for pid in started if running(pid)], "Airflow processes survived stop()"
        postgres.drop_database(database)


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False




def statuses(dsn: str) -> dict[str, dict]:
    rows = query(dsn, "SELECT s.name, st.status, st.reason FROM servers s JOIN server_status st ON st.server_id = s.id")
    return {r["name"]: r for r in rows}


def dag_runs(procs: AirflowProcesses) -> list[dict]:
    return query(metadata_dsn(procs.env), "SELECT run_id, run_type, state, start_date, end_date FROM dag_run "
                                          "WHERE dag_id = %s ORDER BY start_date", (DAG_ID,))


def task_instances(procs: AirflowProcesses, run_id: str) -> dict[str, str]:
    """State by task, mapped instances as ``task[map_index]``."""
    rows = query(metadata_dsn(procs.env), "SELECT task_id, map_index, state FROM task_instance "
                                          "WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id))
    return {r["task_id"] + (f"[{r['map_index']}]" if r["map_index"] >= 0 else ""): r["state"] for r in rows}


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


@pytest.mark.timeout(OUTAGE_S + 420)
def test_should_run_every_30_s_follow_a_server_offline_and_back_and_recover_from_a_scheduler_outage_and_a_killed_probe(
    airflow: AirflowProcesses, heartbeat_dsn: str, fleet: SshdFleet, inventory: list[str]
):
    """One timeline, three phases, each asserted as soon as it is over:

    1. scheduler running: the first cycle, then a server's sshd stopped until it reads OFFLINE;
       the runs meanwhile show the 30-s cadence;
    2. the scheduler stopped for ``OUTAGE_S``; meanwhile the sshd is started again and a server
       that never answers is added (its probe task runs for the full probe timeout);
    3. scheduler back: the first runs after the restart show no catch-up and the cadence resumed,
       the server ONLINE again on the first of them; the silent server's probe task is killed
       with SIGKILL in the first of them, and the next cycle recovers."""
    names = inventory
    victim_name, victim = names[1], fleet[1]
    context = diagnostics(airflow, heartbeat_dsn)
    meta = metadata_dsn(airflow.env)
    scheduler_down = silent_added = False
    with SilentPeer() as silent:
        try:
            # -- phase 1: the cadence, and a server going OFFLINE -----------------------------------
            print(f"\nphase 1: the first cycle, then {victim_name}'s sshd stopped until it reads OFFLINE")
            wait_for_dag(airflow.env, DAG_ID, procs=airflow)
            unpause_dag(airflow.env, DAG_ID)  # a no-op for a DAG created unpaused; shows the helper works
            wait_until("every server ONLINE after the first cycle",
                       lambda: (s := statuses(heartbeat_dsn)) and all(
                           s.get(n, {}).get("status") == "ONLINE" for n in names),
                       FIRST_CYCLE_TIMEOUT_S, context)
            first_cycle_done = datetime.now().astimezone()

            victim.stop()
            stopped, stopped_at = time.monotonic(), datetime.now().astimezone()
            offline = wait_until(f"{victim_name} OFFLINE after its sshd stopped",
                                 lambda: (r := statuses(heartbeat_dsn)[victim_name])["status"] == "OFFLINE" and r,
                                 OFFLINE_AFTER_S + 2 * CYCLE_S + SLACK_S, context)
            offline_after = time.monotonic() - stopped
            assert offline["reason"].startswith("no heartbeat for "), offline
            assert offline["reason"].endswith("; last attempt: connection refused"), offline
            assert offline_after >= OFFLINE_AFTER_S - CYCLE_S, f"OFFLINE after only {offline_after:.0f} s"
            assert all(s["status"] == "ONLINE" for n, s in statuses(heartbeat_dsn).items()
                       if n in names and n != victim_name)

            def steady_runs() -> list[dict]:
                """The runs since the first cycle, once none is in flight (the OFFLINE one finished)."""
                runs = dag_runs(airflow)
                steady = [r for r in runs if r["run_type"] == "scheduled" and r["start_date"] is not None
                          and r["start_date"] >= first_cycle_done]
                return steady if len(steady) >= 2 and all(r["end_date"] for r in runs) else []

            before = wait_until("two finished runs after the first cycle, none in flight", steady_runs,
                                CYCLE_S + SLACK_S, context)
            gaps, took = spacing(before)
            print(f"OFFLINE {offline_after:.0f} s after the stop; run start gaps {[round(g, 1) for g in gaps]} s, "
                  f"durations {[round(t, 1) for t in took]} s")
            assert all(r["state"] == "success" for r in before), context()
            assert max(gaps) <= MAX_START_GAP_S, context()
            assert max(took) <= MAX_RUN_S, context()

            # -- phase 2: the scheduler down for three cycles -----------------------------------------
            print(f"phase 2: the scheduler stopped for {OUTAGE_S} s; meanwhile {victim_name}'s sshd started "
                  "again and a server that never answers added")
            airflow.stop_component("scheduler")
            scheduler_down, down = True, time.monotonic()
            down_at = datetime.now().astimezone()
            victim.start()
            add_servers(heartbeat_dsn, [{"name": "silent", "host": silent.host, "port": silent.port}])
            silent_added, silent_added_at = True, datetime.now().astimezone()
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))  # the outage: the scheduler's real time
            airflow.start_component("scheduler")
            scheduler_down = False
            up_at = datetime.now().astimezone()

            # -- phase 3: back, and a probe task killed -----------------------------------------------
            print("phase 3: the scheduler back; the silent server's probe task killed with SIGKILL")

            def running_probe():
                """The silent server's probe task (it runs for the full probe timeout) in a run that
                started after the server was added: one server per task in inventory order, so the last."""
                rows = query(meta, "SELECT ti.run_id, ti.map_index, ti.pid FROM task_instance ti JOIN dag_run r "
                                   "ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id WHERE ti.dag_id = %s "
                                   "AND ti.task_id = 'probe_shard' AND ti.map_index = %s AND ti.state = 'running' "
                                   "AND ti.pid IS NOT NULL AND r.start_date > %s",
                             (DAG_ID, len(inventory), silent_added_at))
                return rows[0] if rows else None

            task = wait_until("the silent server's probe task running", running_probe, FIRST_CYCLE_TIMEOUT_S, context)
            os.kill(task["pid"], signal.SIGKILL)
            killed_run, killed = task["run_id"], f"probe_shard[{task['map_index']}]"

            wait_until("the killed run finished", lambda: any(
                r["run_id"] == killed_run and r["end_date"] for r in dag_runs(airflow)), 2 * CYCLE_S + SLACK_S,
                context)
            states = task_instances(airflow, killed_run)
            assert states.pop(killed) in ("failed", "up_for_retry"), states
            assert states.pop("materialise_and_notify") == "success", states  # still materialised: all_done
            assert set(states.values()) == {"success"}, states  # the other probe tasks and load_inventory
            recorded = query(heartbeat_dsn, "SELECT s.name FROM probe_history h JOIN servers s "
                                            "ON s.id = h.server_id WHERE h.cycle_id = %s", (killed_run,))
            assert sorted(r["name"] for r in recorded) == sorted(names)  # the killed task wrote nothing

            killed_start = next(r["start_date"] for r in dag_runs(airflow) if r["run_id"] == killed_run)

            def next_good_run():
                later = [r for r in dag_runs(airflow)
                         if r["state"] == "success" and r["start_date"] and r["start_date"] > killed_start]
                return later[0] if later else None

            good = wait_until("a successful run after the kill", next_good_run, 2 * CYCLE_S + 2 * SLACK_S, context)
            assert query(heartbeat_dsn, "SELECT count(*) AS n FROM probe_history WHERE cycle_id = %s",
                         (good["run_id"],))[0]["n"] == len(names) + 1

            def runs_after_restart():
                runs = query(meta, "SELECT run_id, state, run_after, start_date, end_date FROM dag_run "
                                   "WHERE dag_id = %s AND run_after > %s AND end_date IS NOT NULL ORDER BY run_after",
                             (DAG_ID, down_at))
                return runs[:2] if len(runs) >= 2 else None

            # Two runs: the first after the restart, and the one after it, whose spacing would show a burst.
            runs = wait_until("two runs after the restart", runs_after_restart, CYCLE_S + SLACK_S, context)
            due = [r["run_after"] for r in runs]
            due_gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(due)]
            start_gaps, took = spacing(runs)
            print(f"after a {OUTAGE_S} s outage: first run due {(due[0] - up_at).total_seconds():.0f} s after the "
                  f"restart, started {(runs[0]['start_date'] - up_at).total_seconds():.0f} s after; then due every "
                  f"{[round(g, 1) for g in due_gaps]} s, started every {[round(g, 1) for g in start_gaps]} s; "
                  f"killed {killed} in {killed_run}, next good run {good['run_id']}")
            # No catch-up: the three cycles without a scheduler produce no runs at all, not three late ones;
            # the first run is due when the scheduler is back, and the cadence is 30 s again from there.
            assert not [r for r in runs if r["run_after"] < up_at - timedelta(seconds=CYCLE_S)], context()
            assert due[0] - up_at < timedelta(seconds=CYCLE_S + 2 * SLACK_S), context()
            assert min(due_gaps) >= CYCLE_S - 1, f"a burst of catch-up runs: due every {due_gaps}\n{context()}"
            assert max(start_gaps) <= MAX_START_GAP_S, context()
            assert all(r["state"] == "success" for r in runs), context()

            # The server is back ONLINE on the first cycle after the restart (its sshd was up meanwhile).
            first_attempt = query(heartbeat_dsn, "SELECT h.ok FROM probe_history h JOIN servers s "
                                                 "ON s.id = h.server_id WHERE s.name = %s AND h.cycle_id = %s",
                                  (victim_name, runs[0]["run_id"]))
            assert first_attempt == [{"ok": True}], first_attempt
            events = query(heartbeat_dsn, "SELECT e.from_status, e.to_status FROM status_events e JOIN servers s "
                                          "ON s.id = e.server_id WHERE s.name = %s AND e.at >= %s ORDER BY e.id",
                           (victim_name, stopped_at))
            assert [(e["from_status"], e["to_status"]) for e in events] == [("ONLINE", "OFFLINE"),
                                                                            ("OFFLINE", "ONLINE")]
            current = statuses(heartbeat_dsn)
            assert all(current[n]["status"] == "ONLINE" for n in names), context()
            assert current["silent"]["status"] == "OFFLINE"
            assert query(meta, "SELECT is_paused FROM dag WHERE dag_id = %s", (DAG_ID,))[0]["is_paused"] is False
        finally:
            victim.start()  # a no-op when it runs
            if scheduler_down:
                airflow.start_component("scheduler")
            if silent_added:
                query(heartbeat_dsn, "UPDATE servers SET enabled = false WHERE name = 'silent' RETURNING id")
