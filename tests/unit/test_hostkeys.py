import base64
import hashlib
import hmac

import pytest

from heartbeat.config import HostKeyPolicy
from heartbeat.models import ErrorClass
from heartbeat.ssh.hostkeys import (
    PREFERRED_HOST_KEY_ALGS,
    HostKeyFormatError,
    decide_host_key,
    fingerprint,
    host_key_algs_to_offer,
    known_hosts_keys,
    normalise_public_key,
)

pytestmark = pytest.mark.unit


def make_key(seed: bytes, key_type: str = "ssh-ed25519") -> str:
    name = key_type.encode()
    blob = len(name).to_bytes(4, "big") + name + (32).to_bytes(4, "big") + hashlib.sha256(seed).digest()
    return f"{key_type} {base64.b64encode(blob).decode()}"


KEY_A, KEY_B = make_key(b"a"), make_key(b"b")


def test_should_compute_openssh_sha256_fingerprint():
    blob = base64.b64decode(KEY_A.split()[1])
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert fingerprint(KEY_A) == expected


def test_should_drop_comment_when_normalising():
    assert normalise_public_key(f"  {KEY_A} root@host ") == KEY_A


@pytest.mark.parametrize("text", ["", "ssh-ed25519", "ssh-dss AAAA", "ssh-ed25519 !!notbase64!!",
                                  "ssh-ed25519 " + KEY_A.split()[1][:-12],
                                  "ssh-rsa " + KEY_A.split()[1]],
                         ids=["empty", "no data", "unknown type", "bad base64", "truncated", "type mismatch"])
def test_should_reject_malformed_public_keys(text):
    with pytest.raises(HostKeyFormatError):
        normalise_public_key(text)


DECISIONS = [
    ("tofu first use pins", None, set(), HostKeyPolicy.TOFU, True, None, True),
    ("strict unknown", None, set(), HostKeyPolicy.STRICT, False, ErrorClass.HOST_KEY_UNKNOWN, False),
    ("pinned match", KEY_A, set(), HostKeyPolicy.TOFU, True, None, False),
    ("pinned changed tofu", KEY_B, set(), HostKeyPolicy.TOFU, False, ErrorClass.HOST_KEY_CHANGED, False),
    ("pinned changed strict", KEY_B, set(), HostKeyPolicy.STRICT, False, ErrorClass.HOST_KEY_CHANGED, False),
    ("known_hosts match strict", None, {KEY_A}, HostKeyPolicy.STRICT, True, None, False),
    ("known_hosts mismatch", None, {KEY_B}, HostKeyPolicy.TOFU, False, ErrorClass.HOST_KEY_CHANGED, False),
]


@pytest.mark.parametrize(("pinned", "known", "policy", "accept", "error_class", "pin"),
                         [d[1:] for d in DECISIONS], ids=[d[0] for d in DECISIONS])
def test_should_never_accept_a_changed_key(pinned, known, policy, accept, error_class, pin):
    verdict = decide_host_key(KEY_A, pinned, known, set(), policy)
    assert (verdict.accept, verdict.error_class, verdict.pin) == (accept, error_class, pin)


def test_should_name_both_fingerprints_when_key_changed():
    verdict = decide_host_key(KEY_A, KEY_B, set(), set(), HostKeyPolicy.TOFU)
    assert fingerprint(KEY_A) in verdict.message and fingerprint(KEY_B) in verdict.message


def test_should_refuse_revoked_key_even_if_pinned():
    verdict = decide_host_key(KEY_A, KEY_A, set(), {KEY_A}, HostKeyPolicy.TOFU)
    assert not verdict.accept


def test_should_read_plain_hashed_and_bracketed_known_hosts_entries():
    salt = b"0123456789abcdef0123"
    hashed = base64.b64encode(hmac.new(salt, b"[10.0.0.9]:2222", hashlib.sha1).digest()).decode()
    lines = [
        "# comment",
        f"web1,192.0.2.1 {KEY_A}",
        f"|1|{base64.b64encode(salt).decode()}|{hashed} {KEY_B}",
        f"@revoked web1 {KEY_B}",
        f"@cert-authority *.example.com {KEY_B}",
        "garbage",
    ]
    assert known_hosts_keys(lines, "web1", 22) == ({KEY_A}, {KEY_B})
    assert known_hosts_keys(lines, "10.0.0.9", 2222) == ({KEY_B}, set())
    assert known_hosts_keys(lines, "web1", 2222) == (set(), set())


@pytest.mark.parametrize(("trusted_types", "first"), [
    ((), ()),
    (("ecdsa-sha2-nistp256",), ("ecdsa-sha2-nistp256",)),
    (("ssh-rsa",), ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")),
    (("ssh-rsa", "ecdsa-sha2-nistp384"), ("ecdsa-sha2-nistp384", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")),
    (("ssh-ed25519",), ("ssh-ed25519",)),
], ids=["nothing trusted", "ecdsa", "rsa", "rsa and ecdsa", "ed25519"])
def test_should_offer_the_trusted_keys_types_first_then_the_preferred_ones(trusted_types, first):
    offer = host_key_algs_to_offer([make_key(t.encode(), t) for t in trusted_types])
    assert offer[:len(first)] == first
    assert offer[len(first):] == tuple(a for a in PREFERRED_HOST_KEY_ALGS if a not in first)
    assert "ssh-rsa" not in offer or "ssh-rsa" in trusted_types  # SHA-1 signatures only for a trusted RSA key
