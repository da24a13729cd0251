"""CPU time of process trees, read from /proc, and a sampler that can be asked afterwards how much
CPU a tree used between two wall-clock instants.

A tree's counter is the sum, over its live members, of utime + stime + cutime + cstime. When a
member exits and its parent reaps it, its CPU moves from its own fields into the parent's
cutime/cstime, so the sum keeps growing across short-lived processes (Airflow task processes,
sshd's per-connection children) without counting anything twice. What a reparented orphan uses
after its parent died is lost; none of the trees measured here does that while measured.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcRow:
    ppid: int
    cpu_s: float  # utime + stime + cutime + cstime


def proc_table() -> dict[int, ProcRow]:
    """pid -> (ppid, CPU seconds including reaped children) for every process in /proc."""
    table: dict[int, ProcRow] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the command: state ppid pgrp ... utime(12) stime(13) cutime(14) cstime(15)
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        table[int(entry.name)] = ProcRow(int(fields[1]), ticks / CLOCK_TICKS)
    return table


def children_map(table: Mapping[int, ProcRow]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for pid, row in table.items():
        children.setdefault(row.ppid, []).append(pid)
    return children


def tree_pids(table: Mapping[int, ProcRow], roots: set[int], children: Mapping[int, list[int]] | None = None
              ) -> set[int]:
    """``roots`` and all their live descendants."""
    children = children_map(table) if children is None else children
    seen: set[int] = set()
    stack = [pid for pid in roots if pid in table]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(children.get(pid, ()))
    return seen


def tree_cpu(table: Mapping[int, ProcRow], roots: set[int], children: Mapping[int, list[int]] | None = None
             ) -> tuple[float, int]:
    """(CPU seconds, process count) of ``roots`` and all their live descendants."""
    members = tree_pids(table, roots, children)
    return sum(table[pid].cpu_s for pid in members), len(members)


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat), for "everyone else"."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


@dataclass
class _Series:
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def at(self, when: float) -> float | None:
        """The counter at ``when``, linearly interpolated between samples."""
        if not self.times or when < self.times[0] or when > self.times[-1]:
            return None
        i = bisect.bisect_left(self.times, when)
        if self.times[i] == when or i == 0:
            return self.values[i]
        t0, t1 = self.times[i - 1], self.times[i]
        v0, v1 = self.values[i - 1], self.values[i]
        return v0 + (v1 - v0) * (when - t0) / (t1 - t0)


class CpuSampler:
    """Samples the CPU counters of named process trees (and of the whole machine) every
    ``interval_s`` in a background thread, keeping at most ``max_samples`` of each.

    :param groups: name -> a callable returning the tree's root pids (re-read at every sample, so
        a restarted component is followed).
    :param interval_s: a sample reads /proc/PID/stat of every process (about 350 while 3,000
        servers are probed: about 15 ms of CPU); every 0.5 s that is 3 % of a core taken from
        the machine under test, every 0.2 s it was about 6 %. Counters between samples are
        interpolated; the windows measured are 1-30 s long.
    """

    def __init__(self, groups: Mapping[str, Callable[[], set[int]]], interval_s: float = 0.5,
                 max_samples: int = 20_000) -> None:
        self._groups = dict(groups)
        self._interval_s = interval_s
        self._max = max_samples
        self._series: dict[str, _Series] = {name: _Series() for name in [*self._groups, "bench", "machine", "procs"]}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_roots: dict[str, dict[int, float]] = {}
        self._retired: dict[str, float] = {}
        self._high: dict[str, float] = {}

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def sample(self) -> None:
        now = time.time()
        table = proc_table()
        children = children_map(table)
        values: dict[str, float] = {}
        count = 0
        for name, roots_of in self._groups.items():
            try:
                roots = roots_of()
            except Exception:  # a group without processes yet (or any more)
                roots = set()
            per_root: dict[int, float] = {}
            for root in roots:
                cpu, members = tree_cpu(table, {root}, children)
                if members:
                    per_root[root] = cpu
                    count += members
            values[name] = self._counter(name, per_root)
        own = os.times()
        values["bench"] = own.user + own.system
        values["machine"] = machine_busy_s()
        values["procs"] = float(count)
        with self._lock:
            for name, value in values.items():
                series = self._series[name]
                series.times.append(now)
                series.values.append(value)
                if len(series.times) > self._max:
                    del series.times[: self._max // 10], series.values[: self._max // 10]

    def _counter(self, name: str, per_root: dict[int, float]) -> float:
        """A counter that never goes backwards: a root that is gone (a stopped component) keeps the
        CPU it had, and a momentary dip (a child reaped between two reads) is flattened."""
        last = self._last_roots.setdefault(name, {})
        for root, cpu in last.items():
            if root not in per_root:
                self._retired[name] = self._retired.get(name, 0.0) + cpu
        self._last_roots[name] = dict(per_root)
        value = self._retired.get(name, 0.0) + sum(per_root.values())
        value = max(value, self._high.get(name, 0.0))
        self._high[name] = value
        return value

    def used(self, name: str, start: float, end: float) -> float | None:
        """CPU seconds the tree ``name`` used between two ``time.time()`` instants."""
        with self._lock:
            series = self._series[name]
            a, b = series.at(start), series.at(end)
        return None if a is None or b is None else max(0.0, b - a)

    def wait_past(self, when: float, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until a sample newer than ``when`` exists, so that :meth:`used` can end there."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                times = self._series["machine"].times
                if times and times[-1] > when:
                    return
            time.sleep(0.05)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.sample()


def process_children(pid: int) -> set[int]:
    """Direct children of ``pid`` (from /proc/PID/task/*/children)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found
