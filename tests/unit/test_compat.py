"""Which Airflow the package accepts (heartbeat.compat): 3.3 up to, not including, 4."""

from __future__ import annotations

import pytest

from heartbeat.compat import airflow_version, refusal, require_supported_airflow, unsupported_reason


@pytest.mark.parametrize(("version", "accepted"), [
    ("3.3.0", True), ("3.3.2", True), ("3.4.0rc1", True), ("3.10.1", True),
    ("3.2.2", False), ("3.0.6", False), ("2.11.0", False), ("4.0.0", False),
], ids=lambda v: str(v))
def test_should_accept_airflow_3_3_up_to_4(version: str, accepted: bool) -> None:
    assert (unsupported_reason(version) is None) is accepted


@pytest.mark.parametrize(("version", "says"), [
    ("3.2.2", "Airflow 3.2.2 is installed; airflow-ssh-heartbeat needs Airflow >= 3.3 and < 4"),
    (None, "Apache Airflow is not installed in this Python environment"),
    ("main", "the installed Airflow's version 'main' cannot be read"),
], ids=["older", "missing", "unreadable"])
def test_should_refuse_with_what_is_wrong_and_what_to_do(version: str | None, says: str) -> None:
    error = refusal(version)
    assert error is not None
    assert str(error).startswith(says)
    assert "Upgrade Airflow to 3.3 or later" in str(error)
    assert isinstance(error, ImportError), "raised while Airflow imports the DAG file or the plugin"


def test_should_accept_the_airflow_of_this_environment() -> None:
    assert airflow_version() == "3.3.2"
    require_supported_airflow()
