"""The SSH probe: TCP connect, SSH banner, key exchange with host key check, public-key
authentication, clean close. No remote command, no pty, no forwarding of any kind.

The login itself is :mod:`heartbeat.ssh.login`, not the provider's ``SSHHook``: a prober needs
explicit per-phase timeouts, exactly one attempt, and many logins in flight from one process;
``SSHHook`` retries every error three times and has no connect timeout by default.

Three bounds keep one bad host from delaying the others, and the prober from flooding anyone:
- sockets waiting for TCP or for a banner hold no CPU and are bounded only by ``max_open_sockets``;
- logins (key exchange and authentication, which cost CPU on both sides) are bounded by
  ``concurrency``, and the time a server waits for a login slot does not count against it;
- connections to one address and port are bounded by ``max_per_destination``, under sshd's
  default ``MaxStartups`` (10 unauthenticated connections), for inventories where several
  names share an address (jump hosts, port forwards, the test lab).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from heartbeat.config import HostKeyPolicy
from heartbeat.models import UNREACHABLE_ERRNOS, ErrorClass, HopResult, ProbeResult, Server
from heartbeat.ssh import (
    KEX_METHODS,
    ClientCredentials,
    Connection,
    CredentialsError,
    HostKeyVerdict,
    LoginFailed,
    LoginProgress,
    Offer,
    decide_host_key,
    fingerprint,
    host_key_algs_to_offer,
    known_hosts_keys,
    login,
    read_version_line,
)
from heartbeat.ssh.jump import HOP_WORDS, HopFailed, HopSpec, close_hop, open_channel, open_hop

MAX_MESSAGE_CHARS = 300

DEFAULT_KEX_ALGS: tuple[str, ...] = tuple(KEX_METHODS)  # the order and its reasons: ssh.login.KEX_METHODS


def supported_kex_algs() -> tuple[str, ...]:
    return tuple(KEX_METHODS)


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeOptions:
    connect_timeout_s: float = 5.0
    probe_timeout_s: float = 10.0
    concurrency: int = 32
    # Room for about 480 silent or blackholed hosts per task while 32 logins go on; each socket
    # is a file descriptor, and 1,024 met the common default limit of 1,024 per process.
    max_open_sockets: int = 512
    max_per_destination: int = 8
    host_key_policy: HostKeyPolicy = HostKeyPolicy.TOFU
    known_hosts_lines: tuple[str, ...] = ()
    kex_algs: tuple[str, ...] = DEFAULT_KEX_ALGS
    # (conn_id, seconds): the TCP connect bound of the servers using that SSH connection (its
    # ``conn_timeout`` extra), instead of ``connect_timeout_s``.
    connect_timeouts: tuple[tuple[str, float], ...] = ()
    # Channels (target logins) in flight at once through one bastion connection.
    bastion_max_channels: int = 16


@dataclass
class _Trace(LoginProgress):
    """Timestamps (perf_counter seconds) and facts gathered while one probe runs."""

    started: float = 0.0
    tcp_done: float | None = None
    banner: str | None = None

    def ms(self, start: float | None, end: float | None) -> float | None:
        if start is None or end is None:
            return None
        return round((end - start) * 1000.0, 3)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _printable(data: bytes) -> str:
    return _short(data[:80].decode("ascii", "replace").encode("unicode_escape").decode("ascii"))


async def _resolve(host: str, port: int, timeout_s: float) -> list[tuple[int, tuple]]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, (host, port))]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), timeout_s
        )
    except TimeoutError:
        raise LoginFailed(ErrorClass.DNS, f"name lookup of {host!r} took longer than {timeout_s:g} s")
    except socket.gaierror as exc:
        raise LoginFailed(ErrorClass.DNS, f"name {host!r} does not resolve: {exc.strerror}")
    return [(info[0], info[4]) for info in infos]


async def _connect_tcp(host: str, port: int, timeout_s: float) -> Connection:
    """Connect to the first address that answers, within ``timeout_s`` in all; TCP_NODELAY set
    (without it a login stalls 40 ms on delayed ACK)."""
    deadline = time.perf_counter() + timeout_s
    addresses = await _resolve(host, port, timeout_s)
    loop = asyncio.get_running_loop()
    last: LoginFailed | None = None
    for family, sockaddr in addresses[:8]:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(remaining):
                transport, conn = await loop.create_connection(Connection, sockaddr[0], sockaddr[1], family=family)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn
        except TimeoutError:
            last = LoginFailed(ErrorClass.TIMEOUT, f"TCP connect to port {port} timed out after {timeout_s:g} s")
        except ConnectionRefusedError:
            last = LoginFailed(ErrorClass.REFUSED, f"connection refused on port {port}")
        except OSError as exc:
            last = connect_error(exc, sockaddr[0])
    raise last or LoginFailed(ErrorClass.TIMEOUT, f"TCP connect timed out after {timeout_s:g} s")


def connect_error(exc: OSError, address: str) -> LoginFailed:
    """The class of an error from the TCP connect. A reset there means the server accepted the
    connection and reset it before the client saw the connect complete (the event loop reads
    SO_ERROR only when it gets to the socket; on a busy machine the RST is there first): that is a
    reset before the SSH banner, as when it comes a moment later."""
    if exc.errno in UNREACHABLE_ERRNOS:
        return LoginFailed(ErrorClass.UNREACHABLE, f"{exc.strerror} ({address})")
    if exc.errno == errno.ECONNRESET:
        return LoginFailed(ErrorClass.BANNER, f"connection reset before the SSH banner: {exc.strerror or exc}")
    return LoginFailed(ErrorClass.OTHER, f"TCP connect failed: {exc.strerror or exc}")


async def _read_banner(conn: Connection, deadline: float) -> str:
    """Wait until the server's SSH version line is complete and return it; it stays in
    ``conn.buffer``, where the login goes on from. Lines before it (RFC 4253 4.2) are allowed
    within the bounds of :func:`heartbeat.ssh.read_version_line`.

    Checked before a login slot is taken, so a silent listener, a dripping or oversized banner and
    a non-SSH service each get their own clear error and hold no slot.
    """
    data = conn.buffer
    while True:  # bounded: each round has more bytes, and read_version_line refuses too many
        if data.startswith(b"Exceeded MaxStartups"):
            raise LoginFailed(
                ErrorClass.REFUSED,
                "sshd turned the connection away: Exceeded MaxStartups (too many unauthenticated connections)",
            )
        found = read_version_line(data)
        if found is not None:
            return found[1].decode("ascii", "replace")
        remaining = deadline - time.perf_counter()
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                await conn.receive()
        except TimeoutError:
            if b"\n" in data:
                raise LoginFailed(ErrorClass.BANNER, f"not an SSH server: it sent {_printable(bytes(data))} "
                                  "and no SSH version line before the probe timeout")
            raise LoginFailed(ErrorClass.TIMEOUT, "no SSH banner before the probe timeout")
        except ConnectionResetError as exc:
            if data:
                raise LoginFailed(ErrorClass.BANNER, f"not an SSH server: it sent {_printable(bytes(data))} "
                                  "and closed the connection")
            if conn.error is None:
                raise LoginFailed(ErrorClass.BANNER, "server closed the connection without an SSH banner")
            raise LoginFailed(ErrorClass.BANNER, f"connection reset before the SSH banner: {exc.strerror or exc}")


@dataclass
class _Hop:
    """A bastion connection of this probe run, or why there is none."""

    bastion: Server
    connection: Any = None  # asyncssh.SSHClientConnection
    failed: HopResult | None = None  # the hop that failed: this one, or one before it on the path
    channel_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(16))


class Prober:
    """Probes servers concurrently within the bounds of :class:`ProbeOptions`.

    A server behind bastions (``Server.path``) is probed through one connection per bastion and
    probe run: the first of its servers to need it opens it, the others wait for that one, and
    each target's login runs over its own ``direct-tcpip`` channel with the same client, bounds
    and error classes as a direct login. When the hop fails, its servers are not probed: each
    gets ``path_down`` with the bastion's failure as the cause, and :attr:`hops` says what failed.
    """

    def __init__(
        self,
        options: ProbeOptions,
        credentials: Mapping[str, ClientCredentials | CredentialsError],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.options = options
        self._connect_timeouts = dict(options.connect_timeouts)
        self.credentials = credentials
        self.now = now
        self._login_slots: asyncio.Semaphore | None = None
        self._socket_slots: asyncio.Semaphore | None = None
        self._destination_slots: dict[tuple[Any, ...], asyncio.Semaphore] = {}
        self._hops: dict[tuple[int, ...], asyncio.Task[_Hop]] = {}
        self.hops: list[HopResult] = []  # every bastion hop of the run, in the order they were set up

    def _host_key_rule(self, server: Server) -> tuple[tuple[str, ...], Callable[[str], HostKeyVerdict]]:
        """The host key algorithms to offer ``server`` (the trusted keys' types first) and the
        decision on the key it presents."""
        known, revoked = (
            known_hosts_keys(self.options.known_hosts_lines, server.host, server.port)
            if self.options.known_hosts_lines
            else (set(), set())
        )
        trusted = (known | ({server.host_key} if server.host_key else set())) - revoked

        def decide(presented: str) -> HostKeyVerdict:
            return decide_host_key(presented, server.host_key, known, revoked, self.options.host_key_policy)

        return host_key_algs_to_offer(trusted), decide

    async def probe(self, server: Server) -> ProbeResult:
        assert self._socket_slots is not None
        if server.path:
            return await self._probe_via(server)
        destination = self._destination_slots.get((server.host, server.port))
        if destination is None:
            destination = asyncio.Semaphore(self.options.max_per_destination)
            self._destination_slots[(server.host, server.port)] = destination
        async with destination, self._socket_slots:  # in this order: waiting on a busy address holds no socket slot
            return await self._probe(server)

    async def _probe_via(self, server: Server) -> ProbeResult:
        """One server behind bastions: through the run's connection to its bastion, one channel."""
        attempted_at = self.now()
        hop = await self._hop(server.path)
        if hop.failed is not None:
            words = HOP_WORDS.get(ErrorClass(hop.failed.error_class or "other"), "bastion hop failed")
            return ProbeResult(server_id=server.id, server_name=server.name, ok=False, attempted_at=attempted_at,
                               error_class=ErrorClass.PATH_DOWN.value,
                               message=_short(f"unreachable via {hop.failed.bastion_name}: {words}"))
        key = (tuple(s.id for s in server.path), server.host, server.port)
        destination = self._destination_slots.get(key)
        if destination is None:
            destination = self._destination_slots[key] = asyncio.Semaphore(self.options.max_per_destination)
        bastion = hop.bastion

        def channel(timeout_s: float) -> Awaitable[Connection]:
            return open_channel(hop.connection, server.host, server.port, timeout_s, bastion.name)

        async with destination, hop.channel_slots:
            result = await self._probe(server, channel)
        if result.error_class == ErrorClass.PATH_DOWN:  # the bastion connection broke during the run
            result = replace(result, message=_short(f"unreachable via {bastion.name}: {result.message}"))
        return result

    def _hop(self, path: tuple[Server, ...]) -> asyncio.Task[_Hop]:
        key = tuple(s.id for s in path)
        task = self._hops.get(key)
        if task is None:
            task = self._hops[key] = asyncio.ensure_future(self._open_hop(path))
        return task

    async def _open_hop(self, path: tuple[Server, ...]) -> _Hop:
        bastion = path[-1]
        hop = _Hop(bastion, channel_slots=asyncio.Semaphore(self.options.bastion_max_channels))
        tunnel = None
        if len(path) > 1:
            parent = await self._hop(path[:-1])
            if parent.failed is not None:
                hop.failed = parent.failed
                return hop
            tunnel = parent.connection
        attempted_at = self.now()
        started = time.perf_counter()
        names = tuple(s.name for s in path)
        try:
            try:
                username, creds = self._login_identity(
                    bastion, f"no username for bastion {bastion.name}: set one on it or as the login of connection "
                             f"{bastion.conn_id!r}")
            except LoginFailed as failed:
                raise HopFailed(failed.error_class, failed.message) from None
            host_key_algs, decide = self._host_key_rule(bastion)
            connect_timeout_s = self._connect_timeouts.get(bastion.conn_id, self.options.connect_timeout_s)
            spec = HopSpec(bastion.name, bastion.host, bastion.port, username, creds.key, host_key_algs, decide,
                           connect_timeout_s, self.options.probe_timeout_s)
            hop.connection = await open_hop(spec, tunnel)
        except HopFailed as failed:
            words = HOP_WORDS.get(failed.error_class, "bastion hop failed")
            hop.failed = HopResult(bastion.id, bastion.name, False, attempted_at, failed.error_class.value,
                                   _short(f"{words}: {failed.message}"),
                                   round((time.perf_counter() - started) * 1000.0, 3), names)
            self.hops.append(hop.failed)
            return hop
        except Exception as exc:  # a probe never raises: a down bastion is data
            log.debug("hop to %s failed unexpectedly", bastion.name, exc_info=True)
            hop.failed = HopResult(bastion.id, bastion.name, False, attempted_at, ErrorClass.OTHER.value,
                                   _short(f"{type(exc).__name__}: {exc}"), None, names)
            self.hops.append(hop.failed)
            return hop
        self.hops.append(HopResult(bastion.id, bastion.name, True, attempted_at, None, "login ok",
                                   round((time.perf_counter() - started) * 1000.0, 3), names))
        return hop

    def _login_identity(self, server: Server, no_username: str) -> tuple[str, ClientCredentials]:
        """The username and credentials to log in to ``server`` (a target or a bastion) with, from its
        connection; ``LoginFailed`` (class ``other``) when the connection gives none, ``no_username``
        when neither the server nor the connection names a user."""
        creds = self.credentials.get(server.conn_id)
        if creds is None:
            raise LoginFailed(ErrorClass.OTHER, f"no credentials loaded for connection {server.conn_id!r}")
        if isinstance(creds, CredentialsError):
            raise LoginFailed(ErrorClass.OTHER, creds.message)
        username = server.username or creds.username
        if not username:
            raise LoginFailed(ErrorClass.OTHER, no_username)
        return username, creds

    async def _close_hops(self) -> None:
        for key in sorted(self._hops, key=len, reverse=True):  # the far end of a chain first
            hop = self._hops[key].result() if self._hops[key].done() else None
            if hop is not None and hop.connection is not None:
                await close_hop(hop.connection)
        self._hops = {}

    async def _probe(
        self, server: Server, open_connection: Callable[[float], Awaitable[Connection]] | None = None,
    ) -> ProbeResult:
        attempted_at = self.now()
        trace = _Trace(started=time.perf_counter())
        opts = self.options
        deadline = trace.started + opts.probe_timeout_s
        conn: Connection | None = None
        logged_in = False
        try:
            username, creds = self._login_identity(
                server, f"no username: set one on the server or as the login of connection {server.conn_id!r}")
            connect_timeout_s = self._connect_timeouts.get(server.conn_id, opts.connect_timeout_s)
            if open_connection is None:
                conn = await _connect_tcp(server.host, server.port, connect_timeout_s)
            else:
                conn = await open_connection(connect_timeout_s)
            trace.tcp_done = time.perf_counter()
            trace.banner = await _read_banner(conn, deadline)
            budget_s = max(0.1, deadline - time.perf_counter())
            assert self._login_slots is not None
            async with self._login_slots:
                await self._login(server, username, creds, conn, trace, budget_s)
            logged_in = True
        except LoginFailed as failed:
            return self._result(server, attempted_at, trace, failed.error_class, failed.message)
        except Exception as exc:  # a probe never raises: a down server is data
            log.debug("probe of %s failed unexpectedly", server.name, exc_info=True)
            return self._result(server, attempted_at, trace, ErrorClass.OTHER, f"{type(exc).__name__}: {exc}")
        finally:
            if conn is not None and logged_in:
                conn.close()  # after sending the DISCONNECT
            elif conn is not None:
                conn.abort()
        return self._result(server, attempted_at, trace, None, "login ok")

    async def _login(
        self,
        server: Server,
        username: str,
        creds: ClientCredentials,
        conn: Connection,
        trace: _Trace,
        budget_s: float,
    ) -> None:
        host_key_algs, decide = self._host_key_rule(server)
        offer = Offer(kex_algs=self.options.kex_algs, host_key_algs=host_key_algs)
        try:
            async with asyncio.timeout(budget_s):
                await login(conn, username, creds.key, offer, decide, trace)
        except TimeoutError:
            if trace.kex_done is None:
                raise LoginFailed(ErrorClass.TIMEOUT, "key exchange did not finish before the probe timeout")
            raise LoginFailed(ErrorClass.TIMEOUT, "authentication did not finish before the probe timeout")

    def _result(
        self,
        server: Server,
        attempted_at: datetime,
        trace: _Trace,
        error_class: ErrorClass | None,
        message: str,
    ) -> ProbeResult:
        ended = time.perf_counter()
        return ProbeResult(
            server_id=server.id,
            server_name=server.name,
            ok=error_class is None,
            attempted_at=attempted_at,
            error_class=error_class.value if error_class else None,
            message=_short(message),
            tcp_connect_ms=trace.ms(trace.started, trace.tcp_done),
            ssh_handshake_ms=trace.ms(trace.tcp_done, trace.host_key_at),
            auth_ms=trace.ms(trace.host_key_at, trace.auth_done),
            total_ms=trace.ms(trace.started, ended),
            banner=trace.banner,
            host_key=trace.host_key,
            host_key_fingerprint=fingerprint(trace.host_key) if trace.host_key else None,
            pinned_fingerprint=fingerprint(server.host_key) if server.host_key else None,
        )

    async def probe_all(self, servers: Sequence[Server]) -> list[ProbeResult]:
        """Probe every server once, concurrently within the bounds; results in input order."""
        self._login_slots = asyncio.Semaphore(self.options.concurrency)
        self._socket_slots = asyncio.Semaphore(max(self.options.max_open_sockets, self.options.concurrency))
        self._destination_slots = {}
        self.hops = []
        try:
            return list(await asyncio.gather(*(self.probe(s) for s in servers)))
        finally:
            await self._close_hops()


def probe_servers(
    servers: Sequence[Server],
    credentials: Mapping[str, ClientCredentials | CredentialsError],
    options: ProbeOptions,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[ProbeResult]:
    """Probe all servers in a fresh event loop (see :func:`probe_servers_and_hops`)."""
    return probe_servers_and_hops(servers, credentials, options, now)[0]


def probe_servers_and_hops(
    servers: Sequence[Server],
    credentials: Mapping[str, ClientCredentials | CredentialsError],
    options: ProbeOptions,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[list[ProbeResult], list[HopResult]]:
    """Synchronous entry point: probe all servers in a fresh event loop.

    Every login allocates thousands of short-lived objects, and each garbage collection they
    trigger would also walk the caller's whole heap (all of Airflow in a task process: a large
    share of a login's CPU, docs/benchmarks.md). That heap is frozen out of the collector for
    the duration.
    """
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            prober = Prober(options, credentials, now)
            results = runner.run(prober.probe_all(servers))
            return results, prober.hops
    finally:
        gc.unfreeze()


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed (Airflow installs it): its socket calls are in C, less CPU per
    login; the standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop

