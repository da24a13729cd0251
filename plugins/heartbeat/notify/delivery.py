"""Delivery: find what is due on each channel, send it, and record it in the ledger
(``notification_log``) in the transaction that sends it, so each change is sent once per channel
even when the task is retried or two runs race."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from heartbeat import store
from heartbeat.config import NotifySettings
from heartbeat.notify.channels import Channel, configured_channels
from heartbeat.notify.messages import (
    REPEAT,
    Notification,
    escalation_notification,
    host_key_notification,
    incident_notification,
    path_down_notification,
    repeat_notification,
    site_notification,
    stall_notification,
    status_change_notification,
)
from heartbeat.store import Connection

if TYPE_CHECKING:
    from heartbeat.config import Settings

log = logging.getLogger(__name__)


def due_notifications(
    conn: Connection, channel: str, settings: NotifySettings, as_of: datetime,
    current_cycle_id: str | None = None, stale_after_s: float = 60.0,
) -> list[Notification]:
    """What channel ``channel`` has to send at ``as_of``, oldest first (read in one transaction)."""
    with conn.transaction():
        due = [status_change_notification(change) for change in
               store.status_changes_due(conn, channel, as_of, settings.notify_after_s, settings.max_attempts)]
        due += [incident_notification(incident) for incident in
                store.incidents_due(conn, channel, as_of, settings.notify_after_s, settings.max_attempts)]
        due += [host_key_notification(alert)
                for alert in store.host_key_alerts_due(conn, channel, as_of, settings.max_attempts)]
        due += [path_down_notification(outage) for outage in
                store.path_outages_due(conn, channel, as_of, settings.notify_after_s, settings.max_attempts)]
        due += [site_notification(stall) for stall in
                store.site_stalls_due(conn, channel, as_of, settings.notify_after_s, settings.max_attempts)]
        last = store.last_finished_cycle(conn, as_of, current_cycle_id)
        current_started_at = None if current_cycle_id is None else store.cycle_started_at(conn, current_cycle_id)
        stall = stall_notification(last, current_started_at, settings.stall_threshold_s(stale_after_s), as_of)
        if stall is not None and not store.notification_done(conn, stall.subject, channel, settings.max_attempts):
            due.append(stall)
    return sorted(due, key=lambda n: n.at)


def _settled(row: store.LedgerRow, max_attempts: int) -> bool:
    return row.state == "sent" or row.attempts >= max_attempts


def reminders_due(
    outages: Sequence[store.OngoingOutage], ledger: Sequence[store.LedgerRow], channel: str,
    settings: NotifySettings, as_of: datetime,
) -> list[Notification]:
    """Repeats and escalations due on ``channel`` (the rule, pure). On an ordinary channel,
    reminder n of an outage is due ``repeat_after_s`` × n after its first notification was sent
    there. On an escalation channel, an outage is told once when some channel has sent it
    ``escalate_after`` reminders. Acknowledged, recovered and closed outages are not in ``outages``."""
    if not settings.repeat_after_s:
        return []
    escalation = channel in settings.escalation_channel_names
    if escalation and not settings.escalate_after:
        return []
    by_outage: dict[str, list[store.LedgerRow]] = {}
    for row in ledger:
        by_outage.setdefault(row.outage, []).append(row)
    due: list[Notification] = []
    for outage in outages:
        rows = by_outage.get(outage.subject, [])
        if escalation:
            reminders: Counter[str] = Counter(r.channel for r in rows if r.kind == REPEAT and r.state == "sent")
            done = any(r.subject == f"{outage.subject}:escalation" and r.channel == channel
                       and _settled(r, settings.max_attempts) for r in rows)
            most = max(reminders.values(), default=0)
            if not done and most >= settings.escalate_after:
                due.append(escalation_notification(outage, most, as_of))
            continue
        first = next((r for r in rows if r.subject == outage.subject and r.channel == channel
                      and r.state == "sent" and r.sent_at is not None), None)
        if first is None or first.sent_at is None:
            continue
        number = 1 + sum(1 for r in rows if r.kind == REPEAT and r.channel == channel
                         and _settled(r, settings.max_attempts))
        if (as_of - first.sent_at).total_seconds() >= settings.repeat_after_s * number:
            due.append(repeat_notification(outage, number, as_of))
    return due


class EscalationError(ValueError):
    """An escalation asked for by hand that cannot be made; nothing was sent."""


def escalate_now(
    conn: Connection, channels: Sequence[Channel], settings: NotifySettings, as_of: datetime, *, by: str,
    server_name: str | None = None, incident_id: int | None = None,
) -> dict[str, int]:
    """Escalate one outage now, by hand: its escalation goes to every escalation channel through
    the ledger (once per channel, as the automatic one; a later automatic escalation finds it
    sent). The outage must have been told already and still hold; an acknowledged one may be
    escalated too."""
    names = settings.escalation_channel_names
    targets = [c for c in channels if c.name in names]
    if not targets:
        raise EscalationError("no escalation channel: name one in HEARTBEAT_NOTIFY_ESCALATION_CHANNELS "
                              f"(configured channels: {', '.join(c.name for c in channels) or 'none'})")
    outages, ledger = store.ongoing_outages(conn, as_of, include_acknowledged=True)
    what = f"server {server_name}" if server_name is not None else f"incident {incident_id}"
    match = [o for o in outages if (server_name is not None and o.kind == "offline" and o.server_name == server_name)
             or (incident_id is not None and o.incident_id == incident_id)]
    if not match:
        raise EscalationError(f"{what} has no outage that was told and still holds: nothing to escalate "
                              "(see `heartbeat incidents list` and `heartbeat status`)")
    outage = match[0]
    repeats = sum(1 for r in ledger if r.outage == outage.subject and r.kind == REPEAT and r.state == "sent")
    notification = escalation_notification(outage, repeats, as_of, by=by)
    counts: Counter[str] = Counter(deliver(conn, channel, notification, settings, as_of) for channel in targets)
    return {"channels": len(targets), **{k: counts[k] for k in ("sent", "failed", "skipped")}}


def deliver(
    conn: Connection, channel: Channel, notification: Notification, settings: NotifySettings, as_of: datetime,
) -> str:
    """Claim, send and record one notification in one transaction: ``sent``, ``failed`` (retried
    by a later run until ``max_attempts``) or ``skipped`` (sent or being sent by someone else)."""
    with conn.transaction():
        claim = store.claim_notification(
            conn, subject=notification.subject, channel=channel.name, kind=notification.kind, as_of=as_of,
            max_attempts=settings.max_attempts, server_id=notification.server_id, event_id=notification.event_id,
            alert_id=notification.alert_id, incident_id=notification.incident_id,
        )
        if claim is None:
            return "skipped"
        try:
            channel.send(notification)
        except Exception as exc:  # any failure of the channel is recorded and retried, never fatal
            error = f"{type(exc).__name__}: {exc}"[:500]
            store.mark_notification_failed(conn, claim, error)
            log.warning("%s notification %s (%s) failed, attempt %d of %d: %s", channel.name, notification.subject,
                        notification.title, claim.attempts, settings.max_attempts, error)
            return "failed"
    log.info("%s notification sent: %s", channel.name, notification.title)
    return "sent"


def notify_changes(
    conn: Connection, channels: Sequence[Channel], settings: NotifySettings, as_of: datetime,
    current_cycle_id: str | None = None, stale_after_s: float = 60.0,
) -> dict[str, int]:
    """Send everything due on every channel (an escalation channel gets escalations only), then
    the reminders due; returns counts of sent, failed and skipped."""
    counts: Counter[str] = Counter()
    outages, ledger = store.ongoing_outages(conn, as_of) if settings.repeat_after_s else ([], [])
    for channel in channels:
        due = [] if channel.name in settings.escalation_channel_names else due_notifications(
            conn, channel.name, settings, as_of, current_cycle_id, stale_after_s)
        for notification in due + reminders_due(outages, ledger, channel.name, settings, as_of):
            counts[deliver(conn, channel, notification, settings, as_of)] += 1
    return {"channels": len(channels), **{k: counts[k] for k in ("sent", "failed", "skipped")}}


def run(
    settings: Settings, as_of: datetime, current_cycle_id: str | None = None, dsn: str | None = None,
    channels: Sequence[Channel] | None = None, notify_settings: NotifySettings | None = None,
) -> dict[str, int]:
    """The notification step of a cycle (and of ``heartbeat notify``); ``notify_settings``
    overrides ``settings.notify``."""
    from heartbeat import cycle

    notify_settings = notify_settings or settings.notify
    if channels is None:
        channels = configured_channels(notify_settings)
    if not channels:
        log.info("no notification channel: define the Airflow connection %r (e-mail), %r (webhook), %r (Slack), "
                 "%r (PagerDuty), %r (Opsgenie) or %r (Apprise)", notify_settings.email_conn_id,
                 notify_settings.webhook_conn_id, notify_settings.slack_conn_id, notify_settings.pagerduty_conn_id,
                 notify_settings.opsgenie_conn_id, notify_settings.apprise_conn_id)
        return {"channels": 0, "sent": 0, "failed": 0, "skipped": 0}
    with cycle.db_connect(settings, dsn) as conn:
        counts = notify_changes(conn, channels, notify_settings, as_of, current_cycle_id, settings.stale_after_s)
    log.info("notifications: %s", counts)
    return counts
