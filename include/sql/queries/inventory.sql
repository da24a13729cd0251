-- Named queries for the inventory and the inputs (alerts, anomalies) the command line edits.

-- name: insert_server
INSERT INTO servers (name, host, port, username, conn_id, enabled, host_key, host_key_pinned_at)
VALUES (%(name)s, %(host)s, %(port)s, %(username)s, %(conn_id)s, %(enabled)s, %(host_key)s,
        CASE WHEN %(host_key)s::text IS NOT NULL THEN now() END)
RETURNING id;

-- name: upsert_server
INSERT INTO servers AS s (name, host, port, username, conn_id, enabled, host_key, host_key_pinned_at)
VALUES (%(name)s, %(host)s, %(port)s, %(username)s, %(conn_id)s, %(enabled)s, %(host_key)s,
        CASE WHEN %(host_key)s::text IS NOT NULL THEN now() END)
ON CONFLICT (name) DO UPDATE SET
    host = EXCLUDED.host, port = EXCLUDED.port, username = EXCLUDED.username,
    conn_id = EXCLUDED.conn_id, enabled = EXCLUDED.enabled,
    host_key = coalesce(EXCLUDED.host_key, s.host_key),
    host_key_pinned_at = CASE WHEN EXCLUDED.host_key IS NOT NULL THEN now() ELSE s.host_key_pinned_at END,
    updated_at = now()
RETURNING id, (xmax = 0) AS inserted;

-- name: list_servers
SELECT s.id, s.name, s.host, s.port, s.username, s.conn_id, s.enabled, s.host_key, s.created_at
FROM servers s ORDER BY s.name;

-- name: server_by_name
SELECT id, name, host, port, username, conn_id, enabled, host_key FROM servers WHERE name = %(name)s;

-- name: delete_server
DELETE FROM servers WHERE name = %(name)s RETURNING id;

-- name: set_server_enabled
UPDATE servers SET enabled = %(enabled)s, updated_at = now() WHERE name = %(name)s RETURNING id;

-- name: presented_host_key
SELECT s.id, s.host_key AS pinned, h.presented_host_key AS presented
FROM servers s LEFT JOIN heartbeats h ON h.server_id = s.id WHERE s.name = %(name)s;

-- name: accept_host_key
UPDATE servers SET host_key = %(host_key)s, host_key_pinned_at = now(), updated_at = now()
WHERE id = %(server_id)s;

-- name: resolve_host_key_alerts
UPDATE alerts SET resolved_at = now()
WHERE server_id = %(server_id)s AND kind = 'host_key_changed' AND resolved_at IS NULL;

-- name: raise_alert
INSERT INTO alerts (server_id, kind, message, source)
SELECT id, %(kind)s, %(message)s, %(source)s FROM servers WHERE name = %(name)s
RETURNING id;

-- name: resolve_alert
UPDATE alerts SET resolved_at = now() WHERE id = %(id)s AND resolved_at IS NULL RETURNING id;

-- name: list_alerts
SELECT a.id, s.name, a.kind, a.message, a.source, a.raised_at, a.resolved_at
FROM alerts a JOIN servers s ON s.id = a.server_id
WHERE %(all)s OR a.resolved_at IS NULL
ORDER BY a.raised_at DESC, a.id DESC;

-- name: raise_anomaly
INSERT INTO anomalies (server_id, kind, description, source)
SELECT id, %(kind)s, %(message)s, %(source)s FROM servers WHERE name = %(name)s
RETURNING id;

-- name: resolve_anomaly
UPDATE anomalies SET resolved_at = now() WHERE id = %(id)s AND resolved_at IS NULL RETURNING id;

-- name: list_anomalies
SELECT x.id, s.name, x.kind, x.description AS message, x.source, x.detected_at AS raised_at, x.resolved_at
FROM anomalies x JOIN servers s ON s.id = x.server_id
WHERE %(all)s OR x.resolved_at IS NULL
ORDER BY x.detected_at DESC, x.id DESC;

-- name: status_report
SELECT l.server_name, l.host, l.port, l.status, l.reason, l.last_heartbeat_at, l.heartbeat_age_s,
       l.active_alerts, l.active_anomalies, l.last_attempt_at, l.last_error_class, l.last_error_message,
       l.consecutive_failures, l.total_ms
FROM heartbeat_status_at(%(as_of)s, %(offline_after_s)s, %(failure_threshold)s, %(recovery_threshold)s,
                         %(stale_after_s)s) l
ORDER BY CASE l.status WHEN 'OFFLINE' THEN 0 WHEN 'WARNING' THEN 1 ELSE 2 END, l.server_name;

-- name: last_cycle
SELECT cycle_id, started_at, finished_at, servers, ok, failed, online, warning, offline
FROM cycles WHERE finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1;
