"""Sites against a real PostgreSQL, time passed in: every attempt records its site and worker; a
site from which no attempt arrives for the stale bound reads STALE (not OFFLINE), is told once
per channel ("site X has no working monitor", not a message per server) and once when it is back;
a site dropped from HEARTBEAT_SITES keeps its servers, read STALE with the reason."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from support import add_servers, query

from heartbeat import cycle, notify, store
from heartbeat.config import Settings
from heartbeat.models import ProbeResult

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)
SETTINGS = Settings(sites="dc-a,dc-b", stale_after_s=60)
QUICK = notify.NotifySettings(notify_after_s=0, stall_after_s=3600)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Recorder:
    name = "webhook"

    def __init__(self) -> None:
        self.sent: list[notify.Notification] = []

    def send(self, notification: notify.Notification) -> None:
        self.sent.append(notification)


def probe_from(dsn: str, site: str, worker: str, ids: dict[str, int], at: datetime) -> None:
    """One shard's results recorded by ``worker`` of ``site`` at ``at`` (every login ok)."""
    with store.connect(dsn) as conn:
        store.record_results(conn, f"c-{at.timestamp()}", [ProbeResult(i, n, True, at, total_ms=5.0)
                                                          for n, i in ids.items()], site=site, worker=worker)


def materialise(dsn: str, at: datetime) -> dict[str, int]:
    with store.connect(dsn) as conn:
        return store.materialise_status(conn, at, SETTINGS.status_rules)


def statuses(dsn: str) -> dict[str, tuple[str, str]]:
    return {r["name"]: (r["status"], r["reason"]) for r in query(
        dsn, "SELECT s.name, st.status, st.reason FROM server_status st JOIN servers s ON s.id = st.server_id")}


def test_should_record_the_site_and_worker_of_every_attempt(heartbeat_dsn):
    ids = add_servers(heartbeat_dsn, [{"name": "a-1", "host": "10.0.0.1", "site": "dc-a"}])
    probe_from(heartbeat_dsn, "dc-a", "worker-a", ids, s(0))
    assert query(heartbeat_dsn, "SELECT site, worker FROM probe_history") == [{"site": "dc-a", "worker": "worker-a"}]
    assert query(heartbeat_dsn, "SELECT last_site, last_worker FROM heartbeats") == [
        {"last_site": "dc-a", "last_worker": "worker-a"}]
    [monitor] = query(heartbeat_dsn, "SELECT site, last_attempt_at, last_worker FROM site_monitors")
    assert monitor == {"site": "dc-a", "last_attempt_at": s(0), "last_worker": "worker-a"}
    with store.connect(heartbeat_dsn) as conn:  # an older attempt (a retried task) does not move it back
        store.record_results(conn, "old", [ProbeResult(ids["a-1"], "a-1", True, s(-30))], site="dc-a", worker="w-old")
    assert query(heartbeat_dsn, "SELECT last_worker FROM site_monitors")[0]["last_worker"] == "worker-a"


def test_should_read_a_silent_site_as_stale_tell_it_once_and_recover(heartbeat_dsn):
    a = add_servers(heartbeat_dsn, [{"name": "a-1", "host": "10.0.0.1", "site": "dc-a"}])
    b = add_servers(heartbeat_dsn, [{"name": f"b-{i}", "host": f"10.0.1.{i}", "site": "dc-b"} for i in (1, 2, 3)])
    channel = Recorder()

    def tell(at: datetime) -> list[str]:
        with store.connect(heartbeat_dsn) as conn:
            notify.notify_changes(conn, [channel], QUICK, at)
        return [n.title for n in channel.sent]

    for t in (0, 30):
        probe_from(heartbeat_dsn, "dc-a", "worker-a", a, s(t))
        probe_from(heartbeat_dsn, "dc-b", "worker-b", b, s(t))
        materialise(heartbeat_dsn, s(t + 5))
    assert {v[0] for v in statuses(heartbeat_dsn).values()} == {"ONLINE"}
    # dc-b's worker is gone: dc-a goes on, dc-b is silent
    for t in (60, 90, 120):
        probe_from(heartbeat_dsn, "dc-a", "worker-a", a, s(t))
        counts = materialise(heartbeat_dsn, s(t + 5))
        if t == 60:  # 35 s of silence: within the bound, nothing changes
            assert counts["stale"] == 0 and tell(s(t + 5)) == []
    assert counts["stale"] == 3 and counts["online"] == 1
    current = statuses(heartbeat_dsn)
    assert current["b-1"] == ("STALE", "no probe from site dc-b since 2026-11-02 09:00:30 UTC"), current
    assert current["a-1"][0] == "ONLINE"
    assert tell(s(125)) == ["site dc-b has no working monitor"]
    assert tell(s(200)) == ["site dc-b has no working monitor"]  # not again, and not per server
    [told] = channel.sent
    assert "3 servers read STALE, not OFFLINE" in told.text and "heartbeat-dc-b" in told.text
    assert query(heartbeat_dsn, "SELECT site, ended_at FROM site_stalls") == [{"site": "dc-b", "ended_at": None}]

    # back: ONLINE again at the next cycle, told once
    probe_from(heartbeat_dsn, "dc-a", "worker-a", a, s(150))
    probe_from(heartbeat_dsn, "dc-b", "worker-b2", b, s(150))
    counts = materialise(heartbeat_dsn, s(155))
    assert (counts["online"], counts["stale"], counts["sites_recovered"]) == (4, 0, 1)
    assert tell(s(156))[-1] == "site dc-b is monitored again"
    assert tell(s(300)).count("site dc-b is monitored again") == 1
    events = query(heartbeat_dsn, "SELECT e.from_status, e.to_status FROM status_events e JOIN servers s "
                                  "ON s.id = e.server_id WHERE s.name = 'b-1' ORDER BY e.id")
    assert [(e["from_status"], e["to_status"]) for e in events] == [(None, "ONLINE"), ("ONLINE", "STALE"),
                                                                   ("STALE", "ONLINE")]


def test_should_not_tell_recovered_when_an_offline_server_s_site_goes_silent(heartbeat_dsn):
    """OFFLINE then STALE: nothing is known about the server, it has not recovered."""
    b = add_servers(heartbeat_dsn, [{"name": "b-1", "host": "10.0.1.1", "site": "dc-b"}])
    with store.connect(heartbeat_dsn) as conn:
        store.record_results(conn, "c0", [ProbeResult(b["b-1"], "b-1", False, s(0), "refused", "refused")],
                             site="dc-b", worker="w")
        store.materialise_status(conn, s(1), SETTINGS.status_rules)
    channel = Recorder()
    with store.connect(heartbeat_dsn) as conn:
        notify.notify_changes(conn, [channel], QUICK, s(2))
        store.materialise_status(conn, s(100), SETTINGS.status_rules)
        notify.notify_changes(conn, [channel], QUICK, s(101))
    assert [n.kind for n in channel.sent] == ["offline", "site_stalled"]


def test_should_keep_the_servers_of_a_site_dropped_from_the_setting_and_read_them_stale(heartbeat_dsn, heartbeat_env,
                                                                                        caplog):
    ids = add_servers(heartbeat_dsn, [{"name": "a-1", "host": "10.0.0.1", "site": "dc-a"},
                                      {"name": "c-1", "host": "10.0.2.1", "site": "dc-c"}])
    now = cycle.utc_now()
    with caplog.at_level(logging.WARNING):
        shards = cycle.load_site_shards(SETTINGS, "c1", now)
    assert {site: [sh.server_ids for sh in v] for site, v in shards.items()} == {"dc-a": [(ids["a-1"],)], "dc-b": []}
    assert "1 servers of site 'dc-c' are not probed: the site is not in HEARTBEAT_SITES (dc-a,dc-b)" in caplog.text
    later = now + timedelta(seconds=61)
    probe_from(heartbeat_dsn, "dc-a", "worker-a", {"a-1": ids["a-1"]}, later)
    materialise(heartbeat_dsn, later)
    current = statuses(heartbeat_dsn)
    assert current["c-1"] == ("STALE", f"no probe from site dc-c yet (expected since {now:%Y-%m-%d %H:%M:%S} UTC)")
    assert current["a-1"][0] == "ONLINE"
    assert query(heartbeat_dsn, "SELECT name FROM servers ORDER BY name") == [{"name": "a-1"}, {"name": "c-1"}]


def test_should_probe_a_moved_server_from_its_new_site_only(heartbeat_dsn, heartbeat_env):
    ids = add_servers(heartbeat_dsn, [{"name": "x", "host": "10.0.0.1", "site": "dc-a"}])
    [shard] = cycle.load_site_shards(SETTINGS, "c1", cycle.utc_now())["dc-a"]
    with store.connect(heartbeat_dsn) as conn:
        assert store.set_server_site(conn, "x", "dc-b")
        # the shard cut before the move is probed after it: the server is left to its new site
        assert store.load_inventory(conn, shard.server_ids, shard.site) == ([], [])
        assert [srv.id for srv in store.load_inventory(conn, shard.server_ids, "dc-b")[0]] == [ids["x"]]
    assert cycle.load_site_shards(SETTINGS, "c2", cycle.utc_now())["dc-b"][0].server_ids == (ids["x"],)
