"""The status rules, as pure functions of timestamps and an ``as_of`` passed in.

- OFFLINE: no heartbeat, or the last one is older than ``offline_after_s`` (60 s by default);
- ONLINE: a heartbeat within ``offline_after_s`` and no active alert or anomaly;
- WARNING: a heartbeat within ``offline_after_s`` but an active alert or anomaly.

The SQL function ``heartbeat_status_at`` (include/sql/views) implements the same rules for
dashboards; a test holds the two to the same table of cases.
"""

from __future__ import annotations

import math
from datetime import datetime

from heartbeat.models import ERROR_CLASS_WORDS, HeartbeatState, Status, StatusDecision


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


def evaluate_status(state: HeartbeatState, as_of: datetime, offline_after_s: float = 60.0) -> StatusDecision:
    """Decide one server's status at ``as_of``, with a reason a person understands."""
    age_s = heartbeat_age_s(state.last_success_at, as_of)
    if age_s is None:
        if state.last_attempt_at is None:
            return StatusDecision(Status.OFFLINE, "no heartbeat yet; not probed yet", None)
        return StatusDecision(Status.OFFLINE, "no heartbeat yet" + _last_attempt_words(state), None)
    shown_age_s = math.floor(age_s)
    if age_s > offline_after_s:
        reason = f"no heartbeat for {shown_age_s} s" + _last_attempt_words(state)
        return StatusDecision(Status.OFFLINE, reason, age_s)
    if state.active_alerts or state.active_anomalies:
        parts = []
        if state.active_alerts:
            parts.append(_plural(state.active_alerts, "active alert"))
        if state.active_anomalies:
            parts.append(_plural(state.active_anomalies, "active anomaly", "active anomalies"))
        return StatusDecision(Status.WARNING, f"heartbeat {shown_age_s} s ago; " + ", ".join(parts), age_s)
    return StatusDecision(Status.ONLINE, f"heartbeat {shown_age_s} s ago", age_s)
