-- Named queries of shared-cause incidents and acknowledgements (plugins/heartbeat/store/incidents.py).

-- name: lock_incidents
SELECT pg_advisory_xact_lock(hashtext('heartbeat_incidents'));

-- name: incident_failures
-- Servers OFFLINE now whose latest status change went OFFLINE within the last %(window_s)s, not
-- told on any channel yet, in no open incident and not in a maintenance window.
SELECT s.id AS server_id, s.name AS server_name, s.host, s.conn_id, p.name AS parent_name, s.parent_kind,
       coalesce(h.last_error_class, 'other') AS error_class, e.id AS event_id, e.at, s.via, s.site
FROM server_status_decided d
JOIN servers s ON s.id = d.server_id AND s.enabled
JOIN LATERAL (
    SELECT x.id, x.at, x.to_status FROM status_events x
    WHERE x.server_id = s.id AND x.at <= %(as_of)s ORDER BY x.at DESC, x.id DESC LIMIT 1
) e ON e.to_status = 'OFFLINE'
LEFT JOIN servers p ON p.id = s.parent_id
LEFT JOIN heartbeats h ON h.server_id = s.id
WHERE d.status = 'OFFLINE'
  AND e.at > %(as_of)s::timestamptz - make_interval(secs => %(window_s)s)
  AND NOT EXISTS (SELECT 1 FROM notification_log n WHERE n.event_id = e.id AND n.state = 'sent')
  AND NOT EXISTS (SELECT 1 FROM incident_members m JOIN incidents i ON i.id = m.incident_id
                  WHERE m.server_id = s.id AND i.closed_at IS NULL AND m.left_at IS NULL)
  AND NOT EXISTS (SELECT 1 FROM maintenance_windows w
                  WHERE w.server_id = s.id AND %(as_of)s >= w.starts_at AND %(as_of)s < w.ends_at)
  -- A server not probed because its bastion hop failed, and the bastion itself while its hop is
  -- down, are told once by the path outage (notifications.sql, path_outage_candidates).
  AND h.last_error_class IS DISTINCT FROM 'path_down'
  AND NOT EXISTS (SELECT 1 FROM path_outages o WHERE o.bastion_id = s.id AND o.ended_at IS NULL)
ORDER BY s.name;

-- name: grouping_fleet
-- Every enabled server, with what the incident dimensions read.
SELECT s.id AS server_id, s.name AS server_name, s.host, s.conn_id, p.name AS parent_name, s.parent_kind, s.via,
       s.site
FROM servers s LEFT JOIN servers p ON p.id = s.parent_id
WHERE s.enabled;

-- name: open_incident_causes
SELECT id, dimension, group_key, error_class FROM incidents WHERE closed_at IS NULL;

-- name: open_incident
INSERT INTO incidents (dimension, group_key, error_class, population, first_failed_at, opened_at)
VALUES (%(dimension)s, %(group_key)s, %(error_class)s, %(population)s, %(first_failed_at)s, %(as_of)s)
RETURNING id;

-- name: add_incident_member
INSERT INTO incident_members (incident_id, server_id, event_id, joined_at)
VALUES (%(incident_id)s, %(server_id)s, %(event_id)s, %(as_of)s)
ON CONFLICT (incident_id, server_id) DO UPDATE SET event_id = EXCLUDED.event_id, left_at = NULL;

-- name: leave_recovered_members
-- Members that are no longer OFFLINE (recovered, disabled, removed) leave their open incident; a
-- member whose site has no working monitor (STALE) is not known to have recovered and stays.
UPDATE incident_members m SET left_at = %(as_of)s
FROM incidents i
WHERE i.id = m.incident_id AND i.closed_at IS NULL AND m.left_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM server_status_decided d JOIN servers s ON s.id = d.server_id AND s.enabled
                  WHERE d.server_id = m.server_id AND d.status IN ('OFFLINE', 'STALE'));

-- name: close_recovered_incidents
UPDATE incidents i SET closed_at = %(as_of)s, close_reason = 'every member recovered'
WHERE i.closed_at IS NULL AND i.opened_at <= %(as_of)s
  AND NOT EXISTS (SELECT 1 FROM incident_members m WHERE m.incident_id = i.id AND m.left_at IS NULL)
RETURNING i.id;

-- name: end_acknowledgements
-- An acknowledgement ends when its server is no longer OFFLINE or its incident has closed (one
-- that expired before stays as it is).
UPDATE acknowledgements a SET ended_at = %(as_of)s,
       end_reason = CASE WHEN a.server_id IS NOT NULL THEN 'server recovered' ELSE 'incident closed' END
WHERE a.ended_at IS NULL AND a.created_at <= %(as_of)s AND (a.expires_at IS NULL OR a.expires_at > %(as_of)s)
  AND ((a.server_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM server_status_decided d WHERE d.server_id = a.server_id AND d.status IN ('OFFLINE', 'STALE')))
       OR (a.incident_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM incidents i WHERE i.id = a.incident_id AND i.closed_at IS NOT NULL)))
RETURNING a.id;

-- name: list_incidents
SELECT i.id, i.dimension, i.group_key, i.error_class, i.population, i.first_failed_at, i.opened_at,
       i.closed_at, i.close_reason,
       (SELECT count(*) FROM incident_members m WHERE m.incident_id = i.id) AS members,
       (SELECT count(*) FROM incident_members m WHERE m.incident_id = i.id AND m.left_at IS NULL) AS still_failing,
       (SELECT coalesce(array_agg(s.name ORDER BY s.name), '{}') FROM incident_members m
        JOIN servers s ON s.id = m.server_id WHERE m.incident_id = i.id) AS member_names,
       (SELECT a.acknowledged_by FROM acknowledgements a
        WHERE a.incident_id = i.id AND a.ended_at IS NULL AND (a.expires_at IS NULL OR a.expires_at > %(as_of)s)
        ORDER BY a.created_at DESC LIMIT 1) AS acknowledged_by
FROM incidents i
WHERE (i.closed_at IS NULL OR %(all)s) AND i.opened_at <= %(as_of)s
ORDER BY i.opened_at DESC, i.id DESC
LIMIT %(limit)s;

-- name: server_by_name
SELECT id, name FROM servers WHERE name = %(name)s;

-- name: incident_by_id
SELECT id, closed_at FROM incidents WHERE id = %(id)s;

-- name: server_offline
SELECT 1 AS offline FROM server_status_decided WHERE server_id = %(server_id)s AND status = 'OFFLINE';

-- name: add_acknowledgement
INSERT INTO acknowledgements (server_id, incident_id, acknowledged_by, reason, created_at, expires_at)
VALUES (%(server_id)s, %(incident_id)s, %(acknowledged_by)s, %(reason)s, %(as_of)s, %(expires_at)s)
RETURNING id;

-- name: list_acknowledgements
SELECT a.id, s.name AS server_name, a.incident_id, a.acknowledged_by, a.reason, a.created_at, a.expires_at,
       a.ended_at, a.end_reason,
       (a.ended_at IS NULL AND (a.expires_at IS NULL OR a.expires_at > %(as_of)s)) AS active
FROM acknowledgements a LEFT JOIN servers s ON s.id = a.server_id
WHERE %(all)s OR (a.ended_at IS NULL AND (a.expires_at IS NULL OR a.expires_at > %(as_of)s))
ORDER BY a.created_at DESC, a.id DESC;

-- name: set_parent
UPDATE servers SET parent_id = %(parent_id)s, parent_kind = %(parent_kind)s, updated_at = now()
WHERE id = %(server_id)s RETURNING id;

-- name: ancestors
-- The chain of parents above a server (itself first), stopping at a loop.
WITH RECURSIVE chain(id, parent_id, depth, path) AS (
    SELECT id, parent_id, 0, ARRAY[id] FROM servers WHERE id = %(server_id)s
    UNION ALL
    SELECT s.id, s.parent_id, c.depth + 1, c.path || s.id
    FROM chain c JOIN servers s ON s.id = c.parent_id
    WHERE NOT s.id = ANY(c.path) AND c.depth < 1000
)
SELECT c.id, s.name FROM chain c JOIN servers s ON s.id = c.id ORDER BY c.depth;

-- name: server_incident_states
-- Servers in an open incident or with an active acknowledgement.
SELECT server_id, incident_id, acknowledged_by FROM server_incident_state
WHERE incident_id IS NOT NULL OR acknowledged_by IS NOT NULL;
