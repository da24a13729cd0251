"""The records that flow through a monitoring cycle: plain, frozen, JSON-safe."""

from __future__ import annotations

import errno
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

DEFAULT_SSH_CONN_ID = "heartbeat_ssh"
DEFAULT_SITE = "default"


class Status(StrEnum):
    ONLINE = "ONLINE"
    WARNING = "WARNING"
    OFFLINE = "OFFLINE"
    STALE = "STALE"  # the monitor (read time) or the server's site (also materialised) has stopped probing


# errno of a TCP connect (direct, or a bastion's hop) that says the address cannot be reached
# from here: class ``unreachable``.
UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EHOSTDOWN})


class ErrorClass(StrEnum):
    """Why a probe failed; one value per distinguishable failure a person acts on differently.

    Their words for people ("timed out", "host key changed") are written in one place: the
    ``error_classes`` table of migration 001, which the status decider (SQL) joins. Python holds
    none: nothing in production words a reason outside SQL, and a second copy here would only
    drift. A new class needs a migration that inserts its words.
    """

    DNS = "dns"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    BANNER = "banner"
    KEX = "kex"
    HOST_KEY_UNKNOWN = "host_key_unknown"
    HOST_KEY_CHANGED = "host_key_changed"
    AUTH = "auth"
    PATH_DOWN = "path_down"  # not probed: the bastion hop to it failed (the cause is in the message)
    FORWARDING_REFUSED = "forwarding_refused"  # the bastion refused to open a channel to it
    OTHER = "other"


@dataclass(frozen=True)
class Server:
    """One inventory row, as the probe needs it. Holds no secret: credentials live in a Connection."""

    id: int
    name: str
    host: str
    port: int = 22
    username: str | None = None
    conn_id: str = DEFAULT_SSH_CONN_ID
    host_key: str | None = None
    via: str | None = None  # the name of the inventory server it is reached through
    # The bastions it is reached through, the one the monitor reaches directly first and its own
    # bastion (``via``) last; empty: reached directly.
    path: tuple[Server, ...] = ()
    site: str = DEFAULT_SITE  # the network it is probed from

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Server:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "path"})


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one login attempt: one flat record, safe to put in JSON, logs or XCom."""

    server_id: int
    server_name: str
    ok: bool
    attempted_at: datetime
    error_class: str | None = None
    message: str = ""
    tcp_connect_ms: float | None = None
    ssh_handshake_ms: float | None = None
    auth_ms: float | None = None
    total_ms: float | None = None
    banner: str | None = None
    host_key: str | None = None
    host_key_fingerprint: str | None = None
    pinned_fingerprint: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["attempted_at"] = self.attempted_at.isoformat()
        return data


@dataclass(frozen=True)
class HopResult:
    """The outcome of one bastion hop in one probe task: the login to the bastion that carried
    its servers' channels (``ok``), or why it failed (``error_class`` is the bastion's own)."""

    bastion_id: int
    bastion_name: str
    ok: bool
    attempted_at: datetime
    error_class: str | None = None
    message: str = ""
    login_ms: float | None = None
    path: tuple[str, ...] = ()  # the bastions up to this one, the one reached directly first

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["attempted_at"] = self.attempted_at.isoformat()
        return data


@dataclass(frozen=True)
class HeartbeatState:
    """What the status rules need to know about one server at one moment."""

    last_success_at: datetime | None
    last_attempt_at: datetime | None = None
    last_error_class: str | None = None
    last_error_message: str | None = None
    active_alerts: int = 0
    active_anomalies: int = 0
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    flapping: bool = False
    flap_percent: float | None = None
    previous_status: str | None = None  # what the last cycle decided
    monitor_last_cycle_at: datetime | None = None  # when the monitor last finished a cycle
    last_error_words: str | None = None  # last_error_class in words, from the error_classes table
    site: str = DEFAULT_SITE  # the server's site
    site_last_probe_at: datetime | None = None  # the site's last recorded attempt (None: no record of the site)
    site_ever_probed: bool = True  # False: site_last_probe_at is when a probe was first expected


@dataclass(frozen=True)
class StatusDecision:
    status: Status
    reason: str
    heartbeat_age_s: float | None = None


@dataclass(frozen=True)
class CycleSummary:
    """What a probe shard or a whole cycle reports back: counts only, no secrets, small enough for XCom."""

    probed: int = 0
    ok: int = 0
    by_error_class: dict[str, int] = field(default_factory=dict)
    duration_ms: float = 0.0
    cpu_ms: float = 0.0  # the process's CPU over the shard: reading, logging in, writing
    login_cpu_ms: float = 0.0  # of which while logging in

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
