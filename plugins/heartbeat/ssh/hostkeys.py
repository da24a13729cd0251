"""Host key policy: which key a server may present, and what to do with a new one. Pure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from heartbeat.config import HostKeyPolicy
from heartbeat.models import ErrorClass

# signature algorithm -> the key type that makes it
HOST_KEY_ALGS: dict[str, str] = {
    "ssh-ed25519": "ssh-ed25519",
    "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384": "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521": "ecdsa-sha2-nistp521",
    "rsa-sha2-512": "ssh-rsa",
    "rsa-sha2-256": "ssh-rsa",
    "ssh-rsa": "ssh-rsa",
}
# Offered for a server of which nothing is trusted yet; ssh-rsa (SHA-1 signatures) is offered
# only for a trusted RSA key, for servers that know nothing newer (OpenSSH before 7.2).
PREFERRED_HOST_KEY_ALGS: tuple[str, ...] = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
)

KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


class HostKeyFormatError(ValueError):
    pass


def normalise_public_key(text: str) -> str:
    """Return ``"<type> <base64>"`` for an OpenSSH public key line, dropping any comment.

    Raises :class:`HostKeyFormatError` with what is wrong when the text is not a public key.
    """
    parts = text.strip().split()
    if len(parts) < 2:
        raise HostKeyFormatError("expected '<type> <base64>', e.g. 'ssh-ed25519 AAAAC3Nza...'")
    key_type, blob_b64 = parts[0], parts[1]
    if key_type not in KEY_TYPES:
        raise HostKeyFormatError(f"unknown key type {key_type[:40]!r}; expected one of {', '.join(KEY_TYPES)}")
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except (binascii.Error, ValueError):
        raise HostKeyFormatError("the key data is not valid base64") from None
    fields = _ssh_strings(blob)
    if fields is None:
        raise HostKeyFormatError("the key data is truncated or malformed")
    if fields[0].decode("ascii", "replace") != key_type:
        raise HostKeyFormatError(f"the key data does not hold a {key_type} key")
    return f"{key_type} {blob_b64}"


def public_key_from_base64(blob_b64: str) -> str:
    """``"<type> <base64>"`` for the key data alone (as ``SSHHook``'s ``host_key`` extra allows),
    the type read from the data; :class:`HostKeyFormatError` when it is not a public key."""
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except (binascii.Error, ValueError):
        raise HostKeyFormatError("the key data is not valid base64") from None
    fields = _ssh_strings(blob)
    if not fields:
        raise HostKeyFormatError("the key data is truncated or malformed")
    return normalise_public_key(f"{fields[0].decode('ascii', 'replace')} {blob_b64}")


def _ssh_strings(blob: bytes) -> list[bytes] | None:
    """Split an SSH wire-format blob into its length-prefixed strings; None unless it is exactly that."""
    fields, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            return None
        size = int.from_bytes(blob[offset : offset + 4], "big")
        offset += 4
        if offset + size > len(blob):
            return None
        fields.append(blob[offset : offset + size])
        offset += size
    return fields if len(fields) >= 2 else None


def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint (``ssh-keygen -lf``) of a public key line."""
    blob = base64.b64decode(public_key.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def key_type_of(public_key: str) -> str:
    return public_key.split()[0]


def _host_tokens(host: str, port: int) -> tuple[str, ...]:
    return (host,) if port == 22 else (f"[{host}]:{port}",)


def _hashed_match(pattern: str, token: str) -> bool:
    # |1|base64(salt)|base64(hmac_sha1(salt, host))
    try:
        _, _, salt_b64, hash_b64 = pattern.split("|")
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(hash_b64)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(hmac.new(salt, token.encode(), hashlib.sha1).digest(), expected)


def known_hosts_keys(lines: Iterable[str], host: str, port: int) -> tuple[set[str], set[str]]:
    """Keys that an OpenSSH known_hosts file lists for ``host:port``: (trusted, revoked).

    Plain and hashed host names are supported; wildcard patterns and ``@cert-authority``
    lines are ignored (certificates are not used by the probe).
    """
    tokens = _host_tokens(host, port)
    trusted: set[str] = set()
    revoked: set[str] = set()
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = None
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            if marker == "@cert-authority":
                continue
        fields = line.split()
        if len(fields) < 3:
            continue
        patterns = fields[0].split(",")
        matched = any(
            _hashed_match(p, t) if p.startswith("|1|") else p == t for p in patterns for t in tokens
        )
        if not matched:
            continue
        try:
            key = normalise_public_key(" ".join(fields[1:3]))
        except HostKeyFormatError:
            continue
        (revoked if marker == "@revoked" else trusted).add(key)
    return trusted, revoked


def host_key_algs_to_offer(trusted: Iterable[str]) -> tuple[str, ...]:
    """The host key algorithms to offer a server, given the keys trusted for it (pin and
    known_hosts lines, revoked ones left out): those that make a trusted key's type first, then
    the other preferred ones.

    A server with several host keys presents the first of its types the client offers; offering
    the trusted types first makes it present a trusted key when it still has one. When it has
    none of them any more it presents another, which :func:`decide_host_key` reports as changed.
    """
    trusted_types = {key_type_of(key) for key in trusted}
    first = tuple(alg for alg, key_type in HOST_KEY_ALGS.items() if key_type in trusted_types)
    return first + tuple(alg for alg in PREFERRED_HOST_KEY_ALGS if alg not in first)


@dataclass(frozen=True)
class HostKeyVerdict:
    accept: bool
    error_class: ErrorClass | None = None
    message: str = ""
    pin: bool = False  # trust on first use: store the presented key in the inventory


def decide_host_key(
    presented: str,
    pinned: str | None,
    known: set[str],
    revoked: set[str],
    policy: HostKeyPolicy,
) -> HostKeyVerdict:
    """Decide whether the key a server presented is acceptable.

    ``pinned`` is the inventory's key, ``known`` the keys a known_hosts file lists. A key that
    differs from a known one is never accepted: that is a changed key, whatever the policy.
    """
    presented_fp = fingerprint(presented)
    if presented in revoked:
        return HostKeyVerdict(False, ErrorClass.HOST_KEY_CHANGED, f"host key {presented_fp} is revoked")
    expected = set(known)
    if pinned:
        expected.add(pinned)
    if presented in expected:
        return HostKeyVerdict(True)
    if expected:
        old = ", ".join(sorted(fingerprint(k) for k in expected))
        return HostKeyVerdict(
            False,
            ErrorClass.HOST_KEY_CHANGED,
            f"host key changed: expected {old}, got {presented_fp}",
        )
    if policy is HostKeyPolicy.STRICT:
        return HostKeyVerdict(
            False,
            ErrorClass.HOST_KEY_UNKNOWN,
            f"host key {presented_fp} is not known (strict policy): pin it in the inventory or known_hosts",
        )
    return HostKeyVerdict(True, pin=True)
