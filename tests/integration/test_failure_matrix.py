"""The rest of the failure matrix, with real sockets and real sshd: each case ends as its own
error class within the probe timeout, never as a crash and never as a heartbeat.
(Banner, kex, refused, silent, wrong-key and changed-key cases are in test_probe.py.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from heartbeat.models import Server
from heartbeat.probe import ProbeOptions, probe_servers
from heartbeat.ssh import ClientCredentials, load_client_key
from heartbeat_lab import KeyPair, SshdServer

pytestmark = pytest.mark.integration

OPTIONS = ProbeOptions(connect_timeout_s=2.0, probe_timeout_s=3.0)


def credentials(key: KeyPair) -> dict:
    return {"heartbeat_ssh": ClientCredentials(
        "heartbeat_ssh", "root", load_client_key("heartbeat_ssh", None, str(key.private_path), None))}


def probe_one(host: str, port: int, key: KeyPair):
    started = time.monotonic()
    [result] = probe_servers([Server(1, "target", host, port)], credentials(key), OPTIONS)
    return result, time.monotonic() - started


def test_should_time_out_the_connect_when_syns_are_dropped(client_key: KeyPair):
    """A listener whose accept queue is full drops further SYNs: no answer at all."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue; the kernel then drops new SYNs
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        time.sleep(0.2)
        result, elapsed = probe_one(*listener.getsockname(), client_key)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert (result.ok, result.error_class) == (False, "timeout"), result.message
    assert "TCP connect" in result.message
    assert OPTIONS.connect_timeout_s - 0.2 < elapsed < OPTIONS.connect_timeout_s + 1.0


def test_should_report_an_sshd_at_maxstartups_as_refusing(
        tmp_path: Path, client_key: KeyPair):
    with SshdServer(tmp_path / "full", authorized_keys=[client_key.public_line],
                    extra_config={"MaxStartups": "1"}) as sshd:
        hog = None
        for _ in range(50):  # bounded: until one unauthenticated connection holds the only slot
            candidate = socket.create_connection((sshd.host, sshd.port), timeout=5)
            if candidate.recv(100).startswith(b"SSH-"):
                hog = candidate
                break
            candidate.close()
            time.sleep(0.1)
        assert hog is not None, "sshd never had a free startup slot"
        try:
            hog.sendall(b"SSH-2.0-hog\r\n")  # parked in the key exchange
            result, elapsed = probe_one(sshd.host, sshd.port, client_key)
        finally:
            hog.close()
    assert (result.ok, result.error_class) == (False, "refused"), result.message
    assert "Exceeded MaxStartups" in result.message
    assert elapsed < OPTIONS.probe_timeout_s + 1.0


def test_should_report_a_name_that_does_not_resolve(client_key: KeyPair, tmp_path: Path):
    """Run in a network namespace of its own (only loopback, no route out), so the lookup
    fails without any packet leaving this machine."""
    script = tmp_path / "probe_dns.py"
    script.write_text(
        "import json, sys\n"
        "from heartbeat.models import Server\n"
        "from heartbeat.probe import ProbeOptions, probe_servers\n"
        "from heartbeat.ssh import ClientCredentials, load_client_key\n"
        f"key = load_client_key('c', None, {str(client_key.private_path)!r}, None)\n"
        "[r] = probe_servers([Server(1, 'ghost', 'no-such-host.heartbeat.invalid', 22)],\n"
        "                    {'heartbeat_ssh': ClientCredentials('c', 'root', key)},\n"
        "                    ProbeOptions(connect_timeout_s=2, probe_timeout_s=3))\n"
        "print(json.dumps(r.to_json()))\n"
    )
    proc = subprocess.run(["unshare", "--net", "sh", "-c", f"ip link set lo up && {sys.executable} {script}"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        pytest.skip(f"cannot create a network namespace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result["ok"], result["error_class"]) == (False, "dns")
    assert "does not resolve" in result["message"]
