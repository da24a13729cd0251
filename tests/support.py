"""Small helpers shared by the tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from typing import TypeVar

from heartbeat import store
from heartbeat.inventory import ServerSpec
from heartbeat.models import Server
from heartbeat.ssh import ClientCredentials, CredentialsError, load_client_key
from heartbeat_lab import KeyPair, PostgresServer

_db_counter = itertools.count()


def new_heartbeat_database(postgres: PostgresServer) -> str:
    """Create a fresh, migrated heartbeat database; returns its DSN."""
    name = f"heartbeat_{os.getpid()}_{next(_db_counter)}"
    postgres.create_database(name)
    dsn = postgres.dsn(name)
    with store.connect(dsn) as conn:
        store.migrate(conn)
    return dsn


def add_servers(dsn: str, rows: list[dict]) -> dict[str, int]:
    """Insert inventory rows, unvalidated, straight into the database; returns name -> id."""
    ids = {}
    with store.connect(dsn) as conn, conn.transaction():
        for row in rows:
            ids[row["name"]] = store.add_server(conn, ServerSpec(**row))
    return ids


def query(dsn: str, text: str, params: dict | tuple | None = None) -> list[dict]:
    with store.connect(dsn) as conn:
        return [dict(r) for r in conn.execute(text, params).fetchall()]


def dump(value: object) -> str:
    return json.dumps(value, default=str, indent=1)


def ssh_creds(key: KeyPair, conn_id: str = "heartbeat_ssh") -> dict[str, ClientCredentials | CredentialsError]:
    """The credentials a probe task would load for ``conn_id``, logging in as root with ``key``."""
    return {conn_id: ClientCredentials(conn_id, "root", load_client_key(conn_id, None, str(key.private_path), None))}


def probe_target(sid: int, host: str, port: int, host_key: str | None = None) -> Server:
    return Server(id=sid, name=f"s{sid}", host=host, port=port, host_key=host_key)


T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], timeout_s: float, context: Callable[[], str]) -> T:
    """Poll ``probe`` every second until it returns something truthy; fail with ``context()`` otherwise.
    For tests that watch real processes (the scheduler, workers) reach a state; bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s\n{context()}")
