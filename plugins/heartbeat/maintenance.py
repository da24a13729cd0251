"""Maintenance windows: planned work on a server. While a window is open, the server's status
changes are not notified (a change that still holds when the window ends is notified then), and
the window's time is left out of the uptime figures. The status itself is still shown as it is.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import psycopg

from heartbeat import store

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
RELATIVE = re.compile(r"^\+((?:\d+(?:\.\d+)?[smhdw])+)$")
RELATIVE_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class MaintenanceError(ValueError):
    """A window that cannot be added or ended, with what to do instead."""


def parse_time(text: str, now: datetime) -> datetime:
    """``+2h``, ``+30m``, ``+1d``, ``+1h30m`` (from ``now``) or an ISO 8601 time; a time without
    a zone is taken as local time."""
    value = text.strip()
    relative = RELATIVE.match(value)
    if relative:
        seconds = sum(float(n) * UNIT_SECONDS[u] for n, u in RELATIVE_PART.findall(relative.group(1)))
        return now + timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MaintenanceError(
            f"{text!r} is neither a duration like +2h, +30m, +1d, +1h30m nor an ISO time like 2026-12-01T18:00"
        ) from None
    return parsed if parsed.tzinfo else parsed.astimezone()


def add_window(
    conn: psycopg.Connection[Any], name: str, ends_at: datetime, now: datetime,
    starts_at: datetime | None = None, reason: str = "", created_by: str = "cli",
) -> store.MaintenanceWindow:
    """Open a window on server ``name`` from ``starts_at`` (default ``now``) to ``ends_at``."""
    starts_at = starts_at or now
    if ends_at <= starts_at:
        raise MaintenanceError(
            f"the window would end ({ends_at.isoformat(timespec='seconds')}) before it starts "
            f"({starts_at.isoformat(timespec='seconds')}): give a later --until"
        )
    if ends_at <= now:
        raise MaintenanceError(f"{ends_at.isoformat(timespec='seconds')} is in the past: give a later --until")
    window = store.add_maintenance(conn, name, starts_at, ends_at, now, reason=reason, created_by=created_by)
    if window is None:
        raise MaintenanceError(f"no server named {name!r} (see `heartbeat servers list`)")
    return window


def list_windows(
    conn: psycopg.Connection[Any], now: datetime, include_past: bool = False,
) -> list[store.MaintenanceWindow]:
    """Open and future windows (all of them with ``include_past``), oldest first."""
    return store.list_maintenance(conn, now, include_past)


def end_windows(conn: psycopg.Connection[Any], name: str, now: datetime) -> int:
    """End the open windows of server ``name`` at ``now``; returns how many were open."""
    ended = store.end_maintenance(conn, name, now)
    if ended is None:
        raise MaintenanceError(f"no server named {name!r} (see `heartbeat servers list`)")
    return ended
