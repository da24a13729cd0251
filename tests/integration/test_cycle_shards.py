"""A cycle's shards: what the load task hands to the probe tasks, and what a probe task reads."""

from __future__ import annotations

import pytest
from support import add_servers, query

from heartbeat import cycle
from heartbeat.config import Settings
from heartbeat_lab import SshdFleet

pytestmark = pytest.mark.integration

SETTINGS = Settings(probe_timeout_s=3, connect_timeout_s=2)
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB2bmYq6tGIu5vJrA1bYq0P5ZbMf2Wz1Tzt1aXJYc1Vt"


def test_should_probe_a_shards_servers_as_they_are_when_it_runs(heartbeat_env, heartbeat_dsn, fleet: SshdFleet):
    web, other = fleet.servers[0], fleet.servers[1]
    ids = add_servers(heartbeat_dsn, [{"name": "web", "host": web.host, "port": web.port},
                                      {"name": "retired", "host": other.host, "port": other.port},
                                      {"name": "edited", "host": other.host, "port": other.port},
                                      {"name": "repinned", "host": other.host, "port": other.port}])
    [shard] = cycle.load_shards(SETTINGS, "c1", cycle.utc_now())
    assert shard.server_ids == tuple(sorted(ids.values()))
    assert shard.label == "web … repinned (4 servers)"

    # Between the load task and the probe task: one server disabled, one row edited by hand into
    # something unusable, one host key pinned (to a key this server does not hold).
    query(heartbeat_dsn, "UPDATE servers SET enabled = false WHERE name = 'retired' RETURNING id")
    query(heartbeat_dsn, "UPDATE servers SET host = 'exa_mple!' WHERE name = 'edited' RETURNING id")
    query(heartbeat_dsn, "UPDATE servers SET host_key = %s WHERE name = 'repinned' RETURNING id", (OTHER_KEY,))

    summary = cycle.probe_shard(SETTINGS, "c1", shard.to_json())

    assert (summary.probed, summary.ok) == (3, 1)
    assert 0 < summary.login_cpu_ms <= summary.cpu_ms  # the task reports what its shard cost
    rows = {r["name"]: r for r in query(
        heartbeat_dsn, "SELECT s.name, h.ok, h.error_class, h.message FROM probe_history h "
                       "JOIN servers s ON s.id = h.server_id WHERE h.cycle_id = 'c1'")}
    assert set(rows) == {"web", "edited", "repinned"}
    assert rows["web"]["ok"]
    assert rows["edited"]["message"].startswith("invalid inventory row: host")
    assert rows["repinned"]["error_class"] == "host_key_changed"
