"""The inventory: validating server rows, reading import files, cutting the fleet into shards. Pure."""

from __future__ import annotations

import csv
import io
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from heartbeat.models import DEFAULT_SITE, DEFAULT_SSH_CONN_ID, Server
from heartbeat.sites import site_problem
from heartbeat.ssh.hostkeys import HostKeyFormatError, normalise_public_key

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
USERNAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
CONN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
FIELDS = ("name", "host", "port", "username", "conn_id", "enabled", "host_key", "via", "site")
MAX_HOPS = 3  # bastions on the way to one server


class InventoryError(ValueError):
    """A server row that cannot be used; says which field is wrong and why."""

    def __init__(self, problems: Sequence[str], where: str = "") -> None:
        self.problems = list(problems)
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(prefix + "; ".join(self.problems))


@dataclass(frozen=True)
class ServerSpec:
    """A validated inventory row, before it has a database id."""

    name: str
    host: str
    port: int = 22
    username: str | None = None
    conn_id: str = DEFAULT_SSH_CONN_ID
    enabled: bool = True
    host_key: str | None = None
    via: str | None = None
    site: str = DEFAULT_SITE


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_host(host: str) -> str | None:
    """Return a problem with ``host`` (DNS name, IPv4 or IPv6), or None when it is usable."""
    if not host:
        return "host is empty"
    if "\x00" in host:
        return "host contains a NUL byte"
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare)
        return None
    except ValueError:
        pass
    if len(bare) > 253:
        return f"host is longer than 253 characters ({len(bare)})"
    labels = bare.rstrip(".").split(".")
    if not all(HOST_LABEL_RE.match(label) for label in labels):
        return f"host {_show(host)} is not a DNS name, IPv4 or IPv6 address"
    return None


def _parse_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off"):
        return False
    return None


def validate_server(
    row: Mapping[str, Any], where: str = "", sites: Sequence[str] | None = None,
) -> ServerSpec:
    """Validate one inventory row; raise :class:`InventoryError` naming every bad field.

    ``sites``: the configured sites (``HEARTBEAT_SITES``); a row naming another site is refused,
    since no worker would probe it. None: any well-formed site name."""
    problems: list[str] = []
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        problems.append(f"unknown field(s) {', '.join(map(str, unknown))}; expected {', '.join(FIELDS)}")

    def text(field: str) -> str:
        value = row.get(field)
        return "" if value is None else str(value).strip()

    name = text("name")
    if "\x00" in name or not NAME_RE.match(name):
        problems.append(
            f"name {_show(row.get('name'))} must be 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    host = text("host")
    host_problem = validate_host(host)
    if host_problem:
        problems.append(host_problem)
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host

    port = 22
    if text("port"):
        try:
            port = int(text("port"))
        except ValueError:
            problems.append(f"port {_show(row.get('port'))} is not a number")
        else:
            if not 1 <= port <= 65535:
                problems.append(f"port must be between 1 and 65535, got {port}")

    username = text("username") or None
    if username is not None and not USERNAME_RE.match(username):
        problems.append(f"username {_show(username)} is not a valid login name")

    conn_id = text("conn_id") or DEFAULT_SSH_CONN_ID
    if not CONN_ID_RE.match(conn_id):
        problems.append(f"conn_id {_show(conn_id)} must be letters, digits, '.', '_' or '-'")

    enabled = True
    if text("enabled"):
        parsed = _parse_bool(row.get("enabled"))
        if parsed is None:
            problems.append(f"enabled {_show(row.get('enabled'))} must be true or false")
        else:
            enabled = parsed

    host_key = None
    if text("host_key"):
        try:
            host_key = normalise_public_key(text("host_key"))
        except HostKeyFormatError as exc:
            problems.append(f"host_key is malformed: {exc}")

    via = text("via") or None
    if via is not None:
        if "\x00" in via or not NAME_RE.match(via):
            problems.append(f"via {_show(row.get('via'))} must be the name of another inventory server")
        elif via == name:
            problems.append(f"via names the server itself ({name!r}): a server cannot be its own bastion")

    site = text("site") or DEFAULT_SITE
    problem = site_problem(site)
    if problem:
        problems.append(problem)
    elif sites is not None and site not in sites:
        problems.append(f"site {site!r} is not configured (HEARTBEAT_SITES: {', '.join(sites)}); add it there and "
                        "start a worker serving its queue first")

    if problems:
        raise InventoryError(problems, where)
    return ServerSpec(name, host, port, username, conn_id, enabled, host_key, via, site)


@dataclass(frozen=True)
class PathNode:
    """What the bastion check needs of one inventory row."""

    name: str
    via: str | None
    enabled: bool


def bastion_path(name: str, nodes: Mapping[str, PathNode]) -> tuple[list[str], str | None]:
    """The bastions on the way to server ``name`` (the one reached directly first) and what is
    wrong with them (None: a usable path): an unknown or disabled bastion, a cycle, more than
    :data:`MAX_HOPS` hops."""
    chain: list[str] = []
    seen = [name]
    current = nodes[name].via if name in nodes else None
    while current is not None:
        if current in seen:
            loop = " -> ".join([*seen[seen.index(current):], current])
            return chain[::-1], f"via makes a cycle: {loop}"
        bastion = nodes.get(current)
        if bastion is None:
            return chain[::-1], f"via names {current!r}, which is not in the inventory"
        if not bastion.enabled:
            return chain[::-1], f"via names {current!r}, which is disabled: enable it or reach {seen[-1]!r} another way"
        chain.append(current)
        seen.append(current)
        if len(chain) > MAX_HOPS:
            hops = " -> ".join([name, *chain])
            return chain[::-1], f"via chain has more than {MAX_HOPS} hops: {hops}"
        current = bastion.via
    return chain[::-1], None


def check_bastions(nodes: Mapping[str, PathNode], names: Iterable[str] | None = None) -> list[str]:
    """Every problem of the bastion paths of ``names`` (default: every enabled server), each naming
    the servers involved: refused at input, so a cycle never probes a path that cannot work."""
    problems = []
    wanted = sorted(names) if names is not None else sorted(n for n, node in nodes.items() if node.enabled)
    for name in wanted:
        if name not in nodes or nodes[name].via is None:
            continue
        _, problem = bastion_path(name, nodes)
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def bastion_options(behind: Iterable[tuple[str, int]], from_hosts: str | None = None) -> str:
    """authorized_keys options for a bastion: ``restrict`` (no pty, agent or X11 forwarding, no
    listening), ``port-forwarding`` back on for ``direct-tcpip`` only to the ``permitopen``
    destinations (the servers behind it), and a forced command that fails, so a session gets no
    shell and runs nothing."""
    targets = sorted(set(behind))
    opens = ",".join(f'permitopen="{f"[{h}]" if ":" in h else h}:{p}"' for h, p in targets)
    options = f'restrict,port-forwarding,{opens},command="/bin/false"'
    if from_hosts:
        options += f',from="{from_hosts}"'
    return options


def read_import_file(content: str, file_format: str) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a CSV (with a header line) or YAML (a list, or ``servers:`` holding one) file,
    each with the line it starts on."""
    if file_format == "csv":
        reader = csv.DictReader(io.StringIO(content))
        rows = []
        for row in reader:
            clean = {k.strip(): v for k, v in row.items() if k is not None and v not in (None, "")}
            if None in row:
                clean["__extra__"] = row[None]  # type: ignore[index]
            rows.append((reader.line_num, clean))
        return rows
    if file_format in ("yaml", "yml"):
        loader = yaml.SafeLoader(content)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
        if node is None:
            return []
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == "servers"), None)
        if not isinstance(node, yaml.SequenceNode):
            raise InventoryError(["expected a list of servers, or a 'servers:' key holding one"], "file")
        data = yaml.safe_load(content)
        items = data["servers"] if isinstance(data, dict) else data
        return [
            (item_node.start_mark.line + 1, item if isinstance(item, dict) else {"__not_a_mapping__": item})
            for item_node, item in zip(node.value, items, strict=True)
        ]
    raise InventoryError([f"unknown file format {file_format!r}; use .csv, .yaml or .yml"], "file")


def validate_import(
    rows: Iterable[tuple[int, Mapping[str, Any]]], sites: Sequence[str] | None = None,
) -> list[ServerSpec]:
    """Validate every row; raise one :class:`InventoryError` listing all bad rows by line."""
    specs: list[ServerSpec] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if "__not_a_mapping__" in row:
            problems.append(f"line {line}: expected a mapping of fields, got {_show(row['__not_a_mapping__'])}")
            continue
        if "__extra__" in row:
            problems.append(f"line {line}: more values than header fields")
            continue
        try:
            spec = validate_server(row, sites=sites)
        except InventoryError as exc:
            problems.extend(f"line {line}: {p}" for p in exc.problems)
            continue
        if spec.name in seen:
            problems.append(f"line {line}: name {spec.name!r} already appears on line {seen[spec.name]}")
            continue
        seen[spec.name] = line
        specs.append(spec)
    if problems:
        raise InventoryError(problems)
    return specs


def shard_servers(servers: Sequence[Server], shard_size: int, max_shards: int) -> list[list[Server]]:
    """Cut the fleet into balanced shards of at most ``shard_size`` servers, growing shards so
    that their number stays within ``max_shards`` (mapped task count limits)."""
    if not servers:
        return []
    count = min(max_shards, math.ceil(len(servers) / shard_size))
    size, extra = divmod(len(servers), count)
    shards, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        shards.append(list(servers[start:end]))
        start = end
    return shards


@dataclass(frozen=True)
class Shard:
    """One mapped probe task's part of a cycle: its servers by id, the site they are probed from,
    and a label for the UI.

    This is what travels through XCom, so it stays small (a few kilobytes for a thousand servers,
    where their rows are about 200 kB that the API server and the task receiving them would
    decode); the probe task reads the rows again from the inventory.
    """

    label: str
    server_ids: tuple[int, ...]
    site: str = DEFAULT_SITE

    @classmethod
    def of(cls, servers: Sequence[Server], site: str = DEFAULT_SITE) -> Shard:
        return cls(shard_label(servers), tuple(s.id for s in servers), site)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "server_ids": list(self.server_ids), "site": self.site}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Shard:
        return cls(str(data["label"]), tuple(int(i) for i in data["server_ids"]), str(data.get("site", DEFAULT_SITE)))


def shard_label(shard: Sequence[Server]) -> str:
    """A short, readable name for a shard, for the mapped task's name in the UI."""
    if not shard:
        return "empty"
    if len(shard) == 1:
        return f"{shard[0].name} ({shard[0].host})"
    return f"{shard[0].name} … {shard[-1].name} ({len(shard)} servers)"
