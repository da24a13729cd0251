"""DAG integrity: every DAG file imports cleanly, fast, without touching a database or the network."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_should_import_every_dag_file_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {Path(d.fileloc).name for d in dagbag.dags.values()} == {f.name for f in DAG_FILES}


def test_should_run_every_30_seconds_one_run_at_a_time_and_never_pause_itself(dagbag):
    dag = dagbag.dags["ssh_heartbeat"]
    assert type(dag.timetable).__name__ == "DeltaTriggerTimetable"
    assert dag.schedule == timedelta(seconds=30)
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.max_consecutive_failed_dag_runs == 0
    assert dag.is_paused_upon_creation is False
    assert dag.dagrun_timeout is None


def test_should_document_itself_and_carry_tags_and_owner(dagbag):
    dag = dagbag.dags["ssh_heartbeat"]
    assert "SSH heartbeat" in dag.doc_md
    assert {"monitoring", "heartbeat", "ssh"} <= set(dag.tags)
    for task in dag.tasks:
        assert task.owner == "monitoring"
        assert task.retries == 0, "a probe cycle is never retried: the next cycle is 30 s away"
        assert task.execution_timeout is not None


def test_should_wire_load_probe_materialise_with_status_always_materialised(dagbag):
    dag = dagbag.dags["ssh_heartbeat"]
    assert set(dag.task_ids) == {"load_inventory", "probe_shard", "materialise_and_notify"}
    probe = dag.get_task("probe_shard")
    assert probe.upstream_task_ids == {"load_inventory"}
    assert probe.map_index_template == "{{ shard_label }}"
    materialise = dag.get_task("materialise_and_notify")
    assert materialise.upstream_task_ids == {"probe_shard"}
    assert materialise.downstream_task_ids == set()
    assert materialise.trigger_rule == "all_done"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[f.name for f in DAG_FILES])
def test_should_not_touch_network_or_database_at_parse_time(dag_file, tmp_path):
    """Parse the file in a fresh interpreter where opening any socket raises."""
    guard = (
        "import socket, runpy, sys\n"
        "def refuse(*a, **k): raise RuntimeError('network or database access at parse time')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        f"sys.path.insert(0, {str(REPO / 'plugins')!r})\n"
        f"runpy.run_path({str(dag_file)!r}, run_name='dag_parse_check')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg://nobody@192.0.2.1:1/none"})
    proc = subprocess.run([sys.executable, "-c", guard], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
