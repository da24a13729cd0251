"""The heartbeat database (PostgreSQL through psycopg 3): schema, inventory, results, status.

Every function takes an open connection and runs in its own transaction, so a failure leaves
nothing half-written. All SQL comes from ``include/sql`` with bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from heartbeat import sql
from heartbeat.flapping import DEFAULT_FLAP_RULES, FlapRules, is_flapping
from heartbeat.inventory import InventoryError, ServerSpec, validate_server
from heartbeat.models import ErrorClass, ProbeResult, Server
from heartbeat.status import SEED_RULES, StatusRules

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""

BATCH_COLUMNS = (
    "server_id", "cycle_id", "attempted_at", "ok", "error_class", "message", "tcp_connect_ms",
    "ssh_handshake_ms", "auth_ms", "total_ms", "banner", "host_key", "host_key_fingerprint",
    "pinned_fingerprint",
)
# PostgreSQL types of the probe_batch columns, in BATCH_COLUMNS order, for binary COPY (about five
# times cheaper per row than text COPY, which matters at 100,000 results a cycle).
BATCH_TYPES = (
    "int8", "text", "timestamptz", "bool", "text", "text", "float4",
    "float4", "float4", "float4", "text", "text", "text",
    "text",
)


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


def load_inventory(
    conn: psycopg.Connection[Any], server_ids: Sequence[int] | None = None,
) -> tuple[list[Server], list[tuple[Server, str]]]:
    """Enabled servers, validated: (usable servers, [(bad server, what is wrong)]); with
    ``server_ids``, only those of them (a shard, read again when it is probed).

    Rows written by other systems may bypass the command line's validation; a bad row is
    reported and skipped, never allowed to stop the rest of the fleet from being probed.
    """
    with conn.transaction():
        if server_ids is None:
            rows = conn.execute(sql.query("load_enabled_servers")).fetchall()
        else:
            rows = conn.execute(sql.query("load_enabled_servers_by_id"), {"server_ids": list(server_ids)}).fetchall()
    good: list[Server] = []
    bad: list[tuple[Server, str]] = []
    for row in rows:
        server = Server(
            id=row["id"], name=row["name"], host=row["host"], port=row["port"],
            username=row["username"], conn_id=row["conn_id"], host_key=row["host_key"],
        )
        try:
            validate_server({k: row[k] for k in ("name", "host", "port", "username", "conn_id", "host_key")})
        except InventoryError as exc:
            bad.append((server, "invalid inventory row: " + "; ".join(exc.problems)))
            continue
        good.append(server)
    return good, bad


def invalid_row_result(server: Server, problem: str, attempted_at: datetime) -> ProbeResult:
    return ProbeResult(
        server_id=server.id, server_name=server.name, ok=False, attempted_at=attempted_at,
        error_class=ErrorClass.OTHER.value, message=problem[:300],
    )


def record_results(
    conn: psycopg.Connection[Any], cycle_id: str, results: Sequence[ProbeResult],
    flap_rules: FlapRules = DEFAULT_FLAP_RULES,
) -> None:
    """Write one shard's results in one transaction: history, latest heartbeat, flap state,
    first-use host keys and host-key-changed alerts. Re-running it for the same cycle replaces,
    never doubles."""
    if not results:
        return
    with conn.transaction():
        conn.execute(sql.query("jit_off"))
        conn.execute(sql.query("create_probe_batch"))
        with conn.cursor() as cur, cur.copy(sql.query("copy_probe_batch")) as copy:
            copy.set_types(BATCH_TYPES)
            for r in results:
                copy.write_row((
                    r.server_id, cycle_id, r.attempted_at, r.ok, r.error_class, r.message, r.tcp_connect_ms,
                    r.ssh_handshake_ms, r.auth_ms, r.total_ms, r.banner, r.host_key, r.host_key_fingerprint,
                    r.pinned_fingerprint,
                ))
        # The batch's id range, bound once: it keeps each statement to the shard's part of the tables.
        ids = [r.server_id for r in results]
        bounds = {"first_id": min(ids), "last_id": max(ids)}
        conn.execute(sql.query("delete_batch_history"), {"cycle_id": cycle_id, **bounds})
        conn.execute(sql.query("insert_probe_history"), bounds)
        candidates = conn.execute(sql.query("upsert_heartbeats"), {"window": flap_rules.window, **bounds}).fetchall()
        for name in ("pin_first_host_keys", "raise_host_key_changed_alerts"):
            conn.execute(sql.query(name))
        _update_flapping(conn, candidates, flap_rules)


def _update_flapping(conn: psycopg.Connection[Any], candidates: Sequence[dict[str, Any]], rules: FlapRules) -> None:
    """Re-evaluate flapping for the candidate servers (their flag before this batch and their last
    results, oldest first, as the heartbeat update returned them); store what changed."""
    ids: list[int] = []
    flags: list[bool] = []
    percents: list[float] = []
    for row in candidates:
        flapping, percent = is_flapping(row["recent_oks"], bool(row["was_flapping"]), rules)
        ids.append(row["server_id"])
        flags.append(flapping)
        percents.append(percent)
    if ids:
        conn.execute(sql.query("set_flapping"), {"server_ids": ids, "flapping": flags, "percents": percents})


def materialise_status(
    conn: psycopg.Connection[Any], as_of: datetime, rules: StatusRules | float = SEED_RULES
) -> dict[str, int]:
    """Evaluate every enabled server at ``as_of``, record status changes, and return counts per
    status, ``flips``, ``written`` (decisions stored: new or changed) and ``removed``.

    ``rules`` may be a plain number: the OFFLINE threshold in seconds."""
    if not isinstance(rules, StatusRules):
        rules = StatusRules(offline_after_s=float(rules))
    params = {"as_of": as_of, "offline_after_s": float(rules.offline_after_s),
              "failure_threshold": rules.failure_threshold, "recovery_threshold": rules.recovery_threshold,
              "stale_after_s": rules.stale_after_s if rules.stale_after_s is not None else 60.0}
    with conn.transaction():
        conn.execute(sql.query("jit_off"))
        conn.execute(sql.query("status_work_mem"))
        conn.execute(sql.query("status_merge_joins"))
        conn.execute(sql.query("lock_status"))
        conn.execute(sql.query("set_status_settings"), params)
        row = conn.execute(sql.query("materialise_status"), params).fetchone()
    assert row is not None
    return {k: int(v) for k, v in dict(row).items()}


def start_cycle(conn: psycopg.Connection[Any], cycle_id: str, started_at: datetime) -> None:
    with conn.transaction():
        conn.execute(sql.query("start_cycle"), {"cycle_id": cycle_id, "started_at": started_at})


def finish_cycle(
    conn: psycopg.Connection[Any], cycle_id: str, started_at: datetime, finished_at: datetime,
    counts: dict[str, int],
) -> None:
    with conn.transaction():
        probes = conn.execute(sql.query("cycle_probe_counts"), {"cycle_id": cycle_id}).fetchone()
        assert probes is not None
        conn.execute(sql.query("finish_cycle"), {
            "cycle_id": cycle_id, "started_at": started_at, "finished_at": finished_at,
            "servers": probes["servers"], "ok": probes["ok"], "failed": probes["failed"],
            "online": counts.get("online"), "warning": counts.get("warning"),
            "offline": counts.get("offline"),
        })


def prune_history(conn: psycopg.Connection[Any], as_of: datetime, retention_days: float) -> int:
    """Delete probe history (and cycle records) older than the retention; returns rows deleted."""
    cutoff = as_of - timedelta(days=retention_days)
    with conn.transaction():
        deleted = conn.execute(sql.query("prune_probe_history"), {"cutoff": cutoff}).rowcount
        conn.execute(sql.query("prune_cycles"), {"cutoff": cutoff})
    return deleted


# --- inventory and inputs, for the command line -------------------------------------------

def fetch_all(conn: psycopg.Connection[Any], name: str, params: dict[str, Any] | None = None
              ) -> list[dict[str, Any]]:
    with conn.transaction():
        return [dict(r) for r in conn.execute(sql.query(name), params or {}).fetchall()]


def fetch_one(conn: psycopg.Connection[Any], name: str, params: dict[str, Any] | None = None
              ) -> dict[str, Any] | None:
    rows = fetch_all(conn, name, params)
    return rows[0] if rows else None


def upsert_servers(conn: psycopg.Connection[Any], specs: Iterable[ServerSpec]) -> tuple[int, int]:
    """Insert or update servers by name in one transaction; returns (inserted, updated)."""
    inserted = updated = 0
    with conn.transaction():
        for spec in specs:
            row = conn.execute(sql.query("upsert_server"), asdict(spec)).fetchone()
            assert row is not None
            if row["inserted"]:
                inserted += 1
            else:
                updated += 1
    return inserted, updated


def add_server(conn: psycopg.Connection[Any], spec: ServerSpec) -> int:
    with conn.transaction():
        row = conn.execute(sql.query("insert_server"), asdict(spec)).fetchone()
    assert row is not None
    return int(row["id"])
