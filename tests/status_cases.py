"""The one table of status cases. Both deciders are held to it: the specification in Python
(``heartbeat.status.evaluate_status``, tests/unit/test_status_rules.py) and the SQL function
production uses (``heartbeat_status_evaluate``, tests/integration/test_status_cases_sql.py).
Same inputs, same status, same reason; time is ``AS_OF``, passed in, never the clock.

A case's error class comes with the words the ``error_classes`` table gives it: the Python
decider is handed them as the SQL one joins them, so the SQL run checks the table says the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from heartbeat.models import ErrorClass, HeartbeatState, Status
from heartbeat.status import StatusRules

AS_OF = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

SEED = StatusRules()
DEBOUNCED = StatusRules(failure_threshold=2, recovery_threshold=2)
WATCHED = StatusRules(stale_after_s=60)
SITES = StatusRules(stale_after_s=60, site_stale_after_s=60)


def ago(seconds: float) -> datetime:
    return AS_OF - timedelta(seconds=seconds)


def failed(state: HeartbeatState, error_class: str, words: str | None) -> HeartbeatState:
    """``state`` with a failed last attempt of ``error_class``, worded ``words`` (None: no words)."""
    return replace(state, last_error_class=error_class, last_error_words=words)


@dataclass(frozen=True)
class StatusCase:
    id: str
    state: HeartbeatState
    rules: StatusRules
    status: Status
    reason: str

    @property
    def read_time_only(self) -> bool:
        """The monitor's STALE is decided when read; a materialised decision never is (a site's is)."""
        return self.status is Status.STALE and self.reason.startswith("monitor stalled")


# Every error class, with its words: a failed first attempt says which.
WORDS: dict[ErrorClass, str] = {
    ErrorClass.DNS: "name does not resolve",
    ErrorClass.REFUSED: "connection refused",
    ErrorClass.TIMEOUT: "timed out",
    ErrorClass.UNREACHABLE: "network unreachable",
    ErrorClass.BANNER: "not an SSH server",
    ErrorClass.KEX: "SSH key exchange failed",
    ErrorClass.HOST_KEY_UNKNOWN: "host key not known",
    ErrorClass.HOST_KEY_CHANGED: "host key changed",
    ErrorClass.AUTH: "authentication failed",
    ErrorClass.PATH_DOWN: "unreachable via its bastion",
    ErrorClass.FORWARDING_REFUSED: "its bastion refused to forward to it",
    ErrorClass.OTHER: "error",
}
NEVER_SUCCEEDED = HeartbeatState(None, ago(5))
REFUSED = ("refused", WORDS[ErrorClass.REFUSED])
TIMEOUT = ("timeout", WORDS[ErrorClass.TIMEOUT])

STATUS_CASES: list[StatusCase] = [
    # OFFLINE: never
    StatusCase("never probed", HeartbeatState(None), SEED, Status.OFFLINE, "no heartbeat yet; not probed yet"),
    *[StatusCase(f"never succeeded: {c.value}", failed(NEVER_SUCCEEDED, c.value, w), SEED, Status.OFFLINE,
                 f"no heartbeat yet; last attempt: {w}") for c, w in WORDS.items()],
    StatusCase("unknown error class shown as is", failed(NEVER_SUCCEEDED, "weird", None), SEED, Status.OFFLINE,
               "no heartbeat yet; last attempt: weird"),
    # ONLINE, and the boundary: exactly offline_after_s old is still fresh
    StatusCase("fresh", HeartbeatState(ago(12.7), ago(12.7)), SEED, Status.ONLINE, "heartbeat within 60 s"),
    StatusCase("exactly at threshold is fresh", HeartbeatState(ago(60), ago(60)), SEED, Status.ONLINE,
               "heartbeat within 60 s"),
    StatusCase("clock skew reads as zero", HeartbeatState(AS_OF + timedelta(seconds=2)), SEED, Status.ONLINE,
               "heartbeat within 60 s"),
    StatusCase("fractional threshold", HeartbeatState(ago(7), ago(7)), StatusRules(offline_after_s=7.5),
               Status.ONLINE, "heartbeat within 7.5 s"),
    # OFFLINE: too old
    StatusCase("just past threshold", failed(HeartbeatState(ago(60.5), ago(0.5)), *TIMEOUT), SEED, Status.OFFLINE,
               "no heartbeat for over 60 s; last attempt: timed out"),
    StatusCase("too old with refused attempt", failed(HeartbeatState(ago(95), ago(3)), *REFUSED), SEED,
               Status.OFFLINE, "no heartbeat for over 60 s; last attempt: connection refused"),
    StatusCase("too old, no failure recorded", HeartbeatState(ago(95), ago(95)), SEED, Status.OFFLINE,
               "no heartbeat for over 60 s"),
    StatusCase("too old with alerts stays offline",
               failed(HeartbeatState(ago(300), ago(1), active_alerts=2, active_anomalies=1), "auth",
                      WORDS[ErrorClass.AUTH]), SEED, Status.OFFLINE,
               "no heartbeat for over 60 s; last attempt: authentication failed"),
    # The jump path is a dependency, not a rule: behind a bastion that is down, the seed's vocabulary
    # (fresh: still ONLINE; too old: OFFLINE), the cause named as the last attempt
    StatusCase("bastion down, heartbeat still fresh",
               failed(HeartbeatState(ago(30), ago(0.5)), "path_down", WORDS[ErrorClass.PATH_DOWN]), SEED,
               Status.ONLINE, "heartbeat within 60 s"),
    StatusCase("bastion down, heartbeat too old",
               failed(HeartbeatState(ago(90), ago(0.5)), "path_down", WORDS[ErrorClass.PATH_DOWN]), SEED,
               Status.OFFLINE, "no heartbeat for over 60 s; last attempt: unreachable via its bastion"),
    StatusCase("custom threshold", HeartbeatState(ago(45), ago(45)), StatusRules(offline_after_s=30),
               Status.OFFLINE, "no heartbeat for over 30 s"),
    # WARNING: a fresh heartbeat with an alert, an anomaly or flapping
    StatusCase("fresh with one alert", HeartbeatState(ago(5), ago(5), active_alerts=1), SEED, Status.WARNING,
               "heartbeat within 60 s; 1 active alert"),
    StatusCase("fresh with anomalies", HeartbeatState(ago(5), ago(5), active_anomalies=3), SEED, Status.WARNING,
               "heartbeat within 60 s; 3 active anomalies"),
    StatusCase("fresh with both", HeartbeatState(ago(5), ago(5), active_alerts=2, active_anomalies=1), SEED,
               Status.WARNING, "heartbeat within 60 s; 2 active alerts, 1 active anomaly"),
    StatusCase("flapping", HeartbeatState(ago(5), ago(5), flapping=True, flap_percent=62.5), SEED, Status.WARNING,
               "heartbeat within 60 s; flapping (62% state changes)"),
    StatusCase("flapping with an alert and an anomaly",
               HeartbeatState(ago(5), ago(5), active_alerts=1, active_anomalies=1, flapping=True, flap_percent=50),
               SEED, Status.WARNING, "heartbeat within 60 s; flapping (50% state changes), 1 active alert, "
               "1 active anomaly"),
    StatusCase("flapping but too old is offline",
               failed(HeartbeatState(ago(90), ago(1), flapping=True, flap_percent=70), *TIMEOUT), SEED,
               Status.OFFLINE, "no heartbeat for over 60 s; last attempt: timed out"),
    StatusCase("fresh with a failed last attempt is online", failed(HeartbeatState(ago(20), ago(1)), *REFUSED),
               SEED, Status.ONLINE, "heartbeat within 60 s"),
    # debounce
    StatusCase("one failure of a fresh server counts nothing",
               failed(HeartbeatState(ago(20), ago(1), consecutive_failures=1), *REFUSED), DEBOUNCED, Status.ONLINE,
               "heartbeat within 60 s"),
    StatusCase("failure threshold reached",
               failed(HeartbeatState(ago(20), ago(1), consecutive_failures=2), *REFUSED), DEBOUNCED, Status.OFFLINE,
               "2 failed logins in a row; last attempt: connection refused"),
    StatusCase("failure threshold off by default",
               failed(HeartbeatState(ago(20), ago(1), consecutive_failures=5), *REFUSED), SEED, Status.ONLINE,
               "heartbeat within 60 s"),
    StatusCase("recovering", HeartbeatState(ago(1), ago(1), consecutive_successes=1, previous_status="OFFLINE"),
               DEBOUNCED, Status.OFFLINE, "recovering: 1 of 2 successful logins in a row"),
    StatusCase("recovered", HeartbeatState(ago(1), ago(1), consecutive_successes=2, previous_status="OFFLINE"),
               DEBOUNCED, Status.ONLINE, "heartbeat within 60 s"),
    StatusCase("recovery threshold only after OFFLINE",
               HeartbeatState(ago(1), ago(1), consecutive_successes=1, previous_status="WARNING"), DEBOUNCED,
               Status.ONLINE, "heartbeat within 60 s"),
    # STALE: the monitor's own health, decided when read
    StatusCase("monitor stalled",
               HeartbeatState(ago(400), ago(400), previous_status="ONLINE", monitor_last_cycle_at=ago(300)),
               WATCHED, Status.STALE, "monitor stalled since 2026-11-28 11:55:00 UTC; last known: ONLINE"),
    StatusCase("monitor stalled, never evaluated", HeartbeatState(None, monitor_last_cycle_at=ago(61)), WATCHED,
               Status.STALE, "monitor stalled since 2026-11-28 11:58:59 UTC; last known: unknown"),
    StatusCase("monitor exactly stale_after_s behind is not stalled",
               HeartbeatState(ago(10), ago(10), monitor_last_cycle_at=ago(60)), WATCHED, Status.ONLINE,
               "heartbeat within 60 s"),
    StatusCase("monitor healthy", HeartbeatState(ago(10), ago(10), monitor_last_cycle_at=ago(30)), WATCHED,
               Status.ONLINE, "heartbeat within 60 s"),
    # STALE: no attempt from the server's site for site_stale_after_s (its workers are gone); also materialised
    StatusCase("site silent",
               HeartbeatState(ago(90), ago(90), previous_status="ONLINE", site="dc-b", site_last_probe_at=ago(90)),
               SITES, Status.STALE, "no probe from site dc-b since 2026-11-28 11:58:30 UTC"),
    StatusCase("site silent, server never probed",
               HeartbeatState(None, site="dc-b", site_last_probe_at=ago(75), site_ever_probed=False), SITES,
               Status.STALE, "no probe from site dc-b yet (expected since 2026-11-28 11:58:45 UTC)"),
    StatusCase("site silent is not offline, whatever the last attempt said",
               failed(HeartbeatState(ago(300), ago(70), site="dc-b", site_last_probe_at=ago(70)), *TIMEOUT), SITES,
               Status.STALE, "no probe from site dc-b since 2026-11-28 11:58:50 UTC"),
    StatusCase("site exactly site_stale_after_s behind is not silent",
               HeartbeatState(ago(10), ago(10), site="dc-b", site_last_probe_at=ago(60)), SITES, Status.ONLINE,
               "heartbeat within 60 s"),
    StatusCase("site heard from, server offline",
               failed(HeartbeatState(ago(95), ago(3), site="dc-a", site_last_probe_at=ago(3)), *TIMEOUT), SITES,
               Status.OFFLINE, "no heartbeat for over 60 s; last attempt: timed out"),
    StatusCase("site silent but site staleness off", HeartbeatState(ago(10), ago(10), site="dc-b",
               site_last_probe_at=ago(600)), WATCHED, Status.ONLINE, "heartbeat within 60 s"),
    StatusCase("monitor stalled wins over a silent site",
               HeartbeatState(ago(400), ago(400), previous_status="ONLINE", monitor_last_cycle_at=ago(300),
                              site="dc-b", site_last_probe_at=ago(400)),
               SITES, Status.STALE, "monitor stalled since 2026-11-28 11:55:00 UTC; last known: ONLINE"),
]

assert len({c.id for c in STATUS_CASES}) == len(STATUS_CASES), "status case ids must be unique"
