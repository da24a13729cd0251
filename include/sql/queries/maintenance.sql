-- Named queries of maintenance windows (plugins/heartbeat/store/maintenance.py). Parameters are
-- bound by psycopg.

-- name: add_maintenance
-- Nothing returned: no such server.
INSERT INTO maintenance_windows (server_id, starts_at, ends_at, reason, created_by)
SELECT id, %(starts_at)s, %(ends_at)s, %(reason)s, %(created_by)s FROM servers WHERE name = %(name)s
RETURNING id, %(name)s::text AS server_name, starts_at, ends_at, reason, created_by,
          (%(as_of)s >= starts_at AND %(as_of)s < ends_at) AS active;

-- name: list_maintenance
-- Open and future windows, or all of them with %(all)s.
SELECT m.id, s.name AS server_name, m.starts_at, m.ends_at, m.reason, m.created_by,
       (%(as_of)s >= m.starts_at AND %(as_of)s < m.ends_at) AS active
FROM maintenance_windows m JOIN servers s ON s.id = m.server_id
WHERE %(all)s OR m.ends_at > %(as_of)s
ORDER BY m.starts_at, m.id;

-- name: end_maintenance
-- End a server's open windows now (future ones stay). Nothing returned: no such server.
WITH target AS (
    SELECT id FROM servers WHERE name = %(name)s
), ended AS (
    UPDATE maintenance_windows m
    SET ends_at = GREATEST(%(as_of)s, m.starts_at + interval '1 microsecond')
    FROM target t
    WHERE m.server_id = t.id AND %(as_of)s >= m.starts_at AND %(as_of)s < m.ends_at
    RETURNING m.id
)
SELECT (SELECT count(*) FROM ended) AS ended FROM target;
