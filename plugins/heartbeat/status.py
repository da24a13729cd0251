"""The status rules, as pure functions of timestamps and an ``as_of`` passed in.

The seed's rules, with debounce, flapping and the monitor's own health on top:

- STALE (read time only): the monitor has finished no cycle for ``stale_after_s``; the last
  known status is kept in the reason instead of turning the whole fleet OFFLINE;
- OFFLINE: no heartbeat, or the last one is older than ``offline_after_s`` (60 s); or
  ``failure_threshold`` failed logins in a row (0: off); or recovering from OFFLINE with fewer
  than ``recovery_threshold`` successful logins in a row (1: off);
- WARNING: a fresh heartbeat, but flapping or an active alert or anomaly;
- ONLINE: a fresh heartbeat and none of the above.

The SQL function ``heartbeat_status_at`` (include/sql/views) implements the same rules for
dashboards; a test holds the two to the same table of cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from heartbeat.models import ERROR_CLASS_WORDS, HeartbeatState, Status, StatusDecision


@dataclass(frozen=True)
class StatusRules:
    """:param offline_after_s: a heartbeat older than this is OFFLINE (seconds).
    :param failure_threshold: this many failed logins in a row are OFFLINE at once; 0 turns it off.
    :param recovery_threshold: successful logins in a row an OFFLINE server needs to count again.
    :param stale_after_s: no finished cycle for this long marks every server STALE; None: never.
    """

    offline_after_s: float = 60.0
    failure_threshold: int = 0
    recovery_threshold: int = 1
    stale_after_s: float | None = None


def heartbeat_age_s(last_success_at: datetime | None, as_of: datetime) -> float | None:
    """Seconds since the last heartbeat, never negative (a clock a little ahead reads as 0)."""
    if last_success_at is None:
        return None
    return max(0.0, (as_of - last_success_at).total_seconds())


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"


def _last_attempt_words(state: HeartbeatState) -> str:
    if state.last_attempt_at is None or state.last_error_class is None:
        return ""
    words = ERROR_CLASS_WORDS.get(state.last_error_class, state.last_error_class)
    return f"; last attempt: {words}"


def _stalled_since(state: HeartbeatState, as_of: datetime, rules: StatusRules) -> datetime | None:
    last = state.monitor_last_cycle_at
    if rules.stale_after_s is None or last is None:
        return None
    return last if (as_of - last).total_seconds() > rules.stale_after_s else None


SEED_RULES = StatusRules()


def evaluate_status(
    state: HeartbeatState, as_of: datetime, rules: StatusRules | float = SEED_RULES
) -> StatusDecision:
    """Decide one server's status at ``as_of``, with a reason a person understands.

    ``rules`` may be a plain number: the OFFLINE threshold in seconds, the seed's one rule.
    """
    if not isinstance(rules, StatusRules):
        rules = StatusRules(offline_after_s=float(rules))
    age_s = heartbeat_age_s(state.last_success_at, as_of)
    stalled = _stalled_since(state, as_of, rules)
    if stalled is not None:
        reason = (f"monitor stalled since {stalled.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC: no cycle for "
                  f"{math.floor((as_of - stalled).total_seconds())} s; "
                  f"last known: {state.previous_status or 'unknown'}")
        return StatusDecision(Status.STALE, reason, age_s)
    if age_s is None:
        if state.last_attempt_at is None:
            return StatusDecision(Status.OFFLINE, "no heartbeat yet; not probed yet", None)
        return StatusDecision(Status.OFFLINE, "no heartbeat yet" + _last_attempt_words(state), None)
    shown_age_s = math.floor(age_s)
    if age_s > rules.offline_after_s:
        reason = f"no heartbeat for {shown_age_s} s" + _last_attempt_words(state)
        return StatusDecision(Status.OFFLINE, reason, age_s)
    if rules.failure_threshold > 0 and state.consecutive_failures >= rules.failure_threshold:
        reason = f"{state.consecutive_failures} failed logins in a row" + _last_attempt_words(state)
        return StatusDecision(Status.OFFLINE, reason, age_s)
    if (rules.recovery_threshold > 1 and state.previous_status == Status.OFFLINE
            and state.consecutive_successes < rules.recovery_threshold):
        reason = (f"recovering: {state.consecutive_successes} of {rules.recovery_threshold} "
                  "successful logins in a row")
        return StatusDecision(Status.OFFLINE, reason, age_s)
    parts = []
    if state.flapping:
        parts.append(f"flapping ({math.floor(state.flap_percent or 0)}% state changes)")
    if state.active_alerts:
        parts.append(_plural(state.active_alerts, "active alert"))
    if state.active_anomalies:
        parts.append(_plural(state.active_anomalies, "active anomaly", "active anomalies"))
    if parts:
        return StatusDecision(Status.WARNING, f"heartbeat {shown_age_s} s ago; " + ", ".join(parts), age_s)
    return StatusDecision(Status.ONLINE, f"heartbeat {shown_age_s} s ago", age_s)
