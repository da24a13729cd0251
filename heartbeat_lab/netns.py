"""Separate networks on one machine: Linux network namespaces joined by veth pairs (root only).

A :class:`LabNetwork` owns one test address range (``10.116.0.0/16``, say) and a name prefix. On
start it adds an ``unreachable`` route for the whole range in the root namespace *before* any
link exists, so a packet to a test address whose link is down, not made yet or misspelt fails at
once with "No route to host" instead of following the default route off the machine. Links'
connected routes are more specific and win while they are up. On stop it deletes every
namespace it made (which deletes the veth ends inside them and their peers), the root-side veth
ends it still holds, the routes it added and the ``unreachable`` route.

Names start with the prefix, so that leftovers of a run that died are found and removed by the
next :meth:`LabNetwork.start` with the same prefix. Nothing here sends a packet: the servers and
probes the tests start do, to addresses inside the range only (:meth:`LabNetwork.require_address`).

Example (a site reachable from the root namespace, a private side reachable only from the site)::

    with LabNetwork("10.116.0.0/16", "hb16") as net:
        site = net.namespace("site-a")
        net.link(None, site, "10.116.1.1/30", "10.116.1.2/30")      # root <-> site-a
        private = net.namespace("private-a")
        net.link(site, private, "10.116.2.1/30", "10.116.2.2/30")   # site-a <-> private-a only
        sshd = SshdServer(tmp, "10.116.2.2", netns=private)         # listens inside private-a
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from heartbeat_lab.ports import register_lab_range
from heartbeat_lab.service import LabService

__all__ = ["LabNetwork", "Link", "Namespace", "NetnsUnavailable", "netns_available"]

log = logging.getLogger(__name__)

IP_TIMEOUT_S = 10.0
MAX_NAME = 15  # IFNAMSIZ - 1: the kernel's limit on interface names
LOCK_DIR = "/run/lock"
LOCK_WAIT_S = 600.0  # another run of the same tests holds the range: wait for it, bounded


class NetnsUnavailable(RuntimeError):
    """Namespaces cannot be made here (not root, no ``ip``)."""


def netns_available() -> str | None:
    """``None`` when namespaces can be made here, else why not (for a skip reason)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed; make system-deps installs it"
    return None


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class Namespace:
    """One network namespace of a :class:`LabNetwork`."""

    name: str
    network: LabNetwork = field(repr=False, compare=False)

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this namespace (for ``subprocess.Popen``)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, argv: Sequence[str], *, timeout_s: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside this namespace and wait for it (bounded)."""
        result = subprocess.run(self.exec_argv(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"in {self.name}: {' '.join(argv)} failed (exit {result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()}")
        return result

    def add_address(self, address: str, device: str = "lo") -> None:
        """One more address (``10.118.2.10/32``) on ``device`` in this namespace: a namespace can hold
        many servers, each on its own address, behind one link."""
        self.network.require_address(address.split("/")[0])
        _ip("addr", "add", address, "dev", device, netns=self.name)

    def add_route(self, destination: str, via: str) -> None:
        """Route ``destination`` (a prefix, or ``default``) through the neighbour ``via``; put back
        by :meth:`LabNetwork.set_link_up` when a link it went through comes back."""
        _ip("route", "replace", destination, "via", via, netns=self.name)
        self.network._gateway_routes.append((self.name, destination, via))

    def listens(self, host: str, port: int) -> bool:
        """Whether a TCP socket listens on ``host:port`` inside this namespace (``ss``, no packet sent)."""
        result = self.run(["ss", "-Hltn", f"sport = :{port}"], check=False, timeout_s=IP_TIMEOUT_S)
        return any(line.split()[3] in (f"{host}:{port}", f"[{host}]:{port}", f"*:{port}", f"0.0.0.0:{port}")
                   for line in result.stdout.splitlines() if len(line.split()) >= 4)


@dataclass(frozen=True)
class Link:
    """A veth pair: ``a`` end in ``a_netns`` (``None``: the root namespace), ``b`` end in ``b_netns``."""

    a: str
    b: str
    a_netns: str | None
    b_netns: str
    a_address: str
    b_address: str


class LabNetwork(LabService):
    """Namespaces and veth links inside one address range; see the module docstring."""

    def __init__(self, cidr: str, prefix: str) -> None:
        self.cidr = ipaddress.ip_network(cidr)
        if not self.cidr.is_private:
            raise ValueError(f"{cidr} is not a private range; the lab uses private test ranges only")
        if not prefix.isalnum() or len(prefix) > 6:
            raise ValueError(f"prefix {prefix!r}: up to 6 letters or digits (interface names hold 15)")
        self.prefix = prefix
        self._namespaces: list[Namespace] = []
        self._links: list[Link] = []
        self._root_routes: list[str] = []
        # (namespace or None for the root, destination, via): every route through a neighbour, in
        # the order added. Linux drops them when their link goes down; set_link_up puts them back.
        self._gateway_routes: list[tuple[str | None, str, str]] = []
        self._root_addresses: list[str] = []
        self._started = False
        self._lock_fd: int | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        reason = netns_available()
        if reason:
            raise NetnsUnavailable(reason)
        self._lock()
        try:
            self._remove_leftovers()
            # First of all: the range has nowhere to go but its own links.
            _ip("route", "replace", "unreachable", str(self.cidr))
        except BaseException:
            self._unlock()
            raise
        self._started = True
        register_lab_range(self.cidr, True)
        self._track()

    def stop(self) -> None:
        if not self._started:
            return
        errors: list[str] = []
        for namespace in reversed(self._namespaces):
            result = _ip("netns", "delete", namespace.name, check=False)
            if result.returncode != 0 and "No such file" not in result.stderr:
                errors.append(result.stderr.strip())
        for link in self._links:
            if link.a_netns is None:
                _ip("link", "delete", link.a, check=False)  # gone with its peer already, usually
        for route in self._root_routes:
            _ip("route", "delete", route, check=False)
        for address in self._root_addresses:
            _ip("addr", "delete", address, "dev", "lo", check=False)
        # Last: the guard route goes only after every link is gone.
        _ip("route", "delete", "unreachable", str(self.cidr), check=False)
        self._namespaces.clear()
        self._links.clear()
        self._root_routes.clear()
        self._gateway_routes.clear()
        self._root_addresses.clear()
        self._started = False
        register_lab_range(self.cidr, False)
        self._untrack()
        self._unlock()
        if errors:
            log.warning("netns teardown: %s", "; ".join(errors))

    # -- building ---------------------------------------------------------------------

    def namespace(self, name: str) -> Namespace:
        """A new namespace ``<prefix>-<name>`` with ``lo`` up and forwarding off (a namespace does
        not route between its links unless :meth:`enable_forwarding` says so)."""
        self._require_started()
        namespace = Namespace(f"{self.prefix}-{name}", self)
        _ip("netns", "add", namespace.name)
        self._namespaces.append(namespace)
        _ip("link", "set", "lo", "up", netns=namespace.name)
        namespace.run(["sysctl", "-qw", "net.ipv4.ip_forward=0"])
        return namespace

    def enable_forwarding(self, namespace: Namespace) -> None:
        """Let ``namespace`` route between its links (a router between two sites, say)."""
        namespace.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])

    def link(self, a: Namespace | None, b: Namespace, a_address: str, b_address: str) -> Link:
        """A veth pair between ``a`` (``None``: the root namespace) and ``b``, with an address
        (``10.116.1.1/30``) on each end, both up."""
        self._require_started()
        for address in (a_address, b_address):
            self.require_address(address.split("/")[0])
        index = len(self._links)
        a_name, b_name = f"{self.prefix}l{index}a", f"{self.prefix}l{index}b"
        assert len(a_name) <= MAX_NAME
        _ip("link", "add", a_name, "type", "veth", "peer", "name", b_name)
        link = Link(a_name, b_name, a.name if a else None, b.name, a_address, b_address)
        self._links.append(link)
        if a is not None:
            _ip("link", "set", a_name, "netns", a.name)
        _ip("link", "set", b_name, "netns", b.name)
        _ip("addr", "add", a_address, "dev", a_name, netns=link.a_netns)
        _ip("addr", "add", b_address, "dev", b_name, netns=b.name)
        _ip("link", "set", a_name, "up", netns=link.a_netns)
        _ip("link", "set", b_name, "up", netns=b.name)
        return link

    def set_link_up(self, link: Link, up: bool) -> None:
        """Take a link down (both ends) or bring it back, as a switch failing and recovering. Linux
        drops the routes through a link that goes down; coming back, the routes added through
        :meth:`add_root_route` and :meth:`Namespace.add_route` are put back, as a router relearns them."""
        state = "up" if up else "down"
        _ip("link", "set", link.a, state, netns=link.a_netns)
        _ip("link", "set", link.b, state, netns=link.b_netns)
        if up:
            for netns, destination, via in self._gateway_routes:
                # A route whose neighbour is behind another link that is still down stays out.
                _ip("route", "replace", destination, "via", via, netns=netns, check=False)

    def add_root_route(self, destination: str, via: str) -> None:
        """Route ``destination`` (inside the range) from the root namespace through ``via``."""
        self._require_started()
        network = ipaddress.ip_network(destination)
        if not network.subnet_of(self.cidr):  # type: ignore[arg-type]
            raise ValueError(f"{destination} is outside {self.cidr}")
        _ip("route", "replace", destination, "via", via)
        self._root_routes.append(destination)
        self._gateway_routes.append((None, destination, via))

    def add_root_address(self, address: str) -> str:
        """An address of the range (``10.116.0.1/32``) on the root namespace's ``lo``, removed on
        stop: where services of the root namespace (a database, a broker, the Airflow API) listen
        for namespaces, which reach it through a route to their link's root end. Returns the bare
        address."""
        self._require_started()
        host = self.require_address(address.split("/")[0])
        _ip("addr", "add", address, "dev", "lo")
        self._root_addresses.append(address)
        return host

    def require_address(self, host: str) -> str:
        """``host`` unchanged if it lies in this network's range, else ``ValueError``."""
        if ipaddress.ip_address(host) not in self.cidr:
            raise ValueError(f"{host} is outside the lab range {self.cidr}")
        return host

    # -- internals --------------------------------------------------------------------

    def _lock(self) -> None:
        """Hold the range and prefix for this run: a second run of the same tests (another
        checkout, say) waits here instead of removing this run's namespaces as leftovers."""
        path = os.path.join(LOCK_DIR if os.path.isdir(LOCK_DIR) else "/tmp", f"heartbeat-lab-{self.prefix}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise NetnsUnavailable(f"{path} is held by another run for over {LOCK_WAIT_S:g} s") from None
                time.sleep(0.2)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the lock
            self._lock_fd = None

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("LabNetwork not started (use it as a context manager)")

    def _remove_leftovers(self) -> None:
        """Namespaces and root links with this prefix left by a run that died without stopping."""
        listing = _ip("netns", "list", check=False).stdout
        for line in listing.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(f"{self.prefix}-"):
                _ip("netns", "delete", name, check=False)
        links = _ip("-o", "link", "show", check=False).stdout
        for line in links.splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                name = parts[1].strip().split("@")[0]
                if name.startswith(f"{self.prefix}l"):
                    _ip("link", "delete", name, check=False)
        # Routes into the range left in the root namespace (the guard route among them), and
        # addresses of the range left on its lo.
        _ip("route", "flush", "root", str(self.cidr), check=False)
        for line in _ip("-o", "addr", "show", "dev", "lo", check=False).stdout.splitlines():
            parts = line.split()
            if "inet" in parts:
                address = parts[parts.index("inet") + 1]
                if ipaddress.ip_address(address.split("/")[0]) in self.cidr:
                    _ip("addr", "delete", address, "dev", "lo", check=False)
