"""The DAG with sites: one load and one probe task per configured site, each probe task sent to its
site's Celery queue, all of them before the status step (which runs whatever they did)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dag_validation

REPO = Path(__file__).resolve().parents[2]
SHOW = (
    "import json, os\n"
    "from airflow.dag_processing.dagbag import DagBag\n"
    f"bag = DagBag(dag_folder={str(REPO / 'dags' / 'ssh_heartbeat.py')!r})\n"
    "dag = bag.dags.get('ssh_heartbeat')\n"
    "print(json.dumps({'errors': [str(e) for e in bag.import_errors.values()], 'tasks': dag and {\n"
    "    t.task_id: {'queue': t.queue, 'upstream': sorted(t.upstream_task_ids)} for t in dag.tasks}}))\n"
)


def parse_dag(tmp_path: Path, sites: str) -> dict:
    """Parse the DAG file in a fresh interpreter with ``HEARTBEAT_SITES=sites`` (read at parse time)."""
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "HEARTBEAT_"))}
    env.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "HEARTBEAT_SITES": sites})
    proc = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_should_send_each_site_s_probes_to_its_own_queue(tmp_path: Path):
    parsed = parse_dag(tmp_path, "default,dc-b")
    assert parsed["errors"] == []
    tasks = parsed["tasks"]
    assert set(tasks) == {"load_inventory", "probe_shard", "load_inventory_dc-b", "probe_shard_dc-b",
                          "materialise_and_notify"}
    assert tasks["probe_shard"] == {"queue": "heartbeat-default", "upstream": ["load_inventory"]}
    assert tasks["probe_shard_dc-b"] == {"queue": "heartbeat-dc-b", "upstream": ["load_inventory_dc-b"]}
    assert tasks["materialise_and_notify"]["upstream"] == ["probe_shard", "probe_shard_dc-b"]
    assert tasks["load_inventory_dc-b"]["queue"] == tasks["materialise_and_notify"]["queue"] == "default"


def test_should_not_parse_with_a_site_a_queue_cannot_name(tmp_path: Path):
    parsed = parse_dag(tmp_path, "dc-b,DC B")
    assert parsed["tasks"] is None
    assert any("HEARTBEAT_SITES" in e and "'DC B' must be" in e for e in parsed["errors"]), parsed
