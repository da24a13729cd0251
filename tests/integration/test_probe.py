"""The probe against real OpenSSH sshd and misbehaving peers on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import probe_target as server
from support import ssh_creds as creds

from heartbeat.config import HostKeyPolicy
from heartbeat.models import Server
from heartbeat.probe import ProbeOptions, probe_servers
from heartbeat.ssh import CredentialsError, load_client_key
from heartbeat_lab import (
    BannerPeer,
    CloseAfterBannerPeer,
    DripBannerPeer,
    HangUpPeer,
    KeyPair,
    SilentPeer,
    SshdFleet,
    SshdServer,
    refused_port,
)

pytestmark = pytest.mark.integration

FAST = ProbeOptions(connect_timeout_s=2.0, probe_timeout_s=3.0, concurrency=8)


def test_should_log_in_and_time_each_phase(fleet: SshdFleet, client_key: KeyPair):
    target = fleet.servers[0]
    [result] = probe_servers([server(1, target.host, target.port)], creds(client_key), FAST)
    assert result.ok, result.message
    assert result.error_class is None
    assert result.banner and result.banner.startswith("SSH-2.0-OpenSSH")
    assert result.host_key == target.host_key_public_line
    assert result.host_key_fingerprint == target.host_key_fingerprint
    assert all(v is not None and v >= 0 for v in (result.tcp_connect_ms, result.ssh_handshake_ms, result.auth_ms))
    assert result.total_ms >= result.tcp_connect_ms + result.ssh_handshake_ms + result.auth_ms - 0.01


def test_should_accept_a_pinned_key_that_matches(fleet: SshdFleet, client_key: KeyPair):
    target = fleet.servers[1]
    [result] = probe_servers([server(1, target.host, target.port, target.host_key_public_line)],
                             creds(client_key), FAST)
    assert result.ok, result.message


def test_should_fail_changed_host_key_naming_both_fingerprints(fleet: SshdFleet, client_key: KeyPair):
    target, other = fleet.servers[0], fleet.servers[1]
    [result] = probe_servers([server(1, target.host, target.port, other.host_key_public_line)],
                             creds(client_key), FAST)
    assert (result.ok, result.error_class) == (False, "host_key_changed")
    assert target.host_key_fingerprint in result.message and other.host_key_fingerprint in result.message
    assert result.auth_ms is None  # rejected before authenticating to the impostor


def test_should_require_a_known_key_in_strict_mode(fleet: SshdFleet, client_key: KeyPair, tmp_path: Path):
    target = fleet.servers[0]
    strict = ProbeOptions(connect_timeout_s=2, probe_timeout_s=3, host_key_policy=HostKeyPolicy.STRICT)
    [unknown] = probe_servers([server(1, target.host, target.port)], creds(client_key), strict)
    assert unknown.error_class == "host_key_unknown"
    known = ProbeOptions(connect_timeout_s=2, probe_timeout_s=3, host_key_policy=HostKeyPolicy.STRICT,
                         known_hosts_lines=(f"[{target.host}]:{target.port} {target.host_key_public_line}",))
    [ok] = probe_servers([server(1, target.host, target.port)], creds(client_key), known)
    assert ok.ok, ok.message


def test_should_fail_auth_with_a_key_the_server_does_not_accept(fleet: SshdFleet, other_key: KeyPair):
    target = fleet.servers[0]
    [result] = probe_servers([server(1, target.host, target.port)], creds(other_key), FAST)
    assert (result.ok, result.error_class) == (False, "auth")
    assert result.host_key == target.host_key_public_line  # key exchange finished, then auth failed


def test_should_fail_only_that_server_when_its_connection_has_no_credentials(client_key: KeyPair):
    credentials = creds(client_key) | {"broken": CredentialsError("broken", "connection 'broken' is not defined")}
    results = probe_servers([Server(1, "a", "127.0.0.1", refused_port(), conn_id="broken"),
                             Server(2, "b", "127.0.0.1", refused_port(), conn_id="missing")], credentials, FAST)
    assert [(r.error_class, r.message) for r in results] == [
        ("other", "connection 'broken' is not defined"),
        ("other", "no credentials loaded for connection 'missing'"),
    ]


def test_should_classify_refused_connection(client_key: KeyPair):
    [result] = probe_servers([server(1, "127.0.0.1", refused_port())], creds(client_key), FAST)
    assert (result.ok, result.error_class) == (False, "refused")


@pytest.mark.parametrize(("peer_factory", "error_class", "words"), [
    (lambda: SilentPeer(), "timeout", "no SSH banner"),
    (lambda: BannerPeer(b"HTTP/1.1 400 Bad Request\r\n\r\n"), "banner", "not an SSH server"),
    (lambda: BannerPeer(b"\x00\xff" * 4096), "banner", "not an SSH server"),
    (lambda: BannerPeer(b"SSH-2.0-" + b"x" * 1_000_000), "banner", "longer than 255"),
    (lambda: DripBannerPeer(b"SSH-2.0-OpenSSH_9.2\r\n", 1.0), "timeout", "no SSH banner"),
    (lambda: CloseAfterBannerPeer(), "kex", "key exchange"),
    (lambda: CloseAfterBannerPeer(reset=True), "kex", "connection closed during key exchange: [Errno 104]"),
    (lambda: HangUpPeer(), "banner", "server closed the connection without an SSH banner"),
    (lambda: HangUpPeer(reset=True), "banner", "connection reset before the SSH banner: Connection reset by peer"),
], ids=["silent", "http", "binary", "1 MB banner", "dripped banner", "closes mid-kex", "resets mid-kex",
        "hangs up", "resets at once"])
def test_should_end_hostile_peers_with_their_own_class_within_timeout(client_key, peer_factory, error_class, words):
    with peer_factory() as peer:
        started = time.monotonic()
        [result] = probe_servers([server(1, peer.host, peer.port)], creds(client_key), FAST)
        elapsed = time.monotonic() - started
    assert (result.ok, result.error_class) == (False, error_class), result.message
    assert words in result.message
    assert elapsed < FAST.probe_timeout_s + 1.0


def test_should_not_let_silent_hosts_delay_the_others(fleet: SshdFleet, client_key: KeyPair):
    """Ten silent hosts and the fleet in one batch, two login slots: the batch takes one
    timeout, not one per silent host, and healthy logins are not held up."""
    options = ProbeOptions(connect_timeout_s=2, probe_timeout_s=3, concurrency=2)
    peers = [SilentPeer() for _ in range(10)]
    for peer in peers:
        peer.start()
    try:
        targets = [server(i, p.host, p.port) for i, p in enumerate(peers)]
        targets += [server(100 + i, s.host, s.port) for i, s in enumerate(fleet.servers)]
        started = time.monotonic()
        results = probe_servers(targets, creds(client_key), options)
        elapsed = time.monotonic() - started
    finally:
        for peer in peers:
            peer.stop()
    assert [r.error_class for r in results[:10]] == ["timeout"] * 10
    assert all(r.ok for r in results[10:]), [r.message for r in results[10:]]
    assert elapsed < options.probe_timeout_s + 1.5
    assert max(r.total_ms for r in results[10:]) < 2000


def test_should_probe_ipv6_loopback(tmp_path: Path, client_key: KeyPair):
    with SshdServer(tmp_path / "v6", listen_host="::1", authorized_keys=[client_key.public_line]) as sshd:
        [result] = probe_servers([server(1, "::1", sshd.port)], creds(client_key), FAST)
    assert result.ok, result.message


def test_should_refuse_a_key_file_readable_by_others(tmp_path: Path, client_key: KeyPair):
    loose = tmp_path / "loose_key"
    loose.write_bytes(client_key.private_path.read_bytes())
    loose.chmod(0o644)
    with pytest.raises(ValueError, match="readable by others") as err:
        load_client_key("heartbeat_ssh", None, str(loose), None)
    assert "PRIVATE KEY" not in str(err.value)


def test_should_agree_on_p256_by_default_and_fall_back_to_what_the_server_offers(client_key: KeyPair,
                                                                                  tmp_path: Path):
    for offered in ("ecdh-sha2-nistp256", "curve25519-sha256", "diffie-hellman-group14-sha256"):
        with SshdServer(tmp_path / offered, authorized_keys=[client_key.public_line],
                        extra_config={"KexAlgorithms": offered, "LogLevel": "DEBUG1"}) as sshd:
            [result] = probe_servers([server(1, sshd.host, sshd.port)], creds(client_key), FAST)
            assert result.ok, (offered, result.message)
            assert f"kex: algorithm: {offered}" in sshd.log_path.read_text()


def test_should_offer_only_the_configured_key_exchange(fleet: SshdFleet, client_key: KeyPair, tmp_path: Path):
    only_x25519 = ProbeOptions(connect_timeout_s=2, probe_timeout_s=3, kex_algs=("curve25519-sha256",))
    with SshdServer(tmp_path / "p256-only", authorized_keys=[client_key.public_line],
                    extra_config={"KexAlgorithms": "ecdh-sha2-nistp256", "LogLevel": "DEBUG1"}) as sshd:
        [result] = probe_servers([server(1, sshd.host, sshd.port)], creds(client_key), only_x25519)
    assert (result.ok, result.error_class) == (False, "kex"), result.message
    target = fleet.servers[0]
    [result] = probe_servers([server(2, target.host, target.port)], creds(client_key), only_x25519)
    assert result.ok, result.message
