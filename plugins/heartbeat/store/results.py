"""Results and status: a shard's login results, every server's materialised status, the cycle
records and the retention of history (queries in ``include/sql/queries/results.sql``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from heartbeat import sql
from heartbeat.flapping import DEFAULT_FLAP_RULES, FlapRules, is_flapping
from heartbeat.models import HopResult, ProbeResult
from heartbeat.status import SEED_RULES, StatusRules
from heartbeat.store._records import Connection, record, records

BATCH_COLUMNS = (
    "server_id", "cycle_id", "attempted_at", "ok", "error_class", "message", "tcp_connect_ms",
    "ssh_handshake_ms", "auth_ms", "total_ms", "banner", "host_key", "host_key_fingerprint",
    "pinned_fingerprint",
)
# PostgreSQL types of the probe_batch columns, in BATCH_COLUMNS order, for binary COPY (about five
# times cheaper per row than text COPY, which matters at 100,000 results a cycle).
BATCH_TYPES = (
    "int8", "text", "timestamptz", "bool", "text", "text", "float4",
    "float4", "float4", "float4", "text", "text", "text",
    "text",
)


@dataclass(frozen=True)
class StatusReportRow:
    """One server's status at a given time, as ``heartbeat status`` shows it."""

    server_name: str
    host: str
    port: int
    status: str
    reason: str
    last_heartbeat_at: datetime | None
    heartbeat_age_s: float | None
    active_alerts: int
    active_anomalies: int
    last_attempt_at: datetime | None
    last_error_class: str | None
    last_error_message: str | None
    consecutive_failures: int
    total_ms: float | None


@dataclass(frozen=True)
class CycleRecord:
    """A monitoring cycle: its attempts and the status counts it left (None until it finished)."""

    cycle_id: str
    started_at: datetime
    finished_at: datetime | None
    servers: int | None
    ok: int | None
    failed: int | None
    online: int | None
    warning: int | None
    offline: int | None


@dataclass(frozen=True)
class ProbeCounts:
    """Attempts of one cycle recorded in the history: all, successful, failed."""

    servers: int
    ok: int
    failed: int


def record_results(
    conn: Connection, cycle_id: str, results: Sequence[ProbeResult], flap_rules: FlapRules = DEFAULT_FLAP_RULES,
    site: str | None = None, worker: str | None = None,
) -> None:
    """Write one shard's results in one transaction: history, latest heartbeat, flap state,
    first-use host keys and host-key-changed alerts. Re-running it for the same cycle replaces,
    never doubles.

    ``site`` and ``worker``: where the attempts were made from and by whom (recorded with each;
    the site's monitor counts as working from then). None: results the cycle records itself (an
    invalid inventory row), made from nowhere."""
    if not results:
        return
    with conn.transaction():
        conn.execute(sql.query("jit_off"))
        conn.execute(sql.query("create_probe_batch"))
        with conn.cursor() as cur, cur.copy(sql.query("copy_probe_batch")) as copy:
            copy.set_types(BATCH_TYPES)
            for r in results:
                copy.write_row((
                    r.server_id, cycle_id, r.attempted_at, r.ok, r.error_class, r.message, r.tcp_connect_ms,
                    r.ssh_handshake_ms, r.auth_ms, r.total_ms, r.banner, r.host_key, r.host_key_fingerprint,
                    r.pinned_fingerprint,
                ))
        # The batch's id range, bound once: it keeps each statement to the shard's part of the tables.
        ids = [r.server_id for r in results]
        bounds = {"first_id": min(ids), "last_id": max(ids)}
        origin = {"site": site, "worker": worker}
        conn.execute(sql.query("delete_batch_history"), {"cycle_id": cycle_id, **bounds})
        conn.execute(sql.query("insert_probe_history"), {**bounds, **origin})
        candidates = conn.execute(sql.query("upsert_heartbeats"),
                                  {"window": flap_rules.window, **bounds, **origin}).fetchall()
        conn.execute(sql.query("pin_first_host_keys"))
        conn.execute(sql.query("raise_host_key_changed_alerts"))
        _update_flapping(conn, candidates, flap_rules)
        if site is not None:
            conn.execute(sql.query("site_attempted"), {
                "site": site, "worker": worker, "cycle_id": cycle_id,
                "attempted_at": max(r.attempted_at for r in results)})


def record_hops(conn: Connection, hops: Sequence[HopResult]) -> None:
    """Open an outage for each bastion whose hop failed (one stays open across shards and cycles)
    and close it when a hop to that bastion works again, in one transaction."""
    with conn.transaction():
        for hop in hops:
            params = {"bastion_id": hop.bastion_id, "attempted_at": hop.attempted_at}
            if hop.ok:
                conn.execute(sql.query("close_path_outage"), params)
            else:
                conn.execute(sql.query("open_path_outage"), {**params, "cause": hop.message})


def _update_flapping(conn: Connection, candidates: Sequence[dict[str, Any]], rules: FlapRules) -> None:
    """Re-evaluate flapping for the candidate servers (their flag before this batch and their last
    results, oldest first, as the heartbeat update returned them); store what changed."""
    ids: list[int] = []
    flags: list[bool] = []
    percents: list[float] = []
    for row in candidates:
        flapping, percent = is_flapping(row["recent_oks"], bool(row["was_flapping"]), rules)
        ids.append(row["server_id"])
        flags.append(flapping)
        percents.append(percent)
    if ids:
        conn.execute(sql.query("set_flapping"), {"server_ids": ids, "flapping": flags, "percents": percents})


def _status_params(as_of: datetime, rules: StatusRules) -> dict[str, Any]:
    return {"as_of": as_of, "offline_after_s": float(rules.offline_after_s),
            "failure_threshold": rules.failure_threshold, "recovery_threshold": rules.recovery_threshold,
            "stale_after_s": rules.stale_after_s, "site_stale_after_s": rules.site_stale_after_s}


def materialise_status(conn: Connection, as_of: datetime, rules: StatusRules | float = SEED_RULES) -> dict[str, int]:
    """Evaluate every enabled server at ``as_of``, record status changes, and return counts per
    status, ``flips``, ``written`` (decisions stored: new or changed) and ``removed``; then open a
    stall for each site silent for ``rules.site_stale_after_s`` and close those of sites heard
    from again (``sites_stalled``, ``sites_recovered``).

    ``rules`` may be a plain number: the OFFLINE threshold in seconds."""
    if not isinstance(rules, StatusRules):
        rules = StatusRules(offline_after_s=float(rules))
    params = _status_params(as_of, rules)
    if params["stale_after_s"] is None:
        params["stale_after_s"] = 60.0
    with conn.transaction():
        conn.execute(sql.query("jit_off"))
        conn.execute(sql.query("status_work_mem"))
        conn.execute(sql.query("status_merge_joins"))
        conn.execute(sql.query("lock_status"))
        conn.execute(sql.query("set_status_settings"), params)
        row = conn.execute(sql.query("materialise_status"), params).fetchone()
        assert row is not None
        counts = {k: int(v) for k, v in dict(row).items()}
        if params["site_stale_after_s"] is not None:
            stalls = conn.execute(sql.query("record_site_stalls"), params).fetchone()
            assert stalls is not None
            counts |= {"sites_stalled": int(stalls["opened"]), "sites_recovered": int(stalls["ended"])}
    return counts


def status_report(conn: Connection, as_of: datetime, rules: StatusRules) -> list[StatusReportRow]:
    """Every enabled server's status at ``as_of`` under ``rules``, OFFLINE first, then by name."""
    with conn.transaction():
        return records(StatusReportRow, conn.execute(sql.query("status_report"), _status_params(as_of, rules)))


def start_cycle(conn: Connection, cycle_id: str, started_at: datetime) -> None:
    """Record the cycle's start; every site holding enabled servers is expected to probe from now on."""
    with conn.transaction():
        conn.execute(sql.query("start_cycle"), {"cycle_id": cycle_id, "started_at": started_at})
        conn.execute(sql.query("expect_sites"), {"started_at": started_at})


def finish_cycle(
    conn: Connection, cycle_id: str, started_at: datetime, finished_at: datetime, counts: dict[str, int],
    probes: ProbeCounts | None = None,
) -> None:
    """Close the cycle record with its attempts and status ``counts``; ``probes``: the attempts
    when the caller has counted them already (counted from the history otherwise)."""
    with conn.transaction():
        if probes is None:
            probes = cycle_probe_counts(conn, cycle_id)
        conn.execute(sql.query("finish_cycle"), {
            "cycle_id": cycle_id, "started_at": started_at, "finished_at": finished_at,
            "servers": probes.servers, "ok": probes.ok, "failed": probes.failed,
            "online": counts.get("online"), "warning": counts.get("warning"),
            "offline": counts.get("offline"),
        })


def cycle_probe_counts(conn: Connection, cycle_id: str) -> ProbeCounts:
    with conn.transaction():
        row = conn.execute(sql.query("cycle_probe_counts"), {"cycle_id": cycle_id}).fetchone()
    assert row is not None
    return record(ProbeCounts, row)


def get_cycle(conn: Connection, cycle_id: str) -> CycleRecord | None:
    with conn.transaction():
        row = conn.execute(sql.query("cycle_by_id"), {"cycle_id": cycle_id}).fetchone()
    return None if row is None else record(CycleRecord, row)


def last_cycle(conn: Connection) -> CycleRecord | None:
    """The cycle that finished last; None: none has finished yet."""
    with conn.transaction():
        row = conn.execute(sql.query("last_cycle")).fetchone()
    return None if row is None else record(CycleRecord, row)


def prune_history(conn: Connection, as_of: datetime, retention_days: float) -> int:
    """Delete probe history (and cycle records) older than the retention; returns rows deleted."""
    cutoff = as_of - timedelta(days=retention_days)
    with conn.transaction():
        deleted = conn.execute(sql.query("prune_probe_history"), {"cutoff": cutoff}).rowcount
        conn.execute(sql.query("prune_cycles"), {"cutoff": cutoff})
    return deleted
