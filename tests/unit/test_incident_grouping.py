"""The shared-cause rule (heartbeat.incidents.group_failures): which new failures make one
incident, by what they share, against thresholds on size and share of the population."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from heartbeat.config import IncidentSettings, SettingsError, settings_from_env
from heartbeat.incidents import Cause, Failure, FleetServer, address_prefix, describe, group_failures

T0 = datetime(2026, 12, 1, 8, 0, 31, tzinfo=UTC)
DEFAULTS = IncidentSettings()


def server(i: int, host: str, conn_id: str = "heartbeat_ssh", parent: str | None = None) -> FleetServer:
    return FleetServer(i, f"s{i}", host, conn_id, parent, "switch" if parent else None)


def failed(s: FleetServer, error_class: str) -> Failure:
    return Failure(s.server_id, s.server_name, s.host, s.conn_id, s.parent_name, s.parent_kind, error_class,
                   1000 + s.server_id, T0, s.via, s.site)


RACK = [server(i, f"192.0.2.{i}") for i in range(1, 45)]  # 44 servers in 192.0.2.0/24


@pytest.mark.parametrize(("host", "expected"), [
    ("192.0.2.77", "192.0.2.0/24"),
    ("2001:db8:1:2::17", "2001:db8:1:2::/64"),
    ("[2001:db8::1]", "2001:db8::/64"),
    ("web01.example.com", None),
], ids=["ipv4", "ipv6", "bracketed", "name"])
def test_should_take_the_prefix_of_an_address_and_none_of_a_name(host, expected):
    assert address_prefix(host, DEFAULTS) == expected


def test_should_open_one_incident_when_most_of_a_prefix_fails_with_one_error_class():
    failures = [failed(s, "timeout") for s in RACK[:41]]
    joining, [group] = group_failures(failures, RACK, DEFAULTS)
    assert joining == {}
    assert group.cause == Cause("prefix", "192.0.2.0/24", "timeout")
    assert (len(group.members), group.population) == (41, 44)
    title, text = describe("prefix", "192.0.2.0/24", "timeout", 41, 44, T0)
    assert title == "41 of 44 servers in 192.0.2.0/24 timed out"
    assert text.startswith("41 of 44 servers in 192.0.2.0/24 timed out since 2026-12-01T08:00:31+00:00")


@pytest.mark.parametrize(("failing", "settings", "grouped"), [
    (2, DEFAULTS, False),  # under min_servers: two pages are not a storm
    (21, DEFAULTS, False),  # 21 of 44: not most of the prefix
    (22, DEFAULTS, True),  # 22 of 44: half
    (10, IncidentSettings(min_share=0.2), True),
    (3, IncidentSettings(min_share=0.05), True),
    (3, IncidentSettings(min_share=0.05, min_servers=4), False),
], ids=["two", "minority", "half", "lower-share", "min-three", "min-four"])
def test_should_hold_a_group_to_its_size_and_share_thresholds(failing, settings, grouped):
    _, groups = group_failures([failed(s, "refused") for s in RACK[:failing]], RACK, settings)
    assert bool(groups) is grouped


def test_should_keep_error_classes_apart_within_a_prefix():
    failures = [failed(s, "timeout") for s in RACK[:20]] + [failed(s, "refused") for s in RACK[20:40]]
    _, groups = group_failures(failures, RACK, DEFAULTS)
    assert groups == []  # 20 of 44 each: two coincidences, not one cause


def test_should_call_auth_failures_across_prefixes_a_credential_problem_of_their_connection():
    fleet = [server(i, f"10.{i}.0.1", conn_id="ops_key") for i in range(1, 11)] + [server(99, "10.99.0.1")]
    failures = [failed(s, "auth") for s in fleet[:8]]
    _, [group] = group_failures(failures, fleet, DEFAULTS)
    assert group.cause == Cause("connection", "ops_key", "auth")
    assert (len(group.members), group.population) == (8, 10)
    title, text = describe("connection", "ops_key", "auth", 8, 10, T0)
    assert title == "the monitor's key was refused by 8 servers of connection ops_key"
    assert "a credential problem, not 8 outages" in text


def test_should_not_group_timeouts_by_connection():
    fleet = [server(i, f"10.{i}.0.1") for i in range(1, 11)]
    _, groups = group_failures([failed(s, "timeout") for s in fleet], fleet, DEFAULTS)
    assert groups == []


def test_should_prefer_a_declared_parent_whatever_the_error_classes():
    fleet = [server(i, f"10.{i}.0.1", parent="sw-12") for i in range(1, 6)] + [server(9, "10.9.0.1")]
    failures = [failed(s, c) for s, c in zip(fleet[:4], ["timeout", "unreachable", "timeout", "refused"],
                                             strict=True)]
    _, [group] = group_failures(failures, fleet, DEFAULTS)
    assert group.cause == Cause("parent", "switch sw-12", "any")
    assert (len(group.members), group.population) == (4, 5)  # sw-12 itself is not in this fleet


def test_should_put_a_failed_parent_into_the_group_of_the_servers_behind_it():
    switch = server(7, "10.7.0.1")
    fleet = [switch] + [server(i, f"10.{i}.0.1", parent="s7") for i in range(1, 4)]
    _, [group] = group_failures([failed(s, "timeout") for s in fleet], fleet, DEFAULTS)
    assert group.cause == Cause("parent", "switch s7", "any")
    assert [f.server_name for f in group.members] == ["s1", "s2", "s3", "s7"] and group.population == 4
    title, _ = describe("parent", "switch s7", "any", 4, 4, T0)
    assert title == "4 of 4 servers at switch s7 (itself and those behind it) are OFFLINE"


def test_should_join_an_open_incident_of_the_same_cause_below_the_thresholds():
    cause = Cause("prefix", "192.0.2.0/24", "timeout")
    joining, groups = group_failures([failed(RACK[43], "timeout")], RACK, DEFAULTS, open_causes=[cause])
    assert list(joining) == [cause] and groups == []


def test_should_group_failures_behind_one_bastion_per_error_class():
    fleet = [FleetServer(i, f"app-{i}", f"10.{i}.0.5", "heartbeat_ssh", via="jump-1") for i in range(1, 7)]
    failures = [failed(s, "timeout") for s in fleet[:4]]
    _, [group] = group_failures(failures, fleet, DEFAULTS)
    assert group.cause == Cause("bastion", "bastion jump-1", "timeout")
    title = describe("bastion", "bastion jump-1", "timeout", 4, 6, T0)[0]
    assert title == "4 of 6 servers behind bastion jump-1 timed out"


def test_should_group_failures_of_one_site_but_not_of_the_default_site():
    fleet = [FleetServer(i, f"s{i}", f"10.{i}.0.5", "heartbeat_ssh", site="paris") for i in range(1, 5)]
    fleet += [FleetServer(i, f"s{i}", f"10.{i}.0.5", "heartbeat_ssh", site="default") for i in range(5, 9)]
    _, [group] = group_failures([failed(s, "refused") for s in fleet[:3]], fleet, DEFAULTS)
    assert group.cause == Cause("site", "site paris", "refused") and group.population == 4
    assert describe("site", "site paris", "refused", 3, 4, T0)[0] == "3 of 4 servers of site paris refused connections"
    assert group_failures([failed(s, "refused") for s in fleet[4:]], fleet, DEFAULTS)[1] == []


def test_should_try_dimensions_in_the_configured_order():
    fleet = [server(i, f"192.0.2.{i}") for i in range(1, 11)]
    failures = [failed(s, "auth") for s in fleet[:8]]
    [group] = group_failures(failures, fleet, DEFAULTS)[1]
    assert group.cause.dimension == "connection"
    [group] = group_failures(failures, fleet, IncidentSettings(dimensions="prefix,connection"))[1]
    assert group.cause.dimension == "prefix"


@pytest.mark.parametrize(("env", "message"), [
    ({"HEARTBEAT_INCIDENT_MIN_SERVERS": "1"}, "MIN_SERVERS must be at least 2"),
    ({"HEARTBEAT_INCIDENT_MIN_SHARE": "1.5"}, "MIN_SHARE must be above 0 and at most 1"),
    ({"HEARTBEAT_INCIDENT_DIMENSIONS": "prefix,rack"}, "unknown rack"),
], ids=["min-servers", "share", "dimension"])
def test_should_refuse_bad_incident_settings_naming_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_env(env)
