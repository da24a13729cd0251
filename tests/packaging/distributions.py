"""Building the distributions of this repository for the packaging tests: with uv, from a copy of
the working tree (the build's ``build/`` and ``*.egg-info`` folders never land in the repository),
offline from uv's cache when it can (setuptools is fetched once otherwise)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".state", "build", "dist", "*.egg-info", "__pycache__",
                                    "*.pyc", ".*_cache", "test-artifacts", "secrets", ".env")


def uv() -> Path:
    path = Path(sys.executable).with_name("uv")
    assert path.exists(), f"{path} is missing: run `make venv`"
    return path


def build(work: Path, *, via_sdist: bool) -> Path:
    """Build into ``work/dist`` and return the wheel: straight from the source tree, or (as
    ``python -m build`` and a package index's users get it) from the sdist built first."""
    source, out = work / "source", work / "dist"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE, symlinks=True)
    command = [str(uv()), "build", "--quiet", "--out-dir", str(out), str(source)]
    if not via_sdist:
        command.insert(2, "--wheel")
    proc = subprocess.run([*command, "--offline"], capture_output=True, text=True, timeout=300, cwd=work)
    if proc.returncode != 0:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [wheel] = out.glob("*.whl")
    assert bool(list(out.glob("*.tar.gz"))) == via_sdist
    return wheel
