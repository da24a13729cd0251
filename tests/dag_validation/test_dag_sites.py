"""The DAG with sites: one load and one probe task per configured site, each probe task sent to its
site's Celery queue, all of them before the status step (which runs whatever they did)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dag_validation

REPO = Path(__file__).resolve().parents[2]
# Parses the DAG file once per HEARTBEAT_SITES value given as arguments, in one fresh interpreter
# (the factory reads the setting each time the file is parsed).
SHOW = (
    "import json, os, sys\n"
    "from airflow.dag_processing.dagbag import DagBag\n"
    "for sites in sys.argv[1:]:\n"
    "    os.environ['HEARTBEAT_SITES'] = sites\n"
    f"    bag = DagBag(dag_folder={str(REPO / 'dags' / 'ssh_heartbeat.py')!r})\n"
    "    dag = bag.dags.get('ssh_heartbeat')\n"
    "    print(json.dumps({'errors': [str(e) for e in bag.import_errors.values()], 'tasks': dag and {\n"
    "        t.task_id: {'queue': t.queue, 'upstream': sorted(t.upstream_task_ids)} for t in dag.tasks}}))\n"
)


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The DAG parsed with two sites, and with a site name a queue cannot hold."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "HEARTBEAT_"))}
    env.update({"AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow_home")), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    runs = ("default,dc-b", "dc-b,DC B")
    proc = subprocess.run([sys.executable, "-c", SHOW, *runs], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return dict(zip(runs, (json.loads(line) for line in lines), strict=True))


def test_should_send_each_site_s_probes_to_its_own_queue(parsed: dict[str, dict]):
    got = parsed["default,dc-b"]
    assert got["errors"] == []
    tasks = got["tasks"]
    assert set(tasks) == {"load_inventory", "probe_shard", "load_inventory_dc-b", "probe_shard_dc-b",
                          "materialise_and_notify"}
    assert tasks["probe_shard"] == {"queue": "heartbeat-default", "upstream": ["load_inventory"]}
    assert tasks["probe_shard_dc-b"] == {"queue": "heartbeat-dc-b", "upstream": ["load_inventory_dc-b"]}
    assert tasks["materialise_and_notify"]["upstream"] == ["probe_shard", "probe_shard_dc-b"]
    assert tasks["load_inventory_dc-b"]["queue"] == tasks["materialise_and_notify"]["queue"] == "default"


def test_should_not_parse_with_a_site_a_queue_cannot_name(parsed: dict[str, dict]):
    got = parsed["dc-b,DC B"]
    assert got["tasks"] is None
    assert any("HEARTBEAT_SITES" in e and "'DC B' must be" in e for e in got["errors"]), got
