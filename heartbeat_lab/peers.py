"""Misbehaving TCP peers on loopback, to test how a client copes with broken servers.

Every peer listens on ``host:port`` (port chosen by the kernel unless given), serves
each connection in its own daemon thread, and is a context manager. All waits poll a
stop flag at :data:`POLL_S` and each connection is held at most ``max_hold_s``, so
:meth:`TcpPeer.stop` returns promptly and closes every socket.

Two peers speak real SSH: :class:`BannerLinesProxy` puts lines before a real server's version
line, and :class:`SshServerPeer` is an asyncssh server that completes real key exchanges and
misbehaves where it is told to (:func:`send_before`, :func:`drop_from`, :func:`present_host_key`).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from heartbeat_lab.ports import require_loopback, socket_family
from heartbeat_lab.service import LabService

__all__ = [
    "BannerLinesProxy",
    "BannerPeer",
    "CloseAfterBannerPeer",
    "DripBannerPeer",
    "HangUpPeer",
    "SilentPeer",
    "SshServerPeer",
    "TcpPeer",
    "drop_from",
    "present_host_key",
    "refused_port",
    "send_before",
]

POLL_S = 0.1
DEFAULT_MAX_HOLD_S = 300.0
JOIN_TIMEOUT_S = 2.0
MAX_RECORDED_BYTES = 64 * 1024
OPENSSH_BANNER = b"SSH-2.0-OpenSSH_9.2\r\n"


def refused_port(host: str = "127.0.0.1") -> int:
    """A port on which nothing listens: connecting to it is refused (ECONNREFUSED).

    Bound then closed without ``listen()``; another process could take it meanwhile,
    which is unlikely within a test.
    """
    require_loopback(host)
    with socket.socket(socket_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


class TcpPeer(LabService):
    """Base class: a loopback listener whose :meth:`handle` decides how to misbehave.

    The socket is bound at construction (so :attr:`port` is known at once) and starts
    accepting on :meth:`start` / ``with``. Subclasses implement :meth:`handle`; the
    connection is closed when it returns.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, max_hold_s: float = DEFAULT_MAX_HOLD_S):
        self._host = require_loopback(host)
        self._max_hold_s = max_hold_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._accept_thread: threading.Thread | None = None
        self._accepted = 0
        self._received = bytearray()
        self._listener = socket.socket(socket_family(host), socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
        except OSError:
            self._listener.close()
            raise
        self._port: int = self._listener.getsockname()[1]

    # -- public surface -------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def accepted(self) -> int:
        """How many connections were accepted so far."""
        with self._lock:
            return self._accepted

    @property
    def received(self) -> bytes:
        """What clients sent, all connections concatenated (first 64 KiB)."""
        with self._lock:
            return bytes(self._received)

    def wait_for_connections(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        """Wait (bounded) until ``count`` connections were accepted; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.accepted >= count:
                return True
            time.sleep(0.01)
        return self.accepted >= count

    def start(self) -> None:
        if self._accept_thread is not None:
            return
        if self._stopping.is_set():
            raise RuntimeError(f"{self!r} was stopped; create a new peer instead of restarting it")
        self._listener.listen(128)
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{type(self).__name__}-{self._port}", daemon=True
        )
        self._accept_thread.start()

    def stop(self) -> None:
        """Stop accepting, end every connection and close all sockets (bounded)."""
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(JOIN_TIMEOUT_S)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            leftovers = list(self._conns)
            self._conns.clear()
        for conn in leftovers:  # handlers that did not exit in time
            _close(conn)


    def handle(self, conn: socket.socket, deadline: float) -> None:
        """Serve one connection; ``deadline`` (time.monotonic) bounds how long it may be held."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._host}:{self._port})"

    # -- helpers for subclasses ---------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def hold(self, conn: socket.socket, deadline: float) -> None:
        """Read and record whatever the client sends until it closes, stop() or the deadline."""
        while not self._stopping.is_set() and time.monotonic() < deadline:
            data = self.recv(conn)
            if data is None:
                continue
            if not data:
                return

    def recv(self, conn: socket.socket) -> bytes | None:
        """One bounded read: bytes, ``b""`` when the client is gone, None when nothing came."""
        try:
            data = conn.recv(4096)
        except TimeoutError:
            return None
        except OSError:
            return b""
        self._record(data)
        return data

    def send(self, conn: socket.socket, data: bytes) -> bool:
        """Send all of ``data``; False if the client is gone."""
        try:
            conn.sendall(data)
        except OSError:
            return False
        return True

    def pause(self, seconds: float) -> bool:
        """Sleep, waking early on stop(); True if the peer is still running."""
        return not self._stopping.wait(seconds)

    # -- internals ----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], POLL_S)
                if not ready:
                    continue
                conn, _ = self._listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(POLL_S)  # e.g. EMFILE: do not spin
                continue
            conn.settimeout(POLL_S)
            thread = threading.Thread(target=self._serve, args=(conn,), name=f"{self!r}-conn", daemon=True)
            with self._lock:
                self._accepted += 1
                self._conns.add(conn)
                self._threads.add(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handle(conn, time.monotonic() + self._max_hold_s)
        except OSError:
            pass  # the client went away mid-way: that is the point of these peers
        finally:
            with self._lock:
                owned = conn in self._conns
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())
            if owned:
                _close(conn)

    def _record(self, data: bytes) -> None:
        with self._lock:
            room = MAX_RECORDED_BYTES - len(self._received)
            if room > 0:
                self._received += data[:room]


class SilentPeer(TcpPeer):
    """Accepts and never sends a byte: a client waiting for a banner must time out."""

    def handle(self, conn: socket.socket, deadline: float) -> None:
        self.hold(conn, deadline)


class BannerPeer(TcpPeer):
    """Sends ``banner`` (an HTTP or SMTP greeting, say) then waits until the client closes."""

    def __init__(
        self,
        banner: bytes,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_hold_s: float = DEFAULT_MAX_HOLD_S,
    ):
        super().__init__(host, port, max_hold_s=max_hold_s)
        self.banner = banner

    def handle(self, conn: socket.socket, deadline: float) -> None:
        if self.send(conn, self.banner):
            self.hold(conn, deadline)


class DripBannerPeer(TcpPeer):
    """Sends ``banner`` one byte every ``interval_s`` (a tarpit), then waits like :class:`BannerPeer`."""

    def __init__(
        self,
        banner: bytes,
        interval_s: float,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_hold_s: float = DEFAULT_MAX_HOLD_S,
    ):
        super().__init__(host, port, max_hold_s=max_hold_s)
        self.banner = banner
        self.interval_s = interval_s

    def handle(self, conn: socket.socket, deadline: float) -> None:
        for i in range(len(self.banner)):
            if time.monotonic() >= deadline or not self.send(conn, self.banner[i : i + 1]):
                return
            if i + 1 < len(self.banner) and not self.pause(self.interval_s):
                return
        self.hold(conn, deadline)


class CloseAfterBannerPeer(TcpPeer):
    """Looks like OpenSSH, then hangs up in the middle of the key exchange.

    Sends an ``SSH-2.0-OpenSSH_9.2`` banner, reads the client's banner and the start of
    its KEXINIT packet (bounded by ``read_timeout_s``), then closes: with a FIN, or
    with a TCP reset when ``reset=True``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        banner: bytes = OPENSSH_BANNER,
        reset: bool = False,
        read_timeout_s: float = 5.0,
        max_hold_s: float = DEFAULT_MAX_HOLD_S,
    ):
        super().__init__(host, port, max_hold_s=max_hold_s)
        self.banner = banner
        self.reset = reset
        self.read_timeout_s = read_timeout_s

    def handle(self, conn: socket.socket, deadline: float) -> None:
        if not self.send(conn, self.banner):
            return
        seen = b""
        read_deadline = min(deadline, time.monotonic() + self.read_timeout_s)
        while not self.stopping and time.monotonic() < read_deadline:
            data = self.recv(conn)
            if data == b"":
                return
            seen += data or b""
            line_end = seen.find(b"\n")
            # banner line, then at least a packet header (length + padding + message type)
            if line_end >= 0 and len(seen) - (line_end + 1) >= 6:
                break
        if self.reset:
            _set_reset_on_close(conn)


class HangUpPeer(TcpPeer):
    """Accepts and closes at once without a byte: a FIN, or a TCP reset when ``reset=True``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reset: bool = False,
        max_hold_s: float = DEFAULT_MAX_HOLD_S,
    ):
        super().__init__(host, port, max_hold_s=max_hold_s)
        self.reset = reset

    def handle(self, conn: socket.socket, deadline: float) -> None:
        if self.reset:
            _set_reset_on_close(conn)


class BannerLinesProxy(TcpPeer):
    """Relays each connection to a real server at ``upstream`` (host, port), with ``lines`` sent
    to the client before anything from the server: the text a server may show before its
    version line (RFC 4253 4.2), such as a legal notice."""

    def __init__(
        self,
        upstream: tuple[str, int],
        lines: bytes,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_hold_s: float = DEFAULT_MAX_HOLD_S,
    ):
        super().__init__(host, port, max_hold_s=max_hold_s)
        self.upstream = (require_loopback(upstream[0]), upstream[1])
        self.lines = lines

    def handle(self, conn: socket.socket, deadline: float) -> None:
        with socket.create_connection(self.upstream, timeout=5.0) as server:
            server.settimeout(POLL_S)
            if not self.send(conn, self.lines):
                return
            ends = {conn: server, server: conn}
            while not self.stopping and time.monotonic() < deadline:
                ready, _, _ = select.select(list(ends), [], [], POLL_S)
                for source in ready:
                    try:
                        data = source.recv(65536)
                    except OSError:
                        data = b""
                    if not data or not self.send(ends[source], data):
                        return


# -- a real SSH server that misbehaves where it is told to ------------------------------------


class SshServerPeer(LabService):
    """An asyncssh server on loopback, in a thread with its own event loop: it completes real key
    exchanges and public-key logins, and ``tamper(conn)`` can change each connection before it
    sends a byte (see :func:`send_before`, :func:`drop_from`, :func:`present_host_key`).

    ``host_key`` is an asyncssh private key (a new Ed25519 key by default); ``authorized_keys``
    are OpenSSH public key lines; ``options`` go to ``asyncssh.listen`` (``kex_algs``, ...).
    """

    def __init__(
        self,
        authorized_keys: Sequence[str],
        host_key: Any = None,
        host: str = "127.0.0.1",
        *,
        tamper: Callable[[Any], None] | None = None,
        **options: Any,
    ):
        import asyncssh  # a development dependency: only the peers that speak SSH need it

        self._host = require_loopback(host)
        self.host_key = host_key if host_key is not None else asyncssh.generate_private_key("ssh-ed25519")
        self._authorized = asyncssh.import_authorized_keys("".join(line.strip() + "\n" for line in authorized_keys))
        self._tamper = tamper
        self._options = options
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener: Any = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def host_key_public_line(self) -> str:
        return " ".join(self.host_key.export_public_key("openssh").decode().split()[:2])

    def start(self) -> None:
        if self._thread is not None:
            return
        import asyncssh

        tamper = self._tamper

        class _Server(asyncssh.SSHServer):
            def connection_made(self, conn: Any) -> None:
                if tamper is not None:
                    tamper(conn)

        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        async def listen() -> None:
            self._listener = await asyncssh.listen(
                self._host, 0, server_factory=_Server, server_host_keys=[self.host_key],
                authorized_client_keys=self._authorized, **self._options,
            )
            self._port = self._listener.get_port()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(listen())
            except BaseException as exc:  # reported by start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"SshServerPeer-{self._host}", daemon=True)
        self._thread.start()
        ready.wait(10.0)
        if failure or not self._port:
            self.stop()
            raise RuntimeError(f"the asyncssh server did not start on {self._host}: {failure[:1]}")
        self._track()

    def stop(self) -> None:
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        self._untrack()
        if loop is None or thread is None:
            return

        async def close() -> None:
            if self._listener is not None:
                self._listener.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._listener.wait_closed(), JOIN_TIMEOUT_S)
            loop.stop()

        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), loop)
            thread.join(JOIN_TIMEOUT_S * 2)
        if not thread.is_alive():
            loop.close()

    def __repr__(self) -> str:
        return f"SshServerPeer({self._host}:{self._port})"


def send_before(conn: Any, pkttype: int, packets: Sequence[tuple[int, bytes]]) -> None:
    """Make an asyncssh connection send ``packets`` ((message type, payload after the type), in
    order) just before the first message of type ``pkttype``."""
    original = conn.send_packet
    done = False

    def send_packet(kind: int, *args: bytes, **kwargs: Any) -> None:
        nonlocal done
        if kind == pkttype and not done:
            done = True
            for extra_kind, payload in packets:
                original(extra_kind, payload)
        original(kind, *args, **kwargs)

    conn.send_packet = send_packet


def drop_from(conn: Any, pkttype: int) -> None:
    """Make an asyncssh connection send nothing more from its first message of type ``pkttype``
    on (it goes on as if it had sent it)."""
    original = conn.send_packet
    muted = False

    def send_packet(kind: int, *args: bytes, **kwargs: Any) -> None:
        nonlocal muted
        muted = muted or kind == pkttype
        if not muted:
            original(kind, *args, **kwargs)

    conn.send_packet = send_packet


def present_host_key(conn: Any, public_data: bytes | None = None,
                     sign: Callable[[Callable[[bytes], bytes], bytes], bytes] | None = None) -> None:
    """Make an asyncssh server present ``public_data`` as its host key in the key exchange, and/or
    sign the exchange hash with ``sign(original_sign, data)`` instead of its own signing."""
    original = conn.get_server_host_key

    class _Presented:
        def __init__(self, keypair: Any) -> None:
            self._keypair = keypair
            self.public_data = public_data if public_data is not None else keypair.public_data

        def sign(self, data: bytes) -> bytes:
            if sign is None:
                return bytes(self._keypair.sign(data))
            return sign(self._keypair.sign, data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._keypair, name)

    def get_server_host_key() -> Any:
        keypair = original()
        return None if keypair is None else _Presented(keypair)

    conn.get_server_host_key = get_server_host_key


def _set_reset_on_close(conn: socket.socket) -> None:
    """SO_LINGER with a zero timeout: close() then sends RST instead of FIN."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.close()
