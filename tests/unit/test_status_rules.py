"""The status rules' specification (``evaluate_status``) against the one table of cases
(tests/status_cases.py) that the SQL decider is held to as well."""

import re
from datetime import timedelta

import pytest
from status_cases import AS_OF, STATUS_CASES, StatusCase, ago

from heartbeat.models import HeartbeatState
from heartbeat.status import evaluate_status

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in STATUS_CASES])
def test_should_decide_status_and_reason_as_the_case_table_says(case: StatusCase):
    decision = evaluate_status(case.state, AS_OF, case.rules)
    assert (decision.status, decision.reason) == (case.status, case.reason)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in STATUS_CASES])
def test_should_give_a_reason_that_holds_no_age_so_it_agrees_with_the_age_shown_beside_it(case: StatusCase):
    """Decided later with nothing else changed, a server keeps its reason as long as it keeps its
    status: the reason says nothing that moves with the clock (the page ticks the age, not it)."""
    assert not re.search(r"\d+ s ago|for \d+ s\b|no cycle for", case.reason)
    for later_s in (1, 10, 30):
        later = evaluate_status(case.state, AS_OF + timedelta(seconds=later_s), case.rules)
        if later.status is case.status:
            assert later.reason == case.reason, later_s


def test_should_report_heartbeat_age_in_seconds():
    decision = evaluate_status(HeartbeatState(ago(42.5)), AS_OF)
    assert decision.heartbeat_age_s == pytest.approx(42.5)
    assert evaluate_status(HeartbeatState(None), AS_OF).heartbeat_age_s is None


def test_should_take_a_plain_number_as_the_offline_threshold():
    assert evaluate_status(HeartbeatState(ago(45)), AS_OF, 30).reason == "no heartbeat for over 30 s"
