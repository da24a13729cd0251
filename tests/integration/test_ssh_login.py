"""The SSH login client against real OpenSSH sshd, restricted to one algorithm at a time, and
against peers that speak broken or hostile SSH. sshd's own debug log says what was agreed."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
import uvloop
from support import probe_target, ssh_creds

from heartbeat.probe import ProbeOptions, probe_servers
from heartbeat.ssh import (
    CIPHERS,
    KEX_METHODS,
    PREFERRED_HOST_KEY_ALGS,
    Connection,
    HostKeyVerdict,
    LoginProgress,
    Offer,
    load_client_key,
    login,
)
from heartbeat.ssh.login import MAX_BUFFERED_BYTES, MAX_SKIPPED_BYTES, MSG_DISCONNECT, MSG_IGNORE, MSG_KEXINIT
from heartbeat.ssh.wire import PlainCipher, name_list, string, uint32
from heartbeat_lab import KeyPair, SshdServer, generate_keypair
from heartbeat_lab.peers import TcpPeer

pytestmark = pytest.mark.integration

FAST = ProbeOptions(connect_timeout_s=2.0, probe_timeout_s=3.0, concurrency=4)
OPENSSH_BANNER = b"SSH-2.0-OpenSSH_9.2\r\n"


def probe_one(sshd: SshdServer | ScriptedPeer, key: KeyPair, host_key: str | None = None):
    [result] = probe_servers([probe_target(1, sshd.host, sshd.port, host_key)], ssh_creds(key), FAST)
    return result


def log_once_it_says(sshd: SshdServer, text: str, timeout_s: float = 3.0) -> str:
    """sshd's log once ``text`` is in it (its session process writes after the client is gone)."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = sshd.log_path.read_text()
        if text in log or time.monotonic() > deadline:
            return log
        time.sleep(0.02)


def restricted(tmp_path: Path, name: str, key: KeyPair, *, host_key_type: str = "ed25519", **config: str
               ) -> SshdServer:
    return SshdServer(tmp_path / name, authorized_keys=[key.public_line], host_key_type=host_key_type,
                      extra_config={"LogLevel": "DEBUG3", **config})


@pytest.mark.parametrize(("cipher", "mac"), [
    ("aes128-gcm@openssh.com", None),
    ("aes256-gcm@openssh.com", None),
    ("chacha20-poly1305@openssh.com", None),
    ("aes128-ctr", "hmac-sha2-256-etm@openssh.com"),
    ("aes192-ctr", "hmac-sha2-256"),
    ("aes256-ctr", "hmac-sha2-512"),
    ("aes128-ctr", "hmac-sha2-512-etm@openssh.com"),
])
def test_should_log_in_with_each_cipher(client_key: KeyPair, tmp_path: Path, cipher: str, mac: str | None):
    config = {"Ciphers": cipher} | ({"MACs": mac} if mac else {})
    with restricted(tmp_path, "sshd", client_key, **config) as sshd:
        result = probe_one(sshd, client_key)
        log = log_once_it_says(sshd, "heartbeat done")
    assert result.ok, result.message
    assert f"client->server cipher: {cipher} MAC: {mac or '<implicit>'}" in log
    assert "Received disconnect from" in log and "heartbeat done" in log  # a clean goodbye, not a reset


def test_should_offer_every_cipher_it_implements():
    assert set(CIPHERS) >= {"aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-ctr"}


@pytest.mark.parametrize("kex_alg", list(KEX_METHODS))
def test_should_log_in_with_each_key_exchange(client_key: KeyPair, tmp_path: Path, kex_alg: str):
    with restricted(tmp_path, "sshd", client_key, KexAlgorithms=kex_alg) as sshd:
        result = probe_one(sshd, client_key)
        log = sshd.log_path.read_text()
    assert result.ok, result.message
    assert f"kex: algorithm: {kex_alg}" in log


@pytest.mark.parametrize(("host_key_type", "agreed"), [
    ("ed25519", "ssh-ed25519"), ("ecdsa", "ecdsa-sha2-nistp256"), ("rsa", "rsa-sha2-512"),
])
def test_should_verify_each_host_key_type_and_match_the_pin(client_key: KeyPair, tmp_path: Path,
                                                            host_key_type: str, agreed: str):
    with restricted(tmp_path, "sshd", client_key, host_key_type=host_key_type) as sshd:
        pinned = probe_one(sshd, client_key, host_key=sshd.host_key_public_line)
        log = sshd.log_path.read_text()
        other = generate_keypair(tmp_path / "other", host_key_type)
        changed = probe_one(sshd, client_key, host_key=other.public_line)
    assert pinned.ok, pinned.message
    assert pinned.host_key_fingerprint == sshd.host_key_fingerprint
    assert f"kex: host key algorithm: {agreed}" in log
    assert (changed.ok, changed.error_class) == (False, "host_key_changed"), changed.message


@pytest.mark.parametrize(("key_type", "signature_alg"), [
    ("ed25519", "ssh-ed25519"), ("ecdsa", "ecdsa-sha2-nistp256"), ("rsa", "rsa-sha2-512"),
])
def test_should_sign_with_each_client_key_type(tmp_path: Path, key_type: str, signature_alg: str):
    key = generate_keypair(tmp_path / f"id_{key_type}", key_type)
    with restricted(tmp_path, "sshd", key) as sshd:
        result = probe_one(sshd, key)
        log = log_once_it_says(sshd, "heartbeat done")
    assert result.ok, result.message
    assert f"authenticated 1 pkalg {signature_alg}" in log
    assert log.count("userauth-request for user root") == 1  # no 'none' attempt, no key query first


def test_should_say_when_the_key_is_accepted_but_more_is_required(client_key: KeyPair, tmp_path: Path):
    with restricted(tmp_path, "sshd", client_key, AuthenticationMethods="publickey,keyboard-interactive",
                    KbdInteractiveAuthentication="yes") as sshd:
        result = probe_one(sshd, client_key)
    assert (result.ok, result.error_class) == (False, "auth"), result.message
    assert "the key was accepted but the server requires more authentication (keyboard-interactive" in result.message


def test_should_use_strict_key_exchange_with_a_server_that_offers_it(client_key: KeyPair, tmp_path: Path):
    """OpenSSH 9.2 as Debian ships it offers kex-strict-s-v00 (the Terrapin countermeasure)."""
    with restricted(tmp_path, "sshd", client_key) as sshd:
        progress = asyncio.run(_login_directly(sshd.host, sshd.port, client_key))
    assert progress.strict_kex
    assert progress.auth_done is not None and progress.host_key == sshd.host_key_public_line


async def _login_directly(host: str, port: int, key: KeyPair) -> LoginProgress:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Connection, host, port)
    try:
        progress = LoginProgress()
        offer = Offer(kex_algs=tuple(KEX_METHODS), host_key_algs=PREFERRED_HOST_KEY_ALGS)
        client_key = load_client_key("c", None, str(key.private_path), None)
        async with asyncio.timeout(5):
            await login(conn, "root", client_key, offer, lambda _: HostKeyVerdict(accept=True), progress)
        return progress
    finally:
        conn.close()


class ScriptedPeer(TcpPeer):
    """Sends a fixed script of bytes (a banner, then hand-made packets), then waits."""

    def __init__(self, script: bytes) -> None:
        super().__init__()
        self.script = script

    def handle(self, conn: socket.socket, deadline: float) -> None:
        if self.send(conn, self.script):
            self.hold(conn, deadline)


def packet(payload: bytes) -> bytes:
    return PlainCipher().seal(0, payload)


def server_kexinit(kex_algs: str) -> bytes:
    return packet(b"".join((
        bytes((MSG_KEXINIT,)), bytes(16), name_list(kex_algs.split(",")), name_list(["ssh-ed25519"]),
        *(name_list(["aes128-gcm@openssh.com"]),) * 2, *(name_list(["hmac-sha2-256"]),) * 2,
        *(name_list(["none"]),) * 2, name_list([]), name_list([]), b"\x00", uint32(0),
    )))


@pytest.mark.parametrize(("script", "error_class", "words"), [
    (OPENSSH_BANNER + uint32(0x7FFFFFF0) + b"\x04" + bytes(64), "kex", "out of bounds"),
    (OPENSSH_BANNER + packet(bytes((MSG_IGNORE,)) + string(bytes(60_000))) * (MAX_SKIPPED_BYTES // 60_000 + 1),
     "kex", "more than 256 KiB of messages without an answer"),
    (OPENSSH_BANNER + packet(bytes((MSG_DISCONNECT,)) + uint32(2) + string(b"go away") + string(b"")),
     "kex", "the server disconnected (code 2): go away"),
    (OPENSSH_BANNER + server_kexinit("diffie-hellman-group1-sha1"), "kex",
     "no common key exchange algorithm; the server offers diffie-hellman-group1-sha1"),
    (b"SSH-1.5-OpenSSH_1\r\n", "banner", "unsupported SSH protocol: SSH-1.5-OpenSSH_1"),
    (OPENSSH_BANNER + packet(bytes((MSG_KEXINIT,)) + bytes(16) + uint32(1 << 30)), "kex", "longer than its message"),
], ids=["huge packet length", "ignore flood", "disconnect", "only SHA-1 DH", "SSH-1", "field overrun"])
def test_should_end_broken_ssh_with_a_clear_error_well_before_the_timeout(client_key: KeyPair, script: bytes,
                                                                          error_class: str, words: str):
    with ScriptedPeer(script) as peer:
        started = time.monotonic()
        result = probe_one(peer, client_key)
        elapsed = time.monotonic() - started
    assert (result.ok, result.error_class) == (False, error_class), result.message
    assert words in result.message
    assert elapsed < 1.0


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def test_should_stop_reading_a_flooding_server_until_the_login_has_used_what_it_read(loop_factory):
    """A server may send faster than the login reads: beyond MAX_BUFFERED_BYTES unread the
    connection stops reading (the kernel's window holds the rest), and goes on when asked for more."""
    sent_bytes = 8 * MAX_BUFFERED_BYTES
    chunk = b"x" * 65536

    async def flood() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        _, conn = await loop.create_connection(Connection, sock=ours)
        pushed = consumed = 0

        def push() -> bool:
            nonlocal pushed
            try:
                pushed += theirs.send(chunk[: sent_bytes - pushed])
                return True
            except BlockingIOError:
                return False  # the kernel's buffers are full

        try:
            stalled = 0
            for _ in range(10_000):  # the login reads nothing: the flood stalls once the buffer is full
                stalled = 0 if push() else stalled + 1
                await asyncio.sleep(0)
                if stalled >= 50:
                    break
            held_while_stalled = len(conn.buffer)
            pushed_while_stalled = pushed
            for _ in range(10_000):  # the login reads it all, asking for more each time
                consumed += len(conn.buffer)
                del conn.buffer[:]
                if consumed == sent_bytes:
                    break
                push()
                async with asyncio.timeout(5):
                    await conn.receive()
            return pushed_while_stalled, held_while_stalled, consumed
        finally:
            conn.abort()
            theirs.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        pushed_while_stalled, held_while_stalled, consumed = runner.run(flood())
    assert pushed_while_stalled < sent_bytes // 2, "the connection stopped reading"
    assert MAX_BUFFERED_BYTES <= held_while_stalled <= MAX_BUFFERED_BYTES + len(chunk) * 4
    assert consumed == sent_bytes, "and read again once the login asked for more"
