"""Rules every DAG of the project keeps: documented, tagged, owned, never paused by failures."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.dag_validation

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
