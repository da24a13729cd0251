"""The wheel holds the product (the ``heartbeat`` package from ``plugins/``) and nothing of the
development harness: no ``heartbeat_lab``, no demo, no tests or benchmarks.

The wheel is built by uv from a copy of the working tree (so that the build's ``build/`` and
``*.egg-info`` folders never land in the repository), offline from uv's cache when it can."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "plugins" / "heartbeat"
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".state", "build", "dist", "*.egg-info", "__pycache__",
                                    "*.pyc", ".*_cache", "test-artifacts", "secrets", ".env")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    work = tmp_path_factory.mktemp("wheel")
    source, out = work / "source", work / "dist"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE, symlinks=True)
    uv = Path(sys.executable).with_name("uv")
    assert uv.exists(), f"{uv} is missing: run `make venv`"
    command = [str(uv), "build", "--wheel", "--quiet", "--out-dir", str(out), str(source)]
    proc = subprocess.run([*command, "--offline"], capture_output=True, text=True, timeout=300, cwd=work)
    if proc.returncode != 0:  # setuptools not in uv's cache yet: fetch it like `make venv` does
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [built] = out.glob("*.whl")
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
