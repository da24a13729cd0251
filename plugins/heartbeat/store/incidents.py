"""Shared-cause incidents, their members, acknowledgements and typed parents (queries in
``include/sql/queries/incidents.sql``). The grouping rule is :mod:`heartbeat.incidents`; the
functions that take part in a cycle's incident step run inside its transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from heartbeat import sql
from heartbeat.store._records import Connection, records

if TYPE_CHECKING:
    from heartbeat.incidents import Cause, Failure, FleetServer, Group


class AcknowledgementError(ValueError):
    """An acknowledgement or a parent that cannot be recorded; nothing was changed."""


@dataclass(frozen=True)
class IncidentRecord:
    id: int
    dimension: str
    group_key: str
    error_class: str
    population: int
    first_failed_at: datetime
    opened_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    members: int
    still_failing: int
    member_names: list[str]
    acknowledged_by: str | None


@dataclass(frozen=True)
class Acknowledgement:
    id: int
    server_name: str | None
    incident_id: int | None
    acknowledged_by: str
    reason: str
    created_at: datetime
    expires_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    active: bool


@dataclass(frozen=True)
class ServerIncidentState:
    server_id: int
    incident_id: int | None
    acknowledged_by: str | None


def server_incident_states(conn: Connection) -> dict[int, ServerIncidentState]:
    """Per server id, its open incident and active acknowledgement (servers with neither left out)."""
    with conn.transaction():
        rows = records(ServerIncidentState, conn.execute(sql.query("server_incident_states")))
    return {r.server_id: r for r in rows}


def lock_incidents(conn: Connection) -> None:
    conn.execute(sql.query("lock_incidents"))


def incident_failures(conn: Connection, as_of: datetime, window_s: float) -> list[Failure]:
    from heartbeat.incidents import Failure

    return records(Failure, conn.execute(sql.query("incident_failures"), {"as_of": as_of, "window_s": window_s}))


def grouping_fleet(conn: Connection) -> list[FleetServer]:
    from heartbeat.incidents import FleetServer

    return records(FleetServer, conn.execute(sql.query("grouping_fleet")))


def open_incident_causes(conn: Connection) -> dict[Cause, int]:
    from heartbeat.incidents import Cause

    return {Cause(r["dimension"], r["group_key"], r["error_class"]): int(r["id"])
            for r in conn.execute(sql.query("open_incident_causes"))}


def open_incident(conn: Connection, group: Group, as_of: datetime) -> int:
    row = conn.execute(sql.query("open_incident"), {
        "dimension": group.cause.dimension, "group_key": group.cause.group_key,
        "error_class": group.cause.error_class, "population": group.population,
        "first_failed_at": min(f.at for f in group.members), "as_of": as_of,
    }).fetchone()
    assert row is not None
    return int(row["id"])


def add_incident_members(conn: Connection, incident_id: int, members: Sequence[Failure], as_of: datetime) -> int:
    for failure in members:
        conn.execute(sql.query("add_incident_member"), {"incident_id": incident_id, "server_id": failure.server_id,
                                                         "event_id": failure.event_id, "as_of": as_of})
    return len(members)


def close_recovered_incidents(conn: Connection, as_of: datetime) -> int:
    """Members no longer OFFLINE leave; incidents left without a failing member close."""
    conn.execute(sql.query("leave_recovered_members"), {"as_of": as_of})
    return len(conn.execute(sql.query("close_recovered_incidents"), {"as_of": as_of}).fetchall())


def end_acknowledgements(conn: Connection, as_of: datetime) -> int:
    return len(conn.execute(sql.query("end_acknowledgements"), {"as_of": as_of}).fetchall())


def list_incidents(conn: Connection, as_of: datetime, include_closed: bool = False,
                   limit: int = 100) -> list[IncidentRecord]:
    with conn.transaction():
        return records(IncidentRecord, conn.execute(sql.query("list_incidents"),
                                                    {"as_of": as_of, "all": include_closed, "limit": limit}))


def acknowledge(
    conn: Connection, *, by: str, reason: str, as_of: datetime, server_name: str | None = None,
    incident_id: int | None = None, expires_at: datetime | None = None,
) -> int:
    """Acknowledge a failing server or an open incident; returns the acknowledgement's id.

    :raises AcknowledgementError: unknown server or incident, one that is not failing, an expiry
        not in the future, no name of who acknowledges.
    """
    if (server_name is None) == (incident_id is None):
        raise AcknowledgementError("acknowledge either a server or an incident")
    if not by.strip():
        raise AcknowledgementError("say who acknowledges")
    if expires_at is not None and expires_at <= as_of:
        raise AcknowledgementError(f"the expiry {expires_at.isoformat(timespec='seconds')} is not in the future: "
                                   "give a later time, or none")
    with conn.transaction():
        server_id = None
        if server_name is not None:
            row = conn.execute(sql.query("server_by_name"), {"name": server_name}).fetchone()
            if row is None:
                raise AcknowledgementError(f"no server named {server_name!r} (see `heartbeat servers list`)")
            server_id = int(row["id"])
            if conn.execute(sql.query("server_offline"), {"server_id": server_id}).fetchone() is None:
                raise AcknowledgementError(f"{server_name} is not OFFLINE: there is nothing to acknowledge")
        else:
            row = conn.execute(sql.query("incident_by_id"), {"id": incident_id}).fetchone()
            if row is None:
                raise AcknowledgementError(f"no incident {incident_id} (see `heartbeat incidents list`)")
            if row["closed_at"] is not None:
                raise AcknowledgementError(f"incident {incident_id} is closed: there is nothing to acknowledge")
        created = conn.execute(sql.query("add_acknowledgement"), {
            "server_id": server_id, "incident_id": incident_id, "acknowledged_by": by.strip()[:200],
            "reason": reason[:2000], "as_of": as_of, "expires_at": expires_at,
        }).fetchone()
    assert created is not None
    return int(created["id"])


def list_acknowledgements(conn: Connection, as_of: datetime, include_ended: bool = False) -> list[Acknowledgement]:
    with conn.transaction():
        return records(Acknowledgement, conn.execute(sql.query("list_acknowledgements"),
                                                     {"as_of": as_of, "all": include_ended}))


PARENT_KINDS = ("switch", "router", "hypervisor", "bastion", "host")


def set_parent(conn: Connection, server_name: str, parent_name: str | None, parent_kind: str | None = None) -> None:
    """Declare (or with ``parent_name`` None, remove) the server ``server_name`` depends on.

    :raises AcknowledgementError: an unknown server, an unknown kind, or a loop (the parent
        depends, directly or not, on the server).
    """
    with conn.transaction():
        server = conn.execute(sql.query("server_by_name"), {"name": server_name}).fetchone()
        if server is None:
            raise AcknowledgementError(f"no server named {server_name!r} (see `heartbeat servers list`)")
        parent_id = None
        if parent_name is not None:
            if parent_kind not in PARENT_KINDS:
                raise AcknowledgementError(f"parent kind {parent_kind!r}: one of {', '.join(PARENT_KINDS)}")
            parent = conn.execute(sql.query("server_by_name"), {"name": parent_name}).fetchone()
            if parent is None:
                raise AcknowledgementError(f"no server named {parent_name!r} to be the parent of {server_name}")
            parent_id = int(parent["id"])
            chain = [r["name"] for r in conn.execute(sql.query("ancestors"), {"server_id": parent_id})]
            if server_name in chain:
                loop = " -> ".join([server_name, *chain[: chain.index(server_name) + 1]])
                raise AcknowledgementError(f"a parent loop: {loop}; nothing changed")
        conn.execute(sql.query("set_parent"), {"server_id": int(server["id"]), "parent_id": parent_id,
                                               "parent_kind": parent_kind if parent_id else None})


