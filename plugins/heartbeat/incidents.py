"""Shared-cause incidents: one page per root cause instead of one per server.

Each cycle, the servers that newly went OFFLINE (not told yet, in no open incident, not in
maintenance) are grouped by what they share, in the order of ``HEARTBEAT_INCIDENT_DIMENSIONS``:

- ``parent``: the declared parent (a switch, a hypervisor, a bastion), whatever the error class;
- ``bastion``: the jump host a server is reached through (``servers.via``), per error class (a
  failed hop itself is told once by its path outage, and its ``path_down`` servers never reach here);
- ``connection``: the SSH connection (its credential), for ``auth`` failures only: a key refused
  by most servers of one connection is a credential problem, not that many outages;
- ``site``: the network a server is probed from (``servers.site``; the ``default`` site shares
  nothing), per error class (a site without a working monitor is told by its stall, and its
  servers read STALE, not OFFLINE);
- ``prefix``: the address prefix (/24, /64) of servers whose host is an address, per error class.

A group opens an incident when it has at least ``min_servers`` members and they are at least
``min_share`` of the enabled servers sharing the cause (its population). A failure whose cause
matches an open incident joins it. Members keep their statuses (the status rules never read
incidents); the notification step tells the incident once instead of each member, and an
incident closes when none of its members is OFFLINE any more.

:func:`group_failures` is the rule (pure); :func:`heartbeat.cycle.update_incidents` runs it against
the store each cycle. A new dimension (a site, a bastion) is one more entry in :data:`DIMENSIONS`.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from heartbeat.config import IncidentSettings

CREDENTIAL_CLASSES = frozenset({"auth"})
ANY_CLASS = "any"  # the error class of a dimension that ignores it (a parent explains every failure)


@dataclass(frozen=True)
class FleetServer:
    """What grouping needs of an enabled server."""

    server_id: int
    server_name: str
    host: str
    conn_id: str
    parent_name: str | None = None
    parent_kind: str | None = None
    via: str | None = None
    site: str | None = None


@dataclass(frozen=True)
class Failure:
    """A server that newly went OFFLINE and has not been told: its status change and last error class."""

    server_id: int
    server_name: str
    host: str
    conn_id: str
    parent_name: str | None
    parent_kind: str | None
    error_class: str
    event_id: int
    at: datetime
    via: str | None = None
    site: str | None = None

    def as_server(self) -> FleetServer:
        return FleetServer(self.server_id, self.server_name, self.host, self.conn_id, self.parent_name,
                           self.parent_kind, self.via, self.site)


@dataclass(frozen=True)
class Cause:
    """What a group shares: a dimension, its value, and the error class (``any`` for a parent)."""

    dimension: str
    group_key: str
    error_class: str


@dataclass(frozen=True)
class Group:
    cause: Cause
    members: tuple[Failure, ...]
    population: int


def address_prefix(host: str, settings: IncidentSettings) -> str | None:
    """The network of ``host`` (``10.0.3.0/24``, ``2001:db8::/64``); None for a name."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    bits = settings.prefix_v4 if address.version == 4 else settings.prefix_v6
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def _parent_key(server: FleetServer, error_class: str | None, settings: IncidentSettings) -> str | None:
    return f"{server.parent_kind} {server.parent_name}" if server.parent_name else None


def _bastion_key(server: FleetServer, error_class: str | None, settings: IncidentSettings) -> str | None:
    return f"bastion {server.via}" if server.via else None


DEFAULT_SITE = "default"  # servers given no site share nothing by it


def _site_key(server: FleetServer, error_class: str | None, settings: IncidentSettings) -> str | None:
    return f"site {server.site}" if server.site and server.site != DEFAULT_SITE else None


def _connection_key(server: FleetServer, error_class: str | None, settings: IncidentSettings) -> str | None:
    return server.conn_id if error_class is None or error_class in CREDENTIAL_CLASSES else None


def _prefix_key(server: FleetServer, error_class: str | None, settings: IncidentSettings) -> str | None:
    return address_prefix(server.host, settings)


KeyOf = Callable[[FleetServer, "str | None", IncidentSettings], "str | None"]

# dimension -> (the key a server has in it (error_class None: for the population), class-blind?)
DIMENSIONS: dict[str, tuple[KeyOf, bool]] = {
    "parent": (_parent_key, True),
    "bastion": (_bastion_key, False),
    "connection": (_connection_key, False),
    "site": (_site_key, False),
    "prefix": (_prefix_key, False),
}


def cause_of(dimension: str, failure: Failure, settings: IncidentSettings) -> Cause | None:
    key_of, class_blind = DIMENSIONS[dimension]
    key = key_of(failure.as_server(), failure.error_class, settings)
    if key is None:
        return None
    return Cause(dimension, key, ANY_CLASS if class_blind else failure.error_class)


def group_failures(
    failures: Sequence[Failure], fleet: Iterable[FleetServer], settings: IncidentSettings,
    open_causes: Iterable[Cause] = (),
) -> tuple[dict[Cause, list[Failure]], list[Group]]:
    """Split ``failures`` into those joining an open incident (by its cause) and new groups that
    qualify; failures in neither are paged one by one."""
    open_set = set(open_causes)
    joining: dict[Cause, list[Failure]] = defaultdict(list)
    rest: list[Failure] = []
    for failure in failures:
        for dimension in settings.dimension_list:
            cause = cause_of(dimension, failure, settings)
            if cause is not None and cause in open_set:
                joining[cause].append(failure)
                break
        else:
            rest.append(failure)
    if len(rest) < settings.min_servers:
        return dict(joining), []
    fleet = list(fleet)
    # A parent is part of its own group: the switch that failed with the servers behind it.
    parents = {s.parent_name: f"{s.parent_kind} {s.parent_name}" for s in fleet if s.parent_name}
    groups: list[Group] = []
    for dimension in settings.dimension_list:
        key_of, _ = DIMENSIONS[dimension]
        by_cause: dict[Cause, list[Failure]] = defaultdict(list)
        for failure in rest:
            cause = cause_of(dimension, failure, settings)
            if dimension == "parent" and failure.server_name in parents:
                cause = Cause(dimension, parents[failure.server_name], ANY_CLASS)
            if cause is not None:
                by_cause[cause].append(failure)
        candidates = {c: m for c, m in by_cause.items() if len(m) >= settings.min_servers}
        if not candidates:
            continue
        population = Counter(key for s in fleet if (key := key_of(s, None, settings)) is not None)
        if dimension == "parent":
            population.update(parents[s.server_name] for s in fleet if s.server_name in parents)
        taken: set[int] = set()
        for cause, members in sorted(candidates.items(), key=lambda item: -len(item[1])):
            size = max(population[cause.group_key], len(members))
            if len(members) / size >= settings.min_share:
                groups.append(Group(cause, tuple(sorted(members, key=lambda f: f.server_name)), size))
                taken.update(f.server_id for f in members)
        rest = [f for f in rest if f.server_id not in taken]
        if len(rest) < settings.min_servers:
            break
    return dict(joining), groups


CLASS_WORDS = {
    "timeout": "timed out", "refused": "refused connections", "unreachable": "became unreachable",
    "dns": "stopped resolving", "banner": "stopped speaking SSH", "kex": "failed the key exchange",
    "host_key_changed": "presented changed host keys", "host_key_unknown": "presented unknown host keys",
    "auth": "refused the monitor's key",
}


def describe(dimension: str, group_key: str, error_class: str, members: int, population: int,
             since: datetime) -> tuple[str, str]:
    """The title and the text of an incident."""
    when = since.isoformat(timespec="seconds")
    if dimension == "connection" and error_class in CREDENTIAL_CLASSES:
        title = f"the monitor's key was refused by {members} servers of connection {group_key}"
        return title, (f"The monitor's key was refused by {members} servers of connection {group_key} "
                       f"(of {population}) since {when}: a credential problem, not {members} outages. "
                       f"Check the key of Airflow connection {group_key!r} and the servers' authorized_keys.")
    words = CLASS_WORDS.get(error_class, f"failed ({error_class})")
    if dimension == "bastion":
        title = f"{members} of {population} servers behind {group_key} {words}"
        return title, f"{title} since {when}: one cause, one page."
    if dimension == "parent":
        title = f"{members} of {population} servers at {group_key} (itself and those behind it) are OFFLINE"
        return title, f"{title} since {when}: one cause, one page."
    where = {"prefix": "in", "connection": "of connection", "site": "of"}.get(dimension, f"of {dimension}")
    title = f"{members} of {population} servers {where} {group_key} {words}"
    return title, f"{members} of {population} servers {where} {group_key} {words} since {when}: one cause, one page."

