-- Status computed at read time from the timestamps: truthful even when no cycle has run for a
-- while. When the monitor itself has stalled, servers read STALE instead of all turning OFFLINE.
CREATE OR REPLACE VIEW server_status_live AS
WITH settings AS (
    SELECT
        coalesce(max(value) FILTER (WHERE key = 'offline_after_s'), '60')::double precision AS offline_after_s,
        coalesce(max(value) FILTER (WHERE key = 'failure_threshold'), '0')::integer AS failure_threshold,
        coalesce(max(value) FILTER (WHERE key = 'recovery_threshold'), '1')::integer AS recovery_threshold,
        coalesce(max(value) FILTER (WHERE key = 'stale_after_s'), '60')::double precision AS stale_after_s
    FROM monitor_settings
)
SELECT l.*
FROM settings s,
     LATERAL heartbeat_status_at(now(), s.offline_after_s, s.failure_threshold, s.recovery_threshold,
                                 s.stale_after_s, s.stale_after_s) l;
COMMENT ON VIEW server_status_live IS 'Per-server status computed now, from heartbeats, alerts and anomalies.';

-- Counts per status, computed now.
CREATE OR REPLACE VIEW fleet_summary AS
SELECT count(*) FILTER (WHERE status = 'ONLINE')  AS online,
       count(*) FILTER (WHERE status = 'WARNING') AS warning,
       count(*) FILTER (WHERE status = 'OFFLINE') AS offline,
       count(*) FILTER (WHERE status = 'STALE')   AS stale,
       count(*)                                    AS total,
       now()                                       AS as_of
FROM server_status_live;

-- Each site's monitor: the sites that hold enabled servers, the last attempt recorded from each
-- and by which worker, and whether it has stalled (no attempt for stale_after_s: its servers
-- read STALE). A site not yet in site_monitors has not been through a cycle yet.
CREATE OR REPLACE VIEW site_health AS
WITH settings AS (
    SELECT coalesce(max(value) FILTER (WHERE key = 'stale_after_s'), '60')::double precision AS stale_after_s
    FROM monitor_settings
), fleet AS (
    SELECT s.site, count(*)::integer AS servers FROM servers s WHERE s.enabled GROUP BY s.site
)
SELECT f.site,
       f.servers,
       m.last_attempt_at,
       m.last_worker,
       m.last_cycle_id,
       extract(epoch FROM now() - m.last_attempt_at)::double precision AS last_attempt_age_s,
       coalesce(extract(epoch FROM now() - coalesce(m.last_attempt_at, m.expected_since)) > st.stale_after_s, false)
                                                                      AS stalled,
       CASE WHEN m.site IS NULL THEN 'not probed yet'
            WHEN extract(epoch FROM now() - coalesce(m.last_attempt_at, m.expected_since)) <= st.stale_after_s
            THEN 'ok'
            WHEN m.last_attempt_at IS NULL
            THEN 'no probe from site ' || f.site || ' yet (expected since '
                 || to_char(m.expected_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC)'
            ELSE 'no probe from site ' || f.site || ' since '
                 || to_char(m.last_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' END AS health
FROM fleet f CROSS JOIN settings st LEFT JOIN site_monitors m ON m.site = f.site;
COMMENT ON VIEW site_health IS 'Per site: the last attempt recorded from it, by which worker, and whether it has stalled.';

-- The monitor's own health: the last finished cycle, how long it took, what it found, and
-- whether the monitor has stalled (no finished cycle for stale_after_s).
CREATE OR REPLACE VIEW monitor_health AS
WITH last AS (
    SELECT * FROM cycles WHERE finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1
), settings AS (
    SELECT coalesce(max(value) FILTER (WHERE key = 'stale_after_s'), '60')::double precision AS stale_after_s
    FROM monitor_settings
)
SELECT last.cycle_id                                                  AS last_cycle_id,
       last.started_at                                                AS last_cycle_started_at,
       last.finished_at                                               AS last_cycle_finished_at,
       extract(epoch FROM last.finished_at - last.started_at)::double precision AS last_cycle_duration_s,
       extract(epoch FROM now() - last.finished_at)::double precision AS last_cycle_age_s,
       last.servers, last.ok, last.failed, last.online, last.warning, last.offline,
       (last.finished_at IS NULL OR extract(epoch FROM now() - last.finished_at) > settings.stale_after_s)
                                                                      AS stalled,
       CASE WHEN last.finished_at IS NULL THEN 'no cycle has finished yet'
            WHEN extract(epoch FROM now() - last.finished_at) > settings.stale_after_s
            THEN 'monitor stalled since '
                 || to_char(last.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
            ELSE 'ok' END                                             AS health,
       (SELECT coalesce(jsonb_agg(to_jsonb(sh) ORDER BY sh.site), '[]'::jsonb) FROM site_health sh) AS sites
FROM settings LEFT JOIN last ON true;
