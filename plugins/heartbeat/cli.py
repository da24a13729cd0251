"""The ``heartbeat`` command: run a cycle now, read the status, edit the inventory and inputs.

The heartbeat database is the Airflow connection ``heartbeat_db`` (HEARTBEAT_DB_CONN_ID to
use another), exactly as for the DAG.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A failure the user can act on; printed without a traceback."""


def _settings():  # type: ignore[no-untyped-def]
    from heartbeat.config import settings_from_env

    return settings_from_env()


def _connect(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from heartbeat import cycle

    return cycle.db_connect(_settings())


def _fmt_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "never"


def _fmt_age(age_s: float | None) -> str:
    return "-" if age_s is None else f"{age_s:.0f} s"


def _print_listing(
    args: argparse.Namespace, rows: Sequence[Any], headers: Sequence[str], row_of: Callable[[Any], Sequence[Any]],
) -> int:
    """A list command's output: the records as JSON with ``--json``, else a table of ``row_of`` each."""
    if args.json:
        print(json.dumps(rows, default=_json_default, indent=2))
    else:
        print(_table([row_of(r) for r in rows], headers))
    return EXIT_OK


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(type(value).__name__)


# --- commands ---------------------------------------------------------------------------------

def cmd_migrate(args: argparse.Namespace) -> int:
    from heartbeat import store

    with _connect(args) as conn:
        applied = store.migrate(conn)
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return EXIT_OK


def _describe_result(result: Any, via: bool = False) -> str:
    target = result.server_name
    if result.ok:
        return (f"{target}: ok in {result.total_ms:.1f} ms ({'channel' if via else 'tcp'} {result.tcp_connect_ms:.1f}, "
                f"handshake {result.ssh_handshake_ms:.1f}, auth {result.auth_ms:.1f}) "
                f"{result.banner or ''} {result.host_key_fingerprint or ''}").rstrip()
    took = f" after {result.total_ms:.0f} ms" if result.total_ms is not None else ""
    return f"{target}: FAILED {result.error_class}{took}: {result.message}"


def cmd_probe(args: argparse.Namespace) -> int:
    from heartbeat import cycle
    from heartbeat.inventory import Shard

    settings = _settings()
    started_at = cycle.utc_now()
    cycle_id = "cli-" + started_at.strftime("%Y%m%dT%H%M%S.%fZ")
    if args.site is not None and args.site not in settings.site_list:
        raise CommandError(f"site {args.site!r} is not configured (HEARTBEAT_SITES: {settings.sites})")
    servers = cycle.load_servers(settings, cycle_id, started_at, only=args.server or None, site=args.site)
    if args.server:
        missing = sorted(set(args.server) - {s.name for s in servers})
        if missing:
            where = f" in site {args.site}" if args.site else ""
            raise CommandError(f"no enabled, valid server named {', '.join(missing)}{where} (see `heartbeat servers "
                               "list`)")
    by_site: dict[str, list[Any]] = {}
    for server in servers:
        by_site.setdefault(server.site, []).append(server)
    if args.verbose:
        print(f"probing {len(servers)} servers from worker {settings.worker} (timeout {settings.probe_timeout_s:g} s, "
              f"{settings.concurrency} logins in flight)")
    behind = {s.id for s in servers if s.path}

    def show(result: Any) -> None:
        if args.verbose or not result.ok:
            print("  " + _describe_result(result, result.server_id in behind))

    def show_hop(hop: Any) -> None:
        if hop.ok and args.verbose:
            print(f"  bastion {' -> '.join(hop.path)}: logged in in {hop.login_ms:.1f} ms "
                  "(one connection carries its servers' channels)")
        elif not hop.ok:
            print(f"  bastion {' -> '.join(hop.path)}: FAILED {hop.error_class}: {hop.message}; "
                  "its servers are not probed")

    for site, members in by_site.items():
        if args.verbose:
            print(f"site {site}, worker {settings.worker}:")
            for s in members:
                path = " -> ".join(f"{b.name} ({b.host}:{b.port})" for b in s.path)
                print(f"  connecting to {s.name} ({s.host}:{s.port})" + (f" via {path}" if path else ""))
        summary = cycle.probe_shard(settings, cycle_id, Shard.of(members, site), on_result=show, on_hop=show_hop)
        failures = ", ".join(f"{k} {v}" for k, v in summary.by_error_class.items()) or "none"
        print(f"site {site}: {summary.ok}/{summary.probed} heartbeats recorded in {summary.duration_ms / 1000:.1f} s "
              f"(worker {settings.worker}); failures: {failures}")
    counts = cycle.materialise(settings, cycle_id, cycle.utc_now())
    print(f"status: {counts['online']} ONLINE, {counts['warning']} WARNING, {counts['offline']} OFFLINE"
          + (f", {counts['stale']} STALE" if counts.get("stale") else ""))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from heartbeat import cycle, store

    settings = _settings()
    with _connect(args) as conn:
        store.check_schema(conn)
        rows = store.status_report(conn, cycle.utc_now(), settings.status_rules)
        last = store.last_cycle(conn)
    if args.json:
        print(json.dumps({"servers": rows, "last_cycle": last}, default=_json_default, indent=2))
        return EXIT_OK
    counts = {s: sum(1 for r in rows if r.status == s) for s in ("ONLINE", "WARNING", "OFFLINE", "STALE")}
    table: list[tuple[Any, ...]]
    if args.verbose:
        table = [(r.server_name, f"{r.host}:{r.port}", r.status, _fmt_time(r.last_heartbeat_at),
                  _fmt_age(r.heartbeat_age_s), r.reason) for r in rows]
        print(_table(table, ("SERVER", "ADDRESS", "STATUS", "LAST HEARTBEAT", "AGE", "REASON")))
    else:
        table = [(r.server_name, r.status, _fmt_age(r.heartbeat_age_s), r.reason) for r in rows]
        print(_table(table, ("SERVER", "STATUS", "AGE", "REASON")))
    print(f"\n{len(rows)} servers: {counts['ONLINE']} ONLINE, {counts['WARNING']} WARNING, "
          f"{counts['OFFLINE']} OFFLINE" + (f", {counts['STALE']} STALE" if counts["STALE"] else ""))
    if last:
        print(f"last cycle: {last.cycle_id} finished {_fmt_time(last.finished_at)}")
    else:
        print("no cycle has finished yet: is the ssh_heartbeat DAG unpaused? (or run `heartbeat probe`)")
    return EXIT_OK


def cmd_servers_add(args: argparse.Namespace) -> int:
    from heartbeat import store
    from heartbeat.inventory import InventoryError, validate_server

    row = {"name": args.name, "host": args.host, "port": args.port, "username": args.username,
           "conn_id": args.conn_id, "enabled": not args.disabled, "host_key": args.host_key, "via": args.via,
           "site": args.site}
    try:
        spec = validate_server({k: v for k, v in row.items() if v is not None}, sites=_settings().site_list)
    except InventoryError as exc:
        raise CommandError(f"server {args.name!r} not added: {exc}")
    import psycopg

    with _connect(args) as conn:
        try:
            server_id = store.add_server(conn, spec)
        except psycopg.errors.UniqueViolation:
            raise CommandError(f"a server named {spec.name!r} already exists (remove it first, or use import)")
        except InventoryError as exc:
            raise CommandError(f"server {args.name!r} not added: {exc}")
    via = f" via {spec.via}" if spec.via else ""
    print(f"added {spec.name} ({spec.host}:{spec.port}){via} as server {server_id} in site {spec.site}")
    return EXIT_OK


def cmd_servers_list(args: argparse.Namespace) -> int:
    from heartbeat import store
    from heartbeat.ssh.hostkeys import fingerprint

    with _connect(args) as conn:
        rows = store.list_servers(conn)
    if args.json:
        print(json.dumps(rows, default=_json_default, indent=2))
        return EXIT_OK
    table = [(r.name, r.host, r.port, r.site, r.username or "(connection)", r.conn_id,
              "yes" if r.enabled else "no", fingerprint(r.host_key) if r.host_key else "not pinned", r.via or "-")
             for r in rows]
    print(_table(table, ("NAME", "HOST", "PORT", "SITE", "USERNAME", "CONNECTION", "ENABLED", "HOST KEY", "VIA")))
    print(f"\n{len(rows)} servers")
    return EXIT_OK


def cmd_servers_remove(args: argparse.Namespace) -> int:
    from heartbeat import store
    from heartbeat.inventory import InventoryError

    with _connect(args) as conn:
        try:
            removed = store.remove_server(conn, args.name)
        except InventoryError as exc:
            raise CommandError(f"{args.name} not removed: {exc}")
    if not removed:
        raise CommandError(f"no server named {args.name!r}")
    print(f"removed {args.name} and its history")
    return EXIT_OK


def cmd_servers_enable(args: argparse.Namespace, enabled: bool) -> int:
    from heartbeat import store
    from heartbeat.inventory import InventoryError

    with _connect(args) as conn:
        try:
            found = store.set_server_enabled(conn, args.name, enabled)
        except InventoryError as exc:
            raise CommandError(f"{args.name} not {'enabled' if enabled else 'disabled'}: {exc}")
    if not found:
        raise CommandError(f"no server named {args.name!r}")
    print(f"{args.name} {'enabled' if enabled else 'disabled'}")
    return EXIT_OK


def cmd_servers_import(args: argparse.Namespace) -> int:
    from heartbeat import store
    from heartbeat.inventory import InventoryError, read_import_file, validate_import

    path = Path(args.file)
    file_format = (args.format or path.suffix.lstrip(".")).lower()
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text")
    try:
        specs = validate_import(read_import_file(content, file_format), sites=_settings().site_list)
    except InventoryError as exc:
        lines = "\n".join(f"  {p}" for p in exc.problems)
        raise CommandError(f"{path}: nothing imported, fix these rows first:\n{lines}")
    except Exception as exc:  # a CSV or YAML syntax error
        raise CommandError(f"{path}: nothing imported, the file cannot be read as {file_format}: {exc}")
    with _connect(args) as conn:
        try:
            inserted, updated = store.upsert_servers(conn, specs)
        except InventoryError as exc:
            lines = "\n".join(f"  {p}" for p in exc.problems)
            raise CommandError(f"{path}: nothing imported, fix these bastion paths first:\n{lines}")
    print(f"imported {len(specs)} servers from {path}: {inserted} added, {updated} updated")
    return EXIT_OK


def cmd_servers_set_site(args: argparse.Namespace) -> int:
    from heartbeat import store
    from heartbeat.inventory import InventoryError, validate_server

    try:
        validate_server({"name": args.name, "host": "localhost", "site": args.site}, sites=_settings().site_list)
    except InventoryError as exc:
        raise CommandError(f"{args.name} not moved: {exc}")
    with _connect(args) as conn:
        found = store.set_server_site(conn, args.name, args.site)
    if not found:
        raise CommandError(f"no server named {args.name!r}")
    print(f"{args.name} moved to site {args.site}: probed from there from the next cycle on")
    return EXIT_OK


def cmd_servers_accept_key(args: argparse.Namespace) -> int:
    from heartbeat import store
    from heartbeat.ssh.hostkeys import fingerprint

    with _connect(args) as conn:
        keys = store.host_keys(conn, args.name)
        if keys is None:
            raise CommandError(f"no server named {args.name!r}")
        if not keys.presented:
            raise CommandError(
                f"{args.name} has not presented a host key yet: run `heartbeat probe --server {args.name}`"
            )
        if keys.presented == keys.pinned:
            print(f"{args.name}: the presented key {fingerprint(keys.presented)} is already pinned")
            return EXIT_OK
        store.pin_host_key(conn, keys.server_id, keys.presented)
    old = fingerprint(keys.pinned) if keys.pinned else "none"
    print(f"{args.name}: pinned host key {fingerprint(keys.presented)} (was {old}); host_key_changed alerts resolved")
    return EXIT_OK


def _input_store(table: str) -> tuple[Callable[..., int | None], Callable[..., bool], Callable[..., list[Any]]]:
    """The store's (raise, resolve, list) of alerts or of anomalies."""
    from heartbeat import store

    if table == "anomaly":
        return store.raise_anomaly, store.resolve_anomaly, store.list_anomalies
    return store.raise_alert, store.resolve_alert, store.list_alerts


def cmd_input_raise(args: argparse.Namespace, table: str) -> int:
    raise_input, _, _ = _input_store(table)
    with _connect(args) as conn:
        input_id = raise_input(conn, args.name, args.kind, args.message, args.source)
    if input_id is None:
        raise CommandError(f"no server named {args.name!r}")
    print(f"{table} {input_id} raised on {args.name}: {args.kind}")
    return EXIT_OK


def cmd_input_resolve(args: argparse.Namespace, table: str) -> int:
    _, resolve_input, _ = _input_store(table)
    with _connect(args) as conn:
        resolved = resolve_input(conn, args.id)
    if not resolved:
        raise CommandError(f"no active {table} with id {args.id}")
    print(f"{table} {args.id} resolved")
    return EXIT_OK


def cmd_input_list(args: argparse.Namespace, table: str) -> int:
    _, _, list_inputs = _input_store(table)
    with _connect(args) as conn:
        rows = list_inputs(conn, include_resolved=args.all)
    return _print_listing(args, rows, ("ID", "SERVER", "KIND", "RAISED", "RESOLVED", "MESSAGE"), lambda r: (
        r.id, r.name, r.kind, _fmt_time(r.raised_at), _fmt_time(r.resolved_at) if r.resolved_at else "active",
        r.message))


def cmd_keys_authorized_line(args: argparse.Namespace) -> int:
    from heartbeat.connections import ssh_public_key_line

    if args.bastion:
        return _bastion_authorized_line(args)
    public = ssh_public_key_line(args.conn_id or "heartbeat_ssh")
    options = f'restrict,command="{args.command}"'
    if args.from_hosts:
        options += f',from="{args.from_hosts}"'
    print(f"{options} {public} heartbeat-monitor")
    return EXIT_OK


def _bastion_authorized_line(args: argparse.Namespace) -> int:
    """The line for a bastion's authorized_keys: the key may open channels to the servers behind
    it and nothing else (no session does anything: the forced command fails)."""
    from heartbeat import store
    from heartbeat.connections import ssh_public_key_line
    from heartbeat.inventory import bastion_options

    with _connect(args) as conn:
        rows = store.list_servers(conn)
    bastion = next((r for r in rows if r.name == args.bastion), None)
    if bastion is None:
        raise CommandError(f"no server named {args.bastion!r} (see `heartbeat servers list`)")
    behind = [(r.host, r.port) for r in rows if r.via == bastion.name]
    if not behind:
        raise CommandError(f"no server is reached via {bastion.name}: add them first "
                           f"(`heartbeat servers add NAME HOST --via {bastion.name}`)")
    public = ssh_public_key_line(args.conn_id or bastion.conn_id)
    print(f"{bastion_options(behind, args.from_hosts)} {public} heartbeat-monitor")
    return EXIT_OK


def cmd_maintenance_add(args: argparse.Namespace) -> int:
    from heartbeat import cycle, maintenance

    now = cycle.utc_now()
    try:
        ends_at = maintenance.parse_time(args.until, now)
        starts_at = maintenance.parse_time(args.start, now) if args.start else None
        with _connect(args) as conn:
            window = maintenance.add_window(conn, args.name, ends_at, now, starts_at=starts_at, reason=args.reason,
                                         created_by=args.created_by)
    except maintenance.MaintenanceError as exc:
        raise CommandError(str(exc))
    print(f"maintenance {window.id} on {args.name} from {_fmt_time(window.starts_at)} until "
          f"{_fmt_time(window.ends_at)}: no notification for it, and the time is left out of uptime")
    return EXIT_OK


def cmd_maintenance_list(args: argparse.Namespace) -> int:
    from heartbeat import cycle, maintenance

    with _connect(args) as conn:
        rows = maintenance.list_windows(conn, cycle.utc_now(), include_past=args.all)
    return _print_listing(args, rows, ("ID", "SERVER", "FROM", "UNTIL", "OPEN", "REASON"), lambda r: (
        r.id, r.server_name, _fmt_time(r.starts_at), _fmt_time(r.ends_at), "now" if r.active else "", r.reason))


def cmd_maintenance_end(args: argparse.Namespace) -> int:
    from heartbeat import cycle, maintenance

    try:
        with _connect(args) as conn:
            ended = maintenance.end_windows(conn, args.name, cycle.utc_now())
    except maintenance.MaintenanceError as exc:
        raise CommandError(str(exc))
    if not ended:
        raise CommandError(f"{args.name} has no open maintenance window (see `heartbeat maintenance list`)")
    print(f"ended {ended} maintenance window{'s' if ended > 1 else ''} of {args.name}: notifications resume")
    return EXIT_OK


def cmd_notify(args: argparse.Namespace) -> int:
    from heartbeat import cycle, notify, store

    settings, now = _settings(), cycle.utc_now()
    notify_settings = settings.notify
    channels = notify.configured_channels(notify_settings)
    if args.log or args.dry_run:
        with _connect(args) as conn:
            if args.log:
                rows = store.list_notifications(conn, limit=50)
                print(_table([(r.id, _fmt_time(r.sent_at or r.first_tried_at), r.channel, r.kind,
                               r.server_name or "-", r.state, r.attempts, r.last_error or "")
                              for r in rows], ("ID", "WHEN", "CHANNEL", "KIND", "SERVER", "STATE", "TRIES", "ERROR")))
                return EXIT_OK
            for channel in channels:
                for item in notify.due_notifications(conn, channel.name, notify_settings, now,
                                                     stale_after_s=settings.stale_after_s):
                    print(f"{channel.name}: would send {item.kind}: {item.text}")
    if not channels:
        n = notify_settings
        raise CommandError(f"no notification channel: define the Airflow connection {n.email_conn_id!r} (e-mail), "
                           f"{n.webhook_conn_id!r} (webhook), {n.slack_conn_id!r} (Slack), {n.pagerduty_conn_id!r} "
                           f"(PagerDuty), {n.opsgenie_conn_id!r} (Opsgenie) or {n.apprise_conn_id!r} (Apprise)")
    if args.dry_run:
        return EXIT_OK
    counts = notify.run(settings, now, channels=channels, notify_settings=notify_settings)
    print(f"{counts['sent']} sent, {counts['failed']} failed on {len(channels)} channels "
          f"({', '.join(c.name for c in channels)})")
    return EXIT_ERROR if counts["failed"] else EXIT_OK


def cmd_ack(args: argparse.Namespace) -> int:
    import getpass

    from heartbeat import cycle, maintenance, store

    now = cycle.utc_now()
    try:
        expires_at = maintenance.parse_time(args.until, now) if args.until else None
    except maintenance.MaintenanceError as exc:
        raise CommandError(str(exc).replace("maintenance", "acknowledgement"))
    target = {"server_name": args.target} if args.what == "server" else {"incident_id": _incident_id(args.target)}
    with _connect(args) as conn:
        ack_id = store.acknowledge(conn, by=args.by or getpass.getuser(), reason=args.reason, as_of=now,
                                   expires_at=expires_at, **target)  # type: ignore[arg-type]
    until = f" until {_fmt_time(expires_at)}" if expires_at else " until it recovers"
    print(f"acknowledgement {ack_id} of {args.what} {args.target}{until}: no reminders or escalations meanwhile")
    return EXIT_OK


def _incident_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CommandError(f"{text!r} is not an incident number (see `heartbeat incidents list`)") from None


def cmd_ack_list(args: argparse.Namespace) -> int:
    from heartbeat import cycle, store

    with _connect(args) as conn:
        rows = store.list_acknowledgements(conn, cycle.utc_now(), include_ended=args.all)
    return _print_listing(args, rows, ("ID", "OF", "BY", "SINCE", "UNTIL", "ENDED", "REASON"), lambda r: (
        r.id, r.server_name or f"incident {r.incident_id}", r.acknowledged_by, _fmt_time(r.created_at),
        _fmt_time(r.expires_at) if r.expires_at else "recovery", r.end_reason or ("" if r.active else "expired"),
        r.reason))


def cmd_incidents_list(args: argparse.Namespace) -> int:
    from heartbeat import cycle, incidents, store

    with _connect(args) as conn:
        rows = store.list_incidents(conn, cycle.utc_now(), include_closed=args.all)
    return _print_listing(args, rows, ("ID", "OPENED", "STATE", "ACKNOWLEDGED BY", "WHAT"), lambda r: (
        r.id, _fmt_time(r.opened_at),
        f"closed {_fmt_time(r.closed_at)}" if r.closed_at else f"open, {r.still_failing} failing",
        r.acknowledged_by or "",
        incidents.describe(r.dimension, r.group_key, r.error_class, r.members, r.population, r.first_failed_at)[0]))


def cmd_escalate(args: argparse.Namespace) -> int:
    import getpass

    from heartbeat import cycle, notify

    settings, now = _settings(), cycle.utc_now()
    target = {"server_name": args.target} if args.what == "server" else {"incident_id": _incident_id(args.target)}
    channels = notify.configured_channels(settings.notify)
    try:
        with _connect(args) as conn:
            counts = notify.escalate_now(conn, channels, settings.notify, now, by=args.by or getpass.getuser(),
                                         **target)  # type: ignore[arg-type]
    except notify.EscalationError as exc:
        raise CommandError(str(exc))
    print(f"escalated {args.what} {args.target}: {counts['sent']} sent, {counts['skipped']} already escalated, "
          f"{counts['failed']} failed on {counts['channels']} escalation channels")
    return EXIT_ERROR if counts["failed"] else EXIT_OK


def cmd_servers_parent(args: argparse.Namespace) -> int:
    from heartbeat import store

    if (args.parent is None) != (args.kind is None) and not args.none:
        raise CommandError("give the parent and its --kind (switch, router, hypervisor, bastion, host), or --none")
    with _connect(args) as conn:
        store.set_parent(conn, args.name, None if args.none else args.parent, args.kind)
    print(f"{args.name} has no parent" if args.none else f"{args.name} depends on {args.kind} {args.parent}")
    return EXIT_OK


# --- parser -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heartbeat", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("migrate", help="create or upgrade the heartbeat database schema").set_defaults(func=cmd_migrate)

    probe = sub.add_parser("probe", help="run one cycle now, outside the scheduler")
    probe.add_argument("--verbose", "-v", action="store_true", help="print every attempt and its result")
    probe.add_argument("--server", action="append", metavar="NAME", help="probe only this server (repeatable)")
    probe.add_argument("--site", help="probe only this site's servers (run it inside that site's network)")
    probe.set_defaults(func=cmd_probe)

    status = sub.add_parser("status", help="every server's status, last heartbeat and age")
    status.add_argument("--verbose", "-v", action="store_true", help="also show address and last heartbeat time")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    servers = sub.add_parser("servers", help="the inventory").add_subparsers(dest="action", required=True,
                                                                              metavar="ACTION")
    add = servers.add_parser("add", help="add one server")
    add.add_argument("name")
    add.add_argument("host", help="DNS name, IPv4 or IPv6 address")
    add.add_argument("--port", type=int, default=22)
    add.add_argument("--username", help="login name (default: the connection's login)")
    add.add_argument("--conn-id", default="heartbeat_ssh", help="Airflow connection holding the key")
    add.add_argument("--host-key", help="pin this host public key ('ssh-ed25519 AAAA...')")
    add.add_argument("--disabled", action="store_true", help="add it without monitoring it yet")
    add.add_argument("--via", metavar="BASTION", help="reach it through this inventory server (a jump host)")
    add.add_argument("--site", help="the network it is probed from, one of HEARTBEAT_SITES (default: default)")
    add.set_defaults(func=cmd_servers_add)
    lst = servers.add_parser("list", help="list the inventory")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_servers_list)
    rm = servers.add_parser("remove", help="remove a server and its history")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_servers_remove)
    for verb, enabled in (("enable", True), ("disable", False)):
        p = servers.add_parser(verb, help=f"{verb} monitoring of a server")
        p.add_argument("name")
        p.set_defaults(func=lambda a, e=enabled: cmd_servers_enable(a, e))
    imp = servers.add_parser("import", help="add or update servers from a CSV or YAML file (all or nothing)")
    imp.add_argument("file")
    imp.add_argument("--format", choices=("csv", "yaml", "yml"), help="default: from the file name")
    imp.set_defaults(func=cmd_servers_import)
    mv = servers.add_parser("set-site", help="move a server to another site (probed from there next cycle)")
    mv.add_argument("name")
    mv.add_argument("site")
    mv.set_defaults(func=cmd_servers_set_site)
    acc = servers.add_parser("accept-key", help="accept the host key a server now presents (after a change)")
    acc.add_argument("name")
    acc.set_defaults(func=cmd_servers_accept_key)

    keys = sub.add_parser("keys", help="the monitor's SSH key").add_subparsers(dest="action", required=True,
                                                                               metavar="ACTION")
    line = keys.add_parser("authorized-line",
                           help="the authorized_keys line that lets the key log in and do nothing else")
    line.add_argument("--conn-id", help="the Airflow connection holding the key (default heartbeat_ssh; "
                      "with --bastion, the bastion's own)")
    line.add_argument("--command", default="/bin/true", help="the only command the key may run")
    line.add_argument("--bastion", metavar="NAME", help="the line for this bastion: forwarding to the servers "
                      "reached via it and nothing else")
    line.add_argument("--from", dest="from_hosts", metavar="PATTERNS",
                      help="also restrict logins to these source addresses, e.g. 10.0.0.5")
    line.set_defaults(func=cmd_keys_authorized_line)

    for table, plural in (("alert", "alerts"), ("anomaly", "anomalies")):
        group = sub.add_parser(table, help=f"{plural}: inputs that turn a fresh heartbeat into WARNING")
        actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
        r = actions.add_parser("raise", help=f"raise an {table} on a server")
        r.add_argument("name", help="server name")
        r.add_argument("kind", help="what kind, e.g. disk_full")
        r.add_argument("--message", "-m", default="")
        r.add_argument("--source", default="cli")
        r.set_defaults(func=lambda a, t=table: cmd_input_raise(a, t))
        z = actions.add_parser("resolve", help=f"resolve an {table} by id")
        z.add_argument("id", type=int)
        z.set_defaults(func=lambda a, t=table: cmd_input_resolve(a, t))
        li = actions.add_parser("list", help=f"active {plural}")
        li.add_argument("--all", action="store_true", help="include resolved ones")
        li.add_argument("--json", action="store_true")
        li.set_defaults(func=lambda a, t=table: cmd_input_list(a, t))
    maint = sub.add_parser("maintenance", help="maintenance windows: no notifications, left out of uptime")
    mactions = maint.add_subparsers(dest="action", required=True, metavar="ACTION")
    madd = mactions.add_parser("add", help="put a server in maintenance from now (or --from) until a time")
    madd.add_argument("name", help="server name")
    madd.add_argument("--until", required=True, help="+2h, +30m, +1d, +1h30m, or an ISO time (local unless zoned)")
    madd.add_argument("--from", dest="start", help="start later: same forms as --until (default: now)")
    madd.add_argument("--reason", "-m", default="", help="what the work is")
    madd.add_argument("--created-by", default="cli", help="who or what opened the window")
    madd.set_defaults(func=cmd_maintenance_add)
    mlist = mactions.add_parser("list", help="open and future windows")
    mlist.add_argument("--all", action="store_true", help="include past ones")
    mlist.add_argument("--json", action="store_true")
    mlist.set_defaults(func=cmd_maintenance_list)
    mend = mactions.add_parser("end", help="end a server's open maintenance windows now")
    mend.add_argument("name", help="server name")
    mend.set_defaults(func=cmd_maintenance_end)

    ack = sub.add_parser("ack", help="acknowledge a failing server or an incident: no reminders or escalations")
    aactions = ack.add_subparsers(dest="what", required=True, metavar="WHAT")
    for what, help_text in (("server", "a server that is OFFLINE"), ("incident", "an open incident (its number)")):
        a = aactions.add_parser(what, help=help_text)
        a.add_argument("target", metavar="NAME" if what == "server" else "ID")
        a.add_argument("--reason", "-m", required=True, help="why, e.g. what is being done about it")
        a.add_argument("--by", help="who acknowledges (default: the login name)")
        a.add_argument("--until", help="expiry: +2h, +30m, +1d or an ISO time (default: until it recovers)")
        a.set_defaults(func=cmd_ack)
    alist = aactions.add_parser("list", help="active acknowledgements")
    alist.add_argument("--all", action="store_true", help="include ended and expired ones")
    alist.add_argument("--json", action="store_true")
    alist.set_defaults(func=cmd_ack_list)
    esc = sub.add_parser("escalate", help="escalate a told, still failing server or incident now")
    eactions = esc.add_subparsers(dest="what", required=True, metavar="WHAT")
    for what in ("server", "incident"):
        e = eactions.add_parser(what, help=f"escalate a {what} to HEARTBEAT_NOTIFY_ESCALATION_CHANNELS")
        e.add_argument("target", metavar="NAME" if what == "server" else "ID")
        e.add_argument("--by", help="who escalates (default: the login name)")
        e.set_defaults(func=cmd_escalate)
    inc = sub.add_parser("incidents", help="shared-cause incidents").add_subparsers(dest="action", required=True,
                                                                                      metavar="ACTION")
    ilist = inc.add_parser("list", help="open incidents")
    ilist.add_argument("--all", action="store_true", help="include closed ones")
    ilist.add_argument("--json", action="store_true")
    ilist.set_defaults(func=cmd_incidents_list)
    par = servers.add_parser("parent", help="declare what a server depends on (a switch, a hypervisor, a bastion)")
    par.add_argument("name", help="server name")
    par.add_argument("parent", nargs="?", help="the parent server's name")
    par.add_argument("--kind", choices=("switch", "router", "hypervisor", "bastion", "host"))
    par.add_argument("--none", action="store_true", help="remove the parent")
    par.set_defaults(func=cmd_servers_parent)

    notify = sub.add_parser("notify", help="send due notifications now (also checks that the monitor runs)")
    notify.add_argument("--dry-run", action="store_true", help="print what is due without sending")
    notify.add_argument("--log", action="store_true", help="the last 50 notifications sent or tried")
    notify.set_defaults(func=cmd_notify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Airflow's SDK is large; let Python cache its bytecode even where PYTHONDONTWRITEBYTECODE is set.
    sys.dont_write_bytecode = False
    args = build_parser().parse_args(argv)
    import logging

    # Importing Airflow sets up its own logging (everything from INFO, to stdout), which would repeat
    # what the command prints; the command's set-up comes after it and replaces it: warnings only.
    import airflow  # noqa: F401
    import psycopg

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)

    from heartbeat.config import SettingsError
    from heartbeat.connections import ConnectionNotFound
    from heartbeat.store import SchemaError

    try:
        return int(args.func(args))
    except (CommandError, SchemaError, SettingsError, ConnectionNotFound, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except psycopg.OperationalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except psycopg.Error as exc:
        detail = exc.diag.message_primary if exc.diag and exc.diag.message_primary else str(exc)
        print(f"error: the heartbeat database refused the change: {detail}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
