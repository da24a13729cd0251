"""The on-call channels (Slack, PagerDuty, Opsgenie, Apprise) through their Airflow providers,
configured by connections, against one local HTTP receiver on 127.0.0.1 that answers as each
real service does and keeps what it received: the payload shape each service reads, the
routing key, and one dedup key (PagerDuty) or alias (Opsgenie) for an outage's first
notification, its reminders and its resolution. Nothing leaves the machine: every connection
points at the receiver (Slack, PagerDuty and Opsgenie by the connection's host, Apprise by a
``json://`` URL in its config). The ``pagerduty`` client accepts only an https:// base URL, so
PagerDuty's receiver speaks TLS with a certificate made here, trusted through ``SSL_CERT_FILE``
(which httpx2, the HTTP library of the client, reads). Time is passed in."""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import add_servers, query

from heartbeat import cycle, notify, store
from heartbeat.config import IncidentSettings, Settings
from heartbeat.models import ProbeResult

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)
SETTINGS = Settings()
REMINDING = notify.NotifySettings(notify_after_s=60, repeat_after_s=300, timeout_s=5)
ROUTING_KEY = "R0UT1NGK3Y0000000000000000000000"
SLACK_TOKEN = "T0000/B0000/XXXXXXXXXXXX"


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class OnCallServices:
    """Slack's webhook, PagerDuty's Events API v2, Opsgenie's Alert API and an Apprise JSON
    target on one 127.0.0.1 port, answering with what the real services answer."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.received: list[Received] = []
        services = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body: Any = json.loads(raw) if raw else None
                services.received.append(Received(self.path, dict(self.headers), body))
                if self.path.startswith("/services/"):
                    self.answer(200, b"ok", "text/html")
                elif self.path == "/v2/enqueue":
                    self.answer(202, json.dumps({"status": "success", "message": "Event processed",
                                                 "dedup_key": body.get("dedup_key")}).encode())
                elif self.path.startswith("/v2/alerts"):
                    self.answer(202, b'{"result": "Request will be processed", "took": 0.01, "requestId": "r-1"}')
                else:
                    self.answer(200, b"{}")

            def answer(self, code: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def to(self, prefix: str) -> list[Received]:
        return [r for r in self.received if r.path.startswith(prefix)]

    def connections(self, pagerduty_url: str) -> dict[str, str]:
        return {
            "AIRFLOW_CONN_HEARTBEAT_SLACK": json.dumps({"conn_type": "slackwebhook", "host": f"{self.url}/services",
                                                        "password": SLACK_TOKEN}),
            "AIRFLOW_CONN_HEARTBEAT_PAGERDUTY": json.dumps({"conn_type": "pagerduty_events", "host": pagerduty_url,
                                                            "password": ROUTING_KEY}),
            "AIRFLOW_CONN_HEARTBEAT_OPSGENIE": json.dumps({"conn_type": "opsgenie", "host": self.url,
                                                           "password": "og-api-key"}),
            "AIRFLOW_CONN_HEARTBEAT_APPRISE": json.dumps({"conn_type": "apprise", "extra": {
                "config": {"path": f"json://127.0.0.1:{self.port}/apprise"}}}),
        }


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(datetime.now(UTC) - timedelta(hours=1))
            .not_valid_after(datetime.now(UTC) + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "receiver.pem", folder / "receiver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Services:
    plain: OnCallServices
    pagerduty: OnCallServices

    def to(self, prefix: str) -> list[Received]:
        return self.plain.to(prefix) + self.pagerduty.to(prefix)


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch, heartbeat_env, tmp_path: Path) -> Iterator[Services]:
    tls = self_signed(tmp_path)
    both = Services(OnCallServices(), OnCallServices(tls))
    monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))
    for receiver in (both.plain, both.pagerduty):
        receiver.thread.start()
    for key, value in both.plain.connections(both.pagerduty.url).items():
        monkeypatch.setenv(key, value)
    try:
        yield both
    finally:
        for receiver in (both.plain, both.pagerduty):
            receiver.server.shutdown()
            receiver.server.server_close()
            receiver.thread.join(timeout=5)


def observe(dsn: str, server_ids: list[int], at: datetime, ok: bool, error_class: str = "timeout") -> None:
    """One cycle at ``at``: a login attempt per server, the status, the incident step."""
    results = [ProbeResult(server_id=i, server_name="x", ok=ok, attempted_at=at,
                           error_class=None if ok else error_class, message="" if ok else "timed out",
                           total_ms=8.0) for i in server_ids]
    with store.connect(dsn) as conn:
        store.record_results(conn, f"cycle-{at.timestamp()}", results)
        store.materialise_status(conn, at, SETTINGS.offline_after_s)
        cycle.update_incidents(conn, at, IncidentSettings(), window_s=120)


def send(dsn: str, at: datetime, settings: notify.NotifySettings = REMINDING) -> dict[str, int]:
    return notify.run(SETTINGS, at, dsn=dsn, notify_settings=settings)


def test_should_tell_slack_pagerduty_opsgenie_and_apprise_once_with_one_key_per_outage(heartbeat_dsn, services):
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "web01.example.test"}])["web-01"]
    observe(heartbeat_dsn, [web], s(0), ok=True)
    observe(heartbeat_dsn, [web], s(61), ok=False)

    assert send(heartbeat_dsn, s(121)) == {"channels": 4, "sent": 4, "failed": 0, "skipped": 0}
    assert send(heartbeat_dsn, s(122))["sent"] == 0  # once per channel
    assert send(heartbeat_dsn, s(421))["sent"] == 4  # the first reminder, 300 s after
    assert send(heartbeat_dsn, s(422))["sent"] == 0
    observe(heartbeat_dsn, [web], s(500), ok=True)
    assert send(heartbeat_dsn, s(560))["sent"] == 4  # recovered: resolve and close

    [offline, reminder, recovered] = services.to("/services/")
    assert offline.path == f"/services/{SLACK_TOKEN}"
    assert offline.body["text"].startswith("web-01 is OFFLINE\nweb-01 (web01.example.test:22) is OFFLINE since")
    header, section, context = offline.body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "web-01 is OFFLINE"}}
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "last attempt: timed out" in section["text"]["text"]
    assert context["elements"][0]["text"].startswith("airflow-ssh-heartbeat · offline · status_event:")
    assert reminder.body["blocks"][0]["text"]["text"] == "still failing: web-01 is OFFLINE"
    assert "heartbeat ack server web-01" in reminder.body["text"]
    assert recovered.body["blocks"][0]["text"]["text"] == "web-01 recovered: ONLINE"

    events = [r.body for r in services.to("/v2/enqueue")]
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    assert {e["routing_key"] for e in events} == {ROUTING_KEY}
    assert {e["dedup_key"] for e in events} == {"airflow-ssh-heartbeat/server/web-01"}  # one PagerDuty alert
    trigger = events[0]["payload"]
    assert (trigger["summary"], trigger["severity"], trigger["source"]) == ("web-01 is OFFLINE", "error", "web-01")
    assert trigger["class"] == "timeout" and trigger["custom_details"]["kind"] == "offline"
    assert events[1]["payload"]["summary"] == "still failing: web-01 is OFFLINE"

    alerts = services.to("/v2/alerts")
    assert [a.path.split("?")[0] for a in alerts] == [
        "/v2/alerts", "/v2/alerts", "/v2/alerts/airflow-ssh-heartbeat%2Fserver%2Fweb-01/close"]
    assert "identifierType=alias" in alerts[2].path
    assert alerts[0].headers["Authorization"] == "GenieKey og-api-key"
    assert {a.body["alias"] for a in alerts[:2]} == {"airflow-ssh-heartbeat/server/web-01"}
    assert alerts[0].body["message"] == "web-01 is OFFLINE" and alerts[0].body["priority"] == "P2"

    apprise = [r.body for r in services.to("/apprise")]
    assert [(a["title"], a["type"]) for a in apprise] == [
        ("web-01 is OFFLINE", "failure"), ("still failing: web-01 is OFFLINE", "failure"),
        ("web-01 recovered: ONLINE", "success")]
    ledger = query(heartbeat_dsn, "SELECT channel, kind, count(*) AS n FROM notification_log "
                                  "GROUP BY channel, kind ORDER BY channel, kind")
    assert {(r["channel"], r["kind"], r["n"]) for r in ledger} == {
        (c, k, 1) for c in ("apprise", "opsgenie", "pagerduty", "slack") for k in ("offline", "recovered", "repeat")}


def test_should_page_pagerduty_once_per_incident_and_resolve_it_with_the_same_key(heartbeat_dsn, services,
                                                                                  monkeypatch):
    for name in ("HEARTBEAT_SLACK", "HEARTBEAT_OPSGENIE", "HEARTBEAT_APPRISE"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{name}")
    ids = list(add_servers(heartbeat_dsn, [{"name": f"db-{i}", "host": f"192.0.2.{i}"} for i in (1, 2, 3)]).values())
    observe(heartbeat_dsn, ids, s(0), ok=True)
    observe(heartbeat_dsn, ids, s(61), ok=False)  # all three: one /24, one error class
    assert send(heartbeat_dsn, s(121)) == {"channels": 1, "sent": 1, "failed": 0, "skipped": 0}
    assert send(heartbeat_dsn, s(421))["sent"] == 1  # a reminder of the incident, not of each server
    observe(heartbeat_dsn, ids, s(450), ok=True)
    assert send(heartbeat_dsn, s(510))["sent"] == 1
    events = [r.body for r in services.to("/v2/enqueue")]
    [incident_id] = [r["id"] for r in query(heartbeat_dsn, "SELECT id FROM incidents")]
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    assert {e["dedup_key"] for e in events} == {f"airflow-ssh-heartbeat/incident/{incident_id}"}
    assert events[0]["payload"]["summary"] == "3 of 3 servers in 192.0.2.0/24 timed out"
    assert events[0]["payload"]["severity"] == "critical" and events[0]["payload"]["source"] == "192.0.2.0/24"
    assert events[0]["payload"]["custom_details"]["member_names"] == ["db-1", "db-2", "db-3"]


def test_should_retry_a_refusing_pagerduty_through_the_ledger(heartbeat_dsn, services, monkeypatch):
    for name in ("HEARTBEAT_SLACK", "HEARTBEAT_OPSGENIE", "HEARTBEAT_APPRISE"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{name}")
    monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_PAGERDUTY", json.dumps(
        {"conn_type": "pagerduty_events", "host": f"{services.pagerduty.url}/nowhere", "password": ROUTING_KEY}))
    web = add_servers(heartbeat_dsn, [{"name": "web-01", "host": "10.0.0.1"}])["web-01"]
    observe(heartbeat_dsn, [web], s(0), ok=True)
    observe(heartbeat_dsn, [web], s(61), ok=False)
    assert send(heartbeat_dsn, s(121))["failed"] == 1  # the receiver's 200 {} is no Events API answer
    [row] = query(heartbeat_dsn, "SELECT state, attempts FROM notification_log")
    assert row == {"state": "failed", "attempts": 1}


def test_should_say_what_to_install_when_a_channel_has_a_connection_but_no_provider(monkeypatch):
    """A deployment that defines ``heartbeat_slack`` without the Slack provider: the channel stays
    (the ledger keeps the notification for the next try) and every send says what to install. The
    provider is installed here, so the table names a package that is not."""
    from heartbeat.notify import channels

    monkeypatch.setenv("AIRFLOW_CONN_HEARTBEAT_SLACK", "slackwebhook://:T000%2FB000%2FXXXX@127.0.0.1")
    monkeypatch.setitem(channels.CHANNEL_PROVIDERS, "slack", "apache-airflow-providers-not-installed-here")
    assert channels.provider_installed("pagerduty")
    assert not channels.provider_installed("slack")
    [slack] = [c for c in channels.configured_channels(notify.NotifySettings()) if c.name == "slack"]
    with pytest.raises(RuntimeError, match=r"heartbeat_slack.*not installed.*airflow-ssh-heartbeat\[slack\]"):
        slack.send(notify.Notification(kind="recovered", subject="web-1", title="t", text="x",
                                       at=datetime(2026, 12, 5, tzinfo=UTC)))
