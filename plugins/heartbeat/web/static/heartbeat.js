// Fleet heartbeat page: reads /heartbeat/api/* (relative URLs), refreshes every 10 s, ticks heartbeat
// ages every second, filters and sorts in the browser. Only ages tick: a status reason holds no age
// (include/sql/views/010_heartbeat_status_at.sql), so it stays true beside the ticking age. The view lives in the URL hash
// (#status=OFFLINE&q=web&sort=age&dir=desc, #server=web-01), so a view can be shared.
// Text from the database only ever goes through textContent.
"use strict";

(function () {
  const REFRESH_MS = 10000;
  const HISTORY_HOURS = 24;
  const SEVERITY = { OFFLINE: 0, STALE: 1, WARNING: 2, ONLINE: 3 };
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    servers: [],
    summary: null,
    incidents: null,
    ackTarget: null, // {server: name} or {incident_id: n} while the form is open
    detail: null,
    fetchedAt: 0, // performance.now() of the last successful refresh
    status: "",
    q: "",
    site: "",
    sort: "status",
    dir: "asc",
    server: null,
  };
  let timer = null;

  const $ = (id) => document.getElementById(id);

  class AuthError extends Error {}

  // --- formatting ------------------------------------------------------------------------------

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms === 0) return "0 ms";
    return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
  }
  function fmtPct(pct) {
    if (pct === null || pct === undefined) return "–";
    if (pct >= 99.995) return "100 %";
    return `${pct.toFixed(pct >= 99 ? 2 : 1)} %`;
  }
  function pctClass(pct) {
    if (pct === null || pct === undefined) return "";
    return pct < 95 ? "low" : pct < 99.9 ? "mid" : "";
  }
  function fmtTime(iso) {
    if (!iso) return "never";
    return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }
  function fmtClock(date) {
    return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }
  function elapsedS() {
    return state.fetchedAt ? (performance.now() - state.fetchedAt) / 1000 : 0;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function badge(status) {
    return el("span", { class: `badge ${status}`, "data-badge": status, text: status });
  }

  // --- URL hash <-> view -----------------------------------------------------------------------

  function readHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    state.server = params.get("server");
    state.status = params.get("status") || "";
    state.q = params.get("q") || "";
    state.site = params.get("site") || "";
    state.sort = params.get("sort") || "status";
    state.dir = params.get("dir") === "desc" ? "desc" : "asc";
  }
  function hashFor(changes) {
    const next = { status: state.status, q: state.q, site: state.site, sort: state.sort, dir: state.dir, server: null,
      ...changes };
    const params = new URLSearchParams();
    if (next.server) params.set("server", next.server);
    else {
      if (next.status) params.set("status", next.status);
      if (next.q) params.set("q", next.q);
      if (next.site) params.set("site", next.site);
      if (next.sort !== "status") params.set("sort", next.sort);
      if (next.dir !== "asc") params.set("dir", next.dir);
    }
    const text = params.toString();
    return text ? `#${text}` : "#";
  }
  function setView(changes) {
    const target = hashFor(changes);
    if (target !== (location.hash || "#")) history.replaceState(null, "", target === "#" ? location.pathname + location.search : target);
    readHash();
    render();
  }

  // --- data ------------------------------------------------------------------------------------

  async function getJSON(path) {
    const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401 || response.status === 403) throw new AuthError(`HTTP ${response.status}`);
    if (!response.ok) {
      let detail = `HTTP ${response.status}`;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(detail);
    }
    return response.json();
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const wanted = state.server;
      const requests = [getJSON("api/summary"), getJSON("api/servers"), getJSON("api/incidents")];
      if (wanted) requests.push(getJSON(`api/servers/${encodeURIComponent(wanted)}?hours=${HISTORY_HOURS}`));
      const [summary, list, incidents, detail] = await Promise.all(requests);
      state.summary = summary;
      state.incidents = incidents;
      state.servers = list.servers;
      state.detail = wanted && wanted === state.server ? detail : null;
      state.fetchedAt = performance.now();
      showError(null);
      render();
      document.body.dataset.ready = "1";
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    } catch (error) {
      if (error instanceof AuthError) {
        showError("Your Airflow login has expired or is missing: log in to Airflow again, then reload this page.");
      } else if (state.server && /no enabled server/.test(String(error.message))) {
        showError(`No enabled server named ${state.server}.`);
      } else {
        showError(`Cannot load the fleet: ${error.message}. Retrying every ${REFRESH_MS / 1000} s.`);
      }
    } finally {
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  function showError(message) {
    const box = $("error");
    box.hidden = !message;
    box.textContent = message || "";
  }

  // --- rendering -------------------------------------------------------------------------------

  function render() {
    renderHeader();
    renderIncidents();
    $("fleet-view").hidden = Boolean(state.server);
    $("server-view").hidden = !state.server;
    if (state.server) renderServer();
    else renderFleet();
    tick();
  }

  function renderIncidents() {
    const list = state.incidents ? state.incidents.incidents : [];
    $("incidents").hidden = !list.length || Boolean(state.server);
    $("incident-list").replaceChildren(...list.map((i) => el("li", { "data-incident": String(i.id) },
      el("strong", { text: `#${i.id} ${i.title}` }),
      ` since ${fmtTime(i.first_failed_at)} `,
      i.acknowledged_by
        ? el("span", { class: "tag acknowledged", text: `acknowledged by ${i.acknowledged_by}` })
        : el("button", { type: "button", "data-ack-incident": String(i.id), text: "Acknowledge…" }),
      " ",
      el("button", { type: "button", "data-escalate-incident": String(i.id), text: "Escalate now" }),
      el("div", { class: "members", text: i.member_names.slice(0, 30).join(", ") +
        (i.member_names.length > 30 ? ` and ${i.member_names.length - 30} more` : "") }))));
  }

  // --- acknowledging ---------------------------------------------------------------------------

  function openAck(target, label) {
    state.ackTarget = target;
    $("ack-target").textContent = label;
    $("ack-panel").hidden = false;
    $("ack-message").hidden = true;
    $("ack-reason").focus();
  }
  function closeAck() {
    state.ackTarget = null;
    $("ack-panel").hidden = true;
    $("ack-reason").value = "";
  }
  function ackMessage(text, refused) {
    const box = $("ack-message");
    box.hidden = false;
    box.textContent = text;
    box.classList.toggle("refused", Boolean(refused));
  }
  async function submitAck(event) {
    event.preventDefault();
    if (!state.ackTarget) return;
    const minutes = $("ack-for").value;
    const body = { ...state.ackTarget, reason: $("ack-reason").value.trim(),
      expires_in_minutes: minutes ? Number(minutes) : null };
    const response = await fetch("api/acknowledgements", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(body) });
    let detail = `HTTP ${response.status}`;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    if (response.status === 201) {
      ackMessage(`Acknowledged ${$("ack-target").textContent}.`, false);
      closeAck();
      refresh();
    } else if (response.status === 403) {
      ackMessage(`Not acknowledged: ${detail}.`, true);
    } else {
      ackMessage(`Not acknowledged: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`, true);
    }
  }

  async function escalate(target, label) {
    $("ack-message").hidden = true;
    const response = await fetch("api/escalations", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(target) });
    let body = {};
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    if (response.ok) {
      ackMessage(`Escalated ${label}: sent on ${body.sent} of ${body.channels} escalation channels` +
        (body.skipped ? ` (${body.skipped} had it already)` : "") + (body.failed ? `, ${body.failed} failed` : "") + ".",
        Boolean(body.failed));
    } else {
      const detail = body.detail || `HTTP ${response.status}`;
      ackMessage(`Not escalated: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`, true);
    }
  }

  function renderHeader() {
    const s = state.summary;
    if (!s) return;
    $("count-total").textContent = s.total;
    $("count-ONLINE").textContent = s.online;
    $("count-WARNING").textContent = s.warning;
    $("count-OFFLINE").textContent = s.offline;
    $("count-STALE").textContent = s.stale;
    document.querySelector("button.count.stale").hidden = !s.stale;
    $("count-maintenance").textContent = s.in_maintenance;
    for (const button of document.querySelectorAll("button.count")) {
      const which = button.dataset.count;
      button.classList.toggle("active", !state.server && (which === "ALL" ? !state.status : which === state.status));
    }
  }

  function isStalled() {
    const s = state.summary;
    if (!s) return false;
    if (!s.last_cycle) return true;
    return s.stalled || (s.last_cycle.age_s || 0) + elapsedS() > s.stale_after_s;
  }
  function healthText() {
    const s = state.summary;
    if (!s) return "";
    const c = s.last_cycle;
    if (!c) return "No monitoring cycle has finished yet: is the ssh_heartbeat DAG unpaused?";
    const age = (c.age_s || 0) + elapsedS();
    const took = c.duration_s === null ? "" : `, took ${c.duration_s.toFixed(1)} s`;
    const probed = `${c.servers} servers probed, ${c.ok} answered`;
    const text = `Last cycle ${fmtDuration(age)} ago${took}; ${probed}. A heartbeat older than ${s.offline_after_s} s is OFFLINE.`;
    if (isStalled()) {
      return `Monitor stalled: no cycle for ${fmtDuration(age)} (is the ssh_heartbeat DAG paused, or the scheduler down?); statuses are not current.`;
    }
    return text + siteText();
  }
  // Each site's monitor, when there is more than the default site or one has stalled.
  function siteText() {
    const sites = (state.summary && state.summary.sites) || [];
    if (!sites.length || (sites.length === 1 && sites[0].site === "default" && !sites[0].stalled)) return "";
    return " Sites: " + sites.map((x) => x.stalled
      ? `${x.site}: ${x.health}, its servers read STALE`
      : `${x.site}: last probe ${x.last_attempt_age_s === null ? "never" : fmtDuration(x.last_attempt_age_s + elapsedS()) + " ago"}${x.last_worker ? ` by ${x.last_worker}` : ""}`).join("; ") + ".";
  }
  function renderSiteFilter() {
    const select = $("site-filter");
    const sites = ((state.summary && state.summary.sites) || []).map((x) => x.site);
    if (state.site && !sites.includes(state.site)) sites.push(state.site);
    const wanted = ["", ...sites].join(",");
    if (select.dataset.sites !== wanted) {
      select.replaceChildren(el("option", { value: "", text: "all" }), ...sites.map((x) => el("option", { value: x, text: x })));
      select.dataset.sites = wanted;
    }
    select.value = state.site;
    $("site-filter-label").hidden = sites.length < 2 && !state.site;
  }

  function matches(server) {
    if (state.status && server.status !== state.status) return false;
    if (state.q && !server.name.toLowerCase().includes(state.q.toLowerCase())) return false;
    if (state.site && server.site !== state.site) return false;
    return true;
  }
  function sortValue(server) {
    switch (state.sort) {
      case "name": return server.name.toLowerCase();
      case "age": return server.heartbeat_age_s;
      case "latency": return server.last_latency_ms;
      case "uptime_24h": return server.uptime_24h_pct;
      case "uptime_7d": return server.uptime_7d_pct;
      default: return SEVERITY[server.status];
    }
  }
  function sorted(servers) {
    const byName = [...servers].sort((a, b) => a.name.localeCompare(b.name));
    const known = byName.filter((s) => sortValue(s) !== null && sortValue(s) !== undefined);
    const unknown = byName.filter((s) => sortValue(s) === null || sortValue(s) === undefined);
    const sign = state.dir === "desc" ? -1 : 1;
    known.sort((a, b) => {
      const x = sortValue(a), y = sortValue(b);
      return x < y ? -sign : x > y ? sign : 0;
    });
    return known.concat(unknown);
  }

  function renderFleet() {
    $("status-filter").value = state.status;
    renderSiteFilter();
    if (document.activeElement !== $("name-filter")) $("name-filter").value = state.q;
    for (const th of document.querySelectorAll("#servers th")) {
      const button = th.querySelector("button[data-sort]");
      if (!button) continue;
      th.setAttribute("aria-sort", button.dataset.sort === state.sort ? (state.dir === "asc" ? "ascending" : "descending") : "none");
    }
    const shown = sorted(state.servers.filter(matches));
    const body = $("servers").tBodies[0];
    body.replaceChildren(...shown.map(serverRow));
    $("empty").hidden = shown.length > 0;
    $("shown").textContent = shown.length === state.servers.length
      ? `${shown.length} servers` : `${shown.length} of ${state.servers.length} servers`;
  }

  function serverRow(s) {
    const name = el("td", { class: "name" },
      el("a", { href: hashFor({ server: s.name }), "data-open": s.name, text: s.name }),
      el("span", { class: "addr", text: s.site === "default" ? `${s.host}:${s.port}` : `${s.host}:${s.port} · site ${s.site}` }));
    const status = el("td", { class: "status" }, badge(s.status),
      s.flapping ? el("span", { class: "tag flapping", title: "its logins keep succeeding and failing", text: "flapping" }) : null,
      s.incident_id ? el("span", { class: "tag incident", title: "a member of a shared-cause incident", text: `incident #${s.incident_id}` }) : null,
      s.acknowledged_by ? el("span", { class: "tag acknowledged", text: `ack: ${s.acknowledged_by}` }) : null,
      s.in_maintenance ? el("span", { class: "tag maintenance", title: maintenanceTitle(s), text: "maintenance" }) : null);
    return el("tr", { "data-server": s.name, "data-status": s.status },
      name, status,
      el("td", { class: "reason", text: s.reason }),
      el("td", { class: "num", "data-age": s.heartbeat_age_s === null ? null : String(s.heartbeat_age_s),
        title: s.last_heartbeat_at ? `last heartbeat ${fmtTime(s.last_heartbeat_at)}` : "no heartbeat yet",
        text: s.heartbeat_age_s === null ? "never" : fmtDuration(s.heartbeat_age_s) }),
      el("td", { class: "num", text: fmtMs(s.last_latency_ms) }),
      el("td", { class: `num ${pctClass(s.uptime_24h_pct)}`, text: fmtPct(s.uptime_24h_pct) }),
      el("td", { class: `num ${pctClass(s.uptime_7d_pct)}`, text: fmtPct(s.uptime_7d_pct) }));
  }
  function maintenanceTitle(s) {
    const reason = s.maintenance_reason ? `: ${s.maintenance_reason}` : "";
    return `in maintenance until ${fmtTime(s.maintenance_until)}${reason}`;
  }

  function renderServer() {
    const d = state.detail;
    const view = $("server-view");
    view.dataset.server = state.server;
    if (!d) {
      $("server-name").textContent = state.server;
      $("server-badge").hidden = true;
      return;
    }
    const s = d.server;
    view.dataset.status = s.status;
    $("server-name").textContent = s.name;
    const b = $("server-badge");
    b.hidden = false;
    b.className = `badge ${s.status}`;
    b.textContent = s.status;
    const m = $("server-maintenance");
    m.hidden = !s.in_maintenance;
    m.textContent = s.in_maintenance ? `maintenance until ${fmtTime(s.maintenance_until)}` : "";
    $("server-reason").textContent = s.reason;
    const ackText = [s.incident_id ? `Member of incident #${s.incident_id}.` : "",
      s.acknowledged_by ? `Acknowledged by ${s.acknowledged_by}.` : ""].filter(Boolean).join(" ");
    $("server-ack-text").textContent = ackText;
    $("ack-server-button").hidden = s.status !== "OFFLINE" || Boolean(s.acknowledged_by);
    $("escalate-server-button").hidden = s.status !== "OFFLINE";

    const p = d.latency_1h;
    const facts = [
      ["Address", `${s.host}:${s.port}` + (s.via ? ` via ${s.via}` : "")],
      ["Site", s.site],
      ["Last attempt by", s.last_worker || "not probed yet"],
      ["Status since", s.status_since ? fmtTime(s.status_since) : "not recorded yet"],
      ["Last heartbeat", s.last_heartbeat_at ? fmtTime(s.last_heartbeat_at) : "never"],
      ["Heartbeat age", s.heartbeat_age_s === null ? "never" : fmtDuration(s.heartbeat_age_s), s.heartbeat_age_s],
      ["Last latency", fmtMs(s.last_latency_ms)],
      ["Latency 1 h p50 / p95 / p99", `${fmtMs(p.p50_ms)} / ${fmtMs(p.p95_ms)} / ${fmtMs(p.p99_ms)}`],
      ["Attempts 1 h (ok)", `${p.attempts} (${p.successes})`],
      ["Uptime 24 h / 7 d / 30 d", `${fmtPct(s.uptime_24h_pct)} / ${fmtPct(s.uptime_7d_pct)} / ${fmtPct(s.uptime_30d_pct)}`],
      ["Failed attempts in a row", String(s.consecutive_failures)],
      ["Last error", s.last_error_class || "none"],
    ];
    $("server-facts").replaceChildren(...facts.map(([label, value, age]) =>
      el("div", {}, el("dt", { text: label }),
        el("dd", { "data-age": age === undefined || age === null ? null : String(age), text: value }))));

    const inputs = d.inputs.map((i) => el("li", {},
      `${i.type} ${i.kind}`, i.message ? `: ${i.message}` : "", ` (${i.source}, since ${fmtTime(i.since)})`));
    const windows = d.maintenance.map((w) => el("li", {},
      `maintenance ${fmtTime(w.starts_at)} – ${fmtTime(w.ends_at)}`, w.reason ? `: ${w.reason}` : ""));
    const items = inputs.concat(windows);
    $("server-inputs").replaceChildren(...(items.length ? [el("ul", { class: "inputs" }, ...items)] : []));

    $("timeline").replaceChildren(timeline(d));
    $("latency-chart").replaceChildren(latencyChart(d));
    const changes = [...d.status_changes].reverse().map((c) => el("tr", { "data-change": c.to_status },
      el("td", { text: fmtTime(c.at) }),
      el("td", {}, c.from_status ? badge(c.from_status) : "–"),
      el("td", {}, badge(c.to_status)),
      el("td", { class: "reason", text: c.reason })));
    $("changes").tBodies[0].replaceChildren(...changes);
  }

  // --- charts (inline SVG) ---------------------------------------------------------------------

  const W = 960, PAD_L = 56, PAD_R = 12;

  function xScale(start, end) {
    const span = Math.max(1, end - start);
    return (t) => PAD_L + ((t - start) / span) * (W - PAD_L - PAD_R);
  }
  function timeAxis(root, start, end, y) {
    const x = xScale(start, end);
    for (let i = 0; i <= 4; i++) {
      const t = start + ((end - start) * i) / 4;
      root.append(svg("text", { x: x(t), y, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" },
        fmtClock(new Date(t))));
    }
  }

  function timeline(d) {
    const H = 46;
    const start = Date.parse(d.since), end = Date.parse(d.as_of);
    const x = xScale(start, end);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "status over time" });
    root.append(svg("rect", { x: PAD_L, y: 4, width: W - PAD_L - PAD_R, height: 22, class: "UNKNOWN" }));
    const changes = d.status_changes;
    changes.forEach((c, i) => {
      const from = Math.max(start, Date.parse(c.at));
      const to = i + 1 < changes.length ? Date.parse(changes[i + 1].at) : end;
      if (to <= start || to <= from) return;
      const rect = svg("rect", { x: x(from), y: 4, width: Math.max(1, x(to) - x(from)), height: 22, class: c.to_status });
      rect.append(svg("title", {}, `${c.to_status} from ${fmtTime(c.at)}`));
      root.append(rect);
    });
    root.append(svg("text", { x: 0, y: 19 }, "status"));
    timeAxis(root, start, end, 42);
    const legend = el("div", { class: "legend" },
      ...["ONLINE", "WARNING", "OFFLINE"].map((s) => el("span", {}, el("i", { class: s }), s)),
      el("span", {}, el("i", { class: "UNKNOWN" }), "not monitored yet"));
    return el("div", {}, root, legend);
  }

  function latencyChart(d) {
    const points = d.latency;
    if (!points.length) return el("p", { class: "none", text: "No attempt recorded in this period." });
    const H = 190, TOP = 8, BOTTOM = 150;
    const start = Date.parse(d.since), end = Date.parse(d.as_of);
    const x = xScale(start, end);
    const ok = points.filter((p) => p.ok && p.total_ms !== null);
    const max = Math.max(1, ...ok.map((p) => p.total_ms)) * 1.1;
    const y = (ms) => BOTTOM - (ms / max) * (BOTTOM - TOP);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "login latency over time" });
    for (const frac of [0, 0.5, 1]) {
      const ms = max * frac;
      root.append(svg("line", { x1: PAD_L, x2: W - PAD_R, y1: y(ms), y2: y(ms), class: "grid" }));
      root.append(svg("text", { x: PAD_L - 6, y: y(ms) + 4, "text-anchor": "end" }, fmtMs(ms)));
    }
    if (ok.length) {
      const path = ok.map((p) => `${x(Date.parse(p.at)).toFixed(1)},${y(p.total_ms).toFixed(1)}`).join(" ");
      root.append(svg("polyline", { points: path, class: "line" }));
    }
    for (const p of points.filter((q) => !q.ok)) {
      const mark = svg("rect", { x: x(Date.parse(p.at)) - 1, y: BOTTOM + 4, width: 2.5, height: 10, class: "fail" });
      const where = p.site ? ` from site ${p.site}${p.worker ? ` by ${p.worker}` : ""}` : "";
      mark.append(svg("title", {}, `${fmtTime(p.at)}: failed (${p.error_class || "error"})${where}`));
      root.append(mark);
    }
    root.append(svg("text", { x: PAD_L, y: BOTTOM + 13, "text-anchor": "end" }, "failed"));
    timeAxis(root, start, end, H - 6);
    return root;
  }

  // --- ticking ---------------------------------------------------------------------------------

  function tick() {
    const extra = elapsedS();
    for (const cell of document.querySelectorAll("[data-age]")) {
      cell.textContent = fmtDuration(Number(cell.dataset.age) + extra);
    }
    const health = $("health");
    health.textContent = healthText();
    const s = state.summary;
    health.classList.toggle("stalled", isStalled());
    $("refreshed").textContent = state.fetchedAt ? `refreshed ${fmtDuration(extra)} ago` : "";
  }

  // --- wiring ----------------------------------------------------------------------------------

  $("status-filter").addEventListener("change", (e) => setView({ status: e.target.value }));
  $("name-filter").addEventListener("input", (e) => setView({ q: e.target.value.trim() }));
  $("site-filter").addEventListener("change", (e) => setView({ site: e.target.value }));
  for (const button of document.querySelectorAll("th button[data-sort]")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      setView({ sort: key, dir: state.sort === key && state.dir === "asc" ? "desc" : "asc" });
    });
  }
  for (const button of document.querySelectorAll("button.count")) {
    button.addEventListener("click", () => setView({ status: button.dataset.count === "ALL" ? "" : button.dataset.count }));
  }
  window.addEventListener("hashchange", () => {
    const before = state.server;
    readHash();
    render();
    if (state.server !== before) {
      state.detail = null;
      refresh();
    }
  });
  $("servers").addEventListener("click", (e) => {
    const link = e.target.closest("a[data-open]");
    if (!link) return;
    e.preventDefault();
    location.hash = hashFor({ server: link.dataset.open });
  });
  for (const id of ["back-link", "home-link"]) {
    $(id).addEventListener("click", (e) => {
      e.preventDefault();
      location.hash = hashFor({ server: null });
    });
  }

  $("ack-form").addEventListener("submit", submitAck);
  $("ack-cancel").addEventListener("click", closeAck);
  $("ack-server-button").addEventListener("click", () => openAck({ server: state.server }, state.server));
  $("escalate-server-button").addEventListener("click", () => escalate({ server: state.server }, state.server));
  $("incident-list").addEventListener("click", (e) => {
    const button = e.target.closest("button[data-ack-incident]");
    if (button) openAck({ incident_id: Number(button.dataset.ackIncident) }, `incident #${button.dataset.ackIncident}`);
    const up = e.target.closest("button[data-escalate-incident]");
    if (up) escalate({ incident_id: Number(up.dataset.escalateIncident) }, `incident #${up.dataset.escalateIncident}`);
  });

  readHash();
  setInterval(tick, 1000);
  refresh();
})();
