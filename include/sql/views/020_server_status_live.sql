-- Status computed at read time from the timestamps: truthful even when no cycle has run for a while.
CREATE OR REPLACE VIEW server_status_live AS
SELECT *
FROM heartbeat_status_at(
    now(),
    coalesce((SELECT value::double precision FROM monitor_settings WHERE key = 'offline_after_s'), 60)
);
COMMENT ON VIEW server_status_live IS 'Per-server status computed now, from heartbeats, alerts and anomalies.';

-- Counts per status, computed now.
CREATE OR REPLACE VIEW fleet_summary AS
SELECT count(*) FILTER (WHERE status = 'ONLINE')  AS online,
       count(*) FILTER (WHERE status = 'WARNING') AS warning,
       count(*) FILTER (WHERE status = 'OFFLINE') AS offline,
       count(*)                                    AS total,
       now()                                       AS as_of
FROM server_status_live;
