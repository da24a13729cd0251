"""A single monitoring host (``make demo`` / ``make up``: one PostgreSQL for Airflow's metadata and
the heartbeats, Airflow's components beside it) survives a database restart: PostgreSQL stopped
for a minute, then started again.

While PostgreSQL is down nothing can be read or recorded, and the scheduler, the dag-processor
and the triggerer exit; the demo restarts them (printing each restart) and carries on. What the
outage leaves behind is decided by the status rules: the read-time status (``heartbeat status``,
``server_status_live``) turns STALE once no cycle has finished for ``stale_after_s`` (60 s), so
right after PostgreSQL returns every server reads STALE with its last known status, not OFFLINE;
the recorded history (``status_events``) holds no OFFLINE flip for a server that was up; and the
statuses are back within two cycles of the return.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from support import dump, query
from test_demo import EXPECTED, STATUSES_WITHIN_S, STOP_WITHIN_S, SUMMARY, processes_of, running_demo

from heartbeat_lab import PostgresServer
from heartbeat_lab.airflow_procs import RestartPolicy

pytestmark = [pytest.mark.end2end]

OUTAGE_S = 60.0
RECOVERY_WITHIN_S = 60.0  # two cycles of 30 s
POSTGRES_STOP_WITHIN_S = 20.0
EXIT_AFTER_S = 560  # the demo ends by itself even if this test dies
RESTART_LINE = re.compile(r"^\d\d:\d\d:\d\d  airflow (?P<name>scheduler|dag-processor|triggerer) (?P<how>.+) "
                          r"\(up \d+ (s|min)\); restarting in \d+ s \(restart (?P<n>\d+)\)$")
POSTGRES_GONE_LINE = re.compile(r"  PostgreSQL (was shut down \(exit 0\)|exited with code \d+); "
                                r"the demo does not restart it")
STALE_SUMMARY = re.compile(r"15 servers: 0 ONLINE, 0 WARNING, 0 OFFLINE, 15 STALE")
UP = {name for name, (status, _) in EXPECTED.items() if status != "OFFLINE"}


@pytest.mark.parametrize(("in_a_row", "delay_s"), [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (40, 30)],
                         ids=lambda v: str(v))
def test_should_double_the_restart_delay_up_to_thirty_seconds(in_a_row, delay_s):
    assert RestartPolicy().delay_s(in_a_row) == delay_s


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return None if state == "Z" else pid


def stop_postgres(data_dir: Path) -> None:
    """A fast shutdown, as ``pg_ctl stop`` does; bounded."""
    pid = postmaster_pid(data_dir)
    assert pid is not None, f"no PostgreSQL running on {data_dir}"
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + POSTGRES_STOP_WITHIN_S
    while postmaster_pid(data_dir) is not None:
        assert time.monotonic() < deadline, f"PostgreSQL (pid {pid}) still runs after SIGINT"
        time.sleep(0.2)


@pytest.mark.timeout(STATUSES_WITHIN_S + OUTAGE_S + RECOVERY_WITHIN_S + 2 * STOP_WITHIN_S + 60)
def test_should_resume_by_itself_after_a_database_restart_and_show_the_outage_as_stale():
    with running_demo(EXIT_AFTER_S) as (proc, output, state):
        output.wait_for(SUMMARY, STATUSES_WITHIN_S, proc)
        port = json.loads((state / "demo.json").read_text())["postgres_port"]
        dsn = f"postgresql://postgres@127.0.0.1:{port}/heartbeat"
        data_dir = state / "postgres"

        before = query(dsn, "SELECT now() AS now, max(finished_at) AS last_cycle FROM cycles")[0]
        stop_postgres(data_dir)
        stopped = time.monotonic()
        output.wait_for(POSTGRES_GONE_LINE, 10, proc, after=stopped - 1)
        output.wait_for(RESTART_LINE, OUTAGE_S - 10, proc, after=stopped - 1)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        assert proc.poll() is None, f"the demo ended during the outage:\n{output.text()[-5000:]}"

        postgres = PostgresServer(data_dir, port=port)  # the demo does not restart its PostgreSQL: the test does
        try:
            postgres.start()
            returned = time.monotonic()
            print(f"PostgreSQL down for {returned - stopped:.0f} s")

            # Right after the return, before any new cycle: every server reads STALE, none OFFLINE.
            live = query(dsn, "SELECT server_name, status, reason, (SELECT max(finished_at) FROM cycles) AS last_cycle "
                              "FROM server_status_live")
            assert all(r["last_cycle"] <= before["now"] + timedelta(seconds=2) for r in live), (
                "a cycle finished after the return, before the read: " + dump(live))
            assert {r["server_name"]: r["status"] for r in live} == dict.fromkeys(EXPECTED, "STALE"), dump(live)
            assert all(r["reason"].startswith("monitor stalled since ") for r in live), dump(live)
            output.wait_for(STALE_SUMMARY, 15, proc, after=stopped)

            # Statuses resume by themselves within two cycles.
            resumed = output.wait_for(SUMMARY, RECOVERY_WITHIN_S, proc, after=returned)
            print(f"statuses resumed {resumed - returned:.0f} s after PostgreSQL returned")
            after = query(dsn, "SELECT s.name, st.status FROM servers s JOIN server_status_live st "
                               "ON st.server_id = s.id")
            assert {r["name"]: r["status"] for r in after} == {n: s for n, (s, _) in EXPECTED.items()}, dump(after)
            cycles = query(dsn, "SELECT cycle_id, finished_at FROM cycles WHERE finished_at > %(since)s",
                           {"since": before["now"]})
            assert cycles, "no cycle finished after the outage"

            # The history: no server that was up flipped to OFFLINE over the outage.
            flips = query(dsn, "SELECT s.name, e.from_status, e.to_status, e.at, e.reason FROM status_events e "
                               "JOIN servers s ON s.id = e.server_id WHERE e.at > %(since)s ORDER BY e.at",
                          {"since": before["now"]})
            assert not [f for f in flips if f["name"] in UP and f["to_status"] == "OFFLINE"], dump(flips)

            restarts = [m for m in map(RESTART_LINE.search, output.lines[:]) if m]
            assert "scheduler" in {m.group("name") for m in restarts}, output.text()[-5000:]
            print(f"{len(restarts)} restarts printed, the scheduler's:",
                  *[m.group(0) for m in restarts if m.group("name") == "scheduler"], sep="\n  ")

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=STOP_WITHIN_S) == 0, output.text()[-5000:]
        finally:
            postgres.stop()
        assert not processes_of(state), "processes of the demo left after SIGTERM"
