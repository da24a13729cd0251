"""The image (Dockerfile) installs the product as a deployment would: a first stage builds the wheel
from the product's sources only (no ``heartbeat_lab``, demo, tests or benchmarks), the image is the
stock Airflow image plus that wheel, installed with Airflow pinned, and the two-line DAG files. No
Docker engine runs here: the Dockerfile and .dockerignore are read."""

from __future__ import annotations

import json
import shlex
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
HARNESS = ("heartbeat_lab", "bench", "tests")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    result, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def context_sources(text: str) -> list[str]:
    """The build-context paths that COPY and ADD take (not those copied from another stage)."""
    sources = []
    for keyword, arguments in instructions(text):
        if keyword not in ("COPY", "ADD"):
            continue
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        sources += [w for w in words if not w.startswith("--")][:-1]
    return sources


def test_should_read_copy_instructions_of_every_form() -> None:
    text = ('# COPY tests/ /x\nCOPY --chown=a:0 plugins/ /opt/p/\nADD ["include/", "/opt/i/"]\n'
            'COPY --from=build /a /b\nCOPY a \\\n     b /c/\n')
    assert context_sources(text) == ["plugins/", "include/", "a", "b"]


def test_should_copy_the_product_by_name() -> None:
    sources = context_sources(DOCKERFILE.read_text())
    assert sorted(sources) == sorted(["pyproject.toml", "README.md", "plugins/heartbeat/", "include/sql/", "dags/"])
    assert [s for s in sources if PurePosixPath(s).as_posix() in (".", "*", "/")] == [], "a whole-context COPY"


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (those before the first FROM are left out)."""
    found: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions(text):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, arguments))
    return found


def test_should_build_the_wheel_in_a_first_stage_and_install_it_in_the_stock_airflow_image() -> None:
    build, image = stages(DOCKERFILE.read_text())
    assert build[0] == ("FROM", "apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS wheel")
    assert any(k == "RUN" and "pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/heartbeat-dist ." in a
               for k, a in build)
    assert image[0] == ("FROM", "apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}")
    assert ("COPY", "--from=wheel /tmp/heartbeat-dist/ /tmp/heartbeat-dist/") in image
    [install] = [a for k, a in image if k == "RUN" and "pip install" in a]
    pinned = 'pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /tmp/heartbeat-dist/airflow_ssh_heartbeat'
    assert pinned in install, "the wheel, with Airflow pinned on the same line (no up- or downgrade of Airflow)"
    assert "--editable" not in install and "--no-deps" not in install
    assert "heartbeat --help" in install and "import heartbeat.plugin" in install
    assert not [a for k, a in image if k == "ENV" and "HEARTBEAT_SQL_DIR" in a], "the SQL comes from the package"
    assert [a for k, a in image if k == "COPY" and "--from" not in a] == ["--chown=airflow:0 dags/ /opt/airflow/dags/"]
    assert image[-1] == ("USER", "airflow")


@pytest.mark.parametrize("folder", HARNESS)
def test_should_copy_nothing_of_the_development_harness(folder: str) -> None:
    sources = context_sources(DOCKERFILE.read_text())
    assert [s for s in sources if PurePosixPath(s).parts[:1] == (folder,)] == []


@pytest.mark.parametrize("folder", HARNESS)
def test_should_keep_the_development_harness_out_of_the_build_context(folder: str) -> None:
    patterns = [line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()]
    assert folder in patterns


def test_copied_folders_should_hold_no_lab_and_no_demo() -> None:
    copied = [REPO / s for s in context_sources(DOCKERFILE.read_text()) if (REPO / s).is_dir()]
    assert copied
    found = [str(p.relative_to(REPO)) for folder in copied for p in folder.rglob("*")
             if p.name in ("heartbeat_lab", "lab", "demo.py")]
    assert found == []
