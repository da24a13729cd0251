"""The monitor's key can be made harmless on the servers: with the line that
``heartbeat keys authorized-line`` prints, the key still gives heartbeats but cannot open a
shell, run another command or forward anything. Proved against a real sshd."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest

from heartbeat.models import Server
from heartbeat.probe import ProbeOptions, probe_servers
from heartbeat.ssh import ClientCredentials, load_client_key
from heartbeat_lab import KeyPair, SshdServer, free_port

pytestmark = pytest.mark.integration

HEARTBEAT = str(Path(sys.executable).with_name("heartbeat"))


@pytest.fixture
def authorized_line(heartbeat_env, client_key: KeyPair) -> str:
    proc = subprocess.run([HEARTBEAT, "keys", "authorized-line"], capture_output=True, text=True, timeout=60,
                          env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_should_print_a_restricted_authorized_keys_line(authorized_line: str, client_key: KeyPair):
    assert authorized_line == f'restrict,command="/bin/true" {client_key.public_line.split(" ")[0]} ' \
                              f'{client_key.public_line.split(" ")[1]} heartbeat-monitor'
    assert "PRIVATE" not in authorized_line


def test_should_heartbeat_with_a_restricted_key_that_can_do_nothing_else(
        tmp_path: Path, client_key: KeyPair, authorized_line: str):
    with SshdServer(tmp_path / "restricted", authorized_keys=[authorized_line],
                    extra_config={"AllowTcpForwarding": "yes"}) as sshd:
        key = load_client_key("heartbeat_ssh", None, str(client_key.private_path), None)
        [result] = probe_servers([Server(1, "r", sshd.host, sshd.port)],
                                 {"heartbeat_ssh": ClientCredentials("heartbeat_ssh", "root", key)},
                                 ProbeOptions(connect_timeout_s=2, probe_timeout_s=5))
        assert result.ok, result.message

        async def misuse() -> dict[str, object]:
            outcome: dict[str, object] = {}
            async with asyncssh.connect(sshd.host, sshd.port, username="root",
                                        client_keys=[asyncssh.read_private_key(client_key.private_path)],
                                        known_hosts=None, config=None, agent_path=None) as conn:
                ran = await conn.run("id; echo pwned > /tmp/heartbeat-restricted-test", check=False)
                outcome["stdout"] = ran.stdout
                try:
                    await conn.forward_local_port("127.0.0.1", free_port(), sshd.host, sshd.port)
                    listener = await conn.forward_local_port("127.0.0.1", 0, sshd.host, sshd.port)
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", listener.get_port()), 5)
                    outcome["forward_data"] = await asyncio.wait_for(reader.read(100), 5)
                    writer.close()
                except (asyncssh.ChannelOpenError, OSError, TimeoutError) as exc:
                    outcome["forward_error"] = type(exc).__name__
                try:
                    await conn.create_connection(asyncssh.SSHTCPSession, sshd.host, sshd.port)
                    outcome["direct_tcpip"] = "opened"
                except asyncssh.ChannelOpenError as exc:
                    outcome["direct_tcpip"] = exc.reason
            return outcome

        outcome = asyncio.run(misuse())
    assert outcome["stdout"] == ""  # the forced /bin/true ran instead of the command
    assert not Path("/tmp/heartbeat-restricted-test").exists()
    assert outcome.get("forward_data", b"") == b""  # the forwarded port never reached sshd's banner
    assert outcome["direct_tcpip"] != "opened"
