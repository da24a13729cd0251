"""The SQL status decider production uses (``heartbeat_status_evaluate``) against the one table of
cases (tests/status_cases.py) the Python specification is held to: read at ``as_of`` through
``heartbeat_status_at``, and materialised by a cycle through the store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from status_cases import AS_OF, STATUS_CASES, StatusCase
from support import add_servers, query

from heartbeat import store
from heartbeat.models import ErrorClass, HeartbeatState
from heartbeat.status import evaluate_status

pytestmark = pytest.mark.integration


def put_state(dsn: str, state: HeartbeatState) -> int:
    """One enabled server in the state ``state`` describes, written where the SQL decider reads it.
    ``last_error_words`` is not written: the SQL joins error_classes for it."""
    sid = add_servers(dsn, [{"name": "s", "host": "10.0.0.1", "site": state.site}])["s"]
    with store.connect(dsn) as conn, conn.transaction():
        if state.last_attempt_at is not None or state.last_success_at is not None:
            conn.execute(
                "INSERT INTO heartbeats (server_id, last_success_at, last_attempt_at, last_cycle_id, last_ok,"
                " last_error_class, consecutive_failures, consecutive_successes, flapping, flap_percent)"
                " VALUES (%s, %s, %s, 'c', %s, %s, %s, %s, %s, %s)",
                (sid, state.last_success_at, state.last_attempt_at or state.last_success_at,
                 state.last_error_class is None, state.last_error_class, state.consecutive_failures,
                 state.consecutive_successes, state.flapping, state.flap_percent))
        for _ in range(state.active_alerts):
            conn.execute("INSERT INTO alerts (server_id, kind) VALUES (%s, 'a')", (sid,))
        for _ in range(state.active_anomalies):
            conn.execute("INSERT INTO anomalies (server_id, kind) VALUES (%s, 'x')", (sid,))
        conn.execute("INSERT INTO alerts (server_id, kind, resolved_at) VALUES (%s, 'old', now())", (sid,))
        if state.previous_status:
            earlier = AS_OF - timedelta(seconds=30)
            conn.execute("INSERT INTO server_status (server_id, status, reason, status_since, evaluated_at)"
                         " VALUES (%s, %s, 'decided earlier', %s, %s)", (sid, state.previous_status, earlier, earlier))
        if state.site_last_probe_at is not None:
            conn.execute("INSERT INTO site_monitors (site, expected_since, last_attempt_at) VALUES (%s, %s, %s)",
                         (state.site, state.site_last_probe_at,
                          state.site_last_probe_at if state.site_ever_probed else None))
        if state.monitor_last_cycle_at:
            conn.execute("INSERT INTO cycles (cycle_id, started_at, finished_at) VALUES ('c', %s, %s)",
                         (state.monitor_last_cycle_at, state.monitor_last_cycle_at))
    return sid


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in STATUS_CASES])
def test_should_decide_in_sql_what_the_case_table_and_the_specification_say(heartbeat_dsn: str, case: StatusCase):
    put_state(heartbeat_dsn, case.state)
    rules = case.rules
    [row] = query(heartbeat_dsn, "SELECT status, reason, heartbeat_age_s FROM heartbeat_status_at(%s, %s, %s, %s, %s,"
                  " %s)", (AS_OF, rules.offline_after_s, rules.failure_threshold, rules.recovery_threshold,
                          rules.stale_after_s, rules.site_stale_after_s))
    python = evaluate_status(case.state, AS_OF, rules)
    assert (row["status"], row["reason"]) == (python.status.value, python.reason) == (case.status.value, case.reason)
    assert row["heartbeat_age_s"] == pytest.approx(python.heartbeat_age_s)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in STATUS_CASES if not c.read_time_only])
def test_should_materialise_what_the_case_table_says(heartbeat_dsn: str, case: StatusCase):
    put_state(heartbeat_dsn, case.state)
    with store.connect(heartbeat_dsn) as conn:
        store.materialise_status(conn, AS_OF, case.rules)
    [row] = query(heartbeat_dsn, "SELECT status, reason FROM server_status")
    assert (row["status"], row["reason"]) == (case.status.value, case.reason)


def test_should_word_every_error_class_the_probe_reports_in_the_error_classes_table(heartbeat_dsn: str):
    worded = {r["error_class"] for r in query(heartbeat_dsn, "SELECT error_class FROM error_classes")}
    assert {c.value for c in ErrorClass} <= worded
