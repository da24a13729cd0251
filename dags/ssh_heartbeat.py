"""
### SSH heartbeat

Every 30 seconds, log in over SSH (TCP, key exchange, host key check, public-key
authentication) to every enabled server of the inventory in the heartbeat database. Nothing is
installed on the servers: a successful login is a heartbeat.

1. **load_inventory** reads the enabled servers and cuts them into shards;
2. **probe_shard** (mapped, one per shard, named after the servers it holds) logs in to its
   servers concurrently and writes their results in one transaction; a down server is a result,
   not a task failure;
3. **materialise_and_notify** (runs even when probes failed) writes `server_status` and one
   `status_events` row per change: OFFLINE (no heartbeat within 60 s), ONLINE, or WARNING
   (fresh heartbeat, but an active alert or anomaly); then sends what has changed (server
   OFFLINE, recovered, host key changed, monitor stalled) by e-mail and webhook, each change
   once, none during a maintenance window.

Settings are `HEARTBEAT_*` environment variables; credentials come from the Airflow connections
`heartbeat_db` and `heartbeat_ssh`, notification channels from `heartbeat_smtp` and
`heartbeat_webhook`. See the README.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import TriggerRule, dag, task

from heartbeat import airflow_tasks

load_inventory = task(multiple_outputs=False, execution_timeout=timedelta(seconds=60))(
    airflow_tasks.load_inventory
)
probe_shard = task(
    multiple_outputs=False,
    map_index_template="{{ shard_label }}",
    execution_timeout=timedelta(minutes=5),
)(airflow_tasks.probe_shard)
materialise_and_notify = task(
    multiple_outputs=False,
    trigger_rule=TriggerRule.ALL_DONE,
    execution_timeout=timedelta(seconds=180),
)(airflow_tasks.materialise_and_notify)


@dag(
    dag_id="ssh_heartbeat",
    schedule=timedelta(seconds=30),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    max_consecutive_failed_dag_runs=0,  # never auto-pause a monitor
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["monitoring", "heartbeat", "ssh"],
    default_args={"owner": "monitoring", "retries": 0},
)
def ssh_heartbeat() -> None:
    shards = load_inventory()
    probe_shard.expand(shard=shards) >> materialise_and_notify()


dag = ssh_heartbeat()

if __name__ == "__main__":
    dag.test()
