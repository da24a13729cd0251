"""Settings of the monitor, read from ``HEARTBEAT_*`` environment variables.

Environment variables are the one place: the scheduler, the workers, the ``heartbeat``
command and docker-compose all read the same names. Every value is validated here, so a
typo fails loudly at start instead of silently monitoring with a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum

from heartbeat.flapping import FlapRules
from heartbeat.status import StatusRules

HEARTBEAT_DB_CONN_ID = "heartbeat_db"


class HostKeyPolicy(StrEnum):
    TOFU = "tofu"  # trust on first use, then pinned in the inventory
    STRICT = "strict"  # a known key (inventory or known_hosts file) is required


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    """:param offline_after_s: a heartbeat older than this makes a server OFFLINE (seconds).
    :param connect_timeout_s: budget for name resolution and the TCP connect (seconds).
    :param probe_timeout_s: budget for the whole login, connect included (seconds).
    :param concurrency: logins in flight at once inside one probe task.
    :param shard_size: servers per mapped probe task; 1 gives one task per server. A task has a
        fixed cost in Airflow (its start and runtime) and runs its logins on one core, so few
        large shards are cheapest (docs/benchmarks.md, shard size).
    :param max_shards: upper bound on mapped probe tasks; shards grow to stay under it. At most
        ``max_active_tasks`` (16 by default) run at once; more shards would only queue, and every
        running shard adds ``concurrency`` logins in flight.
    :param host_key_policy: ``tofu`` or ``strict``.
    :param known_hosts_file: an OpenSSH known_hosts file consulted before the inventory's pinned key.
    :param history_retention_days: probe history older than this is deleted by the pipeline.
    :param metadata_retention_days: Airflow run records older than this are cleaned (``airflow db clean``).
    :param log_retention_days: task log files older than this are deleted.
    :param failure_threshold: failed logins in a row that make a server OFFLINE at once (0: off, the
        seed's rule alone: OFFLINE when the heartbeat is older than ``offline_after_s``).
    :param recovery_threshold: successful logins in a row an OFFLINE server needs to count again.
    :param stale_after_s: read-time views mark servers STALE when no cycle finished for this long.
    :param flap_window: attempts considered by flap detection.
    :param flap_high_pct: weighted share of state changes above which a server starts flapping.
    :param flap_low_pct: share below which a flapping server stops flapping.
    :param db_conn_id: the Airflow connection of the heartbeat database.
    :param kex_algs: key exchange algorithms offered, in order of preference, comma-separated;
        empty: the monitor's default (ECDH P-256 first, the cheapest for OpenSSH servers).
    """

    offline_after_s: float = 60.0
    connect_timeout_s: float = 5.0
    probe_timeout_s: float = 10.0
    concurrency: int = 32
    shard_size: int = 1000
    max_shards: int = 16
    host_key_policy: HostKeyPolicy = HostKeyPolicy.TOFU
    known_hosts_file: str | None = None
    history_retention_days: float = 7.0
    metadata_retention_days: float = 3.0
    log_retention_days: float = 3.0
    failure_threshold: int = 0
    recovery_threshold: int = 1
    stale_after_s: float = 60.0
    flap_window: int = 10
    flap_high_pct: float = 50.0
    flap_low_pct: float = 25.0
    db_conn_id: str = HEARTBEAT_DB_CONN_ID
    kex_algs: str = ""

    def __post_init__(self) -> None:
        positive = ("offline_after_s", "connect_timeout_s", "probe_timeout_s", "history_retention_days",
                    "stale_after_s", "metadata_retention_days", "log_retention_days")
        for name in positive:
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be greater than 0, got {getattr(self, name)!r}")
        if self.failure_threshold < 0:
            raise SettingsError(f"failure_threshold must be 0 (off) or more, got {self.failure_threshold!r}")
        if not 0 <= self.flap_low_pct <= self.flap_high_pct <= 100:
            raise SettingsError("flap thresholds need 0 <= flap_low_pct <= flap_high_pct <= 100")
        if self.flap_window < 3:
            raise SettingsError(f"flap_window must be at least 3, got {self.flap_window!r}")
        for name in ("concurrency", "shard_size", "max_shards", "recovery_threshold"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.connect_timeout_s > self.probe_timeout_s:
            raise SettingsError(
                f"connect_timeout_s ({self.connect_timeout_s}) cannot exceed probe_timeout_s "
                f"({self.probe_timeout_s})"
            )


    @property
    def kex_alg_list(self) -> tuple[str, ...]:
        """The configured key exchange algorithms (empty: the probe's default order)."""
        return tuple(a.strip() for a in self.kex_algs.split(",") if a.strip())

    @property
    def status_rules(self) -> StatusRules:
        return StatusRules(self.offline_after_s, self.failure_threshold, self.recovery_threshold, self.stale_after_s)

    @property
    def flap_rules(self) -> FlapRules:
        return FlapRules(self.flap_window, self.flap_high_pct, self.flap_low_pct)


def env_name(field_name: str) -> str:
    return "HEARTBEAT_" + field_name.upper()


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``HEARTBEAT_<FIELD>`` variables; unset ones keep their default."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = environ.get(env_name(f.name))
        if raw is None or raw == "":
            continue
        default = f.default
        try:
            if isinstance(default, HostKeyPolicy):
                values[f.name] = HostKeyPolicy(raw.strip().lower())
            elif isinstance(default, bool):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                values[f.name] = int(raw)
            elif isinstance(default, float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        except ValueError:
            raise SettingsError(f"{env_name(f.name)}={raw!r} is not a valid value for {f.name}") from None
    return Settings(**values)  # type: ignore[arg-type]
