"""Real parts for the tests, started and stopped here: a private PostgreSQL server, a fleet of
OpenSSH sshd processes on 127.0.0.x, and an SSH client key. Nothing is mocked."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support import new_heartbeat_database
from tiers import TIERS, tier_of

from heartbeat_lab import KeyPair, PostgresServer, SshdFleet, generate_keypair
from heartbeat_lab.airflow_env import postgres_connection_json, ssh_connection_json

FLEET_SIZE = 4


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with the tier of its folder (tiers.py). A test outside a tier's folder, or
    marked in its file with another tier than its folder's, stops the run: no test escapes
    ``-m`` selection by a missing or contradictory marker."""
    problems = []
    for item in items:
        tier = tier_of(item.path)
        if tier is None:
            problems.append(f"{item.nodeid}: not in a tier folder (tests/tiers.py lists them)")
            continue
        other = {m.name for m in item.iter_markers() if m.name in TIERS} - {tier}
        if other:
            problems.append(f"{item.nodeid}: marked {', '.join(sorted(other))} but its folder is the {tier} tier")
        item.add_marker(getattr(pytest.mark, tier))
    if problems:
        raise pytest.UsageError("tests without a single tier:\n  " + "\n  ".join(problems))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """Kept outside pytest's own temporary folder: another pytest session resets that folder's
    mode to 0700, which would lock the server (running as user postgres) out of its data."""
    root = Path(tempfile.mkdtemp(prefix="heartbeat-test-pg-"))
    try:
        with PostgresServer(root / "data") as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("keys") / "id_ed25519", comment="heartbeat-test")


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """A key that no test sshd accepts."""
    return generate_keypair(tmp_path_factory.mktemp("keys") / "id_other", comment="not-authorised")


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory, client_key: KeyPair) -> Iterator[SshdFleet]:
    with SshdFleet(tmp_path_factory.mktemp("fleet"), FLEET_SIZE, authorized_keys=[client_key.public_line]) as f:
        yield f


@pytest.fixture
def heartbeat_dsn(postgres: PostgresServer) -> str:
    """A fresh, migrated heartbeat database for one test."""
    return new_heartbeat_database(postgres)


@pytest.fixture
def heartbeat_env(monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer, heartbeat_dsn: str,
                  client_key: KeyPair) -> dict[str, str]:
    """Airflow connections for the heartbeat database and the SSH key, as environment variables."""
    database = psycopg.conninfo.conninfo_to_dict(heartbeat_dsn)["dbname"]
    env = {
        "AIRFLOW_CONN_HEARTBEAT_DB": postgres_connection_json(postgres.host, postgres.port, str(database)),
        "AIRFLOW_CONN_HEARTBEAT_SSH": ssh_connection_json("root", client_key.private_path),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in list(os.environ):
        if key.startswith("HEARTBEAT_"):
            monkeypatch.delenv(key)
    return env
