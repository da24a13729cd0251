"""Child processes of the fleet benchmark, each measuring its own CPU (``getrusage``) after its
imports, and printing one JSON line:

- ``raw``: the project's probe engine without Airflow, ``heartbeat.probe.probe_servers`` over
  the targets, as one probe task would run it (same :class:`ProbeOptions`);
- ``baseline``: the seed's way, one ``SSHHook`` login after another.

Usage: ``python -m bench.workers raw|baseline SPEC.json``; the spec is written by fleet_bench.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_raw(spec: dict[str, Any]) -> dict[str, Any]:
    from heartbeat.models import Server
    from heartbeat.probe import ProbeOptions, probe_servers
    from heartbeat.ssh import ClientCredentials, load_client_key

    key = load_client_key("bench", None, spec["key_file"], None)
    credentials = {"heartbeat_ssh": ClientCredentials("heartbeat_ssh", spec["username"], key)}
    options = ProbeOptions(connect_timeout_s=spec["connect_timeout_s"], probe_timeout_s=spec["probe_timeout_s"],
                           concurrency=spec["concurrency"], kex_algs=tuple(spec["kex_algs"]))
    servers = [Server.from_dict(s) for s in spec["targets"]]
    probe_servers(servers[: spec["warmup"]], credentials, options)  # lazy imports, first handshakes
    runs = []
    for n in spec["sizes"]:
        for _ in range(spec["reps"]):
            epoch0, cpu0, t0 = time.time(), cpu_s(), time.perf_counter()
            results = probe_servers(servers[:n], credentials, options)
            wall, cpu, epoch1 = time.perf_counter() - t0, cpu_s() - cpu0, time.time()
            failed: dict[str, int] = {}
            for r in results:
                if not r.ok:
                    failed[str(r.error_class)] = failed.get(str(r.error_class), 0) + 1
            runs.append({"n": n, "wall_s": wall, "cpu_s": cpu, "t0": epoch0, "t1": epoch1,
                         "ok": sum(r.ok for r in results), "failed": failed})
    return {"runs": runs}


def run_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    cpu0, t0 = cpu_s(), time.perf_counter()
    from airflow.providers.ssh.hooks.ssh import SSHHook

    import_cpu, import_wall = cpu_s() - cpu0, time.perf_counter() - t0
    targets = spec["targets"][: spec["n"]]
    ok, errors = 0, dict[str, int]()
    epoch0, cpu0, t0 = time.time(), cpu_s(), time.perf_counter()
    for target in targets:
        try:
            hook = SSHHook(remote_host=target["host"], port=target["port"], username=spec["username"],
                           key_file=spec["key_file"], conn_timeout=5, no_host_key_check=True)
            client = hook.get_conn()
            client.close()
            ok += 1
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
    wall, cpu, epoch1 = time.perf_counter() - t0, cpu_s() - cpu0, time.time()
    return {"n": len(targets), "wall_s": wall, "cpu_s": cpu, "t0": epoch0, "t1": epoch1, "ok": ok, "errors": errors,
            "import_cpu_s": import_cpu, "import_wall_s": import_wall}


def main(argv: list[str]) -> int:
    kind, spec_path = argv
    spec = json.loads(Path(spec_path).read_text())
    result = run_raw(spec) if kind == "raw" else run_baseline(spec)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
