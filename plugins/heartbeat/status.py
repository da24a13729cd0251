"""The status rules, as pure functions of timestamps and an ``as_of`` passed in: the executable
specification of how a status is decided.

Production does not call :func:`evaluate_status`. The SQL function ``heartbeat_status_evaluate``
(include/sql/views/010_heartbeat_status_at.sql) is the implementation it uses, both when a cycle
materialises the statuses and in the read-time views dashboards read: SQL decides the whole
fleet in one statement, next to the data, instead of reading every server into Python and
writing its decision back. This module states the same rules in a form a person reads and a unit
test runs; tests/status_cases.py is one table of cases both are held to (same inputs, same
status, same reason).

- STALE (read time only): the monitor has finished no cycle for ``stale_after_s``; the last
  known status is kept in the reason instead of turning the whole fleet OFFLINE;
- STALE (also materialised): no attempt from the server's site has been recorded for
  ``site_stale_after_s``: the site's workers are gone (or its site is no longer configured),
  which says nothing about its servers ("no probe from site X since ...");
- OFFLINE: no heartbeat, or the last one is older than ``offline_after_s`` (60 s; exactly 60 s
  is still fresh); or ``failure_threshold`` failed logins in a row (0: off); or recovering from
  OFFLINE with fewer than ``recovery_threshold`` successful logins in a row (1: off);
- WARNING: a fresh heartbeat, but flapping or an active alert or anomaly;
- ONLINE: a fresh heartbeat and none of the above.

A reason holds no age relative to ``as_of`` ("heartbeat 29 s ago" would be stale beside an age
shown, and ticking, when the page is read): it says what held against the threshold, or since
when. The heartbeat's age is its own figure (:func:`heartbeat_age_s`, the views'
``heartbeat_age_s``). A failed last attempt is named in the words of the ``error_classes`` table
(migration 001), which the caller puts in ``HeartbeatState.last_error_words``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from heartbeat.models import HeartbeatState, Status, StatusDecision


@dataclass(frozen=True)
class StatusRules:
    """:param offline_after_s: a heartbeat older than this is OFFLINE (seconds).
    :param failure_threshold: this many failed logins in a row are OFFLINE at once; 0 turns it off.
    :param recovery_threshold: successful logins in a row an OFFLINE server needs to count again.
    :param stale_after_s: no finished cycle for this long marks every server STALE; None: never.
    :param site_stale_after_s: no attempt recorded from a site for this long marks its servers
        STALE; None: never.
    """

    offline_after_s: float = 60.0
    failure_threshold: int = 0
    recovery_threshold: int = 1
    stale_after_s: float | None = None
    site_stale_after_s: float | None = None

    def __post_init__(self) -> None:
        if not self.offline_after_s > 0:
            raise ValueError(f"offline_after_s must be greater than 0, got {self.offline_after_s!r}")
        if self.failure_threshold < 0:
            raise ValueError(f"failure_threshold must be 0 (off) or more, got {self.failure_threshold!r}")
        if self.recovery_threshold < 1:
            raise ValueError(f"recovery_threshold must be at least 1, got {self.recovery_threshold!r}")
        for name in ("stale_after_s", "site_stale_after_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be greater than 0, got {value!r}")


def heartbeat_age_s(last_success_at: datetime | None, as_of: datetime) -> float | None:
    """Seconds since the last heartbeat, never negative (a clock a little ahead reads as 0)."""
    if last_success_at is None:
        return None
    return max(0.0, (as_of - last_success_at).total_seconds())


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"


def _seconds(value: float) -> str:
    """A threshold as PostgreSQL writes a double precision: 60, 7.5."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _last_attempt_words(state: HeartbeatState) -> str:
    if state.last_attempt_at is None or state.last_error_class is None:
        return ""
    return f"; last attempt: {state.last_error_words or state.last_error_class}"


def _stalled_since(state: HeartbeatState, as_of: datetime, rules: StatusRules) -> datetime | None:
    last = state.monitor_last_cycle_at
    if rules.stale_after_s is None or last is None:
        return None
    return last if (as_of - last).total_seconds() > rules.stale_after_s else None


def _utc(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def site_stale_reason(state: HeartbeatState, as_of: datetime, rules: StatusRules) -> str | None:
    """Why the server's site reads STALE (no attempt from it for ``site_stale_after_s``), or None."""
    last = state.site_last_probe_at
    if rules.site_stale_after_s is None or last is None:
        return None
    if (as_of - last).total_seconds() <= rules.site_stale_after_s:
        return None
    if state.site_ever_probed:
        return f"no probe from site {state.site} since {_utc(last)}"
    return f"no probe from site {state.site} yet (expected since {_utc(last)})"


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
        reason = (f"monitor stalled since {stalled.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC; "
                  f"last known: {state.previous_status or 'unknown'}")
        return StatusDecision(Status.STALE, reason, age_s)
    site_stale = site_stale_reason(state, as_of, rules)
    if site_stale is not None:
        return StatusDecision(Status.STALE, site_stale, age_s)
    if age_s is None:
        if state.last_attempt_at is None:
            return StatusDecision(Status.OFFLINE, "no heartbeat yet; not probed yet", None)
        return StatusDecision(Status.OFFLINE, "no heartbeat yet" + _last_attempt_words(state), None)
    threshold = _seconds(rules.offline_after_s)
    if age_s > rules.offline_after_s:
        reason = f"no heartbeat for over {threshold} s" + _last_attempt_words(state)
        return StatusDecision(Status.OFFLINE, reason, age_s)
    if rules.failure_threshold > 0 and state.consecutive_failures >= rules.failure_threshold:
        reason = f"{state.consecutive_failures} failed logins in a row" + _last_attempt_words(state)
        return StatusDecision(Status.OFFLINE, reason, age_s)
    if (rules.recovery_threshold > 1 and state.previous_status == Status.OFFLINE
            and state.consecutive_successes < rules.recovery_threshold):
        reason = (f"recovering: {state.consecutive_successes} of {rules.recovery_threshold} "
                  "successful logins in a row")
        return StatusDecision(Status.OFFLINE, reason, age_s)
    fresh = f"heartbeat within {threshold} s"
    parts = []
    if state.flapping:
        parts.append(f"flapping ({math.floor(state.flap_percent or 0)}% state changes)")
    if state.active_alerts:
        parts.append(_plural(state.active_alerts, "active alert"))
    if state.active_anomalies:
        parts.append(_plural(state.active_anomalies, "active anomaly", "active anomalies"))
    if parts:
        return StatusDecision(Status.WARNING, f"{fresh}; " + ", ".join(parts), age_s)
    return StatusDecision(Status.ONLINE, fresh, age_s)
