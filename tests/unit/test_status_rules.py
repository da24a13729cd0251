"""The status rules of the seed, as a table: OFFLINE after 60 s, ONLINE, WARNING."""

from datetime import UTC, datetime, timedelta

import pytest

from heartbeat.models import HeartbeatState, Status
from heartbeat.status import StatusRules, evaluate_status

pytestmark = pytest.mark.unit

AS_OF = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return AS_OF - timedelta(seconds=seconds)


SEED = StatusRules()
DEBOUNCED = StatusRules(failure_threshold=2, recovery_threshold=2)
WATCHED = StatusRules(stale_after_s=60)

# (id, state, rules or OFFLINE threshold in s, expected status, expected reason)
STATUS_CASES = [
    ("never probed", HeartbeatState(None), 60, Status.OFFLINE, "no heartbeat yet; not probed yet"),
    ("never succeeded", HeartbeatState(None, ago(5), "refused", "connection refused on port 22"), 60,
     Status.OFFLINE, "no heartbeat yet; last attempt: connection refused"),
    ("fresh", HeartbeatState(ago(12.7), ago(12.7)), 60, Status.ONLINE, "heartbeat 12 s ago"),
    ("exactly at threshold is fresh", HeartbeatState(ago(60), ago(60)), 60, Status.ONLINE, "heartbeat 60 s ago"),
    ("just past threshold", HeartbeatState(ago(60.5), ago(0.5), "timeout", "x"), 60, Status.OFFLINE,
     "no heartbeat for 60 s; last attempt: timed out"),
    ("stale with refused attempt", HeartbeatState(ago(95), ago(3), "refused", "x"), 60, Status.OFFLINE,
     "no heartbeat for 95 s; last attempt: connection refused"),
    ("stale, no failure recorded", HeartbeatState(ago(95), ago(95)), 60, Status.OFFLINE, "no heartbeat for 95 s"),
    ("stale with alerts stays offline", HeartbeatState(ago(300), ago(1), "auth", "x", 2, 1), 60,
     Status.OFFLINE, "no heartbeat for 300 s; last attempt: authentication failed"),
    ("fresh with one alert", HeartbeatState(ago(5), ago(5), active_alerts=1), 60, Status.WARNING,
     "heartbeat 5 s ago; 1 active alert"),
    ("fresh with anomalies", HeartbeatState(ago(5), ago(5), active_anomalies=3), 60, Status.WARNING,
     "heartbeat 5 s ago; 3 active anomalies"),
    ("fresh with both", HeartbeatState(ago(5), ago(5), active_alerts=2, active_anomalies=1), 60, Status.WARNING,
     "heartbeat 5 s ago; 2 active alerts, 1 active anomaly"),
    ("custom threshold", HeartbeatState(ago(45), ago(45)), 30, Status.OFFLINE, "no heartbeat for 45 s"),
    ("clock skew reads as zero", HeartbeatState(AS_OF + timedelta(seconds=2)), 60, Status.ONLINE,
     "heartbeat 0 s ago"),
    ("unknown error class shown as is", HeartbeatState(None, ago(1), "weird", "x"), 60, Status.OFFLINE,
     "no heartbeat yet; last attempt: weird"),
    # debounce
    ("one failure of a fresh server counts nothing", HeartbeatState(ago(20), ago(1), "refused", "x",
     consecutive_failures=1), DEBOUNCED, Status.ONLINE, "heartbeat 20 s ago"),
    ("failure threshold reached", HeartbeatState(ago(20), ago(1), "refused", "x", consecutive_failures=2),
     DEBOUNCED, Status.OFFLINE, "2 failed logins in a row; last attempt: connection refused"),
    ("failure threshold off by default", HeartbeatState(ago(20), ago(1), "refused", "x", consecutive_failures=5),
     SEED, Status.ONLINE, "heartbeat 20 s ago"),
    ("recovering", HeartbeatState(ago(1), ago(1), consecutive_successes=1, previous_status="OFFLINE"),
     DEBOUNCED, Status.OFFLINE, "recovering: 1 of 2 successful logins in a row"),
    ("recovered", HeartbeatState(ago(1), ago(1), consecutive_successes=2, previous_status="OFFLINE"),
     DEBOUNCED, Status.ONLINE, "heartbeat 1 s ago"),
    ("recovery threshold only after OFFLINE", HeartbeatState(ago(1), ago(1), consecutive_successes=1,
     previous_status="WARNING"), DEBOUNCED, Status.ONLINE, "heartbeat 1 s ago"),
    # flapping
    ("flapping", HeartbeatState(ago(5), ago(5), flapping=True, flap_percent=62.5), SEED, Status.WARNING,
     "heartbeat 5 s ago; flapping (62% state changes)"),
    ("flapping with an alert", HeartbeatState(ago(5), ago(5), active_alerts=1, flapping=True, flap_percent=50),
     SEED, Status.WARNING, "heartbeat 5 s ago; flapping (50% state changes), 1 active alert"),
    ("flapping but stale heartbeat is offline", HeartbeatState(ago(90), ago(1), "timeout", "x", flapping=True,
     flap_percent=70), SEED, Status.OFFLINE, "no heartbeat for 90 s; last attempt: timed out"),
    # the monitor's own health
    ("monitor stalled", HeartbeatState(ago(400), ago(400), previous_status="ONLINE",
     monitor_last_cycle_at=ago(300)), WATCHED, Status.STALE,
     "monitor stalled since 2026-11-28 11:55:00 UTC: no cycle for 300 s; last known: ONLINE"),
    ("monitor stalled, never evaluated", HeartbeatState(None, monitor_last_cycle_at=ago(61)), WATCHED,
     Status.STALE, "monitor stalled since 2026-11-28 11:58:59 UTC: no cycle for 61 s; last known: unknown"),
    ("monitor healthy", HeartbeatState(ago(10), ago(10), monitor_last_cycle_at=ago(30)), WATCHED,
     Status.ONLINE, "heartbeat 10 s ago"),
]


@pytest.mark.parametrize(("state", "rules", "status", "reason"),
                         [c[1:] for c in STATUS_CASES], ids=[c[0] for c in STATUS_CASES])
def test_should_decide_status_from_timestamps_and_inputs(state, rules, status, reason):
    decision = evaluate_status(state, AS_OF, rules)
    assert decision.status is status
    assert decision.reason == reason


def test_should_report_heartbeat_age_in_seconds():
    decision = evaluate_status(HeartbeatState(ago(42.5)), AS_OF)
    assert decision.heartbeat_age_s == pytest.approx(42.5)
    assert evaluate_status(HeartbeatState(None), AS_OF).heartbeat_age_s is None
