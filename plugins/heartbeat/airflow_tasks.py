"""The Airflow side of a cycle: thin task callables that the DAG wires, each reading its
run context and the clock once, then handing over to :mod:`heartbeat.cycle`.

Nothing here runs at import time: the DAG file that imports this module is parsed constantly,
so the cycle (the database driver, the SSH stack) is imported by the tasks that run, not here.
"""

from __future__ import annotations

import logging
from typing import Any

from heartbeat.config import settings_from_env
from heartbeat.models import DEFAULT_SITE

log = logging.getLogger(__name__)


def _run_id() -> str:
    from airflow.sdk import get_current_context

    return str(get_current_context()["run_id"])


def load_inventory(site: str = DEFAULT_SITE) -> list[dict[str, Any]]:
    """Open the cycle, read the enabled servers of ``site`` and return them as shards (server ids,
    site and a label), one mapped probe task each."""
    from heartbeat import cycle

    shards = cycle.load_site_shards(settings_from_env(), _run_id(), cycle.utc_now(), site=site)
    return [shard.to_json() for shard in shards[site]]


def probe_shard(shard: dict[str, Any]) -> dict[str, Any]:
    """Probe the servers of one shard concurrently and record their results.

    A server that is down is a result, not an error: this task fails only when the heartbeat
    database cannot be read or written.
    """
    from airflow.sdk import get_current_context

    from heartbeat import cycle

    context = get_current_context()
    context["shard_label"] = shard["label"]  # type: ignore[typeddict-unknown-key]
    settings = settings_from_env()
    summary = cycle.probe_shard(settings, str(context["run_id"]), shard)
    log.info("site %s, worker %s: probed %d servers: %d ok, failures %s, %.0f ms, CPU %.0f ms (logins %.0f ms)",
             shard.get("site"), settings.worker, summary.probed,
             summary.ok, summary.by_error_class or "none", summary.duration_ms, summary.cpu_ms, summary.login_cpu_ms)
    return summary.to_json()


def materialise_and_notify() -> dict[str, int]:
    """Evaluate every server's status now and record the changes (also prunes old history), then
    notify the changes that have held long enough (each once per channel, none for a server in
    maintenance) and a stalled monitor, through the channels defined as Airflow connections.

    One task, not two: every task has a fixed cost in Airflow (scheduling, starting, its runtime;
    docs/benchmarks.md), and a failed send is not a task failure anyway (it is recorded and
    retried on the next cycles).
    """
    from heartbeat import cycle, notify

    settings, run_id, as_of = settings_from_env(), _run_id(), cycle.utc_now()
    counts = cycle.materialise(settings, run_id, as_of)
    sent = notify.run(settings, as_of, current_cycle_id=run_id)
    return counts | {f"notifications_{name}": count for name, count in sent.items()}
