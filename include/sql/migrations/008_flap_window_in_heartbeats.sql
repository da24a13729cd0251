-- The flap window kept with the heartbeat. Flap detection read each candidate server's last
-- attempts back from probe_history after every shard (about a tenth of writing a shard at 100,000
-- servers); the heartbeat update now carries the last results along and returns them.

-- The results of the last attempts, oldest first, as many as the flap window (HEARTBEAT_FLAP_WINDOW).
ALTER TABLE heartbeats ADD COLUMN recent_oks boolean[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN heartbeats.recent_oks IS
    'Results (true: login ok) of the last attempts, oldest first, as many as the flap window.';

-- Filled from the history once, through its per-server index: up to 32 attempts (a window set
-- larger fills up as cycles run; flapping needs a full window to start).
UPDATE heartbeats h SET recent_oks = w.oks
FROM (
    SELECT hb.server_id, r.oks
    FROM heartbeats hb
    CROSS JOIN LATERAL (
        SELECT array_agg(x.ok ORDER BY x.attempted_at) AS oks
        FROM (SELECT ph.ok, ph.attempted_at FROM probe_history ph
              WHERE ph.server_id = hb.server_id
              ORDER BY ph.attempted_at DESC LIMIT 32) x
    ) r
    WHERE r.oks IS NOT NULL
) w
WHERE h.server_id = w.server_id;

-- The last results of a server after one more attempt: appended, or replacing the last one when
-- the attempt replaces its cycle's earlier one (a retried shard); the newest `size` kept. One
-- expression, so that the planner inlines it into the heartbeat update.
CREATE FUNCTION heartbeat_recent_oks(oks boolean[], ok boolean, replaces_last boolean, size integer)
RETURNS boolean[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (CASE WHEN replaces_last AND cardinality(oks) > 0 THEN trim_array(oks, 1) ELSE oks END || ok)
           [GREATEST(1, cardinality(oks) + CASE WHEN replaces_last AND cardinality(oks) > 0 THEN 1 ELSE 2 END
                        - size):]
$$;
