-- Named queries of results and status (plugins/heartbeat/store/results.py): a shard's results, the
-- materialised status, cycle records, retention. Parameters are bound by psycopg (%(name)s), never
-- formatted into the text.

-- name: create_probe_batch
CREATE TEMP TABLE probe_batch (
    server_id bigint, cycle_id text, attempted_at timestamptz, ok boolean, error_class text,
    message text, tcp_connect_ms real, ssh_handshake_ms real, auth_ms real, total_ms real,
    banner text, host_key text, host_key_fingerprint text, pinned_fingerprint text
) ON COMMIT DROP;

-- name: copy_probe_batch
-- Binary: store.BATCH_TYPES lists the column types in this order.
COPY probe_batch (server_id, cycle_id, attempted_at, ok, error_class, message, tcp_connect_ms,
                  ssh_handshake_ms, auth_ms, total_ms, banner, host_key, host_key_fingerprint,
                  pinned_fingerprint) FROM STDIN (FORMAT BINARY);

-- name: jit_off
-- For the rest of the transaction: compiling these statements (about 1.5 s at 100,000 servers)
-- costs far more than it saves; they are many small index lookups, not long scans.
SET LOCAL jit = off;

-- name: delete_batch_history
-- A retried shard replaces its own rows of this cycle: they are deleted first (a range of the
-- primary key (cycle_id, server_id), empty on a first attempt), then inserted. Cheaper than
-- INSERT .. ON CONFLICT DO UPDATE, whose speculative insertion was about a third of the insert.
DELETE FROM probe_history ph
WHERE ph.cycle_id = %(cycle_id)s
  AND ph.server_id BETWEEN %(first_id)s AND %(last_id)s
  AND ph.server_id IN (SELECT server_id FROM probe_batch);

-- name: insert_probe_history
-- Only for servers that exist (there is no foreign key: see migration 006).
-- A batch's attempts were all made from one site by one worker (NULL: recorded by the cycle).
INSERT INTO probe_history (server_id, cycle_id, attempted_at, ok, error_class, message,
                           tcp_connect_ms, ssh_handshake_ms, auth_ms, total_ms, site, worker)
SELECT b.server_id, b.cycle_id, b.attempted_at, b.ok, b.error_class, b.message,
       b.tcp_connect_ms, b.ssh_handshake_ms, b.auth_ms, b.total_ms, %(site)s, %(worker)s
FROM probe_batch b JOIN servers s ON s.id = b.server_id
WHERE s.id BETWEEN %(first_id)s AND %(last_id)s;

-- name: upsert_heartbeats
-- A retried cycle (same cycle_id) replaces its own attempt instead of counting a second failure.
-- Existing rows are updated in place (HOT: the table keeps room in its pages); servers without a
-- row yet get one. A row is never moved back in time by an older attempt.
WITH updated AS (
    UPDATE heartbeats h SET
        last_success_at = CASE WHEN b.ok THEN b.attempted_at ELSE h.last_success_at END,
        last_attempt_at = b.attempted_at,
        last_cycle_id = b.cycle_id,
        consecutive_failures = CASE
            WHEN b.ok THEN 0
            WHEN h.last_cycle_id = b.cycle_id THEN GREATEST(h.consecutive_failures, 1)
            ELSE h.consecutive_failures + 1 END,
        consecutive_successes = CASE
            WHEN NOT b.ok THEN 0
            WHEN h.last_cycle_id = b.cycle_id THEN GREATEST(h.consecutive_successes, 1)
            ELSE h.consecutive_successes + 1 END,
        last_ok = b.ok,
        last_error_class = b.error_class,
        last_error_message = b.message,
        tcp_connect_ms = b.tcp_connect_ms,
        ssh_handshake_ms = b.ssh_handshake_ms,
        auth_ms = b.auth_ms,
        total_ms = b.total_ms,
        banner = coalesce(b.banner, h.banner),
        host_key_fingerprint = coalesce(b.host_key_fingerprint, h.host_key_fingerprint),
        presented_host_key = coalesce(b.host_key, h.presented_host_key),
        last_site = %(site)s,
        last_worker = %(worker)s,
        recent_oks = heartbeat_recent_oks(h.recent_oks, b.ok, h.last_cycle_id = b.cycle_id, %(window)s)
    FROM probe_batch b
    WHERE h.server_id = b.server_id AND h.last_attempt_at <= b.attempted_at
      -- A shard is a range of ids: bounding the scan of heartbeats to it keeps a merge join
      -- from reading every row below the shard first.
      AND h.server_id BETWEEN %(first_id)s AND %(last_id)s
    RETURNING h.server_id, h.flapping, h.flap_percent, h.consecutive_successes, h.consecutive_failures,
              h.recent_oks
), inserted AS (
INSERT INTO heartbeats (server_id, last_success_at, last_attempt_at, last_cycle_id,
                        consecutive_failures, last_ok, last_error_class, last_error_message,
                        tcp_connect_ms, ssh_handshake_ms, auth_ms, total_ms, banner,
                        host_key_fingerprint, presented_host_key, consecutive_successes, recent_oks,
                        last_site, last_worker)
SELECT b.server_id, CASE WHEN b.ok THEN b.attempted_at END, b.attempted_at, b.cycle_id,
       CASE WHEN b.ok THEN 0 ELSE 1 END, b.ok, b.error_class, b.message,
       b.tcp_connect_ms, b.ssh_handshake_ms, b.auth_ms, b.total_ms, b.banner, b.host_key_fingerprint,
       b.host_key, CASE WHEN b.ok THEN 1 ELSE 0 END, ARRAY[b.ok], %(site)s, %(worker)s
FROM probe_batch b JOIN servers s ON s.id = b.server_id
WHERE NOT EXISTS (SELECT 1 FROM updated u WHERE u.server_id = b.server_id)
ON CONFLICT (server_id) DO NOTHING  -- a row newer than this attempt: keep it
RETURNING server_id, flapping, flap_percent, consecutive_successes, consecutive_failures, recent_oks
)
-- The servers whose flap state may change, with their last results (oldest first) for flap
-- detection. A server whose last attempts, a whole window or more, all had the same result, and
-- which is already recorded as not flapping, would only be found so again: left out.
SELECT c.server_id, c.flapping AS was_flapping, c.recent_oks
FROM (SELECT * FROM updated UNION ALL SELECT * FROM inserted) c
WHERE NOT (NOT c.flapping AND c.flap_percent = 0
           AND (c.consecutive_successes >= %(window)s OR c.consecutive_failures >= %(window)s));

-- name: site_attempted
-- The site's monitor works: an attempt from it has been recorded. Last in the shard's transaction,
-- so the row (one per site, shared by its shards) is locked only briefly.
INSERT INTO site_monitors AS m (site, expected_since, last_attempt_at, last_worker, last_cycle_id)
VALUES (%(site)s, %(attempted_at)s, %(attempted_at)s, %(worker)s, %(cycle_id)s)
ON CONFLICT (site) DO UPDATE SET
    last_attempt_at = EXCLUDED.last_attempt_at, last_worker = EXCLUDED.last_worker,
    last_cycle_id = EXCLUDED.last_cycle_id
WHERE m.last_attempt_at IS NULL OR m.last_attempt_at <= EXCLUDED.last_attempt_at;

-- name: expect_sites
-- Every site holding enabled servers is expected to probe from now on (a site already known keeps
-- its row): a site whose workers never answer reads STALE after the stale bound, as one that stopped.
INSERT INTO site_monitors (site, expected_since)
SELECT DISTINCT s.site, %(started_at)s::timestamptz FROM servers s WHERE s.enabled
ON CONFLICT (site) DO NOTHING;

-- name: set_flapping
UPDATE heartbeats h SET flapping = f.flapping, flap_percent = f.flap_percent
FROM unnest(%(server_ids)s::bigint[], %(flapping)s::boolean[], %(percents)s::real[])
     AS f(server_id, flapping, flap_percent)
WHERE h.server_id = f.server_id
  AND (h.flapping, h.flap_percent) IS DISTINCT FROM (f.flapping, f.flap_percent);

-- name: pin_first_host_keys
-- Trust on first use: the first key a server presents is pinned, unless the probe rejected it.
UPDATE servers s
SET host_key = b.host_key, host_key_pinned_at = b.attempted_at, updated_at = now()
FROM probe_batch b
WHERE s.id = b.server_id
  AND s.host_key IS NULL
  AND b.host_key IS NOT NULL
  AND b.error_class IS DISTINCT FROM 'host_key_unknown'
  AND b.error_class IS DISTINCT FROM 'host_key_changed';

-- name: raise_host_key_changed_alerts
INSERT INTO alerts (server_id, kind, message, source, raised_at)
SELECT b.server_id, 'host_key_changed',
       'host key changed: pinned ' || coalesce(b.pinned_fingerprint, 'a known key') || ', presented '
           || b.host_key_fingerprint || '; if the change is expected run: heartbeat servers accept-key '
           || s.name,
       'heartbeat', b.attempted_at
FROM probe_batch b JOIN servers s ON s.id = b.server_id
WHERE b.error_class = 'host_key_changed'
  AND b.host_key_fingerprint IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM alerts a
      WHERE a.server_id = b.server_id AND a.kind = 'host_key_changed' AND a.resolved_at IS NULL
        AND position(b.host_key_fingerprint IN a.message) > 0);

-- name: status_work_mem
-- The status statement joins every enabled server a few times (hashes of about 30 MB at
-- 100,000 servers): in memory, not in temporary files.
SET LOCAL work_mem = '64MB';

-- name: status_merge_joins
-- Every table the status statement joins is read whole, in server-id order through its primary
-- key: merging them costs about a tenth less than hashing three tables of 100,000 rows.
SET LOCAL enable_hashjoin = off;

-- name: lock_status
SELECT pg_advisory_xact_lock(hashtext('heartbeat_materialise_status'));

-- name: set_status_settings
-- The read-time views use the same settings as the pipeline.
INSERT INTO monitor_settings (key, value) VALUES
    ('offline_after_s', %(offline_after_s)s::text),
    ('failure_threshold', %(failure_threshold)s::text),
    ('recovery_threshold', %(recovery_threshold)s::text),
    ('stale_after_s', %(stale_after_s)s::text)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;

-- name: materialise_status
-- One set-based statement: evaluate every enabled server, record flips, write the decision of the
-- servers whose status, reason (its age left out), counts or flapping changed (new servers too),
-- drop rows of disabled servers (deleted servers cascade) and stamp the evaluation. Unchanged rows
-- are not written: the view server_status derives what moves with the clock. An evaluation older
-- than the last one (a retried old run) writes nothing.
WITH stamp AS (
    SELECT NOT EXISTS (SELECT 1 FROM status_evaluation WHERE evaluated_at > %(as_of)s) AS newest
), live AS MATERIALIZED (
    SELECT l.server_id, l.status, l.reason_template, l.heartbeat_age_s, l.active_alerts, l.active_anomalies,
           l.flapping, l.decided_status, l.decided_at,
           (l.decided_status IS DISTINCT FROM l.status
            OR l.decided_reason_template IS DISTINCT FROM l.reason_template
            OR l.decided_alerts IS DISTINCT FROM l.active_alerts
            OR l.decided_anomalies IS DISTINCT FROM l.active_anomalies
            OR l.decided_flapping IS DISTINCT FROM l.flapping) AS changed
    FROM heartbeat_status_evaluate(%(as_of)s, %(offline_after_s)s, %(failure_threshold)s,
                                   %(recovery_threshold)s, NULL, %(site_stale_after_s)s) l
), changes AS (
    SELECT l.* FROM live l, stamp
    WHERE stamp.newest AND l.changed AND (l.decided_at IS NULL OR l.decided_at <= %(as_of)s)
), flips AS (
    INSERT INTO status_events (server_id, from_status, to_status, at, reason)
    SELECT c.server_id, c.decided_status, c.status, %(as_of)s,
           replace(c.reason_template, '{age}', coalesce(floor(c.heartbeat_age_s)::bigint::text, '?'))
    FROM changes c
    WHERE c.decided_status IS DISTINCT FROM c.status
    RETURNING server_id
), written AS (
    INSERT INTO server_status_decided AS st (server_id, status, reason_template, active_alerts,
                                             active_anomalies, flapping, status_since, written_at)
    SELECT c.server_id, c.status, c.reason_template, c.active_alerts, c.active_anomalies, c.flapping,
           %(as_of)s, %(as_of)s
    FROM changes c
    ON CONFLICT (server_id) DO UPDATE SET
        status = EXCLUDED.status,
        reason_template = EXCLUDED.reason_template,
        active_alerts = EXCLUDED.active_alerts,
        active_anomalies = EXCLUDED.active_anomalies,
        flapping = EXCLUDED.flapping,
        status_since = CASE WHEN st.status = EXCLUDED.status THEN st.status_since ELSE EXCLUDED.status_since END,
        written_at = EXCLUDED.written_at
    WHERE st.written_at <= EXCLUDED.written_at
    RETURNING 1
), stamped AS (  -- runs although nothing reads it, as every data-modifying WITH does
    INSERT INTO status_evaluation (evaluated_at) SELECT %(as_of)s FROM stamp WHERE stamp.newest
    ON CONFLICT (one) DO UPDATE SET evaluated_at = EXCLUDED.evaluated_at
), removed AS (
    DELETE FROM server_status_decided st
    USING servers s
    WHERE s.id = st.server_id AND NOT s.enabled
    RETURNING 1
)
SELECT count(*) FILTER (WHERE l.status = 'ONLINE')  AS online,
       count(*) FILTER (WHERE l.status = 'WARNING') AS warning,
       count(*) FILTER (WHERE l.status = 'OFFLINE') AS offline,
       count(*) FILTER (WHERE l.status = 'STALE')   AS stale,
       (SELECT count(*) FROM flips)                 AS flips,
       (SELECT count(*) FROM written)               AS written,
       (SELECT count(*) FROM removed)               AS removed
FROM live l;

-- name: start_cycle
INSERT INTO cycles (cycle_id, started_at) VALUES (%(cycle_id)s, %(started_at)s)
ON CONFLICT (cycle_id) DO NOTHING;

-- name: finish_cycle
INSERT INTO cycles AS c (cycle_id, started_at, finished_at, servers, ok, failed, online, warning, offline)
VALUES (%(cycle_id)s, %(started_at)s, %(finished_at)s, %(servers)s, %(ok)s, %(failed)s,
        %(online)s, %(warning)s, %(offline)s)
ON CONFLICT (cycle_id) DO UPDATE SET
    finished_at = EXCLUDED.finished_at, servers = EXCLUDED.servers, ok = EXCLUDED.ok,
    failed = EXCLUDED.failed, online = EXCLUDED.online, warning = EXCLUDED.warning,
    offline = EXCLUDED.offline;

-- name: cycle_probe_counts
-- A range of the primary key (cycle_id, server_id).
SELECT count(*) AS servers, count(*) FILTER (WHERE ok) AS ok, count(*) FILTER (WHERE NOT ok) AS failed
FROM probe_history WHERE cycle_id = %(cycle_id)s;

-- name: prune_probe_history
DELETE FROM probe_history WHERE attempted_at < %(cutoff)s;

-- name: prune_cycles
DELETE FROM cycles WHERE started_at < %(cutoff)s;

-- name: status_report
SELECT l.server_name, l.host, l.port, l.status, l.reason, l.last_heartbeat_at, l.heartbeat_age_s,
       l.active_alerts, l.active_anomalies, l.last_attempt_at, l.last_error_class, l.last_error_message,
       l.consecutive_failures, l.total_ms
FROM heartbeat_status_at(%(as_of)s, %(offline_after_s)s, %(failure_threshold)s, %(recovery_threshold)s,
                         %(stale_after_s)s, %(site_stale_after_s)s) l
ORDER BY CASE l.status WHEN 'OFFLINE' THEN 0 WHEN 'STALE' THEN 1 WHEN 'WARNING' THEN 2 ELSE 3 END, l.server_name;

-- name: record_site_stalls
-- After the statuses: a site with enabled servers and no attempt for %(site_stale_after_s)s opens a
-- stall (one row, one notification); a stalled site from which attempts arrive again closes it.
WITH silent AS (
    SELECT m.site, coalesce(m.last_attempt_at, m.expected_since) AS since, m.last_attempt_at IS NOT NULL AS ever,
           (SELECT count(*) FROM servers s WHERE s.site = m.site AND s.enabled)::integer AS servers
    FROM site_monitors m
    WHERE date_part('epoch', %(as_of)s::timestamptz - coalesce(m.last_attempt_at, m.expected_since))
          > %(site_stale_after_s)s
), opened AS (
    INSERT INTO site_stalls (site, since, ever_probed, detected_at, servers)
    SELECT x.site, x.since, x.ever, %(as_of)s, x.servers FROM silent x
    WHERE x.servers > 0 AND NOT EXISTS (SELECT 1 FROM site_stalls t WHERE t.site = x.site AND t.ended_at IS NULL)
    RETURNING 1
), ended AS (
    UPDATE site_stalls t SET ended_at = %(as_of)s
    WHERE t.ended_at IS NULL AND t.detected_at <= %(as_of)s
      AND NOT EXISTS (SELECT 1 FROM silent x WHERE x.site = t.site AND x.servers > 0)
    RETURNING 1
)
SELECT (SELECT count(*) FROM opened) AS opened, (SELECT count(*) FROM ended) AS ended;

-- name: last_cycle
SELECT cycle_id, started_at, finished_at, servers, ok, failed, online, warning, offline
FROM cycles WHERE finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1;

-- name: cycle_by_id
SELECT cycle_id, started_at, finished_at, servers, ok, failed, online, warning, offline
FROM cycles WHERE cycle_id = %(cycle_id)s;

-- name: open_path_outage
-- A bastion hop failed: its outage starts, unless one is open already (several shards, cycles).
INSERT INTO path_outages (bastion_id, started_at, cause)
SELECT s.id, %(attempted_at)s, %(cause)s FROM servers s WHERE s.id = %(bastion_id)s
ON CONFLICT (bastion_id) WHERE ended_at IS NULL DO NOTHING;

-- name: close_path_outage
-- A bastion hop worked: its open outage, if any, ends.
UPDATE path_outages SET ended_at = %(attempted_at)s
WHERE bastion_id = %(bastion_id)s AND ended_at IS NULL AND started_at <= %(attempted_at)s;
