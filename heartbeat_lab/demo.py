"""``make demo`` / ``make up``: the monitor for real on this machine, until Ctrl-C.

PostgreSQL (the Airflow metadata and heartbeat databases), the four Airflow components
(api-server with the UI, scheduler with LocalExecutor, dag-processor, triggerer) and, unless
``--no-fleet``, a demo fleet of real OpenSSH servers on 127.0.0.x: ten healthy, one healthy
with an active alert (WARNING), and four failing in their own way (refused, silent, wrong
client key, host key changed since it was pinned). After every cycle, and whenever the counts
change in between (servers turning STALE while the monitor is stalled, the database unreachable),
a one-screen summary of ``heartbeat status`` is printed.

The demo supervises what it started, as a container's restart policy would: an Airflow component
that exits (the scheduler and the dag-processor do when the database goes away) is started again
after 1, 2, 4 ... up to 30 s, or as soon as the database answers again, and each restart is
printed. Its private PostgreSQL is not restarted (see :func:`watch_postgres`).

State lives in one folder (``.state/`` by default): running again resumes with the same
databases, keys, host keys and Airflow home; ``make clean`` starts afresh. Ctrl-C (SIGINT, even when
the parent shell ignores it), SIGTERM or SIGHUP stops everything that was started.

With ``--no-fleet`` the same stack monitors your own inventory: define the SSH connection
(``AIRFLOW_CONN_HEARTBEAT_SSH``, or ``heartbeat_ssh`` in the UI) and add servers with
``heartbeat servers add``. The heartbeat database is embedded unless
``AIRFLOW_CONN_HEARTBEAT_DB`` is set.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import json
import logging
import os
import secrets
import shlex
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from heartbeat import cli, store
from heartbeat.config import SettingsError
from heartbeat.inventory import validate_server
from heartbeat.store import SchemaError
from heartbeat_lab import (
    KeyPair,
    PostgresServer,
    SilentPeer,
    SshdFleet,
    SshdServer,
    free_port,
    generate_keypair,
    load_keypair,
    port_is_free,
    refused_port,
)
from heartbeat_lab.airflow_env import (
    REPO_ROOT,
    airflow_environment,
    postgres_connection_json,
    ssh_connection_json,
)
from heartbeat_lab.airflow_env import migrate_metadata as migrate_airflow_metadata
from heartbeat_lab.airflow_procs import AirflowProcesses, AirflowStartError, unpause_dag, wait_for_dag
from heartbeat_lab.postgres import describe_exit

EXIT_OK, EXIT_ERROR = 0, 1
DAG_ID = "ssh_heartbeat"
LOOPBACK = "127.0.0.1"
POLL_S = 2.0
MAX_DETAIL_LINES = 8
MAIN_STATUSES = ("ONLINE", "WARNING", "OFFLINE")
ADMIN_USER = "admin"
EXIT_AFTER_ENV = "HEARTBEAT_DEMO_EXIT_AFTER_S"


class DemoError(RuntimeError):
    """Something the person running the demo can fix; printed without a traceback."""


class StopDemo(Exception):
    """SIGTERM, SIGHUP or --exit-after: stop everything and exit."""


class Progress:
    """Start-up steps, each printed with the seconds since launch, so a minute of waiting is not silent."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, message: str) -> None:
        print(f"[{self.elapsed():5.1f} s] {message}", flush=True)


@dataclass(frozen=True)
class Options:
    state_dir: Path
    port: int
    fleet: bool
    exit_after_s: float | None


@dataclass(frozen=True)
class DemoServer:
    """One inventory row of the demo fleet and what the demo expects of it."""

    name: str
    host: str
    port: int
    expect: str
    host_key: str | None = None


# -- options and state ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m heartbeat_lab.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--no-fleet", action="store_true",
                        help="no demo servers: monitor your own inventory and SSH connection (`make up`)")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".state",
                        help="where the databases, keys and Airflow home live (default: .state)")
    parser.add_argument("--port", type=int, default=8080, help="port of the Airflow UI on 127.0.0.1 (default 8080)")
    parser.add_argument("--exit-after", type=float, metavar="SECONDS", default=_env_float(EXIT_AFTER_ENV),
                        help=f"stop by itself after this many seconds (default: ${EXIT_AFTER_ENV}, or never)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port")
    return Options(state_dir=args.state_dir.absolute(), port=args.port, fleet=not args.no_fleet,
                   exit_after_s=args.exit_after)


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"error: {name}={raw!r} is not a number of seconds") from None


class StateFile:
    """Small JSON facts kept between runs (the ports), so a resumed demo keeps its addresses."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def port(self, key: str, hosts: Sequence[str], pick: Callable[[], int]) -> int:
        saved = self._data.get(key)
        if isinstance(saved, int) and all(port_is_free(h, saved) for h in hosts):
            return saved
        self._data[key] = pick()
        self._path.write_text(json.dumps(self._data, indent=1) + "\n")
        return int(self._data[key])


# -- the stack -------------------------------------------------------------------------------


def start_postgres(options: Options, state: StateFile, stack: contextlib.ExitStack) -> PostgresServer:
    port = state.port("postgres_port", [LOOPBACK], free_port)
    server = PostgresServer(options.state_dir / "postgres", port=port)
    stack.callback(server.stop)
    try:
        server.start()
    except RuntimeError as exc:
        raise DemoError(str(exc)) from None
    for database in ("airflow", "heartbeat"):
        server.create_database(database)
    return server


def migrate_heartbeat(dsn: str) -> list[str]:
    with store.connect(dsn) as conn:
        return store.migrate(conn)


def user_heartbeat_db() -> tuple[str, str] | None:
    """(connection JSON or URI, libpq DSN) of the user's own heartbeat database, if one is set."""
    raw = os.environ.get("AIRFLOW_CONN_HEARTBEAT_DB", "").strip()
    if not raw:
        return None
    from heartbeat.config import HEARTBEAT_DB_CONN_ID
    from heartbeat.connections import ConnectionNotFound, heartbeat_db_dsn  # imports Airflow's SDK: only here

    try:
        return raw, heartbeat_db_dsn(HEARTBEAT_DB_CONN_ID)
    except (ConnectionNotFound, ValueError) as exc:
        raise DemoError(f"AIRFLOW_CONN_HEARTBEAT_DB cannot be used: {exc}") from None


def admin_password(path: Path) -> str:
    """The UI password of ``admin``, created once and kept in SimpleAuthManager's own file."""
    passwords: dict[str, str] = json.loads(path.read_text() or "{}") if path.exists() else {}
    if not passwords.get(ADMIN_USER):
        passwords[ADMIN_USER] = secrets.token_urlsafe(12)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(passwords) + "\n")
    path.chmod(0o600)
    return passwords[ADMIN_USER]


def passthrough_environment() -> dict[str, str]:
    """The user's monitor settings and connections, which the lab environment otherwise drops."""
    keep = ("HEARTBEAT_", "AIRFLOW_CONN_", "AIRFLOW_VAR_")
    handled = {EXIT_AFTER_ENV, "AIRFLOW_CONN_HEARTBEAT_DB", "AIRFLOW_CONN_HEARTBEAT_SSH"}
    return {k: v for k, v in os.environ.items() if k.startswith(keep) and k not in handled}


def airflow_env(options: Options, pg_port: int, heartbeat_db_json: str, ssh_json: str | None) -> dict[str, str]:
    home = options.state_dir / "airflow"
    passwords = home / "simple_auth_manager_passwords.json"
    admin_password(passwords)
    extra = {
        **passthrough_environment(),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        # LocalExecutor forks this many workers up front; a cycle runs 2 + one task per 50 servers.
        "AIRFLOW__CORE__PARALLELISM": "8",
        # A task killed with an earlier demo is failed after 60 s instead of 5 minutes, so that
        # it does not hold up (max_active_runs=1) the cycles of the resumed demo.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
    }
    env = airflow_environment(
        home,
        f"postgresql+psycopg://postgres@{LOOPBACK}:{pg_port}/airflow",
        heartbeat_db_json=heartbeat_db_json,
        ssh_conn_json=ssh_json or "",
        api_port=options.port,
        extra=extra,
    )
    if ssh_json is None:
        env.pop("AIRFLOW_CONN_HEARTBEAT_SSH", None)  # then the UI's connection (metadata database) is used
    return env


def migrate_metadata(env: Mapping[str, str]) -> None:
    try:
        migrate_airflow_metadata(env)
    except RuntimeError as exc:
        raise DemoError(str(exc)) from None


def start_airflow(env: Mapping[str, str], options: Options, stack: contextlib.ExitStack,
                  progress: Progress) -> AirflowProcesses:
    procs = AirflowProcesses(env, options.state_dir / "logs")
    stack.callback(procs.stop)
    try:
        procs.start()
        progress.step("Airflow: api-server, scheduler, dag-processor and triggerer healthy")
        if wait_for_dag(procs.env, DAG_ID, procs=procs):
            unpause_dag(procs.env, DAG_ID)
            progress.step(f"Airflow: {DAG_ID} was paused, unpaused it")
    except AirflowStartError as exc:
        raise DemoError(str(exc)) from None
    return procs


# -- the demo fleet --------------------------------------------------------------------------

HEALTHY = 10
SSHD_COUNT = HEALTHY + 3  # and db-01 (an alert), legacy-01 (host key rotated), batch-01 (wrong client key)


def start_fleet(options: Options, state: StateFile, stack: contextlib.ExitStack) -> tuple[list[DemoServer], Path]:
    """Start the demo fleet; returns its inventory rows and the client key that logs in."""
    keys = options.state_dir / "keys"
    client = _keypair(keys / "demo_id_ed25519", "heartbeat-demo")
    stranger = _keypair(keys / "stranger_id_ed25519", "not-the-monitor")
    hosts = [f"127.0.0.{2 + i}" for i in range(SSHD_COUNT)]
    port = state.port("fleet_port", hosts, lambda: _common_port(hosts))
    fleet = SshdFleet(options.state_dir / "fleet", SSHD_COUNT, authorized_keys=[client.public_line], port=port)
    web, db, legacy, batch = fleet.servers[:HEALTHY], fleet[HEALTHY], fleet[HEALTHY + 1], fleet[HEALTHY + 2]
    batch.set_authorized_keys([stranger.public_line])
    pinned = _rotated_after_pinning(legacy, options.state_dir / "fleet" / "legacy-01.pinned.pub")
    stack.callback(fleet.stop)
    fleet.start()

    silent_host, down_host = f"127.0.0.{2 + SSHD_COUNT}", f"127.0.0.{3 + SSHD_COUNT}"
    silent = SilentPeer(silent_host, port=port if port_is_free(silent_host, port) else 0)
    stack.callback(silent.stop)
    silent.start()
    down_port = port if port_is_free(down_host, port) else refused_port(down_host)

    servers = [DemoServer(f"web-{i:02d}", s.host, s.port, "ONLINE") for i, s in enumerate(web, 1)]
    servers += [
        DemoServer("db-01", db.host, db.port, "WARNING"),
        DemoServer("legacy-01", legacy.host, legacy.port, "OFFLINE", host_key=pinned),
        DemoServer("batch-01", batch.host, batch.port, "OFFLINE"),
        DemoServer("mail-01", silent.host, silent.port, "OFFLINE"),
        DemoServer("backup-01", down_host, down_port, "OFFLINE"),
    ]
    return servers, client.private_path


def _keypair(path: Path, comment: str) -> KeyPair:
    if path.exists() and path.with_name(path.name + ".pub").exists():
        return load_keypair(path)
    return generate_keypair(path, comment=comment)


def _common_port(hosts: Sequence[str], attempts: int = 20) -> int:
    """A port free on every fleet address and on the two addresses after it (silent, down)."""
    last = hosts[-1].rsplit(".", 1)
    extra = [f"{last[0]}.{int(last[1]) + n}" for n in (1, 2)]
    for _ in range(attempts):
        candidate = free_port(hosts[0])
        if all(port_is_free(h, candidate) for h in [*hosts[1:], *extra]):
            return candidate
    raise DemoError(f"no TCP port is free on all of {hosts[0]}..{extra[-1]}; free some ports and retry")


def _rotated_after_pinning(server: SshdServer, pinned_path: Path) -> str:
    """The key the inventory pins for ``server``: the host key it had before its key was rotated."""
    if pinned_path.exists():
        return pinned_path.read_text().strip()
    pinned = server.host_key_public_line
    server.rotate_host_key()
    pinned_path.write_text(pinned + "\n")
    return pinned


def register_fleet(dsn: str, servers: Sequence[DemoServer]) -> None:
    """Add or update the demo servers (idempotent). A pin is set only on first registration, so a
    key accepted later with ``heartbeat servers accept-key`` is kept; the alert is raised once."""
    with store.connect(dsn) as conn:
        known = {r.name for r in store.list_servers(conn)}
        specs = [validate_server({"name": s.name, "host": s.host, "port": s.port,
                                  "host_key": None if s.name in known else s.host_key}) for s in servers]
        store.upsert_servers(conn, specs)
        active = {r.name for r in store.list_alerts(conn)}
        for server in servers:
            if server.expect == "WARNING" and server.name not in active:
                store.raise_alert(conn, server.name, "disk_full", message="/var at 93%", source="demo")


# -- the live summary ------------------------------------------------------------------------


def read_status() -> dict[str, Any]:
    """``heartbeat status --json``, run in this process: the command's own code and output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["status", "--json"])
    if code != cli.EXIT_OK:
        raise DemoError(err.getvalue().strip() or f"`heartbeat status` exited with {code}")
    return dict(json.loads(out.getvalue()))


def status_summary(report: Mapping[str, Any], now: datetime) -> list[str]:
    """One screen: the counts and the last cycle, then every server that is not ONLINE."""
    rows, last = report["servers"], report["last_cycle"]
    stamp = f"{now:%H:%M:%S}"
    if not last:
        return [f"{stamp}  {len(rows)} servers; waiting for the first cycle of {DAG_ID} (the scheduler starts it)"]
    counts = Counter(r["status"] for r in rows)
    shown = [*MAIN_STATUSES, *sorted(set(counts) - set(MAIN_STATUSES))]
    finished = datetime.fromisoformat(last["finished_at"])
    lines = [f"{stamp}  {len(rows)} servers: {', '.join(f'{counts[s]} {s}' for s in shown)}   "
             f"(last cycle finished {finished.astimezone():%H:%M:%S})"]
    others = [r for r in rows if r["status"] != "ONLINE"]
    width = max((len(r["server_name"]) for r in others), default=0)
    lines += [f"          {r['status']:<7}  {r['server_name']:<{width}}  {r['reason']}"
              for r in others[:MAX_DETAIL_LINES]]
    if len(others) > MAX_DETAIL_LINES:
        lines.append(f"          ... and {len(others) - MAX_DETAIL_LINES} more (`heartbeat status`)")
    return lines


def summary_key(report: Mapping[str, Any]) -> tuple[object, ...]:
    """What makes a summary worth printing again: a new cycle, or other counts per status. Before
    the first cycle the summary says only that it waits (the counts move as its probes land)."""
    if not report.get("last_cycle"):
        return ("waiting for the first cycle",)
    cycle = report["last_cycle"].get("cycle_id")
    return cycle, tuple(sorted(Counter(r["status"] for r in report["servers"]).items()))


def watch_postgres(postgres: PostgresServer, reported: bool) -> bool:
    """Say once that the demo's private PostgreSQL has exited; returns whether that has been said.

    The demo does not restart it. The postmaster restarts its own crashed backends (crash
    recovery), so a postmaster that exits was shut down on purpose (``pg_ctl stop``, a signal)
    or hit something a restart does not mend (a full disk, a damaged data directory); starting it
    again behind the operator's back would fight the first and hide the second. Airflow and the
    summary carry on retrying meanwhile, and resume by themselves once it runs again.
    """
    if postgres.is_running() or reported:
        return reported
    print(f"{time.strftime('%H:%M:%S')}  PostgreSQL {describe_exit(postgres.returncode)}; the demo does not "
          f"restart it (log {postgres.log_path}): nothing is recorded until it runs again; "
          "stop the demo and run it again to start it (the state is kept)", flush=True)
    return True


def watch(procs: AirflowProcesses, postgres: PostgresServer, options: Options, deadline: float | None) -> None:
    """Print the summary when a cycle has finished or the counts have changed, and restart Airflow
    components that exit, until Ctrl-C, SIGTERM or the deadline."""
    shown: object = None
    next_read = time.monotonic()
    postgres_reported = False
    while deadline is None or time.monotonic() < deadline:
        for event in procs.supervise():
            print(f"{time.strftime('%H:%M:%S')}  {event}", flush=True)
        postgres_reported = watch_postgres(postgres, postgres_reported)
        if time.monotonic() >= next_read:
            next_read = time.monotonic() + POLL_S
            try:
                report = read_status()
                key: object = summary_key(report)
                lines = status_summary(report, datetime.now().astimezone())
            except (DemoError, psycopg.Error) as exc:  # a database outage must not end the demo
                message = (str(exc).strip().splitlines() or [type(exc).__name__])[0].removeprefix("error: ")
                lines, key = [f"{time.strftime('%H:%M:%S')}  cannot read the status: {message}"], message
            if key != shown:
                print("\n".join(lines), flush=True)
                shown = key
        pause = min(POLL_S, max(0.0, next_read - time.monotonic()))
        restart_in = procs.seconds_to_next_restart()
        time.sleep(max(0.1, min(pause, restart_in) if restart_in is not None else pause))
    raise StopDemo(f"--exit-after {options.exit_after_s:g} s reached")


# -- main ------------------------------------------------------------------------------------


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """Exports that let ``heartbeat status`` (and friends) in another terminal reach the demo."""
    keys = [k for k in ("AIRFLOW_CONN_HEARTBEAT_DB", "AIRFLOW_CONN_HEARTBEAT_SSH") if k in env]
    path.write_text("".join(f"export {k}={shlex.quote(env[k])}\n" for k in keys))


def print_banner(options: Options, env: Mapping[str, str]) -> None:
    password = admin_password(Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]))
    state = options.state_dir
    print(f"""
Airflow UI   http://{LOOPBACK}:{options.port}   login {ADMIN_USER} / {password}
DAG          {DAG_ID}, every 30 s; a summary follows each cycle, and each change in between
CLI          source {state / 'heartbeat.env'} && .venv/bin/heartbeat status --verbose
Logs         {state / 'logs'} (components), {state / 'airflow' / 'logs'} (tasks)
Stop         Ctrl-C (state is kept in {state}; `make clean` removes it)
""", flush=True)


def run(options: Options, stack: contextlib.ExitStack) -> None:
    progress = Progress()
    deadline = None if options.exit_after_s is None else progress.started + options.exit_after_s
    if not port_is_free(LOOPBACK, options.port):
        raise DemoError(f"port {options.port} on {LOOPBACK} is already in use (another demo or Airflow?): stop it, "
                        "or choose another port with --port N")
    options.state_dir.mkdir(parents=True, exist_ok=True)
    state = StateFile(options.state_dir / "demo.json")
    postgres = start_postgres(options, state, stack)
    own_db = None if options.fleet else user_heartbeat_db()
    if own_db is None:
        heartbeat_json = postgres_connection_json(LOOPBACK, postgres.port, "heartbeat")
        heartbeat_dsn = postgres.dsn("heartbeat")
    else:
        heartbeat_json, heartbeat_dsn = own_db
    applied = migrate_heartbeat(heartbeat_dsn)
    progress.step(f"PostgreSQL on {LOOPBACK}:{postgres.port}; heartbeat schema "
                  + (f"migrated ({', '.join(applied)})" if applied else "up to date"))

    if options.fleet:
        servers, key_file = start_fleet(options, state, stack)
        register_fleet(heartbeat_dsn, servers)
        ssh_json: str | None = ssh_connection_json(getpass.getuser(), key_file)
        expected = Counter(s.expect for s in servers)
        progress.step(f"demo fleet: {len(servers)} servers on 127.0.0.2-{servers[-1].host.rsplit('.', 1)[1]}, "
                      f"expect {', '.join(f'{expected[s]} {s}' for s in MAIN_STATUSES)}")
    else:
        ssh_json = os.environ.get("AIRFLOW_CONN_HEARTBEAT_SSH") or None
        explain_own_setup(heartbeat_dsn, ssh_json, options.state_dir)

    env = airflow_env(options, postgres.port, heartbeat_json, ssh_json)
    write_env_file(options.state_dir / "heartbeat.env", env)
    migrate_metadata(env)
    progress.step("Airflow: metadata database migrated; starting its four components")
    procs = start_airflow(env, options, stack, progress)
    progress.step(f"Airflow: {DAG_ID} parsed and scheduled; its first cycle follows")
    print_banner(options, procs.env)
    os.environ.update({k: v for k, v in procs.env.items() if k.startswith(("AIRFLOW", "HEARTBEAT_"))})
    watch(procs, postgres, options, deadline)


def explain_own_setup(dsn: str, ssh_json: str | None, state_dir: Path) -> None:
    with store.connect(dsn) as conn:
        count = len(store.list_servers(conn))
    if ssh_json is None:
        print("AIRFLOW_CONN_HEARTBEAT_SSH is not set: define the connection heartbeat_ssh in the UI "
              "(Admin > Connections) or export it before `make up`")
    if count == 0:
        print("the inventory is empty: add servers with `heartbeat servers add NAME HOST` or "
              f"`heartbeat servers import FILE` (after `source {state_dir / 'heartbeat.env'}`)")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the demo like Ctrl-C does; Ctrl-C (SIGINT) stops it even when it
    was started with SIGINT ignored (``trap '' INT`` in a script; ``cmd &`` in a non-interactive
    shell): Python then keeps the inherited SIG_IGN instead of raising KeyboardInterrupt."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        raise StopDemo(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def close_uninterrupted(stack: contextlib.ExitStack) -> None:
    """Stop everything; further Ctrl-C or SIGTERM only say that stopping is under way."""

    def patience(signum: int, frame: FrameType | None) -> None:
        print("still stopping, please wait (everything started is being stopped)", flush=True)

    previous = {sig: signal.signal(sig, patience) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        stack.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_until_stopped(
    run_demo: Callable[[contextlib.ExitStack], None], errors: tuple[type[BaseException], ...],
) -> int:
    """Run a demo until Ctrl-C, SIGTERM, its exit time or one of ``errors`` (printed, exit 1), then
    close everything it put on its stack, uninterrupted. Shared by ``make demo`` and ``make demo-sites``."""
    sys.dont_write_bytecode = False
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stack = contextlib.ExitStack()
    code = EXIT_OK
    with stop_on_signals():
        try:
            run_demo(stack)
        except KeyboardInterrupt:
            print("\nCtrl-C: stopping...", flush=True)
        except StopDemo as exc:
            print(f"\n{exc}: stopping...", flush=True)
        except errors as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            code = EXIT_ERROR
        finally:
            stopping = time.monotonic()
            close_uninterrupted(stack)
            took = time.monotonic() - stopping
            if code == EXIT_OK or took >= 1:
                print(f"stopped in {took:.0f} s", flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    return run_until_stopped(lambda stack: run(options, stack),
                             (DemoError, AirflowStartError, SchemaError, SettingsError, psycopg.OperationalError))


if __name__ == "__main__":
    sys.exit(main())
