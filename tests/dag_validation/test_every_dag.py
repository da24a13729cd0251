"""Rules every DAG of the project keeps: documented, tagged, owned, never paused by failures."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {"ssh_heartbeat": timedelta(seconds=30), "heartbeat_housekeeping": timedelta(hours=1)}


@pytest.fixture(scope="module")
def dags(tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags


def test_should_hold_exactly_the_project_dags(dags):
    assert set(dags) == set(EXPECTED)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_should_keep_the_project_rules(dags, dag_id):
    dag = dags[dag_id]
    assert dag.schedule == EXPECTED[dag_id]
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.max_consecutive_failed_dag_runs == 0, "a monitor must never pause itself"
    assert dag.is_paused_upon_creation is False
    assert dag.doc_md and dag.doc_md.strip().startswith("###")
    assert "monitoring" in dag.tags
    for task in dag.tasks:
        assert task.owner == "monitoring" and task.retries == 0
        assert task.execution_timeout is not None


@pytest.mark.parametrize("dag_file", sorted(p.name for p in (REPO / "dags").glob("*.py")))
def test_should_parse_without_the_ssh_stack_or_the_database_driver(dag_file):
    """The DAG processor parses every file every 30 s and every task parses its DAG file first:
    asyncssh and psycopg (about 0.25 s to import) belong to the tasks that use them."""
    import subprocess
    import sys

    probe = (
        "import sys, runpy\n"
        f"runpy.run_path({str(REPO / 'dags' / dag_file)!r})\n"
        "print(sorted(m for m in ('asyncssh', 'psycopg', 'paramiko') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
