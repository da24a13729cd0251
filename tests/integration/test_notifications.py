"""Notifications against a real PostgreSQL, a webhook receiver and an SMTP server on 127.0.0.1:
debounce, exactly once, maintenance windows, host key changes, a stalled monitor, retries; and the
`heartbeat maintenance` commands. Time is passed in, never waited for."""

from __future__ import annotations

import email
import json
import socketserver
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from support import add_servers, query

from heartbeat import cli, maintenance, notify, store
from heartbeat.config import Settings, SettingsError, settings_from_env
from heartbeat.models import ProbeResult

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)
SETTINGS = Settings()
QUICK = notify.NotifySettings(notify_after_s=60, stall_after_s=300, max_attempts=3, timeout_s=5)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Webhook:
    """An HTTP server on 127.0.0.1 that records every POST; answers with ``statuses`` in turn, then 200."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.received: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.statuses = list(statuses)
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append(json.loads(body))
                hook.headers.append(dict(self.headers))
                hook.paths.append(self.path)
                code = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def connection_json(self) -> str:
        return json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": self.port, "schema": "http",
                           "extra": {"endpoint": "/hooks/heartbeat", "headers": {"X-Token": "s3cret"}}})


class SmtpSink(socketserver.ThreadingTCPServer):
    """A minimal SMTP server on 127.0.0.1 that keeps every message (no TLS, no auth)."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        self.messages: list[dict] = []
        super().__init__(("127.0.0.1", 0), SmtpSession)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class SmtpSession(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        sink: SmtpSink = self.server  # type: ignore[assignment]
        envelope: dict = {"to": []}
        self.reply("220 sink ESMTP")
        for _ in range(1000):
            line = self.rfile.readline()
            if not line:
                return
            command = line.decode().strip()
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-sink")
                self.reply("250 8BITMIME")
            elif verb in ("HELO", "RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "MAIL":
                envelope["from"] = command.split(":", 1)[1].strip()
                self.reply("250 OK")
            elif verb == "RCPT":
                envelope["to"].append(command.split(":", 1)[1].strip())
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with .")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk
                sink.messages.append({**envelope, "message": email.message_from_bytes(data)})
                envelope = {"to": []}
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch, heartbeat_env) -> Iterator[Webhook]:
    with Webhook() as hook:
        monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_WEBHOOK", hook.connection_json())
        yield hook


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch, heartbeat_env) -> Iterator[SmtpSink]:
    sink = SmtpSink()
    thread = threading.Thread(target=sink.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": sink.port,
        "extra": {"from_email": "heartbeat@monitor.test", "to": "ops@example.test, oncall@example.test",
                  "disable_ssl": True, "disable_tls": True, "timeout": 5, "retry_limit": 0}}))
    yield sink
    sink.shutdown()
    sink.server_close()
    thread.join(timeout=5)


def observe(dsn: str, server_id: int, at: datetime, ok: bool) -> None:
    """One cycle at ``at``: record a login attempt and materialise the status."""
    result = ProbeResult(server_id=server_id, server_name="x", ok=ok, attempted_at=at,
                         error_class=None if ok else "refused", message="" if ok else "connection refused",
                         total_ms=8.0)
    with store.connect(dsn) as conn:
        store.record_results(conn, f"cycle-{at.timestamp()}", [result])
        store.materialise_status(conn, at, SETTINGS.offline_after_s)


def send(dsn: str, at: datetime, settings: notify.NotifySettings = QUICK, current_cycle_id: str | None = None
         ) -> dict[str, int]:
    return notify.run(SETTINGS, at, current_cycle_id=current_cycle_id, dsn=dsn, notify_settings=settings)


def test_should_post_a_status_change_to_the_webhook_exactly_once_even_when_run_twice(heartbeat_dsn, webhook):
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1", "port": 2222}])["web-01"]
    observe(heartbeat_dsn, web, s(0), ok=True)  # first status ONLINE: nothing to tell
    observe(heartbeat_dsn, web, s(61), ok=False)  # OFFLINE from 61 s

    assert send(heartbeat_dsn, s(121)) == {"channels": 1, "sent": 1, "failed": 0, "skipped": 0}
    assert send(heartbeat_dsn, s(121))["sent"] == 0  # the task retried: nothing new
    assert send(heartbeat_dsn, s(600))["sent"] == 0  # still OFFLINE: no repeat

    [offline] = webhook.received
    assert offline["kind"] == "offline" and offline["server"] == "web-01"
    assert offline["title"] == "web-01 is OFFLINE"
    assert offline["text"] == (f"web-01 (10.0.0.1:2222) is OFFLINE since {s(61).isoformat()}: "
                               "no heartbeat for over 60 s; last attempt: connection refused")
    assert (offline["from_status"], offline["to_status"], offline["last_error_class"]) == ("ONLINE", "OFFLINE",
                                                                                            "refused")
    [event_id] = [r["id"] for r in query(heartbeat_dsn, "SELECT id FROM status_events WHERE to_status = 'OFFLINE'")]
    assert offline["id"] == f"status_event:{event_id}"
    assert webhook.paths == ["/hooks/heartbeat"] and webhook.headers[0]["X-Token"] == "s3cret"

    observe(heartbeat_dsn, web, s(700), ok=True)
    assert send(heartbeat_dsn, s(730))["sent"] == 0  # recovered 30 s ago: not yet
    assert send(heartbeat_dsn, s(760))["sent"] == 1
    assert send(heartbeat_dsn, s(760))["sent"] == 0
    assert [m["kind"] for m in webhook.received] == ["offline", "recovered"]
    assert webhook.received[1]["title"] == "web-01 recovered: ONLINE"
    ledger = query(heartbeat_dsn, "SELECT kind, channel, state, attempts FROM notification_log ORDER BY id")
    assert ledger == [{"kind": "offline", "channel": "webhook", "state": "sent", "attempts": 1},
                      {"kind": "recovered", "channel": "webhook", "state": "sent", "attempts": 1}]


def test_should_not_notify_a_change_undone_within_the_debounce(heartbeat_dsn, webhook):
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    observe(heartbeat_dsn, web, s(0), ok=True)
    observe(heartbeat_dsn, web, s(61), ok=False)
    assert send(heartbeat_dsn, s(91))["sent"] == 0  # OFFLINE for 30 s only
    observe(heartbeat_dsn, web, s(100), ok=True)  # back before the 60 s debounce
    assert send(heartbeat_dsn, s(400))["sent"] == 0  # no OFFLINE was sent, so no "recovered" either
    assert webhook.received == []


def test_should_send_nothing_for_a_server_in_maintenance(heartbeat_dsn, webhook):
    ids = add_servers(heartbeat_dsn, [{"name": "db-01", "host": "10.0.0.2"}, {"name": "db-02", "host": "10.0.0.3"}])
    with store.connect(heartbeat_dsn) as conn:
        for name in ids:
            maintenance.add_window(conn, name, s(3600), now=s(0), reason="kernel upgrade")
    for server_id in ids.values():
        observe(heartbeat_dsn, server_id, s(0), ok=True)
        observe(heartbeat_dsn, server_id, s(61), ok=False)  # the reboot
    observe(heartbeat_dsn, ids["db-01"], s(300), ok=True)  # db-01 back inside the window
    for at in (121, 400, 1800, 3599):
        assert send(heartbeat_dsn, s(at))["sent"] == 0
    assert webhook.received == []
    # the window is over and db-02 is still down: that is news
    assert send(heartbeat_dsn, s(3600))["sent"] == 1
    assert [(m["server"], m["kind"]) for m in webhook.received] == [("db-02", "offline")]


def test_should_send_again_after_maintenance_is_ended_by_hand(heartbeat_dsn, webhook):
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    with store.connect(heartbeat_dsn) as conn:
        maintenance.add_window(conn, "web-01", s(7200), now=s(0))
        observe(heartbeat_dsn, web, s(0), ok=True)
        observe(heartbeat_dsn, web, s(61), ok=False)
        assert send(heartbeat_dsn, s(200))["sent"] == 0
        assert maintenance.end_windows(conn, "web-01", s(300)) == 1
    assert send(heartbeat_dsn, s(301))["sent"] == 1


def test_should_notify_a_changed_host_key_once(heartbeat_dsn, webhook):
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    query(heartbeat_dsn, "INSERT INTO alerts (server_id, kind, message, source, raised_at) VALUES "
                         "(%s, 'host_key_changed', 'host key changed: pinned SHA256:old, presented SHA256:new', "
                         "'heartbeat', %s) RETURNING id", (web, s(10)))
    assert send(heartbeat_dsn, s(5))["sent"] == 0  # not raised yet at that time
    assert send(heartbeat_dsn, s(11))["sent"] == 1
    assert send(heartbeat_dsn, s(20))["sent"] == 0
    [message] = webhook.received
    assert message["kind"] == "host_key_changed" and message["title"] == "web-01: host key changed"
    assert "SHA256:new" in message["text"]


def test_should_call_the_monitor_stalled_once_servers_read_stale_and_the_debounce_passed():
    assert notify.NotifySettings(notify_after_s=60).stall_threshold_s(stale_after_s=60) == 120
    assert notify.NotifySettings(stall_after_s=900).stall_threshold_s(stale_after_s=60) == 900
    assert settings_from_env({"HEARTBEAT_NOTIFY_AFTER_S": "30", "HEARTBEAT_NOTIFY_STALL_AFTER_S": "600"}
                             ).notify == notify.NotifySettings(notify_after_s=30, stall_after_s=600)
    with pytest.raises(SettingsError, match="HEARTBEAT_NOTIFY_AFTER_S='soon'"):
        settings_from_env({"HEARTBEAT_NOTIFY_AFTER_S": "soon"})


def test_should_notify_a_stalled_monitor_once_per_stall(heartbeat_dsn, webhook):
    def finished_cycle(cycle_id: str, started: float, finished: float | None) -> None:
        query(heartbeat_dsn, "INSERT INTO cycles (cycle_id, started_at, finished_at) VALUES (%s, %s, %s) "
                             "RETURNING cycle_id", (cycle_id, s(started), None if finished is None else s(finished)))

    finished_cycle("run-1", 0, 4)
    finished_cycle("run-2", 30, 34)
    assert send(heartbeat_dsn, s(300))["sent"] == 0  # 266 s without a cycle: within 300 s
    # `heartbeat notify` from cron: nothing finished for 330 s
    assert send(heartbeat_dsn, s(364))["sent"] == 1
    assert send(heartbeat_dsn, s(900))["sent"] == 0  # the same stall
    [stalled] = webhook.received
    assert stalled["kind"] == "monitor_stalled" and stalled["id"] == "monitor_stalled:run-2"
    assert "no monitoring cycle finished for 330 s" in stalled["text"]
    assert "DAG paused" in stalled["text"]

    # the scheduler is back: its first cycle sees the same stall (already told) and a new one is told once
    finished_cycle("run-3", 1000, None)
    assert send(heartbeat_dsn, s(1004), current_cycle_id="run-3")["sent"] == 0
    query(heartbeat_dsn, "UPDATE cycles SET finished_at = %s WHERE cycle_id = 'run-3' RETURNING 1", (s(1004),))
    finished_cycle("run-4", 2000, None)
    assert send(heartbeat_dsn, s(2004), current_cycle_id="run-4")["sent"] == 1
    assert webhook.received[-1]["id"] == "monitor_stalled:run-3"
    assert "monitoring has resumed" in webhook.received[-1]["text"]


def test_should_retry_a_failing_webhook_and_give_up_after_the_last_attempt(heartbeat_dsn, monkeypatch,
                                                                           heartbeat_env):
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    observe(heartbeat_dsn, web, s(0), ok=True)
    observe(heartbeat_dsn, web, s(61), ok=False)
    with Webhook(statuses=(500, 503)) as flaky:
        monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_WEBHOOK", flaky.connection_json())
        assert send(heartbeat_dsn, s(121))["failed"] == 1
        assert send(heartbeat_dsn, s(151))["failed"] == 1
        assert send(heartbeat_dsn, s(181))["sent"] == 1  # third attempt answered 200
        assert send(heartbeat_dsn, s(211)) == {"channels": 1, "sent": 0, "failed": 0, "skipped": 0}
        assert len(flaky.received) == 3
    [row] = query(heartbeat_dsn, "SELECT state, attempts, last_error FROM notification_log")
    assert row == {"state": "sent", "attempts": 3, "last_error": None}

    observe(heartbeat_dsn, web, s(300), ok=True)
    with Webhook(statuses=(500, 500, 500, 500)) as broken:
        monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_WEBHOOK", broken.connection_json())
        for at in (400, 430, 460, 490, 520):
            send(heartbeat_dsn, s(at))
        assert len(broken.received) == 3  # max_attempts, then given up
    failed = query(heartbeat_dsn, "SELECT state, attempts, last_error FROM notification_log WHERE kind = 'recovered'")
    assert failed == [{"state": "failed", "attempts": 3,
                       "last_error": "HTTPError: HTTP Error 500: Internal Server Error"}]


def test_should_claim_a_notification_once_when_two_runs_race(heartbeat_dsn: str):
    """Two runs at once (a retried task and `heartbeat notify`): the second waits for the first's
    transaction and then finds the notification sent."""
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    observe(heartbeat_dsn, web, s(0), ok=True)
    observe(heartbeat_dsn, web, s(61), ok=False)
    sent: list[str] = []
    release = threading.Event()

    class Slow:
        name = "webhook"

        def send(self, notification: notify.Notification) -> None:
            sent.append(notification.subject)
            assert release.wait(timeout=30)

    results: list[dict[str, int]] = []
    first = threading.Thread(target=lambda: results.append(
        notify.run(SETTINGS, s(121), dsn=heartbeat_dsn, channels=[Slow()], notify_settings=QUICK)))
    first.start()
    second_done: list[dict[str, int]] = []
    try:
        deadline = time.monotonic() + 30
        while not sent and time.monotonic() < deadline:  # the first run is inside its send
            time.sleep(0.02)
        assert sent, "the first run never started sending"
        second = threading.Thread(target=lambda: second_done.append(
            notify.run(SETTINGS, s(121), dsn=heartbeat_dsn, channels=[Slow()], notify_settings=QUICK)))
        second.start()
        while time.monotonic() < deadline:  # until the second run waits on the ledger row's lock
            waiting = query(heartbeat_dsn, "SELECT count(*) AS n FROM pg_stat_activity "
                                           "WHERE wait_event_type = 'Lock' AND datname = current_database()")
            if waiting[0]["n"]:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the second run never waited for the first")
    finally:
        release.set()
        first.join(timeout=30)
    second.join(timeout=30)
    assert sent == [sent[0]] and results[0]["sent"] == 1
    assert second_done == [{"channels": 1, "sent": 0, "failed": 0, "skipped": 1}]


def test_should_email_a_status_change_through_the_smtp_connection(heartbeat_dsn, smtp):
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    observe(heartbeat_dsn, web, s(0), ok=True)
    observe(heartbeat_dsn, web, s(61), ok=False)
    assert send(heartbeat_dsn, s(121)) == {"channels": 1, "sent": 1, "failed": 0, "skipped": 0}
    assert send(heartbeat_dsn, s(122))["sent"] == 0
    [mail] = smtp.messages
    assert mail["from"] == "<heartbeat@monitor.test>"
    assert sorted(mail["to"]) == ["<oncall@example.test>", "<ops@example.test>"]
    assert mail["message"]["Subject"] == "[heartbeat] web-01 is OFFLINE"
    assert mail["message"]["X-Heartbeat-Notification"].startswith("status_event:")
    body = next(p for p in mail["message"].walk() if p.get_content_type() == "text/html").get_payload(decode=True)
    assert b"no heartbeat for over 60 s; last attempt: connection refused" in body


def test_should_do_nothing_without_a_channel(heartbeat_dsn, heartbeat_env):
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    observe(heartbeat_dsn, web, s(0), ok=False)
    assert send(heartbeat_dsn, s(500)) == {"channels": 0, "sent": 0, "failed": 0, "skipped": 0}
    assert query(heartbeat_dsn, "SELECT count(*) AS n FROM notification_log")[0]["n"] == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("+2h", T0 + timedelta(hours=2)),
    ("+30m", T0 + timedelta(minutes=30)),
    ("+1h30m", T0 + timedelta(minutes=90)),
    ("+1d", T0 + timedelta(days=1)),
    ("+1.5h", T0 + timedelta(minutes=90)),
    ("2026-11-02T18:00:00+00:00", datetime(2026, 11, 2, 18, tzinfo=UTC)),
    ("2026-11-02T19:00:00+01:00", datetime(2026, 11, 2, 18, tzinfo=UTC)),
], ids=["hours", "minutes", "mixed", "days", "fraction", "iso-utc", "iso-offset"])
def test_should_read_maintenance_times_relative_or_iso(text, expected):
    assert maintenance.parse_time(text, T0) == expected


@pytest.mark.parametrize("text", ["2h", "+2x", "tomorrow", "+", ""], ids=["no-plus", "unit", "word", "plus", "empty"])
def test_should_refuse_unreadable_maintenance_times(text):
    with pytest.raises(maintenance.MaintenanceError, match="neither a duration"):
        maintenance.parse_time(text, T0)


def test_should_add_list_and_end_maintenance_from_the_command_line(heartbeat_dsn, heartbeat_env, capsys):
    add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = run("maintenance", "add", "web-01", "--until", "+2h", "--reason", "kernel upgrade")
    assert code == 0 and out.startswith("maintenance 1 on web-01 from ") and "left out of uptime" in out
    code, out, _ = run("maintenance", "list")
    assert code == 0 and "web-01" in out and "kernel upgrade" in out and "now" in out
    [window] = json.loads(run("maintenance", "list", "--json")[1])
    assert window["server_name"] == "web-01" and window["active"] is True
    assert query(heartbeat_dsn, "SELECT in_maintenance FROM dashboard_server_status")[0]["in_maintenance"]
    code, out, _ = run("maintenance", "end", "web-01")
    assert (code, out.strip()) == (0, "ended 1 maintenance window of web-01: notifications resume")
    assert not query(heartbeat_dsn, "SELECT in_maintenance FROM dashboard_server_status")[0]["in_maintenance"]
    assert run("maintenance", "list")[1].count("web-01") == 0
    assert run("maintenance", "list", "--all")[1].count("web-01") == 1

    code, _, err = run("maintenance", "end", "web-01")
    assert code == 1 and "web-01 has no open maintenance window" in err
    code, _, err = run("maintenance", "add", "nope", "--until", "+1h")
    assert code == 1 and "no server named 'nope'" in err
    code, _, err = run("maintenance", "add", "web-01", "--until", "soon")
    assert code == 1 and "neither a duration" in err
    code, _, err = run("maintenance", "add", "web-01", "--until", "2020-01-01T00:00:00+00:00")
    assert code == 1 and "give a later --until" in err


def test_should_send_due_notifications_from_the_command_line(heartbeat_dsn, webhook, capsys):
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    now = datetime.now(UTC)
    observe(heartbeat_dsn, web, now - timedelta(minutes=10), ok=True)
    observe(heartbeat_dsn, web, now - timedelta(minutes=5), ok=False)  # OFFLINE for 5 min
    assert cli.main(["notify", "--dry-run"]) == 0
    assert "webhook: would send offline: web-01" in capsys.readouterr().out
    assert webhook.received == []
    assert cli.main(["notify"]) == 0
    assert "1 sent, 0 failed on 1 channels (webhook)" in capsys.readouterr().out
    assert cli.main(["notify", "--log"]) == 0
    assert "offline" in capsys.readouterr().out
    assert len(webhook.received) == 1


def test_should_serve_as_a_plain_airflow_callback_too(webhook):
    """The notifiers are Airflow notifiers: usable as on_failure_callback of any DAG or task."""
    from types import SimpleNamespace

    from airflow.sdk import DAG

    context = {"dag": DAG("ssh_heartbeat", schedule=None), "run_id": "manual__1",
               "ti": SimpleNamespace(task_id="probe_shard", state="failed")}
    notify.HeartbeatWebhookNotifier()(context)
    [message] = webhook.received
    assert message["title"] == "Airflow: task probe_shard of DAG ssh_heartbeat failed"
    assert message["run_id"] == "manual__1"


def test_should_notify_as_the_pipeline_role_and_read_the_dashboards_as_the_reader_role(postgres, heartbeat_dsn,
                                                                                       webhook):
    """The DAG's least-privilege role can run the notification step; Grafana's can read every view."""
    with postgres.connect() as admin:
        for name, group in (("notify_login", "heartbeat_pipeline"), ("grafana_login", "heartbeat_reader")):
            admin.execute(f"DROP ROLE IF EXISTS {name}")
            admin.execute(f"CREATE ROLE {name} LOGIN IN ROLE {group}")
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    observe(heartbeat_dsn, web, s(0), ok=True)
    observe(heartbeat_dsn, web, s(61), ok=False)
    with store.connect(heartbeat_dsn) as conn:
        maintenance.add_window(conn, "web-01", s(7200), now=s(10))  # read by the pipeline
        maintenance.end_windows(conn, "web-01", s(20))
    as_pipeline = heartbeat_dsn.replace("postgres@", "notify_login@", 1)
    assert send(as_pipeline, s(121))["sent"] == 1
    assert send(as_pipeline, s(122))["sent"] == 0
    as_reader = heartbeat_dsn.replace("postgres@", "grafana_login@", 1)
    for view in ("dashboard_server_status", "dashboard_fleet_summary", "server_uptime", "server_latency_1h",
                 "recent_status_changes", "probe_latency", "maintenance_active"):
        query(as_reader, f"SELECT * FROM {view}")
    with store.connect(as_reader) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM notification_log")
