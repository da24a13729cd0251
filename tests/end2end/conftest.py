"""Real Airflow for the end-to-end tests: a metadata database in the lab's PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from heartbeat_lab import PostgresServer
from heartbeat_lab.airflow_env import airflow_environment, migrate_metadata


@pytest.fixture(scope="session")
def airflow_base_env(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> dict[str, str]:
    """Environment of a migrated Airflow (no connections yet: each test adds its own)."""
    postgres.create_database("airflow_meta")
    home: Path = tmp_path_factory.mktemp("airflow_home")
    env = airflow_environment(
        home,
        f"postgresql+psycopg://postgres@{postgres.host}:{postgres.port}/airflow_meta",
        heartbeat_db_json="{}",
        ssh_conn_json="{}",
    )
    migrate_metadata(env)
    return env
