"""Sites as input: the names a Celery queue and an Airflow task id can carry, the configured set
(``HEARTBEAT_SITES``), a server's site checked against it, and the DAG's one probe task per site."""

from __future__ import annotations

import pytest

from heartbeat.config import Settings, SettingsError, settings_from_env
from heartbeat.inventory import InventoryError, Shard, validate_import, validate_server
from heartbeat.models import Server
from heartbeat.sites import load_task_id, probe_task_id, queue_name, site_problem, worker_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("site", ["default", "dc-b", "eu_west_1", "a", "0zone", "x" * 40])
def test_should_accept_a_site_name_a_queue_and_a_task_id_can_hold(site: str):
    assert site_problem(site) is None


@pytest.mark.parametrize("site", ["", "DC-B", "dc b", "dc.b", "-dc", "_dc", "dc/b", "dc;b", "x" * 41, "dc\x00b",
                                  "dc\u00e9"],
                         ids=["empty", "upper", "space", "dot", "dash-first", "underscore-first", "slash", "semicolon",
                              "too-long", "nul", "non-ascii"])
def test_should_refuse_a_site_name_a_queue_or_a_task_id_cannot_hold(site: str):
    assert "lower-case letters, digits" in (site_problem(site) or "")


def test_should_name_each_site_s_queue_and_tasks_keeping_the_default_site_s_names():
    assert (queue_name("dc-b"), probe_task_id("dc-b"), load_task_id("dc-b")) == (
        "heartbeat-dc-b", "probe_shard_dc-b", "load_inventory_dc-b")
    assert (probe_task_id("default"), load_task_id("default")) == ("probe_shard", "load_inventory")


def test_should_read_the_configured_sites_in_order_with_default_alone_when_unset():
    assert settings_from_env({}).site_list == ("default",)
    assert settings_from_env({"HEARTBEAT_SITES": " dc-a, dc-b ,"}).site_list == ("dc-a", "dc-b")


@pytest.mark.parametrize("raw, message", [
    ("dc-a,DC-B", "site 'DC-B' must be"),
    ("dc-a,dc-a", "listed twice: dc-a"),
    ("a b", "site 'a b' must be"),
], ids=["upper", "twice", "space"])
def test_should_refuse_a_bad_site_setting_at_start_naming_the_variable(raw: str, message: str):
    with pytest.raises(SettingsError, match="HEARTBEAT_SITES") as error:
        Settings(sites=raw)
    assert message in str(error.value)


def test_should_refuse_a_server_of_a_site_that_is_not_configured_saying_what_to_do():
    with pytest.raises(InventoryError) as error:
        validate_server({"name": "web-1", "host": "10.0.0.1", "site": "dc-c"}, sites=("default", "dc-b"))
    assert "site 'dc-c' is not configured (HEARTBEAT_SITES: default, dc-b)" in str(error.value)
    assert "start a worker serving its queue" in str(error.value)
    assert validate_server({"name": "web-1", "host": "10.0.0.1", "site": "dc-b"}, sites=("default", "dc-b")).site == \
        "dc-b"
    assert validate_server({"name": "web-1", "host": "10.0.0.1"}).site == "default"


def test_should_name_the_line_of_every_bad_site_in_an_import():
    rows = [(2, {"name": "a", "host": "10.0.0.1", "site": "dc-b"}),
            (3, {"name": "b", "host": "10.0.0.2", "site": "Nope"}),
            (4, {"name": "c", "host": "10.0.0.3", "site": "dc-z"})]
    with pytest.raises(InventoryError) as error:
        validate_import(rows, sites=("default", "dc-b"))
    problems = error.value.problems
    assert len(problems) == 2 and problems[0].startswith("line 3: site 'Nope' must be")
    assert problems[1].startswith("line 4: site 'dc-z' is not configured")


def test_should_carry_the_site_in_a_shard_through_json():
    shard = Shard.of([Server(1, "a", "10.0.0.1", site="dc-b")], "dc-b")
    assert Shard.from_json(shard.to_json()) == shard
    assert Shard.from_json({"label": "x", "server_ids": [1]}).site == "default"  # a shard of an older run


def test_should_name_the_worker_by_the_setting_else_the_host_name():
    assert worker_name(" worker-a ") == "worker-a"
    assert worker_name("") and worker_name("") == Settings().worker
    assert Settings(worker_name="w-1").worker == "w-1"
