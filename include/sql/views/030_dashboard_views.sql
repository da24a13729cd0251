-- Views for dashboards (the Fleet heartbeat page, Grafana, ad-hoc SQL). Repeatable: re-applied by
-- every `heartbeat migrate`. Figures over a time window are functions of explicit times
-- (heartbeat_uptime, heartbeat_latency), so they can be tested and queried for any period; the
-- views apply them to now().
--
--   dashboard_server_status   one row per enabled server: live status, reason, age, last latency,
--                             flapping, maintenance, uptime over 24 h / 7 d / 30 d
--   dashboard_fleet_summary   counts per status, servers in maintenance, the monitor's health (last
--                             cycle, its duration, stalled or not) and the thresholds in force
--   server_uptime             uptime per server over 24 h / 7 d / 30 d
--   server_latency_1h         login latency percentiles per server over the last hour
--   recent_status_changes     status changes of the last 7 days
--   probe_latency             every attempt with its latency (for time series)
--   maintenance_active        maintenance windows open now
--
-- Uptime is the time spent ONLINE or WARNING divided by the time observed (from the server's first
-- recorded status on), both without maintenance windows; NULL when nothing was observed. It is
-- built from status_events: a status holds from its change to the next change.
--
-- Dropped and created afresh on every migrate (nothing in the schema depends on them), so their
-- columns can change; 010 drops the status function with CASCADE, which drops several of them anyway.
DROP VIEW IF EXISTS dashboard_server_status, dashboard_fleet_summary, server_uptime, server_latency_1h,
    recent_status_changes, probe_latency, maintenance_active;
DROP FUNCTION IF EXISTS heartbeat_uptime(timestamptz, timestamptz);
DROP FUNCTION IF EXISTS heartbeat_latency(timestamptz, timestamptz);
DROP FUNCTION IF EXISTS heartbeat_seconds(tstzmultirange);


-- Seconds covered by a set of time ranges.
CREATE FUNCTION heartbeat_seconds(ranges tstzmultirange)
RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(sum(extract(epoch FROM upper(r) - lower(r))), 0)::double precision FROM unnest(ranges) AS r
$$;

-- Uptime also leaves out the time a bastion on the server's path was down (path_outages): the
-- server was not observed then, whatever its status read.
CREATE FUNCTION heartbeat_uptime(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (
    server_id     bigint,
    server_name   text,
    up_s          double precision,
    observed_s    double precision,
    maintenance_s double precision,
    uptime_pct    double precision,
    path_down_s   double precision
)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE spans AS (
        SELECT e.server_id, e.to_status,
               tstzrange(e.at, coalesce(lead(e.at) OVER (PARTITION BY e.server_id ORDER BY e.at, e.id), to_ts),
                         '[)') * tstzrange(from_ts, to_ts, '[)') AS span
        FROM status_events e
        WHERE e.at < to_ts
    ), per_server AS (
        SELECT sp.server_id,
               range_agg(sp.span) AS observed,
               range_agg(sp.span) FILTER (WHERE sp.to_status IN ('ONLINE', 'WARNING')) AS up
        FROM spans sp
        WHERE NOT isempty(sp.span)
        GROUP BY sp.server_id
    ), maintenance AS (
        SELECT m.server_id,
               range_agg(tstzrange(m.starts_at, m.ends_at, '[)') * tstzrange(from_ts, to_ts, '[)')) AS ranges
        FROM maintenance_windows m
        WHERE tstzrange(m.starts_at, m.ends_at, '[)') && tstzrange(from_ts, to_ts, '[)')
        GROUP BY m.server_id
    ), chain AS (  -- the bastions on the way to each server (at most three hops; bounded anyway)
        SELECT s.id AS server_id, b.id AS bastion_id, b.via, 1 AS depth
        FROM servers s JOIN servers b ON b.name = s.via
        UNION ALL
        SELECT c.server_id, b.id, b.via, c.depth + 1
        FROM chain c JOIN servers b ON b.name = c.via
        WHERE c.depth < 4
    ), path_down AS (  -- when a bastion hop on the way was down: the server was not observed
        SELECT c.server_id,
               range_agg(tstzrange(o.started_at, coalesce(o.ended_at, to_ts), '[)')
                         * tstzrange(from_ts, to_ts, '[)')) AS ranges
        FROM chain c JOIN path_outages o ON o.bastion_id = c.bastion_id
        WHERE o.started_at < to_ts AND coalesce(o.ended_at, to_ts) > from_ts
        GROUP BY c.server_id
    ), figures AS (
        SELECT s.id, s.name,
               heartbeat_seconds(coalesce(p.up, '{}') - coalesce(m.ranges, '{}') - coalesce(d.ranges, '{}')) AS up_s,
               heartbeat_seconds(coalesce(p.observed, '{}') - coalesce(m.ranges, '{}') - coalesce(d.ranges, '{}'))
                   AS observed_s,
               heartbeat_seconds(coalesce(p.observed, '{}') * coalesce(m.ranges, '{}')) AS maintenance_s,
               heartbeat_seconds((coalesce(p.observed, '{}') - coalesce(m.ranges, '{}')) * coalesce(d.ranges, '{}'))
                   AS path_down_s
        FROM servers s
        LEFT JOIN per_server p ON p.server_id = s.id
        LEFT JOIN maintenance m ON m.server_id = s.id
        LEFT JOIN path_down d ON d.server_id = s.id
        WHERE s.enabled
    )
    SELECT f.id, f.name, f.up_s, f.observed_s, f.maintenance_s,
           CASE WHEN f.observed_s > 0 THEN 100.0 * f.up_s / f.observed_s END, f.path_down_s
    FROM figures f
$$;
COMMENT ON FUNCTION heartbeat_uptime(timestamptz, timestamptz) IS
    'Per enabled server: seconds ONLINE or WARNING, seconds observed and seconds in maintenance in [from_ts, to_ts), the uptime percentage without maintenance and without the time a bastion on its path was down (path_down_s).';

-- Login latency (probe_history.total_ms of successful attempts) per enabled server in [from_ts, to_ts).
CREATE FUNCTION heartbeat_latency(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (
    server_id   bigint,
    server_name text,
    attempts    bigint,
    successes   bigint,
    p50_ms      double precision,
    p90_ms      double precision,
    p95_ms      double precision,
    p99_ms      double precision,
    max_ms      double precision,
    avg_ms      double precision
)
LANGUAGE sql STABLE AS $$
    SELECT s.id, s.name,
           count(p.server_id),
           count(p.server_id) FILTER (WHERE p.ok),
           percentile_cont(0.50) WITHIN GROUP (ORDER BY p.total_ms) FILTER (WHERE p.ok),
           percentile_cont(0.90) WITHIN GROUP (ORDER BY p.total_ms) FILTER (WHERE p.ok),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY p.total_ms) FILTER (WHERE p.ok),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY p.total_ms) FILTER (WHERE p.ok),
           (max(p.total_ms) FILTER (WHERE p.ok))::double precision,
           avg(p.total_ms) FILTER (WHERE p.ok)
    FROM servers s
    LEFT JOIN probe_history p ON p.server_id = s.id AND p.attempted_at >= from_ts AND p.attempted_at < to_ts
    WHERE s.enabled
    GROUP BY s.id, s.name
$$;

CREATE VIEW maintenance_active AS
SELECT m.id, m.server_id, s.name AS server_name, m.starts_at, m.ends_at, m.reason, m.created_by
FROM maintenance_windows m
JOIN servers s ON s.id = m.server_id
WHERE now() >= m.starts_at AND now() < m.ends_at;
COMMENT ON VIEW maintenance_active IS 'Maintenance windows open now.';

CREATE VIEW server_uptime AS
SELECT s.id AS server_id, s.name AS server_name,
       d.uptime_pct AS uptime_24h_pct, w.uptime_pct AS uptime_7d_pct, m.uptime_pct AS uptime_30d_pct,
       d.up_s AS up_24h_s, d.observed_s AS observed_24h_s, d.maintenance_s AS maintenance_24h_s,
       w.up_s AS up_7d_s, w.observed_s AS observed_7d_s, w.maintenance_s AS maintenance_7d_s,
       m.up_s AS up_30d_s, m.observed_s AS observed_30d_s, m.maintenance_s AS maintenance_30d_s
FROM servers s
JOIN heartbeat_uptime(now() - interval '24 hours', now()) d ON d.server_id = s.id
JOIN heartbeat_uptime(now() - interval '7 days', now()) w ON w.server_id = s.id
JOIN heartbeat_uptime(now() - interval '30 days', now()) m ON m.server_id = s.id;
COMMENT ON VIEW server_uptime IS
    'Uptime per enabled server over 24 h, 7 d and 30 d: time ONLINE or WARNING over time observed, maintenance left out.';

CREATE VIEW server_latency_1h AS
SELECT * FROM heartbeat_latency(now() - interval '1 hour', now());
COMMENT ON VIEW server_latency_1h IS 'Login latency percentiles (ms) per enabled server over the last hour.';

CREATE VIEW dashboard_server_status AS
SELECT l.server_id, l.server_name, l.host, l.port, l.status, l.reason,
       l.last_heartbeat_at, l.heartbeat_age_s, l.last_attempt_at, l.last_error_class, l.last_error_message,
       l.consecutive_failures, l.active_alerts, l.active_anomalies, l.flapping, l.flap_percent,
       CASE WHEN h.last_ok THEN h.total_ms END AS last_latency_ms,
       CASE WHEN ev.to_status = l.status THEN ev.at END AS status_since,
       mw.ends_at IS NOT NULL AS in_maintenance,
       mw.ends_at AS maintenance_until,
       mw.reason AS maintenance_reason,
       u.uptime_24h_pct, u.uptime_7d_pct, u.uptime_30d_pct,
       sv.via,
       l.site, h.last_worker
FROM server_status_live l
JOIN servers sv ON sv.id = l.server_id
LEFT JOIN heartbeats h ON h.server_id = l.server_id
LEFT JOIN LATERAL (
    SELECT e.at, e.to_status FROM status_events e
    WHERE e.server_id = l.server_id ORDER BY e.at DESC, e.id DESC LIMIT 1
) ev ON true
LEFT JOIN LATERAL (
    SELECT a.ends_at, a.reason FROM maintenance_active a
    WHERE a.server_id = l.server_id ORDER BY a.ends_at DESC LIMIT 1
) mw ON true
LEFT JOIN server_uptime u ON u.server_id = l.server_id;
COMMENT ON VIEW dashboard_server_status IS
    'One row per enabled server for dashboards: live status and reason, heartbeat age, last latency, maintenance, uptime, the bastion it is reached through.';

CREATE VIEW dashboard_fleet_summary AS
SELECT f.online, f.warning, f.offline, f.stale, f.total,
       (SELECT count(DISTINCT a.server_id) FROM maintenance_active a
        JOIN servers s ON s.id = a.server_id AND s.enabled) AS in_maintenance,
       m.last_cycle_id, m.last_cycle_started_at, m.last_cycle_finished_at, m.last_cycle_duration_s,
       m.last_cycle_age_s, m.servers AS last_cycle_servers, m.ok AS last_cycle_ok, m.failed AS last_cycle_failed,
       m.stalled, m.health,
       coalesce((SELECT value FROM monitor_settings WHERE key = 'offline_after_s'), '60')::double precision
           AS offline_after_s,
       coalesce((SELECT value FROM monitor_settings WHERE key = 'stale_after_s'), '60')::double precision
           AS stale_after_s,
       f.as_of,
       m.sites
FROM fleet_summary f CROSS JOIN monitor_health m;
COMMENT ON VIEW dashboard_fleet_summary IS
    'Counts per status now, servers in maintenance, the monitor''s health (monitor_health) and its thresholds.';

CREATE VIEW recent_status_changes AS
SELECT e.id AS event_id, e.at, e.server_id, s.name AS server_name, e.from_status, e.to_status, e.reason,
       EXISTS (SELECT 1 FROM maintenance_windows m
               WHERE m.server_id = e.server_id AND e.at >= m.starts_at AND e.at < m.ends_at) AS in_maintenance
FROM status_events e
JOIN servers s ON s.id = e.server_id
WHERE e.at >= now() - interval '7 days';
COMMENT ON VIEW recent_status_changes IS 'Status changes of the last 7 days, flagged when inside a maintenance window.';

CREATE VIEW probe_latency AS
SELECT p.attempted_at, p.server_id, s.name AS server_name, p.ok, p.error_class,
       p.total_ms, p.tcp_connect_ms, p.ssh_handshake_ms, p.auth_ms
FROM probe_history p
JOIN servers s ON s.id = p.server_id;
COMMENT ON VIEW probe_latency IS 'Every attempt kept in probe_history, with its server name and latencies (ms).';
