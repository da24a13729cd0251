-- Sites: a fleet split into networks, each probed from inside by its own workers (Celery queue
-- heartbeat-<site>). Every attempt records the site it was made from and the worker that made it;
-- a site from which no attempt has arrived for the stale bound reads STALE, not OFFLINE.

-- The site of a server: which workers probe it. The same rule as heartbeat.sites.SITE_RE (it
-- names a Celery queue and an Airflow task id).
ALTER TABLE servers ADD COLUMN site text NOT NULL DEFAULT 'default'
    CONSTRAINT servers_site_check CHECK (site ~ '^[a-z0-9][a-z0-9_-]{0,39}$');
COMMENT ON COLUMN servers.site IS 'The network the server is probed from: only workers serving queue heartbeat-<site> probe it.';

-- Where each attempt was made from (NULL: recorded by the cycle itself, e.g. an invalid row).
ALTER TABLE probe_history ADD COLUMN site text, ADD COLUMN worker text;
ALTER TABLE heartbeats ADD COLUMN last_site text, ADD COLUMN last_worker text;

-- Per site: when an attempt from it was last recorded, and by which worker. A site is expected
-- from the first cycle that found enabled servers in it (expected_since).
CREATE TABLE site_monitors (
    site            text PRIMARY KEY,
    expected_since  timestamptz NOT NULL,
    last_attempt_at timestamptz,
    last_worker     text,
    last_cycle_id   text
);
COMMENT ON TABLE site_monitors IS
    'Per site, the last attempt recorded from it: no attempt for the stale bound makes its servers STALE.';

-- One row per period in which a site had no working monitor: one notification when it starts,
-- one when it ends (ended_at), instead of one per server.
CREATE TABLE site_stalls (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site        text NOT NULL,
    since       timestamptz NOT NULL,
    ever_probed boolean NOT NULL,
    detected_at timestamptz NOT NULL,
    ended_at    timestamptz,
    servers     integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX site_stalls_open ON site_stalls (site) WHERE ended_at IS NULL;
COMMENT ON TABLE site_stalls IS 'Periods in which no attempt arrived from a site for the stale bound.';

-- A site's STALE is materialised (its servers' heartbeats stop while the monitor runs on).
ALTER TABLE server_status_decided DROP CONSTRAINT IF EXISTS server_status_status_check;
ALTER TABLE server_status_decided ADD CONSTRAINT server_status_decided_status_check
    CHECK (status IN ('ONLINE', 'WARNING', 'OFFLINE', 'STALE'));

-- The notification ledger's kinds "site_stalled" and "site_recovered" are added by the repeatable
-- script include/sql/views/045_site_notification_kinds.sql (other migrations replace the list).

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_pipeline') THEN
        GRANT SELECT, INSERT, UPDATE ON site_monitors, site_stalls TO heartbeat_pipeline;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_reader') THEN
        GRANT SELECT ON site_monitors, site_stalls TO heartbeat_reader;
    END IF;
END $$;
