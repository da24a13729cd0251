"""The fleet benchmark (``make bench``): the monitor at 100, 1,000 and 3,000 servers through the real
scheduler, against the probe engine alone and against the seed's one-``SSHHook``-after-another way,
all in one run on this machine. See docs/benchmarks.md for what it measures and the figures.

It sets everything up itself and stops everything it started, on Ctrl-C and SIGTERM too:

- an OpenSSH fleet: ``--sshd`` sshd on 127.0.0.2.. (each serving many inventory rows: the same
  host and port under different server names) and silent peers after them;
- PostgreSQL (the Airflow metadata database and the heartbeat database);
- Airflow 3: api-server, dag-processor and scheduler (LocalExecutor), running the project's DAG
  on its own 30-s schedule; no triggerer (the DAG has no deferrable task);
- with ``--executors local,celery:1,celery:2``: then, in the same run, the largest size again
  through CeleryExecutor with one and with two ``airflow celery worker`` processes (Redis from
  Debian's redis-server as the broker), on this machine's loopback like everything else.

Measured, in this order: the seed's way (``SSHHook``, sequential), then cycles of the real DAG
with 100, 1,000 and 3,000 enabled servers, each followed by a run of the raw engine
(``heartbeat.probe.probe_servers`` in a process of its own) over the same servers with Airflow
frozen in place (SIGSTOP), so that each ratio compares two ways measured in the same minute (the
machine's speed drifts by up to a third within a run); then cycles with 10 % silent hosts. Per cycle: wall time and task
timings from ``dag_run``/``task_instance``, the heartbeat database's ``cycles`` row, and the CPU of
every process in the Airflow tree (api-server, dag-processor, scheduler, executor workers, task
processes, from /proc: utime+stime+cutime+cstime); sshd and PostgreSQL are measured apart and not
counted as the monitor's. Medians over the cycles; the load average and the CPU used by processes
that are not the benchmark's ("others", other engineers' work on a shared machine) go with every row.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import itertools
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench.lab_fleet import BenchFleet
from bench.proctree import CpuSampler, proc_table, process_children, tree_pids
from heartbeat import store
from heartbeat.config import Settings, settings_from_env
from heartbeat.cycle import probe_options
from heartbeat_lab import PostgresServer, free_port, generate_keypair
from heartbeat_lab.airflow_env import (
    REPO_ROOT,
    airflow_environment,
    migrate_metadata,
    postgres_connection_json,
    ssh_connection_json,
)
from heartbeat_lab.airflow_procs import AirflowProcesses, metadata_dsn, unpause_dag, wait_for_dag
from heartbeat_lab.celery_workers import CeleryWorker, RedisServer, celery_environment

DAG_ID = "ssh_heartbeat"
CPUS = os.cpu_count() or 1
POLL_S = 0.5
NO_CYCLE_TIMEOUT_S = 150.0
SCHEDULER_HEALTH_TIMEOUT_S = 120.0
CHILD_TIMEOUT_S = 300.0
SILENT_MARGIN_S = 5.0

log = logging.getLogger("bench")


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why and where to look."""


class Stop(Exception):  # a signal, not an error
    pass


# -- options ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...]
    cycles: int
    sshd: int
    silent_fraction: float
    silent_n: int
    silent_cycles: int
    baseline_n: int
    parallelism: int
    shard_sizes: tuple[int, ...]
    heartbeat_env: dict[str, str]
    airflow_env: dict[str, str]
    sshd_reexec: bool
    fleet_host_key: str
    fleet_nice: int
    work_dir: Path | None
    keep: bool
    json_path: Path | None
    max_minutes: float
    executors: tuple[str, ...] = ("local",)

    @property
    def celery_workers(self) -> tuple[int, ...]:
        """Worker counts of the CeleryExecutor phases, in order (``celery:N`` items)."""
        return tuple(int(e.split(":", 1)[1]) for e in self.executors if e.startswith("celery:"))


def assignments(parser: argparse.ArgumentParser, option: str, items: Sequence[str], prefix: str,
                expected: str) -> dict[str, str]:
    """NAME=VALUE options as a dict; a usage error for one without "=" or the prefix."""
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith(prefix):
            parser.error(f"{option} {item!r}: expected {expected}")
        found[key] = value
    return found


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,3000", help="fleet sizes N (default 100,1000,3000)")
    parser.add_argument("--cycles", type=int, default=3, help="measured cycles per size (default 3)")
    parser.add_argument("--sshd", type=int, default=30, help="sshd processes serving the inventory (default 30)")
    parser.add_argument("--silent-fraction", type=float, default=0.10, help="share of silent hosts (default 0.1)")
    parser.add_argument("--silent-n", type=int, default=500,
                        help="fleet size of the silent-host cycles (default 500: its healthy logins take less "
                             "than the probe timeout here, so the timeout is what the cycle should take; 0: skip)")
    parser.add_argument("--silent-cycles", type=int, default=2)
    parser.add_argument("--baseline-n", type=int, default=100, help="SSHHook logins of the baseline (0: skip)")
    parser.add_argument("--parallelism", type=int, default=16, help="AIRFLOW__CORE__PARALLELISM (default 16)")
    parser.add_argument("--shard-sizes", default="",
                        help="sweep HEARTBEAT_SHARD_SIZE (e.g. 50,250,750): restarts the scheduler per value "
                             "and measures the largest size only")
    parser.add_argument("--set", action="append", default=[], metavar="HEARTBEAT_X=V",
                        help="a HEARTBEAT_* setting for the tasks (default: the project's defaults)")
    parser.add_argument("--airflow", action="append", default=[], metavar="AIRFLOW__SECTION__KEY=V",
                        help="an Airflow setting for every component (default: as deployed)")
    parser.add_argument("--fleet-nice", type=int, default=19,
                        help="nice value of the sshd fleet (default 19: the fleet gets what the monitor leaves)")
    parser.add_argument("--sshd-reexec", action="store_true",
                        help="stock sshd (re-executes itself per connection: more lab CPU per login)")
    parser.add_argument("--fleet-host-key", default="ed25519", choices=("ed25519", "ecdsa", "rsa"),
                        help="host key type of the fleet's sshd (default ed25519; OpenSSH 9.2 signs ed25519 "
                             "with its own portable code and ECDSA with OpenSSL's)")
    parser.add_argument("--work-dir", type=Path, help="where everything lives (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs) afterwards")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write every figure to this file")
    parser.add_argument("--max-minutes", type=float, default=14.0, help="stop measuring after this (default 14)")
    parser.add_argument("--executors", default="local",
                        help="local, then celery:N for the largest size through CeleryExecutor with N workers, "
                             "in this order (e.g. local,celery:1,celery:2; default local)")
    args = parser.parse_args(argv)
    executors = tuple(e.strip() for e in args.executors.split(",") if e.strip())
    if not executors or executors[0] != "local" or any(
            e != "local" and not (e.startswith("celery:") and e.split(":", 1)[1].isdigit() and int(e[7:]) > 0)
            for e in executors[1:]):
        parser.error("--executors: local first, then celery:N items (N workers, at least 1)")
    heartbeat_env = assignments(parser, "--set", args.set, "HEARTBEAT_", "HEARTBEAT_NAME=VALUE")
    settings_from_env(heartbeat_env)  # fails early on a bad value
    airflow_env = assignments(parser, "--airflow", args.airflow, "AIRFLOW__", "AIRFLOW__SECTION__KEY=VALUE")
    sizes = tuple(sorted(int(s) for s in args.sizes.split(",") if s.strip()))
    if not sizes or min(sizes) < 1:
        parser.error("--sizes needs positive numbers")
    return Options(
        sizes=sizes, cycles=args.cycles, sshd=args.sshd, silent_fraction=args.silent_fraction,
        silent_n=args.silent_n, silent_cycles=args.silent_cycles, baseline_n=args.baseline_n,
        parallelism=args.parallelism,
        shard_sizes=tuple(int(s) for s in args.shard_sizes.split(",") if s.strip()),
        heartbeat_env=heartbeat_env, airflow_env=airflow_env, sshd_reexec=args.sshd_reexec,
        fleet_host_key=args.fleet_host_key,
        fleet_nice=args.fleet_nice,
        work_dir=args.work_dir, keep=args.keep, json_path=args.json_path, max_minutes=args.max_minutes,
        executors=executors,
    )


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    label: str
    healthy: int
    silent: int
    cycles: int
    record: bool = True
    shard_size: int | None = None
    paired: bool = False  # after each counted cycle, the raw engine over the same servers (Airflow frozen)

    @property
    def total(self) -> int:
        return self.healthy + self.silent


@dataclass
class Cycle:
    label: str
    run_id: str
    state: str
    servers: int
    ok: int
    failed: int
    wall_s: float
    shards: int
    first_task_s: float  # run start -> first task running
    probe_span_s: float  # first probe task start -> last probe task end
    after_probe_s: float  # last probe task end -> run end (status, notifications, scheduling)
    airflow_cpu_s: float  # every Airflow process: the tasks and Airflow's own components
    monitor_cpu_s: float  # the task processes (probes, writes, status) + the heartbeat database's share of PostgreSQL
    airflow_own_cpu_s: float  # scheduler loop, DAG processor, API server + the metadata database's share
    login_cpu_s: float  # the probe tasks' own account: CPU while logging in
    shard_cpu_s: float  # ... and over their whole shard (reading the inventory, logins, writing)
    sshd_cpu_s: float
    postgres_cpu_s: float
    others_cpu_s: float
    bench_cpu_s: float  # this benchmark's own process (its CPU sampler, following the runs)
    load1: float
    start: float
    end: float
    shard_size: int | None = None
    parts: dict[str, float] = field(default_factory=dict)  # Airflow CPU s by component
    # per task instance: (task, map index, queued, started, ended), seconds after the run's start
    timeline: list[tuple[str, int, float | None, float | None, float | None]] = field(default_factory=list)
    scheduler_waits_s: dict[str, float] = field(default_factory=dict)  # see scheduler_waits()

    @property
    def logins_per_s(self) -> float:
        return self.servers / self.wall_s

    @property
    def cpu_ms_per_server(self) -> float:
        return self.monitor_cpu_s / self.servers * 1000.0

    @property
    def all_in_ms_per_server(self) -> float:
        return (self.monitor_cpu_s + self.airflow_own_cpu_s) / self.servers * 1000.0


@dataclass
class Row:
    """One line of the table: medians over repetitions."""

    scenario: str
    n: int
    reps: int
    wall_s: float
    logins_per_s: float
    cpu_ms_per_server: float  # the monitor's: task processes + the heartbeat database (raw engine: its process)
    overhead_wall_s: float | None = None  # cycle wall time - the raw engine's
    overhead_cpu_s: float | None = None  # Airflow's own CPU a cycle: scheduler loop, DAG processor, API, metadata DB
    all_in_ms_per_server: float | None = None  # (monitor + Airflow's own) / N
    vs_raw: float | None = None
    vs_baseline: float | None = None
    sshd_ms_per_login: float | None = None
    others_pct: float | None = None
    load1: float | None = None
    ok: int | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- the lab ---------------------------------------------------------------------------------


def install_signal_handlers() -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


def load1() -> float:
    return os.getloadavg()[0]


def inventory_rows(fleet: BenchFleet, healthy: int, silent: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inventory rows: ``srv-NNNNN`` spread round-robin over the sshd (host key pinned, as in steady
    state) and ``silent-NNNN`` spread over the silent peers."""
    good = []
    for i in range(healthy):
        server = fleet.servers[i % len(fleet.servers)]
        good.append({"name": f"srv-{i:05d}", "host": server.host, "port": server.port,
                     "host_key": server.host_key_public_line})
    quiet = []
    for j in range(silent):
        peer = fleet.silent[j % len(fleet.silent)]
        quiet.append({"name": f"silent-{j:04d}", "host": peer.host, "port": peer.port, "host_key": None})
    return good, quiet


def load_inventory(dsn: str, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    with store.connect(dsn) as conn, conn.transaction():
        with conn.cursor() as cur, cur.copy(
            "COPY servers (name, host, port, enabled, host_key, host_key_pinned_at) FROM STDIN"
        ) as copy:
            for r in rows:
                copy.write_row((r["name"], r["host"], r["port"], False, r["host_key"],
                                datetime.now().astimezone() if r["host_key"] else None))
        return {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM servers").fetchall()}


def enable(dsn: str, phase: Phase) -> None:
    """Enable the first ``phase.healthy`` healthy rows and the first ``phase.silent`` silent ones."""
    with store.connect(dsn) as conn, conn.transaction():
        conn.execute(
            "UPDATE servers SET enabled = CASE WHEN name LIKE 'srv-%%' THEN substr(name, 5)::int < %(h)s "
            "ELSE substr(name, 8)::int < %(s)s END",
            {"h": phase.healthy, "s": phase.silent},
        )


def run_child(kind: str, spec: dict[str, Any], work: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    spec_path = work / f"{kind}-spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-m", "bench.workers", kind, str(spec_path)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise BenchError(f"the {kind} worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# -- Airflow ---------------------------------------------------------------------------------


class Airflow:
    """api-server + dag-processor (started once) and the scheduler (restartable with other settings)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.core = AirflowProcesses(env, log_dir, components=("api-server", "dag-processor"))
        self.scheduler: AirflowProcesses | None = None
        self.meta_dsn = metadata_dsn(env)
        self.frozen_spans: list[tuple[float, float]] = []  # (from, to), epoch seconds
        self._meta_conn: psycopg.Connection[Any] | None = None
        self.celery: list[CeleryWorker] = []  # the CeleryExecutor phases' workers, while they run

    def start(self, task_env: dict[str, str]) -> None:
        self.core.start()
        self.start_scheduler(task_env)
        if wait_for_dag(self.core.env, DAG_ID, procs=self.core):
            unpause_dag(self.core.env, DAG_ID)

    def start_scheduler(self, task_env: dict[str, str]) -> None:
        env = {**self.core.env, **task_env}
        self.scheduler = AirflowProcesses(env, self.log_dir, components=("scheduler",))
        self.scheduler.start()
        deadline = time.monotonic() + SCHEDULER_HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_running()
            health = self.core.health() or {}
            if (health.get("scheduler") or {}).get("status") == "healthy":
                return
            time.sleep(POLL_S)
        raise BenchError(f"the scheduler was not healthy within {SCHEDULER_HEALTH_TIMEOUT_S:.0f} s; "
                         f"see {self.log_dir / 'scheduler.log'}")

    def stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None

    def stop(self) -> None:
        self.close_metadata()
        self.stop_scheduler()
        self.core.stop()

    def check_running(self) -> None:
        self.core.check_running()
        if self.scheduler is not None:
            self.scheduler.check_running()

    def root_pids(self) -> set[int]:
        """The component processes (children of this process), whose trees the CPU sampler follows."""
        return (self.core.main_pids() | (self.scheduler.main_pids() if self.scheduler else set())
                | self.celery_pids())

    def celery_pids(self) -> set[int]:
        return {pid for w in self.celery if (pid := w.pid) is not None}

    def roots_of(self, component: str) -> set[int]:
        """Root pids of one component: ``api``, ``dag-processor``, ``scheduler`` (its whole tree), or
        ``executor`` (the LocalExecutor workers under the scheduler, or the Celery workers, with
        their task processes), ``celery`` (the Celery workers' trees, outside the scheduler's)."""
        roots = self.root_pids()
        if component == "celery":
            return self.celery_pids()
        if component == "executor":
            under = set().union(*(process_children(pid) for pid in roots if "scheduler" in cmdline(pid)))
            return {pid for pid in under if "LocalExecutor" in cmdline(pid)} | self.celery_pids()
        roots -= self.celery_pids()
        return {pid for pid in roots if component in cmdline(pid).replace("_", "-")}

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Airflow stopped in place (SIGSTOP) for a raw-engine run between two cycles, so that
        the raw engine and the cycles are measured side by side in the same minutes, without
        Airflow's idle loops taking CPU from the raw engine; SIGCONT afterwards, whatever happens."""
        pids = tree_pids(proc_table(), self.root_pids())  # workers and task processes included
        stopped: list[int] = []
        froze = time.time()
        try:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
            yield
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            self.frozen_spans.append((froze, time.time()))

    def _metadata(self) -> psycopg.Connection[Any]:
        """One connection to the metadata database for the whole run. The benchmark polls it
        twice a second; a new connection each time would cost PostgreSQL a backend start and exit
        (a few ms of CPU, landing in the postmaster's reaped-children time, i.e. in what the
        table counts as the heartbeat database's share)."""
        if self._meta_conn is None or self._meta_conn.closed:
            self._meta_conn = psycopg.connect(self.meta_dsn, connect_timeout=5, autocommit=True,
                                              application_name="fleet-bench")
        return self._meta_conn

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        try:
            return self._metadata().cursor(row_factory=dict_row).execute(sql, params).fetchall()
        except psycopg.OperationalError:
            self.close_metadata()  # a broken connection: the next poll opens a new one
            raise

    def close_metadata(self) -> None:
        if self._meta_conn is not None:
            self._meta_conn.close()
            self._meta_conn = None

    def finished_runs(self) -> list[dict[str, Any]]:
        return self._query(
            "SELECT run_id, state, start_date, end_date FROM dag_run WHERE dag_id = %s "
            "AND end_date IS NOT NULL AND start_date IS NOT NULL ORDER BY start_date", (DAG_ID,)
        )

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT task_id, map_index, state, queued_dttm, start_date, end_date FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id)
        )

    def shard_summaries(self, run_id: str) -> list[dict[str, Any]]:
        """What each probe task of a run returned (its CycleSummary)."""
        values = [row["value"] for row in self._query(
            "SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = 'probe_shard' "
            "AND key = 'return_value'", (DAG_ID, run_id))]
        return [json.loads(v) if isinstance(v, str) else v for v in values if v is not None]


# -- measuring cycles ------------------------------------------------------------------------

AIRFLOW_PARTS = ("api", "dag-processor", "scheduler", "celery")  # disjoint trees; "executor" is inside
# "scheduler" (LocalExecutor) or is "celery" (CeleryExecutor: the workers, with their own loops)
METADATA_DB = "airflow"  # the database of Airflow's own state (the monitor's is "heartbeat")


def backends_of(postmaster: int, database: str) -> set[int]:
    """The PostgreSQL backends connected to ``database`` (a backend's title is
    "postgres: USER DATABASE HOST(PORT) STATE")."""
    found = set()
    for pid in process_children(postmaster):
        words = cmdline(pid).split()
        if len(words) > 2 and words[0] == "postgres:" and words[2] == database:
            found.add(pid)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def airflow_used(sampler: CpuSampler, start: float, end: float) -> dict[str, float]:
    used = {part: sampler.used(part, start, end) or 0.0 for part in (*AIRFLOW_PARTS, "executor")}
    used["airflow"] = sum(used[p] for p in AIRFLOW_PARTS)
    return used


def scheduler_waits(tis: Sequence[dict[str, Any]], run_end: float) -> dict[str, float]:
    """Seconds between one step's end and the next step's being queued, as the scheduler notices
    it: inventory loaded -> probes queued, last probe done -> materialise queued, materialise
    done -> run ended. A wait is left out when a task instance it needs lacks that time."""
    def times(task_id: str, column: str) -> list[float] | None:
        found = [t[column] for t in tis if t["task_id"] == task_id]
        return [d.timestamp() for d in found] if found and all(found) else None

    loaded = times("load_inventory", "end_date")
    probes_queued, probes_done = times("probe_shard", "queued_dttm"), times("probe_shard", "end_date")
    final_queued = times("materialise_and_notify", "queued_dttm")
    final_done = times("materialise_and_notify", "end_date")
    waits = {}
    if loaded and probes_queued:
        waits["probes"] = min(probes_queued) - loaded[0]
    if probes_done and final_queued:
        waits["materialise"] = final_queued[0] - max(probes_done)
    if final_done:
        waits["run end"] = run_end - final_done[0]
    return {k: round(v, 3) for k, v in waits.items()}


def measure_cycle(airflow: Airflow, hb_dsn: str, sampler: CpuSampler, run: dict[str, Any], label: str,
                  shard_size: int | None) -> Cycle | None:
    start, end = run["start_date"].timestamp(), run["end_date"].timestamp()
    sampler.wait_past(end)
    with store.connect(hb_dsn) as conn:
        row = store.get_cycle(conn, run["run_id"])
    if row is None:
        return None
    tis = airflow.task_instances(run["run_id"])
    summaries = [s for s in airflow.shard_summaries(run["run_id"]) if isinstance(s, dict)]
    probes = [t for t in tis if t["task_id"] == "probe_shard" and t["start_date"] and t["end_date"]]
    starts = [t["start_date"].timestamp() for t in tis if t["start_date"]]
    probe_start = min((t["start_date"].timestamp() for t in probes), default=start)
    probe_end = max((t["end_date"].timestamp() for t in probes), default=start)
    used = {name: sampler.used(name, start, end) or 0.0
            for name in ("sshd", "postgres", "postgres-airflow", "bench", "machine")}
    used.update(airflow_used(sampler, start, end))
    metadata_db = min(used["postgres-airflow"], used["postgres"])
    others = used["machine"] - used["airflow"] - used["sshd"] - used["postgres"] - used["bench"]
    return Cycle(
        label=label, run_id=run["run_id"], state=run["state"], servers=int(row.servers or 0), ok=int(row.ok or 0),
        failed=int(row.failed or 0), wall_s=end - start, shards=len(probes),
        first_task_s=(min(starts) - start) if starts else 0.0, probe_span_s=probe_end - probe_start,
        after_probe_s=end - probe_end, airflow_cpu_s=used["airflow"],
        monitor_cpu_s=used["executor"] + used["postgres"] - metadata_db,
        airflow_own_cpu_s=used["airflow"] - used["executor"] + metadata_db, sshd_cpu_s=used["sshd"],
        login_cpu_s=sum(float(s.get("login_cpu_ms", 0.0)) for s in summaries) / 1000,
        shard_cpu_s=sum(float(s.get("cpu_ms", 0.0)) for s in summaries) / 1000,
        postgres_cpu_s=used["postgres"], others_cpu_s=max(0.0, others),
        bench_cpu_s=used["bench"], load1=load1(), start=start, end=end,
        shard_size=shard_size,
        parts={k: round(v, 3) for k, v in used.items() if k in (*AIRFLOW_PARTS, "executor", "postgres-airflow")},
        timeline=sorted((t["task_id"], t["map_index"], *(None if t[k] is None else round(t[k].timestamp() - start, 3)
                                                          for k in ("queued_dttm", "start_date", "end_date")))
                        for t in tis),
        scheduler_waits_s=scheduler_waits(tis, end),
    )


def local_executor(cycle: Cycle) -> float:
    """The CPU of the LocalExecutor workers, which are inside the scheduler's tree (Celery workers are not)."""
    return max(0.0, cycle.parts.get("executor", 0.0) - cycle.parts.get("celery", 0.0))


def run_phases(airflow: Airflow, hb_dsn: str, sampler: CpuSampler, phases: Sequence[Phase], deadline: float,
               seen: set[str], pair: Callable[[int], None] | None = None) -> list[Cycle]:
    """Follow the scheduled runs, switching the enabled inventory from phase to phase; a run is
    counted for a phase only if it probed exactly that phase's servers. After each counted cycle
    of a paired phase, ``pair(n)`` runs the raw engine over its servers with Airflow frozen; a run
    that was under way during that time is not counted (its wall time includes the freeze)."""
    cycles: list[Cycle] = []
    index, done = 0, 0
    enable(hb_dsn, phases[0])
    last_progress = time.monotonic()
    while index < len(phases):
        if time.monotonic() > deadline:
            raise BenchError(f"out of time (--max-minutes) in phase {phases[index].label}")
        if time.monotonic() - last_progress > NO_CYCLE_TIMEOUT_S:
            raise BenchError(f"no cycle finished within {NO_CYCLE_TIMEOUT_S:.0f} s; see the logs in {airflow.log_dir}")
        airflow.check_running()
        for run in airflow.finished_runs():
            if run["run_id"] in seen:
                continue
            seen.add(run["run_id"])
            last_progress = time.monotonic()
            phase = phases[index]
            start_s, end_s = run["start_date"].timestamp(), run["end_date"].timestamp()
            if any(start_s < thawed and end_s > froze for froze, thawed in airflow.frozen_spans):
                print(f"  run {run['run_id']}: under way while Airflow was frozen for the raw engine: not counted",
                      flush=True)
                continue
            cycle = measure_cycle(airflow, hb_dsn, sampler, run, phase.label, phase.shard_size)
            if cycle is None or cycle.servers == 0:
                print(f"  run {run['run_id']}: {run['state']}, no probe results: not counted", flush=True)
                continue
            matches = cycle.servers == phase.total  # failures are results: counted, and shown as "ok"
            print(f"  {phase.label:<22} {cycle.state:<7} {cycle.servers:>5} servers ({cycle.ok} ok), "
                  f"{cycle.shards:>3} shards, {cycle.wall_s:6.2f} s (first task {cycle.first_task_s:4.1f} s, "
                  f"probing {cycle.probe_span_s:5.2f} s, after {cycle.after_probe_s:4.1f} s), "
                  f"scheduler waits {'+'.join(f'{w:.1f}' for w in cycle.scheduler_waits_s.values())} s; "
                  f"monitor CPU {cycle.monitor_cpu_s:5.2f} s = {cycle.cpu_ms_per_server:4.2f} ms/server "
                  f"(tasks {cycle.parts.get('executor', 0):.1f}: logins {cycle.login_cpu_s:.1f}, rest of the shards "
                  f"{cycle.shard_cpu_s - cycle.login_cpu_s:.1f}; heartbeat DB "
                  f"{cycle.monitor_cpu_s - cycle.parts.get('executor', 0):.1f}), Airflow's own "
                  f"{cycle.airflow_own_cpu_s:.1f} s (scheduler "
                  f"{cycle.parts.get('scheduler', 0) - local_executor(cycle):.1f}, api "
                  f"{cycle.parts.get('api', 0):.1f}, dag-processor {cycle.parts.get('dag-processor', 0):.1f}, "
                  f"metadata DB {cycle.parts.get('postgres-airflow', 0):.1f}), all-in "
                  f"{cycle.all_in_ms_per_server:4.2f} ms/server, "
                  f"others {cycle.others_cpu_s / max(cycle.wall_s, 1e-9) / CPUS * 100:3.0f} %, "
                  f"the benchmark {cycle.bench_cpu_s / max(cycle.wall_s, 1e-9) * 100:3.0f} % of a core, "
                  f"load {cycle.load1:4.1f}"
                  + ("" if matches else f"  [expected {phase.total}: not counted]"), flush=True)
            if not matches:
                continue
            if phase.record:
                cycles.append(cycle)
            if phase.paired and pair is not None:
                with airflow.frozen():
                    pair(phase.total)
                last_progress = time.monotonic()
            done += 1
            if done >= phase.cycles:
                index, done = index + 1, 0
                if index < len(phases):
                    enable(hb_dsn, phases[index])
        time.sleep(POLL_S)
    return cycles


# -- the table ---------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def cycle_row(scenario: str, cycles: Sequence[Cycle], raw: Row | None, baseline: Row | None) -> Row:
    wall = median([c.wall_s for c in cycles])
    n = cycles[0].servers
    rate = median([c.logins_per_s for c in cycles])
    row = Row(
        scenario=scenario, n=n, reps=len(cycles), wall_s=wall, logins_per_s=rate,
        cpu_ms_per_server=median([c.cpu_ms_per_server for c in cycles]),
        overhead_cpu_s=median([c.airflow_own_cpu_s for c in cycles]),
        all_in_ms_per_server=median([c.all_in_ms_per_server for c in cycles]),
        sshd_ms_per_login=median([c.sshd_cpu_s / c.servers * 1000 for c in cycles]),
        others_pct=median([c.others_cpu_s / c.wall_s / CPUS * 100 for c in cycles]),
        load1=median([c.load1 for c in cycles]), ok=min(c.ok for c in cycles),
        extra={"shards": median([c.shards for c in cycles]), "first_task_s": median([c.first_task_s for c in cycles]),
               "probe_span_s": median([c.probe_span_s for c in cycles]),
               "after_probe_s": median([c.after_probe_s for c in cycles]),
               "scheduler_waits_s": {k: median([c.scheduler_waits_s.get(k, 0.0) for c in cycles])
                                     for k in ("probes", "materialise", "run end")},
               "airflow_tree_ms_per_server": median([c.airflow_cpu_s / c.servers * 1000 for c in cycles]),
               "task_login_ms_per_server": median([c.login_cpu_s / c.servers * 1000 for c in cycles]),
               "task_shard_ms_per_server": median([c.shard_cpu_s / c.servers * 1000 for c in cycles]),
               "postgres_ms_per_server": median([c.postgres_cpu_s / c.servers * 1000 for c in cycles]),
               "airflow_cpu_s_by_part": {p: median([c.parts.get(p, 0.0) for c in cycles])
                                         for p in (*AIRFLOW_PARTS, "executor", "postgres-airflow")}},
    )
    if raw is not None and raw.n == n:
        row.overhead_wall_s = wall - raw.wall_s
        row.vs_raw = rate / raw.logins_per_s
    if baseline is not None:
        row.vs_baseline = rate / baseline.logins_per_s
    return row


def fmt(value: float | int | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def table(rows: Sequence[Row]) -> str:
    head = ("| scenario | N | ok (min) | runs | cycle wall s | logins/s | monitor CPU ms/server "
            "| Airflow overhead wall s | Airflow overhead CPU s/cycle | all-in CPU ms/server | × raw | × baseline "
            "| sshd CPU ms/login | others' CPU % | load 1 min |")
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.n:,} | {fmt(r.ok, ',')} | {r.reps} | {r.wall_s:.2f} | {r.logins_per_s:.1f} | "
            f"{r.cpu_ms_per_server:.2f} | {fmt(r.overhead_wall_s, '.2f')} | {fmt(r.overhead_cpu_s, '.2f')} | "
            f"{fmt(r.all_in_ms_per_server, '.2f')} | "
            f"{fmt(r.vs_raw, '.2f')} | {fmt(r.vs_baseline, '.1f')} | {fmt(r.sshd_ms_per_login, '.1f')} | "
            f"{fmt(r.others_pct, '.0f')} | {fmt(r.load1, '.1f')} |"
        )
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def work_dir(options: Options) -> Iterator[Path]:
    path = options.work_dir or Path(tempfile.mkdtemp(prefix="heartbeat-bench-"))
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path.absolute()
    finally:
        if options.keep or options.work_dir is not None:
            print(f"work dir kept: {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def bench(options: Options, stack: contextlib.ExitStack) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + options.max_minutes * 60
    work = stack.enter_context(work_dir(options))
    settings: Settings = settings_from_env(options.heartbeat_env)
    biggest = max(options.sizes)
    silent = round(options.silent_n * options.silent_fraction) if options.silent_n else 0
    print(f"machine: {CPUS} cores, {platform.platform()}, load {load1():.2f} before start; work dir {work}", flush=True)
    print(f"settings: {asdict(settings)}", flush=True)

    key = generate_keypair(work / "keys" / "id_ed25519", comment="heartbeat-bench")
    peers = max(1, min(20, silent)) if silent else 0
    fleet = BenchFleet(work / "fleet", options.sshd, key.public_line, reexec=options.sshd_reexec,
                       host_key_type=options.fleet_host_key, silent=peers,
                       silent_hold_s=settings.probe_timeout_s + 30, nice=options.fleet_nice)
    stack.callback(fleet.stop)
    fleet.start()
    postgres = PostgresServer(work / "postgres")
    stack.callback(postgres.stop)
    postgres.start()
    for database in ("airflow", "heartbeat"):
        postgres.create_database(database)
    hb_dsn = postgres.dsn("heartbeat")
    with store.connect(hb_dsn) as conn:
        store.migrate(conn)
    good, quiet = inventory_rows(fleet, biggest, silent)
    load_inventory(hb_dsn, good + quiet)
    print(f"lab: {len(fleet.servers)} sshd ({'stock' if options.sshd_reexec else 'no re-exec (-r)'}, "
          f"{options.fleet_host_key} host keys, "
          f"nice {options.fleet_nice}), "
          f"{len(fleet.silent)} silent peers, PostgreSQL; inventory {len(good)} + {len(quiet)} silent rows "
          f"({time.monotonic() - started:.0f} s)", flush=True)

    airflow_holder: dict[str, Airflow] = {}
    def component(name: str) -> Callable[[], set[int]]:
        return lambda: airflow_holder["a"].roots_of(name) if "a" in airflow_holder else set()

    sampler = CpuSampler({
        **{part: component(part) for part in (*AIRFLOW_PARTS, "executor")},
        "sshd": fleet.listener_pids,
        "postgres": lambda: {pid} if (pid := postgres.pid) else set(),
        "postgres-airflow": lambda: backends_of(postgres.pid, METADATA_DB) if postgres.pid else set(),
    })
    sampler.start()
    stack.callback(sampler.stop)

    username = getpass.getuser()
    env = airflow_environment(
        work / "airflow",
        f"postgresql+psycopg://postgres@{postgres.host}:{postgres.port}/airflow",
        heartbeat_db_json=postgres_connection_json(postgres.host, postgres.port, "heartbeat"),
        ssh_conn_json=ssh_connection_json(username, key.private_path),
        api_port=free_port(),
        extra={"AIRFLOW__CORE__PARALLELISM": str(options.parallelism),
               # As deployed (docker-compose.yaml: Airflow's default): the lab's tests list the
               # DAG folder every 5 s, a deployment every 5 minutes.
               "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
               "PYTHONPYCACHEPREFIX": str(REPO_ROOT / ".state" / "bench-pycache"),
               **options.airflow_env},
    )
    rows: list[Row] = []
    results: dict[str, Any] = {"settings": asdict(settings), "options": {k: str(v) for k, v in asdict(options).items()}}

    # 1. the seed's way
    baseline: Row | None = None
    if options.baseline_n:
        print(f"baseline: {options.baseline_n} SSHHook logins one after another...", flush=True)
        b = run_child("baseline", {"targets": good, "n": options.baseline_n, "username": username,
                                   "key_file": str(key.private_path)}, work, env)
        sampler.wait_past(b["t1"])
        sshd = sampler.used("sshd", b["t0"], b["t1"]) or 0.0
        baseline = Row("seed: SSHHook, one login after another", b["n"], 1, b["wall_s"], b["n"] / b["wall_s"],
                       b["cpu_s"] / b["n"] * 1000, all_in_ms_per_server=b["cpu_s"] / b["n"] * 1000,
                       sshd_ms_per_login=sshd / b["n"] * 1000, load1=load1(), ok=b["ok"],
                       vs_baseline=1.0, notes=f"import of the SSH provider: {b['import_cpu_s']:.1f} s CPU",
                       extra=b)
        rows.append(baseline)
        print(f"  {b['ok']}/{b['n']} ok in {b['wall_s']:.2f} s, {b['cpu_s'] / b['n'] * 1000:.2f} ms CPU per login "
              f"(+{b['import_cpu_s']:.1f} s CPU to import the provider)", flush=True)

    # 2. the raw engine: measured right after each counted Airflow cycle of the same size, with
    # Airflow frozen in place meanwhile (SIGSTOP), so that both are measured in the same minutes:
    # the machine's speed drifts by up to a third within ten minutes on a shared VM, and a raw
    # engine measured before or after the Airflow runs compared the two hours, not the two ways.
    raw_job = {
        "targets": [{"id": i + 1, **g, "username": None} for i, g in enumerate(good)],
        "reps": 1, "warmup": min(50, len(good)), "username": username,
        "key_file": str(key.private_path), "connect_timeout_s": settings.connect_timeout_s,
        "probe_timeout_s": settings.probe_timeout_s, "concurrency": settings.concurrency,
        "kex_algs": list(probe_options(settings).kex_algs),
    }
    raw_runs: list[dict[str, Any]] = []

    def raw_pair(n: int) -> None:
        runs: list[dict[str, Any]] = run_child("raw", {**raw_job, "sizes": [n]}, work)["runs"]
        sampler.wait_past(max(r["t1"] for r in runs))
        raw_runs.extend(runs)
        row = raw_row(n, runs, sampler)
        print(f"  raw engine, N={n} (Airflow frozen): {row.wall_s:.2f} s, {row.logins_per_s:.0f} logins/s, "
              f"{row.cpu_ms_per_server:.2f} ms CPU per login, ok {row.ok}", flush=True)

    # 3. the real scheduler
    print("Airflow: migrating the metadata database, starting api-server, dag-processor, scheduler...", flush=True)
    migrate_metadata(env)
    airflow = Airflow(env, work / "logs")
    stack.callback(airflow.stop)
    # LocalExecutor forks `parallelism` workers up front and hands tasks to them in turn; a worker's
    # first task costs it about 0.15 s of CPU more (imports), so the warm-up runs until each has had one.
    tasks_per_cycle = 2 + min(settings.max_shards, -(-min(options.sizes) // settings.shard_size))
    first = Phase("warm-up", min(options.sizes), 0, -(-options.parallelism // tasks_per_cycle), record=False)
    enable(hb_dsn, first)
    airflow_holder["a"] = airflow
    task_env = dict(options.heartbeat_env)
    if options.shard_sizes:
        enable(hb_dsn, Phase("warm-up", biggest, 0, 1))
        airflow.start({**task_env, "HEARTBEAT_SHARD_SIZE": str(options.shard_sizes[0])})
    else:
        airflow.start(task_env)
    print(f"  up ({time.monotonic() - started:.0f} s since start); following the scheduled runs", flush=True)
    seen: set[str] = set()
    cycles: list[Cycle] = []
    if options.shard_sizes:
        for i, shard_size in enumerate(options.shard_sizes):
            if i:
                restart_scheduler(airflow, {**task_env, "HEARTBEAT_SHARD_SIZE": str(shard_size)})
            label = f"N={biggest}, shard size {shard_size}"
            phases = [Phase("warm-up", biggest, 0, 1, record=False, shard_size=shard_size),
                      Phase(label, biggest, 0, options.cycles, shard_size=shard_size, paired=True)]
            cycles += run_phases(airflow, hb_dsn, sampler, phases, deadline, seen, pair=raw_pair)
    else:
        phases = [first] + [Phase(f"N={n}", n, 0, options.cycles, paired=True) for n in options.sizes]
        if silent:
            phases.append(Phase(f"N={options.silent_n}, {silent} silent", options.silent_n - silent, silent,
                                options.silent_cycles))
        cycles = run_phases(airflow, hb_dsn, sampler, phases, deadline, seen, pair=raw_pair)
    if options.celery_workers:
        cycles += celery_phases(options, airflow, postgres, hb_dsn, sampler, deadline, seen, task_env, work, stack,
                                biggest)
    airflow.stop()

    raw_rows: dict[int, Row] = {}
    for n in options.sizes:
        row = raw_row(n, raw_runs, sampler)
        row.notes = "each run right after an Airflow cycle of the same size, Airflow frozen"
        if baseline is not None:
            row.vs_baseline = row.logins_per_s / baseline.logins_per_s
        row.vs_raw = 1.0
        raw_rows[n] = row
        rows.append(row)
    if options.shard_sizes:
        for shard_size in dict.fromkeys(options.shard_sizes):
            got = [c for c in cycles if c.shard_size == shard_size]  # warm-ups are not recorded
            rows.append(cycle_row(f"Airflow, shard size {shard_size}", got, raw_rows.get(biggest), baseline))
    else:
        for n in options.sizes:
            got = [c for c in cycles if c.label == f"N={n}"]
            rows.append(cycle_row("Airflow: real scheduler, LocalExecutor", got, raw_rows.get(n), baseline))
        if silent:
            got = [c for c in cycles if "silent" in c.label]
            row = cycle_row(f"Airflow, {silent / options.silent_n:.0%} silent hosts", got, None, baseline)
            row.notes = f"probe timeout {settings.probe_timeout_s:g} s"
            rows.append(row)
        local = next((r for r in rows if r.scenario.endswith("LocalExecutor") and r.n == biggest), None)
        for workers in options.celery_workers:
            got = [c for c in cycles if c.label == celery_label(biggest, workers)]
            if not got:
                continue
            row = cycle_row(f"Airflow: real scheduler, CeleryExecutor, {workers} worker{'s' if workers > 1 else ''}",
                            got, raw_rows.get(biggest), baseline)
            if local is not None:
                cpu_ratio = (row.all_in_ms_per_server or 0) / (local.all_in_ms_per_server or 1)
                row.notes = (f"{row.wall_s / local.wall_s:.2f}× LocalExecutor's cycle wall time, {cpu_ratio:.2f}× its "
                             f"all-in CPU; {CELERY_CONCURRENCY} task slots per worker")
                row.extra["vs_local"] = {"wall": row.wall_s / local.wall_s, "all_in_cpu": cpu_ratio}
            rows.append(row)
    idle = idle_airflow_cpu(sampler, cycles, airflow.frozen_spans)
    results.update({"rows": [asdict(r) for r in rows], "cycles": [asdict(c) for c in cycles],
                    "idle_airflow_cpu_pct": idle, "minutes": (time.monotonic() - started) / 60})
    return results


CELERY_CONCURRENCY = 4  # task slots per Celery worker, as docker-compose.yaml's default


def celery_label(n: int, workers: int) -> str:
    return f"N={n}, Celery×{workers}"


def celery_phases(options: Options, airflow: Airflow, postgres: PostgresServer, hb_dsn: str, sampler: CpuSampler,
                  deadline: float, seen: set[str], task_env: dict[str, str], work: Path, stack: contextlib.ExitStack,
                  n: int) -> list[Cycle]:
    """The largest size again through CeleryExecutor, with 1, 2 ... workers in turn (Redis as the
    broker, the metadata database as the result backend): the scheduler is restarted with
    CeleryExecutor between two runs, the workers serve Airflow's default queue and the default
    site's, and each worker count gets a warm-up cycle before the counted ones."""
    redis = RedisServer(work / "redis")
    stack.callback(redis.stop)
    redis.start()
    celery_env = {k: v for k, v in celery_environment(
        {}, redis.url(), f"db+postgresql://postgres@{postgres.host}:{postgres.port}/airflow").items()}
    cycles: list[Cycle] = []
    for workers in options.celery_workers:
        wait_between_runs(airflow, deadline)
        airflow.stop_scheduler()
        env = {**airflow.core.env, **task_env, **celery_env}
        airflow.celery = [CeleryWorker(env, f"bench-{i + 1}", ["default", "heartbeat-default"], airflow.log_dir,
                                       concurrency=CELERY_CONCURRENCY) for i in range(workers)]
        try:
            for worker in airflow.celery:
                worker.start(wait=False)
            for worker in airflow.celery:
                worker.wait_until_ready()
            airflow.start_scheduler({**task_env, **celery_env})
            print(f"  CeleryExecutor with {workers} worker(s) ({CELERY_CONCURRENCY} slots each), load {load1():.1f}",
                  flush=True)
            label = celery_label(n, workers)
            phases = [Phase(f"{label} warm-up", n, 0, 1, record=False), Phase(label, n, 0, options.cycles)]
            cycles += run_phases(airflow, hb_dsn, sampler, phases, deadline, seen)
            wait_between_runs(airflow, deadline)
            airflow.stop_scheduler()
        finally:
            for worker in airflow.celery:
                worker.stop()
            airflow.celery = []
    airflow.start_scheduler(task_env)  # LocalExecutor again, as the run began
    return cycles


def wait_between_runs(airflow: Airflow, deadline: float) -> None:
    """Until no run is in flight, so that a scheduler stopped now leaves no task behind."""
    while time.monotonic() < deadline:
        running = airflow._query("SELECT 1 FROM dag_run WHERE dag_id = %s AND state IN ('running', 'queued')",
                                 (DAG_ID,))
        if not running:
            return
        time.sleep(POLL_S)
    raise BenchError("out of time (--max-minutes) waiting for a run to finish before switching executors")


def raw_row(n: int, raw_runs: Sequence[dict[str, Any]], sampler: CpuSampler) -> Row:
    """The raw engine's row for N servers: medians over its runs of that size."""
    runs = [r for r in raw_runs if r["n"] == n]
    return Row(
        "raw engine: probe_servers, no Airflow", n, len(runs), median([r["wall_s"] for r in runs]),
        median([n / r["wall_s"] for r in runs]), median([r["cpu_s"] / n * 1000 for r in runs]),
        sshd_ms_per_login=median([(sampler.used("sshd", r["t0"], r["t1"]) or 0.0) / n * 1000 for r in runs]),
        all_in_ms_per_server=median([r["cpu_s"] / n * 1000 for r in runs]),
        load1=load1(), ok=min(r["ok"] for r in runs), extra={"runs": runs},
    )


def restart_scheduler(airflow: Airflow, task_env: dict[str, str]) -> None:
    """Restart the scheduler with other task settings. A run it leaves behind is adopted by the
    new scheduler and finishes as the next phase's warm-up (a paused DAG would not finish it)."""
    airflow.stop_scheduler()
    airflow.start_scheduler(task_env)


def idle_airflow_cpu(sampler: CpuSampler, cycles: Sequence[Cycle],
                     frozen_spans: Sequence[tuple[float, float]] = ()) -> float | None:
    """Airflow's CPU (% of one core) between two runs, when no run is active and Airflow was not
    frozen for the raw engine (median over such gaps)."""
    rates = []
    ordered = sorted(cycles, key=lambda c: c.start)
    for before, after in itertools.pairwise(ordered):
        a, b = before.end + 1.0, after.start - 1.0
        if any(froze < b and thawed > a for froze, thawed in frozen_spans):
            continue
        if b - a >= 5.0:
            rates.append(airflow_used(sampler, a, b)["airflow"] / (b - a) * 100)
    return median(rates) if rates else None


def verdicts(result: dict[str, Any], settings: Settings) -> list[str]:
    rows = [Row(**r) for r in result["rows"]]
    airflow_rows = [r for r in rows if r.scenario.startswith("Airflow: ")]
    lines = []
    if airflow_rows:
        big = max(airflow_rows, key=lambda r: r.n)
        lines.append(f"{big.n:,} servers within one 30-s cycle: {'yes' if big.wall_s <= 30 else 'NO'} "
                     f"({big.wall_s:.1f} s, {big.ok} ok)")
        if big.vs_raw is not None:
            lines.append(f"at >= 85 % of the raw engine's throughput: {'yes' if big.vs_raw >= 0.85 else 'NO'} "
                         f"({big.vs_raw:.0%})")
        lines.append(f"monitor CPU <= 2.5 ms per server (task processes + heartbeat database): "
                     f"{'yes' if big.cpu_ms_per_server <= 2.5 else 'NO'} ({big.cpu_ms_per_server:.2f} ms; "
                     f"with Airflow's own {fmt(big.overhead_cpu_s, '.1f')} s a cycle: "
                     f"{fmt(big.all_in_ms_per_server, '.2f')} ms all-in)")
        if big.vs_baseline is not None:
            lines.append(f">= 8x the baseline's logins/s: {'yes' if big.vs_baseline >= 8 else 'NO'} "
                         f"({big.vs_baseline:.1f}x)")
    for row in rows:
        if "CeleryExecutor" in row.scenario:
            lines.append(f"{row.scenario.removeprefix('Airflow: real scheduler, ')}: {row.n:,} servers within one "
                         f"30-s cycle: {'yes' if row.wall_s <= 30 else 'NO'} ({row.wall_s:.1f} s, {row.ok} ok); "
                         f"{row.notes or 'no LocalExecutor row of that size to compare with'}")
    silent = [r for r in rows if "silent" in r.scenario]
    if silent:
        limit = settings.probe_timeout_s + SILENT_MARGIN_S
        s = silent[0]
        lines.append(f"10 % silent hosts: cycle within the probe timeout + {SILENT_MARGIN_S:g} s ({limit:g} s): "
                     f"{'yes' if s.wall_s <= limit else 'NO'} ({s.wall_s:.1f} s)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install_signal_handlers()
    stack = contextlib.ExitStack()
    try:
        result = bench(options, stack)
    except (KeyboardInterrupt, Stop) as exc:
        print(f"\ninterrupted ({exc or 'Ctrl-C'}): stopping everything that was started", flush=True)
        return 130
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        close_all(stack)
    settings = settings_from_env(options.heartbeat_env)
    rows = [Row(**r) for r in result["rows"]]
    print()
    print(table(rows))
    print()
    for line in verdicts(result, settings):
        print(line)
    if result.get("idle_airflow_cpu_pct") is not None:
        print(f"Airflow between runs (idle): {result['idle_airflow_cpu_pct']:.0f} % of one core")
    print(f"\n{CPUS} cores; load 1 min now {load1():.2f}; total {result['minutes']:.1f} min")
    if options.json_path:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


def close_all(stack: contextlib.ExitStack) -> None:
    """Stop everything; further Ctrl-C or SIGTERM only say that stopping is under way."""

    def patience(signum: int, frame: FrameType | None) -> None:
        print("still stopping, please wait", flush=True)

    previous: dict[int, Callable[..., Any] | int | None] = {
        sig: signal.signal(sig, patience) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        stack.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
