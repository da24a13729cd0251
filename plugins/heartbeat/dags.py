"""The DAGs of airflow-ssh-heartbeat, as factories: Airflow reads DAGs only from its DAG folder, so
a deployment drops a two-line file there (the project's own ``dags/`` holds the same two lines)::

    from heartbeat.dags import ssh_heartbeat  # the Airflow DAG of airflow-ssh-heartbeat
    dag = ssh_heartbeat()

The comment is not decoration: Airflow's DAG discovery skips a file that does not contain the
words "airflow" and "dag" (``[core] dag_discovery_safe_mode``).

This module is the one place the DAGs are defined. Importing it is cheap (no database driver, no
SSH stack): the DAG processor parses the DAG files every 30 s.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from airflow.sdk import DAG, TriggerRule, dag, task

from heartbeat import airflow_tasks, housekeeping_tasks
from heartbeat.compat import require_supported_airflow
from heartbeat.config import settings_from_env
from heartbeat.sites import load_task_id, probe_task_id, queue_name

require_supported_airflow()

__all__ = ["HOUSEKEEPING_DOC", "SSH_HEARTBEAT_DOC", "heartbeat_housekeeping", "ssh_heartbeat"]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_ARGS = {"owner": "monitoring", "retries": 0}

SSH_HEARTBEAT_DOC = """
### SSH heartbeat

Every 30 seconds, log in over SSH (TCP, key exchange, host key check, public-key
authentication) to every enabled server of the inventory in the heartbeat database. Nothing is
installed on the servers: a successful login is a heartbeat.

1. **load_inventory** reads the enabled servers and cuts them into shards (one such task per
   site, `load_inventory_<site>` for sites other than `default`);
2. **probe_shard** (mapped, one per shard, named after the servers it holds; one such task per
   site, `probe_shard_<site>` for sites other than `default`, sent to the Celery queue
   `heartbeat-<site>` so that only workers inside that site's network run it) logs in to its
   servers concurrently and writes their results in one transaction; a down server is a result,
   not a task failure;
3. **materialise_and_notify** (runs even when probes failed) writes `server_status` and one
   `status_events` row per change: OFFLINE (no heartbeat within 60 s), ONLINE, WARNING
   (fresh heartbeat, but an active alert or anomaly), or STALE (no attempt from the server's
   site, or no finished cycle, for 60 s); groups servers that failed for one shared cause into
   one incident; then sends what has changed (server OFFLINE, recovered, host key changed, an
   incident, a bastion or a site without a working path or monitor, monitor stalled) on every
   configured channel, each change once, none during a maintenance window.

Settings are `HEARTBEAT_*` environment variables; credentials come from the Airflow connections
`heartbeat_db` and `heartbeat_ssh` (and a bastion's own connection), notification channels from
`heartbeat_smtp`, `heartbeat_webhook`, `heartbeat_slack`, `heartbeat_pagerduty`,
`heartbeat_opsgenie` and `heartbeat_apprise`. The heartbeat database is prepared once with
`heartbeat migrate`. See the README of airflow-ssh-heartbeat.
"""

HOUSEKEEPING_DOC = """
### Heartbeat housekeeping

The monitor runs 2,880 times a day. Every hour this DAG keeps what that leaves behind within
retention:

- **clean_metadata_db**: `airflow db clean` of run records, task instances, XComs and logs
  older than `HEARTBEAT_METADATA_RETENTION_DAYS` (3);
- **prune_task_logs**: task log files older than `HEARTBEAT_LOG_RETENTION_DAYS` (3);
- **prune_probe_history**: probe history older than `HEARTBEAT_HISTORY_RETENTION_DAYS` (7)
  (each cycle prunes too; this catches up after a pause).
"""


def explain_missing_schema(function: F) -> F:
    """The task fails with what to do, not a driver error, when the heartbeat database has no schema
    (or an older one): a new deployment whose operator has not run ``heartbeat migrate`` yet."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        import psycopg
        from airflow.sdk.exceptions import AirflowFailException

        from heartbeat.store import SchemaError

        try:
            return function(*args, **kwargs)
        except SchemaError as exc:
            message = str(exc)
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
            message = (f"the heartbeat database lacks part of its schema ({str(exc).splitlines()[0]}): "
                       "run `heartbeat migrate`")
        log.error("%s", message)
        raise AirflowFailException(message) from None

    return run  # type: ignore[return-value]


# -- the tasks: thin Airflow wrappers of heartbeat.airflow_tasks and heartbeat.housekeeping_tasks --

load_inventory = task(multiple_outputs=False, execution_timeout=timedelta(seconds=60))(
    explain_missing_schema(airflow_tasks.load_inventory)
)
probe_shard = task(
    multiple_outputs=False,
    map_index_template="{{ shard_label }}",
    execution_timeout=timedelta(minutes=5),
)(explain_missing_schema(airflow_tasks.probe_shard))
materialise_and_notify = task(
    multiple_outputs=False,
    trigger_rule=TriggerRule.ALL_DONE,
    execution_timeout=timedelta(seconds=180),
)(explain_missing_schema(airflow_tasks.materialise_and_notify))

clean_metadata_db = task(multiple_outputs=False, execution_timeout=timedelta(minutes=20))(
    housekeeping_tasks.clean_metadata_db
)
prune_task_logs = task(multiple_outputs=False, execution_timeout=timedelta(minutes=20))(
    housekeeping_tasks.prune_task_logs
)
prune_probe_history = task(multiple_outputs=False, execution_timeout=timedelta(minutes=20))(
    explain_missing_schema(housekeeping_tasks.prune_probe_history)
)


# -- the DAGs -------------------------------------------------------------------------------------


def ssh_heartbeat(
    dag_id: str = "ssh_heartbeat",
    schedule: timedelta = timedelta(seconds=30),
    tags: Iterable[str] = ("monitoring", "heartbeat", "ssh"),
    sites: Iterable[str] | None = None,
) -> DAG:
    """The monitor: every ``schedule``, probe every enabled server and materialise their statuses.

    :param dag_id: the DAG's id in Airflow (default ``ssh_heartbeat``).
    :param schedule: the time between two cycles' starts (default 30 s); ``HEARTBEAT_OFFLINE_AFTER_S``
        (60 s) should stay at two cycles or more.
    :param tags: the DAG's tags in the Airflow UI.
    :param sites: the sites probed, one load and one probe task each, the probes on the Celery
        queue ``heartbeat-<site>`` (a mapped task cannot choose its queue per map index); default:
        ``HEARTBEAT_SITES``, read when the DAG file is parsed (the environment only).
    """
    site_list = tuple(sites) if sites is not None else settings_from_env().site_list

    @dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        max_consecutive_failed_dag_runs=0,  # never auto-pause a monitor
        is_paused_upon_creation=False,
        doc_md=SSH_HEARTBEAT_DOC,
        tags=list(tags),
        default_args=DEFAULT_ARGS,
    )
    def monitor() -> None:
        probes = [
            probe_shard.override(task_id=probe_task_id(site), queue=queue_name(site)).expand(
                shard=load_inventory.override(task_id=load_task_id(site))(site=site))
            for site in site_list
        ]
        probes >> materialise_and_notify()

    return monitor()


def heartbeat_housekeeping(
    dag_id: str = "heartbeat_housekeeping",
    schedule: timedelta = timedelta(hours=1),
    tags: Iterable[str] = ("monitoring", "heartbeat", "housekeeping"),
) -> DAG:
    """Retention: every ``schedule``, trim the metadata database, the task logs and the probe history.

    :param dag_id: the DAG's id in Airflow (default ``heartbeat_housekeeping``).
    :param schedule: the time between two runs (default one hour).
    :param tags: the DAG's tags in the Airflow UI.
    """

    @dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        max_consecutive_failed_dag_runs=0,
        is_paused_upon_creation=False,
        doc_md=HOUSEKEEPING_DOC,
        tags=list(tags),
        default_args=DEFAULT_ARGS,
    )
    def housekeeping() -> None:
        clean_metadata_db()
        prune_task_logs()
        prune_probe_history()

    return housekeeping()
