"""A throwaway PostgreSQL server on loopback, for tests, the demo and benchmarks.

The server is a plain ``postgres`` postmaster started from the distribution binaries
(no ``pg_ctl``, no system service), tuned for speed rather than durability
(``fsync=off`` and friends): never point it at data you care about.

PostgreSQL refuses to run as root, so when the lab runs as root the cluster is
created and run as the system user ``postgres`` (created if missing), and the
directories above ``data_dir`` are made traversable for that user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from heartbeat_lab.ports import free_port, lab_range_of, require_lab_host, require_loopback
from heartbeat_lab.service import LabService, tail

__all__ = ["PostgresServer", "describe_exit", "find_postgres_bindir"]

log = logging.getLogger(__name__)

SERVICE_USER = "postgres"
"""System account that runs PostgreSQL when the lab itself runs as root."""

START_TIMEOUT_S = 30.0
FAST_SHUTDOWN_TIMEOUT_S = 15.0
IMMEDIATE_SHUTDOWN_TIMEOUT_S = 5.0
KILL_TIMEOUT_S = 5.0
INITDB_TIMEOUT_S = 120.0

# unix socket paths are limited to 107 bytes; leave room for "/.s.PGSQL.NNNNN.lock".
_MAX_SOCKET_DIR_LEN = 80

DEFAULT_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "logging_collector": "off",
}
"""Server settings for a disposable test cluster: fast, not crash-safe."""

_INSTALL_HINT = (
    "install the server with `apt-get install postgresql` (or `make system-deps`), "
    "or point HEARTBEAT_PG_BINDIR at a directory holding `postgres` and `initdb`"
)


def find_postgres_bindir() -> Path:
    """The directory holding ``postgres`` and ``initdb``, newest major version first.

    Looks at ``$HEARTBEAT_PG_BINDIR``, then Debian's ``/usr/lib/postgresql/*/bin``,
    then ``postgres`` on ``PATH``.
    """
    override = os.environ.get("HEARTBEAT_PG_BINDIR")
    if override:
        candidate = Path(override)
        if _is_bindir(candidate):
            return candidate
        raise FileNotFoundError(
            f"HEARTBEAT_PG_BINDIR={override} has no executable `postgres` and `initdb`; {_INSTALL_HINT}"
        )

    def version_key(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _is_bindir(p)]
    if candidates:
        return max(candidates, key=version_key)
    on_path = shutil.which("postgres")
    if on_path and _is_bindir(Path(on_path).parent):
        return Path(on_path).parent
    raise FileNotFoundError(f"no PostgreSQL server binaries found; {_INSTALL_HINT}")


def describe_exit(returncode: int | None) -> str:
    """How a postmaster ended, in words: ``was shut down (exit 0)``, ``was killed by SIGKILL``."""
    if returncode is None:
        return "has stopped"
    if returncode == 0:
        return "was shut down (exit 0)"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _is_bindir(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in ("postgres", "initdb"))


class PostgresServer(LabService):
    """One PostgreSQL cluster in ``data_dir``, served on ``host:port`` while started.

    ``data_dir`` is created and ``initdb``-ed on first start; an existing cluster is
    reused as is (a resumed demo keeps its data). ``port=None`` picks a free port once,
    at construction, so :meth:`dsn` is usable before :meth:`start` and a restart keeps
    the same port.

    ``also_listen``: more addresses to serve on, each in the range of a started
    :class:`heartbeat_lab.netns.LabNetwork` (for clients inside its namespaces, which are let in
    from that range without a password, as loopback clients are).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        settings: Mapping[str, str] | None = None,
        bindir: Path | None = None,
        also_listen: Sequence[str] = (),
    ) -> None:
        self._host = require_loopback(host)
        self._also_listen = tuple(require_lab_host(h) for h in also_listen)
        self._port = port if port is not None else free_port(host)
        self._data_dir = Path(data_dir).absolute()
        self._settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._bindir = bindir
        self._proc: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None
        self._tmp_socket_dir: Path | None = None

    # -- properties ---------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """Where the postmaster's stderr goes (appended across restarts)."""
        return self._data_dir / "lab-postgres.log"

    @property
    def socket_dir(self) -> Path | None:
        """The unix socket directory while running, for ``psql -h``."""
        return self._socket_dir if self.is_running() else None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while running."""
        return self._proc.pid if self.is_running() and self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The postmaster's exit status once it has exited by itself (negative: killed by that
        signal); None while it runs or after :meth:`stop`."""
        return None if self._proc is None else self._proc.poll()

    # -- connection strings ---------------------------------------------------------

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        """A libpq URI for ``dbname`` as ``user`` (trust auth: no password)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"postgresql://{quote(user, safe='')}@{host}:{self._port}/{quote(dbname, safe='')}"

    def connect(self, dbname: str = "postgres", user: str = "postgres", **kwargs: Any) -> psycopg.Connection:
        """A psycopg connection (autocommit unless told otherwise)."""
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(self.dsn(dbname, user), **kwargs)

    # -- lifecycle ------------------------------------------------------------------


    def start(self) -> None:
        """Initialise the cluster if needed, start the postmaster and wait until it serves."""
        if self.is_running():
            return
        bindir = self._bindir or find_postgres_bindir()
        owner = _service_account()
        self._prepare_data_dir(owner)
        if not (self._data_dir / "PG_VERSION").exists():
            self._initdb(bindir, owner)
        else:
            self._check_reusable(bindir)
        self._allow_lab_ranges()
        if owner is not None:
            _chown_tree(self._data_dir, owner.pw_uid, owner.pw_gid)
        self._socket_dir = self._choose_socket_dir(owner)

        command = [
            str(bindir / "postgres"),
            "-D", str(self._data_dir),
            "-p", str(self._port),
            "-h", ",".join((self._host, *self._also_listen)),
            "-k", str(self._socket_dir),
        ]  # fmt: skip
        for name, value in self._settings.items():
            command += ["-c", f"{name}={value}"]
        with self._open_log(owner) as log_file:
            log_file.write(f"--- lab: starting {' '.join(command)}\n".encode())
            log_file.flush()
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                cwd=self._data_dir,
                env=_child_env(owner),
                start_new_session=True,  # its own process group: stop() can sweep it
                **_run_as(owner),
            )
        self._track()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        log.info("PostgreSQL up on %s:%s (pid %s, data %s)", self._host, self._port, self.pid, self._data_dir)

    def stop(self) -> None:
        """Fast shutdown, then immediate, then SIGKILL of the whole process group; bounded."""
        proc, self._proc = self._proc, None
        self._untrack()
        if proc is not None:
            _stop_postmaster(proc)
        if self._tmp_socket_dir is not None:
            shutil.rmtree(self._tmp_socket_dir, ignore_errors=True)
            self._tmp_socket_dir = None
        self._socket_dir = None

    def restart(self) -> None:
        """Stop and start again on the same port and data directory."""
        self.stop()
        self.start()

    # -- databases and roles ----------------------------------------------------------

    def create_database(self, name: str, owner: str | None = None) -> None:
        """Create ``name`` unless it exists; with ``owner``, make sure it owns the database."""
        with self.connect() as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if not exists:
                statement = sql.SQL("create database {}").format(sql.Identifier(name))
                if owner is not None:
                    statement += sql.SQL(" owner {}").format(sql.Identifier(owner))
                try:
                    conn.execute(statement)
                except psycopg.errors.DuplicateDatabase:
                    pass  # created concurrently: fine, that is the state we want
                else:
                    return
            if owner is not None:
                conn.execute(
                    sql.SQL("alter database {} owner to {}").format(sql.Identifier(name), sql.Identifier(owner))
                )

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting its sessions."""
        with self.connect() as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))

    def create_role(self, name: str, password: str | None = None, *, superuser: bool = False) -> None:
        """Create a login role unless it exists; set its password and superuser flag either way."""
        options: sql.Composable = sql.SQL("login superuser" if superuser else "login nosuperuser")
        if password is not None:
            options += sql.SQL(" password {}").format(sql.Literal(password))
        with self.connect() as conn:
            exists = conn.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone()
            verb = sql.SQL("alter role" if exists else "create role")
            conn.execute(sql.SQL("{} {} {}").format(verb, sql.Identifier(name), options))

    # -- internals ----------------------------------------------------------------------

    def _allow_lab_ranges(self) -> None:
        """Let clients of the ranges of ``also_listen`` in, as loopback ones are (trust)."""
        hba = self._data_dir / "pg_hba.conf"
        text = hba.read_text()
        for host in self._also_listen:
            cidr = lab_range_of(host)
            line = f"host all all {cidr} trust"
            if cidr is not None and line not in text:
                text += f"\n{line}  # heartbeat_lab: a LabNetwork range\n"
        hba.write_text(text)

    def _prepare_data_dir(self, owner: pwd.struct_passwd | None) -> None:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            _make_ancestors_traversable(self._data_dir, owner)
            os.chown(self._data_dir, owner.pw_uid, owner.pw_gid)
        # postgres insists on 0700 (or 0750) for its data directory.
        self._data_dir.chmod(0o700)

    def _initdb(self, bindir: Path, owner: pwd.struct_passwd | None) -> None:
        command = [
            str(bindir / "initdb"),
            "-D", str(self._data_dir),
            "-U", "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        log.info("initdb %s", self._data_dir)
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                cwd=self._data_dir,
                env=_child_env(owner),
                timeout=INITDB_TIMEOUT_S,
                check=False,
                **_run_as(owner),
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"initdb of {self._data_dir} took over {INITDB_TIMEOUT_S:.0f}s; is the disk full?")
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            raise RuntimeError(
                f"initdb of {self._data_dir} failed (exit {result.returncode}):\n{output}\n"
                f"If the directory holds something else, remove it or choose another data_dir."
            )

    def _check_reusable(self, bindir: Path) -> None:
        cluster_major = (self._data_dir / "PG_VERSION").read_text().strip()
        result = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        match = re.search(r"(\d+)", result.stdout)
        if match and match.group(1) != cluster_major:
            raise RuntimeError(
                f"{self._data_dir} holds a PostgreSQL {cluster_major} cluster but the server in {bindir} is "
                f"{match.group(1)}; delete the directory (e.g. `make clean`) to start afresh"
            )
        pid = _live_postmaster_pid(self._data_dir)
        if pid is not None:
            raise RuntimeError(
                f"a PostgreSQL server (pid {pid}) is already running on {self._data_dir}; "
                f"stop it with `kill -INT {pid}` or use another data_dir"
            )

    def _choose_socket_dir(self, owner: pwd.struct_passwd | None) -> Path:
        if len(str(self._data_dir)) <= _MAX_SOCKET_DIR_LEN:
            return self._data_dir
        tmp = Path(tempfile.mkdtemp(prefix="hb-pg-"))
        if owner is not None:
            os.chown(tmp, owner.pw_uid, owner.pw_gid)
        self._tmp_socket_dir = tmp
        return tmp

    @contextlib.contextmanager
    def _open_log(self, owner: pwd.struct_passwd | None) -> Iterator[IO[bytes]]:
        with open(self.log_path, "ab") as log_file:
            if owner is not None:
                os.chown(self.log_path, owner.pw_uid, owner.pw_gid)
            yield log_file

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise RuntimeError(
                    f"PostgreSQL exited during startup (exit {code}) on {self._host}:{self._port}; "
                    f"log tail from {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2, autocommit=True) as conn:
                    conn.execute("select 1")
                return
            except psycopg.OperationalError as error:
                last_error = error
                time.sleep(0.1)
        raise TimeoutError(
            f"PostgreSQL on {self._host}:{self._port} did not accept connections within "
            f"{START_TIMEOUT_S:.0f}s (last error: {last_error}); log tail:\n{tail(self.log_path)}"
        )

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else "stopped"
        return f"PostgresServer({self._host}:{self._port}, {self._data_dir}, {state})"


# -- process and account helpers -------------------------------------------------------


def _service_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group", SERVICE_USER],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"PostgreSQL cannot run as root and creating the `{SERVICE_USER}` user failed: "
            f"{result.stderr.strip()}; create it with `useradd --system {SERVICE_USER}` or run as non-root"
        )
    return pwd.getpwnam(SERVICE_USER)


def _run_as(owner: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen arguments that drop root to ``owner`` in the child, before exec.

    Preferred over ``runuser``, which forks and would leave us holding its pid rather
    than the postmaster's.
    """
    if owner is None:
        return {}
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def _child_env(owner: pwd.struct_passwd | None) -> dict[str, str]:
    # PG* variables of the caller (PGDATA, PGPORT, PGHOST...) must not leak into the lab server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    if owner is not None:
        env.update(HOME=owner.pw_dir, USER=owner.pw_name, LOGNAME=owner.pw_name)
    return env


def _make_ancestors_traversable(path: Path, owner: pwd.struct_passwd) -> None:
    """Add o+x to each ancestor of ``path`` that ``owner`` could not traverse.

    Only the search bit is added (not read), so directory listings stay private; this
    typically touches /tmp/pytest-of-root or the project's .state directory.
    """
    groups = {owner.pw_gid}
    for ancestor in reversed(path.parents):
        st = ancestor.stat()
        if st.st_uid == owner.pw_uid:
            allowed = bool(st.st_mode & 0o100)
        elif st.st_gid in groups:
            allowed = bool(st.st_mode & 0o010)
        else:
            allowed = bool(st.st_mode & 0o001)
        if not allowed:
            log.info("chmod o+x %s so that user %s can reach its data directory", ancestor, owner.pw_name)
            ancestor.chmod(st.st_mode & 0o7777 | 0o001)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(name)
                if st.st_uid != uid or st.st_gid != gid:
                    os.lchown(name, uid, gid)


def _live_postmaster_pid(data_dir: Path) -> int | None:
    try:
        first_line = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        pid = int(first_line.strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm.startswith("postgres") and _alive(pid) else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields after "(comm)": state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _stop_postmaster(proc: subprocess.Popen[bytes]) -> None:
    pgid = proc.pid  # start_new_session=True made it a group leader
    for sig, timeout in (
        (signal.SIGINT, FAST_SHUTDOWN_TIMEOUT_S),
        (signal.SIGQUIT, IMMEDIATE_SHUTDOWN_TIMEOUT_S),
    ):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # Whatever is left in the group (backends orphaned by a crash, or a stuck postmaster).
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while time.monotonic() < deadline:
        members = _group_members(pgid)
        if proc.poll() is None:
            members.append(proc.pid)
        if not members:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.05)
    else:
        log.error("PostgreSQL process group %s survived SIGKILL for %ss", pgid, KILL_TIMEOUT_S)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1)

