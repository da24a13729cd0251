"""Channels: Airflow notifiers configured by connections, ``heartbeat_smtp`` (e-mail, through the
smtp provider), ``heartbeat_webhook`` (a JSON POST), and the on-call tools of
:mod:`heartbeat.notify.oncall` (Slack, PagerDuty, Opsgenie, Apprise); a channel whose connection
is not defined is off. The notifiers also serve as plain Airflow callbacks of any DAG or task."""

from __future__ import annotations

import base64
import html
import importlib.util
import json
import logging
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from airflow.sdk import BaseNotifier

from heartbeat import connections
from heartbeat.config import NotifySettings
from heartbeat.notify.messages import CONTEXT_KEY, MONITOR, Notification, payload_from_context

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

log = logging.getLogger(__name__)

class Channel(Protocol):
    name: str

    def send(self, notification: Notification) -> None: ...


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
        request = self.request(payload_from_context(context))
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

        payload = payload_from_context(context)
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


# The provider each on-call channel sends through: not a dependency of the package (a deployment
# picks its channels), so a channel whose connection exists but whose provider is absent fails
# each send saying what to install, and the ledger keeps the notification for the next try.
CHANNEL_PROVIDERS = {
    "slack": "apache-airflow-providers-slack",
    "pagerduty": "apache-airflow-providers-pagerduty",
    "opsgenie": "apache-airflow-providers-opsgenie",
    "apprise": "apache-airflow-providers-apprise",
}


class MissingProviderNotifier(BaseNotifier):
    """Stands for a channel whose provider is not installed: every send fails with what to install."""

    def __init__(self, channel: str, conn_id: str) -> None:
        super().__init__()
        self.channel, self.conn_id = channel, conn_id

    def notify(self, context: Context) -> None:
        raise RuntimeError(missing_provider_message(self.channel, self.conn_id))


def missing_provider_message(channel: str, conn_id: str) -> str:
    package = CHANNEL_PROVIDERS[channel]
    return (f"notification channel {channel}: the Airflow connection {conn_id!r} is defined but {package} "
            f"is not installed; install it (pip install 'airflow-ssh-heartbeat[{channel}]')")


def provider_installed(channel: str) -> bool:
    package = CHANNEL_PROVIDERS.get(channel)
    if package is None:
        return True
    module = "airflow.providers." + package.removeprefix("apache-airflow-providers-").replace("-", ".")
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # airflow.providers itself absent
        return False


def configured_channels(settings: NotifySettings) -> list[Channel]:
    """The channels whose Airflow connection is defined: e-mail, webhook, Slack, PagerDuty,
    Opsgenie, Apprise."""
    from heartbeat.notify import oncall

    candidates: list[tuple[str, str, BaseNotifier]] = [
        ("email", settings.email_conn_id, HeartbeatEmailNotifier(settings.email_conn_id)),
        ("webhook", settings.webhook_conn_id,
         HeartbeatWebhookNotifier(settings.webhook_conn_id, timeout_s=settings.timeout_s)),
        ("slack", settings.slack_conn_id, oncall.HeartbeatSlackNotifier(settings.slack_conn_id, settings.timeout_s)),
        ("pagerduty", settings.pagerduty_conn_id, oncall.HeartbeatPagerdutyNotifier(settings.pagerduty_conn_id)),
        ("opsgenie", settings.opsgenie_conn_id, oncall.HeartbeatOpsgenieNotifier(settings.opsgenie_conn_id)),
        ("apprise", settings.apprise_conn_id, oncall.HeartbeatAppriseNotifier(settings.apprise_conn_id)),
    ]
    channels: list[Channel] = []
    for name, conn_id, notifier in candidates:
        try:
            connections.get_connection(conn_id)
        except connections.ConnectionNotFound:
            log.debug("notification channel %s is off: no Airflow connection %r", name, conn_id)
            continue
        if not provider_installed(name):
            log.error("%s", missing_provider_message(name, conn_id))
            notifier = MissingProviderNotifier(name, conn_id)
        channels.append(NotifierChannel(name, notifier))
    return channels
