"""On-call tools as channels: Slack, PagerDuty, Opsgenie and Apprise, each through its Airflow
provider's hook and configured by an Airflow connection. Each is an Airflow notifier that reads
the notification from its context (``heartbeat_notification``), so it also serves as a plain
callback of any DAG. Every send raises on failure, so the ledger retries it.

An outage has one key, :attr:`~heartbeat.notify.messages.Notification.dedup_key`, for its first
notification, its repeats and its resolution: PagerDuty's ``dedup_key`` and Opsgenie's alert
``alias``, so re-notifications update one alert and a recovery resolves (closes) it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from heartbeat import connections
from heartbeat.notify.messages import MONITOR, payload_from_context

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

RESOLVING_KINDS = ("recovered", "incident_resolved")
SEVERITY = {"incident": "critical", "escalation": "critical", "monitor_stalled": "critical",
            "host_key_changed": "warning"}
SLACK_HEADER_MAX, SLACK_SECTION_MAX = 150, 3000


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dedup_key(payload: dict[str, Any]) -> str:
    return str(payload.get("dedup_key") or f"{MONITOR}/{payload.get('kind')}/{payload.get('id')}")


class HeartbeatSlackNotifier(BaseNotifier):
    """Post a notification to a Slack incoming webhook, through the slack provider's
    ``SlackWebhookHook`` and a ``slackwebhook`` connection (``heartbeat_slack``): *password* is
    the webhook token (``T000/B000/XXXX``) or the whole URL; *host* the endpoint
    (``hooks.slack.com/services`` by default); extra ``timeout``, ``proxy``.

    The message is a ``text`` (the notification's title and text, what notifications and
    clients without blocks show) and Block Kit ``blocks``: a header, the text, and a context line
    with the notification's id.

    :param slack_conn_id: the connection id.
    :param timeout_s: bound on the request (seconds).
    """

    def __init__(self, slack_conn_id: str = "heartbeat_slack", timeout_s: float = 10.0) -> None:
        super().__init__()
        self.slack_conn_id = slack_conn_id
        self.timeout_s = timeout_s

    @staticmethod
    def message(payload: dict[str, Any]) -> dict[str, Any]:
        title, text = str(payload["title"]), str(payload["text"])
        return {
            "text": f"{title}\n{text}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": _clip(title, SLACK_HEADER_MAX)}},
                {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SLACK_SECTION_MAX)}},
                {"type": "context", "elements": [
                    {"type": "mrkdwn", "text": f"{MONITOR} · {payload.get('kind')} · {payload.get('id', '')}"}]},
            ],
        }

    def notify(self, context: Context) -> None:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        hook = SlackWebhookHook(slack_webhook_conn_id=self.slack_conn_id, timeout=int(max(1, self.timeout_s)))
        hook.send(**self.message(payload_from_context(context)))  # raises on any answer but 200 "ok"


class HeartbeatPagerdutyNotifier(BaseNotifier):
    """Trigger (or, on recovery, resolve) a PagerDuty alert through the Events API v2, with the
    pagerduty provider and a ``pagerduty_events`` connection (``heartbeat_pagerduty``): *password*
    is the integration's routing key. The provider's hook always talks to
    ``https://events.pagerduty.com``; the connection's *host* (or extra ``base_url``), when set, is
    the Events API's base URL instead, as the ``pagerduty`` client allows: PagerDuty's EU service
    region (``https://events.eu.pagerduty.com``), or a relay.

    ``dedup_key`` is the outage's key: repeats update the same PagerDuty alert and a recovery
    resolves it. Severity: ``critical`` for incidents, escalations and a stalled monitor,
    ``warning`` for a changed host key, ``error`` otherwise.

    :param pagerduty_conn_id: the connection id.
    """

    def __init__(self, pagerduty_conn_id: str = "heartbeat_pagerduty") -> None:
        super().__init__()
        self.pagerduty_conn_id = pagerduty_conn_id

    @staticmethod
    def event(payload: dict[str, Any]) -> dict[str, Any]:
        from airflow.providers.pagerduty.hooks.pagerduty_events import prepare_event_data

        kind = str(payload.get("kind"))
        details = {k: v for k, v in payload.items() if k not in ("title", "dedup_key") and v is not None}
        return prepare_event_data(
            summary=_clip(str(payload["title"]), 1024), severity=SEVERITY.get(kind, "error"),
            source=str(payload.get("server") or payload.get("group_key") or MONITOR),
            action="resolve" if kind in RESOLVING_KINDS else "trigger", dedup_key=_dedup_key(payload),
            custom_details=details, component=payload.get("server"), group=payload.get("group_key"),
            class_type=payload.get("last_error_class") or payload.get("error_class"),
        )

    def notify(self, context: Context) -> None:
        import pagerduty
        from airflow.providers.pagerduty.hooks.pagerduty_events import PagerdutyEventsHook

        conn = connections.get_connection(self.pagerduty_conn_id)
        routing_key = PagerdutyEventsHook(pagerduty_events_conn_id=self.pagerduty_conn_id).integration_key
        extra = conn.extra_dejson or {}
        base_url = str(extra.get("base_url") or conn.host or "").strip() or None
        if base_url and "://" not in base_url:
            base_url = f"https://{base_url}"
        client = pagerduty.EventsApiV2Client(routing_key, base_url=base_url)
        client.send_event(**self.event(payload_from_context(context)))  # raises on any answer but 202


class HeartbeatOpsgenieNotifier(BaseNotifier):
    """Create (or, on recovery, close) an Opsgenie alert with the opsgenie provider's
    ``OpsgenieAlertHook`` and an ``opsgenie`` connection (``heartbeat_opsgenie``): *password* is
    the API key, *host* the API (``https://api.opsgenie.com``; ``https://api.eu.opsgenie.com`` in
    the EU). The alert's ``alias`` is the outage's key: Opsgenie keeps one alert per alias, and
    the recovery closes it.

    :param opsgenie_conn_id: the connection id.
    """

    def __init__(self, opsgenie_conn_id: str = "heartbeat_opsgenie") -> None:
        super().__init__()
        self.opsgenie_conn_id = opsgenie_conn_id

    @staticmethod
    def alert(payload: dict[str, Any]) -> dict[str, Any]:
        kind = str(payload.get("kind"))
        return {
            "message": _clip(str(payload["title"]), 130), "alias": _clip(_dedup_key(payload), 512),
            "description": _clip(str(payload["text"]), 15000), "source": MONITOR,
            "priority": "P1" if SEVERITY.get(kind) == "critical" else "P2",
            "tags": [MONITOR, kind], "entity": str(payload.get("server") or payload.get("group_key") or ""),
            "details": {k: str(v) for k, v in payload.items() if isinstance(v, str | int | float | bool)},
        }

    def notify(self, context: Context) -> None:
        from airflow.providers.opsgenie.hooks.opsgenie import OpsgenieAlertHook

        payload = payload_from_context(context)
        hook = OpsgenieAlertHook(self.opsgenie_conn_id)
        if payload.get("kind") in RESOLVING_KINDS:
            hook.close_alert(identifier=_dedup_key(payload), identifier_type="alias",
                             payload={"source": MONITOR, "note": str(payload["text"])[:25000]})
        else:
            hook.create_alert(self.alert(payload))


class HeartbeatAppriseNotifier(BaseNotifier):
    """Send a notification to every service of an ``apprise`` connection (``heartbeat_apprise``),
    with the apprise provider: extra ``config`` is one ``{"path": "<apprise URL>", "tag": ...}`` or
    a list of them (Teams, Discord, Matrix, Telegram, ntfy, Pushover, ... by their Apprise URLs).
    Fails unless every service accepted it (the provider's hook does not say).

    :param apprise_conn_id: the connection id.
    """

    def __init__(self, apprise_conn_id: str = "heartbeat_apprise") -> None:
        super().__init__()
        self.apprise_conn_id = apprise_conn_id

    def notify(self, context: Context) -> None:
        import apprise
        from airflow.providers.apprise.hooks.apprise import AppriseHook

        payload = payload_from_context(context)
        hook = AppriseHook(apprise_conn_id=self.apprise_conn_id)
        targets = apprise.Apprise()
        hook.set_config_from_conn(conn=connections.get_connection(self.apprise_conn_id), apprise_obj=targets)
        if not len(targets):
            raise ValueError(f"Airflow connection {self.apprise_conn_id!r} names no Apprise service in its "
                             "extra config")
        kind = payload.get("kind")
        notify_type = (apprise.NotifyType.SUCCESS if kind in RESOLVING_KINDS else
                       apprise.NotifyType.WARNING if kind == "host_key_changed" else apprise.NotifyType.FAILURE)
        if not targets.notify(body=str(payload["text"]), title=str(payload["title"]), notify_type=notify_type):
            raise RuntimeError(f"Apprise: a service of connection {self.apprise_conn_id!r} did not accept the "
                               "notification (see the log above)")
