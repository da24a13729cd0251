"""A test's tier is the folder it lives in. ``conftest.py`` marks every collected test from this
table, so ``pytest -m unit`` selects exactly ``tests/unit`` without a marker in any file."""

from __future__ import annotations

from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent

TIER_OF_FOLDER: dict[str, str] = {
    "unit": "unit",
    "dag_validation": "dag_validation",
    "packaging": "packaging",
    "integration": "integration",
    "cli": "integration",
    "security": "integration",
    "compose": "integration",
    "end2end": "end2end",
    "ui": "end2end",
}

TIERS = frozenset(TIER_OF_FOLDER.values())


def tier_of(path: Path) -> str | None:
    """The tier of the test file at ``path``: that of its first folder under ``tests/``."""
    try:
        relative = Path(path).resolve().relative_to(TESTS_DIR)
    except ValueError:
        return None
    return TIER_OF_FOLDER.get(relative.parts[0]) if len(relative.parts) > 1 else None
