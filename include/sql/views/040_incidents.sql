-- Shared-cause incidents and acknowledgements, for dashboards and other tools.

-- Open incidents: what they share, how many of how many servers, since when, who is on it.
CREATE OR REPLACE VIEW open_incidents AS
SELECT i.id AS incident_id,
       i.dimension,
       i.group_key,
       i.error_class,
       m.members,
       m.still_failing,
       i.population,
       i.first_failed_at,
       i.opened_at,
       a.acknowledged_by,
       a.reason AS acknowledged_reason,
       a.expires_at AS acknowledged_until,
       m.member_names
FROM incidents i
CROSS JOIN LATERAL (
    SELECT count(*) AS members,
           count(*) FILTER (WHERE im.left_at IS NULL) AS still_failing,
           array_agg(s.name ORDER BY s.name) AS member_names
    FROM incident_members im JOIN servers s ON s.id = im.server_id
    WHERE im.incident_id = i.id
) m
LEFT JOIN LATERAL (
    SELECT ack.acknowledged_by, ack.reason, ack.expires_at FROM acknowledgements ack
    WHERE ack.incident_id = i.id AND ack.ended_at IS NULL AND (ack.expires_at IS NULL OR ack.expires_at > now())
    ORDER BY ack.created_at DESC LIMIT 1
) a ON true
WHERE i.closed_at IS NULL;
COMMENT ON VIEW open_incidents IS
    'Shared-cause incidents still open: members, population, since when, and the active acknowledgement.';

-- Active acknowledgements (not ended, not expired), of servers and of incidents.
CREATE OR REPLACE VIEW acknowledgements_active AS
SELECT a.id, s.name AS server_name, a.incident_id, a.acknowledged_by, a.reason, a.created_at, a.expires_at
FROM acknowledgements a LEFT JOIN servers s ON s.id = a.server_id
WHERE a.ended_at IS NULL AND (a.expires_at IS NULL OR a.expires_at > now());

-- Per server: its open incident (if any) and its active acknowledgement (if any).
CREATE OR REPLACE VIEW server_incident_state AS
SELECT s.id AS server_id, s.name AS server_name,
       (SELECT im.incident_id FROM incident_members im JOIN incidents i ON i.id = im.incident_id
        WHERE im.server_id = s.id AND i.closed_at IS NULL AND im.left_at IS NULL
        ORDER BY im.incident_id DESC LIMIT 1) AS incident_id,
       (SELECT a.acknowledged_by FROM acknowledgements a
        WHERE a.server_id = s.id AND a.ended_at IS NULL AND (a.expires_at IS NULL OR a.expires_at > now())
        ORDER BY a.created_at DESC LIMIT 1) AS acknowledged_by,
       p.name AS parent_name, s.parent_kind
FROM servers s LEFT JOIN servers p ON p.id = s.parent_id;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_reader') THEN
        GRANT SELECT ON open_incidents, acknowledgements_active, server_incident_state TO heartbeat_reader;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_pipeline') THEN
        GRANT SELECT ON open_incidents, acknowledgements_active, server_incident_state TO heartbeat_pipeline;
    END IF;
    -- People acknowledge as other systems raise alerts: the Fleet page's connection (a login in
    -- heartbeat_reader and heartbeat_inputs) or a tool's.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_inputs') THEN
        GRANT SELECT ON incidents, server_status_decided TO heartbeat_inputs;
        GRANT SELECT, INSERT ON acknowledgements TO heartbeat_inputs;
        -- An escalation by hand is sent and recorded in the ledger by the page's process.
        GRANT SELECT, INSERT, UPDATE ON notification_log TO heartbeat_inputs;
    END IF;
END $$;
