"""Servers behind a bastion, against real parts: an OpenSSH sshd bastion with one leg in the
monitor's network and one in a private network namespace where the target sshd servers live,
unreachable from the monitor except through the bastion. Cycles run through the product code
(cycle.load_shards / probe_shard / materialise) with time passed in.

The bastion's auth log (LogLevel VERBOSE records every accepted public-key login with the key's
fingerprint) is the proof of one bastion login per shard and cycle."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import add_servers, query

from heartbeat import cli, cycle, notify, store
from heartbeat.config import Settings
from heartbeat.inventory import InventoryError, bastion_options, validate_server
from heartbeat.models import Server
from heartbeat.probe import ProbeOptions, probe_servers
from heartbeat_lab import KeyPair, SshdServer, generate_keypair
from heartbeat_lab.airflow_env import ssh_connection_json
from heartbeat_lab.netns import LabNetwork, netns_available

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(netns_available() is not None, reason=str(netns_available()))]

CIDR, PREFIX = "10.117.0.0/16", "hb17"
BASTION_IP = "10.117.1.2"
TARGET_IPS = ("10.117.2.11", "10.117.2.12", "10.117.2.13", "10.117.2.14")
SILENT_IPS = ("10.117.2.20", "10.117.2.21")
NOT_PERMITTED_IP = "10.117.2.30"
INNER_BASTION_IP = "10.117.2.40"  # a second bastion, inside the private network: a two-hop chain
T0 = datetime(2026, 12, 5, 9, 0, 0, tzinfo=UTC)
SETTINGS = Settings(probe_timeout_s=2, connect_timeout_s=1, shard_size=3)
STATUS = "SELECT s.name, st.status, st.reason FROM server_status st JOIN servers s ON s.id = st.server_id"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB2bmYq6tGIu5vJrA1bYq0P5ZbMf2Wz1Tzt1aXJYc1Vt"

SILENT_PEER = """
import socket, sys, time
socks = []
for host in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 22)); s.listen(64); socks.append(s)
print("ready", flush=True)
held = []
import selectors
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
while True:  # accept and never say a word
    for key, _ in sel.select():
        held.append(key.fileobj.accept()[0])
"""


@dataclass
class Lab:
    net: LabNetwork
    bastion: SshdServer
    targets: list[SshdServer]
    bastion_key: KeyPair
    inner: SshdServer


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, client_key: KeyPair) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("bastion-lab")
    bastion_key = generate_keypair(work / "id_bastion", comment="heartbeat-bastion")
    with LabNetwork(CIDR, PREFIX) as net:
        middle = net.namespace("bastion")
        private = net.namespace("private")
        net.link(None, middle, "10.117.1.1/30", f"{BASTION_IP}/30")
        inner = net.link(middle, private, "10.117.2.1/24", "10.117.2.2/24")
        for ip in (*TARGET_IPS, *SILENT_IPS, INNER_BASTION_IP):
            private.add_address(f"{ip}/24", device=inner.b)
        permitted = [(ip, 22) for ip in (*TARGET_IPS, *SILENT_IPS, INNER_BASTION_IP)]
        line = f"{bastion_options(permitted)} {bastion_key.public_line}"
        forwarding = {"AllowTcpForwarding": "yes", "LogLevel": "VERBOSE"}
        bastion = SshdServer(work / "bastion", BASTION_IP, netns=middle, authorized_keys=[line],
                             extra_config=forwarding)
        inner_bastion = SshdServer(
            work / "inner", INNER_BASTION_IP, netns=private, extra_config=forwarding,
            authorized_keys=[f"{bastion_options([(TARGET_IPS[3], 22)])} {bastion_key.public_line}"])
        targets = [SshdServer(work / f"t{i}", ip, netns=private, authorized_keys=[client_key.public_line])
                   for i, ip in enumerate(TARGET_IPS)]
        silent = subprocess.Popen(private.exec_argv([sys.executable, "-c", SILENT_PEER, *SILENT_IPS]),
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert silent.stdout is not None and silent.stdout.readline().strip() == "ready"
            with bastion, inner_bastion:
                for target in targets:
                    target.start()
                try:
                    yield Lab(net, bastion, targets, bastion_key, inner_bastion)
                finally:
                    for target in targets:
                        target.stop()
        finally:
            silent.kill()
            silent.wait(timeout=5)


@pytest.fixture
def env(heartbeat_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, lab: Lab) -> dict[str, str]:
    """The bastion's own Airflow connection, with its own key (the targets know only heartbeat_ssh's)."""
    monkeypatch.setenv("AIRFLOW_CONN_BASTION_SSH", ssh_connection_json("root", lab.bastion_key.private_path))
    return heartbeat_env


def inventory(dsn: str, lab: Lab, extra: list[dict] | None = None) -> dict[str, int]:
    rows = [{"name": "bastion", "host": BASTION_IP, "port": 22, "conn_id": "bastion_ssh"}]
    rows += [{"name": f"app{i}", "host": ip, "port": 22, "via": "bastion"} for i, ip in enumerate(TARGET_IPS)]
    return add_servers(dsn, rows + (extra or []))


def run_cycle(cycle_id: str, at: datetime, settings: Settings = SETTINGS) -> tuple[int, float]:
    """One cycle at ``at`` through the product code: (shards, seconds the probe tasks took)."""
    shards = cycle.load_shards(settings, cycle_id, at)
    started = time.perf_counter()
    for shard in shards:
        cycle.probe_shard(settings, cycle_id, shard.to_json(), now=lambda: at)
    took = time.perf_counter() - started
    cycle.materialise(settings, cycle_id, at)
    return len(shards), took


def accepted_logins(lab: Lab, bastion: SshdServer | None = None) -> int:
    """Accepted public-key logins of the bastion's key, from the bastion's auth log."""
    fingerprint = lab.bastion_key.fingerprint
    return sum(1 for line in (bastion or lab.bastion).log_path.read_text().splitlines()
               if "Accepted publickey" in line and fingerprint in line)


def latest(dsn: str) -> dict[str, dict]:
    rows = query(dsn, "SELECT s.name, h.last_ok, h.last_error_class, h.last_error_message FROM heartbeats h "
                      "JOIN servers s ON s.id = h.server_id")
    return {r["name"]: r for r in rows}


def test_should_log_in_to_every_target_through_one_bastion_login_per_shard_and_cycle(env, heartbeat_dsn, lab):
    inventory(heartbeat_dsn, lab)
    before = accepted_logins(lab)
    shards, _ = run_cycle("c1", T0)
    run_cycle("c2", T0 + timedelta(seconds=30))

    assert shards == 2  # bastion, app0, app1 | app2, app3: the targets of a shard share one bastion login
    rows = latest(heartbeat_dsn)
    assert all(r["last_ok"] for r in rows.values()), rows
    # Per cycle: one hop login per shard (2) and the bastion's own heartbeat (1); not one per target (5).
    assert accepted_logins(lab) - before == 2 * (shards + 1)
    status = {r["name"]: r["status"] for r in query(heartbeat_dsn, STATUS)}
    assert set(status.values()) == {"ONLINE"}
    shown = {r["server_name"]: r["via"] for r in query(heartbeat_dsn, "SELECT * FROM dashboard_server_status")}
    assert shown == {"bastion": None, **{f"app{i}": "bastion" for i in range(4)}}  # the page and the API


def test_should_not_reach_a_target_behind_the_bastion_directly(env, lab):
    [result] = probe_servers([Server(id=1, name="app0-direct", host=TARGET_IPS[0])],
                             cycle.connections.ssh_credentials(["heartbeat_ssh"]),
                             ProbeOptions(connect_timeout_s=1, probe_timeout_s=2))
    assert result.error_class == "unreachable", result


def test_should_cost_one_probe_timeout_for_silent_targets_behind_the_bastion(env, heartbeat_dsn, lab):
    inventory(heartbeat_dsn, lab, [{"name": f"silent{i}", "host": ip, "via": "bastion"}
                                   for i, ip in enumerate(SILENT_IPS)])
    _, took = run_cycle("c1", T0, Settings(probe_timeout_s=2, connect_timeout_s=1))

    rows = latest(heartbeat_dsn)
    assert [rows[f"silent{i}"]["last_error_class"] for i in range(2)] == ["timeout", "timeout"]
    assert rows["silent0"]["last_error_message"] == "no SSH banner before the probe timeout"
    assert all(rows[f"app{i}"]["last_ok"] for i in range(4))
    assert took < 2 * 2.0  # the two silent targets waited at the same time, beside the others


def test_should_report_a_changed_host_key_of_one_target_behind_the_bastion_for_it_alone(env, heartbeat_dsn, lab):
    inventory(heartbeat_dsn, lab)
    query(heartbeat_dsn, "UPDATE servers SET host_key = %s WHERE name = 'app1' RETURNING id", (OTHER_KEY,))
    run_cycle("c1", T0)

    rows = latest(heartbeat_dsn)
    assert rows["app1"]["last_error_class"] == "host_key_changed"
    assert {name for name, r in rows.items() if not r["last_ok"]} == {"app1"}
    [alert] = query(heartbeat_dsn, "SELECT s.name FROM alerts a JOIN servers s ON s.id = a.server_id "
                                   "WHERE a.kind = 'host_key_changed'")
    assert alert["name"] == "app1"


def test_should_say_so_when_the_bastion_refuses_to_forward_to_a_server(env, heartbeat_dsn, lab):
    inventory(heartbeat_dsn, lab, [{"name": "unlisted", "host": NOT_PERMITTED_IP, "via": "bastion"}])
    run_cycle("c1", T0)

    row = latest(heartbeat_dsn)["unlisted"]
    assert row["last_error_class"] == "forwarding_refused"
    assert row["last_error_message"].startswith(f"bastion refused to forward to {NOT_PERMITTED_IP}:22")
    assert "authorized-line --bastion" in row["last_error_message"]
    assert all(latest(heartbeat_dsn)[f"app{i}"]["last_ok"] for i in range(4))


def test_should_print_a_bastion_line_that_forwards_to_its_servers_and_opens_no_shell(
        env, heartbeat_dsn, lab, capsys, tmp_path: Path):
    inventory(heartbeat_dsn, lab)
    assert cli.main(["keys", "authorized-line", "--bastion", "bastion"]) == 0
    line = capsys.readouterr().out.strip()
    opens = ",".join(f'permitopen="{ip}:22"' for ip in TARGET_IPS)
    assert line == (f'restrict,port-forwarding,{opens},command="/bin/false" '
                    f'{lab.bastion_key.public_line.split()[0]} {lab.bastion_key.public_line.split()[1]} '
                    "heartbeat-monitor")
    # The bastion's own line is the same kind (with the silent peers' addresses as well): with the
    # key, a session runs nothing, a shell gets nothing, and only forwarding works.
    result = subprocess.run(
        ["ssh", "-i", str(lab.bastion_key.private_path), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", f"UserKnownHostsFile={tmp_path / 'kh'}", "-o", "ConnectTimeout=3", "-tt", f"root@{BASTION_IP}",
         "echo", "shell-opened"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "shell-opened" not in result.stdout
    assert "PTY allocation request failed" in result.stderr


def test_should_record_the_cause_on_every_server_behind_a_stopped_bastion_and_notify_once(env, heartbeat_dsn, lab):
    ids = inventory(heartbeat_dsn, lab)
    sent: list[notify.Notification] = []

    class Recorder:  # the delivery under test is the ledger and what is due; the channel only records
        name = "recorder"

        def send(self, notification: notify.Notification) -> None:
            sent.append(notification)

    settings = notify.NotifySettings(notify_after_s=30, repeat_after_s=60)
    run_cycle("c1", T0)
    lab.bastion.stop()
    try:
        for n in range(1, 5):  # two minutes without the bastion
            run_cycle(f"d{n}", T0 + timedelta(seconds=30 * n))
        rows = latest(heartbeat_dsn)
        for i in range(4):
            assert rows[f"app{i}"]["last_error_class"] == "path_down"
            assert rows[f"app{i}"]["last_error_message"] == "unreachable via bastion: bastion refused the connection"
        assert rows["bastion"]["last_error_class"] == "refused"
        status = {r["name"]: r for r in query(heartbeat_dsn, STATUS)}
        assert {status[f"app{i}"]["status"] for i in range(4)} == {"OFFLINE"}
        assert status["app0"]["reason"] == "no heartbeat for over 60 s; last attempt: unreachable via its bastion"

        with store.connect(heartbeat_dsn) as conn:
            counts = notify.notify_changes(conn, [Recorder()], settings, T0 + timedelta(seconds=125))
            again = notify.notify_changes(conn, [Recorder()], settings, T0 + timedelta(seconds=150))
        assert (counts["sent"], again["sent"]) == (1, 0)
        [page] = sent
        assert (page.kind, page.details["dimension"], page.server_name) == ("incident", "bastion", "bastion")
        assert "4 servers behind it" in page.title
        assert "bastion refused the connection" in page.text
    finally:
        lab.bastion.start()
    run_cycle("e1", T0 + timedelta(seconds=150))
    assert all(r["last_ok"] for r in latest(heartbeat_dsn).values())
    with store.connect(heartbeat_dsn) as conn:
        counts = notify.notify_changes(conn, [Recorder()], settings, T0 + timedelta(seconds=155))
        again = notify.notify_changes(conn, [Recorder()], settings, T0 + timedelta(seconds=180))
    run_cycle("e2", T0 + timedelta(seconds=210))
    with store.connect(heartbeat_dsn) as conn:  # a reminder of the path outage would be due by now
        later = notify.notify_changes(conn, [Recorder()], settings, T0 + timedelta(seconds=240))
    # "restored", once; no server told one by one, and no reminder of an outage that is over
    assert (counts["sent"], again["sent"], later["sent"]) == (1, 0, 0), [(n.kind, n.subject, n.title) for n in sent]
    restored = sent[-1]
    assert (restored.kind, restored.server_name, restored.resolves) == ("incident_resolved", "bastion", True)
    assert restored.dedup_key == page.dedup_key
    assert "4 servers behind it" in restored.title
    [outage] = query(heartbeat_dsn, "SELECT bastion_id, started_at, ended_at FROM path_outages")
    assert (outage["bastion_id"], outage["started_at"], outage["ended_at"]) == (
        ids["bastion"], T0 + timedelta(seconds=30), T0 + timedelta(seconds=150))
    # Uptime leaves the path's outage out: app0 was up for all the time it was observed.
    [uptime] = query(heartbeat_dsn, "SELECT * FROM heartbeat_uptime(%s, %s) WHERE server_name = 'app0'",
                     (T0, T0 + timedelta(seconds=180)))
    assert uptime["path_down_s"] == 120
    assert uptime["uptime_pct"] == 100.0


def test_should_refuse_bad_bastion_paths_at_input_naming_the_servers(env, heartbeat_dsn):
    add_servers(heartbeat_dsn, [{"name": "b1", "host": "10.117.9.1"}, {"name": "off", "host": "10.117.9.2",
                                                                          "enabled": False}])
    cases = [
        (["a", "10.117.9.3", "--via", "a"], "via names the server itself ('a')"),
        (["a", "10.117.9.3", "--via", "nowhere"], "a: via names 'nowhere', which is not in the inventory"),
        (["a", "10.117.9.3", "--via", "off"], "a: via names 'off', which is disabled"),
    ]
    for argv, expected in cases:
        with pytest.raises(cli.CommandError, match=re.escape(expected)):
            cli.cmd_servers_add(cli.build_parser().parse_args(["servers", "add", *argv]))
    for name, via in (("b2", "b1"), ("b3", "b2"), ("b4", "b3")):
        add_servers(heartbeat_dsn, [{"name": name, "host": "10.117.9.9", "via": via}])
    too_long = "a: via chain has more than 3 hops: a -> b4 -> b3 -> b2 -> b1"
    with pytest.raises(cli.CommandError, match=re.escape(too_long)):
        cli.cmd_servers_add(cli.build_parser().parse_args(["servers", "add", "a", "10.117.9.3", "--via", "b4"]))
    with store.connect(heartbeat_dsn) as conn, pytest.raises(InventoryError, match=re.escape(
            "b1: via makes a cycle: b1 -> b2 -> b1")):
        store.upsert_servers(conn, [validate_server({"name": "b1", "host": "10.117.9.1", "via": "b2"})])
    with pytest.raises(cli.CommandError, match=re.escape("b1 is the bastion of b2")):
        cli.cmd_servers_remove(cli.build_parser().parse_args(["servers", "remove", "b1"]))
    with pytest.raises(cli.CommandError, match=re.escape("b2: via names 'b1', which is disabled")):
        cli.cmd_servers_enable(cli.build_parser().parse_args(["servers", "disable", "b1"]), False)



def test_should_print_the_path_and_every_phase_when_probing_a_server_behind_the_bastion(
        env, heartbeat_dsn, lab, capsys):
    inventory(heartbeat_dsn, lab)
    assert cli.main(["probe", "--verbose", "--server", "app0"]) == 0
    out = capsys.readouterr().out
    assert f"connecting to app0 ({TARGET_IPS[0]}:22) via bastion ({BASTION_IP}:22)" in out
    assert re.search(r"bastion bastion: logged in in [0-9.]+ ms", out), out
    assert re.search(r"app0: ok in [0-9.]+ ms \(channel [0-9.]+, handshake [0-9.]+, auth [0-9.]+\) SSH-2.0-OpenSSH",
                     out), out


def test_should_reach_a_server_through_a_chain_of_two_bastions(env, heartbeat_dsn, lab):
    inventory(heartbeat_dsn, lab, [
        {"name": "inner", "host": INNER_BASTION_IP, "conn_id": "bastion_ssh", "via": "bastion"},
        {"name": "deep", "host": TARGET_IPS[3], "via": "inner"}])
    outer, inner = accepted_logins(lab), accepted_logins(lab, lab.inner)
    run_cycle("c1", T0, Settings(probe_timeout_s=2, connect_timeout_s=1))

    rows = latest(heartbeat_dsn)
    assert all(r["last_ok"] for r in rows.values()), rows
    # One shard: the outer bastion logs in the hop and its own heartbeat; the inner one (reached
    # through the outer) the hop for "deep" and its own heartbeat, both through one tunnel.
    assert (accepted_logins(lab) - outer, accepted_logins(lab, lab.inner) - inner) == (2, 2)


def test_should_import_a_server_listed_before_its_bastion_in_one_file(env, heartbeat_dsn, tmp_path: Path, capsys):
    path = tmp_path / "servers.yaml"
    path.write_text("servers:\n  - {name: db-1, host: 10.117.9.11, via: jump}\n  - {name: jump, host: 10.117.9.1}\n")
    assert cli.main(["servers", "import", str(path)]) == 0
    assert cli.main(["servers", "list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"^db-1 .* jump\s*$", listing, re.M), listing
    path.write_text("servers:\n  - {name: jump, host: 10.117.9.1, via: db-1}\n")
    with pytest.raises(cli.CommandError, match=re.escape("jump: via makes a cycle: jump -> db-1 -> jump")):
        cli.cmd_servers_import(cli.build_parser().parse_args(["servers", "import", str(path)]))
