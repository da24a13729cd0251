"""Airflow's plugin manager, run on this project's ``plugins/`` folder as every Airflow process runs
it, loads exactly the heartbeat plugin, once, from the package's ``airflow.plugins`` entry point
(the development environment installs the project in editable mode, as a deployment installs the
wheel), imports the package under its own name only (no module of ``plugins/heartbeat/`` as a bare
top-level name such as ``config``), and nothing of the development harness (``heartbeat_lab``).

The plugin file that used to sit in ``plugins/`` is gone: with it, the plugin would be found twice
(plugins folder first, then the entry point), and Airflow 3.3 reports the second as an import
error ("Plugin 'heartbeat' already registered"). The clean-environment test
(tests/packaging/test_clean_install.py) shows the entry point alone with an empty plugins folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
LAB = REPO / "heartbeat_lab"

LOAD_PLUGINS = """
import json, sys
from airflow import plugins_manager
plugins_manager.ensure_plugins_loaded()
modules = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}
print(json.dumps({
    "plugins": [{"name": p["name"], "source": str(p["source"])} for p in plugins_manager.get_plugin_info()],
    "errors": plugins_manager.get_import_errors(),
    "modules": {name: file for name, file in modules.items() if file},
}))
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What a fresh interpreter holds after the plugin manager has run. ``heartbeat_lab`` is
    importable there (the repository is on PYTHONPATH), so an import of it would succeed and show."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "HEARTBEAT_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "PYTHONPATH": str(REPO),
    })
    proc = subprocess.run([sys.executable, "-c", LOAD_PLUGINS], env=env, cwd=home, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def under(file: str, folder: Path) -> bool:
    return Path(file).resolve().is_relative_to(folder)


def test_should_load_the_heartbeat_plugin_once_from_the_package_entry_point(loaded: dict) -> None:
    assert loaded["errors"] == {}, ("a second copy of the distribution on sys.path? `make venv` removes the "
                                    "plugins/*.egg-info that an editable install leaves")
    assert [p["name"] for p in loaded["plugins"]] == ["heartbeat"]
    assert loaded["plugins"][0]["source"] == (
        "airflow-ssh-heartbeat==0.1.0: EntryPoint(name='heartbeat', value='heartbeat.plugin:HeartbeatPlugin', "
        "group='airflow.plugins')")


def test_should_import_the_package_only_under_its_own_name(loaded: dict) -> None:
    from_plugins = {name for name, file in loaded["modules"].items() if under(file, PLUGINS)}
    assert {"heartbeat.plugin", "heartbeat.web"} <= from_plugins
    bare = sorted(n for n in from_plugins if n != "heartbeat" and not n.startswith("heartbeat."))
    assert bare == [], f"imported by bare file name (is plugins/.airflowignore missing heartbeat/?): {bare}"


def test_should_import_nothing_of_the_development_harness(loaded: dict) -> None:
    lab = sorted(name for name, file in loaded["modules"].items()
                 if name.split(".")[0] == "heartbeat_lab" or under(file, LAB))
    assert lab == []


def test_should_cover_every_module_of_the_package_by_the_ignore_file() -> None:
    """The ignore file keeps the plugin manager out of the whole package, not a list of its files."""
    lines = [line.strip() for line in (PLUGINS / ".airflowignore").read_text().splitlines()]
    assert "heartbeat/" in [line for line in lines if line and not line.startswith("#")]
    assert sorted(p.name for p in PLUGINS.glob("*.py")) == [], "the plugin comes from the entry point only"
