-- Named queries of notifications (plugins/heartbeat/store/notifications.py). Parameters are bound
-- by psycopg.

-- name: status_change_candidates
-- Status changes to notify on one channel at %(as_of)s. Only each server's latest change counts
-- (a change undone within the debounce is never sent); it must have held %(notify_after_s)s; it is
-- "offline" when the server went OFFLINE and the channel last said otherwise, "recovered" when the
-- channel last said OFFLINE and the server is ONLINE or WARNING now (STALE says nothing about the
-- server: its site has no working monitor, told once per site by site_stall_candidates); a server
-- in a maintenance window now is left for later; a change already sent (or given up after
-- %(max_attempts)s failures) on this channel is not sent again; a failure that is a member of a
-- shared-cause incident is told by the incident instead.
WITH latest AS (
    SELECT DISTINCT ON (e.server_id) e.id, e.server_id, e.from_status, e.to_status, e.at, e.reason
    FROM status_events e
    WHERE e.at <= %(as_of)s
    ORDER BY e.server_id, e.at DESC, e.id DESC
), last_sent AS (
    SELECT DISTINCT ON (e.server_id) e.server_id, e.to_status
    FROM notification_log n
    JOIN status_events e ON e.id = n.event_id
    WHERE n.channel = %(channel)s AND n.state = 'sent'
    ORDER BY e.server_id, e.at DESC, e.id DESC
)
SELECT l.id AS event_id, s.id AS server_id, s.name AS server_name, s.host, s.port,
       l.from_status, l.to_status, l.at, l.reason, h.last_error_class,
       CASE WHEN l.to_status = 'OFFLINE' THEN 'offline' ELSE 'recovered' END AS kind
FROM latest l
JOIN servers s ON s.id = l.server_id AND s.enabled
LEFT JOIN last_sent p ON p.server_id = l.server_id
LEFT JOIN heartbeats h ON h.server_id = l.server_id
WHERE extract(epoch FROM %(as_of)s::timestamptz - l.at) >= %(notify_after_s)s
  -- The jump path is a dependency: a server unreachable because its bastion hop failed does not
  -- page, and neither does the bastion itself while its hop is down; path_outage_candidates says it once.
  AND NOT (l.to_status = 'OFFLINE' AND h.last_error_class = 'path_down')
  AND NOT (l.to_status = 'OFFLINE'
           AND EXISTS (SELECT 1 FROM path_outages o WHERE o.bastion_id = l.server_id AND o.ended_at IS NULL))
  AND ((l.to_status = 'OFFLINE' AND p.to_status IS DISTINCT FROM 'OFFLINE')
       OR (l.to_status NOT IN ('OFFLINE', 'STALE') AND p.to_status = 'OFFLINE'))
  AND NOT EXISTS (
      SELECT 1 FROM maintenance_windows m
      WHERE m.server_id = l.server_id AND %(as_of)s >= m.starts_at AND %(as_of)s < m.ends_at)
  AND NOT EXISTS (  -- a failure an incident explains is told by the incident
      SELECT 1 FROM incident_members im WHERE im.event_id = l.id)
  AND NOT EXISTS (
      SELECT 1 FROM notification_log n
      WHERE n.subject = 'status_event:' || l.id AND n.channel = %(channel)s
        AND (n.state = 'sent' OR n.attempts >= %(max_attempts)s))
ORDER BY l.at, l.id;

-- name: host_key_alert_candidates
-- Active host_key_changed alerts not yet sent on this channel; left for later during maintenance.
SELECT a.id AS alert_id, s.id AS server_id, s.name AS server_name, s.host, s.port, a.message, a.raised_at AS at
FROM alerts a
JOIN servers s ON s.id = a.server_id AND s.enabled
WHERE a.kind = 'host_key_changed' AND a.resolved_at IS NULL AND a.raised_at <= %(as_of)s
  AND NOT EXISTS (
      SELECT 1 FROM maintenance_windows m
      WHERE m.server_id = a.server_id AND %(as_of)s >= m.starts_at AND %(as_of)s < m.ends_at)
  AND NOT EXISTS (
      SELECT 1 FROM notification_log n
      WHERE n.subject = 'alert:' || a.id AND n.channel = %(channel)s
        AND (n.state = 'sent' OR n.attempts >= %(max_attempts)s))
ORDER BY a.raised_at, a.id;

-- name: site_stall_candidates
-- A site without a working monitor, once per stall and channel: "site_stalled" when the stall has
-- held %(notify_after_s)s and is still open, "site_recovered" when it has ended and its start was
-- told on this channel.
SELECT t.id AS stall_id, t.site, t.since, t.ever_probed, t.servers, k.kind, k.at
FROM site_stalls t
CROSS JOIN LATERAL (VALUES ('site_stalled', t.detected_at), ('site_recovered', t.ended_at)) AS k(kind, at)
WHERE k.at IS NOT NULL AND k.at <= %(as_of)s
  AND ((k.kind = 'site_stalled' AND t.ended_at IS NULL
        AND extract(epoch FROM %(as_of)s::timestamptz - t.detected_at) >= %(notify_after_s)s)
       OR (k.kind = 'site_recovered' AND EXISTS (
            SELECT 1 FROM notification_log n
            WHERE n.subject = 'site_stalled:' || t.id AND n.channel = %(channel)s AND n.state = 'sent')))
  AND NOT EXISTS (
      SELECT 1 FROM notification_log n
      WHERE n.subject = k.kind || ':' || t.id AND n.channel = %(channel)s
        AND (n.state = 'sent' OR n.attempts >= %(max_attempts)s))
ORDER BY k.at, t.id;

-- name: last_finished_cycle
-- The last cycle that finished at or before %(as_of)s, other than %(current_cycle_id)s.
SELECT cycle_id, started_at, finished_at
FROM cycles
WHERE finished_at IS NOT NULL AND finished_at <= %(as_of)s
  AND cycle_id IS DISTINCT FROM %(current_cycle_id)s::text
ORDER BY finished_at DESC
LIMIT 1;

-- name: cycle_started_at
SELECT started_at FROM cycles WHERE cycle_id = %(cycle_id)s;

-- name: notification_done
SELECT 1 AS done FROM notification_log
WHERE subject = %(subject)s AND channel = %(channel)s AND (state = 'sent' OR attempts >= %(max_attempts)s);

-- name: claim_notification
-- Take a notification for sending, inside the transaction that sends it: a new one, or a failed
-- one with attempts left. The row stays locked until commit, so a concurrent run (a retried task,
-- `heartbeat notify`) waits and then finds it sent. Nothing returned: someone else has it.
INSERT INTO notification_log AS n (subject, channel, kind, server_id, event_id, alert_id, incident_id, state,
                                   attempts, first_tried_at, last_tried_at, sent_at)
VALUES (%(subject)s, %(channel)s, %(kind)s, %(server_id)s, %(event_id)s, %(alert_id)s, %(incident_id)s, 'sent', 1,
        %(as_of)s, %(as_of)s, %(as_of)s)
ON CONFLICT (subject, channel) DO UPDATE SET
    state = 'sent', attempts = n.attempts + 1, last_tried_at = EXCLUDED.last_tried_at,
    sent_at = EXCLUDED.sent_at, last_error = NULL
WHERE n.state = 'failed' AND n.attempts < %(max_attempts)s
RETURNING n.id, n.attempts;

-- name: mark_notification_failed
UPDATE notification_log SET state = 'failed', sent_at = NULL, last_error = %(error)s WHERE id = %(id)s;

-- name: list_notifications
SELECT n.id, n.subject, n.channel, n.kind, s.name AS server_name, n.state, n.attempts, n.last_error,
       n.first_tried_at, n.sent_at
FROM notification_log n LEFT JOIN servers s ON s.id = n.server_id
ORDER BY n.last_tried_at DESC, n.id DESC
LIMIT %(limit)s;

-- name: incident_candidates
-- Incidents to tell on one channel: an open one once it has held %(notify_after_s)s; a closed one
-- ("resolved") once closed for %(notify_after_s)s, when its opening was sent on this channel.
-- An incident whose every member is in a maintenance window now is left for later.
SELECT i.id AS incident_id, i.dimension, i.group_key, i.error_class, i.population, i.first_failed_at,
       i.opened_at, i.closed_at,
       CASE WHEN i.closed_at IS NULL THEN 'incident' ELSE 'incident_resolved' END AS kind,
       (SELECT count(*) FROM incident_members m WHERE m.incident_id = i.id) AS members,
       (SELECT coalesce(array_agg(s.name ORDER BY s.name), '{}') FROM incident_members m
        JOIN servers s ON s.id = m.server_id WHERE m.incident_id = i.id) AS member_names
FROM incidents i
WHERE i.opened_at <= %(as_of)s
  AND (
      (i.closed_at IS NULL OR i.closed_at > %(as_of)s)
      AND extract(epoch FROM %(as_of)s::timestamptz - i.opened_at) >= %(notify_after_s)s
      AND NOT EXISTS (SELECT 1 FROM notification_log n WHERE n.subject = 'incident:' || i.id
                      AND n.channel = %(channel)s AND (n.state = 'sent' OR n.attempts >= %(max_attempts)s))
      AND EXISTS (SELECT 1 FROM incident_members m WHERE m.incident_id = i.id AND NOT EXISTS (
                      SELECT 1 FROM maintenance_windows w WHERE w.server_id = m.server_id
                        AND %(as_of)s >= w.starts_at AND %(as_of)s < w.ends_at))
    OR
      i.closed_at <= %(as_of)s
      AND extract(epoch FROM %(as_of)s::timestamptz - i.closed_at) >= %(notify_after_s)s
      AND EXISTS (SELECT 1 FROM notification_log n WHERE n.subject = 'incident:' || i.id
                  AND n.channel = %(channel)s AND n.state = 'sent')
      AND NOT EXISTS (SELECT 1 FROM notification_log n WHERE n.subject = 'incident_resolved:' || i.id
                      AND n.channel = %(channel)s AND (n.state = 'sent' OR n.attempts >= %(max_attempts)s))
  )
ORDER BY coalesce(i.closed_at, i.opened_at), i.id;

-- name: path_outage_candidates
-- Outages of a bastion hop to tell on one channel: an open one once it has held
-- %(notify_after_s)s, not yet told (left for later while the bastion is in a maintenance window);
-- an ended one ("restored") once, when its opening was sent on this channel. With the servers
-- behind the bastion (its enabled servers and theirs, up to the inventory's three hops).
WITH RECURSIVE behind AS (
    SELECT o.id AS outage_id, s.id AS server_id, s.name, 1 AS depth
    FROM path_outages o
    JOIN servers b ON b.id = o.bastion_id
    JOIN servers s ON s.via = b.name
    WHERE o.ended_at IS NULL OR o.ended_at > %(as_of)s::timestamptz - interval '1 day'
    UNION ALL
    SELECT bh.outage_id, s.id, s.name, bh.depth + 1
    FROM behind bh JOIN servers s ON s.via = bh.name
    WHERE bh.depth < 4
)
SELECT o.id AS outage_id, b.id AS bastion_id, b.name AS bastion_name, b.host, b.port, o.started_at AS at,
       o.cause, (SELECT count(DISTINCT bh.server_id) FROM behind bh JOIN servers s ON s.id = bh.server_id
                 WHERE bh.outage_id = o.id AND s.enabled) AS servers_behind,
       CASE WHEN o.ended_at IS NULL OR o.ended_at > %(as_of)s THEN NULL ELSE o.ended_at END AS ended_at
FROM path_outages o
JOIN servers b ON b.id = o.bastion_id
WHERE o.started_at <= %(as_of)s
  AND (
      (o.ended_at IS NULL OR o.ended_at > %(as_of)s)
      AND extract(epoch FROM %(as_of)s::timestamptz - o.started_at) >= %(notify_after_s)s
      AND NOT EXISTS (
          SELECT 1 FROM maintenance_windows m
          WHERE m.server_id = o.bastion_id AND %(as_of)s >= m.starts_at AND %(as_of)s < m.ends_at)
      AND NOT EXISTS (
          SELECT 1 FROM notification_log n
          WHERE n.subject = 'path_down:' || o.id AND n.channel = %(channel)s
            AND (n.state = 'sent' OR n.attempts >= %(max_attempts)s))
    OR
      o.ended_at <= %(as_of)s
      AND EXISTS (SELECT 1 FROM notification_log n WHERE n.subject = 'path_down:' || o.id
                  AND n.channel = %(channel)s AND n.state = 'sent')
      AND NOT EXISTS (SELECT 1 FROM notification_log n WHERE n.subject = 'path_up:' || o.id
                      AND n.channel = %(channel)s AND (n.state = 'sent' OR n.attempts >= %(max_attempts)s))
  )
ORDER BY coalesce(o.ended_at, o.started_at), o.id;

-- name: ongoing_outages
-- Outages told (on some channel) that still hold at %(as_of)s with nobody on them: a server whose
-- latest status change is the OFFLINE that was told, not acknowledged and not in maintenance; an
-- incident still open and not acknowledged (acknowledged ones too with %(include_acknowledged)s,
-- for an escalation asked for by hand). Repeats and escalations are decided from these.
WITH told AS (
    SELECT DISTINCT n.subject, n.kind, n.server_id, n.event_id, n.incident_id
    FROM notification_log n
    WHERE n.state = 'sent' AND n.kind IN ('offline', 'incident') AND n.sent_at <= %(as_of)s
)
SELECT t.subject, t.kind, t.server_id, s.name AS server_name, t.event_id, t.incident_id,
       coalesce(e.at, i.first_failed_at) AS since, e.reason, i.dimension, i.group_key, i.error_class,
       i.population, (SELECT count(*) FROM incident_members m WHERE m.incident_id = t.incident_id) AS members
FROM told t
LEFT JOIN servers s ON s.id = t.server_id
LEFT JOIN status_events e ON e.id = t.event_id
LEFT JOIN incidents i ON i.id = t.incident_id
WHERE CASE WHEN t.kind = 'offline' THEN
          s.enabled
          AND (SELECT x.id FROM status_events x WHERE x.server_id = t.server_id AND x.at <= %(as_of)s
               ORDER BY x.at DESC, x.id DESC LIMIT 1) = t.event_id
          AND (%(include_acknowledged)s OR NOT EXISTS (SELECT 1 FROM acknowledgements a WHERE a.server_id = t.server_id
                          AND a.created_at <= %(as_of)s AND a.ended_at IS NULL
                          AND (a.expires_at IS NULL OR a.expires_at > %(as_of)s)))
          AND NOT EXISTS (SELECT 1 FROM maintenance_windows w WHERE w.server_id = t.server_id
                          AND %(as_of)s >= w.starts_at AND %(as_of)s < w.ends_at)
      ELSE
          -- an incident; a bastion path's outage (kind incident, no incident row) is not repeated
          i.id IS NOT NULL AND i.closed_at IS NULL
          AND (%(include_acknowledged)s OR NOT EXISTS (SELECT 1 FROM acknowledgements a WHERE a.incident_id = t.incident_id
                          AND a.created_at <= %(as_of)s AND a.ended_at IS NULL
                          AND (a.expires_at IS NULL OR a.expires_at > %(as_of)s)))
      END
ORDER BY since, t.subject;

-- name: outage_ledger
-- The ledger rows of these outages: their first notification, repeats and escalations.
SELECT regexp_replace(n.subject, ':(repeat:[0-9]+|escalation)$', '') AS outage, n.subject, n.channel, n.kind,
       n.state, n.attempts, n.sent_at
FROM notification_log n
WHERE regexp_replace(n.subject, ':(repeat:[0-9]+|escalation)$', '') = ANY(%(subjects)s);
