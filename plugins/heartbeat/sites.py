"""Sites: the networks a fleet is split into, each probed from inside by workers that serve its
Celery queue. Pure, and cheap to import: the DAG file reads the configured sites at parse time.

A site's name becomes part of an Airflow task id (``probe_<site>``) and of a Celery queue name
(``heartbeat-<site>``), so it is held to what both can carry: lower-case letters, digits, ``_``
and ``-``, starting with a letter or digit, at most 40 characters.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable

DEFAULT_SITE = "default"
SITE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
QUEUE_PREFIX = "heartbeat-"


class SiteError(ValueError):
    pass


def site_problem(site: str) -> str | None:
    """What is wrong with ``site`` as a site name, or None when it is usable."""
    if not SITE_RE.match(site):
        return (f"site {site[:60]!r} must be 1-40 lower-case letters, digits, '_' or '-', starting with a letter "
                "or digit (it names a Celery queue and an Airflow task)")
    return None


def parse_sites(raw: str) -> tuple[str, ...]:
    """The configured sites of ``HEARTBEAT_SITES`` (comma-separated; empty: only ``default``), in
    order, each validated, none twice."""
    sites = tuple(s.strip() for s in raw.split(",") if s.strip()) or (DEFAULT_SITE,)
    problems = [p for p in (site_problem(s) for s in sites) if p]
    twice = sorted({s for s in sites if sites.count(s) > 1})
    if twice:
        problems.append(f"site(s) listed twice: {', '.join(twice)}")
    if problems:
        raise SiteError("; ".join(problems))
    return sites


def queue_name(site: str) -> str:
    """The Celery queue a site's probe tasks are sent to; its workers serve it (``--queues``)."""
    return QUEUE_PREFIX + site


def probe_task_id(site: str) -> str:
    """The DAG's probe task of a site: ``probe_shard`` for the default site (as before sites
    existed), ``probe_shard_<site>`` for the others."""
    return "probe_shard" if site == DEFAULT_SITE else f"probe_shard_{site}"


def load_task_id(site: str) -> str:
    """The DAG's task that cuts a site's servers into shards (a mapped task expands only over a
    task's whole return value, so each site has its own): ``load_inventory`` for the default site,
    ``load_inventory_<site>`` for the others."""
    return "load_inventory" if site == DEFAULT_SITE else f"load_inventory_{site}"


def unconfigured(sites: Iterable[str], configured: Iterable[str]) -> list[str]:
    """Those of ``sites`` no worker is configured to probe, sorted."""
    return sorted(set(sites) - set(configured))


def worker_name(configured: str = "") -> str:
    """What identifies the worker making an attempt: ``configured`` (``HEARTBEAT_WORKER_NAME``; set
    it per worker, e.g. to the Celery worker's ``--celery-hostname``), else the host name. Workers
    in separate network namespaces of one machine share a host name: set it there."""
    return configured.strip()[:200] or socket.gethostname()
