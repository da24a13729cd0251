"""Servers behind a bastion: 1,000 logins through one bastion connection (``direct-tcpip``
channels) beside the same 1,000 logins made directly, in the same run.

The lab: ``--sshd`` OpenSSH sshd on 127.0.0.x (nice 19, as in ``bench.login_cpu``) serving the
1,000 inventory names, and one OpenSSH bastion sshd on 127.0.0.1 (nice 19, ``AllowTcpForwarding
yes``, the monitor's key restricted to the fleet's addresses with ``permitopen``, as
``heartbeat keys authorized-line --bastion`` prints it). The probe engine (``probe_servers``, one
event loop, uvloop, 32 logins in flight) runs the same servers directly and through the bastion,
in alternating rounds so that the machine's drift hits every arm alike. Per round: wall time,
the monitor's CPU (getrusage), the bastion sshd's CPU (its listener's own and reaped children's
time from /proc) and the bastion's accepted logins from its auth log.

Usage: ``python -m bench.bastion_bench [--servers 1000] [--rounds 3] [--sshd 20]``
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.lab_fleet import BenchFleet
from heartbeat.inventory import bastion_options
from heartbeat.models import Server
from heartbeat.probe import ProbeOptions, probe_servers_and_hops
from heartbeat.ssh import ClientCredentials, load_client_key
from heartbeat_lab import SshdServer, free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def monitor_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sshd_cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime of the listener: its own and every reaped session's CPU."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS


def sessions_reaped(pid: int, timeout_s: float = 5.0) -> None:
    """Wait (bounded) until the listener has no session child left, so that their CPU is counted."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            return
        time.sleep(0.05)


def accepted(bastion: SshdServer) -> int:
    return sum(1 for line in bastion.log_path.read_text().splitlines() if "Accepted publickey" in line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sshd", type=int, default=20)
    parser.add_argument("--channels", default="16,32", help="HEARTBEAT_BASTION_MAX_CHANNELS values to run")
    args = parser.parse_args(argv)
    channel_caps = [int(c) for c in args.channels.split(",") if c]
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
        work = Path(tmp)
        for name in ("id", "id_bastion"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True)
        public_line = (work / "id.pub").read_text().strip()
        fleet = BenchFleet(work, args.sshd, public_line, nice=19)
        fleet.start()
        bastion_line = (work / "id_bastion.pub").read_text().strip()
        options_line = bastion_options([(s.host, s.port) for s in fleet.servers])
        bastion = SshdServer(work / "bastion", "127.0.0.1", free_port("127.0.0.1"),
                             authorized_keys=[f"{options_line} {bastion_line}"],
                             extra_config={"AllowTcpForwarding": "yes", "LogLevel": "VERBOSE", "MaxStartups": "100"},
                             reexec=False)
        bastion.start()
        assert bastion.pid is not None
        os.setpriority(os.PRIO_PROCESS, bastion.pid, 19)
        try:
            credentials = {
                "c": ClientCredentials("c", "root", load_client_key("c", None, str(work / "id"), None)),
                "b": ClientCredentials("b", "root", load_client_key("b", None, str(work / "id_bastion"), None)),
            }
            hop = Server(id=0, name="bastion", host=bastion.host, port=bastion.port, conn_id="b",
                         host_key=bastion.host_key_public_line)
            direct = [Server(id=i + 1, name=f"s{i}", host=s.host, port=s.port, conn_id="c",
                             host_key=s.host_key_public_line)
                      for i, s in enumerate(fleet.servers * (args.servers // args.sshd + 1))][: args.servers]
            via = [Server(**{**s.__dict__, "via": "bastion", "path": (hop,)}) for s in direct]

            def arm(servers: list[Server], options: ProbeOptions) -> Callable[[], dict[str, float]]:
                def run() -> dict[str, float]:
                    logins, cpu, b_cpu = accepted(bastion), monitor_cpu_s(), sshd_cpu_s(bastion.pid or 0)
                    started = time.perf_counter()
                    results, _ = probe_servers_and_hops(servers, credentials, options)
                    wall_s = time.perf_counter() - started
                    sessions_reaped(bastion.pid or 0)
                    return {"ok": sum(r.ok for r in results), "wall_s": wall_s,
                            "cpu_ms": (monitor_cpu_s() - cpu) * 1000 / len(servers),
                            "bastion_cpu_s": sshd_cpu_s(bastion.pid or 0) - b_cpu,
                            "bastion_logins": accepted(bastion) - logins, "load1": os.getloadavg()[0]}
                return run

            arms: dict[str, Callable[[], dict[str, float]]] = {"direct": arm(direct, ProbeOptions())}
            for cap in channel_caps:
                arms[f"via bastion, {cap} channels"] = arm(via, ProbeOptions(bastion_max_channels=cap))
            for action in arms.values():  # warm-up: imports, first handshakes
                action()
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
            for round_no in range(args.rounds):
                for name, action in arms.items():
                    run = action()
                    runs[name].append(run)
                    print(f"round {round_no + 1}: {name:<26} {run['ok']:.0f}/{args.servers} ok, "
                          f"{run['wall_s']:.2f} s, {run['cpu_ms']:.2f} ms CPU per login, bastion "
                          f"{run['bastion_logins']:.0f} logins {run['bastion_cpu_s']:.2f} s CPU, load "
                          f"{run['load1']:.2f}", file=sys.stderr, flush=True)
        finally:
            bastion.stop()
            fleet.stop()
    print(table(runs, args))
    return 0


def table(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    def med(name: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[name])

    names = list(runs)
    base_wall, base_cpu = med(names[0], "wall_s"), med(names[0], "cpu_ms")
    lines = [f"{os.cpu_count()} cores; {args.servers} servers on {args.sshd} sshd, 32 logins in flight, medians of "
             f"{args.rounds} rounds",
             "| path | ok | wall s | wall vs direct | monitor CPU ms/login | CPU vs direct | bastion logins "
             "| bastion sshd CPU s | load 1 min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        wall, cpu = med(name, "wall_s"), med(name, "cpu_ms")
        lines.append(f"| {name} | {min(r['ok'] for r in runs[name]):.0f} | {wall:.2f} | {wall / base_wall:.2f} | "
                     f"{cpu:.2f} | {cpu / base_cpu:.2f} | {med(name, 'bastion_logins'):.0f} | "
                     f"{med(name, 'bastion_cpu_s'):.2f} | {med(name, 'load1'):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
