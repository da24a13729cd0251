-- The materialised status, written only when a decision changes.
--
-- Every cycle rewrote every server_status row (at 100,000 servers, about half of the status
-- statement), because two of its columns move with the clock: the heartbeat age and the reason,
-- which quotes it ("heartbeat 12 s ago"). What a cycle decides (status, reason, counts, flapping)
-- is now kept in server_status_decided, and a row is written only when one of those changes;
-- the age is derived when read, by the view server_status (include/sql/views/015_server_status.sql),
-- which keeps the table's former columns and meaning.

ALTER TABLE server_status RENAME TO server_status_decided;
ALTER INDEX server_status_pkey RENAME TO server_status_decided_pkey;

-- The reason as decided, with "{age}" where the view puts the heartbeat age in whole seconds at
-- the last evaluation. Rows written before this migration hold a rendered reason: they differ from
-- the next evaluation's and are rewritten by it.
ALTER TABLE server_status_decided RENAME COLUMN reason TO reason_template;
-- Read from heartbeats by the view.
ALTER TABLE server_status_decided DROP COLUMN last_heartbeat_at, DROP COLUMN heartbeat_age_s;
-- When the row was last written; the view shows the last evaluation of the whole fleet.
ALTER TABLE server_status_decided RENAME COLUMN evaluated_at TO written_at;
COMMENT ON TABLE server_status_decided IS
    'What the last evaluation decided per server, written only when it changes; read it through the view server_status.';

-- The last evaluation of the whole fleet: one row. A retried older run does not overwrite it.
CREATE TABLE status_evaluation (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    evaluated_at timestamptz NOT NULL
);
INSERT INTO status_evaluation (evaluated_at)
SELECT max(written_at) FROM server_status_decided HAVING max(written_at) IS NOT NULL;
COMMENT ON TABLE status_evaluation IS 'When the status of every enabled server was last evaluated (one row).';

-- Rows now change a few at a time: the per-cycle rewrite no longer needs half-empty pages.
ALTER TABLE server_status_decided SET (fillfactor = 100);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_pipeline') THEN
        GRANT SELECT, INSERT, UPDATE ON status_evaluation TO heartbeat_pipeline;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_reader') THEN
        GRANT SELECT ON status_evaluation TO heartbeat_reader;
    END IF;
END $$;
