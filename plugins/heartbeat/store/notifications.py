"""Notifications: what is due on a channel, and the ledger (``notification_log``) that makes each
one sent once per channel (queries in ``include/sql/queries/notifications.sql``).

:func:`claim_notification` and :func:`mark_notification_failed` are meant to run inside the
caller's transaction, the one that sends: the claimed ledger row stays locked until it commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from heartbeat import sql
from heartbeat.store._records import Connection, T, record, records


@dataclass(frozen=True)
class StatusChangeDue:
    """A server's latest status change, held long enough and not yet told on the channel.

    :param kind: ``offline`` or ``recovered``.
    """

    event_id: int
    server_id: int
    server_name: str
    host: str
    port: int
    from_status: str | None
    to_status: str
    at: datetime
    reason: str
    last_error_class: str | None
    kind: str


@dataclass(frozen=True)
class HostKeyAlertDue:
    """An active host_key_changed alert not yet told on the channel."""

    alert_id: int
    server_id: int
    server_name: str
    host: str
    port: int
    message: str
    at: datetime


@dataclass(frozen=True)
class IncidentDue:
    """A shared-cause incident to tell on a channel: ``incident`` (opened) or ``incident_resolved``."""

    incident_id: int
    dimension: str
    group_key: str
    error_class: str
    population: int
    first_failed_at: datetime
    opened_at: datetime
    closed_at: datetime | None
    kind: str
    members: int
    member_names: list[str]


@dataclass(frozen=True)
class PathOutageDue:
    """An open outage of a bastion hop not yet told on the channel: its servers are not probed."""

    outage_id: int
    bastion_id: int
    bastion_name: str
    host: str
    port: int
    at: datetime
    cause: str
    servers_behind: int
    ended_at: datetime | None = None  # set: the path works again since then (tell "restored")


@dataclass(frozen=True)
class OngoingOutage:
    """An outage told on some channel that still holds with nobody on it: a server (``offline``)
    or an incident (``incident``). ``subject`` is the ledger key of its first notification."""

    subject: str
    kind: str
    server_id: int | None
    server_name: str | None
    event_id: int | None
    incident_id: int | None
    since: datetime
    reason: str | None
    dimension: str | None
    group_key: str | None
    error_class: str | None
    population: int | None
    members: int


@dataclass(frozen=True)
class LedgerRow:
    """One ledger row of an outage (``outage``: the subject of its first notification)."""

    outage: str
    subject: str
    channel: str
    kind: str
    state: str
    attempts: int
    sent_at: datetime | None


@dataclass(frozen=True)
class SiteStallDue:
    """A site without a working monitor (``site_stalled``), or back (``site_recovered``), not yet
    told on the channel. ``since``: its last attempt, or when one was first expected
    (``ever_probed`` False)."""

    stall_id: int
    site: str
    since: datetime
    ever_probed: bool
    servers: int
    kind: str
    at: datetime


@dataclass(frozen=True)
class FinishedCycle:
    cycle_id: str
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True)
class Claim:
    """A ledger row taken for sending; ``attempts`` counts this one."""

    id: int
    attempts: int


@dataclass(frozen=True)
class NotificationLogEntry:
    id: int
    subject: str
    channel: str
    kind: str
    server_name: str | None
    state: str
    attempts: int
    last_error: str | None
    first_tried_at: datetime
    sent_at: datetime | None


def _candidates(
    conn: Connection, record_type: type[T], query: str, channel: str, as_of: datetime, notify_after_s: float,
    max_attempts: int,
) -> list[T]:
    """What one ``*_candidates`` query finds to tell on ``channel`` at ``as_of`` (the rules are in the query)."""
    params = {"as_of": as_of, "channel": channel, "notify_after_s": notify_after_s, "max_attempts": max_attempts}
    with conn.transaction():
        return records(record_type, conn.execute(query, params))


def status_changes_due(
    conn: Connection, channel: str, as_of: datetime, notify_after_s: float, max_attempts: int,
) -> list[StatusChangeDue]:
    """Status changes to tell on ``channel`` at ``as_of``, oldest first (the rules are in the query)."""
    return _candidates(conn, StatusChangeDue, sql.query("status_change_candidates"), channel, as_of, notify_after_s,
                       max_attempts)


def host_key_alerts_due(conn: Connection, channel: str, as_of: datetime, max_attempts: int) -> list[HostKeyAlertDue]:
    """Active host_key_changed alerts to tell on ``channel`` at ``as_of``, oldest first."""
    params = {"as_of": as_of, "channel": channel, "max_attempts": max_attempts}
    with conn.transaction():
        return records(HostKeyAlertDue, conn.execute(sql.query("host_key_alert_candidates"), params))


def incidents_due(
    conn: Connection, channel: str, as_of: datetime, notify_after_s: float, max_attempts: int,
) -> list[IncidentDue]:
    """Incidents to tell (opened or resolved) on ``channel`` at ``as_of``, oldest first."""
    return _candidates(conn, IncidentDue, sql.query("incident_candidates"), channel, as_of, notify_after_s,
                       max_attempts)


def path_outages_due(
    conn: Connection, channel: str, as_of: datetime, notify_after_s: float, max_attempts: int,
) -> list[PathOutageDue]:
    """Bastion outages to tell (down, or restored) on ``channel`` at ``as_of``, oldest first."""
    return _candidates(conn, PathOutageDue, sql.query("path_outage_candidates"), channel, as_of, notify_after_s,
                       max_attempts)


def ongoing_outages(
    conn: Connection, as_of: datetime, include_acknowledged: bool = False,
) -> tuple[list[OngoingOutage], list[LedgerRow]]:
    """Outages told that still hold with nobody on them at ``as_of`` (``include_acknowledged``:
    acknowledged ones too), and their ledger rows."""
    with conn.transaction():
        outages = records(OngoingOutage, conn.execute(sql.query("ongoing_outages"),
                                                      {"as_of": as_of, "include_acknowledged": include_acknowledged}))
        rows = records(LedgerRow, conn.execute(sql.query("outage_ledger"),
                                               {"subjects": [o.subject for o in outages]})) if outages else []
    return outages, rows


def site_stalls_due(
    conn: Connection, channel: str, as_of: datetime, notify_after_s: float, max_attempts: int,
) -> list[SiteStallDue]:
    """Sites without a working monitor, and sites back, to tell on ``channel`` at ``as_of``."""
    return _candidates(conn, SiteStallDue, sql.query("site_stall_candidates"), channel, as_of, notify_after_s,
                       max_attempts)


def last_finished_cycle(conn: Connection, as_of: datetime, current_cycle_id: str | None) -> FinishedCycle | None:
    """The last cycle that finished at or before ``as_of``, other than ``current_cycle_id``."""
    with conn.transaction():
        row = conn.execute(sql.query("last_finished_cycle"),
                           {"as_of": as_of, "current_cycle_id": current_cycle_id}).fetchone()
    return None if row is None else record(FinishedCycle, row)


def cycle_started_at(conn: Connection, cycle_id: str) -> datetime | None:
    with conn.transaction():
        row = conn.execute(sql.query("cycle_started_at"), {"cycle_id": cycle_id}).fetchone()
    return None if row is None else row["started_at"]


def notification_done(conn: Connection, subject: str, channel: str, max_attempts: int) -> bool:
    """True when ``subject`` was sent on ``channel``, or given up after ``max_attempts``."""
    with conn.transaction():
        row = conn.execute(sql.query("notification_done"),
                           {"subject": subject, "channel": channel, "max_attempts": max_attempts}).fetchone()
    return row is not None


def claim_notification(
    conn: Connection, *, subject: str, channel: str, kind: str, as_of: datetime, max_attempts: int,
    server_id: int | None = None, event_id: int | None = None, alert_id: int | None = None,
    incident_id: int | None = None,
) -> Claim | None:
    """Take a notification for sending, recorded as sent: a new one, or a failed one with attempts
    left. None: it is sent, given up, or being sent by someone else."""
    row = conn.execute(sql.query("claim_notification"), {
        "subject": subject, "channel": channel, "kind": kind, "server_id": server_id, "event_id": event_id,
        "alert_id": alert_id, "incident_id": incident_id, "as_of": as_of, "max_attempts": max_attempts,
    }).fetchone()
    return None if row is None else record(Claim, row)


def mark_notification_failed(conn: Connection, claim: Claim, error: str) -> None:
    """Record that sending a claimed notification failed (a later run retries it)."""
    conn.execute(sql.query("mark_notification_failed"), {"id": claim.id, "error": error})


def list_notifications(conn: Connection, limit: int = 50) -> list[NotificationLogEntry]:
    """The last ``limit`` notifications sent or tried, newest first."""
    with conn.transaction():
        return records(NotificationLogEntry, conn.execute(sql.query("list_notifications"), {"limit": limit}))
