"""The benchmark's fleet: real OpenSSH sshd on 127.0.0.x, each serving many inventory rows, and
silent peers (accept, never send a byte).

The fleet shares the two cores with the monitor, which a real fleet does not: every login costs
sshd about eight times the CPU it costs the monitor. Two things keep the lab from measuring
itself instead of the monitor, without changing anything the monitor sees on the wire:

- sshd runs with ``-r`` (no re-execution per connection, an OpenSSH 9.2 option), about a third
  less sshd CPU per login; ``--sshd-reexec`` runs stock sshd instead;
- sshd runs at ``nice`` 19 (``--fleet-nice``): with a hundred sshd processes runnable at once,
  the kernel's fair scheduler would otherwise give the monitor's single event loop a hundredth
  of a core, and every phase of every login (TCP accept included) would wait in the run queue.
  At nice 19 the fleet uses what the monitor leaves, as remote servers would.

The sshd CPU per login is reported either way.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from heartbeat_lab import SilentPeer, SshdServer, free_port, port_is_free

MAX_SSHD = 200


class BenchFleet:
    """``count`` sshd on 127.0.0.2 .. 127.0.0.{count+1}, one common port when possible, accepting
    ``public_line``; plus ``silent`` silent peers on the addresses after them."""

    def __init__(self, work_dir: Path, count: int, public_line: str, *, reexec: bool = False,
                 host_key_type: str = "ed25519",
                 silent: int = 0, silent_hold_s: float = 60.0, nice: int = 0) -> None:
        self.nice = nice
        if not 0 < count <= MAX_SSHD:
            raise ValueError(f"--sshd must be 1..{MAX_SSHD} (one 127.0.0.x address each), got {count}")
        hosts = [f"127.0.0.{2 + i}" for i in range(count)]
        port = _common_port(hosts)
        extra = {"MaxStartups": "2000:30:4000", "LoginGraceTime": "60"}
        self.servers: list[SshdServer] = [
            SshdServer(work_dir / f"sshd-{i:03d}", listen_host=host, port=port or free_port(host),
                       authorized_keys=[public_line], extra_config=extra, reexec=reexec,
                       host_key_type=host_key_type)
            for i, host in enumerate(hosts)
        ]
        self.silent: list[SilentPeer] = [
            SilentPeer(f"127.0.0.{2 + count + j}", max_hold_s=silent_hold_s) for j in range(silent)
        ]

    def start(self) -> None:
        errors = _run_all(self.servers, SshdServer.start)
        if errors:
            self.stop()
            raise ExceptionGroup(f"{len(errors)} of {len(self.servers)} sshd failed to start", errors)
        for pid in self.listener_pids():
            os.setpriority(os.PRIO_PROCESS, pid, self.nice)  # per-connection children inherit it
        for peer in self.silent:
            peer.start()

    def stop(self) -> None:
        for peer in self.silent:
            peer.stop()
        errors = _run_all(self.servers, SshdServer.stop)
        if errors:
            raise ExceptionGroup(f"{len(errors)} sshd failed to stop", errors)

    def listener_pids(self) -> set[int]:
        return {pid for server in self.servers if (pid := server.pid) is not None}


def _common_port(hosts: Sequence[str], attempts: int = 20) -> int | None:
    for _ in range(attempts):
        candidate = free_port(hosts[0])
        if all(port_is_free(host, candidate) for host in hosts[1:]):
            return candidate
    return None


def _run_all(servers: Sequence[SshdServer], action: Callable[[SshdServer], None]) -> list[Exception]:
    errors: list[Exception] = []
    timeout = 30.0 + 0.5 * len(servers)
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(servers))) as pool:
        futures = [pool.submit(action, server) for server in servers]
        done, not_done = concurrent.futures.wait(futures, timeout=timeout)
        errors += [TimeoutError(f"sshd start/stop took over {timeout:.0f} s") for _ in not_done]
        errors += [e for f in done if isinstance(e := f.exception(), Exception)]
    return errors
