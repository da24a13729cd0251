"""A login identity: the client key an Airflow Connection names, loaded once per task.

Error messages name the connection and the problem, never the key material.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from heartbeat.ssh.keys import ClientKey, UnusableKey, load_private_key


@dataclass(frozen=True)
class ClientCredentials:
    """A login identity loaded from an Airflow Connection. The key never leaves memory."""

    conn_id: str
    username: str | None
    key: ClientKey = field(repr=False)


@dataclass(frozen=True)
class CredentialsError:
    """Why a connection's credentials could not be loaded (a message without key material)."""

    conn_id: str
    message: str


def load_client_key(conn_id: str, private_key: str | None, key_file: str | None, passphrase: str | None
                    ) -> ClientKey:
    """Load a private key from a Connection's text or a key file with owner-only permissions.

    Raises ValueError with what to fix.
    """
    if private_key:
        data = private_key.replace("\\n", "\n")
    elif key_file:
        path = os.path.expanduser(key_file)
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise ValueError(f"connection {conn_id!r}: key_file {key_file!r}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(
                f"connection {conn_id!r}: key_file {key_file!r} is readable by others "
                f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 on it"
            )
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                data = handle.read()
        except OSError as exc:
            raise ValueError(f"connection {conn_id!r}: key_file {key_file!r}: {exc.strerror}") from None
    else:
        raise ValueError(
            f"connection {conn_id!r} has no private key: set the 'private_key' or 'key_file' extra"
        )
    try:
        return load_private_key(data.encode("utf-8"), passphrase.encode("utf-8") if passphrase else None)
    except UnusableKey as exc:
        raise ValueError(
            f"connection {conn_id!r}: the private key cannot be loaded ({exc}); check the key and its passphrase"
        ) from None
