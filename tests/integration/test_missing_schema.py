"""A deployment whose operator has not run ``heartbeat migrate`` yet: against a real, empty
PostgreSQL database, every step of a cycle, run through the DAG's task wrapper, fails with what to
do (an AirflowFailException: no retry, no driver traceback chained to it). The page's side of the
same situation is shown by tests/packaging/test_clean_install.py on a real api-server."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from heartbeat import cycle
from heartbeat.config import Settings
from heartbeat.dags import explain_missing_schema
from heartbeat_lab import PostgresServer

_counter = itertools.count()


@pytest.fixture
def empty_dsn(postgres: PostgresServer) -> str:
    name = f"heartbeat_empty_{os.getpid()}_{next(_counter)}"
    postgres.create_database(name)
    return postgres.dsn(name)


STEPS: dict[str, tuple[Callable[..., Any], Callable[[str], tuple], str]] = {
    "load_inventory": (cycle.load_shards, lambda dsn: (Settings(), "c1", cycle.utc_now(), dsn),
                       "the heartbeat database has no schema yet: run `heartbeat migrate`"),
    "probe_shard": (cycle.probe_shard, lambda dsn: (Settings(), "c1", {"label": "web-01", "server_ids": [1]}, dsn),
                    "run `heartbeat migrate`"),
    "materialise": (cycle.materialise, lambda dsn: (Settings(), "c1", cycle.utc_now(), dsn),
                    "run `heartbeat migrate`"),
}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_should_fail_the_task_saying_run_heartbeat_migrate_when_the_database_has_no_schema(
        empty_dsn: str, step: str) -> None:
    function, arguments, says = STEPS[step]
    with pytest.raises(AirflowFailException) as failed:
        explain_missing_schema(function)(*arguments(empty_dsn))
    assert says in str(failed.value), str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__, "no driver traceback chained"


def test_should_leave_other_errors_alone(empty_dsn: str) -> None:
    def broken() -> None:
        raise ValueError("something else")

    with pytest.raises(ValueError, match="something else"):
        explain_missing_schema(broken)()
