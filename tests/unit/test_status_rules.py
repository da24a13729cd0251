"""The status rules of the seed, as a table: OFFLINE after 60 s, ONLINE, WARNING."""

from datetime import UTC, datetime, timedelta

import pytest

from heartbeat.models import HeartbeatState, Status
from heartbeat.status import evaluate_status

pytestmark = pytest.mark.unit

AS_OF = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return AS_OF - timedelta(seconds=seconds)


# (id, state, threshold, expected status, expected reason)
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
]


@pytest.mark.parametrize(("state", "threshold_s", "status", "reason"),
                         [c[1:] for c in STATUS_CASES], ids=[c[0] for c in STATUS_CASES])
def test_should_decide_status_from_timestamps_and_inputs(state, threshold_s, status, reason):
    decision = evaluate_status(state, AS_OF, threshold_s)
    assert decision.status is status
    assert decision.reason == reason


def test_should_report_heartbeat_age_in_seconds():
    decision = evaluate_status(HeartbeatState(ago(42.5)), AS_OF)
    assert decision.heartbeat_age_s == pytest.approx(42.5)
    assert evaluate_status(HeartbeatState(None), AS_OF).heartbeat_age_s is None
