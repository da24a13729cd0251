-- The status rules in SQL, for dashboards and for materialisation. Keep in step with
-- plugins/heartbeat/status.py: a test holds both to the same table of cases.
--   OFFLINE: no heartbeat, or the last one is older than offline_after_s
--   ONLINE:  a heartbeat within offline_after_s and no active alert or anomaly
--   WARNING: a heartbeat within offline_after_s but an active alert or anomaly
CREATE OR REPLACE FUNCTION heartbeat_status_at(as_of timestamptz, offline_after_s double precision)
RETURNS TABLE (
    server_id         bigint,
    server_name       text,
    host              text,
    port              integer,
    status            text,
    reason            text,
    last_heartbeat_at timestamptz,
    heartbeat_age_s   double precision,
    active_alerts     integer,
    active_anomalies  integer,
    last_attempt_at   timestamptz,
    last_error_class  text,
    last_error_message text,
    consecutive_failures integer,
    total_ms          real
)
LANGUAGE sql STABLE AS $$
    WITH base AS (
        SELECT s.id, s.name, s.host, s.port,
               h.last_success_at, h.last_attempt_at, h.last_error_class, h.last_error_message,
               h.consecutive_failures, h.total_ms,
               -- GREATEST ignores NULLs: keep "never" as NULL explicitly
               CASE WHEN h.last_success_at IS NOT NULL
                    THEN GREATEST(0, extract(epoch FROM as_of - h.last_success_at))::double precision END AS age_s,
               (SELECT count(*) FROM alerts a WHERE a.server_id = s.id AND a.resolved_at IS NULL)::integer AS n_alerts,
               (SELECT count(*) FROM anomalies x WHERE x.server_id = s.id AND x.resolved_at IS NULL)::integer AS n_anomalies,
               CASE WHEN h.last_attempt_at IS NULL OR h.last_error_class IS NULL THEN ''
                    ELSE '; last attempt: ' || coalesce(e.words, h.last_error_class) END AS attempt_words
        FROM servers s
        LEFT JOIN heartbeats h ON h.server_id = s.id
        LEFT JOIN error_classes e ON e.error_class = h.last_error_class
        WHERE s.enabled
    )
    SELECT id, name, host, port,
        CASE WHEN age_s IS NULL OR age_s > offline_after_s THEN 'OFFLINE'
             WHEN n_alerts > 0 OR n_anomalies > 0 THEN 'WARNING'
             ELSE 'ONLINE' END,
        CASE WHEN age_s IS NULL AND last_attempt_at IS NULL THEN 'no heartbeat yet; not probed yet'
             WHEN age_s IS NULL THEN 'no heartbeat yet' || attempt_words
             WHEN age_s > offline_after_s THEN 'no heartbeat for ' || floor(age_s)::bigint || ' s' || attempt_words
             WHEN n_alerts > 0 OR n_anomalies > 0 THEN
                 'heartbeat ' || floor(age_s)::bigint || ' s ago; ' || concat_ws(', ',
                     CASE WHEN n_alerts = 1 THEN '1 active alert'
                          WHEN n_alerts > 1 THEN n_alerts || ' active alerts' END,
                     CASE WHEN n_anomalies = 1 THEN '1 active anomaly'
                          WHEN n_anomalies > 1 THEN n_anomalies || ' active anomalies' END)
             ELSE 'heartbeat ' || floor(age_s)::bigint || ' s ago' END,
        last_success_at, age_s, n_alerts, n_anomalies, last_attempt_at, last_error_class,
        last_error_message, coalesce(consecutive_failures, 0), total_ms
    FROM base
$$;
