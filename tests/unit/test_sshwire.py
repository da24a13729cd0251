"""Packet framing and ciphers of the SSH login client, and its host key signature check,
without a network: what one side seals the other opens, and any change is refused."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from heartbeat.models import ErrorClass
from heartbeat.ssh.hostkeys import HostKeyVerdict
from heartbeat.ssh.keys import ClientKey, load_private_key
from heartbeat.ssh.login import LoginFailed, LoginProgress, Offer, _Login
from heartbeat.ssh.wire import (
    CIPHER_SIZES,
    MACS,
    PlainCipher,
    ProtocolError,
    Reader,
    make_cipher,
    mpint,
    string,
    uint32,
)

CIPHER_AND_MAC = (
    [(c, None) for c, (_, _, aead) in CIPHER_SIZES.items() if aead]
    + [("aes128-ctr", mac) for mac in MACS]
    + [("aes256-ctr", "hmac-sha2-256"), ("aes192-ctr", "hmac-sha2-512-etm@openssh.com")]
)


def pair(name: str, mac: str | None):
    key_bytes, iv_bytes, _ = CIPHER_SIZES[name]
    key, iv = os.urandom(key_bytes), os.urandom(iv_bytes)
    mac_key = os.urandom(MACS[mac][1]) if mac else b""
    return make_cipher(name, mac, key, iv, mac_key), make_cipher(name, mac, key, iv, mac_key)


def open_packet(receiver, seq: int, wire: bytes) -> bytes:
    size = receiver.packet_bytes(seq, wire[:receiver.head_bytes])
    assert size == len(wire)
    return receiver.open(seq, wire)


@pytest.mark.parametrize(("name", "mac"), CIPHER_AND_MAC)
def test_should_open_what_the_other_side_sealed_packet_after_packet(name: str, mac: str | None):
    sender, receiver = pair(name, mac)
    for seq, payload in enumerate([b"\x05" + string(b"ssh-userauth"), b"\x32" + os.urandom(700), b"\x02"]):
        wire = sender.seal(seq, payload)
        assert len(payload) < 8 or payload not in wire  # encrypted
        assert open_packet(receiver, seq, wire) == payload


@pytest.mark.parametrize(("name", "mac"), CIPHER_AND_MAC)
def test_should_refuse_a_packet_changed_in_transit(name: str, mac: str | None):
    sender, receiver = pair(name, mac)
    wire = bytearray(sender.seal(3, b"\x34" + bytes(40)))
    wire[-20] ^= 0x01
    with pytest.raises(ProtocolError, match="authentication failed"):
        open_packet(receiver, 3, bytes(wire))


def test_should_refuse_a_packet_with_another_sequence_number():
    sender, receiver = pair("chacha20-poly1305@openssh.com", None)
    wire = sender.seal(7, b"\x34")
    with pytest.raises(ProtocolError):
        open_packet(receiver, 8, wire)


@pytest.mark.parametrize("length", [0, 3, 256 * 1024 + 8, 0xFFFFFFFF])
def test_should_refuse_a_packet_length_out_of_bounds_before_reading_it(length: int):
    with pytest.raises(ProtocolError, match="out of bounds"):
        PlainCipher().packet_bytes(0, uint32(length))


def test_should_read_fields_and_refuse_to_run_past_the_end():
    reader = Reader(string(b"abc") + mpint(2**64) + b"\x01")
    assert (reader.string(), reader.mpint(), reader.boolean()) == (b"abc", 2**64, True)
    with pytest.raises(ProtocolError):
        reader.byte()
    with pytest.raises(ProtocolError):
        Reader(uint32(5) + b"abc").string()


def test_should_encode_mpints_as_rfc_4251_shows():
    assert mpint(0) == bytes.fromhex("00000000")
    assert mpint(0x9A378F9B2E332A7) == bytes.fromhex("0000000809a378f9b2e332a7")
    assert mpint(0x80) == bytes.fromhex("000000020080")


def new_key(kind: str) -> ClientKey:
    private = {"ed25519": lambda: ed25519.Ed25519PrivateKey.generate(),
               "ecdsa": lambda: ec.generate_private_key(ec.SECP256R1()),
               "rsa": lambda: rsa.generate_private_key(65537, 2048)}[kind]()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return load_private_key(pem, None)


def host_key_check(decide=lambda _: HostKeyVerdict(accept=True)) -> _Login:
    offer = Offer(kex_algs=("ecdh-sha2-nistp256",), host_key_algs=("ssh-ed25519",))
    login = _Login.__new__(_Login)
    login.offer, login.decide, login.progress = offer, decide, LoginProgress()
    return login


def test_should_refuse_a_host_key_whose_signature_does_not_verify():
    host_key = new_key("ed25519")
    exchange_hash = os.urandom(32)
    signature = host_key.sign(os.urandom(32), b"ssh-ed25519")  # signed something else
    check = host_key_check()
    with pytest.raises(LoginFailed, match="signature does not verify") as failed:
        check._check_host_key("ssh-ed25519", host_key.public_blob, exchange_hash, signature)
    assert failed.value.error_class == ErrorClass.KEX
    assert check.progress.host_key is None  # never offered to the host key decision


def test_should_refuse_a_signature_of_another_algorithm_than_agreed():
    host_key = new_key("rsa")
    exchange_hash = os.urandom(32)
    sha1_signature = host_key.sign(exchange_hash, b"ssh-rsa")  # valid, but rsa-sha2-512 was agreed
    with pytest.raises(LoginFailed, match="signature does not verify"):
        host_key_check()._check_host_key("rsa-sha2-512", host_key.public_blob, exchange_hash, sha1_signature)


def test_should_refuse_a_host_key_of_another_type_than_agreed():
    host_key = new_key("ecdsa")
    exchange_hash = os.urandom(32)
    signature = host_key.sign(exchange_hash, b"ecdsa-sha2-nistp256")
    with pytest.raises(LoginFailed, match="agreed on ssh-ed25519 but sent a ecdsa-sha2-nistp256 key"):
        host_key_check()._check_host_key("ssh-ed25519", host_key.public_blob, exchange_hash, signature)


def test_should_ask_the_host_key_decision_only_after_the_signature_verifies():
    host_key = new_key("ed25519")
    exchange_hash = os.urandom(32)
    asked: list[str] = []

    def decide(presented: str) -> HostKeyVerdict:
        asked.append(presented)
        return HostKeyVerdict(accept=False, error_class=ErrorClass.HOST_KEY_CHANGED, message="changed")

    check = host_key_check(decide)
    with pytest.raises(LoginFailed, match="changed") as failed:
        check._check_host_key("ssh-ed25519", host_key.public_blob, exchange_hash,
                              host_key.sign(exchange_hash, b"ssh-ed25519"))
    assert failed.value.error_class == ErrorClass.HOST_KEY_CHANGED
    assert asked == [host_key.public_line()]


def _pi_times_power_of_two(bits: int) -> int:
    """floor(pi * 2^bits), by Machin's formula in integers (32 guard bits)."""
    scale = 1 << (bits + 32)

    def arctan_inverse(x: int) -> int:
        total, term, n, sign = 0, scale // x, 1, 1
        while term:
            total += sign * (term // n)
            term //= x * x
            n += 2
            sign = -sign
        return total

    return (4 * (4 * arctan_inverse(5) - arctan_inverse(239))) >> 32


@pytest.mark.parametrize(("bits", "k"), [(2048, 124476), (4096, 240904), (8192, 4743158)])
def test_should_hold_the_rfc_3526_primes_as_the_rfc_defines_them(bits: int, k: int):
    """RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k), generator 2."""
    from heartbeat.ssh.modp import GENERATOR, PRIMES

    expected = 2**bits - 2 ** (bits - 64) - 1 + 2**64 * (_pi_times_power_of_two(bits - 130) + k)
    assert PRIMES[bits] == expected
    assert PRIMES[bits].bit_length() == bits
    assert GENERATOR == 2
    assert format(PRIMES[bits], "X").startswith("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1")


@pytest.mark.parametrize(("received", "expected"), [
    (b"SSH-2.0-OpenSSH_9.2\r\n\x00\x00", (21, b"SSH-2.0-OpenSSH_9.2")),
    (b"SSH-2.0-OpenSSH_9.2\n", (20, b"SSH-2.0-OpenSSH_9.2")),
    (b"Authorised use only.\r\n\r\nSSH-2.0-x\r\n", (35, b"SSH-2.0-x")),
    (b"Authorised use only.\r\nSSH-2.0-x", None),
    (b"Authorised use only.\r\nSS", None),
    (b"", None),
], ids=["version line", "LF only", "lines before it", "incomplete", "incomplete prefix", "nothing yet"])
def test_should_find_the_version_line_after_the_lines_before_it(received: bytes, expected):
    from heartbeat.ssh import read_version_line

    assert read_version_line(bytearray(received)) == expected


@pytest.mark.parametrize(("received", "words"), [
    (b"SSH-2.0-" + b"x" * 300, "longer than 255"),
    (b"notice\r\nSSH-2.0-" + b"x" * 300 + b"\r\n", "longer than 255"),
    (b"\x00\xff" * 10, "not an SSH server"),
    ((b"x" * 100 + b"\r\n") * 82, "no SSH version line in the first 8192 bytes"),
], ids=["long version line", "long after a notice", "binary", "too many lines before it"])
def test_should_refuse_a_version_exchange_beyond_its_bounds(received: bytes, words: str):
    from heartbeat.ssh import read_version_line

    with pytest.raises(LoginFailed, match=words) as failed:
        read_version_line(bytearray(received))
    assert failed.value.error_class == ErrorClass.BANNER


def test_should_export_every_name_of_the_public_surface():
    import heartbeat.ssh

    assert all(getattr(heartbeat.ssh, name, None) is not None for name in heartbeat.ssh.__all__)
    assert callable(heartbeat.ssh.login) and not isinstance(heartbeat.ssh.login, type(heartbeat.ssh))
