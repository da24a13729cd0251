"""Real OpenSSH servers on loopback: one :class:`SshdServer`, or a :class:`SshdFleet` of them.

Each server is the system's ``/usr/sbin/sshd`` run in the foreground with a private
config, host key, authorized_keys file, pid file and log under its ``work_dir``. Only
public-key login is enabled. Fleet members listen on distinct loopback addresses
(127.0.0.2, 127.0.0.3, ...) so that they look like distinct hosts to a monitor.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from heartbeat_lab.netns import Namespace
from heartbeat_lab.ports import free_port, port_is_free, require_loopback, socket_family
from heartbeat_lab.service import LabService, ProcStat, proc_table, tail

__all__ = [
    "KeyPair",
    "SshdFleet",
    "SshdServer",
    "find_sshd",
    "fingerprint_sha256",
    "generate_keypair",
    "load_keypair",
]

log = logging.getLogger(__name__)

SSHD_PATH = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
START_TIMEOUT_S = 10.0
TERM_TIMEOUT_S = 5.0
KILL_TIMEOUT_S = 3.0
KEYGEN_TIMEOUT_S = 60.0
MAX_FLEET_SIZE = 250

_INSTALL_HINT = "install it with `apt-get install openssh-server openssh-client` (or `make system-deps`)"


# -- keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    """An OpenSSH key pair on disk: the private key file and its ``authorized_keys`` line."""

    private_path: Path
    public_line: str

    @property
    def public_path(self) -> Path:
        return self.private_path.with_name(self.private_path.name + ".pub")

    @property
    def fingerprint(self) -> str:
        return fingerprint_sha256(self.public_line)


def generate_keypair(path: Path, key_type: str = "ed25519", comment: str = "", *, bits: int | None = None) -> KeyPair:
    """Generate a new unencrypted key pair at ``path`` (and ``path.pub``), replacing any old one."""
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise FileNotFoundError(f"ssh-keygen not found on PATH; {_INSTALL_HINT}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)  # otherwise ssh-keygen asks "Overwrite (y/n)?"
    command = [keygen, "-q", "-N", "", "-t", key_type, "-C", comment, "-f", str(path)]
    if bits is not None:
        command += ["-b", str(bits)]
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=KEYGEN_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"ssh-keygen -t {key_type} -f {path} failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}; check the key type (ed25519, ecdsa, rsa)"
        )
    path.chmod(0o600)
    return load_keypair(path)


def load_keypair(path: Path) -> KeyPair:
    """A :class:`KeyPair` for an existing private key with its ``.pub`` next to it."""
    path = Path(path)
    public_path = path.with_name(path.name + ".pub")
    try:
        public_line = public_path.read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"{public_path} is missing; recreate it with `ssh-keygen -y -f {path} > {public_path}`")
    return KeyPair(private_path=path, public_line=public_line)


def fingerprint_sha256(public_line: str) -> str:
    """``SHA256:<base64, unpadded>`` of a public key line, as ``ssh-keygen -lf`` prints it."""
    fields = public_line.split()
    if len(fields) < 2:
        raise ValueError(f"not an OpenSSH public key line: {public_line!r}")
    blob = base64.b64decode(fields[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def find_sshd() -> Path:
    """The OpenSSH server binary, with an actionable error when it is not installed."""
    if os.access(SSHD_PATH, os.X_OK):
        return SSHD_PATH
    on_path = shutil.which("sshd")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError(f"OpenSSH server not found at {SSHD_PATH}; {_INSTALL_HINT}")


# -- one server ------------------------------------------------------------------------


class SshdServer(LabService):
    """One sshd on ``listen_host:port`` accepting only the given public keys.

    The host key is generated in ``work_dir`` on first start and kept afterwards, so a
    restarted server presents the same key (use :meth:`rotate_host_key` to change it).
    ``port=None`` picks a free port once, at construction; restarts keep it.
    """

    def __init__(
        self,
        work_dir: Path,
        listen_host: str = "127.0.0.1",
        port: int | None = None,
        authorized_keys: Sequence[str] = (),
        host_key_type: str = "ed25519",
        extra_config: Mapping[str, str] | None = None,
        *,
        reexec: bool = True,
        extra_host_key_types: Sequence[str] = (),
        netns: Namespace | None = None,
    ) -> None:
        """``reexec=False`` runs sshd with ``-r``: no re-execution per connection, less CPU per
        login (benchmarks use it, docs/benchmarks.md; the default is stock sshd).
        ``extra_host_key_types`` gives the server more host keys beside ``host_key_type`` (as a
        stock install has ed25519, ecdsa and rsa); :attr:`host_key_public_lines` lists them all.
        ``netns`` runs the server inside a lab network namespace (heartbeat_lab.netns), listening on
        an address of that network's range (port 22 unless given)."""
        self._netns = netns
        self._host = netns.network.require_address(listen_host) if netns else require_loopback(listen_host)
        self._reexec = reexec
        self._port = port if port is not None else (22 if netns else free_port(listen_host))
        self._work_dir = Path(work_dir).absolute()
        self._authorized_keys = list(authorized_keys)
        self._host_key_type = host_key_type
        self._extra_host_key_types = [t for t in dict.fromkeys(extra_host_key_types) if t != host_key_type]
        self._extra_config = dict(extra_config or {})
        self._proc: subprocess.Popen[bytes] | None = None

    # -- properties ---------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def work_dir(self) -> Path:
        return self._work_dir

    @property
    def host_key_path(self) -> Path:
        return self._work_dir / f"ssh_host_{self._host_key_type}_key"

    @property
    def config_path(self) -> Path:
        return self._work_dir / "sshd_config"

    @property
    def authorized_keys_path(self) -> Path:
        return self._work_dir / "authorized_keys"

    @property
    def log_path(self) -> Path:
        return self._work_dir / "sshd.log"

    @property
    def pid_path(self) -> Path:
        return self._work_dir / "sshd.pid"

    @property
    def host_key_public_line(self) -> str:
        """``<type> <base64>`` of the host key, without comment (generated if needed)."""
        key = self._ensure_host_key()
        return " ".join(key.public_line.split()[:2])

    @property
    def host_key_public_lines(self) -> dict[str, str]:
        """Key type (``ed25519``, ``ecdsa``, ``rsa``) -> ``<type> <base64>`` of every host key."""
        return {key_type: " ".join(self._ensure_host_key(key_type).public_line.split()[:2])
                for key_type in (self._host_key_type, *self._extra_host_key_types)}

    @property
    def host_key_fingerprint(self) -> str:
        """``SHA256:...`` of the host key, as ``ssh-keygen -lf`` prints it."""
        return fingerprint_sha256(self.host_key_public_line)

    @property
    def pid(self) -> int | None:
        """The listener's pid while running."""
        return self._proc.pid if self.is_running() and self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ----------------------------------------------------------------


    def start(self) -> None:
        """Write the config, check it with ``sshd -t``, start sshd and wait until it sends its banner."""
        if self.is_running():
            return
        sshd = find_sshd()
        self._work_dir.mkdir(parents=True, exist_ok=True)
        _ensure_privsep_dir()
        self._ensure_host_key()
        for key_type in self._extra_host_key_types:
            self._ensure_host_key(key_type)
        self._write_authorized_keys()
        self.config_path.write_text(self._render_config())
        self._check_config(sshd)

        argv = [str(sshd), "-D", *([] if self._reexec else ["-r"]), "-e", "-f", str(self.config_path),
                "-E", str(self.log_path)]
        with open(self.log_path, "ab") as log_file:
            self._proc = subprocess.Popen(
                self._netns.exec_argv(argv) if self._netns else argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                start_new_session=True,
            )
        self._track()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        log.debug("sshd up on %s:%s (pid %s)", self._host, self._port, self.pid)

    def stop(self) -> None:
        """SIGTERM the listener and every session it spawned, SIGKILL after a bounded wait.

        sshd's per-connection processes call ``setsid()``, so they are not in the
        listener's process group and would outlive it: they are found through /proc.
        """
        proc, self._proc = self._proc, None
        self._untrack()
        if proc is None:
            return
        _terminate_tree(proc)

    def restart(self) -> None:
        """Stop and start again on the same address and port, with the same host key."""
        self.stop()
        self.start()

    def rotate_host_key(self) -> None:
        """Replace the host key by a new one and restart if running (same port)."""
        generate_keypair(self.host_key_path, self._host_key_type, comment=f"lab-host-{self._host}")
        if self.is_running():
            self.restart()

    def set_authorized_keys(self, lines: Sequence[str]) -> None:
        """Replace the accepted client keys; sshd reads the file at each login, no restart."""
        self._authorized_keys = list(lines)
        if self._work_dir.exists():
            self._write_authorized_keys()

    # -- internals ----------------------------------------------------------------

    def _ensure_host_key(self, key_type: str | None = None) -> KeyPair:
        key_type = key_type or self._host_key_type
        path = self._work_dir / f"ssh_host_{key_type}_key"
        if path.exists() and path.with_name(path.name + ".pub").exists():
            return load_keypair(path)
        return generate_keypair(path, key_type, comment=f"lab-host-{self._host}")

    def _write_authorized_keys(self) -> None:
        # Atomic replace: a login racing with the rewrite sees the old or the new file, never half.
        tmp = self.authorized_keys_path.with_suffix(".tmp")
        tmp.write_text("".join(line.strip() + "\n" for line in self._authorized_keys))
        tmp.chmod(0o600)
        os.replace(tmp, self.authorized_keys_path)

    def _render_config(self) -> str:
        listen = f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"
        options: dict[str, str] = {
            "ListenAddress": listen,
            "HostKey": _quote(self.host_key_path),
            "PidFile": _quote(self.pid_path),
            "AuthorizedKeysFile": _quote(self.authorized_keys_path),
            "UsePAM": "no",
            "StrictModes": "no",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "PubkeyAuthentication": "yes",
            "PermitRootLogin": "prohibit-password",
            "MaxStartups": "1000:30:1000",
            "MaxSessions": "100",
            "LogLevel": "ERROR",
            "SetEnv": "SHLVL=1",
            "UseDNS": "no",
            "X11Forwarding": "no",
            "AllowTcpForwarding": "no",
            "PrintMotd": "no",
        }
        # sshd keeps the first value it reads for an option, so overrides replace the default
        # in place (keywords are case-insensitive) instead of being appended after it.
        by_lower = {key.lower(): key for key in options}
        for key, value in self._extra_config.items():
            options.pop(by_lower.get(key.lower(), key), None)
            options[key] = value
        lines = [f"# written by heartbeat_lab.sshd for {self._host}:{self._port}"]
        lines += [f"{key} {value}" for key, value in options.items()]
        lines += [f"HostKey {_quote(self._work_dir / f'ssh_host_{key_type}_key')}"
                  for key_type in self._extra_host_key_types]
        return "\n".join(lines) + "\n"

    def _check_config(self, sshd: Path) -> None:
        result = subprocess.run(
            [str(sshd), "-t", "-f", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"sshd rejected {self.config_path} (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}; fix the offending extra_config entry"
            )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise RuntimeError(
                    f"sshd exited during startup (exit {code}) on {self._host}:{self._port} "
                    f"(port taken? see {self.log_path}):\n{tail(self.log_path)}"
                )
            try:
                # Inside a namespace the server may be unreachable from here by design (a
                # bastion's private side): ask the namespace's socket table instead.
                if (self._netns.listens(self._host, self._port) if self._netns
                        else _reads_ssh_banner(self._host, self._port)):
                    return
            except OSError as error:
                last_error = error
            time.sleep(0.05)
        raise TimeoutError(
            f"sshd on {self._host}:{self._port} did not answer within {START_TIMEOUT_S:.0f}s "
            f"(last error: {last_error}); log tail:\n{tail(self.log_path)}"
        )

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else "stopped"
        where = f", netns {self._netns.name}" if self._netns else ""
        return f"SshdServer({self._host}:{self._port}{where}, {state})"


# -- a fleet ---------------------------------------------------------------------------


class SshdFleet(LabService):
    """``count`` sshd servers, server ``i`` on 127.0.0.{2+i}, sharing one port when possible.

    A common port makes the fleet look like real hosts (all on "port 2222", say) while
    distinct addresses keep them distinct targets.
    """

    def __init__(
        self,
        work_dir: Path,
        count: int,
        authorized_keys: Sequence[str] = (),
        host_key_type: str = "ed25519",
        extra_config: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        if not 0 < count <= MAX_FLEET_SIZE:
            raise ValueError(f"fleet size must be 1..{MAX_FLEET_SIZE} (one 127.0.0.x address each), got {count}")
        hosts = [f"127.0.0.{2 + i}" for i in range(count)]
        ports = _fleet_ports(hosts, port)
        work_dir = Path(work_dir)
        self._servers = [
            SshdServer(
                work_dir / f"sshd-{i:03d}",
                listen_host=host,
                port=host_port,
                authorized_keys=authorized_keys,
                host_key_type=host_key_type,
                extra_config=extra_config,
            )
            for i, (host, host_port) in enumerate(zip(hosts, ports, strict=True))
        ]

    @property
    def servers(self) -> list[SshdServer]:
        return list(self._servers)

    @property
    def hosts(self) -> list[str]:
        return [server.host for server in self._servers]

    @property
    def common_port(self) -> int | None:
        """The port every server listens on, or None if they could not share one."""
        ports = {server.port for server in self._servers}
        return ports.pop() if len(ports) == 1 else None

    def __len__(self) -> int:
        return len(self._servers)

    def __iter__(self) -> Iterator[SshdServer]:
        return iter(self._servers)

    def __getitem__(self, index: int) -> SshdServer:
        return self._servers[index]


    def start(self) -> None:
        """Start every server in parallel; on any failure, stop them all and raise."""
        errors = self._run_all(SshdServer.start, "start")
        if errors:
            with contextlib.suppress(BaseException):
                self.stop()
            raise ExceptionGroup(f"{len(errors)} of {len(self)} sshd servers failed to start", errors)

    def stop(self) -> None:
        """Stop every server, even if some fail; raise afterwards if any did."""
        errors = self._run_all(SshdServer.stop, "stop")
        if errors:
            raise ExceptionGroup(f"{len(errors)} of {len(self)} sshd servers failed to stop", errors)

    def set_authorized_keys(self, lines: Sequence[str]) -> None:
        for server in self._servers:
            server.set_authorized_keys(lines)

    def _run_all(self, action: Callable[[SshdServer], None], verb: str) -> list[Exception]:
        # Each start/stop is bounded on its own; this overall bound is a backstop.
        timeout = START_TIMEOUT_S + TERM_TIMEOUT_S + KILL_TIMEOUT_S + 0.5 * len(self._servers)
        errors: list[Exception] = []
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=min(16, len(self._servers)), thread_name_prefix=f"sshd-{verb}"
        ) as pool:
            futures = {pool.submit(action, server): server for server in self._servers}
            done, not_done = concurrent.futures.wait(futures, timeout=timeout)
            for future in not_done:
                future.cancel()
                errors.append(TimeoutError(f"{verb} of {futures[future]!r} took over {timeout:.0f}s"))
            for future in done:
                error = future.exception()
                if isinstance(error, Exception):
                    errors.append(error)
                elif error is not None:
                    raise error
        return errors

    def __repr__(self) -> str:
        return f"SshdFleet({len(self)} servers, port {self.common_port})"


def _fleet_ports(hosts: list[str], port: int | None, attempts: int = 20) -> list[int]:
    if port is not None:
        return [port] * len(hosts)
    for _ in range(attempts):
        candidate = free_port(hosts[0])
        if all(port_is_free(host, candidate) for host in hosts[1:]):
            return [candidate] * len(hosts)
    log.warning("no common free port for %d sshd servers; using one port per server", len(hosts))
    return [free_port(host) for host in hosts]


# -- process helpers -------------------------------------------------------------------


def _quote(path: Path) -> str:
    text = str(path)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _ensure_privsep_dir() -> None:
    """sshd running as root needs its privilege-separation chroot, absent in slim containers."""
    if os.geteuid() != 0:
        return
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    PRIVSEP_DIR.chmod(0o755)


def _reads_ssh_banner(host: str, port: int) -> bool:
    with socket.socket(socket_family(host), socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        sock.connect((host, port))
        ready = sock.recv(64).startswith(b"SSH-")
        # Answering with a banner before closing keeps sshd from logging an ERROR per probe.
        with contextlib.suppress(OSError):
            sock.sendall(b"SSH-2.0-heartbeat-lab-probe\r\n")
        return ready


def _live_tree(table: Mapping[int, ProcStat], roots: set[int]) -> set[int]:
    """Non-zombie processes among ``roots`` and their descendants."""
    children: dict[int, list[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.ppid, []).append(pid)
    found: set[int] = set()
    stack = [pid for pid in roots if pid in table]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, []))
    return {pid for pid in found if table[pid].state != "Z"}


def _terminate_tree(proc: subprocess.Popen[bytes]) -> None:
    """Signal the listener's process tree leaves first: SIGTERM, then SIGKILL, each bounded.

    Leaves first, so that every process dies while its parent is still there to reap
    it. Killing the listener first would orphan the sessions to PID 1, and in
    containers whose PID 1 reaps late (or never) they linger as zombies.
    """
    tracked = {proc.pid}  # grows with every descendant seen, so reparented ones stay tracked
    for sig, timeout in ((signal.SIGTERM, TERM_TIMEOUT_S), (signal.SIGKILL, KILL_TIMEOUT_S)):
        signalled: set[int] = set()
        deadline = time.monotonic() + timeout
        while True:
            proc.poll()  # reap the listener once it is gone
            table = proc_table()
            alive = _live_tree(table, tracked)
            if not alive:
                return
            tracked |= alive
            if time.monotonic() >= deadline:
                break
            parents = {table[pid].ppid for pid in alive}
            for pid in alive - parents - signalled:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
                signalled.add(pid)
            time.sleep(0.02)
    # Last resort: everything at once, then a short bounded reap of the listener.
    for pid in _live_tree(proc_table(), tracked):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1)
    remaining = _live_tree(proc_table(), tracked)
    if remaining:
        log.error("sshd processes %s survived SIGKILL", sorted(remaining))

