"""Every test has exactly one tier, the one of its folder, so that ``make test-fast``
(``-m "unit or dag_validation"``) runs every unit test and ``make test`` every tier."""

from __future__ import annotations

import tomllib

import pytest
from tiers import TESTS_DIR, TIER_OF_FOLDER, TIERS, tier_of

REPO = TESTS_DIR.parent
TEST_FILES = sorted(TESTS_DIR.rglob("test_*.py"))


def registered_markers() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return {line.split(":", 1)[0].strip() for line in config["markers"]}


def test_every_test_file_should_be_in_a_tier_folder() -> None:
    assert TEST_FILES
    assert [str(f.relative_to(TESTS_DIR)) for f in TEST_FILES if tier_of(f) is None] == []


def test_every_tier_should_be_a_registered_marker() -> None:
    assert TIERS <= registered_markers()


def test_every_tier_folder_should_exist() -> None:
    assert [folder for folder in TIER_OF_FOLDER if not (TESTS_DIR / folder).is_dir()] == []


@pytest.mark.parametrize(("path", "tier"), [
    ("unit/test_sshwire.py", "unit"),
    ("dag_validation/test_plugin_loading.py", "dag_validation"),
    ("cli/test_heartbeat_command.py", "integration"),
    ("ui/test_fleet_page.py", "end2end"),
    ("conftest.py", None),
    ("../plugins/heartbeat/probe.py", None),
], ids=lambda value: str(value))
def test_should_take_the_tier_of_the_first_folder_under_tests(path: str, tier: str | None) -> None:
    assert tier_of(TESTS_DIR / path) == tier


def test_should_have_marked_this_test_unit(request: pytest.FixtureRequest) -> None:
    assert [m.name for m in request.node.iter_markers() if m.name in TIERS] == ["unit"]
