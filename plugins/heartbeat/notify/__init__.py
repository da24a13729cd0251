"""Notifications: a server went OFFLINE, recovered, presented a changed host key, or the monitor
itself stalled. Three steps, like a cycle: find what is due (the store, per channel), send it
through an Airflow notifier, and record it in the ledger in the transaction that sends it.

- :mod:`~heartbeat.notify.messages`: the texts (pure);
- :mod:`~heartbeat.notify.channels`: the e-mail and webhook notifiers, configured by connections;
- :mod:`~heartbeat.notify.delivery`: what is due, the exactly-once ledger, the step a cycle runs.

The rules:

- Debounce: a status change is sent once it has held ``HEARTBEAT_NOTIFY_AFTER_S`` (only each
  server's latest change counts, so a flap shorter than that is never sent).
- No repeats: OFFLINE is sent when the channel last said the server was up (or said nothing),
  "recovered" only after an OFFLINE was sent.
- Maintenance windows hold notifications back; a change that still holds when the window ends
  is sent then.
- Monitor stalled: no cycle finished for ``HEARTBEAT_STALE_AFTER_S`` (when servers read STALE)
  plus the debounce, seen by the next cycle or by ``heartbeat notify`` run from cron elsewhere;
  sent once per stall.
- Site without a working monitor: no attempt from a site for ``HEARTBEAT_STALE_AFTER_S`` (its
  servers read STALE, told by nobody server by server), held for the debounce: one message for
  the site, and one when probes from it arrive again (only if the first was sent).

Channels are Airflow connections: ``heartbeat_smtp`` (e-mail, through the smtp provider) and
``heartbeat_webhook`` (a JSON POST); a channel whose connection is not defined is off. The
settings are ``Settings.notify`` (:class:`heartbeat.config.NotifySettings`).
"""

from heartbeat.config import NotifySettings
from heartbeat.notify.channels import (
    CONTEXT_KEY,
    Channel,
    HeartbeatEmailNotifier,
    HeartbeatWebhookNotifier,
    NotifierChannel,
    configured_channels,
)
from heartbeat.notify.delivery import EscalationError, deliver, due_notifications, escalate_now, notify_changes, run
from heartbeat.notify.messages import (
    HOST_KEY_CHANGED,
    MONITOR,
    MONITOR_STALLED,
    OFFLINE,
    PATH_DOWN,
    RECOVERED,
    Notification,
    host_key_notification,
    site_notification,
    stall_notification,
    status_change_notification,
)

__all__ = [
    "CONTEXT_KEY",
    "HOST_KEY_CHANGED",
    "MONITOR",
    "MONITOR_STALLED",
    "OFFLINE",
    "PATH_DOWN",
    "RECOVERED",
    "Channel",
    "EscalationError",
    "HeartbeatEmailNotifier",
    "HeartbeatWebhookNotifier",
    "Notification",
    "NotifierChannel",
    "NotifySettings",
    "configured_channels",
    "deliver",
    "due_notifications",
    "escalate_now",
    "host_key_notification",
    "notify_changes",
    "run",
    "site_notification",
    "stall_notification",
    "status_change_notification",
]
