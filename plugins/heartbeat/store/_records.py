"""How the store turns rows into records: each query's columns are named as the record's fields."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")

Connection = psycopg.Connection[Any]


def record(cls: type[T], row: Mapping[str, Any]) -> T:
    """A frozen record from a row; columns the record does not name are left out."""
    return cls(**{f.name: row[f.name] for f in fields(cls)})  # type: ignore[arg-type]


def records(cls: type[T], rows: Iterable[Mapping[str, Any]]) -> list[T]:
    return [record(cls, row) for row in rows]
