"""Client CPU per login: the project's login client against a general SSH library (asyncssh, the
probe's engine before ``heartbeat.ssh.login``), over the same servers in the same run.

Both run with the same bounds (32 logins in flight, one event loop, ``gc.freeze``), the same
key exchange, host key algorithm and cipher, against a lab fleet of OpenSSH sshd on 127.0.0.x at
nice 19. Rounds alternate between the two clients so that the machine's drift hits both alike;
the table gives medians over rounds and their ratio, with the load.

Usage: ``python -m bench.login_cpu [--logins 600] [--rounds 5] [--sshd 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncssh

from bench.lab_fleet import BenchFleet
from heartbeat.models import Server
from heartbeat.probe import DEFAULT_KEX_ALGS, ProbeOptions, probe_servers
from heartbeat.ssh import ClientCredentials, load_client_key


def cpu_s() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def with_asyncssh(servers: Sequence[Server], key_path: Path, concurrency: int) -> int:
    """The previous engine's login, reduced to its options: one connection per server, closed
    after authentication; returns the number of successful logins."""
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # ten INFO lines per login otherwise
    key = asyncssh.read_private_key(key_path)

    async def one(server: Server, slots: asyncio.Semaphore) -> bool:
        async with slots:
            try:
                async with asyncio.timeout(10):
                    conn = await asyncssh.connect(
                        server.host, server.port, username="root", client_keys=[key], known_hosts=None,
                        config=None, agent_path=None, preferred_auth=["publickey"], password=None,
                        kbdint_auth=False, gss_host=None, keepalive_interval=0, compression_algs=None,
                        kex_algs=list(DEFAULT_KEX_ALGS), encryption_algs=["aes128-gcm@openssh.com"],
                        server_host_key_algs=["ssh-ed25519"])
                    conn.close()
                    await conn.wait_closed()
                return True
            except (OSError, asyncssh.Error, TimeoutError):
                return False

    async def run() -> int:
        slots = asyncio.Semaphore(concurrency)
        return sum(await asyncio.gather(*(one(s, slots) for s in servers)))

    gc.freeze()
    try:
        return asyncio.run(run())
    finally:
        gc.unfreeze()


def measure(action: Callable[[], int], logins: int) -> dict[str, float]:
    u0, s0 = cpu_s()
    t0 = time.perf_counter()
    ok = action()
    wall = time.perf_counter() - t0
    u1, s1 = cpu_s()
    return {"ok": ok, "wall_s": wall, "user_ms": (u1 - u0) * 1000 / logins, "sys_ms": (s1 - s0) * 1000 / logins,
            "load1": os.getloadavg()[0]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sshd", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    if not (1 <= args.rounds <= 50 and 1 <= args.logins <= 20_000):
        parser.error("--rounds 1..50, --logins 1..20000")
    with tempfile.TemporaryDirectory(prefix="login-cpu-") as tmp:
        work = Path(tmp)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "id")], check=True)
        public_line = (work / "id.pub").read_text().strip()
        fleet = BenchFleet(work, args.sshd, public_line, nice=19)
        fleet.start()
        try:
            key = load_client_key("bench", None, str(work / "id"), None)
            servers = [Server(id=i + 1, name=f"s{i}", host=s.host, port=s.port, conn_id="c", username="root")
                       for i, s in enumerate(fleet.servers * (args.logins // args.sshd + 1))][: args.logins]
            credentials = {"c": ClientCredentials("c", "root", key)}
            options = ProbeOptions(concurrency=args.concurrency)
            clients: dict[str, Callable[[], int]] = {
                "heartbeat.ssh.login": lambda: sum(r.ok for r in probe_servers(servers, credentials, options)),
                "asyncssh 2.x": lambda: with_asyncssh(servers, work / "id", args.concurrency),
            }
            for action in clients.values():  # warm-up: imports, first handshakes
                action()
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
            for round_no in range(args.rounds):
                for name, action in clients.items():
                    run = measure(action, args.logins)
                    runs[name].append(run)
                    print(f"round {round_no + 1}: {name:<20} {run['ok']:.0f}/{args.logins} ok, "
                          f"{run['wall_s']:.2f} s, {run['user_ms'] + run['sys_ms']:.2f} ms CPU per login, "
                          f"load {run['load1']:.2f}", file=sys.stderr, flush=True)
        finally:
            fleet.stop()
    print(table(runs, args))
    return 0


def table(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    def med(name: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[name])

    names = list(runs)
    base = med(names[-1], "user_ms") + med(names[-1], "sys_ms")
    lines = [f"{os.cpu_count()} cores; {args.logins} logins per round to {args.sshd} sshd, "
             f"{args.concurrency} in flight, medians of {args.rounds} rounds",
             "| client | ok | wall s | logins/s | user ms/login | sys ms/login | CPU ms/login | CPU vs asyncssh "
             "| load 1 min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        cpu = med(name, "user_ms") + med(name, "sys_ms")
        wall = med(name, "wall_s")
        lines.append(f"| {name} | {min(r['ok'] for r in runs[name]):.0f} | {wall:.2f} | {args.logins / wall:.0f} | "
                     f"{med(name, 'user_ms'):.2f} | {med(name, 'sys_ms'):.2f} | {cpu:.2f} | {cpu / base:.2f} | "
                     f"{med(name, 'load1'):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
