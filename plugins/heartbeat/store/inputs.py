"""Inputs: alerts and anomalies raised on a server by people or other systems; an active one turns
a fresh heartbeat into WARNING (queries in ``include/sql/queries/inputs.sql``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from heartbeat import sql
from heartbeat.store._records import Connection, records


@dataclass(frozen=True)
class InputRecord:
    """An alert or an anomaly. ``name`` is the server's name; ``resolved_at`` None: still active."""

    id: int
    name: str
    kind: str
    message: str
    source: str
    raised_at: datetime
    resolved_at: datetime | None


def _raise(conn: Connection, query: str, server_name: str, kind: str, message: str, source: str) -> int | None:
    with conn.transaction():
        row = conn.execute(query, {"name": server_name, "kind": kind, "message": message,
                                              "source": source}).fetchone()
    return None if row is None else int(row["id"])


def _resolve(conn: Connection, query: str, input_id: int) -> bool:
    with conn.transaction():
        return conn.execute(query, {"id": input_id}).fetchone() is not None


def raise_alert(conn: Connection, server_name: str, kind: str, message: str = "", source: str = "cli") -> int | None:
    """Raise an alert on a server; returns its id, None: no server of that name."""
    return _raise(conn, sql.query("raise_alert"), server_name, kind, message, source)


def raise_anomaly(conn: Connection, server_name: str, kind: str, message: str = "", source: str = "cli") -> int | None:
    """Record an anomaly on a server; returns its id, None: no server of that name."""
    return _raise(conn, sql.query("raise_anomaly"), server_name, kind, message, source)


def resolve_alert(conn: Connection, alert_id: int) -> bool:
    """False: no active alert with that id."""
    return _resolve(conn, sql.query("resolve_alert"), alert_id)


def resolve_anomaly(conn: Connection, anomaly_id: int) -> bool:
    """False: no active anomaly with that id."""
    return _resolve(conn, sql.query("resolve_anomaly"), anomaly_id)


def list_alerts(conn: Connection, include_resolved: bool = False) -> list[InputRecord]:
    """Active alerts (all of them with ``include_resolved``), newest first."""
    with conn.transaction():
        return records(InputRecord, conn.execute(sql.query("list_alerts"), {"all": include_resolved}))


def list_anomalies(conn: Connection, include_resolved: bool = False) -> list[InputRecord]:
    """Active anomalies (all of them with ``include_resolved``), newest first."""
    with conn.transaction():
        return records(InputRecord, conn.execute(sql.query("list_anomalies"), {"all": include_resolved}))
