"""Airflow Connections, the one place credentials come from: the heartbeat database
(``heartbeat_db``, a postgres connection) and SSH logins (``heartbeat_ssh`` by default).

Both mean what they mean to the providers' hooks. The heartbeat database is opened by the
Postgres provider's ``PostgresHook``, so every extra a postgres connection supports works here
as in any Airflow task (libpq parameters such as ``sslmode`` or ``options``, ``iam`` with
``aws_conn_id``, ``azure_conn_id``, ...). An SSH connection's fields and extras are read as
``SSHHook`` reads them, as far as they apply to a login-only probe: see :class:`SshConnections`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from psycopg.conninfo import make_conninfo

if TYPE_CHECKING:
    import psycopg

    from heartbeat.models import ProbeResult, Server
    from heartbeat.probe import ProbeOptions
    from heartbeat.ssh import ClientCredentials, CredentialsError

APPLICATION_NAME = "airflow-ssh-heartbeat"
DEFAULT_DATABASE = "heartbeat"
DEFAULT_SSH_PORT = 22


class ConnectionNotFound(LookupError):
    pass


def get_connection(conn_id: str) -> Any:
    """The Airflow Connection ``conn_id``, from environment variables (``AIRFLOW_CONN_<ID>``),
    a secrets backend or the metadata database, as Airflow resolves it."""
    from airflow.sdk import BaseHook  # imported late: Airflow's SDK takes a second or more to import

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:
        if type(exc).__name__ == "AirflowNotFoundException":
            raise ConnectionNotFound(
                f"Airflow connection {conn_id!r} is not defined: create it in the UI (Admin > Connections), "
                f"with `airflow connections add {conn_id} ...`, or as AIRFLOW_CONN_{conn_id.upper()}"
            ) from None
        raise


# -- the heartbeat database -----------------------------------------------------------------


def heartbeat_db_connection(
    conn_id: str, connect_timeout_s: float = 10.0, connection: Any | None = None
) -> psycopg.Connection[dict[str, Any]]:
    """Open the heartbeat database of postgres connection ``conn_id`` through ``PostgresHook``.

    The connection is set up as the store expects: rows as dicts, autocommit off (a ``with``
    block is one transaction), ``application_name`` ``airflow-ssh-heartbeat`` and a connect
    bound of ``connect_timeout_s`` unless the connection's extras set ``application_name`` or
    ``connect_timeout`` themselves. An empty *host* means ``localhost`` and an empty *schema*
    (the database name) ``heartbeat``, as they always have here.

    :param conn_id: the Airflow connection id (``heartbeat_db`` unless ``HEARTBEAT_DB_CONN_ID``).
    :param connect_timeout_s: the connect bound in seconds (whole seconds, at least 1), for a
        connection whose extras set no ``connect_timeout``. Default 10.
    :param connection: the Connection when the caller has looked it up already (the web app
        keeps it for a minute); looked up by ``conn_id`` otherwise.
    :raises ValueError: an extra the store cannot work with (``cursor`` other than
        ``dictcursor``) or that is no connection parameter (psycopg names it).
    :raises psycopg.OperationalError: the database cannot be reached, with what to check.
    """
    import psycopg
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # the provider loads only where used

    conn = connection if connection is not None else get_connection(conn_id)
    hook = PostgresHook(postgres_conn_id=conn_id, connection=_for_the_store(conn_id, conn, connect_timeout_s))
    try:
        opened = hook.get_conn()
    except psycopg.OperationalError as exc:
        raise psycopg.OperationalError(
            f"cannot reach the heartbeat database: {_first_line(exc)}. Check the Airflow connection "
            f"{conn_id!r} (AIRFLOW_CONN_{conn_id.upper()}) and that PostgreSQL is running."
        ) from None
    except psycopg.ProgrammingError as exc:
        raise ValueError(
            f"connection {conn_id!r}: {_first_line(exc)}; every extra of a postgres connection other than "
            f"{', '.join(sorted(PostgresHook.ignored_extra_options))} is passed to libpq: remove or rename it"
        ) from None
    pg = cast("psycopg.Connection[dict[str, Any]]", opened)
    pg.autocommit = False  # an 'autocommit' extra reaches psycopg too; the store's writes are transactions
    return pg


def heartbeat_db_dsn(conn_id: str) -> str:
    """The libpq connection string (password included) the hook's connection to the heartbeat
    database used, for code that must hand a string on (the demo). Opens one connection.
    With ``iam`` the password is a token that expires (15 minutes on AWS)."""
    with heartbeat_db_connection(conn_id) as conn:
        params = {
            option.keyword.decode(): option.val.decode()
            for option in conn.pgconn.info
            if option.val and option.val != option.compiled  # what differs from libpq's defaults
        }
    return make_conninfo(**params)


def _for_the_store(conn_id: str, conn: Any, connect_timeout_s: float) -> Any:
    """A copy of a postgres Connection with the extras that set up a connection as the store
    expects (dict rows, a connect bound, the application name); the connection's own win."""
    from airflow.sdk import Connection

    extra = dict(conn.extra_dejson or {})
    cursor = str(extra.get("cursor") or "dictcursor")
    if cursor.lower() != "dictcursor":
        raise ValueError(
            f"connection {conn_id!r}: the 'cursor' extra is {cursor!r}, but the heartbeat store reads rows "
            "by column name: remove the extra or set it to 'dictcursor'"
        )
    extra["cursor"] = "dictcursor"
    extra.setdefault("connect_timeout", max(1, int(connect_timeout_s)))
    extra.setdefault("application_name", APPLICATION_NAME)
    return Connection(
        conn_id=conn_id, conn_type=conn.conn_type or "postgres", host=conn.host or "localhost",
        schema=conn.schema or DEFAULT_DATABASE, login=conn.login, password=conn.password, port=conn.port,
        extra=json.dumps(extra),
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- SSH logins ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshConnections:
    """What the SSH connections of a set of servers say, each looked up and its key loaded once.

    One connection here holds the credentials of many servers (each server names its
    ``conn_id`` in the inventory), where ``SSHHook`` expects one connection per host. Its fields
    and extras mean what they mean to ``SSHHook``, for every server that uses it:

    - *login*: the user, for servers without a username of their own in the inventory;
    - *port*: the port, for servers whose inventory port is 22 (the inventory's default,
      indistinguishable from "not set"); another inventory port wins;
    - ``key_file`` / ``private_key`` (and ``private_key_passphrase``): the client key;
    - ``host_key``: the key every server using the connection must present, pinned for each
      server whose inventory row has no key of its own (an inventory key wins: one set by hand,
      by ``heartbeat servers accept-key``, or pinned on first use, which then pins this same
      key). Several servers with different keys on one connection cannot all match it: the
      others fail with ``host_key_changed`` on every cycle. Give such servers a connection each,
      or leave ``host_key`` out and pin per server (the inventory's ``host_key`` column or
      ``HEARTBEAT_KNOWN_HOSTS_FILE``);
    - ``conn_timeout``: seconds for name lookup and TCP connect of its servers, instead of
      ``HEARTBEAT_CONNECT_TIMEOUT_S`` (bounded by ``HEARTBEAT_PROBE_TIMEOUT_S``);
    - ``no_host_key_check: true`` (and its old name ``ignore_hostkey_verification``) and
      ``allow_host_key_change: true`` are refused: a monitor that accepts any host key proves
      nothing. The servers using such a connection fail their probe with the reason; the cycle
      goes on.

    The *host* field means nothing here (the inventory names the hosts) and *password* is not
    used (public-key logins only); ``SSHHook``'s command options (``cmd_timeout``, ``compress``,
    ``look_for_keys``, ``ciphers``, ``disabled_algorithms``) do not apply to a login without a
    command.
    """

    credentials: dict[str, ClientCredentials | CredentialsError]
    host_keys: dict[str, str]
    ports: dict[str, int]
    connect_timeouts_s: dict[str, float]

    def servers(self, servers: Sequence[Server]) -> list[Server]:
        """The servers as they are probed: with their connection's host key and port where
        their inventory row has none (port 22 counts as none)."""
        out = []
        for server in servers:
            changes: dict[str, Any] = {}
            if server.host_key is None and server.conn_id in self.host_keys:
                changes["host_key"] = self.host_keys[server.conn_id]
            if server.port == DEFAULT_SSH_PORT and server.conn_id in self.ports:
                changes["port"] = self.ports[server.conn_id]
            if server.path:  # its bastions are reached as they would be themselves
                changes["path"] = tuple(self.servers(server.path))
            out.append(replace(server, **changes) if changes else server)
        return out

    def options(self, options: ProbeOptions) -> ProbeOptions:
        """``options`` with each connection's ``conn_timeout`` as its servers' TCP connect bound."""
        return replace(options, connect_timeouts=tuple(
            (conn_id, min(seconds, options.probe_timeout_s))
            for conn_id, seconds in sorted(self.connect_timeouts_s.items())
        ))

    def explain(self, results: Sequence[ProbeResult], servers: Sequence[Server]) -> list[ProbeResult]:
        """Say in a changed-key result when the expected key is a connection's ``host_key``
        (``servers``: as the inventory has them, before :meth:`servers`)."""
        from heartbeat.models import ErrorClass
        from heartbeat.probe import MAX_MESSAGE_CHARS

        by_id = {s.id: s for s in servers}
        out = []
        for result in results:
            server = by_id.get(result.server_id)
            if (result.error_class == ErrorClass.HOST_KEY_CHANGED and server is not None
                    and server.host_key is None and server.conn_id in self.host_keys):
                message = (f"{result.message}; expected by the host_key extra of connection {server.conn_id!r}, "
                           "which every server using it must present: give this server its own connection "
                           "or its own host key in the inventory")
                result = replace(result, message=message[:MAX_MESSAGE_CHARS])
            out.append(result)
        return out


def ssh_connections(conn_ids: Iterable[str]) -> SshConnections:
    """Look up each SSH connection once and load its key; a connection that cannot be used
    becomes a :class:`CredentialsError`, so only the servers that use it fail their probe."""
    from heartbeat.ssh import ClientCredentials, CredentialsError, load_client_key  # the SSH stack: only here

    loaded = SshConnections({}, {}, {}, {})
    for conn_id in sorted(set(conn_ids)):
        try:
            conn = get_connection(conn_id)
            extra = conn.extra_dejson or {}
            _refuse_unchecked_host_keys(conn_id, extra)
            host_key = _host_key(conn_id, extra["host_key"]) if extra.get("host_key") else None
            connect_timeout_s = _seconds(conn_id, "conn_timeout", extra.get("conn_timeout"))
            key = load_client_key(
                conn_id,
                private_key=extra.get("private_key"),
                key_file=extra.get("key_file"),
                passphrase=extra.get("private_key_passphrase") or None,
            )
        except (ConnectionNotFound, ValueError) as exc:
            loaded.credentials[conn_id] = CredentialsError(conn_id, str(exc))
            continue
        loaded.credentials[conn_id] = ClientCredentials(conn_id=conn_id, username=conn.login or None, key=key)
        if host_key:
            loaded.host_keys[conn_id] = host_key
        if conn.port:
            loaded.ports[conn_id] = int(conn.port)
        if connect_timeout_s is not None:
            loaded.connect_timeouts_s[conn_id] = connect_timeout_s
    return loaded


def ssh_credentials(conn_ids: Iterable[str]) -> dict[str, ClientCredentials | CredentialsError]:
    """Each SSH connection's login identity, or why it cannot be used (see :func:`ssh_connections`)."""
    return ssh_connections(conn_ids).credentials


def ssh_public_key_line(conn_id: str) -> str:
    """``<type> <base64>`` of the public half of a connection's key (nothing secret)."""
    from heartbeat.ssh import CredentialsError

    loaded = ssh_credentials([conn_id])[conn_id]
    if isinstance(loaded, CredentialsError):
        raise ValueError(loaded.message)
    return loaded.key.public_line()


def _refuse_unchecked_host_keys(conn_id: str, extra: dict[str, Any]) -> None:
    for name, does in (("no_host_key_check", "accepts any host key"),
                       ("ignore_hostkey_verification", "accepts any host key"),
                       ("allow_host_key_change", "accepts a host key that changed")):
        if str(extra.get(name)).lower() == "true":
            raise ValueError(
                f"connection {conn_id!r} sets {name}: true, which {does}; the probe refuses it: a monitor that "
                "accepts any host key proves nothing (whoever answers on the address passes for the server). "
                "Remove the extra and pin keys: the host_key extra (one key for every server of the connection), "
                "the inventory's host_key (heartbeat servers add --host-key, or pinned on first use) or "
                "HEARTBEAT_KNOWN_HOSTS_FILE"
            )


def _host_key(conn_id: str, text: Any) -> str:
    """``<type> <base64>`` from a ``host_key`` extra; like ``SSHHook``, the base64 alone is
    accepted too (its type is read from the key data, where ``SSHHook`` assumes ssh-rsa)."""
    from heartbeat.ssh import HostKeyFormatError, normalise_public_key, public_key_from_base64

    parts = str(text).split()
    try:
        return public_key_from_base64(parts[0]) if len(parts) == 1 else normalise_public_key(" ".join(parts))
    except HostKeyFormatError as exc:
        raise ValueError(
            f"connection {conn_id!r}: the host_key extra is not a public key ({exc}); "
            "expected '<type> <base64>' as in known_hosts, e.g. 'ssh-ed25519 AAAAC3Nza...'"
        ) from None


def _seconds(conn_id: str, name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if not seconds > 0:
        raise ValueError(f"connection {conn_id!r}: the {name} extra must be a number of seconds above 0, "
                         f"not {value!r}")
    return seconds
