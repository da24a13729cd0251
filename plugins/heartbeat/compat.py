"""Which Airflow this package runs on, checked where Airflow loads it (the DAG factory, the UI
plugin), so that an unsupported Airflow fails with a sentence instead of an obscure import error.
The package's dependency range (``apache-airflow>=3.3,<4``) refuses such an Airflow at install
already; this catches an installation made with ``--no-deps`` or a copied package."""

from __future__ import annotations

import re
from importlib import metadata

SUPPORTED = ((3, 3), (4, 0))
"""Airflow versions from the first (included) to the second (excluded), as ``(major, minor)``."""


class UnsupportedAirflowError(ImportError):
    """The installed Airflow is outside :data:`SUPPORTED`."""


def airflow_version() -> str | None:
    """The installed Airflow's version (``apache-airflow-core``, else ``apache-airflow``), or None."""
    for distribution in ("apache-airflow-core", "apache-airflow"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def unsupported_reason(version: str | None) -> str | None:
    """Why ``version`` cannot run this package, or None when it can."""
    if version is None:
        return "Apache Airflow is not installed in this Python environment"
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        return f"the installed Airflow's version {version!r} cannot be read"
    found = (int(match.group(1)), int(match.group(2)))
    (low, high) = SUPPORTED
    if not low <= found < high:
        return f"Airflow {version} is installed; airflow-ssh-heartbeat needs Airflow >= 3.3 and < 4"
    return None


def refusal(version: str | None) -> UnsupportedAirflowError | None:
    """The error that refuses Airflow ``version`` (None: not installed), saying what to do; None
    when the package runs on it."""
    reason = unsupported_reason(version)
    if reason is None:
        return None
    return UnsupportedAirflowError(
        f"{reason}. Upgrade Airflow to 3.3 or later (an Airflow 3.3.x image or environment), then install "
        "airflow-ssh-heartbeat again."
    )


def require_supported_airflow() -> None:
    """Raise :class:`UnsupportedAirflowError` when the installed Airflow does not fit."""
    error = refusal(airflow_version())
    if error is not None:
        raise error
