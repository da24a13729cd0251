"""SSH-2 binary packets and transport ciphers, as much as a login needs.

RFC 4251 (data types), RFC 4253 (packets, key derivation), RFC 5647 and OpenSSH's PROTOCOL
(AES-GCM, encrypt-then-MAC), OpenSSH's PROTOCOL.chacha20poly1305. The cryptography itself is
the ``cryptography`` package's; this module only frames bytes around it.

A cipher object seals outgoing payloads and opens incoming packets for one direction. Every
length that comes from the peer is checked before it is used, so a hostile server can make a
login fail but cannot make it allocate or wait without bound.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.poly1305 import Poly1305

MAX_PACKET_BYTES = 256 * 1024  # OpenSSH's own limit for one packet
MIN_PADDING = 4

_UINT32 = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent bytes that are not valid SSH (message for people, no key material)."""


# -- data types (RFC 4251 section 5) -------------------------------------------------------------

def uint32(value: int) -> bytes:
    return _UINT32.pack(value)


def string(value: bytes) -> bytes:
    return _UINT32.pack(len(value)) + value


def name_list(names: Sequence[str]) -> bytes:
    return string(",".join(names).encode("ascii"))


def mpint(value: int) -> bytes:
    if value == 0:
        return uint32(0)
    data = value.to_bytes(value.bit_length() // 8 + 1, "big")  # one spare bit keeps it positive
    return string(data)


class Reader:
    """Reads the fields of one message payload; running past its end is a :class:`ProtocolError`."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self._data = data
        self._offset = offset

    def byte(self) -> int:
        if self._offset >= len(self._data):
            raise ProtocolError("message ends early")
        self._offset += 1
        return self._data[self._offset - 1]

    def boolean(self) -> bool:
        return self.byte() != 0

    def uint32(self) -> int:
        end = self._offset + 4
        if end > len(self._data):
            raise ProtocolError("message ends early")
        (value,) = _UINT32.unpack_from(self._data, self._offset)
        self._offset = end
        return int(value)

    def string(self) -> bytes:
        length = self.uint32()
        end = self._offset + length
        if end > len(self._data):
            raise ProtocolError("a field is longer than its message")
        value = self._data[self._offset:end]
        self._offset = end
        return value

    def name_list(self) -> list[str]:
        raw = self.string()
        return raw.decode("ascii", "replace").split(",") if raw else []

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)

    def end(self) -> None:
        """The data must end here: trailing bytes are a :class:`ProtocolError`."""
        if self._offset != len(self._data):
            raise ProtocolError(f"{len(self._data) - self._offset} bytes after the last field")

    def skip(self, count: int) -> None:
        if self._offset + count > len(self._data):
            raise ProtocolError("message ends early")
        self._offset += count


def derive_key(hash_name: str, shared_secret: bytes, exchange_hash: bytes, letter: bytes,
               session_id: bytes, size: int) -> bytes:
    """RFC 4253 7.2: K1 = HASH(K || H || letter || session_id), extended by HASH(K || H || K1 ...).

    ``shared_secret`` is K already encoded as an mpint."""
    key = hashlib.new(hash_name, shared_secret + exchange_hash + letter + session_id).digest()
    while len(key) < size:
        key += hashlib.new(hash_name, shared_secret + exchange_hash + key).digest()
    return key[:size]


# -- packet ciphers -------------------------------------------------------------------------------

class PacketCipher(Protocol):
    head_bytes: int  # bytes needed from a packet before its total size is known

    def seal(self, seq: int, payload: bytes) -> bytes: ...

    def packet_bytes(self, seq: int, head: bytes) -> int:
        """The whole packet's size on the wire (head, body and tag) from its first bytes."""
        ...

    def open(self, seq: int, packet: bytes) -> bytes:
        """The payload of a complete packet; a forged or damaged packet is a ProtocolError."""
        ...


def _padding(unpadded: int, block: int) -> int:
    pad = block - unpadded % block
    return pad + block if pad < MIN_PADDING else pad


def _checked_length(length: int, block: int) -> int:
    if length < 1 + MIN_PADDING or length > MAX_PACKET_BYTES:
        raise ProtocolError(f"packet length {length} out of bounds (a corrupt stream or not SSH)")
    if length % block:
        raise ProtocolError(f"packet length {length} is not a multiple of the cipher block")
    return length


def _payload(body: bytes) -> bytes:
    """The payload of ``padding_length || payload || padding``."""
    pad = body[0]
    if pad < MIN_PADDING or pad + 1 > len(body):
        raise ProtocolError("packet padding out of bounds")
    return body[1:len(body) - pad]


class PlainCipher:
    """Before the first NEWKEYS: no encryption, no MAC, blocks of 8."""

    head_bytes = 4

    def seal(self, seq: int, payload: bytes) -> bytes:
        pad = _padding(5 + len(payload), 8)
        return uint32(1 + len(payload) + pad) + bytes((pad,)) + payload + os.urandom(pad)

    def packet_bytes(self, seq: int, head: bytes) -> int:
        return 4 + _checked_length(_UINT32.unpack(head)[0], 1)

    def open(self, seq: int, packet: bytes) -> bytes:
        return _payload(packet[4:])


class AesGcmCipher:
    """aes128-gcm@openssh.com / aes256-gcm@openssh.com (RFC 5647 as OpenSSH runs it: the length
    is sent in the clear as associated data; the nonce's last 8 bytes count packets)."""

    head_bytes = 4
    tag_bytes = 16

    def __init__(self, key: bytes, iv: bytes) -> None:
        self._aead = AESGCM(key)
        self._fixed = iv[:4]
        self._invocation = int.from_bytes(iv[4:12], "big")

    def _nonce(self) -> bytes:
        nonce = self._fixed + self._invocation.to_bytes(8, "big")
        self._invocation = (self._invocation + 1) & 0xFFFFFFFFFFFFFFFF
        return nonce

    def seal(self, seq: int, payload: bytes) -> bytes:
        pad = _padding(1 + len(payload), 16)
        length = uint32(1 + len(payload) + pad)
        body = bytes((pad,)) + payload + os.urandom(pad)
        return length + self._aead.encrypt(self._nonce(), body, length)

    def packet_bytes(self, seq: int, head: bytes) -> int:
        return 4 + _checked_length(_UINT32.unpack(head)[0], 16) + self.tag_bytes

    def open(self, seq: int, packet: bytes) -> bytes:
        try:
            body = self._aead.decrypt(self._nonce(), packet[4:], packet[:4])
        except InvalidTag:
            raise ProtocolError("packet authentication failed (AES-GCM tag)") from None
        return _payload(body)


class ChaChaPolyCipher:
    """chacha20-poly1305@openssh.com: the length encrypted with the second half of the key, the
    body with the first, Poly1305 over both; the packet's sequence number is the nonce."""

    head_bytes = 4
    tag_bytes = 16
    _COUNTER_0 = (0).to_bytes(8, "little")
    _COUNTER_1 = (1).to_bytes(8, "little")

    def __init__(self, key: bytes) -> None:
        self._body_key = key[:32]
        self._length_key = key[32:64]

    def _chacha(self, key: bytes, counter: bytes, nonce: bytes, data: bytes) -> bytes:
        return Cipher(algorithms.ChaCha20(key, counter + nonce), mode=None).encryptor().update(data)

    def _tag(self, nonce: bytes, data: bytes) -> bytes:
        poly_key = self._chacha(self._body_key, self._COUNTER_0, nonce, bytes(32))
        return Poly1305.generate_tag(poly_key, data)

    def seal(self, seq: int, payload: bytes) -> bytes:
        nonce = seq.to_bytes(8, "big")
        pad = _padding(1 + len(payload), 8)
        length = self._chacha(self._length_key, self._COUNTER_0, nonce, uint32(1 + len(payload) + pad))
        body = self._chacha(self._body_key, self._COUNTER_1, nonce, bytes((pad,)) + payload + os.urandom(pad))
        return length + body + self._tag(nonce, length + body)

    def packet_bytes(self, seq: int, head: bytes) -> int:
        length = self._chacha(self._length_key, self._COUNTER_0, seq.to_bytes(8, "big"), head)
        return 4 + _checked_length(_UINT32.unpack(length)[0], 8) + self.tag_bytes

    def open(self, seq: int, packet: bytes) -> bytes:
        nonce = seq.to_bytes(8, "big")
        if not hmac.compare_digest(self._tag(nonce, packet[:-16]), packet[-16:]):
            raise ProtocolError("packet authentication failed (Poly1305 tag)")
        return _payload(self._chacha(self._body_key, self._COUNTER_1, nonce, packet[4:-16]))


class AesCtrHmacCipher:
    """aes128/192/256-ctr with hmac-sha2-256/512, encrypt-and-MAC (RFC 4253 6.4) or
    encrypt-then-MAC (the ``-etm@openssh.com`` MACs: length in the clear, MAC over ciphertext)."""

    def __init__(self, key: bytes, iv: bytes, mac_key: bytes, mac_hash: str, etm: bool) -> None:
        context = Cipher(algorithms.AES(key), modes.CTR(iv))
        self._encryptor = context.encryptor()
        self._decryptor = context.decryptor()
        self._mac_key = mac_key
        self._mac_hash = mac_hash
        self._mac_bytes = hashlib.new(mac_hash).digest_size
        self._etm = etm
        self.head_bytes = 4 if etm else 16
        self._first_block = b""

    def _mac(self, seq: int, data: bytes) -> bytes:
        return hmac.digest(self._mac_key, uint32(seq) + data, self._mac_hash)

    def seal(self, seq: int, payload: bytes) -> bytes:
        if self._etm:
            pad = _padding(1 + len(payload), 16)
            length = uint32(1 + len(payload) + pad)
            sealed = length + self._encryptor.update(bytes((pad,)) + payload + os.urandom(pad))
            return sealed + self._mac(seq, sealed)
        pad = _padding(5 + len(payload), 16)
        packet = uint32(1 + len(payload) + pad) + bytes((pad,)) + payload + os.urandom(pad)
        return self._encryptor.update(packet) + self._mac(seq, packet)

    def packet_bytes(self, seq: int, head: bytes) -> int:
        if self._etm:
            return 4 + _checked_length(_UINT32.unpack(head)[0], 16) + self._mac_bytes
        self._first_block = self._decryptor.update(head)
        length = int(_UINT32.unpack_from(self._first_block)[0])
        _checked_length(4 + length, 16)  # without encrypt-then-MAC the length field is in the blocks
        return 4 + length + self._mac_bytes

    def open(self, seq: int, packet: bytes) -> bytes:
        mac = packet[-self._mac_bytes:]
        if self._etm:
            if not hmac.compare_digest(self._mac(seq, packet[:-self._mac_bytes]), mac):
                raise ProtocolError("packet authentication failed (MAC)")
            return _payload(self._decryptor.update(packet[4:-self._mac_bytes]))
        plain = self._first_block + self._decryptor.update(packet[16:-self._mac_bytes])
        if not hmac.compare_digest(self._mac(seq, plain), mac):
            raise ProtocolError("packet authentication failed (MAC)")
        return _payload(plain[4:])


# -- what a login offers and how each cipher is keyed ---------------------------------------------

# name: (key bytes, iv bytes, AEAD)
CIPHER_SIZES: dict[str, tuple[int, int, bool]] = {
    "aes128-gcm@openssh.com": (16, 12, True),
    "aes256-gcm@openssh.com": (32, 12, True),
    "chacha20-poly1305@openssh.com": (64, 0, True),
    "aes128-ctr": (16, 16, False),
    "aes192-ctr": (24, 16, False),
    "aes256-ctr": (32, 16, False),
}
# name: (hash, key bytes, encrypt-then-MAC)
MACS: dict[str, tuple[str, int, bool]] = {
    "hmac-sha2-256-etm@openssh.com": ("sha256", 32, True),
    "hmac-sha2-512-etm@openssh.com": ("sha512", 64, True),
    "hmac-sha2-256": ("sha256", 32, False),
    "hmac-sha2-512": ("sha512", 64, False),
}


def make_cipher(name: str, mac_name: str | None, key: bytes, iv: bytes, mac_key: bytes) -> PacketCipher:
    if name.startswith("aes") and name.endswith("-gcm@openssh.com"):
        return AesGcmCipher(key, iv)
    if name == "chacha20-poly1305@openssh.com":
        return ChaChaPolyCipher(key)
    if mac_name is None:
        raise ValueError(f"{name} needs a MAC")
    mac_hash, _, etm = MACS[mac_name]
    return AesCtrHmacCipher(key, iv, mac_key, mac_hash, etm)
