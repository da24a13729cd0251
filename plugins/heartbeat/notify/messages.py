"""The texts of notifications: what is said about a status change, a changed host key, an
incident, a bastion's or a site's outage and a stalled monitor; and how a channel's notifier finds
the notification in its context. Pure functions of what the store found; nothing here sends or reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from heartbeat.incidents import describe
from heartbeat.sites import queue_name
from heartbeat.store import (
    FinishedCycle,
    HostKeyAlertDue,
    IncidentDue,
    OngoingOutage,
    PathOutageDue,
    SiteStallDue,
    StatusChangeDue,
)

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

MONITOR = "airflow-ssh-heartbeat"
OFFLINE, RECOVERED, HOST_KEY_CHANGED, MONITOR_STALLED = "offline", "recovered", "host_key_changed", "monitor_stalled"
INCIDENT, INCIDENT_RESOLVED, REPEAT, ESCALATION = "incident", "incident_resolved", "repeat", "escalation"
MEMBERS_LISTED = 20  # member names in a notification's text; the rest are counted
PATH_DOWN = "path_down"
SITE_STALLED, SITE_RECOVERED = "site_stalled", "site_recovered"


# The key under which a channel hands its notifier the notification, in an Airflow context.
CONTEXT_KEY = "heartbeat_notification"


def payload_from_context(context: Context) -> dict[str, Any]:
    """The notification a channel was given in ``context`` (under :data:`CONTEXT_KEY`); a notifier
    used as a plain Airflow callback gets a summary of the run instead."""
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
    incident_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        """One key per outage, the same for its first notification, its repeats and its
        resolution: a server (``airflow-ssh-heartbeat/server/web-01``) or an incident
        (``airflow-ssh-heartbeat/incident/42``). On-call tools update one alert with it."""
        if self.incident_id is not None:
            return f"{MONITOR}/incident/{self.incident_id}"
        if self.server_name is not None:
            return f"{MONITOR}/server/{self.server_name}"
        return f"{MONITOR}/{self.kind}/{self.subject}"

    @property
    def resolves(self) -> bool:
        """Whether this notification says an outage is over (on-call tools close their alert)."""
        return self.kind in (RECOVERED, INCIDENT_RESOLVED) or bool(self.details.get("resumed"))

    def to_json(self) -> dict[str, Any]:
        """The webhook body; ``text`` also makes it a valid Slack/Mattermost incoming-webhook message."""
        return {
            "monitor": MONITOR, "id": self.subject, "kind": self.kind, "title": self.title, "text": self.text,
            "at": self.at.isoformat(), "server": self.server_name, "dedup_key": self.dedup_key, **self.details,
        }


def _when(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def status_change_notification(change: StatusChangeDue) -> Notification:
    where = f"{change.server_name} ({change.host}:{change.port})"
    if change.kind == OFFLINE:
        title = f"{change.server_name} is OFFLINE"
        text = f"{where} is OFFLINE since {_when(change.at)}: {change.reason}"
    else:
        title = f"{change.server_name} recovered: {change.to_status}"
        text = f"{where} is {change.to_status} again since {_when(change.at)}: {change.reason}"
    return Notification(
        kind=change.kind, subject=f"status_event:{change.event_id}", title=title, text=text, at=change.at,
        server_id=change.server_id, server_name=change.server_name, event_id=change.event_id,
        details={"host": change.host, "port": change.port, "from_status": change.from_status,
                 "to_status": change.to_status, "reason": change.reason,
                 "last_error_class": change.last_error_class},
    )


def host_key_notification(alert: HostKeyAlertDue) -> Notification:
    return Notification(
        kind=HOST_KEY_CHANGED, subject=f"alert:{alert.alert_id}",
        title=f"{alert.server_name}: host key changed",
        text=f"{alert.server_name} ({alert.host}:{alert.port}) presented a different host key at "
             f"{_when(alert.at)}; its heartbeats stop until this is resolved. {alert.message}",
        at=alert.at, server_id=alert.server_id, server_name=alert.server_name, alert_id=alert.alert_id,
        details={"host": alert.host, "port": alert.port, "reason": alert.message},
    )


def path_down_notification(outage: PathOutageDue) -> Notification:
    """One notification for a bastion hop that failed, instead of one per server behind it: an
    incident whose shared cause is the bastion (ledger kind ``incident``, subject ``path_down:<id>``);
    and one when the hop works again (``incident_resolved``, subject ``path_up:<id>``)."""
    servers = f"{outage.servers_behind} server{'' if outage.servers_behind == 1 else 's'}"
    details = {"host": outage.host, "port": outage.port, "reason": outage.cause, "dimension": "bastion",
               "group_key": outage.bastion_name, "error_class": PATH_DOWN, "members": outage.servers_behind,
               "path_outage_id": outage.outage_id}
    if outage.ended_at is not None:
        # Same server (the bastion), so the same dedup key: on-call tools close the alert they opened.
        return Notification(
            kind=INCIDENT_RESOLVED, subject=f"path_up:{outage.outage_id}",
            title=f"bastion {outage.bastion_name} works again: {servers} behind it monitored",
            text=f"the monitor gets through bastion {outage.bastion_name} ({outage.host}:{outage.port}) again "
                 f"since {_when(outage.ended_at)} (down since {_when(outage.at)}: {outage.cause}). The {servers} "
                 "behind it are probed again and show their own status.",
            at=outage.ended_at, server_id=outage.bastion_id, server_name=outage.bastion_name, details=details)
    return Notification(
        kind=INCIDENT, subject=f"path_down:{outage.outage_id}",
        title=f"bastion {outage.bastion_name} unreachable: {servers} behind it not monitored",
        text=f"the monitor cannot get through bastion {outage.bastion_name} ({outage.host}:{outage.port}) since "
             f"{_when(outage.at)}: {outage.cause}. The {servers} behind it are not probed; they show OFFLINE "
             "with this cause and do not page one by one until the bastion works again.",
        at=outage.at, server_id=outage.bastion_id, server_name=outage.bastion_name, details=details,
    )


def stall_notification(
    last: FinishedCycle | None, current_started_at: datetime | None, stall_after_s: float, as_of: datetime,
) -> Notification | None:
    """A stall: the gap between the ``last`` finished cycle and ``as_of`` (or the start of the
    current cycle, which then reports the stall it ended) is longer than ``stall_after_s``."""
    if last is None:
        return None
    gap_end, resumed = as_of, False
    if current_started_at is not None and current_started_at >= last.finished_at:
        gap_end, resumed = current_started_at, True
    gap_s = (gap_end - last.finished_at).total_seconds()
    if gap_s <= stall_after_s:
        return None
    text = (f"no monitoring cycle finished for {gap_s:.0f} s (the last one, {last.cycle_id}, finished at "
            f"{_when(last.finished_at)})")
    text += ("; monitoring has resumed" if resumed else
             ": is the ssh_heartbeat DAG paused, or the Airflow scheduler down? Server statuses are not updated")
    return Notification(
        kind=MONITOR_STALLED, subject=f"monitor_stalled:{last.cycle_id}", title="heartbeat monitor stalled",
        text=text, at=gap_end, details={"last_cycle_id": last.cycle_id, "stalled_s": round(gap_s),
                                        "resumed": resumed},
    )


def incident_notification(incident: IncidentDue) -> Notification:
    """An incident opened (one notification for all its members) or resolved."""
    title, text = describe(incident.dimension, incident.group_key, incident.error_class, incident.members,
                           incident.population, incident.first_failed_at)
    names = incident.member_names[:MEMBERS_LISTED]
    more = incident.members - len(names)
    listing = ", ".join(names) + (f" and {more} more" if more > 0 else "")
    details = {"incident_id": incident.incident_id, "dimension": incident.dimension,
               "group_key": incident.group_key, "error_class": incident.error_class,
               "members": incident.members, "population": incident.population,
               "member_names": incident.member_names}
    if incident.kind == INCIDENT_RESOLVED:
        assert incident.closed_at is not None
        return Notification(
            kind=INCIDENT_RESOLVED, subject=f"incident_resolved:{incident.incident_id}",
            title=f"resolved: {title}",
            text=f"Incident {incident.incident_id} is resolved since {_when(incident.closed_at)}: every member "
                 f"recovered ({title}). Members: {listing}.",
            at=incident.closed_at, incident_id=incident.incident_id, details=details)
    return Notification(
        kind=INCIDENT, subject=f"incident:{incident.incident_id}", title=title,
        text=f"Incident {incident.incident_id}: {text} Members: {listing}.",
        at=incident.opened_at, incident_id=incident.incident_id, details=details)


def _outage_title(outage: OngoingOutage) -> tuple[str, str]:
    """The outage's title and how to acknowledge it."""
    if outage.incident_id is not None:
        title, _ = describe(str(outage.dimension), str(outage.group_key), str(outage.error_class), outage.members,
                            int(outage.population or outage.members), outage.since)
        return title, f"heartbeat ack incident {outage.incident_id} --reason ..."
    return f"{outage.server_name} is OFFLINE", f"heartbeat ack server {outage.server_name} --reason ..."


def _outage_notification(outage: OngoingOutage, kind: str, subject: str, title: str, text: str,
                         at: datetime, **details: Any) -> Notification:
    return Notification(
        kind=kind, subject=subject, title=title, text=text, at=at, server_id=outage.server_id,
        server_name=outage.server_name, event_id=outage.event_id, incident_id=outage.incident_id,
        details={"outage": outage.subject, "since": outage.since.isoformat(), "reason": outage.reason,
                 "group_key": outage.group_key, **details})


def repeat_notification(outage: OngoingOutage, number: int, as_of: datetime) -> Notification:
    """The ``number``-th reminder of an outage that still holds and nobody acknowledged."""
    title, ack = _outage_title(outage)
    return _outage_notification(
        outage, REPEAT, f"{outage.subject}:repeat:{number}", f"still failing: {title}",
        f"Still failing since {_when(outage.since)} and not acknowledged (reminder {number}): {title}. "
        f"Acknowledge to stop reminders: {ack}", as_of, repeat=number)


def escalation_notification(outage: OngoingOutage, repeats: int, as_of: datetime,
                            by: str | None = None) -> Notification:
    """An outage still unacknowledged after ``repeats`` reminders, for the escalation channels;
    ``by``: escalated by hand, by this person."""
    title, ack = _outage_title(outage)
    why = (f"escalated by {by}" if by else f"told {repeats + 1} times and not acknowledged")
    return _outage_notification(
        outage, ESCALATION, f"{outage.subject}:escalation", f"escalated: {title}",
        f"Escalated: failing since {_when(outage.since)}, {why}: {title}. Acknowledge: {ack}", as_of,
        repeats=repeats, escalated_by=by)


def site_notification(stall: SiteStallDue) -> Notification:
    """One message for a whole site without a working monitor (not one per server), or back."""
    servers = f"{stall.servers} server{'s' if stall.servers != 1 else ''}"
    since = f"since {_when(stall.since)}" if stall.ever_probed else f"yet (expected since {_when(stall.since)})"
    if stall.kind == SITE_STALLED:
        title = f"site {stall.site} has no working monitor"
        text = (f"no probe from site {stall.site} {since}: its {servers} read STALE, not OFFLINE (nothing is known "
                f"about them). Is a worker serving the Celery queue {queue_name(stall.site)} running, and is the "
                f"site in HEARTBEAT_SITES?")
    else:
        title = f"site {stall.site} is monitored again"
        text = f"probes from site {stall.site} arrive again since {_when(stall.at)}; its servers' statuses recover"
    return Notification(
        kind=stall.kind, subject=f"{stall.kind}:{stall.stall_id}", title=title, text=text, at=stall.at,
        details={"site": stall.site, "since": stall.since.isoformat(), "servers": stall.servers},
    )
