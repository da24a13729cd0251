"""An SSH-2 login and nothing else: version exchange, key exchange, host key check, public-key
authentication, disconnect. No channel is ever opened.

A general SSH library spends most of a heartbeat's client CPU on machinery the heartbeat never
uses (channels, a ``none`` authentication and a public-key query before the signed request,
per-packet logging). This client sends the signed request straight away and reads every reply
through one small loop, for much less client CPU per login (measured against asyncssh in
``bench/fleet_bench.py``; the figures are in docs/benchmarks.md).

What it checks, as any SSH client must: the server's signature over the exchange hash with the
negotiated host key algorithm, before the host key decision is asked; the peer's ECDH/X25519/DH
public value; every packet's MAC or AEAD tag; strict key exchange (OpenSSH's
``kex-strict-*-v00``, the Terrapin countermeasure) when the server offers it. Keys are parsed,
signed and verified with the ``cryptography`` package (:mod:`heartbeat.ssh.keys`).

Errors are :class:`LoginFailed` with the probe's error class and a message for people.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from heartbeat.models import ErrorClass
from heartbeat.ssh.hostkeys import HOST_KEY_ALGS, HostKeyVerdict
from heartbeat.ssh.keys import ClientKey, UnusableKey, decode_host_key
from heartbeat.ssh.modp import GENERATOR, PRIMES
from heartbeat.ssh.wire import (
    CIPHER_SIZES,
    MACS,
    PacketCipher,
    PlainCipher,
    ProtocolError,
    Reader,
    derive_key,
    make_cipher,
    mpint,
    name_list,
    string,
    uint32,
)

CLIENT_VERSION = b"SSH-2.0-heartbeat_1"
MAX_VERSION_LINE_BYTES = 255  # RFC 4253 4.2: the version line is at most 255 characters
MAX_BANNER_BYTES = 8192  # lines before the version line and the line itself (OpenSSH's longest banner line)
MAX_SKIPPED_BYTES = 256 * 1024  # IGNORE, DEBUG, UNIMPLEMENTED and banner messages in one login, on the wire
MAX_BUFFERED_BYTES = 1024 * 1024  # unread bytes beyond which reading pauses (4 packets of the largest size)

MSG_DISCONNECT, MSG_IGNORE, MSG_UNIMPLEMENTED, MSG_DEBUG = 1, 2, 3, 4
MSG_SERVICE_REQUEST, MSG_SERVICE_ACCEPT, MSG_EXT_INFO = 5, 6, 7
MSG_KEXINIT, MSG_NEWKEYS = 20, 21
MSG_KEX_INIT, MSG_KEX_REPLY = 30, 31  # KEXDH_INIT / KEX_ECDH_INIT and their replies share numbers
MSG_USERAUTH_REQUEST, MSG_USERAUTH_FAILURE, MSG_USERAUTH_SUCCESS, MSG_USERAUTH_BANNER = 50, 51, 52, 53
DISCONNECT_BY_APPLICATION = 11

STRICT_KEX_CLIENT = "kex-strict-c-v00@openssh.com"
STRICT_KEX_SERVER = "kex-strict-s-v00@openssh.com"
EXT_INFO_CLIENT = "ext-info-c"

# name: (hash, kind, curve or group size), in the order offered by default: ECDH on NIST P-256
# first, then X25519, the larger curves, and finite-field groups last. OpenSSH up to 9.x computes
# P-256 with OpenSSL's optimised code but X25519 with its own portable code: a login that agrees
# on P-256 costs the monitored sshd noticeably less CPU per login (bench/fleet_bench.py; the
# figures are in docs/benchmarks.md). The session carries no data, so a post-quantum
# hybrid exchange would protect nothing and cost the servers most. HEARTBEAT_KEX_ALGS overrides.
KEX_METHODS: dict[str, tuple[str, str, int]] = {
    "ecdh-sha2-nistp256": ("sha256", "ecdh", 256),
    "curve25519-sha256": ("sha256", "x25519", 0),
    "curve25519-sha256@libssh.org": ("sha256", "x25519", 0),
    "ecdh-sha2-nistp384": ("sha384", "ecdh", 384),
    "ecdh-sha2-nistp521": ("sha512", "ecdh", 521),
    "diffie-hellman-group16-sha512": ("sha512", "modp", 4096),
    "diffie-hellman-group18-sha512": ("sha512", "modp", 8192),
    "diffie-hellman-group14-sha256": ("sha256", "modp", 2048),
}
DH_EXPONENT_BITS = 512  # twice the strength of the strongest cipher offered (RFC 8268 section 4)
_CURVES: dict[int, ec.EllipticCurve] = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}

# AES-GCM first: one AEAD call per packet, the cheapest on the client and on sshd.
CIPHERS: tuple[str, ...] = tuple(CIPHER_SIZES)
MAC_ALGS: tuple[str, ...] = tuple(MACS)


class LoginFailed(Exception):
    """Why a login did not complete: the probe's error class and a one-line message."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message


@dataclass
class LoginProgress:
    """What a login has learnt so far; perf_counter timestamps."""

    host_key: str | None = None  # "type base64", as in known_hosts
    host_key_at: float | None = None
    verdict: HostKeyVerdict | None = None
    kex_done: float | None = None  # the server's NEWKEYS arrived: authentication goes on
    auth_done: float | None = None
    strict_kex: bool = False


@dataclass(frozen=True)
class Offer:
    """What the client proposes, each in order of preference."""

    kex_algs: tuple[str, ...]
    host_key_algs: tuple[str, ...]
    ciphers: tuple[str, ...] = CIPHERS
    macs: tuple[str, ...] = MAC_ALGS


def _first_common(category: str, ours: Sequence[str], theirs: Sequence[str]) -> str:
    for name in ours:
        if name in theirs:
            return name
    offered = ",".join(t for t in theirs if t not in (STRICT_KEX_SERVER, "ext-info-s")) or "nothing"
    raise LoginFailed(ErrorClass.KEX, f"key exchange failed: no common {category}; the server offers {offered}"[:300])


class ServerDisconnected(ConnectionResetError):
    """The server sent DISCONNECT (its reason code and text are in the message)."""


def read_version_line(data: bytes | bytearray) -> tuple[int, bytes] | None:
    """RFC 4253 4.2: the server's version line (without CR LF) and where it ends in ``data``,
    once it is complete; None while it is not.

    The lines a server may send before it (a legal notice, say; they must not begin with
    "SSH-") are skipped, up to :data:`MAX_BANNER_BYTES` in all; the version line itself is at
    most :data:`MAX_VERSION_LINE_BYTES`. Beyond those bounds, or for a NUL byte (which OpenSSH
    refuses too), :class:`LoginFailed` with error class banner.
    """
    start = 0
    while True:
        newline = data.find(b"\n", start, MAX_BANNER_BYTES)
        line = bytes(data[start:MAX_BANNER_BYTES] if newline < 0 else data[start:newline])
        if b"\0" in line:
            raise LoginFailed(ErrorClass.BANNER, f"not an SSH server: it sent {printable(bytes(data[:80]))}")
        if line.startswith(b"SSH-") and len(line) > MAX_VERSION_LINE_BYTES + 1:  # + 1: the CR
            raise LoginFailed(ErrorClass.BANNER, f"SSH banner longer than {MAX_VERSION_LINE_BYTES} bytes")
        if newline < 0:
            if len(data) >= MAX_BANNER_BYTES:
                raise LoginFailed(ErrorClass.BANNER, f"not an SSH server: no SSH version line in the first "
                                  f"{MAX_BANNER_BYTES} bytes; it sent {printable(bytes(data[:80]))}")
            return None
        if line.startswith(b"SSH-"):
            return newline + 1, line.rstrip(b"\r")
        start = newline + 1


def printable(data: bytes) -> str:
    """Bytes from the peer as a short, printable text for an error message."""
    text = data[:80].decode("ascii", "replace").encode("unicode_escape").decode("ascii")
    return " ".join(text.split())[:300]


class _KeyAgreement:
    """One side of an ECDH, X25519 or finite-field DH exchange; ``public`` is the client's value
    encoded as it is sent and hashed (a string, or an mpint for DH)."""

    def __init__(self, kind: str, size: int) -> None:
        self.kind = kind
        self._ec: ec.EllipticCurvePrivateKey | None = None
        self._x25519: x25519.X25519PrivateKey | None = None
        if kind == "ecdh":
            self._ec = ec.generate_private_key(_CURVES[size])
            self.public = string(self._ec.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
        elif kind == "x25519":
            self._x25519 = x25519.X25519PrivateKey.generate()
            self.public = string(self._x25519.public_key().public_bytes_raw())
        else:
            self._p = PRIMES[size]
            self._x = secrets.randbits(DH_EXPONENT_BITS) | 1 << (DH_EXPONENT_BITS - 1)
            self.public = mpint(pow(GENERATOR, self._x, self._p))

    def init_message(self) -> bytes:
        return bytes((MSG_KEX_INIT,)) + self.public

    def read_peer(self, reply: Reader) -> tuple[bytes, int]:
        """The peer's public value as hashed, and the shared secret K."""
        try:
            if self._ec is not None:
                peer = reply.string()
                point = ec.EllipticCurvePublicKey.from_encoded_point(self._ec.curve, peer)
                return string(peer), int.from_bytes(self._ec.exchange(ec.ECDH(), point), "big")
            if self._x25519 is not None:
                peer = reply.string()
                if len(peer) != 32:
                    raise ValueError("X25519 public value is not 32 bytes")
                shared = self._x25519.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
                return string(peer), int.from_bytes(shared, "big")
            f = reply.mpint()
            if not 1 < f < self._p - 1:
                raise ValueError("DH public value out of range")
            return mpint(f), pow(f, self._x, self._p)
        except ValueError as exc:
            raise LoginFailed(ErrorClass.KEX, f"key exchange failed: the server's public value is invalid ({exc})")


class Connection(asyncio.Protocol):
    """One TCP connection to a server, as the event loop's transport delivers it: the bytes
    received and not yet consumed (``buffer``), and a way to wait for more.

    The socket stays registered with the event loop for the whole login, and bytes are handed
    over as they arrive: no registration, future and extra system calls per read as with
    ``loop.sock_recv``, and no thread-pool address lookup per connect as with
    ``loop.sock_connect``: measurably less client CPU per login in alternating runs
    (``bench/login_cpu.py``).
    Reading pauses while more than ``MAX_BUFFERED_BYTES`` wait unread: a server that floods the
    connection cannot fill the monitor's memory.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()  # consumers delete what they have read; never rebound
        self.transport: asyncio.Transport | None = None
        self.eof = False  # the server closed its side
        self.error: Exception | None = None  # the connection broke (reset, ...)
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one without the subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_BUFFERED_BYTES and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.error = exc
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> None:
        """Wait until more bytes have arrived. ConnectionResetError when no more will: the
        server closed the connection (its reason, or "the server closed the connection")."""
        error = self.error
        if isinstance(error, OSError) and error.errno:
            raise ConnectionResetError(error.errno, error.strerror)
        if error is not None:
            raise ConnectionResetError(str(error) or type(error).__name__)
        if self.eof:
            raise ConnectionResetError("the server closed the connection")
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """Send what is written (a DISCONNECT), then close."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping anything not yet sent."""
        if self.transport is not None:
            self.transport.abort()


class _Transport:
    """Packets over a :class:`Connection`: sequence numbers, ciphers, the read buffer."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._buffer = conn.buffer
        self._send_cipher: PacketCipher = PlainCipher()
        self._recv_cipher: PacketCipher = PlainCipher()
        self.send_seq = 0
        self.recv_seq = 0
        self.last_packet_bytes = 0  # the size on the wire of the packet read last
        self._out: list[bytes] = []

    async def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            await self._conn.receive()

    async def read_version(self) -> bytes:
        """The server's version line; the lines before it are skipped (:func:`read_version_line`)."""
        for _ in range(MAX_BANNER_BYTES + 1):  # at least one more byte each round
            found = read_version_line(self._buffer)
            if found is not None:
                end, line = found
                del self._buffer[:end]
                return line
            await self._fill(len(self._buffer) + 1)
        raise LoginFailed(ErrorClass.BANNER, f"no SSH version line in the first {MAX_BANNER_BYTES} bytes")

    def queue(self, payload: bytes) -> None:
        self._out.append(self._send_cipher.seal(self.send_seq, payload))
        self.send_seq = (self.send_seq + 1) & 0xFFFFFFFF

    def queue_raw(self, data: bytes) -> None:
        self._out.append(data)

    def flush(self) -> None:
        data, self._out = b"".join(self._out), []
        self._conn.write(data)

    def set_send_cipher(self, cipher: PacketCipher) -> None:
        self._send_cipher = cipher

    def set_recv_cipher(self, cipher: PacketCipher) -> None:
        self._recv_cipher = cipher

    async def read_packet(self) -> bytes:
        cipher = self._recv_cipher
        if len(self._buffer) < cipher.head_bytes:
            await self._fill(cipher.head_bytes)
        size = cipher.packet_bytes(self.recv_seq, bytes(self._buffer[:cipher.head_bytes]))
        if len(self._buffer) < size:
            await self._fill(size)
        packet = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.last_packet_bytes = size
        payload = cipher.open(self.recv_seq, packet)
        self.recv_seq = (self.recv_seq + 1) & 0xFFFFFFFF
        if not payload:
            raise ProtocolError("empty message")
        return payload


def _disconnect_reason(payload: bytes) -> str:
    reader = Reader(payload, 1)
    try:
        code = reader.uint32()
        text = reader.string().decode("utf-8", "replace")
    except ProtocolError:
        return "the server disconnected"
    return f"the server disconnected (code {code}): {' '.join(text.split())[:200]}"


class _Login:
    def __init__(self, conn: Connection, username: str, client_key: ClientKey, offer: Offer,
                 decide: Callable[[str], HostKeyVerdict], progress: LoginProgress) -> None:
        self.wire = _Transport(conn)
        self.username = username
        self.client_key = client_key
        self.offer = offer
        self.decide = decide
        self.progress = progress
        self.strict = False
        self.in_initial_kex = True
        self.server_sig_algs: list[str] | None = None
        self.skipped_bytes = 0

    async def next_message(self, expected: set[int]) -> bytes:
        """The next message of a type in ``expected``; IGNORE, DEBUG and UNIMPLEMENTED are skipped
        (outside a strict initial key exchange), DISCONNECT ends the login.

        What is skipped is bounded by bytes (:data:`MAX_SKIPPED_BYTES` in a login) and, as
        everything in a login, by the caller's time limit; not by a count of messages.
        """
        while True:
            payload = await self.wire.read_packet()
            kind = payload[0]
            if kind in expected:
                return payload
            if kind == MSG_DISCONNECT:
                raise ServerDisconnected(_disconnect_reason(payload))
            if kind in (MSG_IGNORE, MSG_DEBUG, MSG_UNIMPLEMENTED) and not (self.strict and self.in_initial_kex):
                pass
            elif kind == MSG_USERAUTH_BANNER and MSG_USERAUTH_SUCCESS in expected:
                pass
            elif kind == MSG_EXT_INFO and not self.in_initial_kex:
                self._read_ext_info(payload)
            else:
                raise ProtocolError(f"unexpected message type {kind}")
            self.skipped_bytes += self.wire.last_packet_bytes
            if self.skipped_bytes > MAX_SKIPPED_BYTES:
                raise ProtocolError(f"more than {MAX_SKIPPED_BYTES // 1024} KiB of messages without an answer "
                                    "(IGNORE, DEBUG, banners)")

    def _read_ext_info(self, payload: bytes) -> None:
        reader = Reader(payload, 1)
        for _ in range(min(reader.uint32(), 64)):
            name = reader.string()
            value = reader.string()
            if name == b"server-sig-algs":
                self.server_sig_algs = value.decode("ascii", "replace").split(",")

    def kexinit(self) -> bytes:
        offer = self.offer
        return b"".join((
            bytes((MSG_KEXINIT,)), os.urandom(16),
            name_list((*offer.kex_algs, EXT_INFO_CLIENT, STRICT_KEX_CLIENT)),
            name_list(offer.host_key_algs),
            name_list(offer.ciphers), name_list(offer.ciphers),
            name_list(offer.macs), name_list(offer.macs),
            name_list(("none",)), name_list(("none",)),
            name_list(()), name_list(()),
            b"\x00", uint32(0),
        ))

    async def run(self) -> None:
        wire = self.wire
        client_kexinit = self.kexinit()
        wire.queue_raw(CLIENT_VERSION + b"\r\n")
        wire.queue(client_kexinit)
        wire.flush()
        server_version = await wire.read_version()
        if not server_version.startswith((b"SSH-2.0-", b"SSH-1.99-")):
            raise LoginFailed(ErrorClass.BANNER, "unsupported SSH protocol: "
                              + server_version[:80].decode("ascii", "replace"))
        server_kexinit = await self.next_message({MSG_KEXINIT})
        kexinit_seq = (wire.recv_seq - 1) & 0xFFFFFFFF
        kex_alg, host_key_alg, ciphers, macs = self._negotiate(server_kexinit, kexinit_seq)

        hash_name, kind, size = KEX_METHODS[kex_alg]
        agreement = _KeyAgreement(kind, size)
        wire.queue(agreement.init_message())
        wire.flush()
        reply = Reader(await self.next_message({MSG_KEX_REPLY}), 1)
        host_key_blob = reply.string()
        server_public, shared = agreement.read_peer(reply)
        signature = reply.string()
        shared_mpint = mpint(shared)
        exchange_hash = hashlib.new(hash_name, b"".join((
            string(CLIENT_VERSION), string(server_version), string(client_kexinit), string(server_kexinit),
            string(host_key_blob), agreement.public, server_public, shared_mpint,
        ))).digest()
        self._check_host_key(host_key_alg, host_key_blob, exchange_hash, signature)

        def keys(letter: bytes, size: int) -> bytes:
            return derive_key(hash_name, shared_mpint, exchange_hash, letter, exchange_hash, size)

        wire.queue(bytes((MSG_NEWKEYS,)))
        wire.set_send_cipher(self._cipher(ciphers[0], macs[0], keys, b"A", b"C", b"E"))
        if self.strict:
            wire.send_seq = 0
        wire.queue(bytes((MSG_SERVICE_REQUEST,)) + string(b"ssh-userauth"))
        wire.flush()
        await self.next_message({MSG_NEWKEYS})
        wire.set_recv_cipher(self._cipher(ciphers[1], macs[1], keys, b"B", b"D", b"F"))
        if self.strict:
            wire.recv_seq = 0
        self.in_initial_kex = False
        self.progress.kex_done = time.perf_counter()
        await self.next_message({MSG_SERVICE_ACCEPT})

        wire.queue(self._signed_auth_request(exchange_hash))
        wire.flush()
        try:
            answer = await self.next_message({MSG_USERAUTH_SUCCESS, MSG_USERAUTH_FAILURE})
        except ServerDisconnected as exc:  # OpenSSH: "Too many authentication failures" (MaxAuthTries)
            raise LoginFailed(ErrorClass.AUTH, f"public key authentication was refused: {exc}") from None
        if answer[0] == MSG_USERAUTH_FAILURE:
            reader = Reader(answer, 1)
            methods, partial = reader.name_list(), reader.boolean()
            if partial:
                raise LoginFailed(ErrorClass.AUTH, "the key was accepted but the server requires more "
                                  f"authentication ({','.join(methods)[:100]}): not usable for a heartbeat")
            raise LoginFailed(ErrorClass.AUTH, "public key authentication was refused")
        self.progress.auth_done = time.perf_counter()
        wire.queue(bytes((MSG_DISCONNECT,)) + uint32(DISCONNECT_BY_APPLICATION)
                   + string(b"heartbeat done") + string(b""))
        wire.flush()  # sent as the caller closes the connection

    def _negotiate(self, server_kexinit: bytes, kexinit_seq: int
                   ) -> tuple[str, str, tuple[str, str], tuple[str | None, str | None]]:
        reader = Reader(server_kexinit, 17)  # message type and cookie
        lists = [reader.name_list() for _ in range(10)]
        if reader.boolean():  # first_kex_packet_follows: only right if both first choices agree
            raise ProtocolError("the server sent a guessed key exchange packet (not supported)")
        self.strict = STRICT_KEX_SERVER in lists[0]
        if self.strict and kexinit_seq != 0:  # OpenSSH: "KEXINIT was not the first packet"
            raise LoginFailed(ErrorClass.KEX, "key exchange failed: strict key exchange and KEXINIT was not "
                              "the first message")
        kex_alg = _first_common("key exchange algorithm", self.offer.kex_algs, lists[0])
        host_key_alg = _first_common("host key algorithm", self.offer.host_key_algs, lists[1])
        cipher_c2s = _first_common("cipher", self.offer.ciphers, lists[2])
        cipher_s2c = _first_common("cipher", self.offer.ciphers, lists[3])
        mac_c2s = None if CIPHER_SIZES[cipher_c2s][2] else _first_common("MAC", self.offer.macs, lists[4])
        mac_s2c = None if CIPHER_SIZES[cipher_s2c][2] else _first_common("MAC", self.offer.macs, lists[5])
        _first_common("compression", ("none",), lists[6])
        _first_common("compression", ("none",), lists[7])
        self.progress.strict_kex = self.strict
        return kex_alg, host_key_alg, (cipher_c2s, cipher_s2c), (mac_c2s, mac_s2c)

    @staticmethod
    def _cipher(name: str, mac: str | None, keys: Callable[[bytes, int], bytes],
                iv_letter: bytes, key_letter: bytes, mac_letter: bytes) -> PacketCipher:
        key_bytes, iv_bytes, _ = CIPHER_SIZES[name]
        mac_key = keys(mac_letter, MACS[mac][1]) if mac else b""
        iv = keys(iv_letter, iv_bytes) if iv_bytes else b""
        return make_cipher(name, mac, keys(key_letter, key_bytes), iv, mac_key)

    def _check_host_key(self, host_key_alg: str, blob: bytes, exchange_hash: bytes, signature: bytes) -> None:
        try:
            key = decode_host_key(blob)
        except UnusableKey as exc:
            raise LoginFailed(ErrorClass.KEX, f"key exchange failed: {exc}")
        if key.algorithm.decode() != HOST_KEY_ALGS[host_key_alg]:
            raise LoginFailed(ErrorClass.KEX, f"key exchange failed: the server agreed on {host_key_alg} "
                              f"but sent a {key.algorithm.decode('ascii', 'replace')} key")
        if not key.verify(host_key_alg.encode(), exchange_hash, signature):
            raise LoginFailed(ErrorClass.KEX, "key exchange failed: the host key's signature does not verify "
                              "(the server does not hold the private key it presents)")
        presented = key.public_line()
        self.progress.host_key = presented
        self.progress.host_key_at = time.perf_counter()
        verdict = self.progress.verdict = self.decide(presented)
        if not verdict.accept:
            raise LoginFailed(verdict.error_class or ErrorClass.HOST_KEY_CHANGED, verdict.message)

    def _signed_auth_request(self, session_id: bytes) -> bytes:
        key = self.client_key
        sig_alg = self._signature_algorithm()
        user = self.username.encode("utf-8")
        blob = key.public_blob
        request = b"".join((
            bytes((MSG_USERAUTH_REQUEST,)), string(user), string(b"ssh-connection"), string(b"publickey"),
            b"\x01", string(sig_alg), string(blob),
        ))
        return request + string(key.sign(string(session_id) + request, sig_alg))

    def _signature_algorithm(self) -> bytes:
        algs = self.client_key.sig_algorithms
        if self.client_key.algorithm != b"ssh-rsa":
            return algs[0]
        if self.server_sig_algs is None:
            return b"ssh-rsa"  # a server without extension negotiation knows only SHA-1 RSA signatures
        return next((alg for alg in algs if alg.decode() in self.server_sig_algs), b"ssh-rsa")


async def login(conn: Connection, username: str, client_key: ClientKey, offer: Offer,
                decide: Callable[[str], HostKeyVerdict], progress: LoginProgress) -> None:
    """Log in over ``conn`` (connected; what it has received is where the login starts: the
    server's version line, perhaps more) and queue the DISCONNECT.

    Raises :class:`LoginFailed`; the caller bounds the time (``asyncio.timeout``) and closes the
    connection (:meth:`Connection.close` sends the DISCONNECT).
    """
    try:
        await _Login(conn, username, client_key, offer, decide, progress).run()
    except LoginFailed:
        raise
    except ProtocolError as exc:
        phase = "key exchange" if progress.kex_done is None else "authentication"
        raise LoginFailed(ErrorClass.KEX if progress.kex_done is None else ErrorClass.OTHER,
                          f"protocol error during {phase}: {exc}")
    except (ConnectionError, EOFError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if progress.kex_done is None:
            raise LoginFailed(ErrorClass.KEX, f"connection closed during key exchange: {reason}")
        raise LoginFailed(ErrorClass.OTHER, f"connection closed during authentication: {reason}")
