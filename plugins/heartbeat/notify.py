"""Notifications: a server went OFFLINE, recovered, presented a changed host key, or the monitor
itself stalled. Three steps, like a cycle: find what is due (SQL, per channel), send it through
an Airflow notifier, and record it in the ledger (``notification_log``) in the transaction that
sends it, so each change is sent once per channel even when the task is retried or runs twice.

- Debounce: a status change is sent once it has held ``HEARTBEAT_NOTIFY_AFTER_S`` (only each
  server's latest change counts, so a flap shorter than that is never sent).
- No repeats: OFFLINE is sent when the channel last said the server was up (or said nothing),
  "recovered" only after an OFFLINE was sent.
- Maintenance windows hold notifications back; a change that still holds when the window ends
  is sent then.
- Monitor stalled: no cycle finished for ``HEARTBEAT_STALE_AFTER_S`` (when servers read STALE)
  plus the debounce, seen by the next cycle or by ``heartbeat notify`` run from cron elsewhere;
  sent once per stall.

Channels are Airflow connections: ``heartbeat_smtp`` (e-mail, through the smtp provider) and
``heartbeat_webhook`` (a JSON POST); a channel whose connection is not defined is off.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

import psycopg
from airflow.sdk import BaseNotifier

from heartbeat import connections, sql
from heartbeat.config import SettingsError

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

    from heartbeat.config import Settings

log = logging.getLogger(__name__)

MONITOR = "airflow-ssh-heartbeat"
CONTEXT_KEY = "heartbeat_notification"
OFFLINE, RECOVERED, HOST_KEY_CHANGED, MONITOR_STALLED = "offline", "recovered", "host_key_changed", "monitor_stalled"


@dataclass(frozen=True)
class NotifySettings:
    """:param notify_after_s: a status change must hold this long before it is sent (seconds).
    :param stall_after_s: no cycle finished for this long is a stalled monitor worth telling
        (seconds); None: the monitor's ``stale_after_s`` plus ``notify_after_s``.
    :param max_attempts: sends of one notification on one channel before giving up.
    :param email_conn_id: the SMTP connection of the e-mail channel.
    :param webhook_conn_id: the HTTP connection of the webhook channel.
    :param timeout_s: bound on one webhook request (seconds).
    """

    notify_after_s: float = 60.0
    stall_after_s: float | None = None
    max_attempts: int = 3
    email_conn_id: str = "heartbeat_smtp"
    webhook_conn_id: str = "heartbeat_webhook"
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.notify_after_s < 0:
            raise SettingsError(f"notify_after_s cannot be negative, got {self.notify_after_s!r}")
        if self.stall_after_s is not None and not self.stall_after_s > 0:
            raise SettingsError(f"stall_after_s must be greater than 0, got {self.stall_after_s!r}")
        if not self.timeout_s > 0:
            raise SettingsError(f"timeout_s must be greater than 0, got {self.timeout_s!r}")
        if self.max_attempts < 1:
            raise SettingsError(f"max_attempts must be at least 1, got {self.max_attempts!r}")


ENV_NAMES = {
    "notify_after_s": "HEARTBEAT_NOTIFY_AFTER_S",
    "stall_after_s": "HEARTBEAT_NOTIFY_STALL_AFTER_S",
    "max_attempts": "HEARTBEAT_NOTIFY_MAX_ATTEMPTS",
    "email_conn_id": "HEARTBEAT_NOTIFY_EMAIL_CONN_ID",
    "webhook_conn_id": "HEARTBEAT_NOTIFY_WEBHOOK_CONN_ID",
    "timeout_s": "HEARTBEAT_NOTIFY_TIMEOUT_S",
}


def notify_settings_from_env(environ: Mapping[str, str] | None = None) -> NotifySettings:
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(NotifySettings):
        raw = environ.get(ENV_NAMES[f.name])
        if raw is None or raw == "":
            continue
        try:
            default = getattr(NotifySettings, f.name)
            values[f.name] = (float(raw) if default is None or isinstance(default, float)
                              else int(raw) if isinstance(default, int) else raw)
        except ValueError:
            raise SettingsError(f"{ENV_NAMES[f.name]}={raw!r} is not a valid value for {f.name}") from None
    return NotifySettings(**values)


@dataclass(frozen=True)
class Notification:
    """One thing to tell people. ``subject`` is its ledger key (one send per channel)."""

    kind: str
    subject: str
    title: str
    text: str
    at: datetime
    server_id: int | None = None
    server_name: str | None = None
    event_id: int | None = None
    alert_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The webhook body; ``text`` also makes it a valid Slack/Mattermost incoming-webhook message."""
        return {
            "monitor": MONITOR, "id": self.subject, "kind": self.kind, "title": self.title, "text": self.text,
            "at": self.at.isoformat(), "server": self.server_name, **self.details,
        }


class Channel(Protocol):
    name: str

    def send(self, notification: Notification) -> None: ...


def _when(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def status_change_notification(row: Mapping[str, Any]) -> Notification:
    where = f"{row['server_name']} ({row['host']}:{row['port']})"
    if row["kind"] == OFFLINE:
        title = f"{row['server_name']} is OFFLINE"
        text = f"{where} is OFFLINE since {_when(row['at'])}: {row['reason']}"
    else:
        title = f"{row['server_name']} recovered: {row['to_status']}"
        text = f"{where} is {row['to_status']} again since {_when(row['at'])}: {row['reason']}"
    return Notification(
        kind=row["kind"], subject=f"status_event:{row['event_id']}", title=title, text=text, at=row["at"],
        server_id=row["server_id"], server_name=row["server_name"], event_id=row["event_id"],
        details={"host": row["host"], "port": row["port"], "from_status": row["from_status"],
                 "to_status": row["to_status"], "reason": row["reason"],
                 "last_error_class": row["last_error_class"]},
    )


def host_key_notification(row: Mapping[str, Any]) -> Notification:
    return Notification(
        kind=HOST_KEY_CHANGED, subject=f"alert:{row['alert_id']}",
        title=f"{row['server_name']}: host key changed",
        text=f"{row['server_name']} ({row['host']}:{row['port']}) presented a different host key at "
             f"{_when(row['at'])}; its heartbeats stop until this is resolved. {row['message']}",
        at=row["at"], server_id=row["server_id"], server_name=row["server_name"], alert_id=row["alert_id"],
        details={"host": row["host"], "port": row["port"], "reason": row["message"]},
    )


def stall_notification(
    conn: psycopg.Connection[Any], stall_after_s: float, as_of: datetime, current_cycle_id: str | None
) -> Notification | None:
    """A stall: the gap between the last finished cycle and ``as_of`` (or the start of the current
    cycle, which then reports the stall it ended) is longer than ``stall_after_s``."""
    last = conn.execute(sql.query("last_finished_cycle"),
                        {"as_of": as_of, "current_cycle_id": current_cycle_id}).fetchone()
    if last is None:
        return None
    gap_end, resumed = as_of, False
    if current_cycle_id is not None:
        current = conn.execute(sql.query("cycle_started_at"), {"cycle_id": current_cycle_id}).fetchone()
        if current is not None and current["started_at"] >= last["finished_at"]:
            gap_end, resumed = current["started_at"], True
    gap_s = (gap_end - last["finished_at"]).total_seconds()
    if gap_s <= stall_after_s:
        return None
    text = (f"no monitoring cycle finished for {gap_s:.0f} s (the last one, {last['cycle_id']}, finished at "
            f"{_when(last['finished_at'])})")
    text += ("; monitoring has resumed" if resumed else
             ": is the ssh_heartbeat DAG paused, or the Airflow scheduler down? Server statuses are not updated")
    return Notification(
        kind=MONITOR_STALLED, subject=f"monitor_stalled:{last['cycle_id']}", title="heartbeat monitor stalled",
        text=text, at=gap_end, details={"last_cycle_id": last["cycle_id"], "stalled_s": round(gap_s),
                                        "resumed": resumed},
    )


def stall_threshold_s(settings: NotifySettings, stale_after_s: float) -> float:
    """How long without a finished cycle is a stall worth telling: ``stall_after_s`` if set, else
    the time after which servers read STALE plus the debounce."""
    return settings.stall_after_s if settings.stall_after_s is not None else stale_after_s + settings.notify_after_s


def due_notifications(
    conn: psycopg.Connection[Any], channel: str, settings: NotifySettings, as_of: datetime,
    current_cycle_id: str | None = None, stale_after_s: float = 60.0,
) -> list[Notification]:
    """What channel ``channel`` has to send at ``as_of``, oldest first."""
    params = {"as_of": as_of, "channel": channel, "notify_after_s": settings.notify_after_s,
              "max_attempts": settings.max_attempts}
    with conn.transaction():
        due = [status_change_notification(r)
               for r in conn.execute(sql.query("status_change_candidates"), params).fetchall()]
        due += [host_key_notification(r)
                for r in conn.execute(sql.query("host_key_alert_candidates"), params).fetchall()]
        stall = stall_notification(conn, stall_threshold_s(settings, stale_after_s), as_of, current_cycle_id)
        if stall is not None:
            done = conn.execute(sql.query("notification_done"), {
                "subject": stall.subject, "channel": channel, "max_attempts": settings.max_attempts}).fetchone()
            if done is None:
                due.append(stall)
    return sorted(due, key=lambda n: n.at)


def deliver(
    conn: psycopg.Connection[Any], channel: Channel, notification: Notification, settings: NotifySettings,
    as_of: datetime,
) -> str:
    """Claim, send and record one notification in one transaction: ``sent``, ``failed`` (retried
    by a later run until ``max_attempts``) or ``skipped`` (sent or being sent by someone else)."""
    with conn.transaction():
        claimed = conn.execute(sql.query("claim_notification"), {
            "subject": notification.subject, "channel": channel.name, "kind": notification.kind,
            "server_id": notification.server_id, "event_id": notification.event_id,
            "alert_id": notification.alert_id, "as_of": as_of, "max_attempts": settings.max_attempts,
        }).fetchone()
        if claimed is None:
            return "skipped"
        try:
            channel.send(notification)
        except Exception as exc:  # any failure of the channel is recorded and retried, never fatal
            error = f"{type(exc).__name__}: {exc}"[:500]
            conn.execute(sql.query("mark_notification_failed"), {"id": claimed["id"], "error": error})
            log.warning("%s notification %s (%s) failed, attempt %d of %d: %s", channel.name, notification.subject,
                        notification.title, claimed["attempts"], settings.max_attempts, error)
            return "failed"
    log.info("%s notification sent: %s", channel.name, notification.title)
    return "sent"


def notify_changes(
    conn: psycopg.Connection[Any], channels: Sequence[Channel], settings: NotifySettings, as_of: datetime,
    current_cycle_id: str | None = None, stale_after_s: float = 60.0,
) -> dict[str, int]:
    """Send everything due on every channel; returns counts of sent, failed and skipped."""
    counts: Counter[str] = Counter()
    for channel in channels:
        for notification in due_notifications(conn, channel.name, settings, as_of, current_cycle_id,
                                              stale_after_s):
            counts[deliver(conn, channel, notification, settings, as_of)] += 1
    return {"channels": len(channels), **{k: counts[k] for k in ("sent", "failed", "skipped")}}


# --- channels: Airflow notifiers configured by connections ----------------------------------------

def _payload(context: Context) -> dict[str, Any]:
    """The notification in ``context``; used as a plain Airflow callback, a summary of the run."""
    data = cast(dict[str, Any], context)
    if CONTEXT_KEY in data:
        return dict(data[CONTEXT_KEY])
    dag_id = getattr(data.get("dag"), "dag_id", None) or "?"
    ti = data.get("ti") or data.get("task_instance")
    state = getattr(ti, "state", None) or getattr(data.get("dag_run"), "state", None) or "changed state"
    what = f"task {ti.task_id} of DAG {dag_id}" if ti is not None else f"DAG {dag_id}"
    title = f"Airflow: {what} {state}"
    return {"monitor": MONITOR, "kind": "airflow_callback", "title": title, "text": title,
            "run_id": data.get("run_id")}


class HeartbeatWebhookNotifier(BaseNotifier):
    """POST a notification as JSON to the URL of an Airflow connection (``heartbeat_webhook``).

    The connection: *host* is a host name or a whole URL; *schema* ``http`` or ``https`` (default);
    *port*; *login*/*password* for HTTP basic auth; extra ``endpoint`` (the path), ``headers``
    (a JSON object, e.g. an ``Authorization`` header). Any answer other than 2xx is a failure.

    :param webhook_conn_id: the connection id.
    :param timeout_s: bound on the whole request (seconds).
    """

    def __init__(self, webhook_conn_id: str = "heartbeat_webhook", timeout_s: float = 10.0) -> None:
        super().__init__()
        self.webhook_conn_id = webhook_conn_id
        self.timeout_s = timeout_s

    def request(self, payload: Mapping[str, Any]) -> urllib.request.Request:
        conn = connections.get_connection(self.webhook_conn_id)
        extra = conn.extra_dejson or {}
        host = (conn.host or "").strip()
        if not host:
            raise ValueError(f"Airflow connection {self.webhook_conn_id!r} has no host: set the webhook URL there")
        if host.startswith(("http://", "https://")):
            url = host.rstrip("/")
        else:
            url = f"{conn.schema or 'https'}://{host}" + (f":{conn.port}" if conn.port else "")
        endpoint = str(extra.get("endpoint") or "")
        if endpoint:
            url += endpoint if endpoint.startswith("/") else "/" + endpoint
        headers = {"Content-Type": "application/json", "User-Agent": MONITOR}
        headers.update({str(k): str(v) for k, v in (extra.get("headers") or {}).items()})
        if conn.login:
            token = base64.b64encode(f"{conn.login}:{conn.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        body = json.dumps(payload, default=str).encode()
        return urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310

    def notify(self, context: Context) -> None:
        request = self.request(_payload(context))
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
            if not 200 <= response.status < 300:
                raise RuntimeError(f"webhook answered HTTP {response.status}")


class HeartbeatEmailNotifier(BaseNotifier):
    """E-mail a notification through an SMTP connection (``heartbeat_smtp``), with the smtp
    provider's ``SmtpHook``: *host*, *port*, *login*, *password*; extra ``from_email``, ``to``
    (comma-separated recipients), ``disable_ssl``, ``disable_tls``, ``timeout``, ``retry_limit``.

    :param smtp_conn_id: the connection id.
    :param to: recipients, instead of the connection's extra ``to``.
    """

    def __init__(self, smtp_conn_id: str = "heartbeat_smtp", to: str | Sequence[str] | None = None) -> None:
        super().__init__()
        self.smtp_conn_id = smtp_conn_id
        self.to = to

    def notify(self, context: Context) -> None:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        payload = _payload(context)
        with SmtpHook(smtp_conn_id=self.smtp_conn_id) as hook:
            to = self.to or (hook.conn.extra_dejson or {}).get("to")
            if not to:
                raise ValueError(f"Airflow connection {self.smtp_conn_id!r} names no recipient: "
                                 "add \"to\": \"ops@example.com\" to its extra")
            key = str(payload.get("id") or "")
            lines = "".join(f"<p>{html.escape(str(line))}</p>" for line in str(payload["text"]).split("\n"))
            footer = f'<p style="color:#666">{html.escape(MONITOR)} {html.escape(key)}</p>'
            hook.send_email_smtp(
                to=to, subject=f"[heartbeat] {payload['title']}", from_email=None, html_content=lines + footer,
                custom_headers={"X-Heartbeat-Notification": key},
            )


@dataclass
class NotifierChannel:
    """A channel that hands each notification to an Airflow notifier."""

    name: str
    notifier: BaseNotifier

    def send(self, notification: Notification) -> None:
        self.notifier.notify(cast("Context", {CONTEXT_KEY: notification.to_json()}))


def configured_channels(settings: NotifySettings) -> list[Channel]:
    """The channels whose Airflow connection is defined."""
    candidates: list[tuple[str, str, BaseNotifier]] = [
        ("email", settings.email_conn_id, HeartbeatEmailNotifier(settings.email_conn_id)),
        ("webhook", settings.webhook_conn_id,
         HeartbeatWebhookNotifier(settings.webhook_conn_id, timeout_s=settings.timeout_s)),
    ]
    channels: list[Channel] = []
    for name, conn_id, notifier in candidates:
        try:
            connections.get_connection(conn_id)
        except connections.ConnectionNotFound:
            log.debug("notification channel %s is off: no Airflow connection %r", name, conn_id)
            continue
        channels.append(NotifierChannel(name, notifier))
    return channels


def run(
    settings: Settings, as_of: datetime, current_cycle_id: str | None = None, dsn: str | None = None,
    channels: Sequence[Channel] | None = None, notify_settings: NotifySettings | None = None,
) -> dict[str, int]:
    """The notification step of a cycle (and of ``heartbeat notify``)."""
    from heartbeat import cycle

    notify_settings = notify_settings or notify_settings_from_env()
    if channels is None:
        channels = configured_channels(notify_settings)
    if not channels:
        log.info("no notification channel: define the Airflow connection %r (e-mail) or %r (webhook)",
                 notify_settings.email_conn_id, notify_settings.webhook_conn_id)
        return {"channels": 0, "sent": 0, "failed": 0, "skipped": 0}
    with cycle.db_connect(settings, dsn) as conn:
        counts = notify_changes(conn, channels, notify_settings, as_of, current_cycle_id, settings.stale_after_s)
    log.info("notifications: %s", counts)
    return counts
