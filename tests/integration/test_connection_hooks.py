"""Airflow connections mean what they mean to the provider hooks: a postgres connection's extras
reach the heartbeat database's sessions (PostgresHook opens them), an SSH connection's
``host_key``, ``port`` and ``conn_timeout`` apply to the servers that use it and
``no_host_key_check`` is refused, against real PostgreSQL and sshd on loopback."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import pwd
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support import add_servers, query

from heartbeat import connections, cycle
from heartbeat.config import Settings
from heartbeat_lab import KeyPair, PostgresServer, SshdFleet
from heartbeat_lab.airflow_env import postgres_connection_json, ssh_connection_json
from heartbeat_lab.ports import require_loopback

pytestmark = pytest.mark.integration

SETTINGS = Settings(connect_timeout_s=2, probe_timeout_s=4)
STATEMENT_TIMEOUT = {"sslmode": "disable", "options": "-c statement_timeout=4321"}


def database_of(dsn: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])


def run_cycle(cycle_id: str) -> dict[str, dict]:
    """One whole cycle through the cycle functions, as the DAG's tasks run it; the outcome per server."""
    started = cycle.utc_now()
    for shard in cycle.load_shards(SETTINGS, cycle_id, started):
        cycle.probe_shard(SETTINGS, cycle_id, shard.to_json())
    cycle.materialise(SETTINGS, cycle_id, cycle.utc_now())
    with cycle.db_connect(SETTINGS) as conn:
        rows = conn.execute(
            "SELECT s.name, h.ok, h.error_class, h.message, st.status FROM probe_history h "
            "JOIN servers s ON s.id = h.server_id JOIN server_status st ON st.server_id = s.id "
            "WHERE h.cycle_id = %s", (cycle_id,)).fetchall()
    return {r["name"]: r for r in rows}


# -- the heartbeat database -----------------------------------------------------------------


def test_should_give_the_heartbeat_database_session_the_options_and_sslmode_of_its_connection(
    heartbeat_env, heartbeat_dsn, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_DB", postgres_connection_json(
        postgres.host, postgres.port, database_of(heartbeat_dsn), extra=STATEMENT_TIMEOUT))

    from heartbeat.web.app import Database

    for opened in (connections.heartbeat_db_connection("heartbeat_db"), cycle.db_connect(SETTINGS),
                   Database().open()):  # the task, the command line, the dashboard
        with opened as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == {"statement_timeout": "4321ms"}
            assert conn.execute("SHOW application_name").fetchone() == {"application_name": "airflow-ssh-heartbeat"}
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == {
                "ssl": False}
            assert not conn.autocommit

    assert "statement_timeout=4321" in connections.heartbeat_db_dsn("heartbeat_db")


def test_should_run_a_cycle_on_a_database_connection_with_extras(
    heartbeat_env, heartbeat_dsn, postgres: PostgresServer, fleet: SshdFleet, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_DB", postgres_connection_json(
        postgres.host, postgres.port, database_of(heartbeat_dsn),
        extra={**STATEMENT_TIMEOUT, "application_name": "heartbeat-test", "connect_timeout": 3}))
    target = fleet.servers[0]
    add_servers(heartbeat_dsn, [{"name": "web", "host": target.host, "port": target.port}])

    outcome = run_cycle("c1")

    assert outcome["web"]["ok"] and outcome["web"]["status"] == "ONLINE"
    sessions = query(heartbeat_dsn, "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = %s",
                     ("heartbeat-test",))
    assert sessions[0]["n"] == 0  # the connection's own application_name was used, and every session closed


@pytest.mark.parametrize(("extra", "words"), [
    ({"cursor": "namedtuplecursor"}, "the 'cursor' extra is 'namedtuplecursor'"),
    ({"sslmod": "disable"}, 'invalid connection option "sslmod"'),
], ids=["a cursor the store cannot read", "a misspelt libpq parameter"])
def test_should_refuse_a_database_connection_extra_with_what_to_fix(
    heartbeat_env, heartbeat_dsn, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch, extra, words
):
    monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_DB", postgres_connection_json(
        postgres.host, postgres.port, database_of(heartbeat_dsn), extra=extra))
    with pytest.raises(ValueError, match="connection 'heartbeat_db'") as raised:
        cycle.db_connect(SETTINGS)
    assert words in str(raised.value)


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[tuple[PostgresServer, Path]]:
    """A PostgreSQL server with TLS on, its certificate self-signed for 127.0.0.1 (the CA file a
    client verifies it with is that certificate)."""
    root = Path(tempfile.mkdtemp(prefix="heartbeat-test-tls-"))
    cert, key = root / "tls" / "server.crt", root / "tls" / "server.key"
    self_signed_certificate(cert, key)
    settings = {"ssl": "on", "ssl_cert_file": str(cert), "ssl_key_file": str(key)}
    try:
        with PostgresServer(root / "data", settings=settings) as server:
            server.create_database("heartbeat")
            yield server, cert
    finally:
        shutil.rmtree(root, ignore_errors=True)


def self_signed_certificate(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path.parent.mkdir(parents=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    if os.geteuid() == 0:  # the lab runs PostgreSQL as the user postgres, which must own its key
        owner = pwd.getpwnam("postgres")
        for path in (cert_path.parent, cert_path, key_path):
            os.chown(path, owner.pw_uid, owner.pw_gid)


def test_should_verify_the_database_server_with_the_sslrootcert_of_the_connection(
    tls_postgres, monkeypatch: pytest.MonkeyPatch, other_key: KeyPair
):
    server, cert = tls_postgres
    monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_DB", postgres_connection_json(
        server.host, server.port, "heartbeat", extra={"sslmode": "verify-full", "sslrootcert": str(cert)}))
    with connections.heartbeat_db_connection("heartbeat_db") as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == {"ssl": True}

    # Any file that is not the server's CA: the server is not trusted, and the error says where to look.
    monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_DB", postgres_connection_json(
        server.host, server.port, "heartbeat", extra={"sslmode": "verify-full", "sslrootcert": str(wrong_ca(cert))}))
    with pytest.raises(psycopg.OperationalError, match=r"cannot reach the heartbeat database: .*certificate verify"):
        connections.heartbeat_db_connection("heartbeat_db")


def wrong_ca(cert: Path) -> Path:
    other = cert.parent.parent / "other-ca"
    if not other.exists():
        self_signed_certificate(other / "ca.crt", other / "ca.key")
    return other / "ca.crt"


# -- SSH connections -------------------------------------------------------------------------


def use_ssh_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, client_key: KeyPair,
                       port: int | None = None, **extra: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}",
                       ssh_connection_json("root", client_key.private_path, port=port, extra=extra))


@pytest.mark.parametrize(("pin", "ok", "status"), [
    ("its own key", True, "ONLINE"),
    ("its own key, base64 only", True, "ONLINE"),
    ("another server's key", False, "OFFLINE"),
])
def test_should_pin_the_host_key_of_a_connection_for_the_servers_that_use_it(
    heartbeat_env, heartbeat_dsn, fleet: SshdFleet, client_key: KeyPair, monkeypatch: pytest.MonkeyPatch,
    pin, ok, status,
):
    target, other = fleet.servers[0], fleet.servers[1]
    host_key = {"its own key": target.host_key_public_line,
                "its own key, base64 only": target.host_key_public_line.split()[1],
                "another server's key": other.host_key_public_line}[pin]
    use_ssh_connection(monkeypatch, "heartbeat_ssh", client_key, host_key=host_key)
    add_servers(heartbeat_dsn, [{"name": "web", "host": target.host, "port": target.port}])

    web = run_cycle("c1")["web"]

    assert (web["ok"], web["status"]) == (ok, status), web["message"]
    if not ok:
        assert web["error_class"] == "host_key_changed"
        assert other.host_key_fingerprint in web["message"] and target.host_key_fingerprint in web["message"]
        assert "the host_key extra of connection 'heartbeat_ssh', which every server using it must present" \
            in web["message"]


def test_should_fail_the_servers_whose_key_differs_from_the_host_key_their_shared_connection_pins(
    heartbeat_env, heartbeat_dsn, fleet: SshdFleet, client_key: KeyPair, monkeypatch: pytest.MonkeyPatch
):
    """One connection, three servers with three keys: only the server holding the pinned key
    passes; an inventory key of its own frees a server from the connection's pin."""
    first, second, third = fleet.servers[:3]
    use_ssh_connection(monkeypatch, "heartbeat_ssh", client_key, host_key=first.host_key_public_line)
    add_servers(heartbeat_dsn, [
        {"name": "first", "host": first.host, "port": first.port},
        {"name": "second", "host": second.host, "port": second.port},
        {"name": "third", "host": third.host, "port": third.port, "host_key": third.host_key_public_line},
    ])

    outcome = run_cycle("c1")

    assert {name: row["error_class"] for name, row in outcome.items()} == {
        "first": None, "second": "host_key_changed", "third": None}
    pinned = {r["name"]: r["host_key"] for r in query(heartbeat_dsn, "SELECT name, host_key FROM servers")}
    assert pinned == {"first": first.host_key_public_line, "second": None, "third": third.host_key_public_line}


def test_should_use_the_port_of_a_connection_for_servers_on_the_default_port(
    heartbeat_env, heartbeat_dsn, fleet: SshdFleet, client_key: KeyPair, monkeypatch: pytest.MonkeyPatch
):
    target = fleet.servers[0]
    assert target.port != 22
    use_ssh_connection(monkeypatch, "on_port", client_key, port=target.port)
    add_servers(heartbeat_dsn, [{"name": "web", "host": target.host, "port": 22, "conn_id": "on_port"}])

    web = run_cycle("c1")["web"]

    assert web["ok"], web["message"]


@contextlib.contextmanager
def unanswered_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A loopback port whose SYNs go unanswered: a listener whose accept queue is full drops
    them, and a client's connect waits as for a blackholed address. Nothing leaves the machine."""
    require_loopback(host)
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind((host, 0))
        listener.listen(0)
        for _ in range(16):
            filler = socket.socket()
            filler.settimeout(0.3)
            try:
                filler.connect(listener.getsockname())
            except TimeoutError:
                filler.close()
                break
            fillers.append(filler)
        else:
            pytest.fail("the listener's accept queue never filled up")
        yield listener.getsockname()[1]
    finally:
        for sock in (*fillers, listener):
            sock.close()


def test_should_bound_the_tcp_connect_of_a_connections_servers_by_its_conn_timeout(
    heartbeat_env, heartbeat_dsn, client_key: KeyPair, monkeypatch: pytest.MonkeyPatch
):
    use_ssh_connection(monkeypatch, "quick", client_key, conn_timeout=0.5)
    with unanswered_port() as port:
        add_servers(heartbeat_dsn, [{"name": "quick", "host": "127.0.0.1", "port": port, "conn_id": "quick"},
                                    {"name": "default", "host": "127.0.0.1", "port": port}])
        started = time.monotonic()
        outcome = run_cycle("c1")
        elapsed = time.monotonic() - started

    assert {name: (row["error_class"], row["message"]) for name, row in outcome.items()} == {
        "quick": ("timeout", f"TCP connect to port {port} timed out after 0.5 s"),
        "default": ("timeout", f"TCP connect to port {port} timed out after {SETTINGS.connect_timeout_s:g} s"),
    }
    assert elapsed < SETTINGS.connect_timeout_s + 2.0


@pytest.mark.parametrize("extra", [
    {"no_host_key_check": True},
    {"no_host_key_check": "true"},
    {"ignore_hostkey_verification": "True"},
    {"allow_host_key_change": True},
], ids=json.dumps)
def test_should_refuse_a_connection_that_skips_the_host_key_check_for_its_servers_only(
    heartbeat_env, heartbeat_dsn, fleet: SshdFleet, client_key: KeyPair, monkeypatch: pytest.MonkeyPatch, extra
):
    lax, fine = fleet.servers[0], fleet.servers[1]
    use_ssh_connection(monkeypatch, "lax", client_key, **extra)
    add_servers(heartbeat_dsn, [{"name": "lax", "host": lax.host, "port": lax.port, "conn_id": "lax"},
                                {"name": "fine", "host": fine.host, "port": fine.port}])

    outcome = run_cycle("c1")

    assert outcome["fine"]["ok"] and outcome["fine"]["status"] == "ONLINE"
    refused = outcome["lax"]
    assert (refused["ok"], refused["error_class"], refused["status"]) == (False, "other", "OFFLINE")
    assert f"connection 'lax' sets {next(iter(extra))}: true" in refused["message"]
    assert "a monitor that accepts any host key proves nothing" in refused["message"]


@pytest.mark.parametrize(("extra", "words"), [
    ({"host_key": "ssh-ed25519 not-base64!"}, "the host_key extra is not a public key"),
    ({"conn_timeout": "soon"}, "the conn_timeout extra must be a number of seconds above 0, not 'soon'"),
    ({"conn_timeout": 0}, "the conn_timeout extra must be a number of seconds above 0, not 0"),
], ids=["host_key", "conn_timeout word", "conn_timeout zero"])
def test_should_say_what_is_wrong_with_an_ssh_connections_extra(client_key: KeyPair, monkeypatch, extra, words):
    use_ssh_connection(monkeypatch, "broken", client_key, **extra)
    loaded = connections.ssh_connections(["broken"]).credentials["broken"]
    assert words in getattr(loaded, "message", ""), loaded
