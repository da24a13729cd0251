"""Client and host keys of the login client: the formats ssh-keygen writes, signatures that
verify only for the algorithm and data they were made for, clear errors without key material."""

from __future__ import annotations

import base64
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


def ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


@pytest.mark.parametrize(("key_type", "extra", "tamper"), [
    ("ecdsa", ("-b", "256"), lambda alg, raw: ssh_string(alg) + ssh_string(raw) + b"\x00"),
    ("ecdsa", ("-b", "256"), lambda alg, raw: ssh_string(alg) + ssh_string(raw + ssh_string(b""))),
    ("ecdsa", ("-b", "256"), lambda alg, raw: ssh_string(alg) + ssh_string(raw[:-1])),
    ("ed25519", (), lambda alg, raw: ssh_string(alg) + ssh_string(raw) + b"\x00\x00\x00\x00"),
    ("ed25519", (), lambda alg, raw: ssh_string(alg) + ssh_string(raw + b"\x00")),
    ("rsa", ("-b", "2048"), lambda alg, raw: ssh_string(alg) + ssh_string(raw) + b"\x00"),
], ids=["ecdsa blob trailing", "ecdsa bytes after s", "ecdsa s cut short", "ed25519 blob trailing",
        "ed25519 signature too long", "rsa blob trailing"])
def test_should_refuse_a_signature_blob_that_is_not_exactly_its_fields(tmp_path: Path, key_type: str,
                                                                      extra: tuple[str, ...], tamper):
    key = load_private_key(keygen(tmp_path / "k", key_type, *extra), None)
    alg = key.sig_algorithms[0]
    blob = key.sign(b"exchange hash", alg)
    host_view = decode_host_key(key.public_blob)
    assert host_view.verify(alg, b"exchange hash", blob)
    reader_alg_end = 4 + int.from_bytes(blob[:4], "big")
    raw = blob[reader_alg_end + 4:]
    assert not host_view.verify(alg, b"exchange hash", tamper(alg, raw))


def test_should_refuse_rsa_keys_below_1024_bits_as_client_and_as_host_key(tmp_path: Path):
    """OpenSSH's RequiredRSASize; ssh-keygen no longer makes such keys, openssl still does."""
    pem = subprocess.run(["openssl", "genrsa", "768"], capture_output=True, check=True, timeout=30).stdout
    with pytest.raises(UnusableKey, match="RSA key of 768 bits is too short"):
        load_private_key(pem, None)
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(pem, None)
    line = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    with pytest.raises(UnusableKey, match="RSA host key has 768 bits"):
        decode_host_key(base64.b64decode(line.split()[1]))


def test_should_never_read_a_certificate_as_the_key_it_certifies(tmp_path: Path):
    keygen(tmp_path / "ca", "ed25519")
    keygen(tmp_path / "host", "ed25519")
    subprocess.run(["ssh-keygen", "-q", "-s", str(tmp_path / "ca"), "-I", "host", "-h", str(tmp_path / "host.pub")],
                   check=True, capture_output=True)
    certificate = (tmp_path / "host-cert.pub").read_text().split()
    assert certificate[0] == "ssh-ed25519-cert-v01@openssh.com"
    with pytest.raises(UnusableKey, match=r"ssh-ed25519-cert-v01@openssh\.com host keys are not supported"):
        decode_host_key(base64.b64decode(certificate[1]))
