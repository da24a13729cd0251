-- Named queries of the Fleet heartbeat page's JSON API (plugins/heartbeat/store/dashboard.py, for
-- plugins/heartbeat/web). They read the dashboard views (include/sql/views/030_dashboard_views.sql);
-- parameters are bound by psycopg.

-- name: dashboard_servers
-- Optional filters: an exact status, a case-insensitive part of the name and a site (NULL: no filter).
SELECT d.*, now() AS as_of
FROM dashboard_server_status d
WHERE (%(status)s::text IS NULL OR d.status = %(status)s::text)
  AND (%(site)s::text IS NULL OR d.site = %(site)s::text)
  AND (%(name)s::text IS NULL OR strpos(lower(d.server_name), lower(%(name)s::text)) > 0)
ORDER BY d.server_name;

-- name: dashboard_server
SELECT d.*, now() AS as_of FROM dashboard_server_status d WHERE d.server_name = %(name)s;

-- name: dashboard_summary
SELECT * FROM dashboard_fleet_summary;

-- name: dashboard_status_changes
-- A server's status changes since %(since)s, plus the last one before it (the status the period started in).
(SELECT e.id, e.at, e.from_status, e.to_status, e.reason
 FROM status_events e WHERE e.server_id = %(server_id)s AND e.at < %(since)s
 ORDER BY e.at DESC, e.id DESC LIMIT 1)
UNION ALL
(SELECT e.id, e.at, e.from_status, e.to_status, e.reason
 FROM status_events e WHERE e.server_id = %(server_id)s AND e.at >= %(since)s
 ORDER BY e.at DESC, e.id DESC LIMIT %(limit)s)
ORDER BY at, id;

-- name: dashboard_latency_history
SELECT p.attempted_at AS at, p.ok, p.error_class, p.total_ms, p.site, p.worker
FROM probe_history p
WHERE p.server_id = %(server_id)s AND p.attempted_at >= %(since)s
ORDER BY p.attempted_at DESC
LIMIT %(limit)s;

-- name: dashboard_latency_percentiles
SELECT attempts, successes, p50_ms, p95_ms, p99_ms, max_ms
FROM heartbeat_latency(now() - interval '1 hour', now()) WHERE server_id = %(server_id)s;

-- name: dashboard_active_inputs
SELECT 'alert' AS type, a.id, a.kind, a.message, a.source, a.raised_at AS since
FROM alerts a WHERE a.server_id = %(server_id)s AND a.resolved_at IS NULL
UNION ALL
SELECT 'anomaly', x.id, x.kind, x.description, x.source, x.detected_at
FROM anomalies x WHERE x.server_id = %(server_id)s AND x.resolved_at IS NULL
ORDER BY since DESC, id DESC;

-- name: dashboard_maintenance
-- Open and future maintenance windows of a server.
SELECT m.id, s.name AS server_name, m.starts_at, m.ends_at, m.reason, m.created_by,
       (now() >= m.starts_at AND now() < m.ends_at) AS active
FROM maintenance_windows m JOIN servers s ON s.id = m.server_id
WHERE m.server_id = %(server_id)s AND m.ends_at > now()
ORDER BY m.starts_at;
