-- The status decider production uses: heartbeat_status_evaluate decides every enabled server's
-- status and reason, when a cycle materialises the statuses (query materialise_status) and when a
-- dashboard reads the live views (heartbeat_status_at, server_status_live). It is SQL so that the
-- whole fleet is decided in one statement beside its data, instead of read into Python row by row
-- and written back. plugins/heartbeat/status.py states the same rules as the executable
-- specification; tests/status_cases.py is one table of cases both are held to (same inputs, same
-- status, same reason), so a change to a rule changes both and that table.
--   STALE:   (read-time views only) the monitor has finished no cycle for stale_after_s;
--            or (also materialised) no attempt from the server's site for site_stale_after_s
--            (site_monitors): its workers are gone, which says nothing about its servers
--   OFFLINE: no heartbeat, or the last one is older than offline_after_s (exactly that age is
--            still fresh); or failure_threshold failed logins in a row; or recovering from
--            OFFLINE with fewer than recovery_threshold successful logins in a row
--   WARNING: a fresh heartbeat but flapping, or an active alert or anomaly
--   ONLINE:  a fresh heartbeat and none of the above
-- A reason holds no age relative to as_of: beside the heartbeat age a page shows (and ticks) when
-- it is read, "heartbeat 29 s ago" decided earlier would contradict it. It says what held against
-- the threshold, or since when; the age is heartbeat_age_s. A stored decision then changes only
-- when the situation does, not with the clock. Error classes are worded by the table
-- error_classes (migration 001), the one place those words are written.
DROP FUNCTION IF EXISTS heartbeat_status_at(timestamptz, double precision) CASCADE;
DROP FUNCTION IF EXISTS heartbeat_status_at(timestamptz, double precision, integer, integer, double precision) CASCADE;
DROP FUNCTION IF EXISTS heartbeat_status_evaluate(timestamptz, double precision, integer, integer, double precision)
    CASCADE;
DROP FUNCTION IF EXISTS heartbeat_status_at(timestamptz, double precision, integer, integer, double precision,
                                            double precision) CASCADE;
DROP FUNCTION IF EXISTS heartbeat_status_evaluate(timestamptz, double precision, integer, integer, double precision,
                                                  double precision) CASCADE;

-- reason_template is the reason (the column is named after the table it is compared with,
-- server_status_decided, whose reasons once held an "{age}" placeholder); the decided_* columns are
-- that table's row, so the caller writes a decision only when it changed.
CREATE FUNCTION heartbeat_status_evaluate(
    as_of timestamptz,
    offline_after_s double precision,
    failure_threshold integer DEFAULT 0,
    recovery_threshold integer DEFAULT 1,
    stale_after_s double precision DEFAULT NULL,
    site_stale_after_s double precision DEFAULT NULL
)
RETURNS TABLE (
    server_id         bigint,
    server_name       text,
    host              text,
    port              integer,
    status            text,
    reason_template   text,
    last_heartbeat_at timestamptz,
    heartbeat_age_s   double precision,
    active_alerts     integer,
    active_anomalies  integer,
    last_attempt_at   timestamptz,
    last_error_class  text,
    last_error_message text,
    consecutive_failures integer,
    total_ms          real,
    flapping          boolean,
    flap_percent      real,
    decided_status    text,
    decided_reason_template text,
    decided_alerts    integer,
    decided_anomalies integer,
    decided_flapping  boolean,
    decided_at        timestamptz,
    site              text
)
LANGUAGE sql STABLE AS $$
    WITH monitor AS (
        SELECT max(finished_at) AS last_cycle_at FROM cycles
    ), base AS (
        SELECT s.id, s.name, s.host, s.port,
               h.last_success_at, h.last_attempt_at, h.last_error_class, h.last_error_message, h.total_ms,
               coalesce(h.consecutive_failures, 0) AS failures,
               coalesce(h.consecutive_successes, 0) AS successes,
               coalesce(h.flapping, false) AS flapping, h.flap_percent,
               st.status AS previous_status, st.reason_template AS previous_reason_template,
               st.active_alerts AS previous_alerts, st.active_anomalies AS previous_anomalies,
               st.flapping AS previous_flapping, st.written_at AS previous_at,
               -- GREATEST ignores NULLs: keep "never" as NULL explicitly. date_part, not extract: a
               -- double, not a numeric (about a sixth of the evaluation at 100,000 servers)
               CASE WHEN h.last_success_at IS NOT NULL
                    THEN GREATEST(0, date_part('epoch', as_of - h.last_success_at)) END AS age_s,
               coalesce(na.n, 0)::integer AS n_alerts,
               coalesce(nx.n, 0)::integer AS n_anomalies,
               CASE WHEN h.last_attempt_at IS NULL OR h.last_error_class IS NULL THEN ''
                    ELSE '; last attempt: ' || coalesce(e.words, h.last_error_class) END AS attempt_words,
               CASE WHEN stale_after_s IS NOT NULL AND m.last_cycle_at IS NOT NULL
                         AND date_part('epoch', as_of - m.last_cycle_at) > stale_after_s
                    THEN m.last_cycle_at END AS stalled_since,
               s.site,
               CASE WHEN site_stale_after_s IS NOT NULL
                         AND date_part('epoch', as_of - coalesce(sm.last_attempt_at, sm.expected_since))
                             > site_stale_after_s
                    THEN coalesce(sm.last_attempt_at, sm.expected_since) END AS site_silent_since,
               sm.last_attempt_at IS NOT NULL AS site_ever_probed
        FROM servers s
        CROSS JOIN monitor m
        LEFT JOIN site_monitors sm ON sm.site = s.site
        LEFT JOIN heartbeats h ON h.server_id = s.id
        LEFT JOIN error_classes e ON e.error_class = h.last_error_class
        LEFT JOIN server_status_decided st ON st.server_id = s.id
        LEFT JOIN (SELECT a.server_id, count(*) AS n FROM alerts a WHERE a.resolved_at IS NULL
                   GROUP BY a.server_id) na ON na.server_id = s.id
        LEFT JOIN (SELECT x.server_id, count(*) AS n FROM anomalies x WHERE x.resolved_at IS NULL
                   GROUP BY x.server_id) nx ON nx.server_id = s.id
        WHERE s.enabled
    ), decided AS (
        SELECT b.*,
            CASE WHEN stalled_since IS NOT NULL THEN 'stale'
                 WHEN site_silent_since IS NOT NULL THEN 'site_stale'
                 WHEN age_s IS NULL OR age_s > offline_after_s THEN 'offline'
                 WHEN failure_threshold > 0 AND failures >= failure_threshold THEN 'failing'
                 WHEN recovery_threshold > 1 AND previous_status = 'OFFLINE' AND successes < recovery_threshold
                     THEN 'recovering'
                 WHEN flapping OR n_alerts > 0 OR n_anomalies > 0 THEN 'warning'
                 ELSE 'online' END AS rule
        FROM base b
    )
    SELECT id, name, host, port,
        CASE rule WHEN 'stale' THEN 'STALE' WHEN 'site_stale' THEN 'STALE' WHEN 'warning' THEN 'WARNING' WHEN 'online' THEN 'ONLINE'
                  ELSE 'OFFLINE' END,
        CASE rule
            WHEN 'stale' THEN 'monitor stalled since '
                || to_char(stalled_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC; last known: '
                || coalesce(previous_status, 'unknown')
            WHEN 'site_stale' THEN 'no probe from site ' || site
                || CASE WHEN site_ever_probed THEN ' since ' ELSE ' yet (expected since ' END
                || to_char(site_silent_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
                || CASE WHEN site_ever_probed THEN '' ELSE ')' END
            WHEN 'offline' THEN
                CASE WHEN age_s IS NULL AND last_attempt_at IS NULL THEN 'no heartbeat yet; not probed yet'
                     WHEN age_s IS NULL THEN 'no heartbeat yet' || attempt_words
                     ELSE 'no heartbeat for over ' || offline_after_s || ' s' || attempt_words END
            WHEN 'failing' THEN failures || ' failed logins in a row' || attempt_words
            WHEN 'recovering' THEN 'recovering: ' || successes || ' of ' || recovery_threshold
                || ' successful logins in a row'
            WHEN 'warning' THEN 'heartbeat within ' || offline_after_s || ' s; ' || concat_ws(', ',
                CASE WHEN flapping THEN 'flapping (' || floor(coalesce(flap_percent, 0))::bigint
                                        || '% state changes)' END,
                CASE WHEN n_alerts = 1 THEN '1 active alert'
                     WHEN n_alerts > 1 THEN n_alerts || ' active alerts' END,
                CASE WHEN n_anomalies = 1 THEN '1 active anomaly'
                     WHEN n_anomalies > 1 THEN n_anomalies || ' active anomalies' END)
            ELSE 'heartbeat within ' || offline_after_s || ' s' END,
        last_success_at, age_s, n_alerts, n_anomalies, last_attempt_at, last_error_class,
        last_error_message, failures, total_ms, flapping, flap_percent,
        previous_status, previous_reason_template, previous_alerts, previous_anomalies, previous_flapping, previous_at,
        site
    FROM decided
$$;

CREATE FUNCTION heartbeat_status_at(
    as_of timestamptz,
    offline_after_s double precision,
    failure_threshold integer DEFAULT 0,
    recovery_threshold integer DEFAULT 1,
    stale_after_s double precision DEFAULT NULL,
    site_stale_after_s double precision DEFAULT NULL
)
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
    total_ms          real,
    flapping          boolean,
    flap_percent      real,
    site              text
)
LANGUAGE sql STABLE AS $$
    SELECT e.server_id, e.server_name, e.host, e.port, e.status,
           e.reason_template,
           e.last_heartbeat_at, e.heartbeat_age_s, e.active_alerts, e.active_anomalies, e.last_attempt_at,
           e.last_error_class, e.last_error_message, e.consecutive_failures, e.total_ms, e.flapping, e.flap_percent,
           e.site
    FROM heartbeat_status_evaluate(as_of, offline_after_s, failure_threshold, recovery_threshold, stale_after_s,
                                   site_stale_after_s) e
$$;

COMMENT ON TABLE error_classes IS
    'The words for each error class, the one place they are written: heartbeat_status_evaluate names a failed last attempt with them. A new class needs a migration that inserts its words.';
