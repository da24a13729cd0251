"""Connecting to the heartbeat database and keeping its schema: numbered migrations applied once
(recorded with their checksum in ``schema_migrations``), then the repeatable views."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from heartbeat import sql

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class SchemaError(RuntimeError):
    pass


def connect(dsn: str, connect_timeout_s: float = 10.0) -> psycopg.Connection[dict[str, Any]]:
    """Open a connection to the heartbeat database with a bounded connect time."""
    try:
        return psycopg.connect(
            dsn, connect_timeout=max(1, int(connect_timeout_s)), row_factory=dict_row,
            application_name="airflow-ssh-heartbeat",
        )
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise psycopg.OperationalError(
            f"cannot reach the heartbeat database: {first_line}. Check the Airflow connection "
            "'heartbeat_db' (AIRFLOW_CONN_HEARTBEAT_DB) and that PostgreSQL is running."
        ) from None


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply pending migrations once each (recorded in ``schema_migrations``), then every
    repeatable view script. One transaction, serialised by an advisory lock."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('heartbeat_migrate'))")
        conn.execute(LEDGER_DDL)
        cur = conn.cursor(row_factory=dict_row)
        ledger = {
            row["version"]: row
            for row in cur.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
        }
        for migration in sql.migrations():
            done = ledger.get(migration.version)
            if done is not None:
                if done["checksum"] != migration.checksum:
                    raise SchemaError(
                        f"migration {migration.version:03d}_{migration.name} was changed after it was "
                        "applied; add a new migration instead of editing an applied one"
                    )
                continue
            conn.execute(migration.text.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            applied_now.append(f"{migration.version:03d}_{migration.name}")
        for _name, text in sql.repeatable_scripts():
            conn.execute(text.encode())
    return applied_now


def check_schema(conn: psycopg.Connection[Any]) -> None:
    """Fail with what to do when the schema is missing or behind the code."""
    cur = conn.cursor(row_factory=dict_row)
    with conn.transaction():
        present = cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS present").fetchone()
        if not present or not present["present"]:
            raise SchemaError("the heartbeat database has no schema yet: run `heartbeat migrate`")
        have = {r["version"] for r in cur.execute("SELECT version FROM schema_migrations").fetchall()}
    missing = [m for m in sql.migrations() if m.version not in have]
    if missing:
        names = ", ".join(f"{m.version:03d}_{m.name}" for m in missing)
        raise SchemaError(f"the heartbeat database is missing migrations {names}: run `heartbeat migrate`")
