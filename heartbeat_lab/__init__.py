"""A local lab of real servers on loopback, for tests, the demo and benchmarks.

- :class:`PostgresServer`: a disposable PostgreSQL cluster (the metadata/results store).
- :class:`SshdServer` / :class:`SshdFleet`: real OpenSSH servers, a fleet on 127.0.0.2, .3, ...
- peers: TCP servers that misbehave (silent, wrong banner, tarpit, hang-up mid-kex).
- :func:`free_port` / :func:`port_is_free`: loopback port helpers.
- :mod:`heartbeat_lab.netns`: separate networks (namespaces, veth links) inside a test range, as root.

Everything binds to loopback, or to addresses of a test range inside namespaces the lab makes;
nothing here is meant for production data.
"""

from heartbeat_lab.peers import (
    BannerPeer,
    CloseAfterBannerPeer,
    DripBannerPeer,
    HangUpPeer,
    SilentPeer,
    TcpPeer,
    refused_port,
)
from heartbeat_lab.ports import free_port, port_is_free, require_loopback
from heartbeat_lab.postgres import PostgresServer, find_postgres_bindir
from heartbeat_lab.sshd import (
    KeyPair,
    SshdFleet,
    SshdServer,
    find_sshd,
    fingerprint_sha256,
    generate_keypair,
    load_keypair,
)

__all__ = [
    "BannerPeer",
    "CloseAfterBannerPeer",
    "DripBannerPeer",
    "HangUpPeer",
    "KeyPair",
    "PostgresServer",
    "SilentPeer",
    "SshdFleet",
    "SshdServer",
    "TcpPeer",
    "find_postgres_bindir",
    "find_sshd",
    "fingerprint_sha256",
    "free_port",
    "generate_keypair",
    "load_keypair",
    "port_is_free",
    "refused_port",
    "require_loopback",
]
