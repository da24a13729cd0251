"""No alert storms, with real failures: 50 real sshd servers in one network namespace behind one
veth "switch" link, one unrelated server on loopback, cycles driven through the product
(load, probe, materialise, notify) with the time passed in.

- the switch goes down: exactly one incident notification naming the prefix, 50 members linked
  to it, the members keep their own OFFLINE statuses; recovery closes it (one "resolved");
- the unrelated server failing at the same time pages on its own (one notification);
- the monitor's key revoked on 30 servers: one credential incident naming the connection.

The channel here records what it is handed (the ``Channel`` protocol the notifiers implement):
the notifiers themselves are tested against local receivers in test_notification_channels.py.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import add_servers, query

from heartbeat import cycle, notify
from heartbeat.config import Settings
from heartbeat_lab import KeyPair, SshdServer
from heartbeat_lab.netns import LabNetwork, Link, Namespace, netns_available

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(netns_available() is not None, reason=str(netns_available()))]

CIDR, PREFIX = "10.118.0.0/16", "hb18"
RACK = "10.118.1.0/24"
RACK_SIZE, REVOKED = 50, 30
T0 = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
SETTINGS = Settings(connect_timeout_s=1, probe_timeout_s=3, concurrency=64)


@dataclass
class Rack:
    net: LabNetwork
    ns: Namespace
    switch: Link
    servers: list[SshdServer]
    lone: SshdServer


@dataclass
class Recorder:
    """A notification channel that keeps what it is given."""

    name: str = "oncall"
    sent: list[notify.Notification] = field(default_factory=list)

    def send(self, notification: notify.Notification) -> None:
        self.sent.append(notification)


@pytest.fixture(scope="module")
def rack(tmp_path_factory: pytest.TempPathFactory, client_key: KeyPair) -> Iterator[Rack]:
    work = tmp_path_factory.mktemp("rack")
    with LabNetwork(CIDR, PREFIX) as net:
        ns = net.namespace("rack")
        switch = net.link(None, ns, "10.118.0.1/30", "10.118.0.2/30")
        route(net, ns)
        hosts = [f"10.118.1.{i}" for i in range(1, RACK_SIZE + 1)]
        for host in hosts:
            ns.add_address(f"{host}/32")
        servers = [SshdServer(work / host, host, netns=ns, authorized_keys=[client_key.public_line], reexec=False)
                   for host in hosts]
        lone = SshdServer(work / "lone", "127.0.0.1", authorized_keys=[client_key.public_line], reexec=False)
        everything = [*servers, lone]
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(SshdServer.start, everything))
        try:
            yield Rack(net, ns, switch, servers, lone)
        finally:
            with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
                list(pool.map(SshdServer.stop, everything))


def route(net: LabNetwork, ns: Namespace) -> None:
    ns.add_route("default", "10.118.0.1")
    net.add_root_route(RACK, via="10.118.0.2")


def switch_back(rack: Rack) -> None:
    """The link comes back up (the lab puts back the routes Linux dropped with it)."""
    rack.net.set_link_up(rack.switch, True)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run_cycle(dsn: str, seconds: float, channel: Recorder) -> dict[str, int]:
    """One cycle at T0 + ``seconds`` through the product's steps, then the notification step."""
    now = at(seconds)
    cycle_id = f"cycle-{seconds:g}"
    for shard in cycle.load_shards(SETTINGS, cycle_id, now, dsn):
        cycle.probe_shard(SETTINGS, cycle_id, shard, dsn, now=lambda: now)
    counts = cycle.materialise(SETTINGS, cycle_id, now, dsn)
    notify.run(SETTINGS, now, current_cycle_id=cycle_id, dsn=dsn, channels=[channel])
    return counts


def told(channel: Recorder, since: int = 0) -> list[tuple[str, str]]:
    return [(n.kind, n.server_name or str(n.details.get("group_key"))) for n in channel.sent[since:]]


def test_should_page_once_for_a_switch_and_once_for_a_revoked_key_while_an_unrelated_failure_pages_alone(
        rack: Rack, heartbeat_env, heartbeat_dsn: str) -> None:
    add_servers(heartbeat_dsn, [{"name": f"rack-{i:02d}", "host": s.host, "port": 22}
                                for i, s in enumerate(rack.servers, start=1)]
                + [{"name": "lone-01", "host": rack.lone.host, "port": rack.lone.port}])
    channel = Recorder()
    assert run_cycle(heartbeat_dsn, 0, channel)["online"] == RACK_SIZE + 1

    # The switch fails, and at the same time an unrelated server's sshd stops.
    rack.net.set_link_up(rack.switch, False)
    rack.lone.stop()
    try:
        counts = run_cycle(heartbeat_dsn, 90, channel)  # heartbeats 90 s old: OFFLINE
        assert counts["offline"] == RACK_SIZE + 1
        assert counts["incidents_opened"] == 1 and counts["incident_members_added"] == RACK_SIZE
        assert channel.sent == []  # the debounce holds
        run_cycle(heartbeat_dsn, 150, channel)
        run_cycle(heartbeat_dsn, 180, channel)
    finally:
        switch_back(rack)

    assert sorted(told(channel)) == [("incident", RACK), ("offline", "lone-01")]
    incident = next(n for n in channel.sent if n.kind == "incident")
    assert incident.details["members"] == RACK_SIZE and incident.details["population"] == RACK_SIZE
    assert incident.title.startswith(f"{RACK_SIZE} of {RACK_SIZE} servers in {RACK} ")
    assert "rack-01, rack-02" in incident.text and "and 30 more" in incident.text
    [row] = query(heartbeat_dsn, "SELECT * FROM open_incidents")
    assert (row["dimension"], row["group_key"], row["members"], row["still_failing"]) == ("prefix", RACK, 50, 50)
    error_classes = {r["last_error_class"] for r in query(
        heartbeat_dsn, "SELECT h.last_error_class FROM heartbeats h JOIN servers s ON s.id = h.server_id "
                       "WHERE s.name LIKE 'rack-%%'")}
    assert error_classes == {row["error_class"]}
    # Members keep the seed's statuses and reasons: the incident is a field beside them.
    statuses = query(heartbeat_dsn, "SELECT s.name, st.status, st.reason FROM server_status st "
                                    "JOIN servers s ON s.id = st.server_id")
    assert {r["status"] for r in statuses} == {"OFFLINE"}
    assert all(r["reason"].startswith("no heartbeat for over 60 s; last attempt:") for r in statuses)

    # The switch is back: the members recover, the incident closes and is resolved once.
    counts = run_cycle(heartbeat_dsn, 210, channel)
    assert counts["online"] == RACK_SIZE and counts["incidents_closed"] == 1
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM open_incidents")[0]["n"] == 0
    before = len(channel.sent)
    run_cycle(heartbeat_dsn, 270, channel)
    assert told(channel, before) == [("incident_resolved", RACK)]  # no per-server "recovered"

    # The monitor's key is revoked on 30 of the rack's servers: one credential incident.
    for server in rack.servers[:REVOKED]:
        server.set_authorized_keys([])
    try:
        before = len(channel.sent)
        counts = run_cycle(heartbeat_dsn, 360, channel)
        assert counts["incidents_opened"] == 1 and counts["incident_members_added"] == REVOKED
        run_cycle(heartbeat_dsn, 420, channel)
        assert told(channel, before) == [("incident", "heartbeat_ssh")]
        credential = channel.sent[-1]
        assert credential.title == f"the monitor's key was refused by {REVOKED} servers of connection heartbeat_ssh"
        assert f"a credential problem, not {REVOKED} outages" in credential.text
    finally:
        for server in rack.servers[:REVOKED]:
            server.set_authorized_keys([rack.servers[-1].authorized_keys_path.read_text().strip()])
    counts = run_cycle(heartbeat_dsn, 450, channel)
    assert counts["incidents_closed"] == 1
    ledger = query(heartbeat_dsn, "SELECT kind, count(*) AS n FROM notification_log GROUP BY kind ORDER BY kind")
    assert ledger == [{"kind": "incident", "n": 2}, {"kind": "incident_resolved", "n": 1},
                      {"kind": "offline", "n": 1}]


def test_should_keep_the_lab_inside_its_range(rack: Rack) -> None:
    assert all(Path(s.work_dir).exists() for s in rack.servers)
    assert rack.net.require_address(rack.servers[0].host) == "10.118.1.1"
