"""Rules of the login client that only a real peer shows: OpenSSH sshd with several host keys,
sshd behind a proxy that shows a notice before its version line, and asyncssh servers that
complete a real key exchange and break one rule on the way (heartbeat_lab.peers)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from support import probe_target, ssh_creds

from heartbeat.probe import ProbeOptions, probe_servers
from heartbeat_lab import KeyPair, SshdServer
from heartbeat_lab.peers import BannerLinesProxy, SshServerPeer, drop_from, present_host_key, send_before

pytestmark = pytest.mark.integration

FAST = ProbeOptions(connect_timeout_s=2.0, probe_timeout_s=3.0)
MSG_IGNORE, MSG_SERVICE_ACCEPT, MSG_KEXINIT, MSG_NEWKEYS = 2, 6, 20, 21


def probe(host: str, port: int, key: KeyPair, host_key: str | None = None, options: ProbeOptions = FAST):
    [result] = probe_servers([probe_target(1, host, port, host_key)], ssh_creds(key), options)
    return result


def ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


@pytest.fixture(scope="module")
def stock_sshd(tmp_path_factory: pytest.TempPathFactory, client_key: KeyPair) -> Iterator[SshdServer]:
    """An sshd with the three host keys a stock install generates."""
    with SshdServer(tmp_path_factory.mktemp("stock"), authorized_keys=[client_key.public_line],
                    extra_host_key_types=("ecdsa", "rsa")) as sshd:
        yield sshd


# -- host key algorithms follow what is trusted ---------------------------------------------------

@pytest.mark.parametrize(("known_types", "pinned_type", "presented_type"), [
    (("ecdsa",), None, "ecdsa"),
    (("rsa",), None, "rsa"),
    (("ecdsa", "rsa"), None, "ecdsa"),
    ((), "ecdsa", "ecdsa"),
    ((), "rsa", "rsa"),
    (("rsa",), "ecdsa", "ecdsa"),
], ids=["known ecdsa", "known rsa", "known ecdsa and rsa", "pinned ecdsa", "pinned rsa", "known rsa, pinned ecdsa"])
def test_should_log_in_when_the_trusted_key_is_not_the_servers_preferred_one(
        stock_sshd: SshdServer, client_key: KeyPair, known_types: tuple[str, ...], pinned_type: str | None,
        presented_type: str):
    """The server also has an Ed25519 key; offering it first would be a false changed-key alarm."""
    lines = stock_sshd.host_key_public_lines
    options = ProbeOptions(connect_timeout_s=2.0, probe_timeout_s=3.0, known_hosts_lines=tuple(
        f"[{stock_sshd.host}]:{stock_sshd.port} {lines[t]}" for t in known_types))
    result = probe(stock_sshd.host, stock_sshd.port, client_key,
                   host_key=lines[pinned_type] if pinned_type else None, options=options)
    assert result.ok, result.message
    assert result.host_key == lines[presented_type]


def test_should_still_report_a_changed_key_when_the_server_lost_the_trusted_one(
        stock_sshd: SshdServer, client_key: KeyPair, tmp_path: Path):
    from heartbeat_lab import generate_keypair

    gone = generate_keypair(tmp_path / "gone", "ecdsa")
    result = probe(stock_sshd.host, stock_sshd.port, client_key, host_key=" ".join(gone.public_line.split()[:2]))
    assert (result.ok, result.error_class) == (False, "host_key_changed"), result.message


# -- the version exchange ---------------------------------------------------------------------------

def test_should_accept_lines_before_the_version_line(stock_sshd: SshdServer, client_key: KeyPair):
    """RFC 4253 4.2: a server may send lines of text before its version line."""
    notice = b"Authorised use only.\r\nAll connections are logged.\r\n\r\n"
    with BannerLinesProxy((stock_sshd.host, stock_sshd.port), notice) as proxy:
        result = probe(proxy.host, proxy.port, client_key)
    assert result.ok, result.message
    assert result.banner is not None and result.banner.startswith("SSH-2.0-OpenSSH")


def test_should_refuse_lines_before_the_version_line_beyond_the_banner_bound(stock_sshd: SshdServer,
                                                                             client_key: KeyPair):
    with BannerLinesProxy((stock_sshd.host, stock_sshd.port), (b"x" * 100 + b"\r\n") * 90) as proxy:
        result = probe(proxy.host, proxy.port, client_key)
    assert (result.ok, result.error_class) == (False, "banner"), result.message
    assert "no SSH version line in the first 8192 bytes" in result.message


# -- authentication ----------------------------------------------------------------------------------

def test_should_class_too_many_authentication_failures_as_auth(tmp_path: Path, client_key: KeyPair,
                                                                other_key: KeyPair):
    """sshd with MaxAuthTries 1 answers a refused key with DISCONNECT, not USERAUTH_FAILURE."""
    with SshdServer(tmp_path / "one-try", authorized_keys=[client_key.public_line],
                    extra_config={"MaxAuthTries": "1"}) as sshd:
        result = probe(sshd.host, sshd.port, other_key)
    assert (result.ok, result.error_class) == (False, "auth"), result.message
    assert "Too many authentication failures" in result.message


# -- asyncssh servers that break one rule ---------------------------------------------------------------

def ecdsa_trailing_bytes_after_the_blob(sign: Callable[[bytes], bytes], data: bytes) -> bytes:
    return bytes(sign(data)) + b"\x00\x00\x00\x00"


def ecdsa_trailing_bytes_after_s(sign: Callable[[bytes], bytes], data: bytes) -> bytes:
    blob = bytes(sign(data))
    algorithm_end = 4 + int.from_bytes(blob[:4], "big")
    raw = blob[algorithm_end + 4:] + b"\x00\x00\x00\x00"
    return blob[:algorithm_end] + ssh_string(raw)


ED25519_HOST_KEY = asyncssh.generate_private_key("ssh-ed25519")
ECDSA_HOST_KEY = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
HOST_CERTIFICATE = asyncssh.generate_private_key("ssh-ed25519").generate_host_certificate(ED25519_HOST_KEY, "peer")


def host_certificate_as_plain_key(conn: Any) -> None:
    """Agrees on ssh-ed25519, then sends its certificate (signed with the certified key)."""
    present_host_key(conn, public_data=HOST_CERTIFICATE.public_data)


def weak_rsa_key() -> Any:
    """A 768-bit RSA key (ssh-keygen and cryptography refuse to make one; openssl still does)."""
    pem = subprocess.run(["openssl", "genrsa", "768"], capture_output=True, check=True, timeout=30).stdout
    return asyncssh.import_private_key(pem)


@pytest.mark.parametrize(("host_key", "tamper", "error_class", "words"), [
    (lambda: ECDSA_HOST_KEY, None, None, "login ok"),
    (lambda: ECDSA_HOST_KEY, lambda conn: send_before(conn, MSG_KEXINIT, [(MSG_IGNORE, ssh_string(b""))]),
     "kex", "KEXINIT was not the first message"),
    (lambda: ECDSA_HOST_KEY, lambda conn: present_host_key(conn, sign=ecdsa_trailing_bytes_after_the_blob),
     "kex", "signature does not verify"),
    (lambda: ECDSA_HOST_KEY, lambda conn: present_host_key(conn, sign=ecdsa_trailing_bytes_after_s),
     "kex", "signature does not verify"),
    (lambda: ED25519_HOST_KEY, host_certificate_as_plain_key, "kex", "certificates and other key types"),
    (weak_rsa_key, None, "kex", "RSA host key has 768 bits"),
    (lambda: ECDSA_HOST_KEY,
     lambda conn: send_before(conn, MSG_SERVICE_ACCEPT, [(MSG_IGNORE, ssh_string(b"chaff" * 20))] * 300),
     None, "login ok"),
], ids=["plays by the rules", "IGNORE before KEXINIT under strict kex", "ECDSA signature blob with trailing bytes",
        "ECDSA signature with bytes after s", "certificate as a plain key", "768-bit RSA host key",
        "300 IGNORE messages (30 KiB)"])
def test_should_hold_a_real_ssh_server_to_the_rules(client_key: KeyPair, host_key: Callable[[], Any],
                                                    tamper: Callable[[Any], None] | None,
                                                    error_class: str | None, words: str):
    with SshServerPeer([client_key.public_line], host_key(), tamper=tamper) as peer:
        result = probe(peer.host, peer.port, client_key)
    assert (result.ok, result.error_class) == (error_class is None, error_class), result.message
    assert words in result.message


def test_should_time_out_in_the_key_exchange_when_newkeys_never_comes(client_key: KeyPair):
    quick = ProbeOptions(connect_timeout_s=1.0, probe_timeout_s=0.5)
    with SshServerPeer([client_key.public_line], ECDSA_HOST_KEY,
                       tamper=lambda conn: drop_from(conn, MSG_NEWKEYS)) as peer:
        result = probe(peer.host, peer.port, client_key, options=quick)
    assert (result.ok, result.error_class) == (False, "timeout"), result.message
    assert "key exchange did not finish" in result.message
    assert result.host_key is not None  # the host key was verified; the keys were never switched
