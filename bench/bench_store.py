"""The store benchmark, without SSH: writing one cycle's results and materialising the status of a
large inventory (100,000 servers by default) in a PostgreSQL of its own.

One timed cycle is what the DAG does with the database: ``store.record_results`` once per shard
(the shards ``heartbeat.inventory.shard_servers`` cuts with the default settings), then
``store.materialise_status``. Results are synthetic (2 % of the servers down for good, 0.5 % of
the others failing once, at random) with
realistic fields. Before the timed cycles the database holds ``--history`` earlier cycles of
probe history for every server (flap detection reads the last attempts of each server, so the
depth of the history must not matter), and ``--warmup`` untimed cycles bring the heartbeats,
flap state and status to a steady state. Shards are written one after another on one connection
(``--writers`` > 1 writes them from that many connections at once, like parallel probe tasks).

Usage: ``python -m bench.bench_store [--servers 100000] [--runs 5] [--history 20]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from heartbeat import store
from heartbeat.config import Settings, settings_from_env
from heartbeat.inventory import shard_servers
from heartbeat.models import ProbeResult, Server
from heartbeat_lab import PostgresServer

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOj2Wc0g9Uo0mJ0v2xq0rP1pUQy0wqv6m0yXb2Vr6YcN"
FINGERPRINT = "SHA256:2QYvV1kqQb0m8m3K1r5mC6m7pQ4k3Gm2Q5r7sT0aBcD"


def is_down(server_id: int) -> bool:
    """2 % of the fleet is down for good (1 % silent, 1 % refusing)."""
    return server_id % 100 in (0, 50)


def synthetic_results(servers: Sequence[Server], at: datetime, rng: random.Random) -> list[ProbeResult]:
    """One cycle's results: the servers that are down fail again, and 0.5 % of the others fail
    this time only (a busy host, a lost packet)."""
    results = []
    for s in servers:
        if not is_down(s.id) and rng.random() >= 0.005:
            results.append(ProbeResult(
                server_id=s.id, server_name=s.name, ok=True, attempted_at=at, message="login ok",
                tcp_connect_ms=round(rng.uniform(0.1, 3), 3), ssh_handshake_ms=round(rng.uniform(3, 20), 3),
                auth_ms=round(rng.uniform(2, 15), 3), total_ms=round(rng.uniform(6, 40), 3),
                banner="SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", host_key=HOST_KEY,
                host_key_fingerprint=FINGERPRINT, pinned_fingerprint=FINGERPRINT))
        elif s.id % 100 == 50:
            results.append(ProbeResult(
                server_id=s.id, server_name=s.name, ok=False, attempted_at=at, error_class="refused",
                message="connection refused on port 22", total_ms=0.3, pinned_fingerprint=FINGERPRINT))
        else:
            results.append(ProbeResult(
                server_id=s.id, server_name=s.name, ok=False, attempted_at=at, error_class="timeout",
                message="no SSH banner before the probe timeout", tcp_connect_ms=0.4, total_ms=10000.0,
                pinned_fingerprint=FINGERPRINT))
    return results


def seed(dsn: str, count: int, history: int, now: datetime) -> list[Server]:
    """``count`` servers (host key pinned), ``history`` earlier cycles of probe history, their
    heartbeats, a few alerts and anomalies."""
    with store.connect(dsn) as conn:
        with conn.transaction(), conn.cursor() as cur, cur.copy(
            "COPY servers (name, host, port, host_key, host_key_pinned_at) FROM STDIN"
        ) as copy:
            for i in range(count):
                copy.write_row((f"host-{i:06d}", f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", 22,
                                HOST_KEY, now))
        with conn.transaction():
            down = "s.id %% 100 IN (0, 50)"
            conn.execute(
                "INSERT INTO probe_history (server_id, cycle_id, attempted_at, ok, error_class, message, "
                "tcp_connect_ms, ssh_handshake_ms, auth_ms, total_ms) "
                f"SELECT s.id, 'seed-' || c, %(now)s - make_interval(secs => 30 * c), NOT {down}, "
                f"CASE WHEN {down} THEN 'timeout' END, 'seeded', 0.5, 9.0, 6.0, 16.0 "
                "FROM servers s CROSS JOIN generate_series(1, %(history)s) c",
                {"now": now, "history": history},
            )
            conn.execute(
                "INSERT INTO heartbeats (server_id, last_success_at, last_attempt_at, last_cycle_id, last_ok, "
                "consecutive_successes, consecutive_failures, last_error_class, flapping, flap_percent) "
                f"SELECT s.id, CASE WHEN NOT {down} THEN %(at)s END, %(at)s, 'seed-1', NOT {down}, "
                f"CASE WHEN {down} THEN 0 ELSE %(history)s END, CASE WHEN {down} THEN %(history)s ELSE 0 END, "
                f"CASE WHEN {down} THEN 'timeout' END, false, 0 FROM servers s",
                {"at": now - timedelta(seconds=30), "history": history},
            )
            conn.execute("INSERT INTO alerts (server_id, kind, message) SELECT id, 'disk_full', 'seed' "
                         "FROM servers WHERE id % 200 = 0")
            conn.execute("INSERT INTO anomalies (server_id, kind, description) SELECT id, 'cpu', 'seed' "
                         "FROM servers WHERE id % 300 = 0")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.autocommit = False
        servers, bad = store.load_inventory(conn)
    assert not bad, bad[:3]
    return servers


def write_shards(dsn: str, cycle_id: str, shards: Sequence[Sequence[ProbeResult]], settings: Settings,
                 writers: int) -> float:
    """Seconds to write every shard (connections opened beforehand, as each task holds its own)."""
    conns = [store.connect(dsn) for _ in range(writers)]
    try:
        started = time.perf_counter()
        if writers == 1:
            for shard in shards:
                store.record_results(conns[0], cycle_id, shard, settings.flap_rules)
        else:
            with concurrent.futures.ThreadPoolExecutor(writers) as pool:
                lanes = [shards[i::writers] for i in range(writers)]
                futures = [pool.submit(_write_lane, conn, cycle_id, lane, settings)
                           for conn, lane in zip(conns, lanes, strict=True)]
                for future in futures:
                    future.result()
        return time.perf_counter() - started
    finally:
        for conn in conns:
            conn.close()


def _write_lane(conn: Any, cycle_id: str, lane: Sequence[Sequence[ProbeResult]], settings: Settings) -> None:
    for shard in lane:
        store.record_results(conn, cycle_id, shard, settings.flap_rules)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_store", description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="timed cycles (default 5); the median is reported")
    parser.add_argument("--history", type=int, default=20, help="earlier cycles of probe history per server")
    parser.add_argument("--writers", type=int, default=1, help="connections writing shards at once (default 1)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed cycles first, to reach a steady state")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL data directory")
    args = parser.parse_args(argv)
    settings = settings_from_env({k: v for k, v in os.environ.items() if k.startswith("HEARTBEAT_")})
    work = Path(tempfile.mkdtemp(prefix="heartbeat-bench-store-"))
    rng = random.Random(42)
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} before start; {args.servers:,} servers, "
          f"{args.history} cycles of history, shard size {settings.shard_size}, max shards {settings.max_shards}",
          flush=True)
    with contextlib.ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, work, True)
        postgres = PostgresServer(work / "postgres")
        stack.callback(postgres.stop)
        postgres.start()
        postgres.create_database("heartbeat")
        dsn = postgres.dsn("heartbeat")
        with store.connect(dsn) as conn:
            store.migrate(conn)
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        servers = seed(dsn, args.servers, args.history, now)
        shards = shard_servers(servers, settings.shard_size, settings.max_shards)
        print(f"seeded in {time.perf_counter() - t0:.1f} s: {len(shards)} shards of ~{len(shards[0])}", flush=True)
        rows = []
        for run in range(-args.warmup, args.runs):
            at = now + timedelta(seconds=30 * (run + args.warmup + 1))
            cycle_id = f"bench-{run}"
            prepared = [synthetic_results(shard, at, rng) for shard in shards]
            with store.connect(dsn) as conn:
                store.start_cycle(conn, cycle_id, at)
            load = os.getloadavg()[0]
            write_s = write_shards(dsn, cycle_id, prepared, settings, args.writers)
            with store.connect(dsn) as conn:
                t = time.perf_counter()
                counts = store.materialise_status(conn, at, settings.status_rules)
                t_finish = time.perf_counter()
                store.finish_cycle(conn, cycle_id, at, at, counts)
                status_s = time.perf_counter() - t
                counts["finish_cycle_ms"] = round((time.perf_counter() - t_finish) * 1000)
            if run >= 0:
                rows.append((write_s, status_s, load))
            label = "warm-up" if run < 0 else f"run {run + 1}"
            print(f"{label}: results written {write_s:.2f} s, status materialised {status_s:.2f} s, "
                  f"total {write_s + status_s:.2f} s (load {load:.1f}); {counts}", flush=True)
        with store.connect(dsn) as conn:
            size = conn.execute(
                "SELECT pg_total_relation_size('probe_history')::float8 AS bytes, count(*) AS rows_ FROM probe_history"
            ).fetchone()
        assert size is not None
        history_bytes_per_row = size["bytes"] / max(1, size["rows_"])
        print(f"probe history: {size['rows_']:,} rows, {size['bytes'] / 2**20:.0f} MiB with its indexes: "
              f"{history_bytes_per_row:.0f} bytes per attempt", flush=True)
    write = statistics.median(r[0] for r in rows)
    status = statistics.median(r[1] for r in rows)
    total = statistics.median(r[0] + r[1] for r in rows)
    cycle_totals = ", ".join(f"{r[0] + r[1]:.2f}" for r in rows)
    print(f"\n| servers | shards | history cycles | writers | results written s | status materialised s | total s "
          f"| load 1 min | cycle totals s |\n|---|---|---|---|---|---|---|---|---|\n| {args.servers:,} | {len(shards)} "
          f"| {args.history} | {args.writers} | {write:.2f} | {status:.2f} | {total:.2f} "
          f"| {statistics.median(r[2] for r in rows):.1f} | {cycle_totals} |")
    print(f"\nmedian of {len(rows)} runs; under 2 s: {'yes' if total < 2 else 'NO'} ({total:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
