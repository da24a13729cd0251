-- Named queries of the inventory (plugins/heartbeat/store/inventory.py). Parameters are bound by
-- psycopg (%(name)s), never formatted into the text.

-- name: load_enabled_servers
SELECT id, name, host, port, username, conn_id, host_key, via, site
FROM servers
WHERE enabled
ORDER BY id;

-- name: count_enabled_servers
SELECT count(*) AS n FROM servers WHERE enabled;

-- name: load_enabled_servers_by_id
-- One shard's servers as they are now (a shard names its servers by id), those still in the
-- shard's site (%(site)s NULL: any): a server moved to another site is probed from there next cycle.
SELECT id, name, host, port, username, conn_id, host_key, via, site
FROM servers
WHERE enabled AND id = ANY(%(server_ids)s) AND (%(site)s::text IS NULL OR site = %(site)s::text)
ORDER BY id;

-- name: load_servers_by_name
-- The bastions the servers of a shard are reached through, enabled or not (a disabled one is reported).
SELECT id, name, host, port, username, conn_id, host_key, via, enabled
FROM servers
WHERE name = ANY(%(names)s);

-- name: bastion_nodes
-- What the bastion check needs of every server (inventory.check_bastions).
SELECT name, via, enabled FROM servers;

-- name: servers_behind
SELECT name FROM servers WHERE via = %(name)s ORDER BY name;

-- name: insert_server
INSERT INTO servers (name, host, port, username, conn_id, enabled, host_key, via, host_key_pinned_at, site)
VALUES (%(name)s, %(host)s, %(port)s, %(username)s, %(conn_id)s, %(enabled)s, %(host_key)s, %(via)s,
        CASE WHEN %(host_key)s::text IS NOT NULL THEN now() END, %(site)s)
RETURNING id;

-- name: upsert_server
INSERT INTO servers AS s (name, host, port, username, conn_id, enabled, host_key, via, host_key_pinned_at, site)
VALUES (%(name)s, %(host)s, %(port)s, %(username)s, %(conn_id)s, %(enabled)s, %(host_key)s, %(via)s,
        CASE WHEN %(host_key)s::text IS NOT NULL THEN now() END, %(site)s)
ON CONFLICT (name) DO UPDATE SET
    host = EXCLUDED.host, port = EXCLUDED.port, username = EXCLUDED.username,
    conn_id = EXCLUDED.conn_id, enabled = EXCLUDED.enabled, via = EXCLUDED.via, site = EXCLUDED.site,
    host_key = coalesce(EXCLUDED.host_key, s.host_key),
    host_key_pinned_at = CASE WHEN EXCLUDED.host_key IS NOT NULL THEN now() ELSE s.host_key_pinned_at END,
    updated_at = now()
RETURNING id, (xmax = 0) AS inserted;

-- name: list_servers
SELECT s.id, s.name, s.host, s.port, s.username, s.conn_id, s.enabled, s.host_key, s.created_at, s.via, s.site
FROM servers s ORDER BY s.name;

-- name: set_server_site
UPDATE servers SET site = %(site)s, updated_at = now() WHERE name = %(name)s RETURNING id;

-- name: delete_server
DELETE FROM servers WHERE name = %(name)s RETURNING id;

-- name: set_server_enabled
UPDATE servers SET enabled = %(enabled)s, updated_at = now() WHERE name = %(name)s RETURNING id;

-- name: presented_host_key
SELECT s.id AS server_id, s.host_key AS pinned, h.presented_host_key AS presented
FROM servers s LEFT JOIN heartbeats h ON h.server_id = s.id WHERE s.name = %(name)s;

-- name: accept_host_key
UPDATE servers SET host_key = %(host_key)s, host_key_pinned_at = now(), updated_at = now()
WHERE id = %(server_id)s;

-- name: resolve_host_key_alerts
UPDATE alerts SET resolved_at = now()
WHERE server_id = %(server_id)s AND kind = 'host_key_changed' AND resolved_at IS NULL;
