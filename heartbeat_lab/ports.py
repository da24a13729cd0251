"""Loopback-only port helpers for the lab.

The lab never binds or connects outside 127.0.0.0/8 and ::1; :func:`require_loopback`
is the single place that rule is enforced. The one exception is a started
:class:`heartbeat_lab.netns.LabNetwork`: while it runs, addresses of its test range (which never
leave the machine) are allowed too, through :func:`require_lab_host`.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["free_port", "lab_range_of", "port_is_free", "require_lab_host", "require_loopback", "socket_family"]

_LAB_RANGES: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
"""The ranges of the LabNetworks running in this process (registered by LabNetwork itself)."""


def register_lab_range(cidr: ipaddress.IPv4Network | ipaddress.IPv6Network, active: bool) -> None:
    """Called by LabNetwork on start (``active``) and stop."""
    if active:
        _LAB_RANGES.add(cidr)
    else:
        _LAB_RANGES.discard(cidr)


def lab_range_of(host: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The range of the running LabNetwork that holds ``host``, or None."""
    address = ipaddress.ip_address(host)
    return next((r for r in _LAB_RANGES if address in r), None)


def require_lab_host(host: str) -> str:
    """``host`` unchanged if it is a loopback IP literal or an address of a running LabNetwork's
    test range, else ``ValueError``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"lab host {host!r} is not an IP literal") from None
    if address.is_loopback or lab_range_of(host) is not None:
        return host
    raise ValueError(f"lab host {host!r} is neither loopback nor in the range of a started LabNetwork")


def require_loopback(host: str) -> str:
    """Return ``host`` unchanged if it is a loopback IP literal, else raise ``ValueError``.

    Names such as ``localhost`` are refused on purpose: their resolution depends on
    /etc/hosts and may yield a non-loopback address.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"lab host {host!r} is not an IP literal; use a loopback address such as 127.0.0.1 or ::1"
        ) from None
    if not address.is_loopback:
        raise ValueError(f"lab host {host!r} is not a loopback address; use 127.0.0.0/8 or ::1")
    return host


def socket_family(host: str) -> socket.AddressFamily:
    """The address family matching an IP literal."""
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is currently free on ``host`` (chosen by the kernel).

    There is an unavoidable race between this call and the caller's bind; the lab
    servers report a bind failure clearly when they lose it.
    """
    require_lab_host(host)
    with socket.socket(socket_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """Whether a listening server could bind ``host:port`` right now.

    ``SO_REUSEADDR`` is set like sshd and PostgreSQL do, so ports with only TIME_WAIT
    connections left on them count as free.
    """
    require_lab_host(host)
    with socket.socket(socket_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
