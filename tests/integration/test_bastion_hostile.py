"""The bastion hop against a hostile bastion on 127.0.0.1: an SSH server (asyncssh's, run in a
thread) that accepts the monitor's key but closes every channel as soon as it opens it, or
presents a host key other than the pinned one. The real OpenSSH bastion is in test_bastion.py;
OpenSSH cannot be made to misbehave like this, hence this peer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest
from support import ssh_creds

from heartbeat.models import Server
from heartbeat.probe import ProbeOptions, probe_servers_and_hops
from heartbeat_lab import KeyPair

pytestmark = pytest.mark.integration

OPTIONS = ProbeOptions(connect_timeout_s=2, probe_timeout_s=3)


class _CloseAtOnce(asyncssh.SSHTCPSession):  # type: ignore[misc]
    def connection_made(self, chan: Any) -> None:
        chan.close()


class _Server(asyncssh.SSHServer):  # type: ignore[misc]
    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        return _CloseAtOnce()


class HostileBastion:
    """An SSH server in its own thread and event loop: logins with ``client_key`` work, every
    ``direct-tcpip`` channel is accepted and closed at once."""

    def __init__(self, client_key: KeyPair) -> None:
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key_line = self.host_key.export_public_key("openssh").decode().strip()
        self._authorized = asyncssh.import_authorized_keys(client_key.public_line + "\n")
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncssh.create_server(
            _Server, "127.0.0.1", 0, server_host_keys=[self.host_key], authorized_client_keys=self._authorized))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> HostileBastion:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture(scope="module")
def hostile(client_key: KeyPair) -> Iterator[HostileBastion]:
    with HostileBastion(client_key) as bastion:
        yield bastion


def behind(bastion: Server, count: int) -> list[Server]:
    return [Server(id=10 + i, name=f"t{i}", host=f"10.117.200.{i + 1}", via=bastion.name, path=(bastion,))
            for i in range(count)]


def test_should_fail_each_target_with_a_clear_error_when_the_bastion_closes_its_channels(hostile, client_key):
    bastion = Server(id=1, name="hostile", host="127.0.0.1", port=hostile.port, host_key=hostile.host_key_line)
    started = time.perf_counter()
    results, hops = probe_servers_and_hops(behind(bastion, 3), ssh_creds(client_key), OPTIONS)

    assert time.perf_counter() - started < OPTIONS.probe_timeout_s  # no probe waited for its timeout
    assert [(h.bastion_name, h.ok) for h in hops] == [("hostile", True)]  # one login for the three
    for result in results:
        assert (result.ok, result.error_class) == (False, "banner")
        assert "the channel through the bastion was closed" in result.message or \
            "the bastion closed the channel" in result.message, result.message


def test_should_refuse_a_bastion_whose_host_key_is_not_the_pinned_one_for_every_server_behind_it(
        hostile, client_key):
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()
    bastion = Server(id=1, name="hostile", host="127.0.0.1", port=hostile.port, host_key=other)
    results, hops = probe_servers_and_hops(behind(bastion, 2), ssh_creds(client_key), OPTIONS)

    [hop] = hops
    assert (hop.ok, hop.error_class) == (False, "host_key_changed")
    assert hop.message.startswith("bastion host key changed: host key changed: expected SHA256:")
    assert {(r.error_class, r.message) for r in results} == {
        ("path_down", "unreachable via hostile: bastion host key changed")}
    assert all(r.host_key is None for r in results)  # nothing was said to or heard from the targets


def test_should_time_out_a_bastion_that_never_answers_once_for_all_its_servers(client_key):
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        bastion = Server(id=1, name="mute", host="127.0.0.1", port=silent.getsockname()[1])
        started = time.perf_counter()
        results, hops = probe_servers_and_hops(behind(bastion, 3), ssh_creds(client_key),
                                               ProbeOptions(connect_timeout_s=0.5, probe_timeout_s=1))
    took = time.perf_counter() - started
    assert [(h.ok, h.error_class) for h in hops] == [(False, "timeout")]
    assert {r.message for r in results} == {"unreachable via mute: bastion timed out"}
    assert took < 2 * 1.5  # one bastion timeout for the three servers, not three
