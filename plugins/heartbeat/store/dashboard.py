"""What the Fleet heartbeat page shows, read from the dashboard views (queries in
``include/sql/queries/dashboard.sql``).

These readers run in the connection's current transaction, not one each: the web app uses one
connection per request, so every figure of a response is computed at the same ``now()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from heartbeat import sql
from heartbeat.store._records import Connection, record, records
from heartbeat.store.maintenance import MaintenanceWindow


@dataclass(frozen=True)
class DashboardServer:
    """One enabled server's live status, at ``as_of`` (the database's time)."""

    server_id: int
    server_name: str
    host: str
    port: int
    status: str
    reason: str
    status_since: datetime | None
    last_heartbeat_at: datetime | None
    heartbeat_age_s: float | None
    last_attempt_at: datetime | None
    last_error_class: str | None
    consecutive_failures: int
    last_latency_ms: float | None
    uptime_24h_pct: float | None
    uptime_7d_pct: float | None
    uptime_30d_pct: float | None
    active_alerts: int
    active_anomalies: int
    flapping: bool
    flap_percent: float | None
    in_maintenance: bool
    maintenance_until: datetime | None
    maintenance_reason: str | None
    as_of: datetime
    via: str | None = None  # the bastion it is reached through
    site: str = "default"  # the network it is probed from
    last_worker: str | None = None  # the worker that made the last attempt


@dataclass(frozen=True)
class FleetSummary:
    """Counts per status, the last cycle (its fields None when none finished) and the monitor's health."""

    as_of: datetime
    online: int
    warning: int
    offline: int
    stale: int
    total: int
    in_maintenance: int
    last_cycle_id: str | None
    last_cycle_started_at: datetime | None
    last_cycle_finished_at: datetime | None
    last_cycle_duration_s: float | None
    last_cycle_age_s: float | None
    last_cycle_servers: int | None
    last_cycle_ok: int | None
    last_cycle_failed: int | None
    stalled: bool
    health: str
    stale_after_s: float
    offline_after_s: float
    sites: list[dict[str, Any]]  # per site: servers, last attempt and worker, stalled, health (view site_health)


@dataclass(frozen=True)
class StatusChange:
    id: int
    at: datetime
    from_status: str | None
    to_status: str
    reason: str


@dataclass(frozen=True)
class LatencyPoint:
    at: datetime
    ok: bool
    error_class: str | None
    total_ms: float | None
    site: str | None  # where the attempt was made from (None: recorded by the cycle itself)
    worker: str | None


@dataclass(frozen=True)
class LatencyPercentiles:
    attempts: int
    successes: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass(frozen=True)
class ActiveInput:
    """:param type: ``alert`` or ``anomaly``."""

    type: str
    id: int
    kind: str
    message: str
    source: str
    since: datetime


def fleet_summary(conn: Connection) -> FleetSummary:
    row = conn.execute(sql.query("dashboard_summary")).fetchone()
    assert row is not None
    return record(FleetSummary, row)


def dashboard_servers(conn: Connection, status: str | None = None, name_part: str | None = None,
                      site: str | None = None) -> list[DashboardServer]:
    """Enabled servers by name; only those of ``status``, whose name contains ``name_part`` (any
    case), of ``site``."""
    return records(DashboardServer, conn.execute(sql.query("dashboard_servers"),
                                                 {"status": status, "name": name_part, "site": site}))


def dashboard_server(conn: Connection, name: str) -> DashboardServer | None:
    """The enabled server ``name``; None: no such enabled server."""
    row = conn.execute(sql.query("dashboard_server"), {"name": name}).fetchone()
    return None if row is None else record(DashboardServer, row)


def status_changes(conn: Connection, server_id: int, since: datetime, limit: int) -> list[StatusChange]:
    """A server's last ``limit`` status changes since ``since``, after the last one before it, oldest first."""
    params = {"server_id": server_id, "since": since, "limit": limit}
    return records(StatusChange, conn.execute(sql.query("dashboard_status_changes"), params))


def latency_history(conn: Connection, server_id: int, since: datetime, limit: int) -> list[LatencyPoint]:
    """A server's last ``limit`` attempts since ``since``, oldest first."""
    params = {"server_id": server_id, "since": since, "limit": limit}
    return list(reversed(records(LatencyPoint, conn.execute(sql.query("dashboard_latency_history"), params))))


def latency_percentiles_1h(conn: Connection, server_id: int) -> LatencyPercentiles:
    """Login latency percentiles of a server over the last hour (None without successful logins)."""
    row = conn.execute(sql.query("dashboard_latency_percentiles"), {"server_id": server_id}).fetchone()
    if row is None:  # not an enabled server
        return LatencyPercentiles(0, 0, None, None, None, None)
    return record(LatencyPercentiles, row)


def active_inputs(conn: Connection, server_id: int) -> list[ActiveInput]:
    """A server's active alerts and anomalies, newest first."""
    return records(ActiveInput, conn.execute(sql.query("dashboard_active_inputs"), {"server_id": server_id}))


def maintenance_windows(conn: Connection, server_id: int) -> list[MaintenanceWindow]:
    """A server's open and future maintenance windows, oldest first."""
    return records(MaintenanceWindow, conn.execute(sql.query("dashboard_maintenance"), {"server_id": server_id}))
