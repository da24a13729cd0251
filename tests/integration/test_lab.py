"""The lab itself: real PostgreSQL, real sshd and the misbehaving peers, all on loopback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import psycopg
import pytest

from heartbeat_lab import (
    BannerPeer,
    CloseAfterBannerPeer,
    DripBannerPeer,
    HangUpPeer,
    KeyPair,
    PostgresServer,
    SilentPeer,
    SshdFleet,
    SshdServer,
    find_postgres_bindir,
    free_port,
    generate_keypair,
    port_is_free,
    refused_port,
)

pytestmark = pytest.mark.integration


# -- helpers ------------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str]]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def _tree(root: int) -> set[int]:
    """``root`` and its live descendants."""
    table = _proc_table()
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid in table and table[pid][1] != "Z" and pid not in found:
            found.add(pid)
            stack.extend(child for child, (ppid, _) in table.items() if ppid == pid)
    return found


def _alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone: they hold no resources)."""
    table = _proc_table()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}


def _ssh(server: SshdServer, key: KeyPair, command: str = "true") -> tuple[str, str]:
    """Log in as root, run ``command``; return (its stdout, the host key line the server showed)."""

    async def login() -> tuple[str, str]:
        async with asyncssh.connect(
            server.host,
            server.port,
            username="root",
            client_keys=[str(key.private_path)],
            known_hosts=None,
            config=None,
            connect_timeout=10,
        ) as conn:
            host_key = conn.get_server_host_key()
            assert host_key is not None
            result = await asyncio.wait_for(conn.run(command, check=True), timeout=10)
            return str(result.stdout), host_key.export_public_key().decode()

    return asyncio.run(login())


def _connect(host: str, port: int, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


# -- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path_factory.mktemp("pg") / "data") as server:
        yield server


def test_should_find_a_postgres_bindir_with_server_and_initdb() -> None:
    bindir = find_postgres_bindir()

    assert (bindir / "postgres").is_file()
    assert (bindir / "initdb").is_file()


def test_should_create_a_database_idempotently_and_serve_queries_on_it(postgres: PostgresServer) -> None:
    postgres.create_database("heartbeat_lab")
    postgres.create_database("heartbeat_lab")

    with psycopg.connect(postgres.dsn("heartbeat_lab"), connect_timeout=5) as conn:
        row = conn.execute("select 1, current_database(), current_setting('fsync')").fetchone()

    assert row == (1, "heartbeat_lab", "off")
    assert postgres.host == "127.0.0.1"


def test_should_give_a_database_to_the_requested_owner(postgres: PostgresServer) -> None:
    postgres.create_role("lab_owner", "secret")
    postgres.create_database("owned_db", owner="lab_owner")

    with postgres.connect() as conn:
        owner = conn.execute("select pg_get_userbyid(datdba) from pg_database where datname = 'owned_db'").fetchone()

    assert owner == ("lab_owner",)


def test_should_drop_a_database_even_with_open_sessions(postgres: PostgresServer) -> None:
    postgres.create_database("doomed")
    session = postgres.connect("doomed")

    postgres.drop_database("doomed")
    postgres.drop_database("doomed")

    with postgres.connect() as conn:
        assert conn.execute("select 1 from pg_database where datname = 'doomed'").fetchone() is None
    session.close()


def test_should_keep_data_and_port_across_a_restart(postgres: PostgresServer) -> None:
    with postgres.connect() as conn:
        conn.execute("create table if not exists kept (v int); insert into kept values (42)")
    port, pid = postgres.port, postgres.pid

    postgres.restart()

    assert postgres.is_running()
    assert postgres.port == port
    assert postgres.pid != pid
    with postgres.connect() as conn:
        assert conn.execute("select v from kept").fetchall() == [(42,)]


def test_should_reuse_an_existing_cluster_and_leave_no_process_after_stop(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with PostgresServer(data_dir) as first:
        with first.connect() as conn:
            conn.execute("create table resumed (v text); insert into resumed values ('still here')")

    second = PostgresServer(data_dir)
    second.start()
    try:
        with second.connect() as conn:
            assert conn.execute("select v from resumed").fetchone() == ("still here",)
            backend_pid = conn.execute("select pg_backend_pid()").fetchone()
        assert second.pid is not None
        processes = _tree(second.pid)
        assert len(processes) > 1  # postmaster and its auxiliary processes
    finally:
        second.stop()

    assert backend_pid is not None
    assert not _alive(processes | {backend_pid[0]})
    assert not second.is_running()
    assert second.pid is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(second.dsn(), connect_timeout=2)


# -- sshd -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("client") / "id_ed25519", comment="lab-client")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, client_key: KeyPair) -> Iterator[SshdFleet]:
    with SshdFleet(tmp_path_factory.mktemp("fleet"), 2, authorized_keys=[client_key.public_line]) as fleet:
        yield fleet


@pytest.fixture
def server(tmp_path: Path, client_key: KeyPair) -> Iterator[SshdServer]:
    with SshdServer(tmp_path / "sshd", authorized_keys=[client_key.public_line]) as server:
        yield server


def test_should_write_a_private_key_only_its_owner_can_read(client_key: KeyPair) -> None:
    assert client_key.private_path.stat().st_mode & 0o777 == 0o600
    assert client_key.public_line.startswith("ssh-ed25519 AAAA")


def test_should_put_fleet_members_on_distinct_loopback_addresses_sharing_one_port(fleet: SshdFleet) -> None:
    assert [server.host for server in fleet.servers] == ["127.0.0.2", "127.0.0.3"]
    assert fleet.common_port is not None
    assert all(server.port == fleet.common_port for server in fleet.servers)
    assert all(server.is_running() for server in fleet.servers)
    assert len({server.host_key_public_line for server in fleet.servers}) == 2


def test_should_let_the_client_key_log_in_and_show_the_advertised_host_key(
    fleet: SshdFleet, client_key: KeyPair
) -> None:
    for server in fleet.servers:
        stdout, host_key_line = _ssh(server, client_key, "echo alive")

        assert stdout.strip() == "alive"
        assert " ".join(host_key_line.split()[:2]) == server.host_key_public_line


def test_should_report_the_fingerprint_ssh_keygen_prints(fleet: SshdFleet) -> None:
    server = fleet.servers[0]
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(server.host_key_path) + ".pub"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.split()[1]

    assert server.host_key_fingerprint == printed


def test_should_change_the_fingerprint_but_not_the_port_when_rotating_the_host_key(
    server: SshdServer, client_key: KeyPair
) -> None:
    before, port = server.host_key_fingerprint, server.port

    server.rotate_host_key()

    assert server.host_key_fingerprint != before
    assert server.port == port
    _, host_key_line = _ssh(server, client_key)
    assert " ".join(host_key_line.split()[:2]) == server.host_key_public_line


def test_should_keep_the_host_key_across_a_restart(server: SshdServer) -> None:
    before = server.host_key_fingerprint

    server.restart()

    assert server.is_running()
    assert server.host_key_fingerprint == before


def test_should_refuse_a_key_removed_from_authorized_keys_without_a_restart(
    server: SshdServer, client_key: KeyPair
) -> None:
    pid = server.pid
    server.set_authorized_keys([])

    with pytest.raises(asyncssh.PermissionDenied):
        _ssh(server, client_key)
    server.set_authorized_keys([client_key.public_line])
    stdout, _ = _ssh(server, client_key, "echo back")

    assert stdout.strip() == "back"
    assert server.pid == pid


def test_should_leave_no_process_after_stop_even_with_sessions_open(server: SshdServer, client_key: KeyPair) -> None:
    async def stop_during_sessions() -> set[int]:
        conns = [
            await asyncssh.connect(
                server.host,
                server.port,
                username="root",
                client_keys=[str(client_key.private_path)],
                known_hosts=None,
                config=None,
                connect_timeout=10,
            )
            for _ in range(2)
        ]
        for conn in conns:
            await conn.create_process("sleep 30")
        await asyncio.sleep(0.3)
        assert server.pid is not None
        processes = _tree(server.pid)
        await asyncio.to_thread(server.stop)
        for conn in conns:
            conn.abort()
        return processes

    processes = asyncio.run(stop_during_sessions())

    assert len(processes) >= 5  # listener, 2 sessions, 2 commands
    assert not _alive(processes)
    assert not server.is_running()
    with pytest.raises(ConnectionRefusedError):
        _connect(server.host, server.port)


def test_should_reject_an_invalid_extra_config_with_a_clear_error(tmp_path: Path) -> None:
    bad = SshdServer(tmp_path / "bad", extra_config={"NoSuchOption": "yes"})

    with pytest.raises(RuntimeError, match="sshd rejected"):
        bad.start()
    assert not bad.is_running()


def test_should_listen_on_ipv6_loopback(tmp_path: Path, client_key: KeyPair) -> None:
    with SshdServer(tmp_path / "v6", listen_host="::1", authorized_keys=[client_key.public_line]) as server:
        stdout, _ = _ssh(server, client_key, "echo v6")

    assert stdout.strip() == "v6"


def test_should_refuse_to_serve_on_a_non_loopback_address(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SshdServer(tmp_path / "out", listen_host="0.0.0.0")
    with pytest.raises(ValueError, match="loopback"):
        SilentPeer(host="localhost")


# -- peers ----------------------------------------------------------------------------------


def test_should_accept_and_then_stay_silent() -> None:
    with SilentPeer() as peer, _connect(peer.host, peer.port, timeout=0.3) as sock:
        sock.sendall(b"SSH-2.0-client\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert peer.wait_for_connections(1)


def test_should_send_the_configured_banner_and_keep_the_connection_open() -> None:
    banner = b"HTTP/1.1 400 Bad Request\r\n\r\n"
    with BannerPeer(banner) as peer, _connect(peer.host, peer.port) as sock:
        received = b""
        while len(received) < len(banner):
            chunk = sock.recv(1024)
            assert chunk, "peer closed early"
            received += chunk
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(1)

    assert received == banner


def test_should_drip_the_banner_one_byte_per_interval() -> None:
    with DripBannerPeer(b"220 smtp\r\n", interval_s=0.05) as peer, _connect(peer.host, peer.port) as sock:
        started = time.monotonic()
        first = sock.recv(1024)
        received = first
        while len(received) < 10:
            chunk = sock.recv(1024)
            assert chunk
            received += chunk
        elapsed = time.monotonic() - started

    assert len(first) == 1
    assert received == b"220 smtp\r\n"
    assert elapsed >= 9 * 0.05 * 0.8


def test_should_hang_up_after_the_client_banner_in_the_middle_of_the_key_exchange() -> None:
    with CloseAfterBannerPeer() as peer, _connect(peer.host, peer.port) as sock:
        assert sock.recv(1024) == b"SSH-2.0-OpenSSH_9.2\r\n"
        sock.sendall(b"SSH-2.0-client\r\n" + b"\x00\x00\x01\x00\x08\x14")

        assert sock.recv(1024) == b""
        assert peer.received.startswith(b"SSH-2.0-client\r\n")


def test_should_make_an_ssh_client_fail_when_hanging_up_mid_key_exchange() -> None:
    async def connect(port: int) -> None:
        async with asyncssh.connect(
            "127.0.0.1", port, username="root", known_hosts=None, config=None, connect_timeout=5
        ):
            pass

    with CloseAfterBannerPeer() as peer:
        with pytest.raises((asyncssh.Error, OSError)):
            asyncio.run(connect(peer.port))

        assert peer.received.startswith(b"SSH-2.0-")


@pytest.mark.parametrize(("reset", "expected"), [(False, b""), (True, ConnectionResetError)])
def test_should_hang_up_at_once_with_a_fin_or_a_reset(reset: bool, expected: object) -> None:
    with HangUpPeer(reset=reset) as peer, _connect(peer.host, peer.port) as sock:
        time.sleep(0.2)
        if expected == b"":
            assert sock.recv(1) == b""
        else:
            with pytest.raises(ConnectionResetError):
                sock.recv(1)


def test_should_close_client_connections_and_the_listener_on_stop() -> None:
    peer = SilentPeer()
    peer.start()
    sock = _connect(peer.host, peer.port)
    assert peer.wait_for_connections(1)

    started = time.monotonic()
    peer.stop()

    assert time.monotonic() - started < 2
    assert sock.recv(1) == b""
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        _connect(peer.host, peer.port)


def test_should_give_a_port_that_refuses_connections() -> None:
    port = refused_port()

    with pytest.raises(ConnectionRefusedError):
        _connect("127.0.0.1", port)


def test_should_tell_whether_a_port_is_free() -> None:
    port = free_port()
    assert port_is_free("127.0.0.1", port)

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        assert not port_is_free("127.0.0.1", port)
