"""``make demo-sites``: the monitor on CeleryExecutor with two sites in two network namespaces,
until Ctrl-C (root only: namespaces).

Redis, PostgreSQL, the Airflow api-server, scheduler and dag-processor run on this machine (the
monitor side, with a Celery worker of its own for the inventory and status tasks); each site,
``dc-a`` and ``dc-b``, has three OpenSSH servers in a namespace of their own and a Celery worker
in another that serves only the site's queue and is the only way to reach them
(:mod:`heartbeat_lab.sites_lab`). After every cycle a summary per site is printed: its servers'
statuses and the last attempt from it, by which worker.

To show what happens when a site loses its monitor, dc-b's worker is stopped after
``--outage-after`` seconds (default 120; 0: never) and started again ``--outage-for`` seconds
later (default 90): dc-b's servers read STALE with "no probe from site dc-b since ...", dc-a's stay
ONLINE, and they recover once the worker is back. Everything starts afresh in ``.state/sites``
and is stopped and removed on Ctrl-C, SIGTERM or ``--exit-after``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import psycopg

from heartbeat import store
from heartbeat_lab.airflow_env import REPO_ROOT
from heartbeat_lab.airflow_procs import AirflowStartError
from heartbeat_lab.demo import EXIT_AFTER_ENV, StopDemo, run_until_stopped
from heartbeat_lab.netns import NetnsUnavailable, netns_available
from heartbeat_lab.sites_lab import SitesLab
from heartbeat_lab.sshd import generate_keypair

EXIT_OK, EXIT_ERROR = 0, 1
SITES = {"dc-a": 3, "dc-b": 3}
OUTAGE_SITE = "dc-b"
POLL_S = 2.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make demo-sites", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state" / "sites")
    parser.add_argument("--outage-after", type=float, default=120.0, metavar="S",
                        help=f"stop {OUTAGE_SITE}'s worker after this many seconds (0: never)")
    parser.add_argument("--outage-for", type=float, default=90.0, metavar="S", help="and start it again after this")
    parser.add_argument("--exit-after", type=float, default=float(os.environ.get(EXIT_AFTER_ENV) or 0) or None,
                        metavar="S", help="stop by itself after this many seconds")
    return parser.parse_args(argv)


def site_summary(dsn: str) -> tuple[object, list[str]]:
    """(what makes it worth printing again, the lines): per site, its servers' statuses and its
    last attempt."""
    with store.connect(dsn) as conn:
        last = conn.execute("SELECT cycle_id, finished_at FROM cycles WHERE finished_at IS NOT NULL "
                            "ORDER BY finished_at DESC LIMIT 1").fetchone()
        rows = conn.execute("SELECT s.site, st.status, st.reason FROM servers s "
                            "LEFT JOIN server_status st ON st.server_id = s.id WHERE s.enabled").fetchall()
        sites = conn.execute("SELECT site, last_worker, last_attempt_age_s, health FROM site_health "
                             "ORDER BY site").fetchall()
    stamp = time.strftime("%H:%M:%S")
    if last is None:
        return "waiting", [f"{stamp}  waiting for the first cycle (the workers are starting)"]
    lines = [f"{stamp}  cycle finished {last['finished_at'].astimezone():%H:%M:%S}"]
    state: list[object] = [last["cycle_id"]]
    for site in sites:
        counts = Counter(r["status"] or "not decided" for r in rows if r["site"] == site["site"])
        age = site["last_attempt_age_s"]
        probe = "no probe yet" if age is None else f"last probe {age:.0f} s ago by {site['last_worker']}"
        lines.append(f"          site {site['site']:<5} {', '.join(f'{n} {s}' for s, n in sorted(counts.items())):<22}"
                     f" {probe}; {site['health']}")
        reasons = {r["reason"] for r in rows if r["site"] == site["site"] and r["status"] == "STALE"}
        lines += [f"                     STALE: {reason}" for reason in sorted(reasons)]
        state.append((site["site"], tuple(sorted(counts.items())), site["health"]))
    return tuple(state), lines


def run(options: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    reason = netns_available()
    if reason:
        raise NetnsUnavailable(f"make demo-sites needs network namespaces: {reason}")
    work = options.state_dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    key = generate_keypair(work / "id_ed25519", comment="heartbeat-demo-sites")
    began = time.monotonic()
    print(f"starting: a network per site, sshd servers, PostgreSQL, Redis, Airflow and three Celery workers "
          f"(logs in {work / 'logs'})", flush=True)
    lab = SitesLab(work, key, SITES)
    stack.callback(lab.stop)
    lab.start()
    assert lab.airflow is not None
    print(f"""up in {time.monotonic() - began:.0f} s
Airflow UI   {lab.airflow.api_url}   (password in {work / 'airflow_home'}/simple_auth_manager_passwords.json.generated)
Sites        {', '.join(f"{s} ({', '.join(x.host for x in lab.servers_of(s))}, queue heartbeat-{s})" for s in SITES)}
Workers      {', '.join(f"{w.name} (queues {', '.join(w.queues)})" for w in lab.workers.values())}
Outage       {OUTAGE_SITE}'s worker stopped after {options.outage_after:g} s for {options.outage_for:g} s
Stop         Ctrl-C
""" if options.outage_after else f"up in {time.monotonic() - began:.0f} s; Airflow UI {lab.airflow.api_url}; "
      "Ctrl-C stops", flush=True)
    watch(lab, options, began)


def watch(lab: SitesLab, options: argparse.Namespace, began: float) -> None:
    shown: object = None
    stop_at = began + options.outage_after if options.outage_after else None
    start_at = stop_at + options.outage_for if stop_at is not None else None
    while options.exit_after is None or time.monotonic() - began < options.exit_after:
        now = time.monotonic()
        if stop_at is not None and now >= stop_at:
            print(f"{time.strftime('%H:%M:%S')}  stopping {OUTAGE_SITE}'s worker (its site loses its monitor)",
                  flush=True)
            lab.workers[OUTAGE_SITE].stop()
            stop_at = None
        elif start_at is not None and stop_at is None and now >= start_at:
            print(f"{time.strftime('%H:%M:%S')}  starting {OUTAGE_SITE}'s worker again", flush=True)
            lab.workers[OUTAGE_SITE].start()
            start_at = None
        try:
            key, lines = site_summary(lab.heartbeat_dsn)
        except psycopg.Error as exc:
            key, lines = str(exc), [f"{time.strftime('%H:%M:%S')}  cannot read the status: {exc}"]
        if key != shown:
            print("\n".join(lines), flush=True)
            shown = key
        time.sleep(POLL_S)
    raise StopDemo(f"--exit-after {options.exit_after:g} s reached")


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    return run_until_stopped(lambda stack: run(options, stack),
                             (NetnsUnavailable, AirflowStartError, RuntimeError, FileNotFoundError,
                              psycopg.OperationalError))


if __name__ == "__main__":
    sys.exit(main())
