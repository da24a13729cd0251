"""The bastion hop: one authenticated SSH connection to a jump host, and ``direct-tcpip``
channels through it (RFC 4254 7.2) that the login client runs over exactly as over a TCP
connection.

The hop is asyncssh (a general SSH library: the monitor needs channels, flow control and window
handling here, which the login client deliberately does not implement). What the monitor holds
it to is the same as for any server: its host key is decided by
:func:`heartbeat.ssh.decide_host_key` with the bastion's own pin (never accepted unseen:
asyncssh's "no known_hosts" mode, which accepts any key, is not used), its client key is the one
of the bastion's own Airflow connection, public-key authentication only, no agent, no
``~/.ssh/config``, no keepalive, and every step bounded by the caller's time limits.

A target's login then goes through :class:`ChannelConnection`, a :class:`Connection` whose bytes
come from and go to the channel: the banner, key exchange and authentication with the target are
the login client's own, end to end encrypted between the monitor and the target; the bastion
only relays bytes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from heartbeat.models import UNREACHABLE_ERRNOS, ErrorClass
from heartbeat.ssh.hostkeys import HostKeyVerdict
from heartbeat.ssh.keys import ClientKey
from heartbeat.ssh.login import Connection, LoginFailed

logging.getLogger("asyncssh").setLevel(logging.WARNING)  # about 10 INFO lines per login otherwise

OPEN_ADMINISTRATIVELY_PROHIBITED = 1
OPEN_CONNECT_FAILED = 2


class HopFailed(Exception):
    """The bastion hop could not be set up: the error class of the bastion itself and why."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message


# How a hop failure reads in the cause recorded on every server behind the bastion
# ("unreachable via bastion-3: bastion timed out").
HOP_WORDS: dict[ErrorClass, str] = {
    ErrorClass.TIMEOUT: "bastion timed out",
    ErrorClass.REFUSED: "bastion refused the connection",
    ErrorClass.UNREACHABLE: "bastion unreachable",
    ErrorClass.DNS: "bastion name does not resolve",
    ErrorClass.BANNER: "bastion is not an SSH server",
    ErrorClass.KEX: "key exchange with the bastion failed",
    ErrorClass.HOST_KEY_CHANGED: "bastion host key changed",
    ErrorClass.HOST_KEY_UNKNOWN: "bastion host key not known",
    ErrorClass.AUTH: "bastion refused the monitor's key",
    ErrorClass.PATH_DOWN: "the path to the bastion is down",
    ErrorClass.OTHER: "bastion hop failed",
}


@dataclass
class HopSpec:
    """One hop: where the bastion is, who logs in, and the host key decision for it."""

    name: str
    host: str
    port: int
    username: str
    key: ClientKey = field(repr=False)
    host_key_algs: tuple[str, ...]
    decide: Callable[[str], HostKeyVerdict]
    connect_timeout_s: float
    login_timeout_s: float


def _asyncssh_key(key: ClientKey) -> Any:
    """The client key as asyncssh takes it (in memory only)."""
    import asyncssh
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    return asyncssh.import_private_key(key.private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))


def _client_class(decide: Callable[[str], HostKeyVerdict], seen: dict[str, Any]) -> Any:
    import asyncssh

    class _Client(asyncssh.SSHClient):
        def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
            presented = " ".join(key.export_public_key("openssh").decode("ascii").split()[:2])
            verdict = decide(presented)
            seen["host_key"], seen["verdict"] = presented, verdict
            return verdict.accept

    return _Client


async def open_hop(spec: HopSpec, tunnel: Any = None) -> Any:
    """Connect and log in to a bastion (through ``tunnel``, an open hop, for a chain); returns the
    asyncssh connection. Raises :class:`HopFailed` with the bastion's own error class."""
    import asyncssh

    seen: dict[str, Any] = {}
    try:
        async with asyncio.timeout(spec.connect_timeout_s + spec.login_timeout_s):
            return await asyncssh.connect(
                spec.host, spec.port, tunnel=tunnel, username=spec.username,
                client_factory=_client_class(spec.decide, seen),
                known_hosts=([], [], []),  # nothing trusted unseen: every key goes to decide()
                server_host_key_algs=list(spec.host_key_algs) or "default",
                client_keys=[_asyncssh_key(spec.key)], agent_path=None, config=[], preferred_auth="publickey",
                password=None, kbdint_auth=False, password_auth=False, gss_auth=False, host_based_auth=False,
                connect_timeout=spec.connect_timeout_s, login_timeout=spec.login_timeout_s,
                keepalive_interval=0, compression_algs=None, ignore_encrypted=True,
            )
    except asyncssh.HostKeyNotVerifiable:
        verdict = seen.get("verdict")
        if isinstance(verdict, HostKeyVerdict) and verdict.error_class is not None:
            raise HopFailed(verdict.error_class, verdict.message) from None
        raise HopFailed(ErrorClass.HOST_KEY_CHANGED, "the bastion's host key was not accepted") from None
    except asyncssh.PermissionDenied as exc:
        raise HopFailed(ErrorClass.AUTH, f"the bastion refused the key of the monitor ({exc.reason})") from None
    except asyncssh.KeyExchangeFailed as exc:
        raise HopFailed(ErrorClass.KEX, f"key exchange with the bastion failed: {exc.reason}") from None
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError) as exc:
        phase = ErrorClass.KEX if "host_key" in seen else ErrorClass.BANNER
        raise HopFailed(phase, f"the bastion closed the connection: {getattr(exc, 'reason', exc)}") from None
    except TimeoutError:
        raise HopFailed(ErrorClass.TIMEOUT, f"no login to the bastion within "
                        f"{spec.connect_timeout_s + spec.login_timeout_s:g} s") from None
    except ConnectionRefusedError:
        raise HopFailed(ErrorClass.REFUSED, f"connection refused on port {spec.port}") from None
    except asyncssh.ChannelOpenError as exc:  # the tunnel's bastion would not forward to this one
        error = channel_open_error(exc, spec.host, spec.port, "the previous bastion")
        raise HopFailed(error.error_class, error.message) from None
    except OSError as exc:
        if exc.errno in UNREACHABLE_ERRNOS:
            raise HopFailed(ErrorClass.UNREACHABLE, f"{exc.strerror} ({spec.host})") from None
        if isinstance(exc, socket.gaierror):
            raise HopFailed(ErrorClass.DNS, f"name {spec.host!r} does not resolve") from None
        raise HopFailed(ErrorClass.OTHER, f"connect failed: {exc.strerror or exc}") from None


def channel_open_error(exc: Any, host: str, port: int, bastion: str) -> LoginFailed:
    """The class of a refused ``direct-tcpip`` channel: the bastion's policy (administratively
    prohibited: ``permitopen``, ``AllowTcpForwarding``) or its connect to the target (which then
    is the target's own reason: refused, unreachable, timed out)."""
    reason = str(getattr(exc, "reason", "") or exc)
    code = getattr(exc, "code", None)
    if code == OPEN_ADMINISTRATIVELY_PROHIBITED:
        return LoginFailed(
            ErrorClass.FORWARDING_REFUSED,
            f"{bastion} refused to forward to {host}:{port} ({reason}): its authorized_keys line must permit it "
            "(heartbeat keys authorized-line --bastion) and its sshd allow TCP forwarding",
        )
    lowered = reason.lower()
    if code == OPEN_CONNECT_FAILED:
        if "refused" in lowered:
            return LoginFailed(ErrorClass.REFUSED, f"connection refused on port {port} (seen by {bastion})")
        if "timed out" in lowered:
            return LoginFailed(ErrorClass.TIMEOUT, f"TCP connect to port {port} timed out (seen by {bastion})")
        if "no route" in lowered or "unreachable" in lowered:
            return LoginFailed(ErrorClass.UNREACHABLE, f"{reason} ({host}, seen by {bastion})")
        if "name" in lowered or "resolve" in lowered or "known" in lowered:
            return LoginFailed(ErrorClass.DNS, f"name {host!r} does not resolve on {bastion}: {reason}")
    return LoginFailed(ErrorClass.OTHER, f"{bastion} could not open a channel to {host}:{port}: {reason}")


class ChannelConnection(Connection):
    """A ``direct-tcpip`` channel as the login client's :class:`Connection`: bytes received
    wait in ``buffer``, EOF and a closed channel end :meth:`receive` as a closed socket would,
    and reading pauses while too much waits unread (the channel's window then fills, so the
    bastion holds the rest)."""

    def connection_made(self, transport: Any) -> None:  # an asyncssh SSHTCPChannel
        self.transport = cast(asyncio.Transport, transport)

    def session_started(self) -> None:
        pass

    def eof_received(self) -> bool:
        if not self.buffer:
            self.error = ConnectionResetError("the channel through the bastion was closed (by the bastion or the "
                                              "target) before any byte came")
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None and not self.buffer and self.error is None:
            exc = ConnectionResetError("the bastion closed the channel before any byte came")
        super().connection_lost(exc)

    def data_received(self, data: bytes, datatype: Any = None) -> None:  # type: ignore[override]
        super().data_received(data)

    def pause_writing(self) -> None:  # the login writes a few packets; the window always holds them
        pass

    def resume_writing(self) -> None:
        pass


async def open_channel(hop: Any, host: str, port: int, timeout_s: float, bastion: str) -> ChannelConnection:
    """A ``direct-tcpip`` channel from bastion connection ``hop`` to ``host:port``, within
    ``timeout_s`` (the bastion's own connect to the target may wait much longer)."""
    import asyncssh

    try:
        async with asyncio.timeout(timeout_s):
            _, conn = await hop.create_connection(ChannelConnection, host, port, encoding=None)
    except TimeoutError:
        raise LoginFailed(ErrorClass.TIMEOUT,
                          f"TCP connect to port {port} through {bastion} timed out after {timeout_s:g} s") from None
    except asyncssh.ChannelOpenError as exc:
        raise channel_open_error(exc, host, port, bastion) from None
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError, OSError) as exc:
        raise LoginFailed(ErrorClass.PATH_DOWN, f"the connection to {bastion} broke: {exc}") from None
    return cast(ChannelConnection, conn)


async def close_hop(hop: Any, timeout_s: float = 2.0) -> None:
    """Close a bastion connection, waiting a bounded time for it to end."""
    try:
        hop.close()
        async with asyncio.timeout(timeout_s):
            await hop.wait_closed()
    except Exception:  # closing never fails a cycle
        hop.abort()
