"""The demo's restart delay for Airflow's components that exit (the scheduler, the dag-processor
and the triggerer exit while PostgreSQL is down): doubled with each restart in a row, up to 30 s.

The database restart itself (PostgreSQL stopped for a minute, then started again: every server
STALE right after the return, no OFFLINE flip for a server that was up, the statuses back within two
cycles, each restart printed) runs in ``tests/end2end/test_demo.py``, on the same demo run as its other checks,
so that the demo is started once.
"""

from __future__ import annotations

import pytest

from heartbeat_lab.airflow_procs import RestartPolicy

pytestmark = [pytest.mark.unit]


@pytest.mark.parametrize(("in_a_row", "delay_s"), [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (40, 30)],
                         ids=lambda v: str(v))
def test_should_double_the_restart_delay_up_to_thirty_seconds(in_a_row, delay_s):
    assert RestartPolicy().delay_s(in_a_row) == delay_s
