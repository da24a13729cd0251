"""
### Heartbeat housekeeping

The monitor runs 2,880 times a day. Every hour this DAG keeps what that leaves behind within
retention:

- **clean_metadata_db**: `airflow db clean` of run records, task instances, XComs and logs
  older than `HEARTBEAT_METADATA_RETENTION_DAYS` (3);
- **prune_task_logs**: task log files older than `HEARTBEAT_LOG_RETENTION_DAYS` (3);
- **prune_probe_history**: probe history older than `HEARTBEAT_HISTORY_RETENTION_DAYS` (7)
  (each cycle prunes too; this catches up after a pause).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from heartbeat import housekeeping_tasks

clean_metadata_db = task(multiple_outputs=False, execution_timeout=timedelta(minutes=20))(
    housekeeping_tasks.clean_metadata_db
)
prune_task_logs = task(multiple_outputs=False, execution_timeout=timedelta(minutes=20))(
    housekeeping_tasks.prune_task_logs
)
prune_probe_history = task(multiple_outputs=False, execution_timeout=timedelta(minutes=20))(
    housekeeping_tasks.prune_probe_history
)


@dag(
    dag_id="heartbeat_housekeeping",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    max_consecutive_failed_dag_runs=0,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["monitoring", "heartbeat", "housekeeping"],
    default_args={"owner": "monitoring", "retries": 0},
)
def heartbeat_housekeeping() -> None:
    clean_metadata_db()
    prune_task_logs()
    prune_probe_history()


dag = heartbeat_housekeeping()

if __name__ == "__main__":
    dag.test()
