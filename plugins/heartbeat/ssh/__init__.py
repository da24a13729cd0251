"""The SSH login client: one reviewed unit (see README.md in this folder).

Callers outside this package use only the names below:

- :func:`login` over a :class:`Connection`, with an :class:`Offer` of algorithms; it fills a
  :class:`LoginProgress` and raises :class:`LoginFailed` (an error class and a message).
- :func:`host_key_algs_to_offer`, :func:`decide_host_key`, :func:`known_hosts_keys`: which
  host key to ask a server for, and whether to accept the one it presents.
- :class:`ClientCredentials`, :class:`CredentialsError`, :func:`load_client_key`: the login
  identity an Airflow Connection names.
"""

from heartbeat.ssh.credentials import ClientCredentials, CredentialsError, load_client_key
from heartbeat.ssh.hostkeys import (
    PREFERRED_HOST_KEY_ALGS,
    HostKeyFormatError,
    HostKeyVerdict,
    decide_host_key,
    fingerprint,
    host_key_algs_to_offer,
    key_type_of,
    known_hosts_keys,
    normalise_public_key,
    public_key_from_base64,
)
from heartbeat.ssh.keys import ClientKey, UnusableKey
from heartbeat.ssh.login import (
    CIPHERS,
    KEX_METHODS,
    MAC_ALGS,
    Connection,
    LoginFailed,
    LoginProgress,
    Offer,
    login,
    read_version_line,
)

__all__ = [
    "CIPHERS",
    "KEX_METHODS",
    "MAC_ALGS",
    "PREFERRED_HOST_KEY_ALGS",
    "ClientCredentials",
    "ClientKey",
    "Connection",
    "CredentialsError",
    "HostKeyFormatError",
    "HostKeyVerdict",
    "LoginFailed",
    "LoginProgress",
    "Offer",
    "UnusableKey",
    "decide_host_key",
    "fingerprint",
    "host_key_algs_to_offer",
    "key_type_of",
    "known_hosts_keys",
    "load_client_key",
    "login",
    "normalise_public_key",
    "public_key_from_base64",
    "read_version_line",
]
