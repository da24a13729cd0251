-- server_status: what the last cycle decided, with the columns the table of that name had.
-- server_status_decided holds the decision and is written only when it changes (migration 007);
-- the heartbeat and its age come from heartbeats, the age taken at the last evaluation
-- (status_evaluation). The reason holds no age (010), so it agrees with any age shown beside it.
-- A reason stored by an older version may still hold an "{age}" placeholder: it reads as the age
-- at the evaluation until the next evaluation rewrites it (its reason differs). Between a cycle's
-- writes and its evaluation a server's new heartbeat already shows, with an age of 0 s, under the
-- status decided before it.
CREATE OR REPLACE VIEW server_status AS
SELECT d.server_id,
       d.status,
       replace(d.reason_template, '{age}', coalesce(floor(a.age_s)::bigint::text, '?')) AS reason,
       h.last_success_at AS last_heartbeat_at,
       a.age_s AS heartbeat_age_s,
       d.active_alerts,
       d.active_anomalies,
       d.status_since,
       a.evaluated_at,
       d.flapping
FROM server_status_decided d
LEFT JOIN heartbeats h ON h.server_id = d.server_id
LEFT JOIN status_evaluation e ON true
CROSS JOIN LATERAL (
    SELECT GREATEST(d.written_at, e.evaluated_at) AS evaluated_at,
           CASE WHEN h.last_success_at IS NOT NULL
                THEN GREATEST(0, date_part('epoch', GREATEST(d.written_at, e.evaluated_at) - h.last_success_at))
           END AS age_s
) a;
COMMENT ON VIEW server_status IS
    'Per server, the status the last cycle decided, its reason and the heartbeat age at that evaluation.';

-- Rows written by hand (tests, fixtures) go to the table behind the view.
CREATE OR REPLACE FUNCTION server_status_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO server_status_decided (server_id, status, reason_template, active_alerts, active_anomalies,
                                       flapping, status_since, written_at)
    VALUES (NEW.server_id, NEW.status, NEW.reason, coalesce(NEW.active_alerts, 0),
            coalesce(NEW.active_anomalies, 0), coalesce(NEW.flapping, false), NEW.status_since,
            NEW.evaluated_at);
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER server_status_insert
    INSTEAD OF INSERT ON server_status FOR EACH ROW EXECUTE FUNCTION server_status_insert();

-- The roles of migration 004 read it as they read the table it replaces.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_reader') THEN
        GRANT SELECT ON server_status TO heartbeat_reader;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_pipeline') THEN
        GRANT SELECT ON server_status TO heartbeat_pipeline;
    END IF;
END $$;
