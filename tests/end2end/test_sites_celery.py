"""Sites on Airflow's CeleryExecutor, with real workers in separate networks: Redis (Debian's
redis-server), the real api-server, scheduler and dag-processor, and three ``airflow celery
worker`` processes: one on the monitor side (root namespace, Airflow's default queue: inventory,
status, notifications) and one per site, each inside its own network namespace, serving only its
site's queue (``heartbeat-a``, ``heartbeat-b``).

The network (10.116.0.0/16, namespaces ``hb16-*``, nothing leaves the machine):

    root (monitor: PostgreSQL, Redis, Airflow API on 10.116.0.1)
      ├── hb16-a (worker-a) ── hb16-a-srv (site A's sshd: a-1, a-2 on 10.116.2.10, .11)
      └── hb16-b (worker-b) ── hb16-b-srv (site B's sshd: b-1, b-2, b-3 on 10.116.6.10, .11, .12)

(heartbeat_lab.sites_lab builds it, as for ``make demo-sites``.)

A site's worker reaches the monitor's services and its own servers, nothing else: no route from
hb16-a to site B's servers, none from the root namespace to either site's servers.

One timeline: every site's servers probed by its own worker only (the recorded site and worker,
the task's queue), and a site-B server put in site A fails as unreachable (it is, from there);
site B's worker stopped and that server moved to site B: site B's servers read STALE ("no probe
from site b since ...") while site A stays ONLINE, one notification says site b has no working
monitor (none per server), and the moved server is no longer probed from site A; the worker
restarted: ONLINE again within two cycles (the moved server probed from site B), and one
notification says so."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support import dump, query, wait_until

from heartbeat_lab import KeyPair
from heartbeat_lab.airflow_procs import metadata_dsn, wait_for_dag
from heartbeat_lab.netns import Namespace, netns_available
from heartbeat_lab.sites_lab import SitesLab

pytestmark = [
    pytest.mark.skipif(netns_available() is not None, reason=str(netns_available())),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (make system-deps)"),
    pytest.mark.timeout(420),
]

DAG_ID = "ssh_heartbeat"
CYCLE_S = 30
STALE_AFTER_S = 25  # below a cycle: a site silent through one whole cycle reads STALE at its end
SLACK_S = 15
SITE_A, SITE_B = ("a-1", "a-2"), ("b-1", "b-2")
MISPLACED = "b-3"  # site B's server, put in site A



class Webhook:
    """Records every POST on 127.0.0.1 (the monitor-side worker sends notifications)."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def connection_json(self) -> str:
        return json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": self.server.server_address[1],
                           "schema": "http", "extra": {"endpoint": "/hook"}})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def no_route(namespace: Namespace | None, address: str) -> bool:
    answer = route_get(namespace, address).lower()
    return "unreachable" in answer or "no route" in answer


def route_get(namespace: Namespace | None, address: str) -> str:
    argv = ["ip", "route", "get", address]
    result = subprocess.run(namespace.exec_argv(argv) if namespace else argv, capture_output=True, text=True,
                            check=False)
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, client_key: KeyPair, webhook: Webhook) -> Iterator[SitesLab]:
    began = time.monotonic()
    env = {"HEARTBEAT_STALE_AFTER_S": str(STALE_AFTER_S), "HEARTBEAT_CONNECT_TIMEOUT_S": "3",
           "HEARTBEAT_PROBE_TIMEOUT_S": "5", "HEARTBEAT_NOTIFY_AFTER_S": "0", "HEARTBEAT_NOTIFY_STALL_AFTER_S": "300",
           "AIRFLOW_CONN_HEARTBEAT_WEBHOOK": webhook.connection_json()}
    with SitesLab(tmp_path_factory.mktemp("sites"), client_key, {"a": 2, "b": 3}, env=env,
                  misplaced={MISPLACED: "a"}) as sites:
        print(f"\nsites lab up in {time.monotonic() - began:.0f} s")
        yield sites
    print(f"sites lab stopped in {sites.stopped_in_s:.0f} s")




def statuses(dsn: str) -> dict[str, dict]:
    rows = query(dsn, "SELECT s.name, s.site, st.status, st.reason FROM servers s "
                      "JOIN server_status st ON st.server_id = s.id")
    return {r["name"]: r for r in rows}


def attempts(dsn: str, name: str) -> list[dict]:
    return query(dsn, "SELECT h.cycle_id, h.ok, h.error_class, h.site, h.worker, h.attempted_at FROM probe_history h "
                      "JOIN servers s ON s.id = h.server_id WHERE s.name = %s ORDER BY h.attempted_at", (name,))


def test_should_probe_each_site_only_from_inside_it_and_read_a_site_without_worker_as_stale_then_recover(
    lab: SitesLab, webhook: Webhook,
):
    assert lab.airflow is not None
    dsn, airflow = lab.heartbeat_dsn, lab.airflow
    began = time.monotonic()
    meta = metadata_dsn(airflow.env)

    def context() -> str:
        runs = query(meta, "SELECT run_id, state, start_date, end_date FROM dag_run ORDER BY start_date")
        tis = query(meta, "SELECT run_id, task_id, map_index, state, queue FROM task_instance ORDER BY run_id, task_id")
        logs = {name: airflow.log_path(name).read_text(errors="replace")[-1500:] for name in ("scheduler",)}
        logs |= {w.name: w.log_path.read_text(errors="replace")[-1500:] for w in lab.workers.values()}
        return (f"status: {dump(statuses(dsn))}\nruns: {dump(runs[-4:])}\ntasks: {dump(tis[-12:])}\n"
                f"webhook: {dump(webhook.received)}\nlogs: {dump(logs)}")

    # The networks: a site reaches the monitor, not the other site; the monitor reaches neither site's servers.
    site_a, site_b = lab.namespaces["a"], lab.namespaces["b"]
    a_server, b_server = lab.servers_of("a")[0].host, lab.servers_of("b")[0].host
    monitor = lab.monitor_address
    assert no_route(site_a, b_server) and no_route(site_b, a_server), route_get(site_a, b_server)
    assert no_route(None, a_server) and no_route(None, b_server), route_get(None, a_server)
    assert not no_route(site_a, monitor) and not no_route(site_b, monitor), route_get(site_a, monitor)

    wait_for_dag(airflow.env, DAG_ID, procs=airflow)

    # -- 1. every site probed from inside it only; the misplaced server unreachable from site A ----------
    print(f"\nphase 1 ({time.monotonic() - began:.0f} s): each site probed by its own worker")
    first = wait_until("a first cycle with every site's servers ONLINE",
                       lambda: (s := statuses(dsn)) and all(s.get(n, {}).get("status") == "ONLINE"
                                                            for n in SITE_A + SITE_B) and s,
                       120, context)
    assert first[MISPLACED]["status"] == "OFFLINE", first
    for name, site in [(n, "a") for n in SITE_A] + [(n, "b") for n in SITE_B]:
        rows = attempts(dsn, name)
        assert rows and {(r["site"], r["worker"], r["ok"]) for r in rows} == {(site, f"worker-{site}", True)}, rows
    misplaced = attempts(dsn, MISPLACED)
    assert {(r["site"], r["worker"]) for r in misplaced} == {("a", "worker-a")}, misplaced
    assert {r["error_class"] for r in misplaced} <= {"unreachable", "timeout"}, misplaced
    queues = query(meta, "SELECT DISTINCT task_id, queue FROM task_instance WHERE task_id LIKE 'probe_shard%%'")
    assert {(q["task_id"], q["queue"]) for q in queues} == {("probe_shard_a", "heartbeat-a"),
                                                             ("probe_shard_b", "heartbeat-b")}, queues

    # -- 2. site B's worker gone: STALE for site B only, one notification; the misplaced server moved to site B ------
    print(f"phase 2 ({time.monotonic() - began:.0f} s): site b's worker stopped, the misplaced server moved to site b")
    lab.workers["b"].stop()
    stopped, told_before = time.monotonic(), len(webhook.received)
    moved_at = time.time()
    query(dsn, "UPDATE servers SET site = 'b' WHERE name = %s RETURNING id", (MISPLACED,))
    stale = wait_until("site b's servers STALE",
                       lambda: (s := statuses(dsn)) and all(s[n]["status"] == "STALE"
                                                            for n in (*SITE_B, MISPLACED)) and s,
                       2 * CYCLE_S + STALE_AFTER_S + SLACK_S, context)
    print(f"site b STALE {time.monotonic() - stopped:.0f} s after its worker stopped")
    assert stale["b-1"]["reason"].startswith("no probe from site b since "), stale
    assert stale["a-1"]["status"] == stale["a-2"]["status"] == "ONLINE", stale
    wait_until("the site notification", lambda: any(n["kind"] == "site_stalled" for n in webhook.received), CYCLE_S,
               context)
    site_stalled = [n for n in webhook.received if n["kind"] == "site_stalled"]
    assert [n["title"] for n in site_stalled] == ["site b has no working monitor"], webhook.received
    assert not [n for n in webhook.received[told_before:] if n.get("server")], webhook.received  # none per server
    # The move took effect at the next cycle: no attempt from site A since (a cycle under way skipped it).
    assert not [r for r in attempts(dsn, MISPLACED) if r["attempted_at"].timestamp() > moved_at], \
        attempts(dsn, MISPLACED)
    health = query(dsn, "SELECT site, stalled, last_worker FROM site_health ORDER BY site")
    assert [(h["site"], h["stalled"], h["last_worker"]) for h in health] == [("a", False, "worker-a"),
                                                                            ("b", True, "worker-b")], health

    # -- 3. the worker back: ONLINE again within two cycles, and one notification --------------------------
    print(f"phase 3 ({time.monotonic() - began:.0f} s): site b's worker restarted")
    lab.workers["b"].start()
    restarted = time.monotonic()
    wait_until("site b's servers ONLINE again",
               lambda: all(statuses(dsn)[n]["status"] == "ONLINE" for n in (*SITE_B, MISPLACED)),
               2 * CYCLE_S + SLACK_S, context)
    print(f"site b ONLINE {time.monotonic() - restarted:.0f} s after its worker restarted")
    after = [r for r in attempts(dsn, MISPLACED) if r["attempted_at"].timestamp() > moved_at]
    assert after and {(r["site"], r["worker"], r["ok"]) for r in after} == {("b", "worker-b", True)}, after
    wait_until("the recovery notification", lambda: any(n["kind"] == "site_recovered" for n in webhook.received),
               CYCLE_S, context)
    told = webhook.received[told_before:]
    assert [n["kind"] for n in told if not n.get("server")] == ["site_stalled", "site_recovered"], told
    # Per server: only the misplaced server, told OFFLINE while unreachable from site A, now up again.
    assert [(n["server"], n["kind"]) for n in told if n.get("server")] == [(MISPLACED, "recovered")], told
    events = query(dsn, "SELECT s.name, e.from_status, e.to_status FROM status_events e JOIN servers s "
                        "ON s.id = e.server_id WHERE s.name = 'b-1' ORDER BY e.id")
    assert [(e["from_status"], e["to_status"]) for e in events][-2:] == [("ONLINE", "STALE"), ("STALE", "ONLINE")], \
        events
