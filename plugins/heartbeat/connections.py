"""Airflow Connections, the one place credentials come from: the heartbeat database
(``heartbeat_db``, a postgres connection) and SSH logins (``heartbeat_ssh`` by default)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from psycopg.conninfo import make_conninfo

if TYPE_CHECKING:
    from heartbeat.probe import ClientCredentials, CredentialsError


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


def postgres_dsn(conn: Any) -> str:
    """A libpq connection string from a postgres Connection (database in its ``schema`` field)."""
    extra = conn.extra_dejson or {}
    params: dict[str, Any] = {
        "host": conn.host or "localhost",
        "port": conn.port or 5432,
        "dbname": conn.schema or "heartbeat",
        "user": conn.login,
        "password": conn.password,
    }
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if extra.get(key):
            params[key] = extra[key]
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})


def heartbeat_db_dsn(conn_id: str) -> str:
    return postgres_dsn(get_connection(conn_id))


def ssh_public_key_line(conn_id: str) -> str:
    """``<type> <base64>`` of the public half of a connection's key (nothing secret)."""
    from heartbeat.probe import CredentialsError

    loaded = ssh_credentials([conn_id])[conn_id]
    if isinstance(loaded, CredentialsError):
        raise ValueError(loaded.message)
    return loaded.key.public_line()


def ssh_credentials(conn_ids: Iterable[str]) -> dict[str, ClientCredentials | CredentialsError]:
    """Load each SSH connection's key once; a connection that cannot be used becomes a
    :class:`CredentialsError`, so only the servers that use it fail their probe."""
    from heartbeat.probe import ClientCredentials, CredentialsError, load_client_key  # the SSH stack: only here

    loaded: dict[str, ClientCredentials | CredentialsError] = {}
    for conn_id in sorted(set(conn_ids)):
        try:
            conn = get_connection(conn_id)
            extra = conn.extra_dejson or {}
            key = load_client_key(
                conn_id,
                private_key=extra.get("private_key"),
                key_file=extra.get("key_file"),
                passphrase=extra.get("private_key_passphrase") or None,
            )
            loaded[conn_id] = ClientCredentials(conn_id=conn_id, username=conn.login or None, key=key)
        except (ConnectionNotFound, ValueError) as exc:
            loaded[conn_id] = CredentialsError(conn_id, str(exc))
    return loaded
