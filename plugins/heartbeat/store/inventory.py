"""The inventory: the servers to probe, as the cycle reads them and as the command line edits them
(queries in ``include/sql/queries/inventory.sql``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from heartbeat import sql
from heartbeat.inventory import (
    MAX_HOPS,
    InventoryError,
    PathNode,
    ServerSpec,
    bastion_path,
    check_bastions,
    validate_server,
)
from heartbeat.models import DEFAULT_SITE, ErrorClass, ProbeResult, Server
from heartbeat.store._records import Connection, record, records


@dataclass(frozen=True)
class ServerRecord:
    """One row of the inventory, enabled or not."""

    id: int
    name: str
    host: str
    port: int
    username: str | None
    conn_id: str
    enabled: bool
    host_key: str | None
    created_at: datetime
    via: str | None = None
    site: str = "default"


@dataclass(frozen=True)
class HostKeys:
    """A server's pinned host key and the one it presented last (None: none yet)."""

    server_id: int
    pinned: str | None
    presented: str | None


def load_inventory(
    conn: Connection, server_ids: Sequence[int] | None = None, site: str | None = None,
) -> tuple[list[Server], list[tuple[Server, str]]]:
    """Enabled servers, validated: (usable servers, [(bad server, what is wrong)]); with
    ``server_ids``, only those of them (a shard, read again when it is probed), and with ``site``
    only those still in that site.

    Rows written by other systems may bypass the command line's validation; a bad row is
    reported and skipped, never allowed to stop the rest of the fleet from being probed.
    """
    with conn.transaction():
        if server_ids is None:
            rows = conn.execute(sql.query("load_enabled_servers")).fetchall()
        else:
            rows = conn.execute(sql.query("load_enabled_servers_by_id"),
                                {"server_ids": list(server_ids), "site": site}).fetchall()
        bastions = _bastion_rows(conn, rows)
    good: list[Server] = []
    bad: list[tuple[Server, str]] = []
    nodes = {r["name"]: PathNode(r["name"], r["via"], r.get("enabled", True)) for r in [*bastions.values(), *rows]}
    for row in rows:
        server = _server(row)
        try:
            validate_server({k: row.get(k) for k in ("name", "host", "port", "username", "conn_id", "host_key", "via",
                                                     "site")})
        except InventoryError as exc:
            bad.append((server, "invalid inventory row: " + "; ".join(exc.problems)))
            continue
        if server.via is not None:
            chain, problem = bastion_path(server.name, nodes)
            if problem:
                bad.append((server, "invalid bastion path: " + problem))
                continue
            server = replace(server, path=tuple(_server(bastions[name]) for name in chain))
        good.append(server)
    return good, bad


def _server(row: dict) -> Server:  # type: ignore[type-arg]
    return Server(
        id=row["id"], name=row["name"], host=row["host"], port=row["port"],
        username=row["username"], conn_id=row["conn_id"], host_key=row["host_key"], via=row["via"],
        site=row.get("site") or DEFAULT_SITE,  # a bastion's row (load_servers_by_name) has none: unused
    )


def _bastion_rows(conn: Connection, rows: Sequence[dict]) -> dict[str, dict]:  # type: ignore[type-arg]
    """The rows of every bastion on the way to ``rows``, by name (read a hop at a time, at most
    one hop more than a path may have, so that a too long chain is seen)."""
    found: dict[str, dict] = {}  # type: ignore[type-arg]
    wanted = {r["via"] for r in rows if r["via"] is not None}
    for _ in range(MAX_HOPS + 1):
        wanted -= set(found)
        if not wanted:
            break
        for row in conn.execute(sql.query("load_servers_by_name"), {"names": sorted(wanted)}).fetchall():
            found[row["name"]] = row
        wanted = {r["via"] for r in found.values() if r["via"] is not None}
    return found


def check_inventory_paths(conn: Connection, names: Iterable[str] | None = None) -> None:
    """Raise :class:`InventoryError` when a bastion path of the inventory (as this transaction
    sees it) cannot work: every writer of the inventory calls it before committing."""
    nodes = {r["name"]: PathNode(r["name"], r["via"], r["enabled"])
             for r in conn.execute(sql.query("bastion_nodes")).fetchall()}
    problems = check_bastions(nodes, names)
    if problems:
        raise InventoryError(problems)


def invalid_row_result(server: Server, problem: str, attempted_at: datetime) -> ProbeResult:
    """The failed attempt recorded for an inventory row that cannot be probed."""
    return ProbeResult(
        server_id=server.id, server_name=server.name, ok=False, attempted_at=attempted_at,
        error_class=ErrorClass.OTHER.value, message=problem[:300],
    )


def add_server(conn: Connection, spec: ServerSpec) -> int:
    """Insert one server; returns its id (``psycopg.errors.UniqueViolation`` when the name is taken)."""
    with conn.transaction():
        row = conn.execute(sql.query("insert_server"), asdict(spec)).fetchone()
        if spec.via is not None:
            check_inventory_paths(conn, [spec.name])
    assert row is not None
    return int(row["id"])


def upsert_servers(conn: Connection, specs: Iterable[ServerSpec]) -> tuple[int, int]:
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
        check_inventory_paths(conn)
    return inserted, updated


def enabled_server_count(conn: Connection) -> int:
    """How many servers a cycle should probe."""
    with conn.transaction():
        row = conn.execute(sql.query("count_enabled_servers")).fetchone()
    assert row is not None
    return int(row["n"])


def list_servers(conn: Connection) -> list[ServerRecord]:
    """Every server of the inventory, by name."""
    with conn.transaction():
        return records(ServerRecord, conn.execute(sql.query("list_servers")).fetchall())


def remove_server(conn: Connection, name: str) -> bool:
    """Delete a server and its history; False: no server of that name."""
    with conn.transaction():
        behind = [r["name"] for r in conn.execute(sql.query("servers_behind"), {"name": name}).fetchall()]
        if behind:
            raise InventoryError([f"{name} is the bastion of {', '.join(behind)}: remove them or change their "
                                  "via first"])
        return conn.execute(sql.query("delete_server"), {"name": name}).fetchone() is not None


def set_server_enabled(conn: Connection, name: str, enabled: bool) -> bool:
    """Enable or disable monitoring of a server; False: no server of that name."""
    with conn.transaction():
        found = conn.execute(sql.query("set_server_enabled"), {"name": name, "enabled": enabled}).fetchone() is not None
        if found:
            check_inventory_paths(conn)
        return found


def set_server_site(conn: Connection, name: str, site: str) -> bool:
    """Move a server to another site (probed from there from the next cycle on); False: no server
    of that name."""
    with conn.transaction():
        return conn.execute(sql.query("set_server_site"), {"name": name, "site": site}).fetchone() is not None


def host_keys(conn: Connection, name: str) -> HostKeys | None:
    """The pinned and the last presented host key of server ``name``; None: no such server."""
    with conn.transaction():
        row = conn.execute(sql.query("presented_host_key"), {"name": name}).fetchone()
    return None if row is None else record(HostKeys, row)


def pin_host_key(conn: Connection, server_id: int, host_key: str) -> None:
    """Pin ``host_key`` for the server and resolve its host_key_changed alerts, in one transaction."""
    with conn.transaction():
        conn.execute(sql.query("accept_host_key"), {"host_key": host_key, "server_id": server_id})
        conn.execute(sql.query("resolve_host_key_alerts"), {"server_id": server_id})
