"""Settings of the monitor, read from ``HEARTBEAT_*`` environment variables.

Environment variables are the one place: the scheduler, the workers, the ``heartbeat``
command and docker-compose all read the same names, and :func:`settings_from_env` is the one
reader of all of them, notifications included. The reader only parses; each settings object
validates itself when it is built (the status and flap rules in their own modules), so a typo
fails loudly at start instead of silently monitoring with a default.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from enum import StrEnum
from typing import Any, get_type_hints

from heartbeat.flapping import FlapRules
from heartbeat.sites import SiteError, parse_sites, worker_name
from heartbeat.status import StatusRules

HEARTBEAT_DB_CONN_ID = "heartbeat_db"


class HostKeyPolicy(StrEnum):
    TOFU = "tofu"  # trust on first use, then pinned in the inventory
    STRICT = "strict"  # a known key (inventory or known_hosts file) is required


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class NotifySettings:
    """Notifications (``HEARTBEAT_NOTIFY_*``).

    :param notify_after_s: a status change must hold this long before it is sent (seconds).
    :param stall_after_s: no cycle finished for this long is a stalled monitor worth telling
        (seconds); None: the monitor's ``stale_after_s`` plus ``notify_after_s``.
    :param max_attempts: sends of one notification on one channel before giving up.
    :param email_conn_id: the SMTP connection of the e-mail channel.
    :param webhook_conn_id: the HTTP connection of the webhook channel.
    :param timeout_s: bound on one webhook request (seconds).
    :param slack_conn_id: the Slack incoming-webhook connection (``slackwebhook``) of the Slack channel.
    :param pagerduty_conn_id: the PagerDuty Events API v2 connection (``pagerduty_events``).
    :param opsgenie_conn_id: the Opsgenie connection (``opsgenie``).
    :param apprise_conn_id: the Apprise connection (``apprise``).
    :param repeat_after_s: a still-failing, unacknowledged server or incident is told again this
        often (seconds); 0: never.
    :param escalate_after: after this many repeats it is escalated to ``escalation_channels``
        once; 0: never (nor without repeats).
    :param escalation_channels: channel names (``pagerduty``, ``opsgenie``, ...) that receive
        escalations only, comma-separated.
    """

    notify_after_s: float = 60.0
    stall_after_s: float | None = None
    max_attempts: int = 3
    email_conn_id: str = "heartbeat_smtp"
    webhook_conn_id: str = "heartbeat_webhook"
    timeout_s: float = 10.0
    slack_conn_id: str = "heartbeat_slack"
    pagerduty_conn_id: str = "heartbeat_pagerduty"
    opsgenie_conn_id: str = "heartbeat_opsgenie"
    apprise_conn_id: str = "heartbeat_apprise"
    repeat_after_s: float = 0.0
    escalate_after: int = 0
    escalation_channels: str = ""

    def __post_init__(self) -> None:
        if self.notify_after_s < 0:
            raise SettingsError(f"notify_after_s cannot be negative, got {self.notify_after_s!r}")
        if self.stall_after_s is not None and not self.stall_after_s > 0:
            raise SettingsError(f"stall_after_s must be greater than 0, got {self.stall_after_s!r}")
        if not self.timeout_s > 0:
            raise SettingsError(f"timeout_s must be greater than 0, got {self.timeout_s!r}")
        if self.max_attempts < 1:
            raise SettingsError(f"max_attempts must be at least 1, got {self.max_attempts!r}")
        if self.repeat_after_s < 0 or self.escalate_after < 0:
            raise SettingsError("repeat_after_s and escalate_after cannot be negative "
                                "(HEARTBEAT_NOTIFY_REPEAT_AFTER_S, HEARTBEAT_NOTIFY_ESCALATE_AFTER)")

    @property
    def escalation_channel_names(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.escalation_channels.split(",") if n.strip())

    def stall_threshold_s(self, stale_after_s: float) -> float:
        """How long without a finished cycle is a stall worth telling: ``stall_after_s`` if set,
        else the time after which servers read STALE plus the debounce."""
        return self.stall_after_s if self.stall_after_s is not None else stale_after_s + self.notify_after_s


INCIDENT_DIMENSIONS = ("parent", "bastion", "connection", "site", "prefix")


@dataclass(frozen=True)
class IncidentSettings:
    """Shared-cause incidents (``HEARTBEAT_INCIDENT_*``).

    :param min_servers: servers that must fail together for an incident; fewer are paged one by
        one. 3 by default: two servers failing in the same cycle happens by chance on any fleet,
        and two pages are not a storm.
    :param min_share: the failed servers' share (0-1) of all enabled servers sharing the cause
        (the prefix, the connection, the parent). 0.5 by default, "most of them": a switch, an
        expired key or a dead hypervisor takes out most of what depends on it, a coincidence
        rarely does.
    :param dimensions: what failing servers may share, tried in this order, comma-separated:
        ``parent`` (declared), ``bastion`` (the jump host, ``via``), ``connection`` (the SSH
        connection: credential failures only), ``site`` (the network probed from; not ``default``),
        ``prefix`` (the address prefix). A server joins the first group that qualifies.
    :param prefix_v4: the IPv4 prefix length of the ``prefix`` dimension.
    :param prefix_v6: the IPv6 prefix length of the ``prefix`` dimension.
    :param window_s: failures that went OFFLINE within this many seconds and are not told yet
        can form an incident (120: the notification debounce of 60 s plus two cycles, so servers
        whose heartbeats lapse a cycle apart still land in one incident).
    """

    min_servers: int = 3
    min_share: float = 0.5
    dimensions: str = ",".join(INCIDENT_DIMENSIONS)
    prefix_v4: int = 24
    prefix_v6: int = 64
    window_s: float = 120.0

    def __post_init__(self) -> None:
        if self.min_servers < 2:
            raise SettingsError(f"HEARTBEAT_INCIDENT_MIN_SERVERS must be at least 2, got {self.min_servers!r}")
        if not 0 < self.min_share <= 1:
            raise SettingsError(f"HEARTBEAT_INCIDENT_MIN_SHARE must be above 0 and at most 1, got {self.min_share!r}")
        unknown = [d for d in self.dimension_list if d not in INCIDENT_DIMENSIONS]
        if unknown:
            raise SettingsError(f"HEARTBEAT_INCIDENT_DIMENSIONS: unknown {', '.join(unknown)}; "
                                f"known: {', '.join(INCIDENT_DIMENSIONS)}")
        if not 1 <= self.prefix_v4 <= 32 or not 1 <= self.prefix_v6 <= 128:
            raise SettingsError("HEARTBEAT_INCIDENT_PREFIX_V4 is 1-32 and HEARTBEAT_INCIDENT_PREFIX_V6 1-128")

    @property
    def dimension_list(self) -> tuple[str, ...]:
        return tuple(d.strip() for d in self.dimensions.split(",") if d.strip())


@dataclass(frozen=True)
class Settings:
    """:param offline_after_s: a heartbeat older than this makes a server OFFLINE (seconds).
    :param connect_timeout_s: budget for name resolution and the TCP connect (seconds).
    :param probe_timeout_s: budget for the whole login, connect included (seconds).
    :param concurrency: logins in flight at once inside one probe task.
    :param shard_size: servers per mapped probe task; 1 gives one task per server. A task has a
        fixed cost in Airflow (its start and runtime) and runs its logins on one core, so few
        large shards are cheapest (docs/benchmarks.md, shard size).
    :param max_shards: upper bound on mapped probe tasks; shards grow to stay under it. At most
        ``max_active_tasks`` (16 by default) run at once; more shards would only queue, and every
        running shard adds ``concurrency`` logins in flight.
    :param host_key_policy: ``tofu`` or ``strict``.
    :param known_hosts_file: an OpenSSH known_hosts file consulted before the inventory's pinned key.
    :param history_retention_days: probe history older than this is deleted by the pipeline.
    :param metadata_retention_days: Airflow run records older than this are cleaned (``airflow db clean``).
    :param log_retention_days: task log files older than this are deleted.
    :param failure_threshold: failed logins in a row that make a server OFFLINE at once (0: off, the
        seed's rule alone: OFFLINE when the heartbeat is older than ``offline_after_s``).
    :param recovery_threshold: successful logins in a row an OFFLINE server needs to count again.
    :param stale_after_s: read-time views mark servers STALE when no cycle finished for this long.
    :param flap_window: attempts considered by flap detection.
    :param flap_high_pct: weighted share of state changes above which a server starts flapping.
    :param flap_low_pct: share below which a flapping server stops flapping.
    :param db_conn_id: the Airflow connection of the heartbeat database.
    :param kex_algs: key exchange algorithms offered, in order of preference, comma-separated;
        empty: the monitor's default (ECDH P-256 first, the cheapest for OpenSSH servers).
    :param sites: the sites probed, comma-separated (``HEARTBEAT_SITES``; default: ``default``).
        Read when the DAG file is parsed: each site gets its own probe task, sent to its own
        Celery queue (``heartbeat-<site>``). A server's site must be one of them.
    :param worker_name: what identifies this worker in the attempts it records; empty: the host name.
    :param notify: notifications, from the ``HEARTBEAT_NOTIFY_*`` variables.
    :param incident: shared-cause incidents, from the ``HEARTBEAT_INCIDENT_*`` variables.
    :param bastion_max_channels: target logins in flight at once through one bastion connection
        (each a ``direct-tcpip`` channel; the bastion's sshd connects to the target for each).
    """

    offline_after_s: float = 60.0
    connect_timeout_s: float = 5.0
    probe_timeout_s: float = 10.0
    concurrency: int = 32
    shard_size: int = 1000
    max_shards: int = 16
    host_key_policy: HostKeyPolicy = HostKeyPolicy.TOFU
    known_hosts_file: str | None = None
    history_retention_days: float = 7.0
    metadata_retention_days: float = 3.0
    log_retention_days: float = 3.0
    failure_threshold: int = 0
    recovery_threshold: int = 1
    stale_after_s: float = 60.0
    flap_window: int = 10
    flap_high_pct: float = 50.0
    flap_low_pct: float = 25.0
    db_conn_id: str = HEARTBEAT_DB_CONN_ID
    kex_algs: str = ""
    sites: str = "default"
    worker_name: str = ""
    notify: NotifySettings = field(default_factory=NotifySettings)
    incident: IncidentSettings = field(default_factory=IncidentSettings)
    bastion_max_channels: int = 16

    def __post_init__(self) -> None:
        positive = ("connect_timeout_s", "probe_timeout_s", "history_retention_days", "metadata_retention_days",
                    "log_retention_days")
        for name in positive:
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be greater than 0, got {getattr(self, name)!r}")
        for name in ("concurrency", "shard_size", "max_shards", "bastion_max_channels"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.connect_timeout_s > self.probe_timeout_s:
            raise SettingsError(
                f"connect_timeout_s ({self.connect_timeout_s}) cannot exceed probe_timeout_s "
                f"({self.probe_timeout_s})"
            )
        try:
            parse_sites(self.sites)
        except SiteError as exc:
            raise SettingsError(f"HEARTBEAT_SITES={self.sites!r}: {exc}") from None
        # The rules validate themselves; their errors name the variables they come from.
        for rules, names in ((lambda: self.status_rules, STATUS_RULE_FIELDS), (lambda: self.flap_rules,
                                                                               FLAP_RULE_FIELDS)):
            try:
                rules()
            except ValueError as exc:
                raise SettingsError(f"{exc} (set by {', '.join(env_name(n) for n in names)})") from None

    @property
    def kex_alg_list(self) -> tuple[str, ...]:
        """The configured key exchange algorithms (empty: the probe's default order)."""
        return tuple(a.strip() for a in self.kex_algs.split(",") if a.strip())

    @property
    def site_list(self) -> tuple[str, ...]:
        """The configured sites, in order."""
        return parse_sites(self.sites)

    @property
    def worker(self) -> str:
        """What identifies this worker in the attempts it records."""
        return worker_name(self.worker_name)

    @property
    def status_rules(self) -> StatusRules:
        return StatusRules(self.offline_after_s, self.failure_threshold, self.recovery_threshold, self.stale_after_s,
                           site_stale_after_s=self.stale_after_s)

    @property
    def flap_rules(self) -> FlapRules:
        return FlapRules(self.flap_window, self.flap_high_pct, self.flap_low_pct)


STATUS_RULE_FIELDS = ("offline_after_s", "failure_threshold", "recovery_threshold", "stale_after_s")
FLAP_RULE_FIELDS = ("flap_window", "flap_high_pct", "flap_low_pct")


def env_name(field_name: str, group: str = "") -> str:
    """``HEARTBEAT_<FIELD>``; in a group of settings (``notify``), ``HEARTBEAT_<GROUP>_<FIELD>``,
    the group's name written once (``notify_after_s``: ``HEARTBEAT_NOTIFY_AFTER_S``)."""
    if not group:
        return "HEARTBEAT_" + field_name.upper()
    return f"HEARTBEAT_{group.upper()}_" + field_name.removeprefix(group + "_").upper()


def env_names() -> list[str]:
    """Every variable :func:`settings_from_env` reads, in the order of the settings' fields."""
    names: list[str] = []
    for f in fields(Settings):
        group = _group(f)
        names += [env_name(g.name, f.name) for g in fields(group)] if group else [env_name(f.name)]
    return names


def _group(f: Any) -> Any:
    """The settings class of a group field (``notify``), None for a plain value."""
    factory = f.default_factory
    return factory if factory is not MISSING and is_dataclass(factory) else None


def _parse(raw: str, kind: Any) -> Any:
    if isinstance(kind, types.UnionType):  # X | None: the X
        kind = next(k for k in kind.__args__ if k is not type(None))
    if kind is HostKeyPolicy:
        return HostKeyPolicy(raw.strip().lower())
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind in (int, float):
        return kind(raw)
    return raw


def _read(cls: Any, environ: Mapping[str, str], group: str = "") -> Any:
    kinds = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        nested = _group(f)
        if nested is not None:
            values[f.name] = _read(nested, environ, f.name)
            continue
        name = env_name(f.name, group)
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = _parse(raw, kinds[f.name])
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a valid value for {f.name}") from None
    return cls(**values)


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from every ``HEARTBEAT_*`` variable (:func:`env_names`); unset or
    empty ones keep their default. Values are parsed by their declared type, then each settings
    object validates itself."""
    settings: Settings = _read(Settings, os.environ if environ is None else environ)
    return settings
