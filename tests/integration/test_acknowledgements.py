"""Acknowledgements, reminders and escalation, typed parents, and the bad input they refuse,
against a real PostgreSQL; time passed in (the command line runs on the clock)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from integration.test_notifications import Webhook
from support import add_servers, query

from heartbeat import cli, cycle, notify, store
from heartbeat.config import IncidentSettings, Settings
from heartbeat.models import ProbeResult

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, 0, tzinfo=UTC)
SETTINGS = Settings()
ESCALATING = notify.NotifySettings(notify_after_s=60, repeat_after_s=300, escalate_after=2,
                                   escalation_channels="pager")


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class Recorder:
    name: str
    sent: list[notify.Notification] = field(default_factory=list)

    def send(self, notification: notify.Notification) -> None:
        self.sent.append(notification)

    def kinds(self) -> list[str]:
        return [n.kind for n in self.sent]


def observe(dsn: str, server_ids: list[int], at: datetime, ok: bool, error_class: str = "refused") -> None:
    results = [ProbeResult(server_id=i, server_name="x", ok=ok, attempted_at=at,
                           error_class=None if ok else error_class, message="", total_ms=5.0) for i in server_ids]
    with store.connect(dsn) as conn:
        store.record_results(conn, f"cycle-{at.timestamp()}", results)
        store.materialise_status(conn, at, SETTINGS.offline_after_s)
        cycle.update_incidents(conn, at, IncidentSettings(), window_s=120)


def send(dsn: str, at: datetime, *channels: Recorder) -> int:
    return notify.run(SETTINGS, at, dsn=dsn, channels=list(channels), notify_settings=ESCALATING)["sent"]


def test_should_remind_escalate_and_stop_while_acknowledged_until_the_expiry(heartbeat_dsn):
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    oncall, pager = Recorder("oncall"), Recorder("pager")
    observe(heartbeat_dsn, [web], s(0), ok=True)
    observe(heartbeat_dsn, [web], s(61), ok=False)
    for at in (121, 122, 421, 721, 722, 723):
        send(heartbeat_dsn, s(at), oncall, pager)
    assert oncall.kinds() == ["offline", "repeat", "repeat"]
    assert pager.kinds() == ["escalation"]  # after two reminders, once; nothing else goes there
    assert pager.sent[0].title == "escalated: web-01 is OFFLINE"
    assert {n.dedup_key for n in oncall.sent + pager.sent} == {"airflow-ssh-heartbeat/server/web-01"}

    with store.connect(heartbeat_dsn) as conn:
        store.acknowledge(conn, server_name="web-01", by="alice", reason="replacing the PSU", as_of=s(800),
                          expires_at=s(1800))
    for at in (1021, 1321, 1621):
        assert send(heartbeat_dsn, s(at), oncall, pager) == 0  # acknowledged: quiet
    assert send(heartbeat_dsn, s(1801), oncall, pager) == 1  # expired: one reminder, no backlog
    assert oncall.kinds()[-1] == "repeat" and oncall.sent[-1].subject.endswith(":repeat:3")

    with store.connect(heartbeat_dsn) as conn:
        store.acknowledge(conn, server_name="web-01", by="bob", reason="on it", as_of=s(1900))
    observe(heartbeat_dsn, [web], s(2000), ok=True)  # recovery ends the acknowledgement
    [ack] = query(heartbeat_dsn, "SELECT acknowledged_by, end_reason FROM acknowledgements WHERE ended_at IS NOT NULL")
    assert ack == {"acknowledged_by": "bob", "end_reason": "server recovered"}
    assert send(heartbeat_dsn, s(2060), oncall, pager) == 1
    assert oncall.kinds()[-1] == "recovered"


def test_should_acknowledge_an_incident_and_show_it_in_the_view(heartbeat_dsn):
    ids = list(add_servers(heartbeat_dsn, [{"name": f"db-{i}", "host": f"192.0.2.{i}"} for i in (1, 2, 3)]).values())
    oncall = Recorder("oncall")
    observe(heartbeat_dsn, ids, s(0), ok=True)
    observe(heartbeat_dsn, ids, s(61), ok=False)
    send(heartbeat_dsn, s(121), oncall)
    [incident_id] = [r["id"] for r in query(heartbeat_dsn, "SELECT id FROM incidents")]
    assert oncall.kinds() == ["incident"]
    with store.connect(heartbeat_dsn) as conn:
        store.acknowledge(conn, incident_id=incident_id, by="carol", reason="switch vendor called", as_of=s(200))
    assert send(heartbeat_dsn, s(900), oncall) == 0
    [row] = query(heartbeat_dsn, "SELECT acknowledged_by, acknowledged_reason, members FROM open_incidents")
    assert row == {"acknowledged_by": "carol", "acknowledged_reason": "switch vendor called", "members": 3}
    observe(heartbeat_dsn, ids, s(1000), ok=True)
    assert query(heartbeat_dsn, "SELECT end_reason FROM acknowledgements") == [{"end_reason": "incident closed"}]


def test_should_group_the_failures_behind_a_declared_parent_whatever_their_errors(heartbeat_dsn, heartbeat_env,
                                                                                  capsys):
    ids = add_servers(heartbeat_dsn, [{"name": n, "host": f"h{n}.example.test"} for n in
                                      ("sw-1", "vm-1", "vm-2", "vm-3", "vm-4")])
    for child in ("vm-1", "vm-2", "vm-3", "vm-4"):
        assert cli.main(["servers", "parent", child, "sw-1", "--kind", "switch"]) == 0
    assert "vm-4 depends on switch sw-1" in capsys.readouterr().out
    oncall = Recorder("oncall")
    children = [ids[n] for n in ("vm-1", "vm-2", "vm-3")]
    observe(heartbeat_dsn, list(ids.values()), s(0), ok=True)
    observe(heartbeat_dsn, [ids["sw-1"], ids["vm-4"]], s(60), ok=True)
    observe(heartbeat_dsn, children[:2], s(61), ok=False, error_class="timeout")
    observe(heartbeat_dsn, children[2:], s(61), ok=False, error_class="unreachable")
    send(heartbeat_dsn, s(121), oncall)
    [incident] = oncall.sent
    assert incident.kind == "incident"
    assert incident.title == "3 of 5 servers at switch sw-1 (itself and those behind it) are OFFLINE"
    assert query(heartbeat_dsn, "SELECT parent_name, parent_kind FROM server_incident_state WHERE server_name = 'vm-1'"
                 ) == [{"parent_name": "sw-1", "parent_kind": "switch"}]


def test_should_refuse_bad_acknowledgements_and_parent_loops_changing_nothing(heartbeat_dsn, heartbeat_env, capsys):
    ids = add_servers(heartbeat_dsn, [{"name": n, "host": f"{n}.example.test"} for n in ("a", "b", "c")])
    now = datetime.now(UTC)
    observe(heartbeat_dsn, [ids["a"]], now - timedelta(minutes=10), ok=True)
    observe(heartbeat_dsn, [ids["a"]], now - timedelta(minutes=5), ok=False)  # a is OFFLINE
    observe(heartbeat_dsn, [ids["b"]], now - timedelta(minutes=1), ok=True)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    cases = [
        (("ack", "server", "nope", "-m", "x"), "no server named 'nope'"),
        (("ack", "server", "a", "-m", "x", "--until", "2020-01-01T00:00:00+00:00"), "is not in the future"),
        (("ack", "server", "b", "-m", "x"), "b is not OFFLINE: there is nothing to acknowledge"),
        (("ack", "incident", "42", "-m", "x"), "no incident 42"),
        (("ack", "incident", "forty-two", "-m", "x"), "'forty-two' is not an incident number"),
        (("ack", "server", "a", "-m", "x", "--until", "soon"), "neither a duration"),
        (("servers", "parent", "a", "a", "--kind", "host"), "a parent loop: a -> a"),
        (("servers", "parent", "a", "nope", "--kind", "switch"), "no server named 'nope' to be the parent of a"),
        (("servers", "parent", "a", "b"), "give the parent and its --kind"),
    ]
    assert run("servers", "parent", "b", "a", "--kind", "switch")[0] == 0
    assert run("servers", "parent", "c", "b", "--kind", "switch")[0] == 0
    cases.append((("servers", "parent", "a", "c", "--kind", "bastion"), "a parent loop: a -> c -> b -> a"))
    for argv, message in cases:
        code, _, err = run(*argv)
        assert code == 1 and message in err, (argv, err)
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM acknowledgements") == [{"n": 0}]
    assert query(heartbeat_dsn, "SELECT name FROM servers WHERE parent_id IS NOT NULL ORDER BY name") == [
        {"name": "b"}, {"name": "c"}]

    code, out, _ = run("ack", "server", "a", "-m", "rebooting", "--by", "dave", "--until", "+1h")
    assert code == 0 and out.startswith("acknowledgement 1 of server a until ")
    [listed] = json.loads(run("ack", "list", "--json")[1])
    assert (listed["server_name"], listed["acknowledged_by"], listed["active"]) == ("a", "dave", True)
    assert run("incidents", "list")[0] == 0


def test_should_escalate_a_told_outage_by_hand_once_from_the_command_line(heartbeat_dsn, heartbeat_env, monkeypatch,
                                                                          capsys):
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    now = datetime.now(UTC)
    observe(heartbeat_dsn, [web], now - timedelta(minutes=10), ok=True)
    observe(heartbeat_dsn, [web], now - timedelta(minutes=8), ok=False)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, _, err = run("escalate", "server", "web-01")
    assert code == 1 and "no escalation channel: name one in HEARTBEAT_NOTIFY_ESCALATION_CHANNELS" in err
    with Webhook() as pager:
        monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_WEBHOOK", pager.connection_json())
        monkeypatch.setenv("HEARTBEAT_NOTIFY_ESCALATION_CHANNELS", "webhook")
        code, _, err = run("escalate", "server", "web-01")
        assert code == 1 and "server web-01 has no outage that was told and still holds" in err
        send(heartbeat_dsn, now - timedelta(minutes=6), Recorder("oncall"))  # told on the on-call channel
        with store.connect(heartbeat_dsn) as conn:  # someone is on it; escalating by hand is still allowed
            store.acknowledge(conn, server_name="web-01", by="erin", reason="on it", as_of=now - timedelta(minutes=5))
        code, out, _ = run("escalate", "server", "web-01", "--by", "frank")
        assert code == 0 and out.strip() == ("escalated server web-01: 1 sent, 0 already escalated, 0 failed on 1 "
                                             "escalation channels")
        assert run("escalate", "server", "web-01")[1].startswith("escalated server web-01: 0 sent, 1 already")
        [escalation] = pager.received
        assert escalation["kind"] == "escalation" and escalation["title"] == "escalated: web-01 is OFFLINE"
        assert "escalated by frank" in escalation["text"]
        assert escalation["dedup_key"] == "airflow-ssh-heartbeat/server/web-01"
        code, _, err = run("escalate", "incident", "7")
        assert code == 1 and "incident 7 has no outage that was told" in err
