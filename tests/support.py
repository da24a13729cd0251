"""Small helpers shared by the tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json

from heartbeat import store


def add_servers(dsn: str, rows: list[dict]) -> dict[str, int]:
    """Insert inventory rows straight into the database; returns name -> id."""
    ids = {}
    with store.connect(dsn) as conn, conn.transaction():
        for row in rows:
            full = {"port": 22, "username": None, "conn_id": "heartbeat_ssh", "enabled": True, "host_key": None}
            full.update(row)
            ids[row["name"]] = conn.execute(store.sql.query("insert_server"), full).fetchone()["id"]
    return ids


def query(dsn: str, text: str, params: dict | tuple | None = None) -> list[dict]:
    with store.connect(dsn) as conn:
        return [dict(r) for r in conn.execute(text, params).fetchall()]


def dump(value: object) -> str:
    return json.dumps(value, default=str, indent=1)
