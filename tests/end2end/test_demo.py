"""``python -m heartbeat_lab.demo`` for real, as ``make demo`` runs it, started once (start-up is
most of the cost) for one scenario in four phases, in this order:

1. every status with its reason within two minutes;
2. a database restart: the demo's PostgreSQL (Airflow's metadata and the heartbeats) stopped for a
   minute, then started again by the test (the demo does not restart its own PostgreSQL). While it
   is down nothing can be read or recorded, and the scheduler, the dag-processor and the triggerer
   exit; the demo restarts them (printing each restart) and carries on. What the outage leaves
   behind is decided by the status rules: the read-time status (``server_status_live``) turns
   STALE once no cycle has finished for ``stale_after_s`` (60 s), so right after PostgreSQL returns
   every server reads STALE, not OFFLINE; the recorded history (``status_events``) holds no OFFLINE
   flip for a server that was up; and the statuses are back within two cycles of the return;
3. each summary printed once, over the whole output (a cycle before the outage and after it);
4. Ctrl-C leaves no process behind, although the demo was started with SIGINT ignored.

The pure rule of the restart delay is checked in ``tests/unit/test_restart_policy.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from support import dump, query

from heartbeat_lab import PostgresServer, free_port

pytestmark = [pytest.mark.end2end]

REPO = Path(__file__).resolve().parents[2]
STATUSES_WITHIN_S = 120
OUTAGE_S = 60.0
RECOVERY_WITHIN_S = 60.0  # two cycles of 30 s
POSTGRES_STOP_WITHIN_S = 20.0
STOP_WITHIN_S = 60
EXIT_AFTER_S = 420  # the demo ends by itself even if this test dies (the test needs ~2 min, at most ~6 min)
TIMEOUT_S = EXIT_AFTER_S + STOP_WITHIN_S
SUMMARY = re.compile(r"15 servers: 10 ONLINE, 1 WARNING, 4 OFFLINE")
SUMMARY_LINE = re.compile(r"^\d\d:\d\d:\d\d  (?P<counts>\d+ servers: .*?)\s+\(last cycle finished (?P<cycle>[\d:]+)\)$")
STALE_SUMMARY = re.compile(r"15 servers: 0 ONLINE, 0 WARNING, 0 OFFLINE, 15 STALE")
RESTART_LINE = re.compile(r"^\d\d:\d\d:\d\d  airflow (?P<name>scheduler|dag-processor|triggerer) (?P<how>.+) "
                          r"\(up \d+ (s|min)\); restarting in \d+ s \(restart (?P<n>\d+)\)$")
POSTGRES_GONE_LINE = re.compile(r"  PostgreSQL (was shut down \(exit 0\)|exited with code \d+); "
                                r"the demo does not restart it")

EXPECTED = {  # server -> (status, error class of the last attempt)
    **{f"web-{i:02d}": ("ONLINE", None) for i in range(1, 11)},
    "db-01": ("WARNING", None),
    "legacy-01": ("OFFLINE", "host_key_changed"),
    "batch-01": ("OFFLINE", "auth"),
    "mail-01": ("OFFLINE", "timeout"),
    "backup-01": ("OFFLINE", "refused"),
}
UP = {name for name, (status, _) in EXPECTED.items() if status != "OFFLINE"}


class Output:
    """The demo's merged stdout and stderr, read by a thread so the pipe never fills."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.timed: list[tuple[float, str]] = []  # (monotonic time read, line)
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.timed.append((time.monotonic(), line.rstrip("\n")))
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float, proc: subprocess.Popen[str],
                 after: float | None = None) -> float:
        """Wait (bounded) for a line matching ``pattern`` (read after the monotonic time ``after``,
        if given); returns when it was seen."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(pattern.search(line) for seen, line in list(self.timed) if after is None or seen > after):
                return time.monotonic()
            assert proc.poll() is None, f"the demo exited with {proc.returncode}:\n{self.text()[-5000:]}"
            time.sleep(0.5)
        raise AssertionError(f"no {pattern.pattern!r} within {timeout_s} s:\n{self.text()[-5000:]}")


def mentions(pid: int, needle: str) -> bool:
    """Whether a live process's command line, environment or working directory names ``needle``."""
    base = Path(f"/proc/{pid}")
    try:
        if (base / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        blobs = [(base / "cmdline").read_bytes(), (base / "environ").read_bytes(), os.readlink(base / "cwd").encode()]
    except OSError:
        return False
    return any(needle.encode() in blob for blob in blobs)


def processes_of(state_dir: Path) -> set[int]:
    """Every process that belongs to the demo running on ``state_dir`` (sshd, postgres, airflow)."""
    own = os.getpid()
    return {int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and int(p.name) != own and mentions(int(p.name), str(state_dir))}


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            if entry.name.isdigit():
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        found.add(pid)
        stack.extend(children.get(pid, []))
    return found - {root}


def start_time(pid: int) -> int | None:
    """The start time of a live process (ticks since boot): a pid plus it names one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


@contextlib.contextmanager
def state_folder() -> Iterator[Path]:
    """A demo state folder outside pytest's temporary folder: another pytest session resets that
    folder's mode to 0700, which would lock the demo's PostgreSQL (user postgres) out of its data."""
    root = Path(tempfile.mkdtemp(prefix="heartbeat-demo-"))
    try:
        yield root / "state"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_demo(exit_after_s: float = EXIT_AFTER_S, *, ignore_sigint: bool = False
                 ) -> Iterator[tuple[subprocess.Popen[str], Output, Path]]:
    """The demo as ``make demo`` starts it, on its own state folder and a free UI port; whatever
    is left of it is killed at the end. ``ignore_sigint``: started from a shell that ignores
    SIGINT (``trap '' INT``), as a script or a service manager may do."""
    with state_folder() as state, _launched(state, exit_after_s, ignore_sigint) as running:
        yield running


@contextlib.contextmanager
def _launched(state: Path, exit_after_s: float, ignore_sigint: bool
              ) -> Iterator[tuple[subprocess.Popen[str], Output, Path]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "HEARTBEAT_"))}
    command = [sys.executable, "-m", "heartbeat_lab.demo", "--state-dir", str(state), "--port", str(free_port()),
               "--exit-after", str(exit_after_s)]
    if ignore_sigint:
        command = ["bash", "-c", f"trap '' INT; exec {shlex.join(command)}"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        yield proc, Output(proc), state
    finally:
        if proc.poll() is None:  # the test failed before its own Ctrl-C
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_WITHIN_S)
        for pid in processes_of(state) | ({proc.pid} if proc.poll() is None else set()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def demo() -> Iterator[tuple[subprocess.Popen[str], Output, Path]]:
    """Started from a shell that ignores SIGINT, so that the Ctrl-C at the end of the test also
    proves the demo does not keep the SIG_IGN it inherited."""
    with running_demo(EXIT_AFTER_S, ignore_sigint=True) as running:
        yield running


def ignored_signals(pid: int) -> int:
    """The bit mask of signals a process ignores (``SigIgn`` in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn line for pid {pid}")


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


def assert_every_status(dsn: str) -> None:
    rows = query(dsn, "SELECT s.name, st.status, st.reason, h.last_error_class FROM servers s "
                      "JOIN server_status st ON st.server_id = s.id JOIN heartbeats h ON h.server_id = s.id")
    assert {r["name"]: (r["status"], r["last_error_class"]) for r in rows} == EXPECTED, dump(rows)
    reasons = {r["name"]: r["reason"] for r in rows}
    assert reasons["db-01"].endswith("; 1 active alert")
    assert reasons["backup-01"] == "no heartbeat yet; last attempt: connection refused"


def outage(proc: subprocess.Popen[str], output: Output, data_dir: Path) -> float:
    """Stop the demo's PostgreSQL for ``OUTAGE_S``; the demo says so and restarts Airflow's
    components that exit meanwhile. Returns when PostgreSQL was stopped."""
    stop_postgres(data_dir)
    stopped = time.monotonic()
    output.wait_for(POSTGRES_GONE_LINE, 10, proc, after=stopped - 1)
    output.wait_for(RESTART_LINE, OUTAGE_S - 10, proc, after=stopped - 1)
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
    assert proc.poll() is None, f"the demo ended during the outage:\n{output.text()[-5000:]}"
    return stopped


def assert_stale_right_after_the_return(dsn: str, before: dict) -> None:
    """Before any new cycle: every server reads STALE with the stall as its reason, none OFFLINE."""
    live = query(dsn, "SELECT server_name, status, reason, (SELECT max(finished_at) FROM cycles) AS last_cycle "
                      "FROM server_status_live")
    assert all(r["last_cycle"] <= before["now"] + timedelta(seconds=2) for r in live), (
        "a cycle finished after the return, before the read: " + dump(live))
    assert {r["server_name"]: r["status"] for r in live} == dict.fromkeys(EXPECTED, "STALE"), dump(live)
    assert all(r["reason"].startswith("monitor stalled since ") for r in live), dump(live)


def assert_resumed_without_an_offline_flip(dsn: str, before: dict, output: Output) -> None:
    after = query(dsn, "SELECT s.name, st.status FROM servers s JOIN server_status_live st ON st.server_id = s.id")
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


def assert_each_summary_once(output: Output) -> int:
    """Over the whole output: no summary printed twice for the same cycle and counts (the demo
    prints one per cycle, and one more when the counts change within a cycle, as when the
    statuses turn STALE in the outage); returns the number of cycles summarised, at least the one
    before the outage and one after."""
    summaries = [m for m in map(SUMMARY_LINE.search, output.lines[:]) if m]
    keys = [(m.group("cycle"), m.group("counts")) for m in summaries]
    assert len(keys) == len(set(keys)), (
        "a summary was printed twice for the same cycle and counts:\n" + "\n".join(m.group(0) for m in summaries))
    cycles = len({cycle for cycle, _ in keys})
    assert cycles >= 2, "expected summaries of at least two cycles:\n" + "\n".join(m.group(0) for m in summaries)
    return cycles


def assert_stops_on_sigint(proc: subprocess.Popen[str], output: Output, state: Path,
                           spare_postmaster: int | None = None) -> float:
    """SIGINT to the demo: it exits 0 and no process it started survives; returns the seconds taken.
    ``spare_postmaster``: a PostgreSQL the test started on the demo's data (the demo does not
    restart its own); it and its children are the test's to stop, not the demo's."""

    def spared() -> set[int]:
        return set() if spare_postmaster is None else {spare_postmaster} | descendants(spare_postmaster)

    started_processes = {pid: start_time(pid) for pid in (descendants(proc.pid) | processes_of(state)) - spared()}
    assert len(started_processes) > 20, "expected sshd, postgres and airflow processes"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=STOP_WITHIN_S)
    took = time.monotonic() - sent
    time.sleep(1.0)  # let the output thread drain

    assert code == 0, output.text()[-5000:]
    assert "Ctrl-C: stopping" in output.text() and "stopped in" in output.text()
    survivors = sorted(pid for pid, since in started_processes.items() if since and start_time(pid) == since)
    survivors += sorted(processes_of(state) - spared())
    assert not survivors, f"still running after Ctrl-C: {survivors}"
    return took


SIGINT_BIT = 1 << (signal.SIGINT - 1)


def test_should_pass_an_ignored_sigint_on_through_trap_as_a_script_would():
    inherited = subprocess.run(["bash", "-c", "trap '' INT; exec grep SigIgn /proc/self/status"],
                               capture_output=True, text=True, check=True, timeout=10).stdout
    assert int(inherited.split()[1], 16) & SIGINT_BIT, f"trap '' INT should pass SIG_IGN on: {inherited}"


@pytest.mark.timeout(TIMEOUT_S)
def test_should_show_every_status_survive_a_database_restart_and_leave_nothing_behind_on_ctrl_c(demo):
    """One demo run, the four phases of the module docstring in order. The demo is started with
    SIGINT ignored by its parent (see the fixture): Ctrl-C still stops it."""
    proc, output, state = demo
    started = time.monotonic()

    # 1. Every status with its reason within two minutes.
    seen = output.wait_for(SUMMARY, STATUSES_WITHIN_S, proc)
    print(f"demo: first full summary {seen - started:.0f} s after launch")
    port = json.loads((state / "demo.json").read_text())["postgres_port"]
    dsn = f"postgresql://postgres@127.0.0.1:{port}/heartbeat"
    assert_every_status(dsn)

    # 2. A database restart: PostgreSQL down for a minute, then started again by the test.
    before = query(dsn, "SELECT now() AS now, max(finished_at) AS last_cycle FROM cycles")[0]
    stopped = outage(proc, output, state / "postgres")
    postgres = PostgresServer(state / "postgres", port=port)  # the demo does not restart its PostgreSQL
    try:
        postgres.start()
        returned = time.monotonic()
        print(f"PostgreSQL down for {returned - stopped:.0f} s")
        assert_stale_right_after_the_return(dsn, before)
        output.wait_for(STALE_SUMMARY, 15, proc, after=stopped)
        resumed = output.wait_for(SUMMARY, RECOVERY_WITHIN_S, proc, after=returned)
        print(f"statuses resumed {resumed - returned:.0f} s after PostgreSQL returned")
        assert_resumed_without_an_offline_flip(dsn, before, output)

        # 3. Each summary printed once, over the whole output (the cycles before and after the outage).
        cycles = assert_each_summary_once(output)
        print(f"demo: {cycles} cycles summarised, each summary once")

        # 4. Ctrl-C: exit 0, nothing left behind but the PostgreSQL the test started.
        assert not ignored_signals(proc.pid) & SIGINT_BIT, "the demo kept the inherited SIG_IGN for SIGINT"
        took = assert_stops_on_sigint(proc, output, state, spare_postmaster=postgres.pid)
        print(f"demo (started with SIGINT ignored): stopped {took:.0f} s after Ctrl-C")
    finally:
        postgres.stop()
    assert not processes_of(state), "processes left on the demo's state folder after stopping its PostgreSQL"
