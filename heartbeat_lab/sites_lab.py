"""Sites on one machine: the monitor on CeleryExecutor with each site's worker inside its own
network namespace, for the sites test and ``make demo-sites`` (root only).

The network (a :class:`~heartbeat_lab.netns.LabNetwork`; nothing leaves the machine)::

    root: the monitor (PostgreSQL, Redis, the Airflow API server on MONITOR_ADDRESS, also loopback)
      ├── <prefix>-<site> (its worker) ── <prefix>-<site>-srv (its sshd servers)
      └── ...

A site's namespace routes only to the monitor's address and its own servers' namespace: from
there the other sites' servers are unreachable ("Network is unreachable"), and from the root
namespace no site's servers are. The monitor side runs a Celery worker of its own in the root
namespace, serving Airflow's default queue (the inventory, status and notification tasks).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from heartbeat import store
from heartbeat.inventory import ServerSpec
from heartbeat_lab.airflow_env import (
    airflow_environment,
    migrate_metadata,
    postgres_connection_json,
    ssh_connection_json,
)
from heartbeat_lab.airflow_procs import AirflowProcesses
from heartbeat_lab.celery_workers import CeleryWorker, RedisServer, celery_environment
from heartbeat_lab.netns import LabNetwork, Namespace
from heartbeat_lab.ports import free_port
from heartbeat_lab.postgres import PostgresServer
from heartbeat_lab.service import LabService
from heartbeat_lab.sshd import KeyPair, SshdServer

__all__ = ["SiteServer", "SitesLab"]

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor")


@dataclass(frozen=True)
class SiteServer:
    """One sshd of a site: ``name`` in the inventory, listening on ``host`` inside the site's
    servers' namespace."""

    name: str
    site: str
    host: str
    sshd: SshdServer


class SitesLab(LabService):
    """Start everything in order, stop everything in reverse; a context manager.

    :param work_dir: logs, keys, sshd and Airflow homes (the PostgreSQL data goes to a folder of
        its own outside it, removed on stop).
    :param client_key: the key the monitor logs in with; every sshd accepts it.
    :param sites: site name -> servers (sshd) in it, each on its own address.
    :param cidr: the LabNetwork range; the site of index i uses 10.x.(4i+1).0/30 (its link to the
        monitor) and 10.x.(4i+2).0/24 (its servers' namespace), the monitor x.0.1.
    :param prefix: the LabNetwork's name prefix.
    :param env: more environment for Airflow and the workers (``HEARTBEAT_*``, ``AIRFLOW__*``).
    :param misplaced: inventory rows put in another site than their servers' (name -> site).
    """

    def __init__(self, work_dir: Path, client_key: KeyPair, sites: Mapping[str, int], *, cidr: str = "10.116.0.0/16",
                 prefix: str = "hb16", env: Mapping[str, str] | None = None,
                 misplaced: Mapping[str, str] | None = None, worker_concurrency: int = 2) -> None:
        self.work_dir = Path(work_dir)
        self._client_key = client_key
        self._sites = dict(sites)
        self._extra_env = dict(env or {})
        self._misplaced = dict(misplaced or {})
        self._worker_concurrency = worker_concurrency
        self.net = LabNetwork(cidr, prefix)
        octets = cidr.split(".")
        self._base = f"{octets[0]}.{octets[1]}"
        self.monitor_address = f"{self._base}.0.1"
        self.namespaces: dict[str, Namespace] = {}
        self.servers: list[SiteServer] = []
        self.workers: dict[str, CeleryWorker] = {}
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.airflow: AirflowProcesses | None = None
        self.heartbeat_dsn = ""
        self._pg_root: Path | None = None
        self._stack = contextlib.ExitStack()

    @property
    def site_names(self) -> list[str]:
        return list(self._sites)

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._stack.enter_context(self.net)
        self.net.add_root_address(f"{self.monitor_address}/32")
        for index, (site, count) in enumerate(self._sites.items()):
            self._start_site(index, site, count)
        self._pg_root = Path(tempfile.mkdtemp(prefix="heartbeat-sites-pg-"))  # the postgres user must reach it
        self.postgres = self._stack.enter_context(
            PostgresServer(self._pg_root / "data", also_listen=[self.monitor_address]))
        self.redis = self._stack.enter_context(
            RedisServer(self.work_dir / "redis", hosts=("127.0.0.1", self.monitor_address)))
        self.postgres.create_database("heartbeat")
        self.postgres.create_database("airflow")
        self.heartbeat_dsn = self.postgres.dsn("heartbeat")
        with store.connect(self.heartbeat_dsn) as conn:
            store.migrate(conn)
            store.upsert_servers(conn, [ServerSpec(s.name, s.host, s.sshd.port,
                                                   site=self._misplaced.get(s.name, s.site)) for s in self.servers])
        env = celery_environment(self._airflow_env(), self.redis.url(self.monitor_address),
                                 f"db+postgresql://postgres@{self.monitor_address}:{self.postgres.port}/airflow")
        migrate_metadata(env)
        self.airflow = AirflowProcesses(env, self.work_dir / "logs", components=AIRFLOW_COMPONENTS)
        self._stack.callback(self._stop_airflow)
        self.workers = {"monitor": CeleryWorker(self.airflow.env, "worker-monitor", ["default"], self.work_dir / "logs",
                                                concurrency=4)}
        self.workers |= {site: CeleryWorker(self.airflow.env, f"worker-{site}", [f"heartbeat-{site}"],
                                            self.work_dir / "logs", netns=self.namespaces[site],
                                            concurrency=self._worker_concurrency) for site in self._sites}
        self._stack.callback(self._stop_workers)
        for worker in self.workers.values():
            worker.start(wait=False)
        self.airflow.start()
        for worker in self.workers.values():
            worker.wait_until_ready()

    def _start_site(self, index: int, site: str, count: int) -> None:
        link, servers_net = f"{self._base}.{4 * index + 1}", f"{self._base}.{4 * index + 2}"
        worker_ns, servers_ns = self.net.namespace(site), self.net.namespace(f"{site}-srv")
        self.net.link(None, worker_ns, f"{link}.1/30", f"{link}.2/30")
        self.net.link(worker_ns, servers_ns, f"{servers_net}.1/30", f"{servers_net}.2/30")
        worker_ns.add_route(f"{self.monitor_address}/32", f"{link}.1")  # the monitor's services, nothing else
        worker_ns.add_route(f"{servers_net}.0/24", f"{servers_net}.2")  # its servers' addresses
        self.namespaces[site] = worker_ns
        for number in range(1, count + 1):
            host = f"{servers_net}.{9 + number}"
            servers_ns.add_address(f"{host}/32")
            sshd = SshdServer(self.work_dir / f"sshd-{site}-{number}", host, netns=servers_ns,
                              authorized_keys=[self._client_key.public_line])
            self._stack.callback(sshd.stop)
            sshd.start()
            self.servers.append(SiteServer(f"{site}-{number}", site, host, sshd))

    def _airflow_env(self) -> dict[str, str]:
        assert self.postgres is not None
        monitor, port = self.monitor_address, self.postgres.port
        return airflow_environment(
            self.work_dir / "airflow_home",
            f"postgresql+psycopg://postgres@{monitor}:{port}/airflow",
            heartbeat_db_json=postgres_connection_json(monitor, port, "heartbeat"),
            ssh_conn_json=ssh_connection_json("root", self._client_key.private_path),
            api_port=free_port(), api_host=monitor,
            extra={"HEARTBEAT_SITES": ",".join(self._sites),
                   # a site without workers: its queued probe task fails this soon and the cycle goes on
                   "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "10",
                   "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "2",
                   "AIRFLOW__SCHEDULER__NUM_STUCK_IN_QUEUED_RETRIES": "0",
                   **self._extra_env},
        )

    def _stop_workers(self) -> None:
        stopping = [threading.Thread(target=w.stop, kwargs={"grace_s": 2.0}) for w in self.workers.values()]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()

    def _stop_airflow(self) -> None:
        if self.airflow is not None:
            self.airflow.stop(timeout_s=3.0)

    def stop(self) -> None:
        started = time.monotonic()
        try:
            self._stack.close()
        finally:
            if self._pg_root is not None:
                shutil.rmtree(self._pg_root, ignore_errors=True)
                self._pg_root = None
        self.stopped_in_s = time.monotonic() - started

    def servers_of(self, site: str) -> Sequence[SiteServer]:
        return [s for s in self.servers if s.site == site]
