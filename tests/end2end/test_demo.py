"""``python -m heartbeat_lab.demo`` for real, as ``make demo`` runs it: every status with its reason
within two minutes, each summary printed once, then Ctrl-C leaves no process behind, also when
the demo was started with SIGINT ignored."""

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
from pathlib import Path

import pytest
from support import dump, query

from heartbeat_lab import free_port

pytestmark = [pytest.mark.end2end, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
STATUSES_WITHIN_S = 120
STOP_WITHIN_S = 60
EXIT_AFTER_S = 230  # the demo ends by itself even if this test dies
SUMMARY = re.compile(r"15 servers: 10 ONLINE, 1 WARNING, 4 OFFLINE")
SUMMARY_LINE = re.compile(r"^\d\d:\d\d:\d\d  \d+ servers: .*\(last cycle finished (?P<cycle>[\d:]+)\)$")
CYCLE_FINISHED = re.compile(r"\(last cycle finished [\d:]+\)$")
CYCLE_S = 30

EXPECTED = {  # server -> (status, error class of the last attempt)
    **{f"web-{i:02d}": ("ONLINE", None) for i in range(1, 11)},
    "db-01": ("WARNING", None),
    "legacy-01": ("OFFLINE", "host_key_changed"),
    "batch-01": ("OFFLINE", "auth"),
    "mail-01": ("OFFLINE", "timeout"),
    "backup-01": ("OFFLINE", "refused"),
}


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
    with running_demo(ignore_sigint=True) as running:
        yield running


def ignored_signals(pid: int) -> int:
    """The bit mask of signals a process ignores (``SigIgn`` in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn line for pid {pid}")


def assert_stops_on_sigint(proc: subprocess.Popen[str], output: Output, state: Path) -> float:
    """SIGINT to the demo: it exits 0 and no process it started survives; returns the seconds taken."""
    started_processes = {pid: start_time(pid) for pid in descendants(proc.pid) | processes_of(state)}
    assert len(started_processes) > 20, "expected sshd, postgres and airflow processes"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=STOP_WITHIN_S)
    took = time.monotonic() - sent
    time.sleep(1.0)  # let the output thread drain

    assert code == 0, output.text()[-5000:]
    assert "Ctrl-C: stopping" in output.text() and "stopped in" in output.text()
    survivors = sorted(pid for pid, since in started_processes.items() if since and start_time(pid) == since)
    survivors += sorted(processes_of(state))
    assert not survivors, f"still running after Ctrl-C: {survivors}"
    return took


SIGINT_BIT = 1 << (signal.SIGINT - 1)


def test_should_pass_an_ignored_sigint_on_through_trap_as_a_script_would():
    inherited = subprocess.run(["bash", "-c", "trap '' INT; exec grep SigIgn /proc/self/status"],
                               capture_output=True, text=True, check=True, timeout=10).stdout
    assert int(inherited.split()[1], 16) & SIGINT_BIT, f"trap '' INT should pass SIG_IGN on: {inherited}"


def test_should_show_every_status_within_two_minutes_and_leave_nothing_behind_on_ctrl_c(demo):
    """The demo is started with SIGINT ignored by its parent (see the fixture): Ctrl-C still stops it."""
    proc, output, state = demo
    started = time.monotonic()

    seen = output.wait_for(SUMMARY, STATUSES_WITHIN_S, proc)
    print(f"demo: first full summary {seen - started:.0f} s after launch")
    dsn = f"postgresql://postgres@127.0.0.1:{json.loads((state / 'demo.json').read_text())['postgres_port']}/heartbeat"
    rows = query(dsn, "SELECT s.name, st.status, st.reason, h.last_error_class FROM servers s "
                      "JOIN server_status st ON st.server_id = s.id JOIN heartbeats h ON h.server_id = s.id")
    assert {r["name"]: (r["status"], r["last_error_class"]) for r in rows} == EXPECTED, dump(rows)
    reasons = {r["name"]: r["reason"] for r in rows}
    assert reasons["db-01"].endswith("; 1 active alert")
    assert reasons["backup-01"] == "no heartbeat yet; last attempt: connection refused"

    next_cycle = output.wait_for(CYCLE_FINISHED, CYCLE_S + 30, proc, after=seen)
    summaries = [line for line in output.lines[:] if SUMMARY_LINE.search(line)]
    assert len(summaries) == len({SUMMARY_LINE.search(line).group("cycle") for line in summaries}), (
        "a summary was printed twice for the same cycle and counts:\n" + "\n".join(summaries))
    print(f"demo: next cycle {next_cycle - seen:.0f} s later; {len(summaries)} summaries, one per cycle")

    assert not ignored_signals(proc.pid) & SIGINT_BIT, "the demo kept the inherited SIG_IGN for SIGINT"
    took = assert_stops_on_sigint(proc, output, state)
    print(f"demo (started with SIGINT ignored): stopped {took:.0f} s after Ctrl-C")
