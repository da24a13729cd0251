"""The lab's network namespaces (heartbeat_lab.netns), which the sites, bastion and switch tests
stand on: the range's guard route comes first and outlives every link, a private namespace is
unreachable from the root namespace, a downed link fails at once instead of leaving the machine,
and teardown leaves nothing behind."""

from __future__ import annotations

import errno
import socket
import subprocess
from pathlib import Path

import pytest

from heartbeat_lab import SshdServer
from heartbeat_lab.netns import LabNetwork, netns_available

pytestmark = pytest.mark.skipif(netns_available() is not None, reason=str(netns_available()))

CIDR = "10.119.0.0/16"
PREFIX = "hb19n"


def route_get(address: str) -> str:
    result = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True, check=False)
    return result.stdout + result.stderr


def banner(host: str, port: int, timeout_s: float = 3.0) -> bytes:
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        return sock.recv(64)


def test_should_reach_a_site_over_its_link_but_never_its_private_side(tmp_path: Path) -> None:
    with LabNetwork(CIDR, PREFIX) as net:
        # Guard first: before any link, the whole range is unreachable, not routed off the machine.
        assert "unreachable" in route_get("10.119.1.2") or "No route" in route_get("10.119.1.2")
        site = net.namespace("site")
        private = net.namespace("private")
        root_link = net.link(None, site, "10.119.1.1/30", "10.119.1.2/30")
        net.link(site, private, "10.119.2.1/30", "10.119.2.2/30")
        with SshdServer(tmp_path / "site", "10.119.1.2", netns=site) as site_sshd, \
                SshdServer(tmp_path / "private", "10.119.2.2", netns=private) as private_sshd:
            assert banner("10.119.1.2", site_sshd.port).startswith(b"SSH-2.0-OpenSSH")
            # The private side answers inside the site namespace only.
            probe = site.run(["bash", "-c", f"exec 3<>/dev/tcp/10.119.2.2/{private_sshd.port}; head -c 8 <&3"])
            assert probe.stdout.startswith("SSH-2.0")
            with pytest.raises(OSError) as refused:
                banner("10.119.2.2", private_sshd.port, timeout_s=2.0)
            assert refused.value.errno == errno.EHOSTUNREACH
            # A link that goes down fails at once: the guard route takes over, nothing leaves.
            net.set_link_up(root_link, False)
            with pytest.raises(OSError) as down:
                banner("10.119.1.2", site_sshd.port, timeout_s=2.0)
            assert down.value.errno == errno.EHOSTUNREACH
            net.set_link_up(root_link, True)
            assert banner("10.119.1.2", site_sshd.port).startswith(b"SSH-2.0")
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert PREFIX not in listing
    routes = subprocess.run(["ip", "route", "show", "root", CIDR], capture_output=True, text=True, check=True).stdout
    assert routes.strip() == ""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert f"{PREFIX}l" not in links


def test_should_remove_what_a_run_that_died_left_behind() -> None:
    dead = LabNetwork(CIDR, PREFIX)
    dead.start()
    site = dead.namespace("site")
    dead.link(None, site, "10.119.1.1/30", "10.119.1.2/30")
    dead._untrack()  # as if the process had died here: nobody stops it, and its lock is gone with it
    dead._unlock()
    with LabNetwork(CIDR, PREFIX) as net:
        listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert f"{PREFIX}-site" not in listing
        assert "unreachable" in route_get("10.119.1.2") or "No route" in route_get("10.119.1.2")
        assert net.namespace("site").name == f"{PREFIX}-site"


def test_should_put_back_the_routes_through_a_link_that_comes_back(tmp_path: Path) -> None:
    """Linux drops the routes through a link set down; the lab restores them with the link, so a
    switch that recovers carries the servers behind it again."""
    with LabNetwork(CIDR, PREFIX) as net:
        rack = net.namespace("rack")
        switch = net.link(None, rack, "10.119.3.1/30", "10.119.3.2/30")
        rack.add_address("10.119.5.1/32")
        rack.add_route("default", "10.119.3.1")
        net.add_root_route("10.119.5.0/24", via="10.119.3.2")
        with SshdServer(tmp_path / "behind", "10.119.5.1", netns=rack) as sshd:
            assert banner("10.119.5.1", sshd.port).startswith(b"SSH-2.0")
            net.set_link_up(switch, False)
            with pytest.raises(OSError) as down:
                banner("10.119.5.1", sshd.port, timeout_s=2.0)
            assert down.value.errno == errno.EHOSTUNREACH
            net.set_link_up(switch, True)
            assert banner("10.119.5.1", sshd.port).startswith(b"SSH-2.0")
