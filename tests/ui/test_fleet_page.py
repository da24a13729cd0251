"""The Fleet heartbeat page and its JSON API on a real Airflow api-server: refused without an
Airflow login, served with one, and in headless Chromium showing what the database says.
Screenshots go to ``.state/test-screenshots/`` (ignored by git), or to ``$SCREENSHOTS_DIR``:
``make screenshots`` points it at docs/screenshots/, the ones the README shows."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import pytest
from support import query
from ui.chromium import Chromium
from ui.conftest import FleetSite

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or REPO / ".state" / "test-screenshots").absolute()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET without following redirects: (status, headers, body)."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (127.0.0.1 only)
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def live_statuses(dsn: str) -> dict[str, str]:
    return {r["server_name"]: r["status"] for r in query(dsn, "SELECT server_name, status FROM server_status_live")}


@pytest.mark.parametrize("path", ["/heartbeat/api/servers", "/heartbeat/api/summary", "/heartbeat/api/servers/web-01",
                                  "/heartbeat/openapi.json"])
def test_should_refuse_the_api_without_an_airflow_login(fleet_site: FleetSite, path: str):
    status, _, body = get(fleet_site.url + path)
    assert status == 401, body
    assert json.loads(body) == {"detail": "Not authenticated"}
    forged = jwt.encode({"sub": "1", "aud": "apache-airflow"}, "not-the-secret-" * 5, algorithm="HS512")
    for token in ("garbage", forged):
        status, _, body = get(fleet_site.url + path, {"Authorization": f"Bearer {token}"})
        assert status in (401, 403), body
    status, _, _ = get(fleet_site.url + path, {"Cookie": "_token=garbage"})
    assert status in (401, 403)


def test_should_send_the_page_to_the_airflow_login_without_a_login(fleet_site: FleetSite):
    status, headers, _ = get(fleet_site.url + "/heartbeat/")
    assert status == 303
    assert headers["location"].startswith("/auth/login?next=")
    assert get(fleet_site.url + "/heartbeat/static/heartbeat.js")[0] == 200  # no data in the page's code


def test_should_serve_the_api_to_a_logged_in_viewer_with_the_database_statuses(fleet_site: FleetSite):
    auth = {"Authorization": f"Bearer {fleet_site.token('viewer')}"}
    status, headers, body = get(fleet_site.url + "/heartbeat/api/servers", auth)
    assert status == 200 and headers["cache-control"] == "no-store"
    listing = json.loads(body)
    assert {s["name"]: s["status"] for s in listing["servers"]} == live_statuses(fleet_site.dsn)
    assert live_statuses(fleet_site.dsn) == {"web-01": "ONLINE", "web-02": "ONLINE", "web-03": "ONLINE",
                                             "api-01": "WARNING", "db-01": "OFFLINE", "batch-01": "OFFLINE"}
    assert [s["name"] for s in listing["servers"]][:2] == ["batch-01", "db-01"]  # OFFLINE first by default
    batch = next(s for s in listing["servers"] if s["name"] == "batch-01")
    assert batch["in_maintenance"] and batch["maintenance_reason"] == "kernel upgrade"
    web = next(s for s in listing["servers"] if s["name"] == "web-01")
    assert web["uptime_24h_pct"] == pytest.approx(100 * 23.5 / 24, abs=0.01)
    assert web["last_latency_ms"] > 0 and web["heartbeat_age_s"] < 300

    offline = json.loads(get(fleet_site.url + "/heartbeat/api/servers?status=OFFLINE&name=DB", auth)[2])
    assert [s["name"] for s in offline["servers"]] == ["db-01"]
    by_latency = json.loads(get(fleet_site.url + "/heartbeat/api/servers?sort=latency&order=desc", auth)[2])
    latencies = [s["last_latency_ms"] for s in by_latency["servers"] if s["last_latency_ms"] is not None]
    assert latencies == sorted(latencies, reverse=True) and by_latency["servers"][-1]["last_latency_ms"] is None

    summary = json.loads(get(fleet_site.url + "/heartbeat/api/summary", {"Cookie": auth["Authorization"].replace(
        "Bearer ", "_token=")})[2])
    assert (summary["online"], summary["warning"], summary["offline"], summary["in_maintenance"]) == (3, 1, 2, 1)
    assert summary["last_cycle"]["servers"] == 6 and summary["last_cycle"]["ok"] == 4
    assert summary["stalled"] is False and summary["health"] == "ok" and summary["stale"] == 0
    assert (summary["offline_after_s"], summary["stale_after_s"]) == (300, 600)

    detail = json.loads(get(fleet_site.url + "/heartbeat/api/servers/web-01?hours=24", auth)[2])
    assert [c["to_status"] for c in detail["status_changes"]] == ["ONLINE", "OFFLINE", "ONLINE"]
    assert len(detail["latency"]) > 280 and detail["latency_1h"]["attempts"] >= 12
    api = json.loads(get(fleet_site.url + "/heartbeat/api/servers/api-01", auth)[2])
    assert [(i["type"], i["kind"]) for i in api["inputs"]] == [("alert", "disk_full")]
    assert get(fleet_site.url + "/heartbeat/api/servers/nope", auth)[0] == 404

    spec = json.loads(get(fleet_site.url + "/heartbeat/openapi.json", auth)[2])
    assert {"/api/servers", "/api/servers/{name}", "/api/summary"} <= set(spec["paths"])
    plugins = json.loads(get(fleet_site.url + "/api/v2/plugins", auth)[2])["plugins"]
    [plugin] = [p for p in plugins if p["name"] == "heartbeat"]
    assert plugin["external_views"][0]["url_route"] == "heartbeat"
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/heartbeat"


def test_should_show_the_fleet_as_the_database_has_it_in_a_real_browser(fleet_site: FleetSite):
    token = fleet_site.token("viewer")
    page = fleet_site.url + "/heartbeat/"
    with Chromium() as browser:
        browser.set_cookie("_token", token, fleet_site.url + "/")
        browser.navigate(page)
        browser.wait_for("document.body && document.body.dataset.ready === '1'", what="the fleet page to load")
        rows = browser.evaluate("[...document.querySelectorAll('#servers tbody tr')]"
                                ".map(r => [r.dataset.server, r.dataset.status])")
        assert dict(rows) == live_statuses(fleet_site.dsn)
        assert [name for name, _ in rows][:2] == ["batch-01", "db-01"]
        counts = browser.evaluate("['ONLINE','WARNING','OFFLINE','maintenance']"
                                  ".map(s => document.getElementById('count-' + s).textContent)")
        assert counts == ["3", "1", "2", "1"]
        assert "Last cycle" in browser.evaluate("document.getElementById('health').textContent")
        assert browser.evaluate("document.querySelector('tr[data-server=\"batch-01\"] .tag.maintenance') !== null")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.screenshot(SCREENSHOTS / "fleet.png")

        # the age ticks in the browser between refreshes
        age = "document.querySelector('tr[data-server=\"web-01\"] td[data-age]').textContent"
        first = browser.evaluate(age)
        browser.wait_for(f"{age} !== {json.dumps(first)}", timeout_s=5, what="the heartbeat age to tick")

        # filter by status, then by name; sort by latency
        browser.evaluate("document.querySelector('button.count.offline').click()")
        assert set(browser.evaluate("[...document.querySelectorAll('#servers tbody tr')].map(r => r.dataset.status)")
                   ) == {"OFFLINE"}
        assert browser.evaluate("location.hash") == "#status=OFFLINE"
        browser.evaluate("document.querySelector('button.count.all').click();"
                         "const q = document.getElementById('name-filter'); q.value = 'WEB';"
                         "q.dispatchEvent(new Event('input'))")
        assert browser.evaluate("[...document.querySelectorAll('#servers tbody tr')].map(r => r.dataset.server)"
                                ) == ["web-01", "web-02", "web-03"]
        browser.evaluate("document.querySelector('th button[data-sort=latency]').click()")
        browser.evaluate("document.querySelector('th button[data-sort=latency]').click()")
        shown = browser.evaluate("[...document.querySelectorAll('#servers tbody tr')].map(r => r.dataset.server)")
        listed = {s["name"]: s["last_latency_ms"] for s in json.loads(get(
            fleet_site.url + "/heartbeat/api/servers", {"Authorization": f"Bearer {token}"})[2])["servers"]}
        assert shown == sorted(shown, key=lambda n: listed[n], reverse=True)

        # one server: its status changes and latency history
        browser.evaluate("location.hash = '#server=web-01'")
        browser.wait_for("document.getElementById('server-view').dataset.status", what="the server view")
        assert browser.evaluate("document.getElementById('server-view').dataset.status") == "ONLINE"
        browser.wait_for("document.querySelectorAll('#latency-chart polyline').length === 1", what="the chart")
        assert browser.evaluate("[...document.querySelectorAll('#changes tbody tr')].map(r => r.dataset.change)"
                                ) == ["ONLINE", "OFFLINE", "ONLINE"]
        assert browser.evaluate("document.querySelectorAll('#timeline rect.OFFLINE').length") == 1
        browser.screenshot(SCREENSHOTS / "server.png", full_page=True)
        assert browser.exceptions == [], browser.exceptions

        # inside the Airflow UI: the nav entry opens the page in the UI's frame
        browser.navigate(fleet_site.url + "/plugin/heartbeat")
        browser.wait_for("(() => { const f = document.querySelector('iframe[title=\"Fleet heartbeat\"]');"
                         " return f && f.contentDocument && f.contentDocument.body"
                         " && f.contentDocument.body.dataset.ready === '1'; })()",
                         timeout_s=60, what="the page inside the Airflow UI")
        assert browser.evaluate("[...document.querySelectorAll('nav a, nav button, a, button')]"
                                ".some(e => (e.getAttribute('aria-label') || e.textContent || '')"
                                ".includes('Fleet heartbeat'))")
        browser.screenshot(SCREENSHOTS / "airflow-ui.png")


def post(url: str, body: dict, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),  # noqa: S310
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (127.0.0.1 only)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_should_let_an_editor_acknowledge_from_the_page_and_refuse_a_viewer(fleet_site: FleetSite):
    """Acknowledging needs edit rights on the ssh_heartbeat DAG: Airflow's ``user`` role has them,
    ``viewer`` does not, in the API and on the page."""
    acks = "SELECT acknowledged_by, reason, expires_at IS NOT NULL AS expires FROM acknowledgements"
    url = fleet_site.url + "/heartbeat/api/acknowledgements"
    status, body = post(url, {"server": "db-01", "reason": "looking"}, fleet_site.token("viewer"))
    assert status == 403 and "edit rights on the ssh_heartbeat DAG" in body["detail"]
    status, body = post(url, {"server": "web-01", "reason": "x"}, fleet_site.token("editor"))
    assert (status, body["detail"]) == (400, "web-01 is not OFFLINE: there is nothing to acknowledge")
    assert query(fleet_site.dsn, acks) == []

    def acknowledge_in_browser(user: str) -> Chromium:
        browser.set_cookie("_token", fleet_site.token(user), fleet_site.url + "/")
        browser.navigate(fleet_site.url + "/heartbeat/#server=db-01")
        browser.wait_for("document.getElementById('server-view').dataset.status === 'OFFLINE'"
                         " && !document.getElementById('ack-server-button').hidden", what="the OFFLINE server view")
        browser.evaluate("document.getElementById('ack-server-button').click();"
                         "document.getElementById('ack-reason').value = 'replacing its disk';"
                         "document.getElementById('ack-for').value = '240';"
                         "document.getElementById('ack-submit').click()")
        browser.wait_for("!document.getElementById('ack-message').hidden", what="the acknowledgement's answer")
        return browser

    with Chromium() as browser:
        acknowledge_in_browser("viewer")
        assert "edit rights" in browser.evaluate("document.getElementById('ack-message').textContent")
        assert query(fleet_site.dsn, acks) == []
        acknowledge_in_browser("editor")
        assert "Acknowledged db-01" in browser.evaluate("document.getElementById('ack-message').textContent")
        browser.wait_for("document.getElementById('server-ack-text').textContent.includes('Acknowledged by editor')",
                         what="the acknowledgement on the page")
        assert query(fleet_site.dsn, acks) == [{"acknowledged_by": "editor", "reason": "replacing its disk",
                                               "expires": True}]
        browser.navigate(fleet_site.url + "/heartbeat/")
        browser.wait_for("document.querySelector('tr[data-server=\"db-01\"] .tag.acknowledged') !== null",
                         what="the tag in the list")

        # Escalating by hand: db-01's outage was told (on some channel); the page's escalation
        # channel is a webhook receiver on 127.0.0.1 given to the api-server.
        query(fleet_site.dsn, "INSERT INTO notification_log (subject, channel, kind, server_id, event_id, state, "
                              "first_tried_at, last_tried_at, sent_at) SELECT 'status_event:' || id, 'oncall', "
                              "'offline', server_id, id, 'sent', now(), now(), now() FROM status_events "
                              "WHERE server_id = %s ORDER BY at DESC LIMIT 1 RETURNING id",
              (fleet_site.server_ids["db-01"],))
        for user, answer in (("viewer", "Not escalated: Forbidden"), ("editor", "Escalated db-01: sent on 1 of 1")):
            browser.set_cookie("_token", fleet_site.token(user), fleet_site.url + "/")
            browser.navigate(fleet_site.url + "/heartbeat/#server=db-01")
            browser.wait_for("!document.getElementById('escalate-server-button').hidden", what="the escalate button")
            browser.evaluate("document.getElementById('escalate-server-button').click()")
            browser.wait_for("!document.getElementById('ack-message').hidden", what="the escalation's answer")
            assert answer in browser.evaluate("document.getElementById('ack-message').textContent")
        [escalation] = fleet_site.pager.received
        assert escalation["kind"] == "escalation" and "escalated by editor" in escalation["text"]
        assert browser.exceptions == [], browser.exceptions
