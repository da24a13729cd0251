"""Maintenance windows: planned work on a server, which holds notifications back and is left out
of uptime (queries in ``include/sql/queries/maintenance.sql``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from heartbeat import sql
from heartbeat.store._records import Connection, record, records


@dataclass(frozen=True)
class MaintenanceWindow:
    """:param active: open at the time it was read."""

    id: int
    server_name: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    active: bool


def add_maintenance(
    conn: Connection, server_name: str, starts_at: datetime, ends_at: datetime, as_of: datetime,
    reason: str = "", created_by: str = "cli",
) -> MaintenanceWindow | None:
    """Open a window on a server (no checks of the times); None: no server of that name."""
    with conn.transaction():
        row = conn.execute(sql.query("add_maintenance"), {
            "name": server_name, "starts_at": starts_at, "ends_at": ends_at, "reason": reason,
            "created_by": created_by, "as_of": as_of,
        }).fetchone()
    return None if row is None else record(MaintenanceWindow, row)


def list_maintenance(conn: Connection, as_of: datetime, include_past: bool = False) -> list[MaintenanceWindow]:
    """Windows open at ``as_of`` or later (all of them with ``include_past``), oldest first."""
    with conn.transaction():
        return records(MaintenanceWindow, conn.execute(sql.query("list_maintenance"),
                                                       {"as_of": as_of, "all": include_past}))


def end_maintenance(conn: Connection, server_name: str, as_of: datetime) -> int | None:
    """End a server's windows open at ``as_of`` (future ones stay); returns how many were open,
    None: no server of that name."""
    with conn.transaction():
        row = conn.execute(sql.query("end_maintenance"), {"name": server_name, "as_of": as_of}).fetchone()
    return None if row is None else int(row["ended"])
