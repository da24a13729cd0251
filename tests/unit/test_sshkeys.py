"""Client and host keys of the login client: the formats ssh-keygen writes, signatures that
verify only for the algorithm and data they were made for, clear errors without key material."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from heartbeat.ssh.keys import UnusableKey, decode_host_key, load_private_key


def keygen(path: Path, key_type: str, *extra: str, passphrase: str = "") -> bytes:
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-C", "", "-f", str(path), *extra],
                   check=True)
    return path.read_bytes()


@pytest.mark.parametrize(("key_type", "extra", "sig_algorithms"), [
    ("ed25519", (), [b"ssh-ed25519"]),
    ("ecdsa", ("-b", "256"), [b"ecdsa-sha2-nistp256"]),
    ("ecdsa", ("-b", "384"), [b"ecdsa-sha2-nistp384"]),
    ("ecdsa", ("-b", "521"), [b"ecdsa-sha2-nistp521"]),
    ("rsa", ("-b", "2048"), [b"rsa-sha2-512", b"rsa-sha2-256", b"ssh-rsa"]),
    ("rsa", ("-b", "2048", "-m", "PEM"), [b"rsa-sha2-512", b"rsa-sha2-256", b"ssh-rsa"]),
], ids=["ed25519", "p256", "p384", "p521", "rsa", "rsa-pem"])
def test_should_sign_so_that_the_public_half_verifies(tmp_path: Path, key_type: str, extra: tuple[str, ...],
                                                     sig_algorithms: list[bytes]):
    key = load_private_key(keygen(tmp_path / "k", key_type, *extra), None)
    assert key.public_line() == " ".join((tmp_path / "k.pub").read_text().split()[:2])
    host_view = decode_host_key(key.public_blob)
    assert list(key.sig_algorithms) == sig_algorithms
    for alg in sig_algorithms:
        signature = key.sign(b"exchange hash", alg)
        assert host_view.verify(alg, b"exchange hash", signature)
        assert not host_view.verify(alg, b"another hash", signature)
    if len(sig_algorithms) > 1:
        assert not host_view.verify(b"rsa-sha2-256", b"exchange hash", key.sign(b"exchange hash", b"rsa-sha2-512"))


def test_should_load_an_encrypted_key_with_its_passphrase_only(tmp_path: Path):
    data = keygen(tmp_path / "k", "ed25519", passphrase="correct horse")
    assert load_private_key(data, b"correct horse").algorithm == b"ssh-ed25519"
    for wrong in (b"wrong", None):
        with pytest.raises(UnusableKey) as failed:
            load_private_key(data, wrong)
        assert "PRIVATE KEY" not in str(failed.value) and "correct horse" not in str(failed.value)


def test_should_refuse_what_is_not_a_usable_key(tmp_path: Path):
    with pytest.raises(UnusableKey):
        load_private_key(b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot base64\n-----END OPENSSH PRIVATE KEY-----\n", None)
    with pytest.raises(UnusableKey):
        load_private_key(b"just text", None)
    with pytest.raises(UnusableKey, match="unreadable ssh-ed25519 host key"):
        decode_host_key(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x03abc")
    with pytest.raises(UnusableKey, match="malformed host key"):
        decode_host_key(b"\x00\x00\x01\x00ssh")
