"""Where the SQL lives (``include/sql``) and how it is read: migrations, repeatable views and
named queries (``-- name: foo`` sections, parameters bound by psycopg). Only :mod:`heartbeat.store`
runs them: ``queries/<module>.sql`` holds the queries of ``store/<module>.py``.

The files travel with the package as ``heartbeat/sqlfiles`` (package data). In the repository that
folder is a symbolic link to ``include/sql``, so a checkout, an editable install and an installed
wheel read them the same way."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
MIGRATION_FILE = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")


PACKAGE_FOLDER = "sqlfiles"


def sql_dir() -> Path:
    """The SQL of the installed package (``heartbeat/sqlfiles``: ``include/sql`` in the repository);
    ``HEARTBEAT_SQL_DIR`` overrides it (to try an edited copy without reinstalling)."""
    override = os.environ.get("HEARTBEAT_SQL_DIR")
    if override:
        return Path(override)
    packaged = resources.files("heartbeat").joinpath(PACKAGE_FOLDER)
    if not isinstance(packaged, Path) or not packaged.is_dir():
        raise FileNotFoundError(
            f"the heartbeat package has no SQL files ({packaged}): it is installed from a zip or a build "
            "without its package data; reinstall airflow-ssh-heartbeat from its wheel, or set "
            "HEARTBEAT_SQL_DIR to a copy of include/sql"
        )
    return packaged.resolve()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def migrations(root: Path | None = None) -> list[Migration]:
    folder = (root or sql_dir()) / "migrations"
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if not match:
            raise ValueError(f"{path}: migration files are named NNN_words.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"{folder}: two migrations share a version number")
    return found


def repeatable_scripts(root: Path | None = None) -> list[tuple[str, str]]:
    folder = (root or sql_dir()) / "views"
    return [(path.name, path.read_text()) for path in sorted(folder.glob("*.sql"))]


def parse_named_queries(text: str) -> dict[str, str]:
    parts = NAME_LINE.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip().rstrip(";").strip()
    return queries


@cache
def _all_queries(root: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(Path(root, "queries").glob("*.sql")):
        for name, body in parse_named_queries(path.read_text()).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice ({path})")
            queries[name] = body
    return queries


def query(name: str) -> str:
    """The text of a named query from ``include/sql/queries``."""
    queries = _all_queries(str(sql_dir()))
    try:
        return queries[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in {sql_dir() / 'queries'}") from None
