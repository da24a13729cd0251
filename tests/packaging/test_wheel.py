"""The wheel holds the product (the ``heartbeat`` package from ``plugins/``, its SQL and web
assets as package data, the ``heartbeat`` command and the ``airflow.plugins`` entry point) and
nothing of the development harness: no ``heartbeat_lab``, no demo, no tests or benchmarks. Both
ways a wheel is made are checked: straight from the source tree, and from the sdist (the SQL
reaches the package through a symbolic link, which the sdist must turn into files)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath

import pytest
from distributions import REPO, build

PACKAGE = REPO / "plugins" / "heartbeat"
SQL = REPO / "include" / "sql"


@pytest.fixture(scope="module", params=["from source", "via sdist"])
def wheel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    built = build(tmp_path_factory.mktemp("wheel"), via_sdist=request.param == "via sdist")
    with zipfile.ZipFile(built) as archive:
        yield archive


def names(wheel: zipfile.ZipFile) -> list[PurePosixPath]:
    return [PurePosixPath(n) for n in wheel.namelist()]


def package_files(suffixes: tuple[str, ...]) -> set[str]:
    return {str(PurePosixPath("heartbeat") / p.relative_to(PACKAGE).as_posix()) for p in PACKAGE.rglob("*")
            if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts}


def test_should_hold_the_ssh_client_and_the_plugin_package(wheel: zipfile.ZipFile) -> None:
    held = {str(n) for n in names(wheel)}
    for module in ("heartbeat/__init__.py", "heartbeat/cli.py", "heartbeat/probe.py", "heartbeat/ssh/__init__.py",
                   "heartbeat/ssh/login.py", "heartbeat/ssh/wire.py", "heartbeat/ssh/keys.py",
                   "heartbeat/ssh/hostkeys.py", "heartbeat/web/app.py"):
        assert module in held


def test_should_hold_every_module_of_plugins_heartbeat(wheel: zipfile.ZipFile) -> None:
    held = {str(n) for n in names(wheel) if n.suffix == ".py"}
    assert sorted(package_files((".py",)) - held) == []


def test_should_hold_the_web_page_assets(wheel: zipfile.ZipFile) -> None:
    held = {str(n) for n in names(wheel)}
    assets = {f for f in package_files((".html", ".js", ".css")) if f.startswith("heartbeat/web/static/")}
    assert assets
    assert sorted(assets - held) == []


def test_should_hold_nothing_but_the_heartbeat_package(wheel: zipfile.ZipFile) -> None:
    tops = {n.parts[0] for n in names(wheel)}
    assert tops == {"heartbeat", "airflow_ssh_heartbeat-0.1.0.dist-info"}
    top_level = wheel.read("airflow_ssh_heartbeat-0.1.0.dist-info/top_level.txt").decode().split()
    assert top_level == ["heartbeat"]


@pytest.mark.parametrize("part", ["heartbeat_lab", "lab", "demo.py", "tests", "bench", "conftest.py"])
def test_should_hold_nothing_of_the_development_harness(wheel: zipfile.ZipFile, part: str) -> None:
    assert [str(n) for n in names(wheel) if part in n.parts] == []


def test_should_install_the_heartbeat_command(wheel: zipfile.ZipFile) -> None:
    entry_points = wheel.read("airflow_ssh_heartbeat-0.1.0.dist-info/entry_points.txt").decode()
    assert "heartbeat = heartbeat.cli:main" in entry_points


def test_should_register_the_ui_plugin_as_an_airflow_plugins_entry_point(wheel: zipfile.ZipFile) -> None:
    entry_points = wheel.read("airflow_ssh_heartbeat-0.1.0.dist-info/entry_points.txt").decode()
    assert "[airflow.plugins]\nheartbeat = heartbeat.plugin:HeartbeatPlugin" in entry_points


def test_should_hold_every_sql_file_of_include_sql_as_package_data(wheel: zipfile.ZipFile) -> None:
    expected = {f"heartbeat/sqlfiles/{p.relative_to(SQL).as_posix()}": p.read_bytes() for p in SQL.rglob("*.sql")}
    assert {folder.split("/")[2] for folder in expected} == {"migrations", "queries", "views"}
    held = {str(n): wheel.read(str(n)) for n in names(wheel) if n.suffix == ".sql"}
    assert held == expected


def test_should_declare_airflow_3_3_and_the_providers_as_dependencies(wheel: zipfile.ZipFile) -> None:
    metadata = wheel.read("airflow_ssh_heartbeat-0.1.0.dist-info/METADATA").decode()
    requires = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    assert "apache-airflow<4,>=3.3" in requires
    for provider in ("postgres", "ssh", "smtp"):
        assert any(r.startswith(f"apache-airflow-providers-{provider}>=") for r in requires), requires
