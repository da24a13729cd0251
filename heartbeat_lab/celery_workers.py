"""CeleryExecutor in the lab: a Redis broker (Debian's ``redis-server``) and ``airflow celery
worker`` processes, each optionally inside a network namespace of a
:class:`heartbeat_lab.netns.LabNetwork` (a site's worker, which reaches only its own site's
servers and the monitor's services).

The broker binds loopback and, for workers in namespaces, addresses of a started LabNetwork's
range (:func:`heartbeat_lab.ports.require_lab_host`). Nothing is persisted (no RDB, no AOF).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from heartbeat_lab.airflow_env import airflow_bin
from heartbeat_lab.airflow_procs import _ProcessTree
from heartbeat_lab.netns import Namespace
from heartbeat_lab.ports import free_port, require_lab_host
from heartbeat_lab.service import LabService, tail

__all__ = ["CeleryWorker", "RedisServer", "celery_environment"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0
WORKER_READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 5.0
KILL_TIMEOUT_S = 5.0
INSTALL_HINT = "install it with `apt-get install redis-server` (or `make system-deps`)"


class RedisServer(LabService):
    """One ``redis-server`` on ``hosts`` (the first one loopback) and a port chosen once."""

    def __init__(self, work_dir: Path, hosts: Sequence[str] = ("127.0.0.1",), port: int | None = None) -> None:
        self._hosts = tuple(require_lab_host(h) for h in hosts)
        self._port = port if port is not None else free_port("127.0.0.1")
        self._dir = Path(work_dir)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self._port

    def url(self, host: str | None = None, db: int = 0) -> str:
        """``redis://host:port/db`` (default host: the first one)."""
        return f"redis://{host or self._hosts[0]}:{self._port}/{db}"

    @property
    def log_path(self) -> Path:
        return self._dir / "redis.log"

    def start(self) -> None:
        if self._proc is not None:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError(f"redis-server is not installed; {INSTALL_HINT}")
        self._dir.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--bind", *self._hosts, "--port", str(self._port), "--save", "", "--appendonly", "no",
                "--protected-mode", "no", "--dir", str(self._dir), "--logfile", str(self.log_path),
                "--daemonize", "no"]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        self._track()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self.ping():
                log.info("redis-server up on %s port %s", ",".join(self._hosts), self._port)
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self._port}:\n{tail(self.log_path)}")

    def ping(self) -> bool:
        try:
            with socket.create_connection((self._hosts[0], self._port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._untrack()
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=KILL_TIMEOUT_S)


def celery_environment(env: Mapping[str, str], broker_url: str, result_backend: str) -> dict[str, str]:
    """``env`` (an Airflow environment) switched to CeleryExecutor with this broker and result
    backend (``db+postgresql://...``)."""
    return {
        **env,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": env.get("AIRFLOW__CELERY__WORKER_CONCURRENCY", "4"),
    }


class CeleryWorker(LabService):
    """``airflow celery worker`` serving ``queues`` under the Celery host name ``name``, in
    ``netns`` (None: the root namespace). The worker's tasks see ``HEARTBEAT_WORKER_NAME=name``:
    workers in namespaces of one machine share its host name, and the attempts they record say
    which one made them.

    Restartable: :meth:`stop` then :meth:`start` again (a site's worker lost and back)."""

    def __init__(self, env: Mapping[str, str], name: str, queues: Sequence[str], log_dir: Path,
                 netns: Namespace | None = None, concurrency: int = 4) -> None:
        self._env = {**env, "HEARTBEAT_WORKER_NAME": name}
        self.name = name
        self._queues = tuple(queues)
        self._log_dir = Path(log_dir)
        self._netns = netns
        self._concurrency = concurrency
        self._proc: subprocess.Popen[bytes] | None = None
        self._tree: _ProcessTree | None = None
        self._log_offset = 0

    @property
    def log_path(self) -> Path:
        return self._log_dir / f"celery-worker-{self.name}.log"

    @property
    def queues(self) -> tuple[str, ...]:
        return self._queues

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def argv(self) -> list[str]:
        argv = [airflow_bin(), "celery", "worker", "--queues", ",".join(self._queues), "--celery-hostname",
                self.name, "--concurrency", str(self._concurrency), "--skip-serve-logs", "--without-mingle",
                "--without-gossip"]
        return self._netns.exec_argv(argv) if self._netns else argv

    def start(self, wait: bool = True) -> None:
        if self._proc is not None:
            return
        self._log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self._log_offset = log_file.tell()
            log_file.write(f"--- lab: starting {' '.join(self.argv())} at {time.strftime('%F %T')}\n".encode())
            log_file.flush()
            self._proc = subprocess.Popen(self.argv(), env=self._env, stdin=subprocess.DEVNULL, stdout=log_file,
                                          stderr=subprocess.STDOUT, cwd=self._env.get("AIRFLOW_HOME"),
                                          start_new_session=True)
        self._tree = _ProcessTree({self._proc.pid})
        self._track()
        if wait:
            self.wait_until_ready()

    def wait_until_ready(self, timeout_s: float = WORKER_READY_TIMEOUT_S) -> None:
        """Until Celery logs ``<name> ready.`` (connected to the broker, consuming its queues)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"celery worker {self.name} exited:\n{tail(self.log_path, 40)}")
            with open(self.log_path, "rb") as log_file:
                log_file.seek(self._log_offset)
                if b" ready." in log_file.read():
                    return
            time.sleep(0.5)
        raise RuntimeError(f"celery worker {self.name} not ready within {timeout_s:.0f} s:\n{tail(self.log_path, 40)}")

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL to whatever is left of its tree."""
        proc, tree, self._proc = self._proc, self._tree, None
        self._untrack()
        if proc is None or tree is None:
            return
        tree.refresh()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and tree.refresh():
            proc.poll()
            time.sleep(0.1)
        tree.kill(KILL_TIMEOUT_S)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
