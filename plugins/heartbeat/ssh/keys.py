"""SSH public-key algorithms for the login client: the client's private key (load, sign) and the
server's host key (decode, verify), with the ``cryptography`` package.

Ed25519, ECDSA on P-256/384/521 and RSA (``rsa-sha2-512``, ``rsa-sha2-256``, and ``ssh-rsa`` for
servers that know nothing newer). Private keys in OpenSSH's format or PEM (PKCS#1, SEC1,
PKCS#8), encrypted or not. Signatures in SSH's encoding (RFC 4253 6.6, RFC 5656 3.1.2,
RFC 8032 / RFC 8709, RFC 8332).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from heartbeat.ssh.wire import ProtocolError, Reader, mpint, string

_ECDSA_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512,
}
_ECDSA_NAMES = {"secp256r1": b"ecdsa-sha2-nistp256", "secp384r1": b"ecdsa-sha2-nistp384",
                "secp521r1": b"ecdsa-sha2-nistp521"}
MIN_RSA_BITS = 1024  # OpenSSH's RequiredRSASize: shorter RSA keys are refused, host and client
PLAIN_KEY_TYPES = frozenset((b"ssh-ed25519", *_ECDSA_NAMES.values(), b"ssh-rsa"))
_RSA_HASHES: dict[bytes, type[hashes.HashAlgorithm]] = {
    b"rsa-sha2-512": hashes.SHA512, b"rsa-sha2-256": hashes.SHA256, b"ssh-rsa": hashes.SHA1,
}

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class UnusableKey(ValueError):
    """A key that cannot be used (message without key material)."""


def _key_type(key: PrivateKey | PublicKey) -> bytes:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return b"ssh-ed25519"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        name = _ECDSA_NAMES.get(key.curve.name)
        if name is None:
            raise UnusableKey(f"ECDSA curve {key.curve.name} is not used by SSH")
        return name
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        if key.key_size < MIN_RSA_BITS:
            raise UnusableKey(f"RSA key of {key.key_size} bits is too short: OpenSSH requires at least "
                              f"{MIN_RSA_BITS} bits; use an Ed25519 key or an RSA key of 3072 bits")
        return b"ssh-rsa"
    raise UnusableKey(f"{type(key).__name__} keys are not supported (Ed25519, ECDSA or RSA)")


@dataclass(frozen=True)
class ClientKey:
    """A private key that signs authentication requests. Never printed: repr hides it."""

    private: PrivateKey = field(repr=False)
    algorithm: bytes  # the key type: b"ssh-ed25519", b"ecdsa-sha2-nistp256", b"ssh-rsa"
    public_blob: bytes  # the public key in SSH wire format

    @property
    def sig_algorithms(self) -> tuple[bytes, ...]:
        if self.algorithm == b"ssh-rsa":
            return tuple(_RSA_HASHES)  # SHA-512 first
        return (self.algorithm,)

    def sign(self, data: bytes, sig_algorithm: bytes) -> bytes:
        """An SSH signature blob: string(algorithm) || string(signature)."""
        key = self.private
        if isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.sign(data)
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(_ECDSA_HASHES[key.curve.name]())))
            raw = mpint(r) + mpint(s)
        else:
            raw = key.sign(data, padding.PKCS1v15(), _RSA_HASHES[sig_algorithm]())
        return string(sig_algorithm) + string(raw)

    def public_line(self) -> str:
        return f"{self.algorithm.decode()} {base64.b64encode(self.public_blob).decode()}"


def load_private_key(data: bytes, passphrase: bytes | None) -> ClientKey:
    """A private key from OpenSSH's format or PEM; ValueError (no key material) when it cannot be used."""
    loaded: object
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            loaded = serialization.load_ssh_private_key(data, passphrase)
        else:
            loaded = serialization.load_pem_private_key(data, passphrase)
    except TypeError as exc:  # a passphrase missing, or given for a key that has none
        raise UnusableKey(str(exc)) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UnusableKey(type(exc).__name__) from None
    if not isinstance(loaded, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise UnusableKey(f"{type(loaded).__name__} keys are not supported (Ed25519, ECDSA or RSA)")
    private: PrivateKey = loaded
    algorithm = _key_type(private)
    line = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return ClientKey(private, algorithm, base64.b64decode(line.split()[1]))


@dataclass(frozen=True)
class HostKey:
    """A server's public host key, decoded from the key exchange."""

    public: PublicKey
    algorithm: bytes
    blob: bytes

    def verify(self, sig_algorithm: bytes, data: bytes, signature_blob: bytes) -> bool:
        """Whether ``signature_blob`` is this key's signature of ``data`` made with ``sig_algorithm``.

        The blob is parsed exactly (RFC 4253 6.6, RFC 5656 3.1.2): a byte more or less than its
        fields, or an ECDSA number that is not positive, and it does not verify."""
        try:
            reader = Reader(signature_blob)
            if reader.string() != sig_algorithm:
                return False
            raw = reader.string()
            reader.end()
            key = self.public
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(raw, data)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                numbers = Reader(raw)
                r, s = numbers.mpint(), numbers.mpint()
                numbers.end()
                if r <= 0 or s <= 0:
                    return False
                key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_ECDSA_HASHES[key.curve.name]()))
            else:
                hash_type = _RSA_HASHES.get(sig_algorithm)
                if hash_type is None:
                    return False
                key.verify(raw, data, padding.PKCS1v15(), hash_type())
        except (InvalidSignature, ProtocolError, ValueError):
            return False
        return True

    def public_line(self) -> str:
        return f"{self.algorithm.decode()} {base64.b64encode(self.blob).decode()}"


def decode_host_key(blob: bytes) -> HostKey:
    """A host key from its SSH wire format; ValueError when it is not a usable key.

    Only plain keys: a certificate (``*-cert-v01@openssh.com``) is refused, never read as the
    key it certifies (the client offers no certificate algorithm)."""
    try:
        algorithm = Reader(blob).string()
    except ProtocolError as exc:
        raise UnusableKey(f"malformed host key: {exc}") from None
    if algorithm not in PLAIN_KEY_TYPES:
        raise UnusableKey(f"{algorithm[:60].decode('ascii', 'replace')} host keys are not supported "
                          "(certificates and other key types are not offered)")
    line = algorithm + b" " + base64.b64encode(blob)
    try:
        public = serialization.load_ssh_public_key(line)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UnusableKey(f"unreadable {algorithm[:40].decode('ascii', 'replace')} host key ({exc})") from None
    if not isinstance(public, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise UnusableKey(f"{type(public).__name__} host keys are not supported")
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
        raise UnusableKey(f"the server's RSA host key has {public.key_size} bits, fewer than the {MIN_RSA_BITS} "
                          "OpenSSH requires: the server needs a new host key")
    key_type = _key_type(public)
    if key_type != algorithm:
        raise UnusableKey(f"a {key_type.decode()} host key labelled {algorithm.decode()}")
    return HostKey(public, key_type, blob)
