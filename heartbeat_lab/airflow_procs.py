"""The real Airflow components as child processes: ``airflow api-server``, ``scheduler``,
``dag-processor`` and ``triggerer``, for the demo and the end-to-end tests.

Each component runs in its own process group with its output in ``<log_dir>/<name>.log``.
:meth:`AirflowProcesses.stop` ends whole process trees, not just groups: Airflow's task
runners and DAG-file parsers call ``setpgid`` and would otherwise outlive their parents.

:meth:`AirflowProcesses.supervise`, called every few seconds, restarts a component that has
exited (the scheduler, the dag-processor and the triggerer exit when their metadata database goes
away), like a container's restart policy: what is left of its process tree is killed first, then
it is started again after a delay that doubles with each restart in a row (:class:`RestartPolicy`),
or at once when the metadata database, unreachable meanwhile, answers again. Like a liveness
probe, it also kills and restarts a component that still runs but that the api-server has reported
unhealthy (no heartbeat) for a while although the metadata database is healthy: the scheduler of
3.3.2, on losing its database, can stop at "Shutting down LocalExecutor; waiting for running tasks
to finish" and never exit.

Loopback only: the api-server binds 127.0.0.1 (or, for Celery workers inside a LabNetwork's
namespaces, the address ``airflow_environment(api_host=...)`` names in its range), and the log
servers that the scheduler and triggerer start by default (which bind every interface) are
skipped; finished task logs are read from the shared log folder. The environment comes from
:func:`heartbeat_lab.airflow_env.airflow_environment` with ``api_port`` set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from heartbeat_lab.airflow_env import airflow_bin
from heartbeat_lab.ports import free_port, port_is_free, require_lab_host
from heartbeat_lab.service import LabService, ProcStat, proc_table, tail

__all__ = [
    "COMPONENTS",
    "AirflowProcesses",
    "AirflowStartError",
    "RestartPolicy",
    "loopback_environment",
    "loopback_hostname",
    "metadata_dsn",
    "unpause_dag",
    "wait_for_dag",
]

log = logging.getLogger(__name__)

COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_PATH = "/api/v2/monitor/health"
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
GRACE_S = {"api-server": 5.0, "dag-processor": 5.0, "triggerer": 5.0}
"""How long a stateless component may take to stop before its tree is killed. The dag-processor
of 3.3.2 was seen to let a SIGTERM pass while busy, and the triggerer to wait 20 s for its trigger
runner under load; the scheduler gets the whole ``timeout_s``, as it waits for its running tasks."""
KILL_TIMEOUT_S = 5.0
CLI_TIMEOUT_S = 120.0
POLL_S = 0.5
HEALTH_EVERY_S = 5.0
LAB_PARENT = Path(__file__).resolve().parents[1]
"""The folder that holds ``heartbeat_lab``: the components import the hostname callable from it."""


class AirflowStartError(RuntimeError):
    """A component could not start or did not become healthy; the message holds its log tail."""


def loopback_hostname() -> str:
    """``[core] hostname_callable`` for the lab: every component is on this machine, so the
    api-server looks for running tasks' logs on loopback instead of the host's public name."""
    return "127.0.0.1"


def loopback_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus what keeps Airflow on loopback: the hostname callable (importable by the
    components because the folder holding this package goes on ``PYTHONPATH``; an ``env`` that
    names its own callable keeps it, and ``PYTHONPATH`` untouched), and free loopback ports for
    the worker and trigger log servers (in case they are started after all)."""
    if "AIRFLOW__API__PORT" not in env:
        raise ValueError("the Airflow environment has no api-server port: pass api_port to airflow_environment()")
    hostname = {} if env.get("AIRFLOW__CORE__HOSTNAME_CALLABLE") else {
        "PYTHONPATH": os.pathsep.join(p for p in (str(LAB_PARENT), env.get("PYTHONPATH", "")) if p),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.loopback_hostname",
    }
    return {
        **env,
        **hostname,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": env.get("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT")
        or str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": env.get("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT")
        or str(free_port()),
    }


@dataclass(frozen=True)
class RestartPolicy:
    """When :meth:`AirflowProcesses.supervise` starts an exited component again.

    :param first_delay_s: wait before the first restart (seconds); each further restart in a
        row waits twice as long as the one before.
    :param max_delay_s: the longest wait between two restarts (seconds).
    :param stable_after_s: a component that ran this long before exiting had recovered: its
        restart waits ``first_delay_s`` again (seconds).
    :param unhealthy_after_s: a running component that the api-server reports unhealthy this
        long in a row, with the metadata database healthy, is killed and restarted (seconds).
        Airflow reports a component unhealthy once its last heartbeat is older than
        ``[scheduler] scheduler_health_check_threshold`` (30 s).
    :param startup_grace_s: how long a freshly started component is not judged by its health.
    """

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0
    unhealthy_after_s: float = 10.0
    startup_grace_s: float = 30.0

    def delay_s(self, in_a_row: int) -> float:
        """The wait before the ``in_a_row``-th restart in a row (1 for the first)."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** max(0, in_a_row - 1))


@dataclass
class _Component:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    tree: _ProcessTree
    started_at: float
    restarts: int = 0
    in_a_row: int = 0
    restart_at: float | None = None
    database_was_down: bool = False
    unhealthy_since: float | None = None

    @property
    def running(self) -> bool:
        return self.restart_at is None and self.proc.poll() is None


class AirflowProcesses(LabService):
    """Start, watch and stop the Airflow components; a context manager.

    :param env: the full environment of the components (see :func:`loopback_environment`).
    :param log_dir: where ``<component>.log`` files are appended.
    :param components: which ``airflow`` subcommands to run (default: all four).
    :param serve_logs: let the scheduler and triggerer start their log servers (they bind
        0.0.0.0); off by default.
    :param restart_policy: how :meth:`supervise` restarts a component that has exited.
    :param bin_dir: the ``bin`` folder whose ``airflow`` command runs the components (default:
        this interpreter's environment).
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        components: Sequence[str] = COMPONENTS,
        *,
        serve_logs: bool = False,
        restart_policy: RestartPolicy | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self._env = loopback_environment(env)
        self._airflow = airflow_bin(bin_dir)
        self._log_dir = Path(log_dir)
        self._names = tuple(components)
        self._serve_logs = serve_logs
        self._restart_policy = restart_policy or RestartPolicy()
        self._components: list[_Component] = []
        self._next_health_check = 0.0

    @property
    def env(self) -> dict[str, str]:
        return dict(self._env)

    @property
    def api_port(self) -> int:
        return int(self._env["AIRFLOW__API__PORT"])

    @property
    def api_host(self) -> str:
        """Loopback, or an address of a started LabNetwork (airflow_environment's ``api_host``)."""
        return require_lab_host(self._env.get("AIRFLOW__API__HOST", "127.0.0.1"))

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    def log_path(self, component: str) -> Path:
        return self._log_dir / f"{component}.log"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start every component and wait (bounded) until the api-server reports them healthy."""
        if self._components:
            return
        if "api-server" in self._names and not port_is_free(self.api_host, self.api_port):
            raise AirflowStartError(
                f"port {self.api_port} on {self.api_host} is already in use (another Airflow or demo?); "
                "stop that process or choose another port"
            )
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._track()
        try:
            for name in self._names:
                self._components.append(self._spawn(name))
            if "api-server" in self._names:
                self.wait_until_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the components, then SIGKILL whatever is left of their process trees, task
        runners and parsers included. Bounded: about ``timeout_s`` plus ten seconds.

        The api-server goes last: running tasks report their final state through it.
        """
        components, self._components = self._components, []
        self._untrack()
        if not components:
            return
        everything = _ProcessTree({c.proc.pid for c in components})
        everything.refresh()
        running = [c for c in components if c.running]  # not those waiting for a restart
        api = [c for c in running if c.name == "api-server"]
        late = _stop_together([c for c in running if c not in api], timeout_s)
        late += _stop_together(api, timeout_s)
        if late:
            log.warning("airflow %s did not stop within its grace time and was killed", ", ".join(late))
        everything.kill(KILL_TIMEOUT_S)
        for component in components:
            component.tree.kill(KILL_TIMEOUT_S)  # descendants seen by supervise() that left the groups
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.proc.wait(timeout=1)

    def stop_component(self, name: str, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop one component and its process tree (e.g. the scheduler, to play an outage)."""
        stopping = [c for c in self._components if c.name == name]
        if not stopping:
            raise ValueError(f"airflow {name} is not running here")
        self._components = [c for c in self._components if c.name != name]
        tree = _ProcessTree({c.proc.pid for c in stopping})
        tree.refresh()
        _stop_together([c for c in stopping if c.running], timeout_s)
        tree.kill(KILL_TIMEOUT_S)
        for component in stopping:
            component.tree.kill(KILL_TIMEOUT_S)

    def start_component(self, name: str) -> None:
        """Start one component again after :meth:`stop_component`."""
        if any(c.name == name for c in self._components):
            raise ValueError(f"airflow {name} is already running")
        self._components.append(self._spawn(name))

    def pids(self) -> set[int]:
        """Every live process of the components' trees (for measurements and leak checks)."""
        tree = _ProcessTree({c.proc.pid for c in self._components})
        return tree.refresh()

    def main_pids(self) -> set[int]:
        """The main process of each running component, without reading /proc (for a sampler
        that asks several times a second)."""
        return {c.proc.pid for c in self._components if c.running}

    # -- supervision --------------------------------------------------------------------

    def supervise(self, now: float | None = None) -> list[str]:
        """Restart the components that have exited, by :class:`RestartPolicy`; call it every
        few seconds. Returns what happened, one line per event, for the person watching, e.g.
        ``airflow scheduler exited with code 1; restarting in 2 s (restart 3)``."""
        now = time.monotonic() if now is None else now
        events: list[str] = []
        table = proc_table()
        waiting = [c for c in self._components if c.restart_at is not None]
        database_answers = self._metadata_database_answers() if waiting else None
        health = self._health_if_due(now)
        for component in self._components:
            component.tree.refresh(table)  # remembers descendants, so that leftovers can be killed
            code = component.proc.poll()
            if component.restart_at is None:
                if code is not None:
                    how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
                    events.append(self._schedule_restart(component, how, now))
                elif health is not None and (hung := self._hung(component, health, now)):
                    events.append(self._schedule_restart(component, hung, now))
                continue
            if database_answers is False:
                component.database_was_down = True
            elif database_answers and component.database_was_down and now < component.restart_at:
                events.append(f"airflow {component.name}: the metadata database answers again; restarting now")
                component.restart_at = now
            if now >= component.restart_at:
                self._restart(component, now)
        return events

    def seconds_to_next_restart(self, now: float | None = None) -> float | None:
        """How long until :meth:`supervise` has a restart to do, or None when none is pending."""
        now = time.monotonic() if now is None else now
        pending = [c.restart_at for c in self._components if c.restart_at is not None]
        return max(0.0, min(pending) - now) if pending else None

    def _health_if_due(self, now: float) -> Mapping[str, Any] | None:
        """The api-server's health document every ``HEALTH_EVERY_S``, when it says the metadata
        database is healthy (otherwise no component can heartbeat, hung or not)."""
        api = [c for c in self._components if c.name == "api-server" and c.running]
        if now < self._next_health_check or not api:
            return None
        self._next_health_check = now + HEALTH_EVERY_S
        health = self.health()
        if health is None or _status(health, "metadatabase") != "healthy":
            return None
        return health

    def _hung(self, component: _Component, health: Mapping[str, Any], now: float) -> str | None:
        """Why a running component counts as hung (unhealthy for ``unhealthy_after_s``), else None."""
        key = HEALTH_KEYS.get(component.name)
        policy = self._restart_policy
        if key is None or _status(health, key) in ("healthy", None) or (
                now - component.started_at < policy.startup_grace_s):
            component.unhealthy_since = None
            return None
        if component.unhealthy_since is None:
            component.unhealthy_since = now
        if now - component.unhealthy_since < policy.unhealthy_after_s:
            return None
        report = health.get(key)
        last = report.get(f"latest_{key}_heartbeat") if isinstance(report, Mapping) else None
        return (f"has run without a heartbeat (last {_clock(last)}) for {now - component.unhealthy_since:.0f} s "
                "since the metadata database is healthy, so it was killed")

    def _schedule_restart(self, component: _Component, how: str, now: float) -> str:
        policy = self._restart_policy
        ran_s = now - component.started_at
        component.in_a_row = 1 if ran_s >= policy.stable_after_s else component.in_a_row + 1
        component.restarts += 1
        delay_s = policy.delay_s(component.in_a_row)
        component.restart_at = now + delay_s
        component.database_was_down = self._metadata_database_answers() is False
        component.unhealthy_since = None
        component.tree.kill(KILL_TIMEOUT_S)  # e.g. the task runners of a scheduler that died
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.proc.wait(timeout=1)
        message = (f"airflow {component.name} {how} (up {_duration(ran_s)}); "
                   f"restarting in {delay_s:g} s (restart {component.restarts})")
        with open(component.log_path, "ab") as log_file:
            log_file.write(f"--- lab: {message} at {time.strftime('%F %T')}\n".encode())
        log.warning("%s", message)
        return message

    def _restart(self, component: _Component, now: float) -> None:
        fresh = self._spawn(component.name)
        component.proc, component.tree, component.started_at = fresh.proc, fresh.tree, fresh.started_at
        component.restart_at = None

    def _metadata_database_answers(self) -> bool | None:
        """Whether the metadata database accepts a connection; None when it cannot be checked."""
        try:
            dsn = metadata_dsn(self._env)
        except (KeyError, ValueError):
            return None
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    # -- health -------------------------------------------------------------------------

    def check_running(self) -> None:
        """Raise with the log tail of the first component that has exited (and is not waiting
        for a restart by :meth:`supervise`)."""
        for component in self._components:
            code = component.proc.poll()
            if code is not None and component.restart_at is None:
                raise AirflowStartError(
                    f"airflow {component.name} exited with code {code}; log tail from "
                    f"{component.log_path}:\n{tail(component.log_path, 40)}"
                )

    def health(self) -> dict[str, Any] | None:
        """The api-server's health document, or None while it does not answer."""
        try:
            with urllib.request.urlopen(self.api_url + HEALTH_PATH, timeout=5) as response:  # noqa: S310
                return dict(json.load(response))
        except (OSError, ValueError):
            return None

    def wait_until_healthy(self, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
        """Wait until the api-server answers and reports every started component healthy."""
        wanted = [HEALTH_KEYS[n] for n in self._names if n in HEALTH_KEYS]
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            self.check_running()
            last = self.health()
            if last is not None and all(_status(last, key) == "healthy" for key in wanted):
                return last
            time.sleep(POLL_S)
        raise AirflowStartError(
            f"Airflow was not healthy within {timeout_s:.0f} s (last answer from {self.api_url}{HEALTH_PATH}: "
            f"{last}); see the logs in {self._log_dir}:\n{tail(self.log_path('api-server'), 40)}"
        )

    # -- internals ----------------------------------------------------------------------

    def _command(self, name: str) -> list[str]:
        command = [self._airflow, name]
        if name == "api-server":
            command += ["--host", self.api_host, "--port", str(self.api_port)]
        if name in ("scheduler", "triggerer") and not self._serve_logs:
            command.append("--skip-serve-logs")
        return command

    def _spawn(self, name: str) -> _Component:
        path = self.log_path(name)
        command = self._command(name)
        with open(path, "ab") as log_file:
            log_file.write(f"--- lab: starting {' '.join(command)} at {time.strftime('%F %T')}\n".encode())
            log_file.flush()
            proc = subprocess.Popen(
                command,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self._env.get("AIRFLOW_HOME"),
                start_new_session=True,
            )
        log.info("started airflow %s (pid %s), log %s", name, proc.pid, path)
        return _Component(name, proc, path, _ProcessTree({proc.pid}), time.monotonic())


# -- helpers for callers ---------------------------------------------------------------------


def metadata_dsn(env: Mapping[str, str]) -> str:
    """The libpq DSN of the metadata database named by ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``."""
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgresql"):
        raise ValueError(f"the lab reads the metadata database with psycopg; {parts.scheme} is not PostgreSQL")
    return parts._replace(scheme="postgresql").geturl()


def wait_for_dag(env: Mapping[str, str], dag_id: str, timeout_s: float = 120.0,
                 procs: AirflowProcesses | None = None) -> bool:
    """Wait (bounded) until the dag-processor has serialised ``dag_id``; returns whether it is paused.

    An import error of ``<dag_id>.py`` is reported at once instead of waiting for the timeout.
    """
    deadline = time.monotonic() + timeout_s
    dsn = metadata_dsn(env)
    errors: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        if procs is not None:
            procs.check_running()
        with contextlib.suppress(psycopg.OperationalError), psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT d.is_paused FROM dag d JOIN serialized_dag s ON s.dag_id = d.dag_id "
                "WHERE d.dag_id = %s AND NOT d.is_stale LIMIT 1", (dag_id,)
            ).fetchone()
            if row is not None:
                return bool(row[0])
            errors = [(str(f), str(t)) for f, t in conn.execute("SELECT filename, stacktrace FROM import_error")]
            if any(Path(name).name == f"{dag_id}.py" for name, _ in errors):
                raise AirflowStartError(f"{dag_id} cannot run, its DAG file does not import:\n{_describe(errors)}")
        time.sleep(1.0)
    raise AirflowStartError(
        f"DAG {dag_id} was not parsed within {timeout_s:.0f} s; is the dag-processor running and "
        f"is the DAG in {env.get('AIRFLOW__CORE__DAGS_FOLDER')}? See dag-processor.log. {_describe(errors)}"
    )


def _describe(import_errors: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"import error in {name}:\n{trace}" for name, trace in import_errors)


def unpause_dag(env: Mapping[str, str], dag_id: str, timeout_s: float = CLI_TIMEOUT_S) -> None:
    """``airflow dags unpause DAG_ID``; the DAG must have been parsed (see :func:`wait_for_dag`)."""
    try:
        proc = subprocess.run([airflow_bin(), "dags", "unpause", dag_id], env=dict(env), capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise AirflowStartError(f"`airflow dags unpause {dag_id}` took over {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        raise AirflowStartError(f"`airflow dags unpause {dag_id}` failed:\n{(proc.stdout + proc.stderr)[-3000:]}")


# -- process trees ---------------------------------------------------------------------------


def _stop_together(components: Sequence[_Component], timeout_s: float) -> list[str]:
    """SIGTERM each component's process group, then kill the tree of each one still running
    after its grace time; returns the names of the killed ones."""
    trees = {c.name: _ProcessTree({c.proc.pid}) for c in components}
    for component in components:
        trees[component.name].refresh()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(component.proc.pid, signal.SIGTERM)
    started = time.monotonic()
    running = list(components)
    late: list[str] = []
    while running:
        waited = time.monotonic() - started
        for component in list(running):
            component.proc.poll()
            if not trees[component.name].refresh():
                running.remove(component)
            elif waited >= min(timeout_s, GRACE_S.get(component.name, timeout_s)):
                trees[component.name].kill(KILL_TIMEOUT_S)
                running.remove(component)
                late.append(component.name)
        time.sleep(0.1)
    return late


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _clock(iso: object) -> str:
    """An ISO timestamp from the health document as local HH:MM:SS."""
    try:
        return datetime.fromisoformat(str(iso)).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "never" if iso is None else str(iso)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _status(health: Mapping[str, Any], key: str) -> str | None:
    value = health.get(key)
    return value.get("status") if isinstance(value, Mapping) else None


class _ProcessTree:
    """The processes descending from ``roots`` or in their process groups, remembered once seen
    (by pid and start time), so that children reparented to PID 1 are still found."""

    def __init__(self, roots: set[int]) -> None:
        self._roots = set(roots)
        self._seen: dict[int, int] = {}
        self._table: dict[int, ProcStat] = {}

    def refresh(self, table: Mapping[int, ProcStat] | None = None) -> set[int]:
        table = proc_table() if table is None else dict(table)
        children: dict[int, list[int]] = {}
        for pid, stat in table.items():
            children.setdefault(stat.ppid, []).append(pid)
        stack = [pid for pid in self._roots | set(self._seen) if pid in table]
        stack += [pid for pid, stat in table.items() if stat.pgid in self._roots]
        found: set[int] = set()
        while stack:
            pid = stack.pop()
            if pid in found or pid not in table:
                continue
            if pid in self._seen and self._seen[pid] != table[pid].start_ticks:
                continue  # the pid was reused by an unrelated process
            found.add(pid)
            stack.extend(children.get(pid, []))
        for pid in found:
            self._seen.setdefault(pid, table[pid].start_ticks)
        self._table = table
        return {pid for pid in found if table[pid].state != "Z"}

    def kill(self, timeout_s: float) -> None:
        """SIGKILL leaves first, so that parents are still there to reap their children."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            alive = self.refresh()
            if not alive:
                return
            parents = {self._table[pid].ppid for pid in alive}
            for pid in (alive - parents) or alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        remaining = self.refresh()
        if remaining:
            log.error("Airflow processes %s survived SIGKILL", sorted(remaining))
