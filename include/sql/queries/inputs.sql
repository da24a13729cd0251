-- Named queries of the inputs, alerts and anomalies (plugins/heartbeat/store/inputs.py).

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
