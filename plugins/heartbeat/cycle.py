"""One monitoring cycle in three steps (load, probe, materialise), shared by the DAG's tasks and
by ``heartbeat probe``. Time comes in as arguments; the callers read the clock."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heartbeat import connections, incidents, store
from heartbeat.config import IncidentSettings, Settings, SettingsError
from heartbeat.inventory import Shard, shard_servers
from heartbeat.models import CycleSummary, HopResult, ProbeResult, Server
from heartbeat.sites import unconfigured

if TYPE_CHECKING:
    from heartbeat.probe import ProbeOptions

# heartbeat.probe (the SSH client and its cryptography) is imported only where logins happen:
# the DAG files, and the tasks that load, materialise and notify, never need it.

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


def probe_options(settings: Settings) -> ProbeOptions:
    from heartbeat.probe import DEFAULT_KEX_ALGS, ProbeOptions, supported_kex_algs

    known_hosts: tuple[str, ...] = ()
    if settings.known_hosts_file:
        known_hosts = tuple(Path(settings.known_hosts_file).expanduser().read_text().splitlines())
    kex_algs = settings.kex_alg_list or DEFAULT_KEX_ALGS
    supported = supported_kex_algs()
    unknown = [alg for alg in kex_algs if alg not in supported]
    if unknown:
        raise SettingsError(
            f"HEARTBEAT_KEX_ALGS: unknown key exchange algorithm(s) {', '.join(unknown)}; "
            f"supported: {', '.join(supported)}"
        )
    return ProbeOptions(
        connect_timeout_s=settings.connect_timeout_s,
        probe_timeout_s=settings.probe_timeout_s,
        concurrency=settings.concurrency,
        bastion_max_channels=settings.bastion_max_channels,
        host_key_policy=settings.host_key_policy,
        known_hosts_lines=known_hosts,
        kex_algs=kex_algs,
    )


def db_connect(settings: Settings, dsn: str | None = None):  # type: ignore[no-untyped-def]
    return store.connect(dsn) if dsn else connections.heartbeat_db_connection(settings.db_conn_id)


def load_servers(
    settings: Settings, cycle_id: str, started_at: datetime, dsn: str | None = None,
    only: Sequence[str] | None = None, site: str | None = None,
) -> list[Server]:
    """Open the cycle and read the enabled inventory (``only``: these server names; ``site``:
    the servers of that site).

    Invalid rows are recorded at once as failed attempts with what is wrong, so they show in
    the status with a reason instead of silently disappearing.
    """
    with db_connect(settings, dsn) as conn:
        store.check_schema(conn)
        store.start_cycle(conn, cycle_id, started_at)
        servers, bad = store.load_inventory(conn)
        if only:
            wanted = set(only)
            servers = [s for s in servers if s.name in wanted]
            bad = [(s, p) for s, p in bad if s.name in wanted]
        if site is not None:
            servers = [s for s in servers if s.site == site]
            bad = [(s, p) for s, p in bad if s.site == site]
        for server, problem in bad:
            log.warning("skipping server %s: %s", server.name, problem)
        store.record_results(conn, cycle_id, [store.invalid_row_result(s, p, started_at) for s, p in bad])
    log.info("cycle %s: %d servers (%d invalid rows skipped)", cycle_id, len(servers), len(bad))
    return servers


def load_site_shards(
    settings: Settings, cycle_id: str, started_at: datetime, dsn: str | None = None, site: str | None = None,
) -> dict[str, list[Shard]]:
    """Open the cycle and cut each configured site's enabled servers into shards, one mapped probe
    task each (a site without servers: no shard). Every configured site is a key; with ``site``,
    only that one.

    Servers of a site that is not configured (``HEARTBEAT_SITES`` dropped it) are left out, with a
    warning: no worker would probe them. Nothing about them is lost or made up: once no attempt
    from their site has arrived for the stale bound, they read STALE ("no probe from site X
    since ..."), and one notification says the site has no working monitor."""
    configured = settings.site_list
    if site is not None and site not in configured:
        raise SettingsError(f"site {site!r} is not in HEARTBEAT_SITES ({settings.sites})")
    servers = load_servers(settings, cycle_id, started_at, dsn, site=site)
    by_site: dict[str, list[Server]] = {s: [] for s in configured if site is None or s == site}
    for server in servers:
        by_site.setdefault(server.site, []).append(server)
    for other in unconfigured(by_site, configured):
        log.warning("cycle %s: %d servers of site %r are not probed: the site is not in HEARTBEAT_SITES (%s)",
                    cycle_id, len(by_site.pop(other)), other, settings.sites)
    # Servers behind the same bastion are kept together (one bastion login per shard carries them).
    shards = {k: [Shard.of(s, k) for s in shard_servers(sorted(members, key=path_order), settings.shard_size,
                                                        settings.max_shards)]
              for k, members in by_site.items()}
    log.info("cycle %s: %s", cycle_id, ", ".join(f"site {k}: {len(v)} shards" for k, v in shards.items()))
    return shards


def load_shards(
    settings: Settings, cycle_id: str, started_at: datetime, dsn: str | None = None,
) -> list[Shard]:
    """:func:`load_site_shards`, every site's shards in one list (one process probing them all)."""
    return [shard for shards in load_site_shards(settings, cycle_id, started_at, dsn).values() for shard in shards]


def path_order(server: Server) -> tuple[tuple[int, ...], int]:
    """Servers reached directly first, then those behind each bastion path together, by id."""
    return tuple(s.id for s in server.path), server.id


def summarise(results: Sequence[ProbeResult], duration_ms: float, cpu_ms: float = 0.0,
              login_cpu_ms: float = 0.0) -> CycleSummary:
    failures = Counter(r.error_class for r in results if not r.ok)
    return CycleSummary(
        probed=len(results),
        ok=sum(1 for r in results if r.ok),
        by_error_class={str(k): v for k, v in sorted(failures.items())},
        duration_ms=round(duration_ms, 1),
        cpu_ms=round(cpu_ms, 1),
        login_cpu_ms=round(login_cpu_ms, 1),
    )


def probe_shard(
    settings: Settings, cycle_id: str, shard: Shard | Mapping[str, Any], dsn: str | None = None,
    on_result: Callable[[ProbeResult], None] | None = None, now: Callable[[], datetime] = utc_now,
    on_hop: Callable[[HopResult], None] | None = None,
) -> CycleSummary:
    """Probe one shard concurrently and write its results in one transaction.

    The shard's servers are read as they are now: one disabled or removed since the cycle began
    is left out, one whose row has become invalid is recorded as such, a host key pinned in the
    meantime is used. No database connection is held while probing.
    """
    from heartbeat.probe import probe_servers_and_hops

    started, cpu_started = time.perf_counter(), time.process_time()
    if not isinstance(shard, Shard):
        shard = Shard.from_json(shard)
    attempted_at = now()
    with db_connect(settings, dsn) as conn:
        servers, bad = store.load_inventory(conn, shard.server_ids, shard.site)
    gone = len(shard.server_ids) - len(servers) - len(bad)
    if gone:
        log.info("%d servers of shard %s were disabled, removed or moved to another site since the cycle began",
                 gone, shard.label)
    # keys, pinned host keys, ports, timeouts; of the servers' bastions too
    ssh = connections.ssh_connections({c.conn_id for s in servers for c in (s, *s.path)})
    results = [store.invalid_row_result(s, p, attempted_at) for s, p in bad]
    login_cpu_started = time.process_time()
    probed, hops = probe_servers_and_hops(ssh.servers(servers), ssh.credentials,
                                          ssh.options(probe_options(settings)), now=now)
    results += ssh.explain(probed, servers)
    for hop in hops:
        if on_hop is not None:
            on_hop(hop)
        if not hop.ok:
            log.warning("bastion %s: %s (%s); its servers were not probed", hop.bastion_name, hop.error_class,
                        hop.message)
    login_cpu_s = time.process_time() - login_cpu_started
    for result in results:
        if on_result is not None:
            on_result(result)
        if not result.ok:
            log.info("%s: %s (%s)", result.server_name, result.error_class, result.message)
    with db_connect(settings, dsn) as conn:
        store.record_results(conn, cycle_id, results, settings.flap_rules, site=shard.site, worker=settings.worker)
        if hops:
            store.record_hops(conn, hops)
    return summarise(results, (time.perf_counter() - started) * 1000.0,
                     (time.process_time() - cpu_started) * 1000.0, login_cpu_s * 1000.0)


class CycleRecordedNothing(RuntimeError):
    """A cycle whose probe tasks recorded no attempt (typically: the heartbeat database was
    unreachable when they ran). Deciding statuses from it would turn every server OFFLINE for a
    fault of the monitor's own."""


def materialise(
    settings: Settings, cycle_id: str, as_of: datetime, dsn: str | None = None
) -> dict[str, int]:
    """Materialise every server's status at ``as_of``, group new failures into shared-cause
    incidents (and close recovered ones), close the cycle record, enforce retention.

    A cycle that recorded no attempt while servers are enabled decides nothing and stays
    unfinished: the statuses keep what the last complete cycle decided, and the views read STALE
    once no cycle has finished for ``stale_after_s``, instead of a false OFFLINE for the fleet.
    """
    with db_connect(settings, dsn) as conn:
        probes = store.cycle_probe_counts(conn, cycle_id)  # every probe task has ended (all_done)
        if probes.servers == 0 and (enabled := store.enabled_server_count(conn)):
            raise CycleRecordedNothing(
                f"cycle {cycle_id} recorded no probe attempt for {enabled} enabled servers (see the "
                "probe tasks' logs); statuses are left as the last complete cycle decided them"
            )
        counts = store.materialise_status(conn, as_of, settings.status_rules)
        counts.update(update_incidents(conn, as_of, settings.incident, settings.incident.window_s))
        store.finish_cycle(conn, cycle_id, as_of, as_of, counts, probes)
        counts["pruned"] = store.prune_history(conn, as_of, settings.history_retention_days)
    log.info("cycle %s: %s", cycle_id, counts)
    return counts


def update_incidents(
    conn: store.Connection, as_of: datetime, settings: IncidentSettings, window_s: float,
) -> dict[str, int]:
    """The incident step of a cycle, after the statuses are materialised at ``as_of``: close what
    recovered, group the new failures of the last ``window_s`` seconds (the rule:
    :func:`heartbeat.incidents.group_failures`), record incidents and members."""
    with conn.transaction():
        store.lock_incidents(conn)
        closed = store.close_recovered_incidents(conn, as_of)
        failures = store.incident_failures(conn, as_of, window_s)
        opened = joined = 0
        if failures:
            open_causes = store.open_incident_causes(conn)
            fleet = store.grouping_fleet(conn) if len(failures) >= settings.min_servers else []
            joining, groups = incidents.group_failures(failures, fleet, settings, open_causes)
            for cause, members in joining.items():
                joined += store.add_incident_members(conn, open_causes[cause], members, as_of)
            for group in groups:
                incident_id = store.open_incident(conn, group, as_of)
                joined += store.add_incident_members(conn, incident_id, group.members, as_of)
                opened += 1
                log.info("incident %d opened: %s (%d of %d)", incident_id, group.cause, len(group.members),
                         group.population)
        ended = store.end_acknowledgements(conn, as_of)
    return {"incidents_opened": opened, "incident_members_added": joined, "incidents_closed": closed,
            "acknowledgements_ended": ended}
